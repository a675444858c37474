//! The HTTP server: one listener, accept loop and graceful shutdown for
//! either export, and the handler for `wasi:http/incoming-handler@0.2.x`
//! (`handler@0.3.x` is in `server_p3.rs`).

use crate::Ctx;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use qwasr_kernel::{Host, Kernel, KernelCtx, View};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

/// Serves the component's `wasi:http/incoming-handler@0.2.x` export, or with
/// the `p3` feature its `wasi:http/handler@0.3.x` export, on the kernel's HTTP
/// address until SIGINT/SIGTERM, then finishes in-flight requests and returns.
///
/// Each request runs in a fresh instance from the pool, holding one of the
/// kernel's permits while the instance lives, under the app's memory limit and
/// timeout. `new_state` builds the store state for one request from fresh
/// kernel state.
pub async fn serve<T, F>(
    kernel: &Kernel,
    linker: &wasmtime::component::Linker<T>,
    new_state: F,
) -> Result<()>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    let pre = kernel.instantiate_pre(linker)?;
    #[cfg(feature = "p3")]
    let (pre, p3) = match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
        Ok(service) => {
            let server = crate::server_p3::Server::new(kernel.clone(), service, new_state);
            return listen(kernel, server).await;
        }
        // Not the 0.3 export: try 0.2's, and say why neither fits.
        Err(e) => (pre, e),
    };
    #[cfg(feature = "p3")]
    let neither = format!(
        "the component exports neither wasi:http/handler@0.3.x ({p3}) \
         nor wasi:http/incoming-handler@0.2.x"
    );
    #[cfg(not(feature = "p3"))]
    let neither = "the component does not export wasi:http/incoming-handler@0.2.x";
    let pre = ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .context(neither)?;
    let server = Server {
        kernel: kernel.clone(),
        pre,
        new_state,
    };
    listen(kernel, server).await
}

/// Runs one request in a fresh instance: the only part that differs between
/// the 0.2 and 0.3 exports.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The response head (the guest may still be streaming its body), or
    /// why there is none (answered with a 500). Work outliving the head is
    /// spawned holding a clone of `in_flight`.
    fn run(
        &self,
        req: hyper::Request<Incoming>,
        in_flight: &InFlight,
    ) -> impl Future<Output = Result<hyper::Response<WasiBody>>> + Send;
}

/// Held by every task that runs a store: shutdown waits until all clones
/// are gone, so a guest finishing its body or post-return work is not cut
/// off when the last connection closes.
#[derive(Clone)]
pub(crate) struct InFlight {
    // A plain count: a channel or notifier here would add ~15 KB to every
    // runtime for a loop that runs once, at shutdown.
    held: Arc<()>,
}

/// Listens on the kernel's HTTP address and runs `handler` for every request
/// until the kernel is stopping; then stops accepting, lets in-flight requests
/// (and their instances) finish within the app's timeout, and returns.
///
/// One thread per core serves HTTP, each with its own current-thread tokio
/// runtime and its own listening socket on the address (`SO_REUSEPORT`: the
/// kernel spreads connections over them). A connection, its requests and the
/// guests answering them stay on one thread: handing them between the
/// workers of a shared runtime was a quarter of the samples in scheduling
/// and futex wake-ups (bench/profile.md).
async fn listen<H: Handler>(kernel: &Kernel, handler: H) -> Result<()> {
    let addr = kernel.http_addr().to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listeners = bind(&addr, threads).with_context(|| {
        format!("cannot listen on {addr}; set HTTP_ADDR (or --addr) to a free host:port")
    })?;
    let local = listeners[0].local_addr()?;
    tracing::info!(app = kernel.app().name, "listening on http://{local}");

    let handler = Arc::new(handler);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, listener) in listeners.into_iter().enumerate() {
        let kernel = kernel.clone();
        let handler = handler.clone();
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("qwasr-http-{i}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| rt.block_on(accept_loop(&kernel, listener, handler)));
                let _ = done.send(served);
            })
            .context("starting an HTTP thread")?;
    }
    drop(done_tx);
    // Every thread reports once it has drained; the first failure wins.
    let mut result = Ok(());
    while let Some(served) = done_rx.recv().await {
        if result.is_ok() {
            result = served;
        }
    }
    result
}

/// `count` listening sockets on `addr`, all on the same port (the one the
/// OS picked for the first if the port is 0).
fn bind(addr: &str, count: usize) -> Result<Vec<std::net::TcpListener>> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .context("the address resolves to nothing")?;
    let socket = |addr, reuseport: bool| -> std::io::Result<std::net::TcpListener> {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As tokio's own bind: a port whose last connections are in
        // TIME_WAIT (a runtime just restarted) is free.
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(reuseport)?;
        #[cfg(not(unix))]
        let _ = reuseport;
        socket.bind(addr)?;
        socket.listen(1024)?.into_std()
    };
    let first = socket(addr, false)?;
    if count == 1 {
        return Ok(vec![first]);
    }
    // That plain bind came first: with SO_REUSEPORT alone this runtime would
    // share, silently, a port that another runtime of the same user is serving.
    let addr = first.local_addr()?;
    drop(first);
    (0..count).map(|_| Ok(socket(addr, true)?)).collect()
}

/// One HTTP thread: accepts on its own socket until the kernel is stopping,
/// serving every connection on this thread, then drains.
async fn accept_loop<H: Handler>(
    kernel: &Kernel,
    listener: std::net::TcpListener,
    handler: Arc<H>,
) -> Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let in_flight = InFlight { held: Arc::new(()) };
    let tracker = Arc::downgrade(&in_flight.held);
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
        // A body streamed in pieces would otherwise wait on the client's
        // delayed ACK for each small write (Nagle): ~40 ms per response.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let handler = handler.clone();
        let in_flight = in_flight.clone();
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            let in_flight = in_flight.clone();
            async move { Ok::<_, Infallible>(respond(&*handler, req, &in_flight).await) }
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
    drop(in_flight);
    // Every request is bounded by the timeout; a second more covers
    // requests that were still waiting for an instance.
    let grace = kernel.app().limits.timeout + std::time::Duration::from_secs(1);
    let drain = async {
        graceful.shutdown().await;
        // Gone once every connection and store task has dropped its clone.
        while tracker.strong_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("requests still running after {grace:?}; stopping anyway");
    }
    Ok(())
}

/// Runs the handler for one request, logging it; a failure becomes a 500.
async fn respond<H: Handler>(
    handler: &H,
    req: hyper::Request<Incoming>,
    in_flight: &InFlight,
) -> hyper::Response<WasiBody> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    match handler.run(req, in_flight).await {
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

/// The `wasi:http/incoming-handler@0.2.x` export.
struct Server<T: 'static, F> {
    kernel: Kernel,
    pre: ProxyPre<T>,
    new_state: F,
}

impl<T, F> Handler for Server<T, F>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    async fn run(
        &self,
        req: hyper::Request<Incoming>,
        in_flight: &InFlight,
    ) -> Result<hyper::Response<WasiBody>> {
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
        let in_flight = in_flight.clone();
        // The guest may keep streaming the body after it has sent the head,
        // so it runs in its own task.
        let task = tokio::spawn(async move {
            let _permit = permit;
            let _in_flight = in_flight;
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

fn error_response(status: u16, body: &'static str) -> hyper::Response<WasiBody> {
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
