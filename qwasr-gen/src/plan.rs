//! The plan: for every import, the crate and backend that serve it and why;
//! for every export, the server that runs it. A plain value, decided from the
//! component, the manifest and the catalog, and nothing else.

use crate::catalog::{self, Catalog, CrateRef, Flavour, Interface, Match};
use crate::component::{Component, InterfaceId};
use crate::manifest::{self, Loc, Manifest};
use crate::wit::{self, Direction};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Why a backend was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The interface's embedded default: the manifest names none.
    Default,
    /// `[backends]` in the manifest, at this position.
    Manifest(Loc),
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reason::Default => s.serialize_str("default"),
            Reason::Manifest(loc) => s.collect_str(loc),
        }
    }
}

/// How one import is served.
#[derive(Debug, Clone, Serialize)]
pub struct ImportPlan {
    /// The import, as the component names it.
    pub import: InterfaceId,
    /// Interface short name (`keyvalue`), or `wasi` for the kernel's standard interfaces.
    pub interface: String,
    /// The crate that links it.
    #[serde(rename = "crate")]
    pub krate: String,
    /// Backend name, for interfaces with backends.
    pub backend: Option<String>,
    /// The flavour of the WIT whose types match the import (`sync`, `spin`, `async`).
    pub flavour: String,
}

/// How one export is run.
#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    /// The export, as the component names it.
    pub export: InterfaceId,
    /// The server that runs it (`http`), or `None` when nothing does.
    pub server: Option<String>,
    /// The flavour of the WIT whose types match the export, when a server runs it.
    pub flavour: Option<String>,
}

/// One interface crate linked into the runtime, with its backend.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// Short name (`keyvalue`).
    pub interface: String,
    /// The interface crate.
    #[serde(rename = "crate")]
    pub krate: CrateRef,
    /// Chosen backend.
    pub backend: String,
    /// The backend's crate (the interface crate for embedded defaults).
    pub backend_crate: CrateRef,
    /// Rust module in the backend crate holding `connect`.
    pub module: String,
    /// Options handed to `connect` (manifest `[backends]` table, or `[config]` for config).
    pub options: Vec<(String, String)>,
    /// Environment variables the backend reads.
    pub env: Vec<crate::catalog::EnvVar>,
    /// Cargo feature of the backend's crate to enable, when that crate is
    /// not the interface crate.
    pub backend_feature: Option<String>,
    /// Why this backend.
    pub reason: Reason,
    /// Cargo features of the interface crate this app needs.
    pub features: Vec<String>,
}

/// A server the runtime starts, for an export.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Server name (`http`).
    pub name: String,
    /// The interface whose crate provides `serve`.
    pub interface: String,
}

/// An allow-list of names for one interface.
#[derive(Debug, Clone, Serialize)]
pub struct NameGrant {
    /// Interface short name (`keyvalue`).
    pub interface: String,
    /// The manifest key (`buckets`).
    pub key: String,
    /// The names the guest may open.
    pub names: Vec<String>,
}

/// Limits the manifest sets; `None` takes the kernel's default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    /// Bytes of linear memory per instance.
    pub memory: Option<u64>,
    /// Milliseconds per request.
    pub timeout_ms: Option<u64>,
    /// Live instances at once.
    pub instances: Option<u32>,
    /// How out-of-bounds memory accesses are caught, chosen for this
    /// component (in JSON as the manifest spells it).
    #[serde(rename = "memory_checks", serialize_with = "checks_name")]
    pub checks: qwasr_kernel::MemoryChecks,
    /// Why: set in the manifest, or what qwasr-gen saw in the component.
    pub memory_checks_reason: String,
}

/// The whole decision.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// App (and binary) name.
    pub app: String,
    /// The component file.
    pub component: PathBuf,
    /// The kernel crate.
    pub kernel: CrateRef,
    /// Every import, in the component's order (sorted).
    pub imports: Vec<ImportPlan>,
    /// Every export.
    pub exports: Vec<ExportPlan>,
    /// Interface crates to link, by name.
    pub links: Vec<Link>,
    /// Servers to start.
    pub servers: Vec<Server>,
    /// `[http] addr`, if set.
    pub http_addr: Option<String>,
    /// `[http] outgoing`.
    pub outgoing: Vec<String>,
    /// `[limits]`.
    pub limits: Limits,
    /// `[grants] env`.
    pub grant_env: Vec<String>,
    /// `[grants] dirs`: guest path, host path.
    pub grant_dirs: Vec<(String, PathBuf)>,
    /// Names the guest may open, per interface (`[keyvalue] buckets`, ...).
    pub names: Vec<NameGrant>,
    /// `[app] data-dir` (absolute).
    pub data_dir: Option<PathBuf>,
    /// `[messaging] topics`.
    pub topics: Vec<String>,
    /// `[messaging] max-message-size`.
    pub max_message_size: Option<u64>,
    /// Cargo features of the kernel this app needs.
    pub kernel_features: Vec<String>,
    /// Whether the component uses the component model's async ABI (WASI 0.3).
    pub concurrency: bool,
    /// Things worth knowing that are not errors.
    pub notes: Vec<String>,
}

/// Decides the plan, or explains every import and manifest entry it cannot honour.
pub fn plan(component: &Component, manifest: &Manifest, catalog: &Catalog) -> Result<Plan> {
    plan_with(component, manifest, catalog, false)
}

/// [`plan`], optionally linking every interface in the catalog whether the
/// component uses it or not: the "general-purpose runtime" benchmarks compare against.
pub fn plan_with(
    component: &Component,
    manifest: &Manifest,
    catalog: &Catalog,
    link_all: bool,
) -> Result<Plan> {
    let mut problems: Vec<String> = Vec::new();
    let mut notes = Vec::new();

    for u in &component.unnamed_imports {
        problems.push(format!(
            "the component imports the bare {} `{}` rather than a WIT interface; \
             qwasr serves interface imports such as wasi:keyvalue/store@0.2.0-draft",
            u.kind, u.name
        ));
    }

    if let Some(refusal) = release_candidate(component) {
        bail!(refusal);
    }

    // Imports and exports grouped by package and version: one flavour serves
    // each group, chosen by comparing types with every flavour the catalog has.
    let mut groups: BTreeMap<(String, String), Vec<(&InterfaceId, Direction)>> = BTreeMap::new();
    for id in &component.imports {
        groups
            .entry(group_key(id))
            .or_default()
            .push((id, Direction::Import));
    }
    for id in &component.exports {
        groups
            .entry(group_key(id))
            .or_default()
            .push((id, Direction::Export));
    }
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut servers: Vec<Server> = Vec::new();
    let mut needed: BTreeMap<String, &Interface> = BTreeMap::new();
    let mut chosen_flavours: Vec<(Option<&Interface>, &Flavour)> = Vec::new();
    for members in groups.values() {
        let first = members[0].0;
        let candidates: Vec<(Option<&Interface>, &Flavour)> = catalog
            .flavours()
            .filter(|(_, f)| f.covers(first))
            .collect();
        if candidates.is_empty() {
            for (id, dir) in members {
                match dir {
                    Direction::Import => problems.push(unsupported(id, catalog)),
                    Direction::Export => exports.push(unserved(id, &mut notes)),
                }
            }
            continue;
        }
        let mut misfits = Vec::new();
        let mut found = None;
        for (owner, flavour) in &candidates {
            match fits(component, members, flavour, catalog) {
                Ok(()) => {
                    found = Some((*owner, *flavour));
                    break;
                }
                Err(m) => misfits.push((*owner, *flavour, m)),
            }
        }
        let Some((owner, flavour)) = found else {
            problems.push(no_flavour(catalog, &misfits));
            continue;
        };
        chosen_flavours.push((owner, flavour));
        let krate = owner.map_or(&catalog.kernel, |i| &i.krate);
        if let Some(i) = owner {
            needed.insert(i.name.clone(), i);
        }
        for (id, dir) in members {
            match dir {
                Direction::Import => imports.push(ImportPlan {
                    import: (*id).clone(),
                    interface: owner.map_or("wasi".to_string(), |i| i.name.clone()),
                    krate: krate.name.clone(),
                    backend: None,
                    flavour: flavour.flavour.clone(),
                }),
                Direction::Export => {
                    let server = flavour
                        .exports
                        .iter()
                        .find(|(iface, _)| *iface == id.interface)
                        .map(|(_, server)| server.clone());
                    match (server, owner) {
                        (Some(server), Some(i)) => {
                            if !servers.iter().any(|s| s.name == server) {
                                servers.push(Server {
                                    name: server.clone(),
                                    interface: i.name.clone(),
                                });
                            }
                            exports.push(ExportPlan {
                                export: (*id).clone(),
                                server: Some(server),
                                flavour: Some(flavour.flavour.clone()),
                            });
                        }
                        _ => exports.push(unserved(id, &mut notes)),
                    }
                }
            }
        }
    }
    imports.sort_by(|a, b| a.import.cmp(&b.import));
    exports.sort_by(|a, b| a.export.cmp(&b.export));
    if let Some(p) = sync_export_calling_async(component, &exports) {
        problems.push(p);
    }
    if servers.is_empty() {
        let supported: Vec<String> = catalog
            .flavours()
            .flat_map(|(_, f)| f.exports.iter().map(|(i, _)| major_minor(&f.id(i))))
            .collect();
        problems.push(format!(
            "the component exports nothing qwasr can run (it exports {}); \
             a service must export one of: {}",
            if component.exports.is_empty() {
                "no interfaces".to_string()
            } else {
                list(component.exports.iter().map(ToString::to_string))
            },
            list(dedup(supported))
        ));
    }

    if link_all {
        for i in &catalog.interfaces {
            needed.entry(i.name.clone()).or_insert(i);
            // One flavour per name@version: two would define the same imports.
            let mut seen = Vec::new();
            for f in &i.flavours {
                let key = (f.package.clone(), f.version.clone());
                if !seen.contains(&key) {
                    seen.push(key);
                    if !chosen_flavours.iter().any(|(_, c)| std::ptr::eq(*c, f)) {
                        chosen_flavours.push((Some(i), f));
                    }
                }
            }
        }
    }

    // The manifest's [backends] entries.
    let mut chosen: BTreeMap<String, &manifest::BackendChoice> = BTreeMap::new();
    for choice in &manifest.backends {
        let key = &choice.interface.value;
        let Some(interface) = catalog.interface(key) else {
            let names: Vec<&str> = catalog.interfaces.iter().map(|i| i.name.as_str()).collect();
            let hint = match manifest::nearest(key, &names) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("known interfaces: {}", names.join(", ")),
            };
            problems.push(format!(
                "{}: unknown interface `{key}` in [backends]; {hint}",
                choice.interface.loc
            ));
            continue;
        };
        let backend = &choice.backend.value;
        if catalog.backend_for(interface, backend).is_none() {
            let available: Vec<&str> = catalog
                .backends_for(interface)
                .map(|b| b.name.as_str())
                .collect();
            let what = if catalog.backends.iter().any(|b| b.name == *backend) {
                format!(
                    "backend `{backend}` does not implement {}",
                    interface.package
                )
            } else {
                format!("unknown backend `{backend}` for {key}")
            };
            let hint = match manifest::nearest(backend, &available) {
                Some(n) if catalog.backends.iter().all(|b| b.name != *backend) => {
                    format!("did you mean `{n}`?")
                }
                _ => format!("backends for {key}: {}", available.join(", ")),
            };
            problems.push(format!("{}: {what}; {hint}", choice.backend.loc));
            continue;
        }
        if let Some(known) = catalog
            .backend_for(interface, backend)
            .and_then(|b| b.options.as_ref())
        {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            for (option, _) in &choice.options {
                if known.contains(&option.as_str()) {
                    continue;
                }
                let hint = match manifest::nearest(option, &known) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None if known.is_empty() => "it takes none".to_string(),
                    None => format!("it takes: {}", known.join(", ")),
                };
                problems.push(format!(
                    "{}: backend `{backend}` has no option `{option}`; {hint}",
                    choice.backend.loc
                ));
            }
        }
        if !needed.contains_key(key) {
            notes.push(format!(
                "{}: [backends] {key} is set, but the component does not use {}; ignored",
                choice.interface.loc, interface.package
            ));
        }
        chosen.insert(key.clone(), choice);
    }
    if !manifest.config.is_empty() && !needed.contains_key("config") {
        notes
            .push("[config] is set, but the component does not import wasi:config; ignored".into());
    }
    for g in &manifest.names {
        if !needed.contains_key(&g.interface) {
            notes.push(format!(
                "{}: [{}] {} is set, but the component does not use wasi:{}; ignored",
                g.loc, g.interface, g.key, g.interface
            ));
        }
    }
    if !manifest.topics.is_empty() && !servers.iter().any(|s| s.name == "messaging") {
        notes.push(
            "[messaging] topics is set, but the component does not export \
             wasi:messaging/incoming-handler; nothing subscribes"
                .into(),
        );
    }
    if servers.iter().any(|s| s.name == "messaging") && manifest.topics.is_empty() {
        notes.push(
            "the component exports wasi:messaging/incoming-handler but [messaging] topics \
             is empty: it will receive no messages"
                .into(),
        );
    }

    if !problems.is_empty() {
        let mut msg = String::new();
        if problems.len() == 1 {
            msg.push_str(&problems[0]);
        } else {
            let _ = write!(
                msg,
                "{} problems stop this app from building:",
                problems.len()
            );
            for p in &problems {
                let _ = write!(msg, "\n  - {p}");
            }
        }
        bail!(msg);
    }

    // The async ABI needs concurrency support in the engine, and so does any
    // flavour whose host functions are `async func`s.
    let concurrency = component.async_abi || chosen_flavours.iter().any(|(_, f)| f.concurrency);

    let mut links = Vec::new();
    for (name, interface) in &needed {
        let (backend_name, reason, mut options) = match chosen.get(name) {
            Some(c) => (
                c.backend.value.clone(),
                Reason::Manifest(c.backend.loc.clone()),
                c.options.clone(),
            ),
            None => (
                interface.default_backend.clone(),
                Reason::Default,
                Vec::new(),
            ),
        };
        if name == "config" {
            options.extend(manifest.config.iter().cloned());
        }
        let backend = catalog
            .backend_for(interface, &backend_name)
            .expect("checked above or by the catalog");
        for i in imports.iter_mut().filter(|i| i.interface == *name) {
            i.backend = Some(backend_name.clone());
        }
        let mut features: Vec<String> = interface
            .features
            .iter()
            .filter(|(id, _)| {
                link_all
                    || component
                        .imports
                        .iter()
                        .any(|import| catalog::matches(id, import) == Match::Yes)
            })
            .map(|(_, feature)| feature.clone())
            .chain(
                chosen_flavours
                    .iter()
                    .filter(|(owner, _)| owner.is_some_and(|o| o.name == *name))
                    .filter_map(|(_, f)| f.feature.clone()),
            )
            .collect();
        features.sort();
        features.dedup();
        links.push(Link {
            interface: name.clone(),
            krate: interface.krate.clone(),
            backend: backend_name,
            backend_crate: backend.krate.clone(),
            module: backend
                .module
                .clone()
                .unwrap_or_else(|| name.replace('-', "_")),
            options,
            env: backend.env.clone(),
            backend_feature: backend.feature.clone(),
            reason,
            features,
        });
    }

    Ok(Plan {
        app: app_name(component, manifest)?,
        component: component.path.clone(),
        kernel: catalog.kernel.clone(),
        imports,
        exports,
        links,
        servers,
        http_addr: manifest.http_addr.clone(),
        outgoing: manifest.outgoing.clone(),
        limits: {
            let (checks, reason) = memory_checks(component, manifest);
            Limits {
                memory: manifest.memory,
                timeout_ms: manifest.timeout.map(|t| t.as_millis() as u64),
                instances: manifest.instances,
                checks,
                memory_checks_reason: reason,
            }
        },
        grant_env: manifest.grant_env.clone(),
        grant_dirs: manifest.grant_dirs.clone(),
        names: manifest
            .names
            .iter()
            .filter(|g| needed.contains_key(&g.interface))
            .map(|g| NameGrant {
                interface: g.interface.clone(),
                key: g.key.to_string(),
                names: g.names.clone(),
            })
            .collect(),
        data_dir: manifest.data_dir.clone(),
        topics: manifest.topics.clone(),
        max_message_size: manifest.max_message_size,
        concurrency,
        kernel_features: {
            let mut f: Vec<String> = chosen_flavours
                .iter()
                .filter(|(owner, _)| owner.is_none())
                .filter_map(|(_, f)| f.feature.clone())
                .chain(
                    catalog
                        .kernel_concurrency_feature
                        .clone()
                        .filter(|_| concurrency),
                )
                .collect();
            f.sort();
            f.dedup();
            f
        },
        notes,
    })
}

/// WASI 0.3 release candidates in real use, and who emits them.
const KNOWN_RELEASE_CANDIDATES: &[(&str, &str)] = &[
    (
        "0.3.0-rc-2026-03-15",
        "Spin's current `http-rust` template emits it (spin-sdk 6.0, through wasip3 0.6)",
    ),
    (
        "0.3.0-rc-2025-09-16",
        "the original Qwasr's published examples import it",
    ),
];

/// A component built against a WASI 0.3 release candidate is refused before
/// anything is built: wasmtime refuses it at link time, and renamed to
/// `@0.3.0` it links and then traps, because the async ABI its bindings
/// were built for differs from the final one.
fn release_candidate(component: &Component) -> Option<String> {
    // Exports first: the handler is what people recognise.
    let rc: Vec<&InterfaceId> = component
        .exports
        .iter()
        .chain(&component.imports)
        .filter(|id| {
            id.namespace == "wasi"
                && id.version.as_ref().is_some_and(|v| {
                    v.major == 0 && v.minor == 3 && v.pre.as_str().starts_with("rc")
                })
        })
        .collect();
    let first = rc.first()?;
    let mut versions: Vec<String> = rc
        .iter()
        .filter_map(|id| id.version.as_ref().map(ToString::to_string))
        .collect();
    versions.sort();
    versions.dedup();
    let known: Vec<String> = versions
        .iter()
        .filter_map(|v| {
            KNOWN_RELEASE_CANDIDATES
                .iter()
                .find(|(rc, _)| rc == v)
                .map(|(rc, who)| format!("`@{rc}`: {who}"))
        })
        .collect();
    Some(format!(
        "the component is built against a WASI 0.3 release candidate ({}, e.g. {first}, {} of its {} imports and exports); \
         qwasr serves WASI 0.3.0 and later (wasmtime 48 binds only the final 0.3.0), and a release candidate's \
         bindings were built for a pre-release async ABI, so it is refused rather than built into a runtime \
         that might link and then trap.{} \
         Rebuild the guest against WASI 0.3.0 or later: a `wasip3` release built on it (0.10 targets 0.3.2), \
         or the SDK release that uses one",
        versions
            .iter()
            .map(|v| format!("`@{v}`"))
            .collect::<Vec<_>>()
            .join(", "),
        rc.len(),
        component.imports.len() + component.exports.len(),
        if known.is_empty() {
            String::new()
        } else {
            format!(" {}.", known.join("; "))
        }
    ))
}

/// `(wasi:keyvalue, 0.2.0-draft2)`: imports of one package at one version
/// are served by one flavour.
fn group_key(id: &InterfaceId) -> (String, String) {
    (
        id.package_name(),
        id.version
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    )
}

/// An export no server runs: noted, left alone.
fn unserved(id: &InterfaceId, notes: &mut Vec<String>) -> ExportPlan {
    notes.push(format!(
        "export {id} is not run by any server; it is left alone"
    ));
    ExportPlan {
        export: id.clone(),
        server: None,
        flavour: None,
    }
}

/// A served export lifted synchronously cannot wait for an `async func`
/// import: wasmtime traps the moment the import has to wait ("cannot block a
/// synchronous task before returning"), so such a component is refused here.
fn sync_export_calling_async(component: &Component, exports: &[ExportPlan]) -> Option<String> {
    let functions = |id: &wit_parser::InterfaceId| {
        component.resolve.interfaces[*id]
            .functions
            .values()
            .collect::<Vec<_>>()
    };
    let sync_export = exports.iter().filter(|e| e.server.is_some()).find(|e| {
        component
            .export_types
            .get(&e.export)
            .is_some_and(|id| functions(id).iter().all(|f| !f.kind.is_async()))
    })?;
    let (import, function) = component.imports.iter().find_map(|i| {
        let id = component.import_types.get(i)?;
        functions(id)
            .into_iter()
            .find(|f| f.kind.is_async())
            .map(|f| (i, wit::display_name(f)))
    })?;
    Some(format!(
        "the component exports {} with synchronous functions but imports `async func`s \
         ({import}: `{function}`): a synchronous export cannot wait for an async import \
         (wasmtime traps when it has to); export the WASI 0.3 handler instead, or build \
         the guest against the sync flavour of {}",
        sync_export.export,
        import.package_name()
    ))
}

/// Why one flavour cannot serve a group.
struct Misfit {
    id: Box<InterfaceId>,
    what: String,
}

/// Whether `flavour` links every import of the group and runs every export
/// it has a server for, with the same function types as the component's.
fn fits(
    component: &Component,
    members: &[(&InterfaceId, Direction)],
    flavour: &Flavour,
    catalog: &Catalog,
) -> Result<(), Misfit> {
    let wit = catalog.wit(flavour).map_err(|e| Misfit {
        id: Box::new(members[0].0.clone()),
        what: format!("{e:#}"),
    })?;
    let (resolve, pkg) = (&wit.resolve.0, wit.package);
    for (id, dir) in members {
        let (listed, theirs) = match dir {
            Direction::Import => (
                flavour.imports.contains(&id.interface),
                component.import_types.get(*id),
            ),
            Direction::Export => (
                flavour.exports.iter().any(|(i, _)| *i == id.interface),
                component.export_types.get(*id),
            ),
        };
        if !listed {
            if *dir == Direction::Export {
                continue; // left alone, noted by the caller
            }
            return Err(Misfit {
                id: Box::new((*id).clone()),
                what: format!(
                    "not linked (the {} flavour links {})",
                    flavour.flavour,
                    list(flavour.imports.iter().cloned())
                ),
            });
        }
        let (Some(theirs), Some(ours)) = (theirs, wit::interface(resolve, pkg, &id.interface))
        else {
            return Err(Misfit {
                id: Box::new((*id).clone()),
                what: format!(
                    "the {} flavour's WIT has no interface `{}`",
                    flavour.flavour, id.interface
                ),
            });
        };
        wit::compare(&component.resolve, *theirs, resolve, ours, *dir).map_err(|m| Misfit {
            id: Box::new((*id).clone()),
            what: format!("function `{}`: {}", m.function, m.why),
        })?;
    }
    Ok(())
}

/// The problem when no flavour matches: the first function that differs, per flavour.
fn no_flavour(catalog: &Catalog, misfits: &[(Option<&Interface>, &Flavour, Misfit)]) -> String {
    let owner =
        |i: Option<&Interface>| i.map_or(catalog.kernel.name.clone(), |i| i.krate.name.clone());
    match misfits {
        [(i, f, m)] => format!(
            "{} does not match the WIT qwasr binds for it ({} flavour, {}): {}; \
             build the guest against that WIT",
            m.id,
            f.flavour,
            owner(*i),
            m.what
        ),
        _ => {
            let mut msg = format!(
                "{} matches none of the flavours qwasr binds for {}@{}:",
                misfits[0].2.id, misfits[0].1.package, misfits[0].1.version
            );
            for (i, f, m) in misfits {
                let _ = write!(
                    msg,
                    "\n      {} ({}): {}: {}",
                    f.flavour,
                    owner(*i),
                    m.id,
                    m.what
                );
            }
            msg.push_str("\n    build the guest against one of those");
            msg
        }
    }
}

/// Why nothing serves `import`: an unknown package, or a known one at another version.
fn unsupported(import: &InterfaceId, catalog: &Catalog) -> String {
    let same_package: Vec<InterfaceId> = catalog
        .flavours()
        .filter(|(_, f)| f.package == import.package_name())
        .flat_map(|(_, f)| f.imports.iter().map(|i| f.id(i)))
        .filter(|p| p.interface == import.interface)
        .collect();
    if !same_package.is_empty() {
        let versions: Vec<String> = same_package.iter().map(major_minor).collect();
        return format!(
            "{import} is not supported at this version; qwasr serves {}: build the guest against one of those",
            list(dedup(versions))
        );
    }
    let mut supported: Vec<String> = catalog
        .interfaces
        .iter()
        .map(|i| i.package.clone())
        .collect();
    supported.push("wasi:io/cli/clocks/random/filesystem/sockets (0.2)".into());
    format!(
        "no backend serves the import {import}; supported packages: {}",
        list(dedup(supported))
    )
}

/// `wasi:http/types@0.2.x` for `@0.2.12`; exact for pre-releases.
pub(crate) fn major_minor(p: &InterfaceId) -> String {
    let base = format!("{}:{}/{}", p.namespace, p.package, p.interface);
    match &p.version {
        Some(v) if v.pre.is_empty() && v.major == 0 => format!("{base}@0.{}.x", v.minor),
        Some(v) if v.pre.is_empty() => format!("{base}@{}.x", v.major),
        Some(v) => format!("{base}@{v}"),
        None => base,
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

/// The manifest's `[app] name`, else the component file's stem made into a crate name.
fn app_name(component: &Component, manifest: &Manifest) -> Result<String> {
    if let Some(name) = &manifest.name {
        return Ok(name.value.clone());
    }
    let stem = component
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if manifest::valid_name(&name) {
        Ok(name)
    } else {
        bail!(
            "cannot make a binary name from `{}`; set one in qwasr.toml:\n\n    [app]\n    name = \"my-app\"",
            component.path.display()
        )
    }
}

/// Components with at least this much code are language runtimes
/// (interpreters, JavaScript and Python engines): every request runs a great
/// deal of their code, so a bounds check per memory access would cost them
/// more than guard pages cost per request (bench/profile.md).
pub const LARGE_CODE: usize = 1 << 20;

fn checks_name<S: serde::Serializer>(
    checks: &qwasr_kernel::MemoryChecks,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(checks.as_str())
}

/// Guard pages reserve ~4 GiB of address space per memory, and the pool
/// holds two memories per instance: 4096 instances take 32 TiB of the 128 TiB
/// a process has on x86-64.
pub const GUARD_PAGES_MAX_INSTANCES: u32 = 4096;

/// Guard pages or explicit bounds checks for `component` (see
/// [`qwasr_kernel::MemoryChecks`]), and why.
fn memory_checks(
    component: &Component,
    manifest: &Manifest,
) -> (qwasr_kernel::MemoryChecks, String) {
    use qwasr_kernel::MemoryChecks::{Explicit, GuardPages};
    if let Some(checks) = manifest.memory_checks {
        return (checks, "set in [limits] memory-checks".into());
    }
    let kib = component.code_size.div_ceil(1024);
    let instances = manifest
        .instances
        .unwrap_or(qwasr_kernel::Limits::DEFAULT.instances);
    if component.code_size >= LARGE_CODE && instances > GUARD_PAGES_MAX_INSTANCES {
        (
            Explicit,
            format!(
                "{kib} KiB of code would take guard pages, but {instances} instances would \
                 reserve more address space than that allows (up to \
                 {GUARD_PAGES_MAX_INSTANCES} instances)"
            ),
        )
    } else if component.code_size >= LARGE_CODE {
        (
            GuardPages,
            format!(
                "{kib} KiB of code, a language runtime: its own code dominates each request; \
                 \"explicit\" in [limits] memory-checks favours instance reuse instead"
            ),
        )
    } else {
        (
            Explicit,
            format!(
                "{kib} KiB of code: per-request set-up dominates small guests; \
                 compute-heavy ones run faster with \"guard-pages\" in [limits] memory-checks"
            ),
        )
    }
}

impl Plan {
    /// The plan as people read it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "app {} ({})", self.app, self.component.display());
        let _ = writeln!(out, "\nimports:");
        for i in &self.imports {
            match &i.backend {
                Some(b) => {
                    let link = self.links.iter().find(|l| l.interface == i.interface);
                    let why = match link.map(|l| &l.reason) {
                        Some(Reason::Manifest(loc)) => format!("set in {loc}"),
                        _ => "embedded default".into(),
                    };
                    let _ = writeln!(
                        out,
                        "  {:<44} {:<8} {} via {}, backend {b} ({why})",
                        i.import.to_string(),
                        i.flavour,
                        i.interface,
                        i.krate
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  {:<44} {:<8} {} (standard WASI, nothing granted)",
                        i.import.to_string(),
                        i.flavour,
                        i.krate
                    );
                }
            }
        }
        if self.imports.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        let _ = writeln!(out, "\nexports:");
        for e in &self.exports {
            match &e.server {
                Some(s) if s == "messaging" => {
                    let topics = if self.topics.is_empty() {
                        "no topics: set [messaging] topics".to_string()
                    } else {
                        format!("topics {}", self.topics.join(", "))
                    };
                    let _ = writeln!(
                        out,
                        "  {:<44} {:<8} run by the messaging subscriber ({topics})",
                        e.export.to_string(),
                        e.flavour.as_deref().unwrap_or("")
                    );
                }
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "  {:<44} {:<8} served by the {s} server",
                        e.export.to_string(),
                        e.flavour.as_deref().unwrap_or("")
                    );
                }
                None => {
                    let _ = writeln!(out, "  {:<44} not served", e.export.to_string());
                }
            }
        }
        let named: Vec<String> = manifest::NAME_SECTIONS
            .iter()
            .filter(|(i, _)| self.links.iter().any(|l| l.interface == *i))
            .map(
                |(i, key)| match self.names.iter().find(|g| g.interface == *i) {
                    Some(g) => format!("  {i} {key}: {}", g.names.join(", ")),
                    None => format!("  {i} {key}: any (no [{i}] {key} in the manifest)"),
                },
            )
            .collect();
        if !named.is_empty() {
            let _ = writeln!(out, "\nnames the guest may open:\n{}", named.join("\n"));
        }
        let _ = writeln!(
            out,
            "\ncrates: {}",
            self.crates()
                .iter()
                .map(|c| {
                    let features = self.features_of(c);
                    if features.is_empty() {
                        c.name.clone()
                    } else {
                        format!("{} (features: {})", c.name, features.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "\nmemory checks: {} ({})",
            self.limits.checks.as_str(),
            self.limits.memory_checks_reason
        );
        let env = self.env();
        if !env.is_empty() {
            let _ = writeln!(out, "\nenvironment (read by the backends at start-up):");
            for v in env {
                let _ = writeln!(out, "  {:<24} {}", v.name, v.help);
            }
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// The environment variables the chosen backends read, each once, by name.
    pub fn env(&self) -> Vec<&crate::catalog::EnvVar> {
        let mut env: Vec<&crate::catalog::EnvVar> =
            self.links.iter().flat_map(|l| l.env.iter()).collect();
        env.sort_by(|a, b| a.name.cmp(&b.name));
        env.dedup_by(|a, b| a.name == b.name);
        env
    }

    /// The cargo features this app enables on crate `c`.
    pub fn features_of(&self, c: &CrateRef) -> Vec<&str> {
        if *c == self.kernel {
            return self.kernel_features.iter().map(String::as_str).collect();
        }
        let mut features: Vec<&str> = self
            .links
            .iter()
            .filter(|l| l.krate == *c)
            .flat_map(|l| l.features.iter().map(String::as_str))
            .chain(
                self.links
                    .iter()
                    .filter(|l| l.backend_crate == *c)
                    .filter_map(|l| l.backend_feature.as_deref()),
            )
            .collect();
        features.sort();
        features.dedup();
        features
    }

    /// Every crate the runtime depends on, kernel first, without repeats.
    pub fn crates(&self) -> Vec<&CrateRef> {
        let mut crates = vec![&self.kernel];
        for l in &self.links {
            for c in [&l.krate, &l.backend_crate] {
                if !crates.contains(&c) {
                    crates.push(c);
                }
            }
        }
        crates
    }
}
