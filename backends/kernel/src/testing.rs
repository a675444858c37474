//! What the tests of interface crates share: store states and guest
//! components built from WAT. Feature `testing`, which those crates enable
//! for their tests only (`[dev-dependencies]`): no runtime links this.
//!
//! These helpers panic on failure: they build test fixtures, never touch
//! user input.

use crate::{CtxView, Host, KernelCtx, View};
use std::path::Path;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtxView, WasiView};

/// A runtime's store state with one interface, as an emitted `main.rs`
/// declares it: the kernel's part and the interface's context.
pub struct State<C> {
    /// The kernel's per-store state ([`crate::Kernel::ctx`]).
    pub kernel: KernelCtx,
    /// The interface's context.
    pub ctx: C,
}

impl<C: Send + 'static> WasiView for State<C> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.kernel.wasi_view()
    }
}

impl<C: Send + 'static> Host for State<C> {
    fn kernel(&mut self) -> &mut KernelCtx {
        &mut self.kernel
    }
}

impl<C: Send> View<C> for State<C> {
    fn view(&mut self) -> CtxView<'_, C> {
        CtxView {
            ctx: &mut self.ctx,
            table: &mut self.kernel.table,
        }
    }
}

/// An interface's context and a resource table, without a kernel: for tests
/// that call the host functions themselves.
pub struct Bare<C> {
    /// The interface's context.
    pub ctx: C,
    /// Resources handed out.
    pub table: ResourceTable,
}

impl<C> Bare<C> {
    /// `ctx` with an empty table.
    pub fn new(ctx: C) -> Bare<C> {
        Bare {
            ctx,
            table: ResourceTable::new(),
        }
    }
}

impl<C: Send> View<C> for Bare<C> {
    fn view(&mut self) -> CtxView<'_, C> {
        CtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Runs `f` in the event loop of a store over [`Bare::new`]`(ctx)`, on an
/// engine with concurrency support, with the accessor an `async func` host
/// function of the interface whose [`HasData`] marker is `D` is given.
///
/// [`HasData`]: wasmtime::component::HasData
#[cfg(feature = "p3")]
pub async fn in_store<C, D, R>(
    ctx: C,
    f: impl AsyncFnOnce(&wasmtime::component::Accessor<Bare<C>, D>) -> R,
) -> R
where
    C: Send + 'static,
    D: for<'a> wasmtime::component::HasData<Data<'a> = CtxView<'a, C>>,
{
    let mut config = wasmtime::Config::new();
    config.concurrency_support(true);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let mut store = wasmtime::Store::new(&engine, Bare::new(ctx));
    store
        .run_concurrent(async |acc| f(&acc.with_getter::<D>(Bare::view)).await)
        .await
        .unwrap()
}

/// The core module `module` as a validated component of `world` in
/// `resolve`, leaked: [`crate::Code`] holds `'static` bytes, and a test's
/// process ends soon.
pub fn encode(
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
    mut module: Vec<u8>,
) -> &'static [u8] {
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();
    Box::leak(component.into_boxed_slice())
}

/// A component of the core module `wat` (WebAssembly text) with the one
/// world that the WIT source `world` declares, whose imports and exports
/// come from the WIT packages at `wit` (directories or files); see
/// [`encode`].
pub fn component(wit: &[impl AsRef<Path>], world: &str, wat: &str) -> &'static [u8] {
    let mut resolve = wit_parser::Resolve::default();
    for path in wit {
        resolve.push_path(path).unwrap();
    }
    let pkg = resolve.push_str("world.wit", world).unwrap();
    let world = resolve.select_world(&[pkg], None).unwrap();
    encode(&resolve, world, wat::parse_str(wat).unwrap())
}

/// A [`crate::BackendConfig`] for backend `backend` of `interface` in `app`,
/// with no options (set `options` on the result), data under the system's
/// temporary directory.
pub fn backend_config(
    app: &'static crate::App,
    interface: &'static str,
    backend: &'static str,
) -> crate::BackendConfig {
    crate::BackendConfig {
        data_root: std::env::temp_dir().join(format!("qwasr-test-{}", std::process::id())),
        app,
        interface,
        backend,
        options: Vec::new(),
        overrides: Vec::new(),
    }
}
