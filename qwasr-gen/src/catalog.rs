//! The catalog: what each crate under `backends/` declares it provides, read
//! from `[package.metadata.qwasr]` in its `Cargo.toml`. The generator holds no
//! list of interfaces or backends of its own: adding one means adding a crate.
//!
//! ```toml
//! # an interface crate (binds a WIT package; may carry its embedded default)
//! [package.metadata.qwasr.interface]
//! name = "keyvalue"                    # the key used in qwasr.toml
//! package = "wasi:keyvalue"
//! imports = ["wasi:keyvalue/store@0.2.0-draft", ...]
//! exports = { "wasi:http/incoming-handler@0.2.12" = "http" }   # export → server
//! features = { "wasi:http/outgoing-handler@0.2.12" = "outgoing" } # cargo feature per import
//! default-backend = "embedded"
//!
//! # a backend (in a service crate, or the interface crate's embedded one)
//! [package.metadata.qwasr.backend]
//! name = "redis"
//! implements = ["wasi:keyvalue"]
//! env = ["REDIS_URL"]
//! module = "keyvalue"                  # Rust module holding `connect`; default: the interface name
//!
//! # the kernel: standard WASI interfaces it always links
//! [package.metadata.qwasr.kernel]
//! imports = ["wasi:io/*@0.2.0", ...]
//! ```

use crate::component::InterfaceId;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item};

/// A crate the emitted runtime depends on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CrateRef {
    /// Package name (`qwasr-wasi-keyvalue`).
    pub name: String,
    /// Directory holding its `Cargo.toml`.
    pub path: PathBuf,
}

impl CrateRef {
    /// The name as a Rust path segment (`qwasr_wasi_keyvalue`).
    pub fn ident(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// An interface crate.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// Short name used in manifests (`keyvalue`).
    pub name: String,
    /// WIT package (`wasi:keyvalue`).
    pub package: String,
    /// The crate.
    pub krate: CrateRef,
    /// Interfaces it links for guests to import.
    pub imports: Vec<InterfaceId>,
    /// Exports it can run, with the server that runs each.
    pub exports: Vec<(InterfaceId, String)>,
    /// Cargo features of the crate to enable only when the component imports
    /// the interface: code an app does not use is not linked.
    pub features: Vec<(InterfaceId, String)>,
    /// Backend used when the manifest names none.
    pub default_backend: String,
}

/// A backend implementation.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// Name used in manifests (`redis`).
    pub name: String,
    /// The crate.
    pub krate: CrateRef,
    /// WIT packages it implements (`wasi:keyvalue`).
    pub implements: Vec<String>,
    /// Environment variables it reads.
    pub env: Vec<String>,
    /// Module holding `connect`, if not the interface's short name.
    pub module: Option<String>,
}

/// Everything the crates under `backends/` provide.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The kernel crate.
    pub kernel: CrateRef,
    /// Standard WASI interfaces the kernel links.
    pub kernel_imports: Vec<InterfaceId>,
    /// Interface crates, by name.
    pub interfaces: Vec<Interface>,
    /// Backends, by name.
    pub backends: Vec<Backend>,
}

impl Catalog {
    /// The backends directory: `QWASR_BACKENDS`, else the one this generator was built from.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("QWASR_BACKENDS") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../backends"),
        }
    }

    /// Reads every `*/Cargo.toml` under `dir`.
    pub fn load(dir: &Path) -> Result<Catalog> {
        let dir = dir.canonicalize().with_context(|| {
            format!(
                "cannot find the backend crates at `{}`; set QWASR_BACKENDS to the `backends` directory of a qwasr-gen checkout",
                dir.display()
            )
        })?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list `{}`", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        entries.sort();
        let mut kernel = None;
        let mut interfaces = Vec::new();
        let mut backends = Vec::new();
        for crate_dir in entries {
            let manifest = crate_dir.join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read `{}`", manifest.display()))?;
            let doc: DocumentMut = text
                .parse()
                .with_context(|| format!("cannot parse `{}`", manifest.display()))?;
            let Some(name) = doc["package"]["name"].as_str() else {
                continue;
            };
            let krate = CrateRef {
                name: name.to_string(),
                path: crate_dir.clone(),
            };
            let meta = &doc["package"]["metadata"]["qwasr"];
            let at =
                |what: &str| format!("{} ([package.metadata.qwasr.{what}])", manifest.display());
            if let Some(k) = meta.get("kernel") {
                let imports = ids(k, "imports").with_context(|| at("kernel"))?;
                kernel = Some((krate.clone(), imports));
            }
            if let Some(i) = meta.get("interface") {
                interfaces.push(interface(i, krate.clone()).with_context(|| at("interface"))?);
            }
            if let Some(b) = meta.get("backend") {
                backends.push(backend(b, krate.clone()).with_context(|| at("backend"))?);
            }
        }
        let Some((kernel, kernel_imports)) = kernel else {
            bail!(
                "no kernel crate under `{}` (none declares [package.metadata.qwasr.kernel])",
                dir.display()
            );
        };
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        backends.sort_by(|a, b| a.name.cmp(&b.name));
        let catalog = Catalog {
            dir,
            kernel,
            kernel_imports,
            interfaces,
            backends,
        };
        catalog.check()?;
        Ok(catalog)
    }

    fn check(&self) -> Result<()> {
        for i in &self.interfaces {
            if self.backend_for(i, &i.default_backend).is_none() {
                bail!(
                    "catalog error: interface `{}` ({}) names default backend `{}`, which no crate provides for {}",
                    i.name,
                    i.krate.name,
                    i.default_backend,
                    i.package
                );
            }
        }
        Ok(())
    }

    /// The interface crate with short name `name`.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// Backend `name` if it implements `interface`.
    pub fn backend_for(&self, interface: &Interface, name: &str) -> Option<&Backend> {
        self.backends
            .iter()
            .find(|b| b.name == name && b.implements.contains(&interface.package))
    }

    /// Every backend that implements `interface`.
    pub fn backends_for<'a>(
        &'a self,
        interface: &'a Interface,
    ) -> impl Iterator<Item = &'a Backend> {
        self.backends
            .iter()
            .filter(move |b| b.implements.contains(&interface.package))
    }
}

fn strings(item: &Item, key: &str) -> Result<Vec<String>> {
    match item.get(key) {
        None => Ok(Vec::new()),
        Some(v) => v
            .as_array()
            .with_context(|| format!("`{key}` must be an array of strings"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("`{key}` must be an array of strings"))
            })
            .collect(),
    }
}

fn string(item: &Item, key: &str) -> Result<String> {
    item.get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("missing string `{key}`"))
}

fn ids(item: &Item, key: &str) -> Result<Vec<InterfaceId>> {
    strings(item, key)?
        .iter()
        .map(|s| InterfaceId::parse(s))
        .collect()
}

/// A table of interface ids to strings (`exports`, `features`).
fn id_map(item: &Item, key: &str) -> Result<Vec<(InterfaceId, String)>> {
    let mut out = Vec::new();
    if let Some(table) = item.get(key).and_then(|e| e.as_table_like()) {
        for (id, v) in table.iter() {
            let v = v
                .as_str()
                .with_context(|| format!("`{key}`: the value for `{id}` must be a string"))?;
            out.push((InterfaceId::parse(id)?, v.to_string()));
        }
    }
    Ok(out)
}

fn interface(item: &Item, krate: CrateRef) -> Result<Interface> {
    Ok(Interface {
        name: string(item, "name")?,
        package: string(item, "package")?,
        krate,
        imports: ids(item, "imports")?,
        exports: id_map(item, "exports")?,
        features: id_map(item, "features")?,
        default_backend: string(item, "default-backend")?,
    })
}

fn backend(item: &Item, krate: CrateRef) -> Result<Backend> {
    Ok(Backend {
        name: string(item, "name")?,
        krate,
        implements: strings(item, "implements")?,
        env: strings(item, "env")?,
        module: item
            .get("module")
            .and_then(|m| m.as_str())
            .map(str::to_string),
    })
}

/// How an import relates to a catalog pattern.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// Same interface, compatible version.
    Yes,
    /// Same interface, incompatible version.
    OtherVersion,
    /// Different interface.
    No,
}

/// Compares an import with a pattern (`*` matches any interface of the package).
pub fn matches(pattern: &InterfaceId, import: &InterfaceId) -> Match {
    if pattern.namespace != import.namespace
        || pattern.package != import.package
        || (pattern.interface != "*" && pattern.interface != import.interface)
    {
        return Match::No;
    }
    match (&pattern.version, &import.version) {
        (None, None) => Match::Yes,
        (Some(a), Some(b)) if compatible(a, b) => Match::Yes,
        _ => Match::OtherVersion,
    }
}

/// Semver compatibility as the component model links it: same major, or for
/// `0.x`, same minor; pre-releases only match themselves.
pub fn compatible(a: &semver::Version, b: &semver::Version) -> bool {
    if !a.pre.is_empty() || !b.pre.is_empty() {
        return a.major == b.major && a.minor == b.minor && a.patch == b.patch && a.pre == b.pre;
    }
    match (a.major, b.major) {
        (0, 0) if a.minor == 0 && b.minor == 0 => a.patch == b.patch,
        (0, 0) => a.minor == b.minor,
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InterfaceId {
        InterfaceId::parse(s).unwrap()
    }

    #[test]
    fn patch_versions_match_and_prereleases_do_not_mix() {
        let host = id("wasi:http/types@0.2.12");
        assert_eq!(matches(&host, &id("wasi:http/types@0.2.9")), Match::Yes);
        assert_eq!(matches(&host, &id("wasi:http/types@0.2.0")), Match::Yes);
        assert_eq!(
            matches(&host, &id("wasi:http/types@0.3.0")),
            Match::OtherVersion
        );
        assert_eq!(
            matches(&host, &id("wasi:http/outgoing-handler@0.2.9")),
            Match::No
        );
        let kv = id("wasi:keyvalue/store@0.2.0-draft");
        assert_eq!(
            matches(&kv, &id("wasi:keyvalue/store@0.2.0-draft")),
            Match::Yes
        );
        assert_eq!(
            matches(&kv, &id("wasi:keyvalue/store@0.2.0-draft2")),
            Match::OtherVersion
        );
        assert_eq!(
            matches(&id("wasi:io/*@0.2.0"), &id("wasi:io/streams@0.2.9")),
            Match::Yes
        );
        assert!(compatible(
            &"1.2.0".parse().unwrap(),
            &"1.9.1".parse().unwrap()
        ));
        assert!(!compatible(
            &"1.2.0".parse().unwrap(),
            &"2.0.0".parse().unwrap()
        ));
    }
}
