//! The subscriber for a `wasi:messaging/incoming-handler` export, in
//! either flavour: the same loop, permits, deadline and accounting; only
//! the call into the guest differs.

use crate::{Ctx, Error, Message, Subscription};
use anyhow::Result;
use qwasr_kernel::{Host, Kernel, KernelCtx, View};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinSet};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{InstancePre, Linker};

/// The export the subscriber runs.
const HANDLER: &str = "wasi:messaging/incoming-handler@0.2.0-draft";

/// The component's `incoming-handler` export, in the flavour it has.
enum Handler<T: 'static> {
    /// `handle: func`, called in the p2 way.
    #[cfg(feature = "sync")]
    Sync(crate::sync::HandlerPre<T>),
    /// `handle: async func`, called inside the store's event loop.
    #[cfg(feature = "async")]
    Async(crate::asynchronous::HandlerPre<T>),
}

impl<T: Host> Handler<T> {
    /// Finds the export and tells the flavours apart by the type of its
    /// `handle` (whether it is an `async func`; its signature is the same).
    fn new(pre: InstancePre<T>) -> Result<Handler<T>> {
        let component = pre.component();
        let handle = component
            .get_export(None, HANDLER)
            .and_then(|(_, instance)| component.get_export(Some(&instance), "handle"));
        let is_async = match handle {
            Some((ComponentItem::ComponentFunc(f), _)) => f.async_(),
            _ => anyhow::bail!("the component does not export {HANDLER}"),
        };
        let fit = |e: wasmtime::Error| {
            anyhow::Error::from(e).context(format!(
                "the component's {HANDLER} export does not fit the bindings"
            ))
        };
        match is_async {
            #[cfg(feature = "async")]
            true => Ok(Handler::Async(
                crate::asynchronous::HandlerPre::new(pre).map_err(fit)?,
            )),
            #[cfg(feature = "sync")]
            false => Ok(Handler::Sync(
                crate::sync::HandlerPre::new(pre).map_err(fit)?,
            )),
            // A flavour this runtime was built without.
            #[allow(unreachable_patterns)]
            _ => {
                let (kind, wasi, feature) = if is_async {
                    ("an `async func`", "WASI 0.3", "async")
                } else {
                    ("a sync `func`", "WASI 0.2", "sync")
                };
                anyhow::bail!(
                    "the component exports {HANDLER} with `handle` as {kind} ({wasi}); this \
                     runtime was built without qwasr-wasi-messaging's `{feature}` feature"
                )
            }
        }
    }
}

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
/// The export's `handle` may be a sync `func` (feature `sync`) or an `async
/// func` (feature `async`); which one is read from the component at
/// start-up. An async handler's instance lives until every task in it has
/// exited, so work the guest leaves running after `handle` returns (a
/// reply, a publish) finishes; the deadline covers that too, and a handler
/// that waits rather than runs is stopped by it as well.
///
/// Fails at start-up if the component does not export the handler, exports
/// it in a flavour this runtime was built without, a topic pattern is
/// invalid or the backend refuses the subscription, and later if the
/// backend ends the subscription.
pub async fn serve<T, F>(kernel: &Kernel, linker: &Linker<T>, new_state: F) -> Result<()>
where
    T: Host + View<Ctx>,
    F: Fn(KernelCtx) -> T + Send + Sync + 'static,
{
    let pre = Handler::new(kernel.instantiate_pre(linker)?)?;
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
    pre: Handler<T>,
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
        let result = match &self.pre {
            #[cfg(feature = "sync")]
            Handler::Sync(pre) => crate::sync::handle(pre, &mut store, message).await,
            #[cfg(feature = "async")]
            Handler::Async(pre) => crate::asynchronous::handle(pre, &mut store, message).await,
        };
        result.map_err(Call::Trap)
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
    use qwasr_kernel::{App, Cli, Code, Limits, Messaging, testing};
    use std::time::Duration;

    /// What both guests import from wasi:messaging, at `;; IMPORTS`.
    const IMPORTS: &str = r#"
      (import "wasi:messaging/types@0.2.0-draft" "[method]message.data" (func $data (param i32 i32)))
      (import "wasi:messaging/types@0.2.0-draft" "[method]message.topic" (func $topic (param i32 i32)))
      (import "wasi:messaging/types@0.2.0-draft" "[constructor]message" (func $new (param i32 i32) (result i32)))
      (import "wasi:messaging/request-reply@0.2.0-draft" "reply" (func $reply (param i32 i32 i32)))"#;

    /// What both guests define, at `;; PRELUDE` (after the imports): memory,
    /// an allocator, and `$answer`, a new message carrying the topic of
    /// `$msg`.
    const PRELUDE: &str = r#"
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 1024))
      (data (i32.const 64) "boom")
      (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
        (local $p i32)
        (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
        (global.set $heap (i32.add (local.get $p) (local.get 3)))
        (local.get $p))
      (func $answer (param $msg i32) (result i32)
        (call $topic (local.get $msg) (i32.const 48))
        (call $new (i32.load (i32.const 52)) (i32.load (i32.const 56))))"#;

    /// A guest for the sync flavour that looks at the first byte of each
    /// message: `t` traps, `l` loops forever, `e` returns
    /// `error::other("boom")`, `r` replies with the message's topic;
    /// anything else is handled.
    #[cfg(feature = "sync")]
    const SYNC_GUEST: &str = r#"(module
      ;; IMPORTS
      ;; PRELUDE
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
          (call $reply (local.get $msg) (call $answer (local.get $msg)) (i32.const 80))
          (if (i32.load8_u (i32.const 80)) (then unreachable))))
        (i32.const 0))
    )"#;

    /// The same guest for the async flavour, its `handle` lifted async with
    /// a callback: `t`, `l`, `e` and `r` as above (`r` through a
    /// sync-lowered call to the `async func` `reply`), `w`, which waits for
    /// nothing forever (no guest code runs, so no epoch deadline stops it),
    /// and `p`, which returns, yields, and then replies from the callback
    /// through an async-lowered `reply`, waiting for it if it does not
    /// return at once: work after `handle` returned.
    #[cfg(feature = "async")]
    const ASYNC_GUEST: &str = r#"(module
      ;; IMPORTS
      (import "wasi:messaging/request-reply@0.2.0-draft" "[async-lower]reply" (func $reply_async (param i32 i32 i32) (result i32)))
      (import "[export]wasi:messaging/incoming-handler@0.2.0-draft" "[task-return]handle" (func $return (param i32 i32 i32 i32)))
      (import "$root" "[waitable-set-new]" (func $set_new (result i32)))
      (import "$root" "[waitable-join]" (func $join (param i32 i32)))
      (import "$root" "[subtask-drop]" (func $subtask_drop (param i32)))
      ;; PRELUDE
      (global $set (mut i32) (i32.const 0))
      (global $later (mut i32) (i32.const 0))
      (func $ok (call $return (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
      (func (export "[async-lift]wasi:messaging/incoming-handler@0.2.0-draft#handle") (param $msg i32) (result i32)
        (local $b i32)
        (call $data (local.get $msg) (i32.const 16))
        (if (i32.eqz (i32.load (i32.const 20))) (then (call $ok) (return (i32.const 0))))
        (local.set $b (i32.load8_u (i32.load (i32.const 16))))
        (if (i32.eq (local.get $b) (i32.const 116)) (then unreachable))
        (if (i32.eq (local.get $b) (i32.const 108)) (then (loop $forever (br $forever))))
        (if (i32.eq (local.get $b) (i32.const 101)) (then
          (call $return (i32.const 1) (i32.const 3) (i32.const 64) (i32.const 4))
          (return (i32.const 0))))
        (if (i32.eq (local.get $b) (i32.const 114)) (then
          (call $reply (local.get $msg) (call $answer (local.get $msg)) (i32.const 80))
          (if (i32.load8_u (i32.const 80)) (then unreachable))))
        (if (i32.eq (local.get $b) (i32.const 119)) (then
          ;; WAIT on a set nothing will ever join.
          (return (i32.or (i32.const 2) (i32.shl (call $set_new) (i32.const 4))))))
        (if (i32.eq (local.get $b) (i32.const 112)) (then
          (call $ok)
          (global.set $later (local.get $msg))
          ;; YIELD: the callback runs after the host saw the result.
          (return (i32.const 1))))
        (call $ok)
        (i32.const 0))
      (func (export "[callback][async-lift]wasi:messaging/incoming-handler@0.2.0-draft#handle")
        (param $event i32) (param $p1 i32) (param $p2 i32) (result i32)
        (local $status i32)
        ;; The reply's subtask returned: check its result, exit.
        (if (i32.and (i32.eq (local.get $event) (i32.const 1)) (i32.eq (local.get $p2) (i32.const 2))) (then
          (call $subtask_drop (local.get $p1))
          (if (i32.load8_u (i32.const 80)) (then unreachable))
          (return (i32.const 0))))
        (if (i32.eqz (global.get $set)) (then
          (local.set $status
            (call $reply_async (global.get $later) (call $answer (global.get $later)) (i32.const 80)))
          ;; Returned at once: done.
          (if (i32.eq (i32.and (local.get $status) (i32.const 15)) (i32.const 2)) (then
            (if (i32.load8_u (i32.const 80)) (then unreachable))
            (return (i32.const 0))))
          (global.set $set (call $set_new))
          (call $join (i32.shr_u (local.get $status) (i32.const 4)) (global.get $set))))
        ;; WAIT on the set.
        (i32.or (i32.const 2) (i32.shl (global.get $set) (i32.const 4))))
    )"#;

    const SYNC_WIT: &str = "deps/messaging-0.2.0-draft";
    #[cfg(feature = "async")]
    const ASYNC_WIT: &str = "flavours/messaging-0.2.0-draft.qwasr-async";

    /// One flavour: its WIT, a guest for it, and its bindings.
    #[derive(Clone, Copy)]
    struct Flavour {
        wit: &'static str,
        guest: &'static str,
        concurrency: bool,
        link: fn(&mut Linker<State>) -> Result<()>,
    }

    #[cfg(feature = "sync")]
    const SYNC: Flavour = Flavour {
        wit: SYNC_WIT,
        guest: SYNC_GUEST,
        concurrency: false,
        link: crate::sync::add_to_linker,
    };

    #[cfg(feature = "async")]
    const ASYNC: Flavour = Flavour {
        wit: ASYNC_WIT,
        guest: ASYNC_GUEST,
        concurrency: true,
        link: crate::asynchronous::add_to_linker,
    };

    /// The guest `wat`, with the world `world` over the WIT `wit`.
    fn component(wit: &str, wat: &str, world: &str) -> &'static [u8] {
        let wit = format!("{}/../../wit/{wit}", env!("CARGO_MANIFEST_DIR"));
        let wat = wat
            .replace(";; IMPORTS", IMPORTS)
            .replace(";; PRELUDE", PRELUDE);
        testing::component(&[wit], world, &wat)
    }

    const HANDLER_WORLD: &str = "package test:guest;
        world guest {
            import wasi:messaging/request-reply@0.2.0-draft;
            export wasi:messaging/incoming-handler@0.2.0-draft;
        }";

    fn app(
        flavour: Flavour,
        component: &'static [u8],
        topics: &'static [&'static str],
    ) -> &'static App {
        Box::leak(Box::new(App {
            limits: Limits {
                memory: 1 << 20,
                timeout: Duration::from_millis(300),
                instances: 4,
                ..Limits::DEFAULT
            },
            concurrency: flavour.concurrency,
            messaging: Messaging {
                topics,
                max_message_size: 16,
            },
            ..App::new("messaging-test", Code::Wasm(component))
        }))
    }

    type State = testing::State<Ctx>;

    fn setup(flavour: Flavour, app: &'static App) -> (Kernel, Linker<State>, Ctx) {
        // Logs show with `cargo test -- --nocapture`.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let kernel = Kernel::new(app, Cli::default()).unwrap();
        let ctx = Ctx::new(
            Bus::new(),
            &kernel.backend_config("messaging", "embedded", &[]),
        );
        let mut linker = kernel.linker::<State>().unwrap();
        (flavour.link)(&mut linker).unwrap();
        (kernel, linker, ctx)
    }

    type NewState = Box<dyn Fn(KernelCtx) -> State + Send + Sync>;

    /// A subscriber to `svc.*` running the flavour's guest, and a way to stop it.
    struct Running {
        subscriber: Arc<Subscriber<State, NewState>>,
        ctx: Ctx,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        running: tokio::task::JoinHandle<End>,
    }

    async fn start(flavour: Flavour) -> Running {
        let (kernel, linker, ctx) = setup(
            flavour,
            app(
                flavour,
                component(flavour.wit, flavour.guest, HANDLER_WORLD),
                &["svc.*"],
            ),
        );
        let pre = Handler::new(kernel.instantiate_pre(&linker).unwrap()).unwrap();
        let state_ctx = ctx.clone();
        let subscriber = Arc::new(Subscriber {
            kernel: kernel.clone(),
            pre,
            new_state: Box::new(move |kernel| State {
                kernel,
                ctx: state_ctx.clone(),
            }) as NewState,
            max_message_size: 16,
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let subscription = ctx.broker.subscribe(&["svc.*".into()]).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(subscriber.clone().run(subscription, async {
            let _ = stopped.await;
        }));
        Running {
            subscriber,
            ctx,
            stop: Some(stop),
            running,
        }
    }

    impl Running {
        fn handled(&self) -> u64 {
            self.subscriber.handled.load(Ordering::Relaxed)
        }

        fn failed(&self) -> u64 {
            self.subscriber.failed.load(Ordering::Relaxed)
        }

        /// Stops the subscriber; it must end because it was told to.
        async fn stop(&mut self) {
            if let Some(stop) = self.stop.take() {
                stop.send(()).unwrap();
            }
            assert!(matches!((&mut self.running).await.unwrap(), End::Stopped));
        }
    }

    const REQUEST: RequestOptions = RequestOptions {
        timeout_ms: Some(5000),
        expected_replies: None,
    };

    async fn handles_messages_in_fresh_instances_and_counts_failures(flavour: Flavour) {
        let mut r = start(flavour).await;

        // Request-reply through the guest: it answers with the concrete topic.
        let replies = r
            .ctx
            .request("svc.echo", Message::new(b"r".to_vec()), REQUEST)
            .await
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].data, b"svc.echo");

        for data in ["ok", "", "trap", "error", "loop"] {
            r.ctx
                .send("svc.x", Message::new(data.as_bytes().to_vec()))
                .await
                .unwrap();
        }
        // Over the size limit: bypasses the guest-side check, as another
        // backend's delivery would.
        r.ctx
            .broker
            .send("svc.x", Message::new(vec![b'x'; 17]))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while r.handled() + r.failed() < 7 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(r.handled(), 3, "r, ok, empty");
        assert_eq!(r.failed(), 4, "trap, error, loop, too big");

        r.stop().await;
        // Unsubscribed: nobody answers any more.
        assert_eq!(
            r.ctx
                .request("svc.echo", Message::new(b"r".to_vec()), REQUEST)
                .await,
            Err(Error::Other("no subscriber for topic `svc.echo`".into()))
        );
    }

    async fn stopping_lets_running_handlers_finish(flavour: Flavour) {
        let mut r = start(flavour).await;
        // A handler that runs until its 300 ms deadline.
        r.ctx
            .send("svc.x", Message::new(b"loop".to_vec()))
            .await
            .unwrap();
        // Each handler task holds a clone of the subscriber: stop once it runs.
        while Arc::strong_count(&r.subscriber) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.stop().await;
        // It was waited for, not abandoned.
        assert_eq!(r.failed(), 1);
    }

    /// The error `serve` stops with at start-up.
    async fn start_up_error(
        flavour: Flavour,
        component: &'static [u8],
        topics: &'static [&'static str],
    ) -> String {
        let (kernel, linker, ctx) = setup(flavour, app(flavour, component, topics));
        let new_state = move |kernel| State {
            kernel,
            ctx: ctx.clone(),
        };
        serve(&kernel, &linker, new_state)
            .await
            .unwrap_err()
            .to_string()
    }

    async fn start_up_errors_name_the_problem(flavour: Flavour) {
        let handler = component(flavour.wit, flavour.guest, HANDLER_WORLD);
        assert_eq!(
            start_up_error(flavour, handler, &["ok", "events.>.x"]).await,
            format!(
                "[messaging] topics in qwasr.toml: {}",
                crate::check_topic_pattern("events.>.x").unwrap_err()
            )
        );

        let no_export = "package test:guest;
            world guest { import wasi:messaging/request-reply@0.2.0-draft; }";
        let guest = r#"(module (memory (export "memory") 1))"#;
        assert_eq!(
            start_up_error(flavour, component(flavour.wit, guest, no_export), &["ok"]).await,
            "the component does not export wasi:messaging/incoming-handler@0.2.0-draft"
        );
    }

    /// The tests every flavour runs, for `flavour`.
    macro_rules! every_flavour {
        ($flavour:expr) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn handles_messages_in_fresh_instances_and_counts_failures() {
                super::handles_messages_in_fresh_instances_and_counts_failures($flavour).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stopping_lets_running_handlers_finish() {
                super::stopping_lets_running_handlers_finish($flavour).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn start_up_errors_name_the_problem() {
                super::start_up_errors_name_the_problem($flavour).await;
            }
        };
    }

    #[cfg(feature = "sync")]
    mod sync {
        use super::*;

        every_flavour!(SYNC);
    }

    #[cfg(feature = "async")]
    mod r#async {
        use super::*;

        every_flavour!(ASYNC);

        /// A runtime built for the async flavour only names the feature a
        /// sync handler needs.
        #[cfg(not(feature = "sync"))]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_sync_handler_needs_the_sync_feature() {
            // A sync `handle` that imports nothing, so it links here.
            let guest = r#"(module
              (memory (export "memory") 1)
              (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)
              (func (export "wasi:messaging/incoming-handler@0.2.0-draft#handle") (param i32) (result i32)
                (i32.const 0)))"#;
            let world = "package test:guest;
                world guest { export wasi:messaging/incoming-handler@0.2.0-draft; }";
            assert_eq!(
                start_up_error(ASYNC, component(SYNC_WIT, guest, world), &["ok"]).await,
                "the component exports wasi:messaging/incoming-handler@0.2.0-draft with `handle` \
                 as a sync `func` (WASI 0.2); this runtime was built without \
                 qwasr-wasi-messaging's `sync` feature"
            );
        }

        /// The wall-clock deadline covers a handler that waits rather than runs.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_waiting_handler_is_stopped_at_its_deadline() {
            let mut r = start(ASYNC).await;
            let started = tokio::time::Instant::now();
            r.ctx
                .send("svc.x", Message::new(b"wait".to_vec()))
                .await
                .unwrap();
            while r.failed() == 0 {
                assert!(started.elapsed() < Duration::from_secs(5));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(started.elapsed() >= Duration::from_millis(300));
            r.stop().await;
            assert_eq!(r.handled(), 0);
        }

        /// Work the guest does after `handle` returned (an async-lowered
        /// reply) finishes before the instance goes, and counts as handled.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn work_after_handle_returned_finishes() {
            let mut r = start(ASYNC).await;
            for _ in 0..3 {
                let replies = r
                    .ctx
                    .request("svc.later", Message::new(b"p".to_vec()), REQUEST)
                    .await
                    .unwrap();
                assert_eq!(replies.len(), 1);
                assert_eq!(replies[0].data, b"svc.later");
            }
            r.stop().await;
            assert_eq!(r.handled(), 3);
            assert_eq!(r.failed(), 0);
        }
    }
}
