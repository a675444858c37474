//! The wasmtime engine, the compiled component and per-request stores.

use crate::{App, BackendConfig, Cli, Code, Host, KernelCtx, Limits};
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

/// How often the epoch advances; request deadlines are counted in these ticks.
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
    deadline_ticks: u64,
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
        for (guest, host) in app.grants.dirs {
            if !std::path::Path::new(host).is_dir() {
                anyhow::bail!(
                    "granted directory `{host}` (for the guest's `{guest}`) does not exist; \
                     create it or change [grants] dirs in qwasr.toml"
                );
            }
        }
        let engine = Engine::new(&engine_config(&app.limits, app.concurrency))
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
        let deadline_ticks =
            (app.limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
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
                deadline_ticks,
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

    /// A linker with the standard WASI 0.2 interfaces, granting nothing by default.
    pub fn linker<T: Host>(&self) -> Result<Linker<T>> {
        let mut linker = Linker::new(&self.inner.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
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

    /// A store for one request, with the memory limit and deadline applied.
    pub fn store<T: Host>(&self, data: T) -> Store<T> {
        let mut store = Store::new(&self.inner.engine, data);
        store.limiter(|t| &mut t.kernel().limits);
        store.set_epoch_deadline(self.inner.deadline_ticks);
        store.epoch_deadline_trap();
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
        .total_stacks(instances)
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
        // Bounds checks in the code instead of guard regions: a reused slot
        // then needs no mprotect (nor a cross-CPU TLB shootdown) per request.
        // Measured: ~1.5x requests/s on small guests, same on CPython.
        .signals_based_traps(false)
        .memory_guard_size(0)
        .memory_reservation(limits.memory)
        .concurrency_support(concurrency)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Compiles a component to the machine code a runtime with these limits loads.
#[cfg(feature = "compiler")]
pub fn precompile(wasm: &[u8], limits: &Limits, concurrency: bool) -> Result<Vec<u8>> {
    // Compilation needs no instance pool; the pool's settings do not change
    // the code, and the artifact's compatibility check ignores them.
    let mut config = engine_config(limits, concurrency);
    config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
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
    let _ = cli;
    match app.component {
        // SAFETY: the bytes were produced by `precompile` for this wasmtime
        // version and engine configuration (wasmtime re-checks both) and are
        // compiled into this binary, so nobody else can alter them.
        Code::Precompiled(bytes) => unsafe { Component::deserialize(engine, bytes) }
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "the embedded `{}` component does not fit this machine or runtime; \
                     rebuild the runtime with qwasr-gen on the machine it runs on",
                    app.name
                )
            }),
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
