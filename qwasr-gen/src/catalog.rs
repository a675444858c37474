//! The catalog: what each crate under `backends/` declares it provides, read
//! from `[package.metadata.qwasr]` in its `Cargo.toml`. The generator holds no
//! list of interfaces or backends of its own: adding one means adding a crate.
//!
//! ```toml
//! # an interface crate (binds a WIT package; may carry its embedded default)
//! [package.metadata.qwasr.interface]
//! name = "keyvalue"                    # the key used in qwasr.toml
//! package = "wasi:keyvalue"
//! default-backend = "embedded"
//! features = { "wasi:http/outgoing-handler@0.2.12" = "outgoing" } # cargo feature per import
//!
//! # one entry per WIT version x flavour the crate binds
//! [[package.metadata.qwasr.interface.flavours]]
//! flavour = "sync"                     # shown by `plan` (sync, async, spin, ...)
//! version = "0.2.0-draft2"
//! wit = ["../../wit/deps/keyvalue-0.2.0-draft2"]  # dependencies first, the package last
//! imports = ["store", "atomics", "batch"]        # interfaces it links
//! exports = { "incoming-handler" = "messaging" } # export -> server (the crate's `serve`)
//! feature = "draft2"                   # cargo feature compiling this flavour's bindings
//! concurrency = true                   # needs the component model's async ABI (WASI 0.3)
//! package = "wasi:io"                  # optional: another package than the interface's
//!
//! # a backend (in a service crate, or the interface crate's embedded one);
//! # `[[package.metadata.qwasr.backends]]` for several in one crate
//! [package.metadata.qwasr.backend]
//! name = "redis"
//! implements = ["wasi:keyvalue"]
//! module = "keyvalue"                  # Rust module holding `connect`; default: the interface name
//! feature = "keyvalue"                 # cargo feature of the crate the runtime enables
//! options = ["url", "pool-size"]       # keys the manifest's `[backends]` table form accepts
//! env = [{ name = "REDIS_URL", help = "Redis server URL" }]  # or plain names: ["REDIS_URL"]
//!
//! # the kernel: standard WASI interfaces it always links, as flavours
//! [[package.metadata.qwasr.kernel.flavours]]
//! package = "wasi:io"
//! ...
//! ```
//!
//! The planner loads a flavour's WIT only when a component imports its
//! package, and compares function types with it (see [`crate::wit`]).

use crate::component::InterfaceId;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use toml_edit::{DocumentMut, Item};
use wit_parser::{PackageId, Resolve};

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

/// One WIT text a crate binds: a package at a version, in one flavour.
#[derive(Debug, Clone, Serialize)]
pub struct Flavour {
    /// WIT package (`wasi:keyvalue`).
    pub package: String,
    /// Name shown by `plan` (`sync`, `async`, `spin`, ...).
    pub flavour: String,
    /// The package's version.
    pub version: semver::Version,
    /// WIT to load, dependencies first and the package last (absolute).
    pub wit: Vec<PathBuf>,
    /// Interfaces of the package the crate links for guests to import.
    pub imports: Vec<String>,
    /// Interfaces the crate runs when a component exports them, with the server's name.
    pub exports: Vec<(String, String)>,
    /// Cargo feature that compiles this flavour's bindings.
    pub feature: Option<String>,
    /// Its host functions need the component model's async ABI (WASI 0.3,
    /// `async func`): the runtime then runs with concurrency support.
    pub concurrency: bool,
}

impl Flavour {
    /// `wasi:keyvalue/store@0.2.0-draft2` for `store`.
    pub fn id(&self, interface: &str) -> InterfaceId {
        let (namespace, package) = self.package.split_once(':').unwrap_or(("", &self.package));
        InterfaceId {
            namespace: namespace.to_string(),
            package: package.to_string(),
            interface: interface.to_string(),
            version: Some(self.version.clone()),
        }
    }

    /// `wasi:keyvalue@0.2.0-draft2 (spin)`.
    pub fn label(&self) -> String {
        format!("{}@{} ({})", self.package, self.version, self.flavour)
    }

    /// Whether this flavour covers `id`'s package at a compatible version.
    pub fn covers(&self, id: &InterfaceId) -> bool {
        id.package_name() == self.package
            && id
                .version
                .as_ref()
                .is_some_and(|v| compatible(&self.version, v))
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
    /// The WIT versions and flavours it binds.
    pub flavours: Vec<Flavour>,
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
    pub env: Vec<EnvVar>,
    /// Module holding `connect`, if not the interface's short name.
    pub module: Option<String>,
    /// Cargo feature of its crate that compiles this backend, if any.
    pub feature: Option<String>,
    /// Keys the manifest's table form may set (`pool-size`); `None`: any.
    pub options: Option<Vec<String>>,
}

/// An environment variable a backend reads.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name (`REDIS_URL`).
    pub name: String,
    /// What it sets, for `--help` and `plan`.
    pub help: String,
}

/// Loaded WIT, by the list of paths it was loaded from.
type WitCache = Mutex<HashMap<Vec<PathBuf>, Arc<(Resolve, PackageId)>>>;

/// A flavour's WIT: everything its paths loaded, and the flavour's own package in it.
pub struct Wit {
    /// The loaded packages.
    pub resolve: Arc<(Resolve, PackageId)>,
    /// The flavour's package.
    pub package: PackageId,
}

/// Everything the crates under `backends/` provide.
#[derive(Debug, Serialize)]
pub struct Catalog {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The kernel crate.
    pub kernel: CrateRef,
    /// Standard WASI packages the kernel links.
    pub kernel_flavours: Vec<Flavour>,
    /// The kernel's cargo feature for apps that need concurrency (WASI 0.3).
    pub kernel_concurrency_feature: Option<String>,
    /// Interface crates, by name.
    pub interfaces: Vec<Interface>,
    /// Backends, by name.
    pub backends: Vec<Backend>,
    #[serde(skip)]
    wit: WitCache,
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
                let flavours = flavours(k, None, &crate_dir).with_context(|| at("kernel"))?;
                let feature = k
                    .get("concurrency-feature")
                    .and_then(|f| f.as_str())
                    .map(str::to_string);
                kernel = Some((krate.clone(), flavours, feature));
            }
            if let Some(i) = meta.get("interface") {
                interfaces.push(interface(i, krate.clone()).with_context(|| at("interface"))?);
            }
            if let Some(b) = meta.get("backend") {
                backends.push(backend(b, krate.clone()).with_context(|| at("backend"))?);
            }
            if let Some(list) = meta.get("backends") {
                let tables = list
                    .as_array_of_tables()
                    .with_context(|| format!("{}: must be [[...]] tables", at("backends")))?;
                for b in tables {
                    backends.push(
                        backend(&Item::Table(b.clone()), krate.clone())
                            .with_context(|| at("backends"))?,
                    );
                }
            }
        }
        let Some((kernel, kernel_flavours, kernel_concurrency_feature)) = kernel else {
            bail!(
                "no kernel crate under `{}` (none declares [package.metadata.qwasr.kernel])",
                dir.display()
            );
        };
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        backends.sort_by(|a, b| a.name.cmp(&b.name).then(a.krate.name.cmp(&b.krate.name)));
        let catalog = Catalog {
            dir,
            kernel,
            kernel_flavours,
            kernel_concurrency_feature,
            interfaces,
            backends,
            wit: Mutex::default(),
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

    /// Every flavour: the kernel's (`None`), then each interface crate's.
    pub fn flavours(&self) -> impl Iterator<Item = (Option<&Interface>, &Flavour)> {
        self.kernel_flavours.iter().map(|f| (None, f)).chain(
            self.interfaces
                .iter()
                .flat_map(|i| i.flavours.iter().map(move |f| (Some(i), f))),
        )
    }

    /// A flavour's WIT, loaded once per catalog.
    pub fn wit(&self, flavour: &Flavour) -> Result<Wit> {
        let loaded = {
            let mut cache = self.wit.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&flavour.wit) {
                Some(w) => w.clone(),
                None => {
                    let w = Arc::new(crate::wit::load(&flavour.wit).with_context(|| {
                        format!(
                            "catalog error: the WIT of {} does not load",
                            flavour.label()
                        )
                    })?);
                    cache.insert(flavour.wit.clone(), w.clone());
                    w
                }
            }
        };
        // The flavour's package may be one of several the paths load (the kernel's).
        let package = loaded
            .0
            .package_names
            .iter()
            .find(|(name, _)| {
                format!("{}:{}", name.namespace, name.name) == flavour.package
                    && name.version.as_ref() == Some(&flavour.version)
            })
            .map_or(loaded.1, |(_, id)| *id);
        Ok(Wit {
            resolve: loaded,
            package,
        })
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

/// A table of strings to strings (`exports`, `features`).
fn string_map(item: &Item, key: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(table) = item.get(key).and_then(|e| e.as_table_like()) {
        for (k, v) in table.iter() {
            let v = v
                .as_str()
                .with_context(|| format!("`{key}`: the value for `{k}` must be a string"))?;
            out.push((k.to_string(), v.to_string()));
        }
    }
    Ok(out)
}

fn flavours(item: &Item, package: Option<&str>, crate_dir: &Path) -> Result<Vec<Flavour>> {
    let Some(list) = item.get("flavours") else {
        return Ok(Vec::new());
    };
    let tables = list
        .as_array_of_tables()
        .context("`flavours` must be [[...flavours]] tables")?;
    let mut out = Vec::new();
    for t in tables {
        let t = Item::Table(t.clone());
        let package = match (t.get("package").and_then(|p| p.as_str()), package) {
            (Some(p), _) | (None, Some(p)) => p.to_string(),
            (None, None) => bail!("a flavour needs `package`"),
        };
        let version = string(&t, "version")?;
        let version = semver::Version::parse(&version)
            .with_context(|| format!("bad version `{version}` for {package}"))?;
        let wit = strings(&t, "wit")?
            .into_iter()
            .map(|p| crate_dir.join(p))
            .collect::<Vec<_>>();
        if wit.is_empty() {
            bail!("flavour {package}@{version} names no `wit`");
        }
        out.push(Flavour {
            flavour: string(&t, "flavour")?,
            version,
            wit,
            imports: strings(&t, "imports")?,
            exports: string_map(&t, "exports")?,
            feature: t
                .get("feature")
                .and_then(|f| f.as_str())
                .map(str::to_string),
            concurrency: t
                .get("concurrency")
                .and_then(|c| c.as_bool())
                .unwrap_or(false),
            package,
        });
    }
    Ok(out)
}

fn interface(item: &Item, krate: CrateRef) -> Result<Interface> {
    let package = string(item, "package")?;
    Ok(Interface {
        name: string(item, "name")?,
        flavours: flavours(item, Some(&package), &krate.path)?,
        package,
        features: string_map(item, "features")?
            .into_iter()
            .map(|(id, f)| Ok((InterfaceId::parse(&id)?, f)))
            .collect::<Result<_>>()?,
        default_backend: string(item, "default-backend")?,
        krate,
    })
}

fn backend(item: &Item, krate: CrateRef) -> Result<Backend> {
    Ok(Backend {
        name: string(item, "name")?,
        krate,
        implements: strings(item, "implements")?,
        env: env_vars(item)?,
        module: item
            .get("module")
            .and_then(|m| m.as_str())
            .map(str::to_string),
        feature: item
            .get("feature")
            .and_then(|m| m.as_str())
            .map(str::to_string),
        options: match item.get("options") {
            Some(_) => Some(strings(item, "options")?),
            None => None,
        },
    })
}

/// `env`: names, or `{ name, help }` tables.
fn env_vars(item: &Item) -> Result<Vec<EnvVar>> {
    let Some(list) = item.get("env") else {
        return Ok(Vec::new());
    };
    let bad = || "`env` must be an array of names or of { name, help } tables";
    list.as_array()
        .with_context(bad)?
        .iter()
        .map(|v| match (v.as_str(), v.as_inline_table()) {
            (Some(name), _) => Ok(EnvVar {
                name: name.to_string(),
                help: String::new(),
            }),
            (_, Some(t)) => Ok(EnvVar {
                name: t
                    .get("name")
                    .and_then(|n| n.as_str())
                    .with_context(bad)?
                    .to_string(),
                help: t
                    .get("help")
                    .and_then(|h| h.as_str())
                    .unwrap_or("")
                    .to_string(),
            }),
            _ => anyhow::bail!(bad()),
        })
        .collect()
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
