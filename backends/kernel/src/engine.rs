//! The wasmtime engine, the compiled component and per-request stores.

use crate::{App, BackendConfig, Cli, Host, KernelCtx};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};

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
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("setting up the wasmtime engine")?;
        let started = std::time::Instant::now();
        let component = Component::new(&engine, app.component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling the `{}` component", app.name))?;
        tracing::debug!(elapsed = ?started.elapsed(), "component compiled");

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
        Ok(Kernel {
            inner: Arc::new(Inner {
                app,
                cli,
                engine,
                component,
                env,
                deadline_ticks,
            }),
        })
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
