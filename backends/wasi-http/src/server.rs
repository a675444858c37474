//! The HTTP server for a `wasi:http/incoming-handler` export.

use crate::Ctx;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use qwasr_kernel::{Host, Kernel, KernelCtx, View};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Serves the component's `incoming-handler` export on the kernel's HTTP
/// address until SIGINT/SIGTERM, then finishes in-flight requests and returns.
///
/// `new_state` builds the store state for one request from fresh kernel state.
pub async fn serve<T, F>(
    kernel: &Kernel,
    linker: &wasmtime::component::Linker<T>,
    new_state: F,
) -> Result<()>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    let pre = ProxyPre::new(kernel.instantiate_pre(linker)?)
        .map_err(anyhow::Error::from)
        .context("the component does not export wasi:http/incoming-handler@0.2.x")?;
    let addr = kernel.http_addr().to_string();
    let listener = TcpListener::bind(&addr).await.with_context(|| {
        format!("cannot listen on {addr}; set HTTP_ADDR (or --addr) to a free host:port")
    })?;
    let local = listener.local_addr()?;
    tracing::info!(app = kernel.app().name, "listening on http://{local}");

    let server = Arc::new(Server {
        kernel: kernel.clone(),
        pre,
        new_state,
    });
    let graceful = GracefulShutdown::new();
    let shutdown = kernel.stopping();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Running out of file descriptors is transient: keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let server = server.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection error: {e}");
            }
        });
    }
    drop(listener);
    let grace = kernel.app().limits.timeout + std::time::Duration::from_secs(1);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {grace:?}; stopping anyway");
    }
    Ok(())
}

struct Server<T: 'static, F> {
    kernel: Kernel,
    pre: ProxyPre<T>,
    new_state: F,
}

impl<T, F> Server<T, F>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let method = req.method().clone();
        let uri = req.uri().clone();
        match self.run(req).await {
            Ok(resp) => {
                tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
                resp
            }
            Err(e) => {
                tracing::error!(%method, %uri, "request failed: {e:#}");
                error_response(500, "internal server error\n")
            }
        }
    }

    async fn run(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        // Requests beyond the instance pool wait here rather than fail.
        let permit = self.kernel.permit().await?;
        let mut store = self.kernel.store((self.new_state)(self.kernel.ctx()));
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        // The guest may keep streaming the body after it has sent the head,
        // so it runs in its own task.
        let task = tokio::spawn(async move {
            let _permit = permit;
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(anyhow::anyhow!("guest answered with error code {code:?}")),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(anyhow::anyhow!(
                    "guest returned without calling response-outparam::set"
                )),
                Ok(Err(e)) => Err(anyhow::Error::from(e).context("guest trapped")),
                Err(e) => Err(anyhow::Error::from(e).context("request task failed")),
            },
        }
    }
}

fn error_response(status: u16, body: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// `wasmtime-wasi-http` creates request resources through its own view trait.
trait HttpViewExt {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_>;
}

impl<T: View<Ctx>> HttpViewExt for T {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        crate::wasi_http_view(self)
    }
}
