//! Comparing a component's interfaces with the WIT a host crate binds.
//!
//! wasmtime links a host function to an import only if their types are the
//! same, so two WIT texts published under one `name@version` (Spin's and the
//! proposal's `wasi:keyvalue@0.2.0-draft2`, sync and `async func` flavours)
//! are different interfaces to it. The planner compares types structurally
//! here, before anything is built: records by field names and types,
//! variants by case names and payloads, resources by where they are defined
//! (package, interface, name; versions semver-compatible), functions by kind
//! (`async` or not, method or free) and parameter and result types. Parameter
//! names do not take part: wasmtime's linker ignores them.

use crate::catalog::compatible;
use anyhow::{Context, Result};
use std::path::Path;
use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, PackageId, Resolve, Type, TypeDefKind, TypeId,
    TypeOwner,
};

/// Loads WIT packages in order (dependencies first); returns the last one.
pub fn load(paths: &[impl AsRef<Path>]) -> Result<(Resolve, PackageId)> {
    let mut resolve = Resolve::default();
    let mut last = None;
    for p in paths {
        let p = p.as_ref();
        let (pkg, _) = resolve
            .push_path(p)
            .with_context(|| format!("cannot load the WIT at `{}`", p.display()))?;
        last = Some(pkg);
    }
    let pkg = last.context("a flavour names no WIT")?;
    Ok((resolve, pkg))
}

/// The interface `name` of package `pkg`, if the package defines it.
pub fn interface(resolve: &Resolve, pkg: PackageId, name: &str) -> Option<InterfaceId> {
    resolve.packages[pkg].interfaces.get(name).copied()
}

/// Where a function of the component differs from the host's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The function, as WIT names it (`get-many`, `bucket.get`, `[constructor]message`).
    pub function: String,
    /// What differs, e.g. "result: the component has `list<tuple<string, option<list<u8>>>>` where the host has `list<option<tuple<string, list<u8>>>>`".
    pub why: String,
}

/// Which side calls: for an import the guest calls what the host defines, so
/// every function the component imports must exist in the host's interface;
/// for an export the host calls the guest, so every function of the host's
/// interface must exist in the component's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The component imports the interface.
    Import,
    /// The component exports the interface.
    Export,
}

/// Compares the component's interface `ci` with the host's `hi`.
pub fn compare(
    component: &Resolve,
    ci: InterfaceId,
    host: &Resolve,
    hi: InterfaceId,
    direction: Direction,
) -> Result<(), Mismatch> {
    let (required, required_res, offered, offered_res) = match direction {
        Direction::Import => (ci, component, hi, host),
        Direction::Export => (hi, host, ci, component),
    };
    for (name, f) in &required_res.interfaces[required].functions {
        let Some(g) = offered_res.interfaces[offered].functions.get(name) else {
            let why = match direction {
                Direction::Import => "the host's interface has no such function",
                Direction::Export => "the component does not export it",
            };
            return Err(Mismatch {
                function: display_name(f),
                why: why.into(),
            });
        };
        let (c, h) = match direction {
            Direction::Import => ((component, f), (host, g)),
            Direction::Export => ((component, g), (host, f)),
        };
        function(c, h).map_err(|why| Mismatch {
            function: display_name(f),
            why,
        })?;
    }
    Ok(())
}

/// `bucket.get` for `[method]bucket.get`, `message` constructor, `get-many`.
pub(crate) fn display_name(f: &Function) -> String {
    match f.name.split_once(']') {
        Some(("[constructor", rest)) => format!("{rest} constructor"),
        Some((_, rest)) => rest.to_string(),
        None => f.name.clone(),
    }
}

type Side<'a> = (&'a Resolve, &'a Function);

fn function((cr, cf): Side<'_>, (hr, hf): Side<'_>) -> Result<(), String> {
    let (ck, hk) = (kind(cr, &cf.kind), kind(hr, &hf.kind));
    let same_kind = ck.is_async == hk.is_async
        && ck.class == hk.class
        && match (&ck.resource, &hk.resource) {
            (Some(a), Some(b)) => same_resource(a, b),
            (None, None) => true,
            _ => false,
        };
    if !same_kind {
        return Err(format!(
            "the component's is {}, the host's is {}",
            describe(&ck),
            describe(&hk)
        ));
    }
    if cf.params.len() != hf.params.len() {
        return Err(format!(
            "the component's takes {} parameters, the host's {}",
            cf.params.len(),
            hf.params.len()
        ));
    }
    for (cp, hp) in cf.params.iter().zip(&hf.params) {
        if !same(cr, cp.ty, hr, hp.ty) {
            return Err(format!(
                "parameter `{}`: the component has `{}` where the host has `{}`{}",
                cp.name,
                show(cr, cp.ty),
                show(hr, hp.ty),
                inner(cr, cp.ty, hr, hp.ty)
            ));
        }
    }
    match (cf.result, hf.result) {
        (None, None) => Ok(()),
        (Some(c), Some(h)) if same(cr, c, hr, h) => Ok(()),
        (c, h) => Err(format!(
            "result: the component has `{}` where the host has `{}`{}",
            c.map_or("nothing".into(), |t| show(cr, t)),
            h.map_or("nothing".into(), |t| show(hr, t)),
            match (c, h) {
                (Some(c), Some(h)) => inner(cr, c, hr, h),
                _ => String::new(),
            }
        )),
    }
}

/// A function kind with its resource made comparable across two resolves.
#[derive(Debug)]
struct Kind {
    is_async: bool,
    class: &'static str,
    resource: Option<ResourceName>,
}

fn kind(r: &Resolve, k: &FunctionKind) -> Kind {
    let (class, resource) = match k {
        FunctionKind::Freestanding | FunctionKind::AsyncFreestanding => ("function", None),
        FunctionKind::Method(t) | FunctionKind::AsyncMethod(t) => ("method", Some(*t)),
        FunctionKind::Static(t) | FunctionKind::AsyncStatic(t) => ("static function", Some(*t)),
        FunctionKind::Constructor(t) => ("constructor", Some(*t)),
        FunctionKind::Getter | FunctionKind::Setter => ("property", None),
        FunctionKind::MethodGetter(t)
        | FunctionKind::MethodSetter(t)
        | FunctionKind::StaticGetter(t)
        | FunctionKind::StaticSetter(t) => ("property", Some(*t)),
    };
    Kind {
        is_async: k.is_async(),
        class,
        resource: resource.map(|t| resource_name(r, t)),
    }
}

fn describe(k: &Kind) -> String {
    let of = match &k.resource {
        Some(r) => format!(
            " of `{}`{}",
            r.name.as_deref().unwrap_or("?"),
            match (&r.package, &r.interface) {
                (Some((p, Some(v))), Some(i)) => format!(" ({p}/{i}@{v})"),
                _ => String::new(),
            }
        ),
        None => String::new(),
    };
    format!(
        "{}{}{of}",
        if k.is_async { "an `async` " } else { "a sync " },
        k.class
    )
}

/// A resource's identity: where it is defined, not which resolve holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceName {
    package: Option<(String, Option<semver::Version>)>,
    interface: Option<String>,
    name: Option<String>,
}

fn resource_name(r: &Resolve, t: TypeId) -> ResourceName {
    let t = dealias(r, t);
    let def = &r.types[t];
    let (package, interface) = match def.owner {
        TypeOwner::Interface(i) => {
            let iface = &r.interfaces[i];
            let pkg = iface.package.map(|p| {
                let n = &r.packages[p].name;
                (format!("{}:{}", n.namespace, n.name), n.version.clone())
            });
            (pkg, iface.name.clone())
        }
        _ => (None, None),
    };
    ResourceName {
        package,
        interface,
        name: def.name.clone(),
    }
}

fn same_resource(a: &ResourceName, b: &ResourceName) -> bool {
    let package = match (&a.package, &b.package) {
        (Some((an, av)), Some((bn, bv))) => {
            an == bn
                && match (av, bv) {
                    (Some(x), Some(y)) => compatible(x, y),
                    (None, None) => true,
                    _ => false,
                }
        }
        (None, None) => true,
        _ => false,
    };
    package && a.interface == b.interface && a.name == b.name
}

fn dealias(r: &Resolve, mut t: TypeId) -> TypeId {
    while let TypeDefKind::Type(Type::Id(next)) = r.types[t].kind {
        t = next;
    }
    t
}

/// A type with aliases of other types followed.
fn resolved(r: &Resolve, t: Type) -> Type {
    match t {
        Type::Id(id) => match r.types[dealias(r, id)].kind {
            TypeDefKind::Type(inner) => inner,
            _ => Type::Id(dealias(r, id)),
        },
        t => t,
    }
}

/// Whether `a` (in `ar`) and `b` (in `br`) are the same component-model type.
pub fn same(ar: &Resolve, a: Type, br: &Resolve, b: Type) -> bool {
    let (a, b) = (resolved(ar, a), resolved(br, b));
    let (a, b) = match (a, b) {
        (Type::Id(a), Type::Id(b)) => (a, b),
        (Type::Id(_), _) | (_, Type::Id(_)) => return false,
        (a, b) => return a == b,
    };
    let same_opt = |x: &Option<Type>, y: &Option<Type>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => same(ar, *x, br, *y),
        _ => false,
    };
    use TypeDefKind as K;
    match (&ar.types[a].kind, &br.types[b].kind) {
        (K::Record(x), K::Record(y)) => {
            x.fields.len() == y.fields.len()
                && x.fields
                    .iter()
                    .zip(&y.fields)
                    .all(|(f, g)| f.name == g.name && same(ar, f.ty, br, g.ty))
        }
        (K::Resource, K::Resource) => same_resource(&resource_name(ar, a), &resource_name(br, b)),
        (K::Handle(x), K::Handle(y)) => match (x, y) {
            (Handle::Own(x), Handle::Own(y)) | (Handle::Borrow(x), Handle::Borrow(y)) => {
                same_resource(&resource_name(ar, *x), &resource_name(br, *y))
            }
            _ => false,
        },
        (K::Flags(x), K::Flags(y)) => {
            x.flags.len() == y.flags.len()
                && x.flags.iter().zip(&y.flags).all(|(f, g)| f.name == g.name)
        }
        (K::Tuple(x), K::Tuple(y)) => {
            x.types.len() == y.types.len()
                && x.types
                    .iter()
                    .zip(&y.types)
                    .all(|(s, t)| same(ar, *s, br, *t))
        }
        (K::Variant(x), K::Variant(y)) => {
            x.cases.len() == y.cases.len()
                && x.cases
                    .iter()
                    .zip(&y.cases)
                    .all(|(c, d)| c.name == d.name && same_opt(&c.ty, &d.ty))
        }
        (K::Enum(x), K::Enum(y)) => {
            x.cases.len() == y.cases.len()
                && x.cases.iter().zip(&y.cases).all(|(c, d)| c.name == d.name)
        }
        (K::Option(x), K::Option(y)) | (K::List(x), K::List(y)) => same(ar, *x, br, *y),
        (K::Map(xk, xv), K::Map(yk, yv)) => same(ar, *xk, br, *yk) && same(ar, *xv, br, *yv),
        (K::FixedLengthList(x, n), K::FixedLengthList(y, m)) => n == m && same(ar, *x, br, *y),
        (K::Result(x), K::Result(y)) => same_opt(&x.ok, &y.ok) && same_opt(&x.err, &y.err),
        (K::Future(x), K::Future(y)) | (K::Stream(x), K::Stream(y)) => same_opt(x, y),
        _ => false,
    }
}

/// For two different named types, what differs inside them (`; in record
/// `row`: fields `index, fields` vs `field-name, value``), so a message shows
/// the difference even when both sides print as the same name.
fn inner(ar: &Resolve, a: Type, br: &Resolve, b: Type) -> String {
    let (Type::Id(x), Type::Id(y)) = (resolved(ar, a), resolved(br, b)) else {
        return String::new();
    };
    let (dx, dy) = (&ar.types[x], &br.types[y]);
    let named = |d: &wit_parser::TypeDef| d.name.clone();
    use TypeDefKind as K;
    let fields = |k: &TypeDefKind, r: &Resolve| -> Option<Vec<String>> {
        match k {
            K::Record(rec) => Some(
                rec.fields
                    .iter()
                    .map(|f| format!("{}: {}", f.name, show(r, f.ty)))
                    .collect(),
            ),
            K::Variant(v) => Some(
                v.cases
                    .iter()
                    .map(|c| match c.ty {
                        Some(t) => format!("{}({})", c.name, show(r, t)),
                        None => c.name.clone(),
                    })
                    .collect(),
            ),
            K::Enum(e) => Some(e.cases.iter().map(|c| c.name.clone()).collect()),
            K::Flags(f) => Some(f.flags.iter().map(|c| c.name.clone()).collect()),
            _ => None,
        }
    };
    if let (Some(n), Some(fx), Some(fy)) = (named(dx), fields(&dx.kind, ar), fields(&dy.kind, br))
        && fx != fy
    {
        return format!(
            " (`{n}` is {} {{ {} }} in the component, {{ {} }} in the host)",
            dx.kind.as_str(),
            fx.join(", "),
            fy.join(", ")
        );
    }
    // Look one level in for the first differing part.
    let pairs: Vec<(Type, Type)> = match (&dx.kind, &dy.kind) {
        (K::Option(p), K::Option(q)) | (K::List(p), K::List(q)) => vec![(*p, *q)],
        (K::Result(p), K::Result(q)) => [(p.ok, q.ok), (p.err, q.err)]
            .into_iter()
            .filter_map(|(p, q)| Some((p?, q?)))
            .collect(),
        (K::Tuple(p), K::Tuple(q)) => p.types.iter().copied().zip(q.types.clone()).collect(),
        (K::Record(p), K::Record(q)) => p
            .fields
            .iter()
            .zip(&q.fields)
            .map(|(f, g)| (f.ty, g.ty))
            .collect(),
        (K::Variant(p), K::Variant(q)) => p
            .cases
            .iter()
            .zip(&q.cases)
            .filter_map(|(c, d)| Some((c.ty?, d.ty?)))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .find(|(p, q)| !same(ar, *p, br, *q))
        .map(|(p, q)| inner(ar, p, br, q))
        .unwrap_or_default()
}

/// A type as WIT writes it: named types by name, anonymous ones spelled out.
pub fn show(r: &Resolve, t: Type) -> String {
    let id = match t {
        Type::Bool => return "bool".into(),
        Type::U8 => return "u8".into(),
        Type::U16 => return "u16".into(),
        Type::U32 => return "u32".into(),
        Type::U64 => return "u64".into(),
        Type::S8 => return "s8".into(),
        Type::S16 => return "s16".into(),
        Type::S32 => return "s32".into(),
        Type::S64 => return "s64".into(),
        Type::F32 => return "f32".into(),
        Type::F64 => return "f64".into(),
        Type::Char => return "char".into(),
        Type::String => return "string".into(),
        Type::ErrorContext => return "error-context".into(),
        Type::Id(id) => id,
    };
    let def = &r.types[id];
    if let Some(name) = &def.name {
        return name.clone();
    }
    let opt = |t: &Option<Type>| t.map_or("_".to_string(), |t| show(r, t));
    use TypeDefKind as K;
    match &def.kind {
        K::Handle(Handle::Own(t)) => show(r, Type::Id(*t)),
        K::Handle(Handle::Borrow(t)) => format!("borrow<{}>", show(r, Type::Id(*t))),
        K::Tuple(t) => format!(
            "tuple<{}>",
            t.types
                .iter()
                .map(|t| show(r, *t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        K::Option(t) => format!("option<{}>", show(r, *t)),
        K::List(t) => format!("list<{}>", show(r, *t)),
        K::Map(k, v) => format!("map<{}, {}>", show(r, *k), show(r, *v)),
        K::FixedLengthList(t, n) => format!("list<{}, {n}>", show(r, *t)),
        K::Result(res) => match (res.ok, res.err) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", show(r, ok)),
            (ok, err) => format!("result<{}, {}>", opt(&ok), opt(&err)),
        },
        K::Future(t) => t.map_or("future".into(), |t| format!("future<{}>", show(r, t))),
        K::Stream(t) => t.map_or("stream".into(), |t| format!("stream<{}>", show(r, t))),
        K::Type(t) => show(r, *t),
        other => other.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(wit: &str, name: &str) -> (Resolve, InterfaceId) {
        let mut r = Resolve::default();
        let pkg = r.push_str("t.wit", wit).unwrap();
        let i = interface(&r, pkg, name).unwrap();
        (r, i)
    }

    const PROPOSAL: &str = "package t:kv@0.2.0-draft2;
        interface store { resource bucket {} }
        interface batch { use store.{bucket};
          get-many: func(b: borrow<bucket>, keys: list<string>) -> result<list<option<tuple<string, list<u8>>>>, string>; }";

    #[test]
    fn a_different_result_shape_is_named_with_both_types() {
        let (h, hi) = iface(PROPOSAL, "batch");
        let spin = PROPOSAL.replace(
            "list<option<tuple<string, list<u8>>>>",
            "list<tuple<string, option<list<u8>>>>",
        );
        let (c, ci) = iface(&spin, "batch");
        let m = compare(&c, ci, &h, hi, Direction::Import).unwrap_err();
        assert_eq!(m.function, "get-many");
        assert_eq!(
            m.why,
            "result: the component has `result<list<tuple<string, option<list<u8>>>>, string>` \
             where the host has `result<list<option<tuple<string, list<u8>>>>, string>`"
        );
        let (c, ci) = iface(PROPOSAL, "batch");
        assert_eq!(compare(&c, ci, &h, hi, Direction::Import), Ok(()));
    }

    #[test]
    fn async_and_sync_functions_differ_and_records_show_their_fields() {
        let sync = "package t:sql@0.2.0-draft;
            interface rw { record row { index: string, n: u32 }
              query: func(q: string) -> list<row>; }";
        let (h, hi) = iface(sync, "rw");
        let (c, ci) = iface(&sync.replace("func(", "async func("), "rw");
        let m = compare(&c, ci, &h, hi, Direction::Import).unwrap_err();
        assert_eq!(
            m.why,
            "the component's is an `async` function, the host's is a sync function"
        );
        let (c, ci) = iface(&sync.replace("n: u32", "n: u64"), "rw");
        let m = compare(&c, ci, &h, hi, Direction::Import).unwrap_err();
        assert_eq!(
            m.why,
            "result: the component has `list<row>` where the host has `list<row>` \
             (`row` is record { index: string, n: u64 } in the component, { index: string, n: u32 } in the host)"
        );
    }

    #[test]
    fn imports_may_use_a_subset_and_exports_must_have_everything() {
        let host = "package t:m@0.1.0; interface h { a: func(); b: func(x: u32); }";
        let (h, hi) = iface(host, "h");
        let (c, ci) = iface("package t:m@0.1.0; interface h { a: func(); }", "h");
        assert_eq!(compare(&c, ci, &h, hi, Direction::Import), Ok(()));
        let m = compare(&c, ci, &h, hi, Direction::Export).unwrap_err();
        assert_eq!(m.function, "b");
        let (c, ci) = iface("package t:m@0.1.0; interface h { c: func(); }", "h");
        let m = compare(&c, ci, &h, hi, Direction::Import).unwrap_err();
        assert_eq!(
            (m.function.as_str(), m.why.as_str()),
            ("c", "the host's interface has no such function")
        );
    }

    #[test]
    fn resources_match_across_semver_compatible_packages() {
        let io = |v: &str| {
            format!(
                "package t:io@{v}; interface streams {{ resource input-stream {{}} }}
                 interface user {{ use streams.{{input-stream}}; read: func(s: borrow<input-stream>); }}"
            )
        };
        let (h, hi) = iface(&io("0.2.12"), "user");
        let (c, ci) = iface(&io("0.2.1"), "user");
        assert_eq!(compare(&c, ci, &h, hi, Direction::Import), Ok(()));
        // Methods of a resource too.
        let method = |v: &str| {
            io(v).replace(
                "resource input-stream {}",
                "resource input-stream { read: func(n: u64) -> list<u8>; }",
            )
        };
        let (h2, hi2) = iface(&method("0.2.12"), "streams");
        let (c, ci) = iface(&method("0.2.2"), "streams");
        assert_eq!(compare(&c, ci, &h2, hi2, Direction::Import), Ok(()));
        let (c, ci) = iface(&io("0.3.0"), "user");
        let (h, hi) = iface(&io("0.2.12"), "user");
        assert!(compare(&c, ci, &h, hi, Direction::Import).is_err());
    }
}
