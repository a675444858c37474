//! The subscriber for a `wasi:messaging/incoming-handler` export.

use crate::sync::{HandlerPre, from_guest};
use crate::{Ctx, Error, Message, Subscription};
use anyhow::{Context, Result};
use qwasr_kernel::{Host, Kernel, KernelCtx, View};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinSet};
use wasmtime::component::Linker;

/// Runs the component's `incoming-handler` export for every message sent to
/// the manifest's `[messaging] topics`, until SIGINT/SIGTERM; then stops
/// taking messages, lets running handlers finish (for at most `[limits]
/// timeout` + 1 s) and returns.
///
/// Each message gets a fresh instance, in its own task; together with the
/// HTTP server at most `[limits] instances` run at once. A handler that
/// traps, runs past its deadline or returns an error is logged and counted;
/// the subscriber goes on. The backend is the one in the `Ctx` of a state
/// built with `new_state`.
///
/// Fails at start-up if the component does not export the handler, a topic
/// pattern is invalid or the backend refuses the subscription, and later if
/// the backend ends the subscription.
pub async fn serve<T, F>(kernel: &Kernel, linker: &Linker<T>, new_state: F) -> Result<()>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    let pre = HandlerPre::new(kernel.instantiate_pre(linker)?)
        .map_err(anyhow::Error::from)
        .context("the component does not export wasi:messaging/incoming-handler@0.2.0-draft")?;
    let topics = kernel.app().messaging.topics;
    for topic in topics {
        crate::check_topic_pattern(topic)
            .map_err(|e| anyhow::anyhow!("[messaging] topics in qwasr.toml: {e}"))?;
    }
    if topics.is_empty() {
        tracing::warn!(
            "the component exports wasi:messaging/incoming-handler but [messaging] topics \
             in qwasr.toml is empty, so it receives no messages; list the topics to subscribe to there"
        );
        kernel.stopping().await;
        return Ok(());
    }
    let list = topics.join(", ");
    // The backend is shared by every state; one probe state shows which it is.
    let ctx = new_state(kernel.ctx()).view().ctx.clone();
    let patterns: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let subscription = ctx
        .broker
        .subscribe(&patterns)
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {list}: {e}"))?;
    tracing::info!(app = kernel.app().name, "subscribed to {list}");

    let subscriber = Arc::new(Subscriber {
        kernel: kernel.clone(),
        pre,
        new_state,
        max_message_size: ctx.max_message_size,
        handled: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let end = subscriber
        .clone()
        .run(subscription, kernel.stopping())
        .await;
    tracing::info!(
        "messaging: {} messages handled, {} failed",
        subscriber.handled.load(Ordering::Relaxed),
        subscriber.failed.load(Ordering::Relaxed)
    );
    match end {
        End::Stopped => Ok(()),
        End::Closed => anyhow::bail!("the messaging backend ended the subscription to {list}"),
        End::Failed(e) => Err(e),
    }
}

/// Why the delivery loop ended.
enum End {
    /// SIGINT/SIGTERM.
    Stopped,
    /// The backend ended the subscription.
    Closed,
    /// The instance pool closed.
    Failed(anyhow::Error),
}

struct Subscriber<T: 'static, F> {
    kernel: Kernel,
    pre: HandlerPre<T>,
    new_state: F,
    max_message_size: u64,
    handled: AtomicU64,
    failed: AtomicU64,
}

impl<T, F> Subscriber<T, F>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    /// Hands each delivery to a handler task until `stop` resolves or the
    /// backend ends the subscription, then drains the running handlers.
    async fn run(
        self: Arc<Self>,
        mut subscription: Box<dyn Subscription>,
        stop: impl Future<Output = ()>,
    ) -> End {
        let mut tasks = JoinSet::new();
        tokio::pin!(stop);
        let end = loop {
            let message = tokio::select! {
                biased;
                () = &mut stop => break End::Stopped,
                m = subscription.next() => match m {
                    Some(m) => m,
                    None => break End::Closed,
                },
            };
            while let Some(done) = tasks.try_join_next() {
                self.reap(done);
            }
            let topic = message.topic.clone().unwrap_or_default();
            let size = message.data.len() as u64;
            if size > self.max_message_size {
                self.fail(
                    &topic,
                    format_args!(
                        "it is {size} bytes, over the limit of {} bytes \
                         ([messaging] max-message-size in qwasr.toml); not handled",
                        self.max_message_size
                    ),
                );
                continue;
            }
            // Wait for an instance before taking the next message, so that a
            // busy app leaves messages in the backend's bounded queue.
            let permit = tokio::select! {
                biased;
                () = &mut stop => break End::Stopped,
                permit = self.kernel.permit() => match permit {
                    Ok(permit) => permit,
                    Err(e) => break End::Failed(e),
                },
            };
            let this = self.clone();
            tasks.spawn(async move { this.handle(topic, message, permit).await });
        };
        // Unsubscribe: messages still queued are dropped (at most once).
        drop(subscription);
        let grace = self.kernel.app().limits.timeout + std::time::Duration::from_secs(1);
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = tasks.join_next().await {
                self.reap(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} message handlers still running after {grace:?}; stopping anyway",
                tasks.len()
            );
            tasks.abort_all();
        }
        end
    }

    /// Runs one message in a fresh instance; counts and logs the outcome.
    async fn handle(&self, topic: String, message: Message, permit: OwnedSemaphorePermit) {
        let timeout = self.kernel.app().limits.timeout;
        // The epoch deadline stops guest code; this also bounds a handler
        // waiting in a host call.
        let outcome = tokio::time::timeout(timeout, self.call(message)).await;
        drop(permit);
        match outcome {
            Ok(Ok(Ok(()))) => {
                self.handled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%topic, "message handled");
            }
            Ok(Ok(Err(e))) => self.fail(&topic, format_args!("the handler returned {}", wit(&e))),
            Ok(Err(Call::Trap(e))) if e.downcast_ref() == Some(&wasmtime::Trap::Interrupt) => self
                .fail(
                    &topic,
                    format_args!("the handler ran past its deadline of {timeout:?}"),
                ),
            Ok(Err(Call::Trap(e))) => {
                let e = anyhow::Error::from(e);
                self.fail(&topic, format_args!("the handler trapped: {e:#}"))
            }
            Ok(Err(Call::Host(e))) => self.fail(&topic, format_args!("{e:#}")),
            Err(_) => self.fail(
                &topic,
                format_args!("the handler ran past its deadline of {timeout:?}"),
            ),
        }
    }

    async fn call(&self, message: Message) -> Result<Result<(), Error>, Call> {
        let mut store = self.kernel.store((self.new_state)(self.kernel.ctx()));
        let message = store.data_mut().view().table.push(message).map_err(|e| {
            Call::Host(anyhow::Error::from(e).context("cannot hand over the message"))
        })?;
        let handler = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(Call::Trap)?;
        let result = handler
            .wasi_messaging_incoming_handler()
            .call_handle(&mut store, message)
            .await
            .map_err(Call::Trap)?;
        Ok(result.map_err(from_guest))
    }

    fn fail(&self, topic: &str, why: std::fmt::Arguments<'_>) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%topic, "message on `{topic}` failed: {why}");
    }

    fn reap(&self, done: Result<(), JoinError>) {
        if let Err(e) = done {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!("message handler task failed: {e}");
        }
    }
}

/// How running a handler failed before it could answer.
enum Call {
    /// Instantiation or the call trapped.
    Trap(wasmtime::Error),
    /// The host could not set the call up.
    Host(anyhow::Error),
}

/// The guest's error, as WIT spells it: `error::other("...")`.
fn wit(e: &Error) -> String {
    match e {
        Error::Timeout => "error::timeout".into(),
        Error::Connection(m) => format!("error::connection({m:?})"),
        Error::PermissionDenied(m) => format!("error::permission-denied({m:?})"),
        Error::Other(m) => format!("error::other({m:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestOptions;
    use crate::embedded::Bus;
    use qwasr_kernel::wasmtime_wasi::{WasiCtxView, WasiView};
    use qwasr_kernel::{App, Cli, Code, CtxView, Limits, Messaging};
    use std::time::Duration;

    /// A guest that looks at the first byte of each message: `t` traps, `l`
    /// loops forever, `e` returns `error::other("boom")`, `r` replies with
    /// the message's topic; anything else is handled.
    const GUEST: &str = r#"(module
      (import "wasi:messaging/types@0.2.0-draft" "[method]message.data" (func $data (param i32 i32)))
      (import "wasi:messaging/types@0.2.0-draft" "[method]message.topic" (func $topic (param i32 i32)))
      (import "wasi:messaging/types@0.2.0-draft" "[constructor]message" (func $new (param i32 i32) (result i32)))
      (import "wasi:messaging/request-reply@0.2.0-draft" "reply" (func $reply (param i32 i32 i32)))
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 1024))
      (data (i32.const 64) "boom")
      (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
        (local $p i32)
        (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
        (global.set $heap (i32.add (local.get $p) (local.get 3)))
        (local.get $p))
      (func (export "wasi:messaging/incoming-handler@0.2.0-draft#handle") (param $msg i32) (result i32)
        (local $b i32)
        (call $data (local.get $msg) (i32.const 16))
        (if (i32.eqz (i32.load (i32.const 20))) (then (return (i32.const 0))))
        (local.set $b (i32.load8_u (i32.load (i32.const 16))))
        (if (i32.eq (local.get $b) (i32.const 116)) (then unreachable))
        (if (i32.eq (local.get $b) (i32.const 108)) (then (loop $forever (br $forever))))
        (if (i32.eq (local.get $b) (i32.const 101)) (then
          (i32.store8 (i32.const 32) (i32.const 1))
          (i32.store8 (i32.const 36) (i32.const 3))
          (i32.store (i32.const 40) (i32.const 64))
          (i32.store (i32.const 44) (i32.const 4))
          (return (i32.const 32))))
        (if (i32.eq (local.get $b) (i32.const 114)) (then
          (call $topic (local.get $msg) (i32.const 48))
          (call $reply
            (local.get $msg)
            (call $new (i32.load (i32.const 52)) (i32.load (i32.const 56)))
            (i32.const 80))
          (if (i32.load8_u (i32.const 80)) (then unreachable))))
        (i32.const 0))
    )"#;

    fn component(world: &str) -> &'static [u8] {
        let mut resolve = wit_parser::Resolve::default();
        resolve
            .push_dir(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../wit/deps/messaging-0.2.0-draft"
            ))
            .unwrap();
        let pkg = resolve.push_str("guest.wit", world).unwrap();
        let world = resolve.select_world(&[pkg], Some("guest")).unwrap();
        let mut module = wat::parse_str(GUEST).unwrap();
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
            false,
        )
        .unwrap();
        let bytes = wit_component::ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap();
        Box::leak(bytes.into_boxed_slice())
    }

    const HANDLER: &str = "package test:guest;
        world guest {
            import wasi:messaging/request-reply@0.2.0-draft;
            export wasi:messaging/incoming-handler@0.2.0-draft;
        }";

    fn app(component: &'static [u8], topics: &'static [&'static str]) -> &'static App {
        Box::leak(Box::new(App {
            limits: Limits {
                memory: 1 << 20,
                timeout: Duration::from_millis(300),
                instances: 4,
            },
            messaging: Messaging {
                topics,
                max_message_size: 16,
            },
            ..App::new("messaging-test", Code::Wasm(component))
        }))
    }

    struct State {
        kernel: KernelCtx,
        messaging: Ctx,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            self.kernel.wasi_view()
        }
    }

    impl Host for State {
        fn kernel(&mut self) -> &mut KernelCtx {
            &mut self.kernel
        }
    }

    impl View<Ctx> for State {
        fn view(&mut self) -> CtxView<'_, Ctx> {
            CtxView {
                ctx: &mut self.messaging,
                table: &mut self.kernel.table,
            }
        }
    }

    fn setup(app: &'static App) -> (Kernel, Linker<State>, Ctx) {
        // Logs show with `cargo test -- --nocapture`.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let kernel = Kernel::new(app, Cli::default()).unwrap();
        let ctx = Ctx::new(
            Bus::new(),
            &kernel.backend_config("messaging", "embedded", &[]),
        );
        let mut linker = kernel.linker::<State>().unwrap();
        crate::add_to_linker(&mut linker).unwrap();
        (kernel, linker, ctx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handles_messages_in_fresh_instances_and_counts_failures() {
        let (kernel, linker, ctx) = setup(app(component(HANDLER), &["svc.*"]));
        let pre = HandlerPre::new(kernel.instantiate_pre(&linker).unwrap()).unwrap();
        let state_ctx = ctx.clone();
        let subscriber = Arc::new(Subscriber {
            kernel: kernel.clone(),
            pre,
            new_state: move |kernel| State {
                kernel,
                messaging: state_ctx.clone(),
            },
            max_message_size: 16,
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let subscription = ctx.broker.subscribe(&["svc.*".into()]).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(subscriber.clone().run(subscription, async {
            let _ = stopped.await;
        }));

        // Request-reply through the guest: it answers with the concrete topic.
        let options = RequestOptions {
            timeout_ms: Some(5000),
            expected_replies: None,
        };
        let replies = ctx
            .request("svc.echo", Message::new(b"r".to_vec()), options)
            .await
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].data, b"svc.echo");

        for data in ["ok", "", "trap", "error", "loop"] {
            ctx.send("svc.x", Message::new(data.as_bytes().to_vec()))
                .await
                .unwrap();
        }
        // Over the size limit: bypasses the guest-side check, as another
        // backend's delivery would.
        ctx.broker
            .send("svc.x", Message::new(vec![b'x'; 17]))
            .await
            .unwrap();
        let counted = |s: &Subscriber<_, _>| {
            s.handled.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counted(&subscriber) < 7 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            subscriber.handled.load(Ordering::Relaxed),
            3,
            "r, ok, empty"
        );
        assert_eq!(
            subscriber.failed.load(Ordering::Relaxed),
            4,
            "trap, error, loop, too big"
        );

        stop.send(()).unwrap();
        assert!(matches!(running.await.unwrap(), End::Stopped));
        // Unsubscribed: nobody answers any more.
        assert_eq!(
            ctx.request("svc.echo", Message::new(b"r".to_vec()), options)
                .await,
            Err(Error::Other("no subscriber for topic `svc.echo`".into()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_lets_running_handlers_finish() {
        let (kernel, linker, ctx) = setup(app(component(HANDLER), &["svc.*"]));
        let pre = HandlerPre::new(kernel.instantiate_pre(&linker).unwrap()).unwrap();
        let state_ctx = ctx.clone();
        let subscriber = Arc::new(Subscriber {
            kernel: kernel.clone(),
            pre,
            new_state: move |kernel| State {
                kernel,
                messaging: state_ctx.clone(),
            },
            max_message_size: 16,
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let subscription = ctx.broker.subscribe(&["svc.*".into()]).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(subscriber.clone().run(subscription, async {
            let _ = stopped.await;
        }));
        // A handler that runs until its 300 ms deadline.
        ctx.send("svc.x", Message::new(b"loop".to_vec()))
            .await
            .unwrap();
        // Each handler task holds a clone of the subscriber: stop once it runs.
        while Arc::strong_count(&subscriber) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(()).unwrap();
        assert!(matches!(running.await.unwrap(), End::Stopped));
        // It was waited for, not abandoned.
        assert_eq!(subscriber.failed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_errors_name_the_problem() {
        let (kernel, linker, ctx) = setup(app(component(HANDLER), &["ok", "events.>.x"]));
        let new_state = move |kernel| State {
            kernel,
            messaging: ctx.clone(),
        };
        let err = serve(&kernel, &linker, new_state).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "[messaging] topics in qwasr.toml: {}",
                crate::check_topic_pattern("events.>.x").unwrap_err()
            )
        );

        let no_export = "package test:guest;
            world guest { import wasi:messaging/request-reply@0.2.0-draft; }";
        // The same core module, its handler not declared as an export.
        let (kernel, linker, ctx) = setup(app(component(no_export), &["ok"]));
        let new_state = move |kernel| State {
            kernel,
            messaging: ctx.clone(),
        };
        let err = serve(&kernel, &linker, new_state).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the component does not export wasi:messaging/incoming-handler@0.2.0-draft"
        );
    }
}
