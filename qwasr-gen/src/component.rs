//! Reading a component: its imports and exports, as WIT interface ids.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{Resolve, WorldItem, WorldKey};

/// A WIT interface id such as `wasi:keyvalue/store@0.2.0-draft`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceId {
    /// `wasi`
    pub namespace: String,
    /// `keyvalue`
    pub package: String,
    /// `store`
    pub interface: String,
    /// `0.2.0-draft`; `None` for unversioned packages.
    pub version: Option<semver::Version>,
}

impl InterfaceId {
    /// Parses `ns:pkg/iface[@version]`; `iface` may be `*` in catalog patterns.
    pub fn parse(s: &str) -> Result<InterfaceId> {
        let (path, version) = match s.split_once('@') {
            Some((p, v)) => (
                p,
                Some(semver::Version::parse(v).with_context(|| format!("bad version in `{s}`"))?),
            ),
            None => (s, None),
        };
        let (pkg, interface) = path.split_once('/').with_context(|| {
            format!("`{s}` is not an interface id (expected ns:pkg/interface@version)")
        })?;
        let (namespace, package) = pkg.split_once(':').with_context(|| {
            format!("`{s}` is not an interface id (expected ns:pkg/interface@version)")
        })?;
        Ok(InterfaceId {
            namespace: namespace.to_string(),
            package: package.to_string(),
            interface: interface.to_string(),
            version,
        })
    }

    /// `ns:pkg`, without version.
    pub fn package_name(&self) -> String {
        format!("{}:{}", self.namespace, self.package)
    }
}

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.namespace, self.package, self.interface)?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

impl Serialize for InterfaceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An import or export that is not a named interface (a bare function or an
/// inline interface): no catalog can serve it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unnamed {
    /// The name in the component's world.
    pub name: String,
    /// `function` or `interface`.
    pub kind: &'static str,
}

/// What a component says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Where it was read from.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: usize,
    /// Imported interfaces, sorted.
    pub imports: Vec<InterfaceId>,
    /// Exported interfaces, sorted.
    pub exports: Vec<InterfaceId>,
    /// Imports no interface id names.
    pub unnamed_imports: Vec<Unnamed>,
    /// Exports no interface id names.
    pub unnamed_exports: Vec<Unnamed>,
    /// Bytes of machine-independent code in all its core modules (their
    /// code sections): what the engine compiles.
    pub code_size: usize,
    /// Whether it uses the component model's async ABI (`async func`,
    /// `stream`, `future`: WASI 0.3 components).
    pub async_abi: bool,
    /// The bytes themselves (not serialized).
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The component's types, as decoded, for comparing with the host's WIT.
    #[serde(skip)]
    pub resolve: Resolve,
    /// Each named import's interface in [`Component::resolve`].
    #[serde(skip)]
    pub import_types: BTreeMap<InterfaceId, wit_parser::InterfaceId>,
    /// Each named export's interface in [`Component::resolve`].
    #[serde(skip)]
    pub export_types: BTreeMap<InterfaceId, wit_parser::InterfaceId>,
}

impl Component {
    /// Reads and decodes the component at `path`.
    pub fn read(path: &Path) -> Result<Component> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read component `{}`", path.display()))?;
        Self::from_bytes(path, bytes)
    }

    /// Decodes a component from its bytes; `path` is used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Component> {
        let shown = path.display();
        if !bytes.starts_with(b"\0asm") {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
            if text.trim_start().starts_with('(') {
                bail!(
                    "`{shown}` is WebAssembly text, not a binary component; \
                     build it to a component first (e.g. `wasm-tools parse {shown} -o app.wasm`)"
                );
            }
            bail!(
                "`{shown}` is not a WebAssembly file (it does not start with the `\\0asm` magic bytes); \
                 pass the component your guest build produced (e.g. target/wasm32-wasip2/release/app.wasm)"
            );
        }
        if wasmparser::Parser::is_core_wasm(&bytes) {
            bail!(
                "`{shown}` is a core WebAssembly module, not a component; \
                 build for wasm32-wasip2, or turn it into a component with \
                 `qwasr-gen componentize {shown} -o app.wasm` (or `wasm-tools component new`)"
            );
        }
        if !wasmparser::Parser::is_component(&bytes) {
            bail!(
                "`{shown}` has an unknown WebAssembly encoding version; \
                 qwasr-gen reads components of the component model (layer 1)"
            );
        }
        let all = wasmparser::WasmFeatures::all();
        let mut validator = wasmparser::Validator::new_with_features(all);
        if let Err(e) = validator.validate_all(&bytes) {
            bail!("`{shown}` is not a valid component: {e} (is the file truncated or corrupted?)");
        }
        let without_async = all
            - wasmparser::WasmFeatures::CM_ASYNC
            - wasmparser::WasmFeatures::CM_MORE_ASYNC_BUILTINS
            - wasmparser::WasmFeatures::CM_ASYNC_STACKFUL;
        let async_abi = wasmparser::Validator::new_with_features(without_async)
            .validate_all(&bytes)
            .is_err();
        let code_size = wasmparser::Parser::new(0)
            .parse_all(&bytes)
            .filter_map(|p| match p {
                Ok(wasmparser::Payload::CodeSectionStart { size, .. }) => Some(size as usize),
                _ => None,
            })
            .sum();
        let decoded =
            decode(&bytes).with_context(|| format!("cannot decode the component `{shown}`"))?;
        let (resolve, world) = match decoded {
            DecodedWasm::Component(resolve, world) => (resolve, world),
            DecodedWasm::WitPackage(..) => bail!(
                "`{shown}` is a WIT package encoded as wasm, not a component with code; \
                 pass the guest's built component"
            ),
        };
        let w = &resolve.worlds[world];
        let (import_types, unnamed_imports) = items(&resolve, w.imports.iter());
        let (export_types, unnamed_exports) = items(&resolve, w.exports.iter());
        Ok(Component {
            imports: import_types.keys().cloned().collect(),
            exports: export_types.keys().cloned().collect(),
            import_types,
            export_types,
            path: path.to_path_buf(),
            size: bytes.len(),
            unnamed_imports,
            unnamed_exports,
            code_size,
            async_abi,
            bytes,
            resolve,
        })
    }
}

fn items<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = (&'a WorldKey, &'a WorldItem)>,
) -> (BTreeMap<InterfaceId, wit_parser::InterfaceId>, Vec<Unnamed>) {
    let mut named = BTreeMap::new();
    let mut unnamed = Vec::new();
    for (key, item) in items {
        match (key, item) {
            (WorldKey::Interface(id), _) => {
                match resolve.id_of(*id).map(|s| InterfaceId::parse(&s)) {
                    Some(Ok(parsed)) => {
                        named.insert(parsed, *id);
                    }
                    _ => unnamed.push(Unnamed {
                        name: resolve.name_world_key(key),
                        kind: "interface",
                    }),
                }
            }
            (WorldKey::Name(name), WorldItem::Interface { .. }) => unnamed.push(Unnamed {
                name: name.clone(),
                kind: "interface",
            }),
            (WorldKey::Name(name), WorldItem::Function(_)) => unnamed.push(Unnamed {
                name: name.clone(),
                kind: "function",
            }),
            // Type imports carry no behaviour the host must provide.
            (WorldKey::Name(_), WorldItem::Type { .. }) => {}
        }
    }
    unnamed.sort_by(|a, b| a.name.cmp(&b.name));
    (named, unnamed)
}
