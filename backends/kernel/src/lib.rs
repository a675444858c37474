//! The core every runtime emitted by `qwasr-gen` links: the wasmtime engine
//! set up for services, the runtime's command line, the per-request store
//! with its limits and grants, and the conventions that tie interface crates
//! together.
//!
//! # How an emitted runtime uses it
//!
//! The generated `main.rs` declares one [`App`] (everything the manifest
//! decided, as constants), a `State` struct with a [`KernelCtx`] field and one
//! field per interface, and calls [`main`]. Each interface crate
//! (`qwasr-wasi-keyvalue`, …) exposes a `Ctx` type, an `add_to_linker`
//! function over `T: View<Ctx>`, and its backends expose `connect`
//! functions taking a [`BackendConfig`].
//!
//! ```ignore
//! impl qwasr_kernel::View<qwasr_wasi_keyvalue::Ctx> for State {
//!     fn view(&mut self) -> qwasr_kernel::CtxView<'_, qwasr_wasi_keyvalue::Ctx> {
//!         qwasr_kernel::CtxView { ctx: &mut self.keyvalue, table: &mut self.kernel.table }
//!     }
//! }
//! ```

#![deny(missing_docs)]

mod cache;
mod cli;
mod engine;
pub mod fs;
pub mod service;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
mod topics;

pub use cli::Cli;
#[cfg(feature = "compiler")]
pub use engine::precompile;
pub use engine::{Kernel, concurrency_support, engine_config};

pub use topics::{check_topic, check_topic_pattern, topic_matches};

pub use anyhow;
/// The allocator every emitted runtime installs as its `#[global_allocator]`.
pub use mimalloc::MiMalloc as Allocator;
pub use tokio;
pub use tracing;
pub use wasmtime;
pub use wasmtime_wasi;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView};

/// Everything `qwasr-gen` decided about an app, compiled into its runtime.
#[derive(Debug, Clone, Copy)]
pub struct App {
    /// The app's name (the binary's name).
    pub name: &'static str,
    /// Version of the generator that emitted the runtime.
    pub generator: &'static str,
    /// The component, precompiled or as WebAssembly.
    pub component: Code,
    /// Whether the component uses the component model's async ABI (WASI 0.3):
    /// the engine then runs with concurrency support (needs the `p3` feature).
    pub concurrency: bool,
    /// What the runtime serves, one line per server (shown by `--help`).
    pub serves: &'static [&'static str],
    /// Resource limits per request.
    pub limits: Limits,
    /// What the guest may see of the host.
    pub grants: Grants,
    /// Address the HTTP server listens on unless `HTTP_ADDR` says otherwise.
    pub http_addr: &'static str,
    /// Hosts (`host:port`) outgoing HTTP requests may reach; empty denies all.
    pub outgoing: &'static [&'static str],
    /// The manifest's `[app] data-dir` (absolute); `QWASR_DATA_DIR` overrides
    /// it, and without either the runtime uses `./.qwasr-data`.
    pub data_dir: Option<&'static str>,
    /// Names the guest may open, per interface (`("keyvalue", &["default"])`
    /// from `[keyvalue] buckets`); an interface not listed may open any name.
    pub names: &'static [(&'static str, &'static [&'static str])],
    /// `[messaging]`: what the subscriber listens to.
    pub messaging: Messaging,
    /// Environment variables the app's backends read, with what each sets
    /// (shown by `--help`).
    pub env: &'static [(&'static str, &'static str)],
}

/// A name a guest chose (a bucket, a container, a key), as messages show
/// it: control characters escaped, very long names cut short.
pub struct Shown<'a>(pub &'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 200;
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX {
                return write!(f, "…({} bytes)", self.0.len());
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Locks `m`; a panic elsewhere while holding it leaves nothing half-done
/// for the callers (every update keeps its data consistent), so a
/// poisoned lock is used as is.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Variables the kernel itself reads (its `--help` always lists them).
pub const KERNEL_ENV: &[&str] = &[
    "HTTP_ADDR",
    "QWASR_DATA_DIR",
    "QWASR_CACHE_DIR",
    "QWASR_NO_CACHE",
    "RUST_LOG",
];

impl App {
    /// An app named `name` running `component` with every other setting at
    /// its default (as a manifest that sets nothing): for tests and embedders,
    /// `App { names: ..., ..App::new("t", code) }`.
    pub const fn new(name: &'static str, component: Code) -> App {
        App {
            name,
            generator: env!("CARGO_PKG_VERSION"),
            component,
            concurrency: false,
            serves: &[],
            limits: Limits::DEFAULT,
            grants: Grants {
                env: &[],
                dirs: &[],
            },
            http_addr: DEFAULT_HTTP_ADDR,
            outgoing: &[],
            data_dir: None,
            names: &[],
            messaging: Messaging::DEFAULT,
            env: &[],
        }
    }
}

/// The manifest's `[messaging]` section.
#[derive(Debug, Clone, Copy)]
pub struct Messaging {
    /// Topic patterns the component's `incoming-handler` is subscribed to
    /// (`orders`, `audit.*`, `events.>`).
    pub topics: &'static [&'static str],
    /// Largest message payload, in bytes, a guest may send or receive.
    pub max_message_size: u64,
}

impl Messaging {
    /// No subscriptions; 1 MiB messages.
    pub const DEFAULT: Messaging = Messaging {
        topics: &[],
        max_message_size: 1 << 20,
    };
}

/// How the component is embedded in the runtime.
#[derive(Debug, Clone, Copy)]
pub enum Code {
    /// Machine code made by [`precompile`] for this runtime's engine
    /// configuration: loads in milliseconds, needs no compiler.
    Precompiled {
        /// The image, page-aligned (see [`page_aligned!`]).
        image: &'static [u8],
        /// A digest of `image` (hex), naming its copy in the image cache.
        id: &'static str,
    },
    /// WebAssembly, compiled with Cranelift at start-up (needs the
    /// `compiler` feature). Such runtimes also take `--component FILE`.
    Wasm(&'static [u8]),
}

/// The bytes of `include_bytes!(path)` on a page boundary, for
/// [`Code::Precompiled`]: the runtime then runs the code where it lies in the
/// executable's own mapping, nothing is copied at start-up, and only the
/// pages a request touches are read in.
#[macro_export]
macro_rules! page_aligned {
    ($bytes:expr) => {{
        // 64 KiB: the largest page size of the targets wasmtime supports.
        #[repr(C, align(65536))]
        struct Aligned<B: ?Sized>(B);
        static IMAGE: &Aligned<[u8]> = &Aligned(*$bytes);
        &IMAGE.0
    }};
}

/// Where the HTTP server listens when neither the manifest nor `HTTP_ADDR` says.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";

/// Per-request resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory a single instance may grow to, in bytes.
    pub memory: u64,
    /// Wall-clock time a single request may run.
    pub timeout: Duration,
    /// Instances that may be live at once.
    pub instances: u32,
    /// How the guest's out-of-bounds memory accesses are caught.
    pub checks: MemoryChecks,
}

impl Limits {
    /// The limits an app gets for what its manifest leaves out.
    pub const DEFAULT: Limits = Limits {
        memory: 128 << 20,
        timeout: Duration::from_secs(30),
        instances: 1000,
        checks: MemoryChecks::Explicit,
    };
}

/// How a guest's out-of-bounds memory accesses are caught: a per-app trade
/// between the speed of the guest's own code and the cost of reusing an
/// instance slot for the next request (bench/profile.md measures both).
///
/// Either way an access out of bounds traps (the request gets a 5xx) and a
/// `memory.grow` past [`Limits::memory`] fails inside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryChecks {
    /// Each memory's 4 GiB reservation plus a guard region, so compiled code
    /// needs no bounds checks and the hardware traps: the fastest guest
    /// code and the smallest images. Memory a request grew is made
    /// inaccessible again when its slot is reused (an `mprotect` and a TLB
    /// flush on every core per request that grew memory).
    GuardPages,
    /// A bounds check compiled into every memory access: slower guest code
    /// and larger images, but reusing a slot changes no page protection, the
    /// cheapest per request for small guests.
    #[default]
    Explicit,
}

impl MemoryChecks {
    /// Every choice.
    pub const ALL: [MemoryChecks; 2] = [MemoryChecks::GuardPages, MemoryChecks::Explicit];

    /// The manifest's spelling (`[limits] memory-checks`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryChecks::GuardPages => "guard-pages",
            MemoryChecks::Explicit => "explicit",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What the guest may see of the host; nothing by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grants {
    /// Host environment variables passed through to the guest.
    pub env: &'static [&'static str],
    /// Directories preopened for the guest: `(guest path, host path)`.
    pub dirs: &'static [(&'static str, &'static str)],
}

/// Per-store state owned by the kernel: WASI context, resources, limits.
pub struct KernelCtx {
    /// The guest's WASI context (built from the app's grants).
    pub wasi: WasiCtx,
    /// Resources the guest holds, shared by every interface.
    pub table: ResourceTable,
    /// Memory and instance limits enforced on the store.
    pub limits: StoreLimits,
}

impl KernelCtx {
    /// The view wasmtime-wasi needs; generated `WasiView` impls return this.
    pub fn wasi_view(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }

    fn new(wasi: WasiCtx, limits: &Limits) -> Self {
        KernelCtx {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory).unwrap_or(usize::MAX))
                .trap_on_grow_failure(false)
                .build(),
        }
    }
}

/// Implemented by a runtime's store state: access to the kernel's part.
pub trait Host: wasmtime_wasi::WasiView + Send + 'static {
    /// The kernel's per-store state.
    fn kernel(&mut self) -> &mut KernelCtx;
}

/// A borrowed view of one interface's context and the shared resource table.
pub struct CtxView<'a, C> {
    /// The interface's per-store context.
    pub ctx: &'a mut C,
    /// Resources the guest holds.
    pub table: &'a mut ResourceTable,
}

/// Implemented by a runtime's store state once per interface context `C`.
pub trait View<C>: Send {
    /// Borrows the interface's context and the resource table.
    fn view(&mut self) -> CtxView<'_, C>;
}

/// One synchronous step on an interface's [`CtxView`], however the host
/// function reached the store.
///
/// An interface crate writes each operation once, over `impl Access<Ctx>`,
/// and every flavour calls it: a sync flavour hands in its `CtxView`,
/// borrowed for the whole call; an `async func` flavour (feature `p3`) its
/// `&Accessor`, which must not be held across an await. So an operation
/// takes what it needs out of the view in one step, awaits the backend with
/// the view released, and comes back in another step for the result.
///
/// Implemented for `CtxView<'_, C>`, for `&mut A` where `A: Access<C>` (an
/// operation may take its access by value or by `&mut`), and with `p3` for
/// `&Accessor<T, D>` where `D` is the interface's [`HasData`] marker whose
/// data is a `CtxView<'_, C>`.
///
/// ```ignore
/// async fn get(mut a: impl Access<Ctx>, b: &Resource<Bucket>, key: &str) -> anyhow::Result<Value> {
///     let (store, name) = a.on(|v| anyhow::Ok((v.ctx.store.clone(), v.table.get(b)?.name.clone())))?;
///     store.get(&name, key).await
/// }
/// ```
///
/// [`HasData`]: wasmtime::component::HasData
pub trait Access<C>: Send {
    /// Runs `f` on the view.
    fn on<R>(&mut self, f: impl FnOnce(&mut CtxView<'_, C>) -> R) -> R;
}

impl<C: Send> Access<C> for CtxView<'_, C> {
    fn on<R>(&mut self, f: impl FnOnce(&mut CtxView<'_, C>) -> R) -> R {
        f(self)
    }
}

impl<C, A: Access<C>> Access<C> for &mut A {
    fn on<R>(&mut self, f: impl FnOnce(&mut CtxView<'_, C>) -> R) -> R {
        (**self).on(f)
    }
}

/// An `async func`'s way to the store: one `with` per step.
#[cfg(feature = "p3")]
impl<T, D, C> Access<C> for &wasmtime::component::Accessor<T, D>
where
    T: 'static,
    D: for<'a> wasmtime::component::HasData<Data<'a> = CtxView<'a, C>> + ?Sized,
{
    fn on<R>(&mut self, f: impl FnOnce(&mut CtxView<'_, C>) -> R) -> R {
        wasmtime::component::Accessor::with(*self, |mut access| f(&mut access.get()))
    }
}

/// What a backend's `connect` function gets: the manifest's options for it.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Where backends keep data on disk (not yet created; see [`BackendConfig::data_dir`]).
    pub data_root: std::path::PathBuf,
    /// The app this runtime was built for.
    pub app: &'static App,
    /// Short interface name (`keyvalue`).
    pub interface: &'static str,
    /// Backend name (`redis`, `embedded`).
    pub backend: &'static str,
    /// Options from the manifest (`[backends]` table entry, or `[config]` for wasi:config).
    pub options: Vec<(String, String)>,
    /// `KEY=VALUE` pairs given with `--config` on the runtime's command line.
    pub overrides: Vec<(String, String)>,
}

impl BackendConfig {
    /// The names the guest may open for this interface (`[keyvalue] buckets`
    /// and the like); `None` allows every name.
    pub fn names(&self) -> Option<&'static [&'static str]> {
        self.app
            .names
            .iter()
            .find(|(i, _)| *i == self.interface)
            .map(|(_, names)| *names)
    }

    /// Whether the guest may open `name` (see [`BackendConfig::names`]).
    pub fn allows(&self, name: &str) -> bool {
        self.names().is_none_or(|names| names.contains(&name))
    }

    /// This interface's directory under the data directory
    /// (`<data dir>/<interface>`), created if missing and checked to be
    /// writable: a backend calls it from `connect`, so a bad directory stops
    /// the runtime at start-up with a message naming it.
    pub fn data_dir(&self) -> anyhow::Result<std::path::PathBuf> {
        let dir = self.data_root.join(self.interface);
        writable_dir(&dir)?;
        Ok(dir)
    }

    /// An option's value: environment variable `env` if set, else the manifest's.
    ///
    /// A variable that is set but not valid UTF-8 is an error naming it.
    pub fn get(&self, key: &str, env: &str) -> anyhow::Result<Option<String>> {
        match std::env::var(env) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(self
                .options
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())),
            Err(std::env::VarError::NotUnicode(_)) => {
                anyhow::bail!("environment variable {env} is not valid UTF-8")
            }
        }
    }
}

/// Creates `dir` (and its parents) and checks that files can be written in it.
fn writable_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let fix = "set QWASR_DATA_DIR (or [app] data-dir in qwasr.toml) to a writable directory";
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory `{}`: {e}; {fix}",
            dir.display()
        )
    })?;
    let probe = dir.join(format!(".qwasr-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "the data directory `{}` is not writable: {e}; {fix}",
            dir.display()
        ),
    }
}

/// Runs an emitted runtime: parses the command line, sets up logging and
/// tokio, builds the [`Kernel`] and hands it to `run`. Errors are printed
/// with their causes and exit non-zero.
pub fn main<F, Fut>(app: &'static App, run: F) -> ExitCode
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = Cli::parse_for(app);
    init_tracing();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let kernel = Kernel::new(app, cli)?;
                run(kernel).await
            })
        });
    cache::abandon_unfinished();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (`warn`, `info,qwasr_kernel=debug`); default `info`.
fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let default = Targets::new().with_default(tracing::Level::INFO);
    let (filter, invalid) = match std::env::var("RUST_LOG") {
        Ok(spec) => match spec.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(e) => (default, Some((spec, e))),
        },
        Err(_) => (default, None),
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a terminal, not for log files or journald.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .try_init();
    if let Some((spec, e)) = invalid {
        tracing::warn!(
            "RUST_LOG=`{spec}` is not a log filter ({e}); logging at info. \
             Use a level (`warn`) or `level,target=level` (`info,qwasr_kernel=debug`)"
        );
    }
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
