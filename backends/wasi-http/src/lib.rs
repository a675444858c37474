//! `wasi:http` for qwasr runtimes: the `types` and `outgoing-handler`
//! imports (from `wasmtime-wasi-http`), restricted to the hosts the manifest
//! allows, and the HTTP server that runs an `incoming-handler` export, one
//! fresh instance per request.
//!
//! Serves `wasi:http@0.2.x` (any patch version; the linker matches
//! semver-compatibly), and with the `p3` feature also `wasi:http@0.3.x`:
//! `types` and `client` under the same allow-list, and a `handler` export
//! served by the same server with the same limits (see [`serve`]).

#![deny(missing_docs)]

mod server;
#[cfg(feature = "p3")]
mod server_p3;

pub use server::serve;

use anyhow::Result;
use qwasr_kernel::{BackendConfig, View};
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
};

/// Per-store `wasi:http` state.
#[derive(Clone)]
pub struct Ctx {
    http: WasiHttpCtx,
    hooks: Hooks,
}

impl Ctx {
    /// A context whose outgoing requests may reach only `allowed` (`host:port`).
    pub fn new(allowed: &[&str]) -> Ctx {
        Ctx {
            http: WasiHttpCtx::new(),
            hooks: Hooks {
                allowed: allowed.iter().map(|s| s.to_ascii_lowercase()).collect(),
            },
        }
    }
}

/// The embedded (and only) backend: wasmtime-wasi-http over hyper.
pub mod embedded {
    use super::*;

    /// Builds the context from the manifest's `[http] outgoing` list.
    pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
        Ok(Ctx::new(cfg.app.outgoing))
    }
}

/// Adds `wasi:http/types` and `wasi:http/outgoing-handler` (0.2) to the
/// linker, and with the `p3` feature, on an engine with concurrency support,
/// `wasi:http/types` and `wasi:http/client` (0.3). Outgoing requests of both
/// go through the same allow-list.
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    outgoing_handler::add_to_linker::<T, WasiHttp>(linker, wasi_http_view::<T>)?;
    types::add_to_linker::<T, WasiHttp>(linker, &options.into(), wasi_http_view::<T>)?;
    // An app without concurrency cannot import WASI 0.3, and wasmtime would
    // refuse to register its host functions.
    #[cfg(feature = "p3")]
    if qwasr_kernel::concurrency_support(linker.engine()) {
        use wasmtime_wasi_http::p3::bindings::http::{client, types};
        client::add_to_linker::<T, WasiHttp>(linker, wasi_http_view::<T>)?;
        types::add_to_linker::<T, WasiHttp>(linker, wasi_http_view::<T>)?;
    }
    Ok(())
}

fn wasi_http_view<T: View<Ctx>>(t: &mut T) -> WasiHttpCtxView<'_> {
    let v = t.view();
    WasiHttpCtxView {
        ctx: &mut v.ctx.http,
        hooks: &mut v.ctx.hooks,
        table: v.table,
    }
}

/// Denies outgoing requests to hosts the manifest does not list.
#[derive(Clone)]
struct Hooks {
    allowed: Arc<[String]>,
}

impl Hooks {
    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let target = format!("{}:{port}", host.to_ascii_lowercase());
        self.allowed.contains(&target)
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        if !self.allows(request.uri()) {
            return denied(request.uri(), "host not in [http] outgoing");
        }
        #[cfg(feature = "outgoing")]
        {
            let default: &mut dyn WasiHttpHooks = Default::default();
            default.send_request(request, options, fut)
        }
        // Unreachable through qwasr-gen, which enables `outgoing` for every
        // component importing outgoing-handler or client; kept so the crate
        // stands alone.
        #[cfg(not(feature = "outgoing"))]
        {
            let _ = (options, fut);
            denied(
                request.uri(),
                "runtime built without the `outgoing` feature",
            )
        }
    }
}

/// Refuses an outgoing request, logging why.
fn denied(uri: &http::Uri, why: &str) -> SendFuture {
    tracing::warn!(%uri, "outgoing request denied: {why}");
    Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
}

#[cfg(test)]
mod tests {
    use super::Hooks;

    #[test]
    fn outgoing_requests_reach_only_listed_hosts() {
        let hooks = Hooks {
            allowed: ["api.example.com:443", "localhost:8080"]
                .map(String::from)
                .into(),
        };
        let allows = |uri: &str| hooks.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/v1"));
        assert!(allows("https://API.example.com:443/v1"));
        assert!(
            !allows("http://api.example.com/v1"),
            "port 80 is not listed"
        );
        assert!(allows("http://localhost:8080/"));
        assert!(!allows("https://evil.example.com/"));
        assert!(!allows("/relative"));
    }
}
