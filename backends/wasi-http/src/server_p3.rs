//! The handler for a `wasi:http/handler@0.3.x` export: one fresh instance
//! per request, as for 0.2, run on the store's event loop.
//!
//! A 0.3 guest answers with a response whose body is a `stream<u8>` that it
//! may keep writing after `handle` has returned (from a task it spawned).
//! wasmtime moves that stream into the hyper body only while the store's
//! event loop runs, so the store lives in its own task and its loop keeps
//! running until every guest task has exited; hyper only waits for the head.

use crate::Ctx;
use crate::server::{Handler, InFlight};
use anyhow::{Context as _, Result, anyhow};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use qwasr_kernel::{Host, Kernel, KernelCtx, View};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::p3::Request;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// The `wasi:http/handler@0.3.x` export.
pub(crate) struct Server<T: 'static, F> {
    kernel: Kernel,
    pre: ServicePre<T>,
    new_state: F,
}

impl<T, F> Server<T, F> {
    pub(crate) fn new(kernel: Kernel, pre: ServicePre<T>, new_state: F) -> Self {
        Server {
            kernel,
            pre,
            new_state,
        }
    }
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
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let req = with_authority(req)?;
        // Requests beyond the instance pool wait here rather than fail.
        let permit = self.kernel.permit().await?;
        // The store's epoch deadline interrupts running wasm only; a guest
        // waiting on a stalled client or a slow backend is stopped by the
        // clock, from the same moment.
        let timeout = self.kernel.app().limits.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut store = self.kernel.store((self.new_state)(self.kernel.ctx()));
        // The future returned with it reports what the guest says about
        // reading the request body; nothing here depends on it.
        let (req, _) = Request::from_http(crate::wasi_http_view(store.data_mut()).hooks, req);
        // Tells the guest (through the future `response.new` gave it) whether
        // its body reached hyper; a dropped sender means it did not.
        let (sent_tx, sent_rx) = oneshot::channel();
        let sent = async move {
            sent_rx
                .await
                .unwrap_or(Err(HttpError::ConnectionTerminated))
        };
        let (head_tx, head_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let delivered = Arc::new(AtomicBool::new(false));
        let body_delivered = delivered.clone();
        let pre = self.pre.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _in_flight = in_flight;
            let mut head_tx = Some(head_tx);
            let run = async {
                let service = pre.instantiate_async(&mut store).await?;
                store
                    .run_concurrent(async |acc| {
                        let head = response_head(acc, &service, req, sent).await;
                        if let Some(tx) = head_tx.take() {
                            let _ = tx.send(head);
                        }
                        // Keep the loop running until every guest task has
                        // exited (not merely returned): the body, trailers
                        // and post-return work are done by then.
                        std::future::poll_fn(|cx| acc.poll_no_interesting_tasks(cx)).await;
                    })
                    .await
            };
            // Bounds instantiation, `handle`, the body and post-return work
            // together; wasmtime documents a timeout around the whole
            // `run_concurrent` as the reliable form.
            let outcome = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(trap)) => Err(anyhow::Error::from(trap).context("guest trapped")),
                Err(_) => Err(anyhow!("request ran past its {timeout:?} timeout")),
            };
            match (outcome, head_tx) {
                (Ok(()), _) => {
                    let _ = done_tx.send(Ok(()));
                }
                // No head yet: the error becomes the 500 (and is logged there).
                (Err(e), Some(head_tx)) => {
                    let _ = head_tx.send(Err(e));
                }
                (Err(e), None) => {
                    if delivered.load(Ordering::Acquire) {
                        tracing::warn!(
                            %method, %uri,
                            "guest stopped after its response was complete: {e:#}"
                        );
                    } else {
                        tracing::error!(%method, %uri, "response aborted: {e:#}");
                    }
                    let _ = done_tx.send(Err(format!("{e:#}")));
                }
            }
            // Only now: dropping the store ends the body stream, and the body
            // must find the outcome already reported when it sees that end.
            drop(store);
        });
        match head_rx.await {
            Ok(Ok(resp)) => Ok(resp.map(|inner| {
                ResponseBody {
                    inner,
                    done: done_rx,
                    sent: Some(sent_tx),
                    delivered: body_delivered,
                }
                .boxed_unsync()
            })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow!("the request's task ended without a response")),
        }
    }
}

/// Calls `handle` and turns the guest's response into hyper's.
async fn response_head<T: View<Ctx> + Send + 'static>(
    acc: &Accessor<T>,
    service: &Service,
    req: Request,
    sent: impl Future<Output = Result<(), HttpError>> + Send + 'static,
) -> Result<hyper::Response<WasiBody>> {
    let req = acc.with(|mut a| crate::wasi_http_view(a.data_mut()).table.push(req))?;
    match service.wasi_http_handler().call_handle(acc, req).await? {
        Ok(res) => acc.with(|mut a| {
            let res = crate::wasi_http_view(a.data_mut()).table.delete(res)?;
            // Pipes the guest's body stream into the returned body; the
            // pipe moves only while the event loop runs.
            Ok(res.into_http_with_getter(&mut a, sent, crate::wasi_http_view::<T>)?)
        }),
        Err(code) => Err(anyhow!("guest answered with error code {code:?}")),
    }
}

/// The request as 0.2's server hands it to the guest: scheme `http`, and
/// the authority from the URI or else the Host header.
fn with_authority<B>(req: hyper::Request<B>) -> Result<hyper::Request<B>> {
    let (mut parts, body) = req.into_parts();
    let authority = match parts.uri.authority() {
        Some(authority) => authority.clone(),
        None => {
            let host = parts
                .headers
                .get(http::header::HOST)
                .context("request without an authority or Host header")?;
            http::uri::Authority::try_from(host.as_bytes())
                .context("request with an invalid Host header")?
        }
    };
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    parts.uri = http::Uri::from_parts(uri).context("request with an invalid URI")?;
    Ok(hyper::Request::from_parts(parts, body))
}

/// The guest's response body, except that if the instance fails (trap or
/// timeout) after the head, its end is an error: hyper then aborts the
/// response instead of ending it like a complete one (the body stream ends
/// cleanly when the store is dropped). It also tells the guest whether the
/// body was delivered.
struct ResponseBody {
    inner: WasiBody,
    /// How the store ended; reported before the store is dropped.
    done: oneshot::Receiver<Result<(), String>>,
    sent: Option<oneshot::Sender<Result<(), HttpError>>>,
    /// Set at a clean end, for the log should the instance fail later.
    delivered: Arc<AtomicBool>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if let Some(frame) = ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            return Poll::Ready(Some(frame));
        }
        // Already ended (and reported).
        let Some(sent) = self.sent.take() else {
            return Poll::Ready(None);
        };
        // `Empty`: the guest closed its stream and is still running
        // (post-return work), a normal end not worth waiting for.
        let failed = match self.done.try_recv() {
            Ok(Ok(())) | Err(oneshot::error::TryRecvError::Empty) => None,
            Ok(Err(why)) => Some(why),
            Err(oneshot::error::TryRecvError::Closed) => {
                Some("the request's task ended abnormally".to_string())
            }
        };
        if failed.is_none() {
            self.delivered.store(true, Ordering::Release);
        }
        let _ = sent.send(match &failed {
            None => Ok(()),
            Some(why) => Err(HttpError::InternalError(Some(why.clone()))),
        });
        Poll::Ready(failed.map(|why| Err(HttpError::InternalError(Some(why)))))
    }

    // `is_end_stream` stays `false`: the inner body reports its end as soon
    // as the store is gone, and hyper must poll to the end for the check above.

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
