//! The wasmtime engine, the compiled component and per-request stores.

use crate::{App, BackendConfig, Cli, Code, Host, KernelCtx, Limits, MemoryChecks};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::{FsPerms, WasiCtx};

/// Bytes of a linear memory (and of a table) kept mapped between requests.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;
const KEEP_RESIDENT_TABLE: usize = 1 << 20;

/// How often the epoch advances: guests yield to tokio this often, and their
/// deadline is checked then.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine and the compiled component, shared by every request.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

struct Inner {
    app: &'static App,
    cli: Cli,
    engine: Engine,
    component: Component,
    env: Vec<(String, String)>,
    data_root: std::path::PathBuf,
    /// One permit per pooled instance, shared by every server: work beyond
    /// the pool waits here instead of failing to instantiate.
    permits: Arc<tokio::sync::Semaphore>,
    /// Becomes `true` once SIGINT or SIGTERM arrives.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Kernel {
    /// Sets up the engine and compiles the app's component.
    pub fn new(app: &'static App, cli: Cli) -> Result<Kernel> {
        #[cfg(not(feature = "p3"))]
        if app.concurrency {
            anyhow::bail!(
                "the `{}` component uses the component model's async ABI (WASI 0.3), \
                 but this runtime was built without qwasr-kernel's `p3` feature; \
                 rebuild the runtime with qwasr-gen",
                app.name
            );
        }
        for (guest, host) in app.grants.dirs {
            if !std::path::Path::new(host).is_dir() {
                anyhow::bail!(
                    "granted directory `{host}` (for the guest's `{guest}`) does not exist; \
                     create it or change [grants] dirs in qwasr.toml"
                );
            }
        }
        let mut config = engine_config(&app.limits, app.concurrency);
        if matches!(app.component, Code::Precompiled { .. }) {
            config.with_custom_code_memory(Some(Arc::new(InPlace)));
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("setting up the wasmtime engine")?;
        let started = std::time::Instant::now();
        let component = load(&engine, app, &cli)?;
        tracing::debug!(elapsed = ?started.elapsed(), "component loaded");

        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("qwasr-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch thread")?;

        // Only granted variables, read once: the guest never sees the rest.
        let env = app
            .grants
            .env
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        let data_root = match (&cli.data_dir, app.data_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => dir.into(),
            (None, None) => ".qwasr-data".into(),
        };
        let data_root = std::path::absolute(&data_root).with_context(|| {
            format!(
                "cannot resolve the data directory `{}`",
                data_root.display()
            )
        })?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight work");
            let _ = stop.send(true);
        });
        Ok(Kernel {
            inner: Arc::new(Inner {
                app,
                cli,
                engine,
                component,
                env,
                data_root,
                permits: Arc::new(tokio::sync::Semaphore::new(app.limits.instances as usize)),
                stopping,
            }),
        })
    }

    /// Requests that may run at once (each holds one instance from the pool).
    pub fn concurrency(&self) -> usize {
        self.inner.app.limits.instances as usize
    }

    /// Waits for a free instance slot; hold the permit while the instance lives.
    /// Shared by every server, so HTTP requests and messages together never
    /// exceed `[limits] instances`.
    pub async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .context("the instance pool is closed")
    }

    /// Resolves once the runtime is asked to stop (SIGINT or SIGTERM). Every
    /// server waits on it, stops taking new work, and drains what is in flight.
    pub async fn stopping(&self) {
        let mut rx = self.inner.stopping.clone();
        // An error means the signal task is gone, which only happens at exit.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    /// The data directory's root: `QWASR_DATA_DIR` / `--data-dir`, else the
    /// manifest's `[app] data-dir`, else `./.qwasr-data` (absolute; created
    /// by the backends that use it, see [`BackendConfig::data_dir`]).
    pub fn data_root(&self) -> &std::path::Path {
        &self.inner.data_root
    }

    /// The app this runtime was built for.
    pub fn app(&self) -> &'static App {
        self.inner.app
    }

    /// The runtime's parsed command line.
    pub fn cli(&self) -> &Cli {
        &self.inner.cli
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.inner.component
    }

    /// Address for the HTTP server: `--addr` / `HTTP_ADDR`, else the manifest's.
    pub fn http_addr(&self) -> &str {
        self.inner
            .cli
            .addr
            .as_deref()
            .unwrap_or(self.inner.app.http_addr)
    }

    /// The configuration handed to one backend's `connect`.
    pub fn backend_config(
        &self,
        interface: &'static str,
        backend: &'static str,
        options: &[(&str, &str)],
    ) -> BackendConfig {
        BackendConfig {
            data_root: self.inner.data_root.clone(),
            app: self.inner.app,
            interface,
            backend,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: self.inner.cli.config.clone(),
        }
    }

    /// A linker with the standard WASI 0.2 interfaces, and for apps with
    /// concurrency also WASI 0.3's (wasmtime-wasi's p3, on the same
    /// [`WasiCtx`]), granting nothing by default.
    ///
    /// Both stay linked for a concurrency app: a component may import
    /// `wasi:cli@0.2.x` and `@0.3.0` at once (Rust's std on wasm32-wasip2
    /// plus a WASI 0.3 binding). WASI 0.3's host functions cannot even be
    /// registered on an engine without concurrency support.
    pub fn linker<T: Host>(&self) -> Result<Linker<T>> {
        let mut linker = Linker::new(&self.inner.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        #[cfg(feature = "p3")]
        if self.inner.app.concurrency {
            wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        }
        Ok(linker)
    }

    /// Resolves every import of the component once, for fast per-request instantiation.
    pub fn instantiate_pre<T: Host>(&self, linker: &Linker<T>) -> Result<InstancePre<T>> {
        linker
            .instantiate_pre(&self.inner.component)
            .map_err(anyhow::Error::from)
            .context("linking the component's imports")
    }

    /// Fresh per-request kernel state: WASI context from the grants, empty table.
    pub fn ctx(&self) -> KernelCtx {
        let app = self.inner.app;
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr().envs(&self.inner.env);
        for (guest, host) in app.grants.dirs {
            // Checked to exist at start-up; a directory removed since then is
            // simply not offered to this request.
            if let Err(e) = wasi.preopened_dir(host, guest, FsPerms::ReadWrite) {
                tracing::warn!("cannot open granted directory {host}: {e}");
            }
        }
        KernelCtx::new(wasi.build(), &app.limits)
    }

    /// A store for one request, with the memory limit and deadline applied:
    /// running wasm traps once the app's timeout has passed since now.
    pub fn store<T: Host>(&self, data: T) -> Store<T> {
        let mut store = Store::new(&self.inner.engine, data);
        store.limiter(|t| &mut t.kernel().limits);
        // The guest yields to tokio at every epoch tick until its deadline.
        // HTTP requests run on one current-thread runtime per core, so a
        // guest computing for its whole timeout would otherwise hold up
        // every other connection of its thread. A concurrency store's guest
        // also wakes the tasks it feeds (the connection sending the body it
        // just wrote); tokio keeps such a task in the next-task slot until
        // the guest waits, which `yield_now` lets go.
        let end = std::time::Instant::now() + self.inner.app.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if std::time::Instant::now() < end {
                wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            } else {
                wasmtime::UpdateDeadline::Interrupt
            })
        });
        store
    }
}

/// The engine configuration of every runtime; the generator precompiles with
/// this same configuration, so the machine code it embeds loads as-is.
///
/// Instances come from a pooling allocator sized by the app's limits:
/// `instances` live at once, each with at most `memory` bytes per memory.
///
/// `concurrency` is the component model's async ABI (WASI 0.3 components):
/// wasmtime checks it when loading precompiled code, so the generator decides
/// it per app and both sides use the same value; apps that do not need it
/// keep it off and pay nothing for it.
pub fn engine_config(limits: &Limits, concurrency: bool) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let instances = limits.instances.max(1);
    let memory = usize::try_from(limits.memory).unwrap_or(usize::MAX);
    // Guests from other toolchains (CPython, StarlingMonkey) bundle several
    // core modules and large function tables; leave them room.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .max_core_instances_per_component(64)
        .total_memories(instances.saturating_mul(2))
        .max_memories_per_component(8)
        .total_tables(instances.saturating_mul(4))
        .max_tables_per_component(16)
        .table_elements(100_000)
        .total_stacks(stacks(instances, concurrency))
        .max_memory_size(memory)
        // Every request gets a fresh instance, so slot reuse is the hot path:
        // reset only the pages the last request dirtied (PAGEMAP_SCAN, Linux
        // 6.7+), with memcpy/memset rather than madvise, keeping them
        // resident (bench/profile.md).
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        // Every slot reserves the most its memory may grow to, so memories
        // never move: compiled code may keep the base in a register.
        .memory_may_move(false)
        .concurrency_support(concurrency)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match limits.checks {
        // wasmtime's defaults: 4 GiB reserved plus a guard region per memory.
        MemoryChecks::GuardPages => config.signals_based_traps(true),
        // A reused slot needs no mprotect (nor a cross-CPU TLB flush).
        MemoryChecks::Explicit => config
            .signals_based_traps(false)
            .memory_guard_size(0)
            .memory_reservation(limits.memory),
    };
    config
}

/// The embedded image as the component's code memory, where it lies (see
/// [`crate::page_aligned!`]); an error if it is not page-aligned or its pages
/// cannot be made executable (e.g. a `noexec` mount).
fn in_place(engine: &Engine, bytes: &'static [u8]) -> Result<Component> {
    let page = rustix::param::page_size();
    anyhow::ensure!(
        bytes.as_ptr().addr().is_multiple_of(page),
        "the image is not page-aligned"
    );
    // SAFETY: the bytes were produced by `precompile` for this wasmtime
    // version and engine configuration (wasmtime re-checks both), are
    // compiled into this binary, so nobody else can alter them, and live as
    // long as the process.
    unsafe { Component::deserialize_raw(engine, std::ptr::NonNull::from(bytes)) }
        .map_err(anyhow::Error::from)
}

/// Makes code memory executable with `mprotect`, wherever it lies: in a copy
/// wasmtime made, or in place in the executable's read-only data.
struct InPlace;

impl wasmtime::CustomCodeMemory for InPlace {
    fn required_alignment(&self) -> usize {
        rustix::param::page_size()
    }

    fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        use rustix::mm::MprotectFlags;
        protect(ptr, len, MprotectFlags::READ | MprotectFlags::EXEC)
    }

    fn unpublish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        use rustix::mm::MprotectFlags;
        protect(ptr, len, MprotectFlags::READ | MprotectFlags::WRITE)
    }
}

fn protect(ptr: *const u8, len: usize, flags: rustix::mm::MprotectFlags) -> wasmtime::Result<()> {
    // SAFETY: wasmtime hands over page-aligned code memory it owns and runs
    // no code from it while its protection changes.
    unsafe { rustix::mm::mprotect(ptr.cast_mut().cast(), len, flags) }
        .map_err(|e| wasmtime::Error::msg(format!("mprotect of code memory failed: {e}")))
}

/// Whether `engine` runs with concurrency support (see [`App::concurrency`]).
///
/// Interface crates link their WASI 0.3 flavours only then: wasmtime refuses
/// to register such host functions on an engine without it, and a component
/// that imports them cannot even be compiled there.
pub fn concurrency_support(engine: &Engine) -> bool {
    #[cfg(feature = "p3")]
    {
        // wasmtime does not expose the setting; registering a concurrent
        // host function is the check it applies itself.
        let mut probe = Linker::<()>::new(engine);
        probe
            .root()
            .func_wrap_concurrent("probe", |_, (): ()| Box::pin(async { Ok(()) }))
            .is_ok()
    }
    #[cfg(not(feature = "p3"))]
    {
        let _ = engine;
        false
    }
}

/// Fiber stacks in the pool for `instances` live instances.
///
/// A store without concurrency runs its guest on one fiber at a time. A
/// store with concurrency runs guest code on a worker fiber it keeps between
/// calls, and takes one more stack for every guest task blocked in a
/// synchronous call while another of its tasks runs (components composed of
/// several, each with tasks of its own). Measured: one per store suffices
/// for a wit-bindgen 0.63 guest streaming bodies both ways with the pool
/// full (qwasr-wasi-http's tests/serve/p3.rs passes with one). A request that
/// finds no stack fails rather than waits, so concurrency apps get four:
/// a stack is reserved address space until a guest first runs on it, small
/// next to each instance's linear memory.
fn stacks(instances: u32, concurrency: bool) -> u32 {
    if concurrency {
        instances.saturating_mul(4)
    } else {
        instances
    }
}

/// Compiles a component to the machine code a runtime with these limits loads.
#[cfg(feature = "compiler")]
pub fn precompile(wasm: &[u8], limits: &Limits, concurrency: bool) -> Result<Vec<u8>> {
    // Compilation needs no instance pool; the pool's settings do not change
    // the code, and the artifact's compatibility check ignores them.
    let mut config = engine_config(limits, concurrency);
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    // The native-to-wasm address map is ~10% of an image and only adds wasm
    // offsets to trap backtraces (function names stay); loading ignores it.
    // Development runtimes (`--jit`) keep it.
    config.generate_address_map(false);
    let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
    engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)
        .context("compiling the component")
}

fn load(engine: &Engine, app: &App, cli: &Cli) -> Result<Component> {
    #[cfg(feature = "compiler")]
    if let Some(path) = &cli.component {
        return Component::from_file(engine, path)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling `{}`", path.display()));
    }
    match app.component {
        Code::Precompiled { image, id } => {
            let cache = crate::cache::Cache::open(cli, app.name, id);
            if let Some(cache) = &cache {
                match cache.load(engine, image.len()) {
                    Ok(Some(component)) => {
                        tracing::debug!("component loaded from the image cache");
                        return Ok(component);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("not using the image cache: {e:#}"),
                }
            }
            let component = in_place(engine, image)
                .or_else(|e| {
                    tracing::debug!("cannot run the embedded code in place ({e:#}); copying it");
                    // SAFETY: as for `in_place`.
                    unsafe { Component::deserialize(engine, image) }.map_err(anyhow::Error::from)
                })
                .with_context(|| {
                    format!(
                        "the embedded `{}` component does not fit this machine or runtime; \
                         rebuild the runtime with qwasr-gen on the machine it runs on",
                        app.name
                    )
                })?;
            if let Some(cache) = cache {
                cache.fill_in_background(image);
            }
            Ok(component)
        }
        #[cfg(feature = "compiler")]
        Code::Wasm(bytes) => Component::new(engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling the `{}` component", app.name)),
        #[cfg(not(feature = "compiler"))]
        Code::Wasm(_) => anyhow::bail!(
            "this runtime embeds WebAssembly but was built without a compiler; \
             enable qwasr-kernel's `compiler` feature or rebuild without --jit"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "compiler")]
    use crate::testing::{State, encode};

    #[cfg(any(feature = "compiler", not(feature = "p3")))]
    fn app(component: &'static [u8], concurrency: bool) -> &'static App {
        Box::leak(Box::new(App {
            concurrency,
            limits: Limits {
                memory: 1 << 20,
                timeout: Duration::from_secs(1),
                instances: 2,
                ..Limits::DEFAULT
            },
            ..App::new("kernel-test", Code::Wasm(component))
        }))
    }

    #[cfg(not(feature = "p3"))]
    #[tokio::test]
    async fn concurrency_needs_the_p3_feature() {
        let Err(e) = Kernel::new(app(&[], true), Cli::default()) else {
            panic!("a concurrency app started without the p3 feature");
        };
        assert!(
            e.to_string().contains("rebuild the runtime with qwasr-gen"),
            "{e}"
        );
    }

    /// A component importing every interface of the kernel's catalog entries
    /// (`[package.metadata.qwasr.kernel]`) that `concurrency` allows: WASI
    /// 0.2 always, and WASI 0.3 too for concurrency apps.
    #[cfg(feature = "compiler")]
    fn catalog_component(concurrency: bool) -> &'static [u8] {
        use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest: toml_edit::DocumentMut = include_str!("../Cargo.toml").parse().unwrap();
        let flavours = manifest["package"]["metadata"]["qwasr"]["kernel"]["flavours"]
            .as_array_of_tables()
            .unwrap();
        let (mut files, mut imports) = (Vec::new(), Vec::new());
        for flavour in flavours {
            if flavour.get("concurrency").and_then(|c| c.as_bool()) == Some(true) && !concurrency {
                continue;
            }
            let (package, version) = (
                flavour["package"].as_str().unwrap(),
                flavour["version"].as_str().unwrap(),
            );
            for file in flavour["wit"].as_array().unwrap() {
                let file = dir.join(file.as_str().unwrap());
                if !files.contains(&file) {
                    files.push(file);
                }
            }
            for name in flavour["imports"].as_array().unwrap() {
                imports.push(format!(
                    "import {package}/{}@{version};",
                    name.as_str().unwrap()
                ));
            }
        }
        let mut resolve = Resolve::default();
        for file in &files {
            resolve.push_path(file).unwrap();
        }
        let wit = format!(
            "package test:catalog; world app {{ {} }}",
            imports.join(" ")
        );
        let pkg = resolve.push_str("app.wit", &wit).unwrap();
        let world = resolve.select_world(&[pkg], Some("app")).unwrap();
        // The async ABI for a concurrency app, as a WASI 0.3 guest uses it.
        let abi = if concurrency {
            LiftLowerAbi::AsyncCallback
        } else {
            LiftLowerAbi::Sync
        };
        let module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Legacy(abi));
        encode(&resolve, world, module)
    }

    #[cfg(feature = "compiler")]
    #[tokio::test]
    async fn links_every_wasi_interface_the_catalog_lists() {
        let configs: &[bool] = if cfg!(feature = "p3") {
            &[false, true]
        } else {
            &[false]
        };
        for &concurrency in configs {
            let kernel = Kernel::new(
                app(catalog_component(concurrency), concurrency),
                Cli::default(),
            )
            .unwrap();
            assert_eq!(concurrency_support(kernel.engine()), concurrency);
            let linker = kernel.linker::<State<()>>().unwrap();
            if let Err(e) = kernel.instantiate_pre(&linker) {
                panic!("concurrency {concurrency}: {e:?}");
            }
        }
    }

    /// Either way of checking bounds: a `memory.grow` past the app's limit
    /// fails inside the guest, an access out of bounds traps the call, and
    /// the process carries on serving fresh instances.
    #[cfg(feature = "compiler")]
    #[tokio::test]
    async fn out_of_bounds_traps_and_growth_stops_at_the_limit() {
        use crate::testing::{State, component};
        let wasm = component(
            &[] as &[&str],
            "package test:mem; world app {
               export grow: func(pages: u32) -> s32;
               export peek: func(addr: u32) -> u32;
             }",
            r#"(module
                 (memory (export "memory") 1)
                 (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
                 (func (export "peek") (param i32) (result i32) (i32.load (local.get 0))))"#,
        );
        for checks in [MemoryChecks::GuardPages, MemoryChecks::Explicit] {
            let app = Box::leak(Box::new(App {
                limits: Limits {
                    memory: 4 << 16,
                    instances: 2,
                    checks,
                    ..Limits::DEFAULT
                },
                ..App::new("mem-test", Code::Wasm(wasm))
            }));
            let kernel = Kernel::new(app, Cli::default()).unwrap();
            let linker = kernel.linker::<State<()>>().unwrap();
            let pre = kernel.instantiate_pre(&linker).unwrap();
            for round in 0..3 {
                let mut store = kernel.store(State {
                    kernel: kernel.ctx(),
                    ctx: (),
                });
                let instance = pre.instantiate_async(&mut store).await.unwrap();
                let grow = instance
                    .get_typed_func::<(u32,), (i32,)>(&mut store, "grow")
                    .unwrap();
                let peek = instance
                    .get_typed_func::<(u32,), (u32,)>(&mut store, "peek")
                    .unwrap();
                let page = 1 << 16;
                assert_eq!(grow.call_async(&mut store, (2,)).await.unwrap(), (1,));
                // Past the 4-page limit: -1 to the guest, not a trap.
                assert_eq!(grow.call_async(&mut store, (2,)).await.unwrap(), (-1,));
                assert_eq!(
                    peek.call_async(&mut store, (3 * page - 4,)).await.unwrap(),
                    (0,)
                );
                let e = peek.call_async(&mut store, (3 * page,)).await.unwrap_err();
                assert_eq!(
                    e.downcast_ref::<wasmtime::Trap>(),
                    Some(&wasmtime::Trap::MemoryOutOfBounds),
                    "{checks:?}, round {round}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn concurrency_apps_get_more_stacks() {
        assert_eq!(stacks(10, false), 10);
        assert_eq!(stacks(10, true), 40);
        assert_eq!(stacks(u32::MAX, true), u32::MAX);
    }
}
