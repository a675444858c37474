//! `wasi:messaging@0.2.0-draft` for qwasr runtimes: the `producer`,
//! `request-reply` and `types` imports over one backend trait, [`Broker`],
//! and [`serve`], the subscriber that runs a component's `incoming-handler`
//! export in a fresh instance per message.
//!
//! The embedded default ([`embedded`]) is an in-process broker; a service
//! crate (NATS, Kafka, ...) implements [`Broker`] and returns
//! [`Ctx::new`] from its own `connect`.
//!
//! # Flavours
//!
//! One cargo feature per WIT flavour of `wasi:messaging@0.2.0-draft`, over
//! the same [`Broker`] and with the same behaviour (topics, limits, error
//! texts):
//!
//! - `sync` (default): the draft's WIT, sync functions and a sync
//!   `incoming-handler.handle` export (WASI 0.2 guests).
//! - `async`: the original Qwasr's WIT: `send`, `request`, `reply` and
//!   `client.connect` are `async func`s, the `message` methods stay sync, and
//!   `handle` is an `async func` export (WASI 0.3 guests). It needs the
//!   component model's async ABI (`qwasr-kernel/p3`, an app with
//!   `concurrency`).
//!
//! Both bind the same name@version, so a runtime links one: with both
//! features on, [`add_to_linker`] returns an error. [`serve`] runs whichever
//! handler the component exports.
//!
//! # Topics
//!
//! A topic is tokens separated by `.` (`orders.created`): no empty token, no
//! whitespace. The manifest's `[messaging] topics` are patterns, where `*`
//! matches exactly one token (`audit.*` matches `audit.login`, not `audit` or
//! `audit.a.b`) and `>`, only as the last token, one or more trailing tokens
//! (`events.>` matches `events.a` and `events.a.b`, not `events`). Wildcards
//! are whole tokens, and only in patterns: `send` and `request` take
//! concrete topics. See [`check_topic_pattern`], [`check_topic`] and
//! [`topic_matches`].
//!
//! # What the guest sees
//!
//! - `client.connect` accepts any name; every client reaches the same
//!   broker. After `disconnect`, sends through that client fail with
//!   `error::connection`.
//! - A message handed to `incoming-handler.handle` has `topic()` set to the
//!   concrete topic it was sent to, and the data, content type and metadata
//!   it was sent with. A message's metadata reads as `none` when empty.
//! - `producer.send` to a topic nobody subscribes to succeeds and the message
//!   is dropped, as in NATS core.
//! - `request-reply.request` waits for `expected-replies` replies (default 1,
//!   0 counts as 1) or for `timeout-ms`, whichever comes first, and returns
//!   the replies received; none by then is `error::timeout`. The timeout
//!   defaults to, and is capped at, `[limits] timeout`: a request never
//!   outlives the request or message that made it. A request to a topic with
//!   no subscriber fails at once.
//! - `request-reply.reply` works on a message that came from `request`; a
//!   reply after the requester stopped waiting is dropped without error.
//! - Payloads over `[messaging] max-message-size` are refused by `send`,
//!   `request` and `reply`; deliveries over it are not handed to the handler.
//!
//! The errors a guest can get, word for word (`N`, `M`, `x`, `p` stand for
//! the actual values):
//!
//! ```text
//! send, request (topic):
//!   error::other("invalid topic `x`: it is empty; a topic is non-empty tokens separated by `.`, without wildcards")
//!   error::other("invalid topic `x`: token N is empty; a topic is non-empty tokens separated by `.`, without wildcards")
//!   error::other("invalid topic `x`: token N contains whitespace; a topic is non-empty tokens separated by `.`, without wildcards")
//!   error::other("invalid topic `x`: wildcards (`*`, `>`) are for subscriptions in [messaging] topics, not for sending; a topic is non-empty tokens separated by `.`, without wildcards")
//! send, request, reply (size):
//!   error::other("message of N bytes is over the limit of M bytes ([messaging] max-message-size in qwasr.toml)")
//! send, request (client):
//!   error::connection("client `x` is disconnected")
//! request:
//!   error::other("no subscriber for topic `x`")
//!   error::timeout                                       (no reply in time)
//! reply:
//!   error::other("the message has no reply address: only a message delivered by request-reply.request can be replied to")
//! send, request (embedded broker, a subscription's queue is full):
//!   error::other("queue for `p` is full (N messages waiting for a handler); the message was not sent")
//! ```
//!
//! A reply's `topic()` is the request's reply address (`_INBOX.N` with the
//! embedded broker).
//!
//! # The embedded broker's guarantees
//!
//! - **In process.** One bus per runtime. Messages never leave the process:
//!   another process, or another replica of the same app, does not see them.
//! - **At most once.** Each message is delivered to every subscription
//!   whose pattern matches its topic, once per subscription even when
//!   several of its patterns match. There are no acknowledgements and no
//!   redelivery: a handler that traps, runs past its deadline or returns an
//!   error does not get the message again (the failure is logged and
//!   counted).
//! - **Nothing on disk.** Messages waiting in a queue are lost when the
//!   runtime crashes, and dropped when it stops (SIGINT/SIGTERM): handlers
//!   already running finish, queued messages are not started.
//! - **Bounded queues.** Each subscription queues at most
//!   [`embedded::QUEUE_CAPACITY`] (10,000) messages. When the queue is full,
//!   `send` fails at once with the "queue ... is full" error instead of
//!   waiting, so a handler that publishes to its own topic never deadlocks.
//!   A send reaches all matching subscriptions or, if one is full, none.
//! - **Order.** Messages enter a queue in the order they were sent, but
//!   handlers run concurrently (a task per message, at most `[limits]
//!   instances` instances at once, shared with the HTTP server), so they may
//!   finish in any order.
//! - **Request-reply.** A request gets a private reply address (an inbox);
//!   replies beyond `expected-replies`, or after the requester stopped
//!   waiting, are dropped. A handler that makes a request answered by the
//!   same app needs a second free instance: with `[limits] instances = 1`
//!   such a request times out.

#![deny(missing_docs)]
// The shared operations are used by the flavour modules; with none compiled
// in there is nothing to use them.
#![cfg_attr(not(any(feature = "sync", feature = "async")), allow(dead_code))]

/// `bindgen!` for one flavour's WIT (`path`) and function flavours
/// (`imports`), with this crate's resource types, and the linking every
/// flavour does.
#[cfg(any(feature = "sync", feature = "async"))]
macro_rules! bindgen {
    ($path:tt, $imports:tt) => {
        mod generated {
            wasmtime::component::bindgen!({
                path: $path,
                world: "wasi:messaging/messaging-request-reply",
                imports: $imports,
                exports: { default: async },
                with: {
                    "wasi:messaging/types.client": crate::Client,
                    "wasi:messaging/types.message": crate::Message,
                    "wasi:messaging/request-reply.request-options": crate::RequestOptions,
                },
                anyhow: true,
            });
        }

        /// The component's `incoming-handler` export, resolved once.
        pub(crate) use generated::MessagingRequestReplyPre as HandlerPre;
        use generated::wasi::messaging::{producer, request_reply, types};

        pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
            types::add_to_linker::<T, HasMessaging>(linker, view::<T>)?;
            producer::add_to_linker::<T, HasMessaging>(linker, view::<T>)?;
            request_reply::add_to_linker::<T, HasMessaging>(linker, view::<T>)?;
            Ok(())
        }
    };
}

/// What both flavours' bindings share, for one flavour's generated `types`
/// and `request-reply` modules: the `message` and `request-options`
/// resources (sync functions in both WITs) and the error conversions.
#[cfg(any(feature = "sync", feature = "async"))]
macro_rules! shared_bindings {
    ($types:ident, $request_reply:ident) => {
        /// The outer `Result` traps the guest (a bad resource handle); the
        /// inner one is the guest's `result<_, error>`.
        type MsgResult<T> = anyhow::Result<Result<T, $types::Error>>;

        /// The guest's error, as the subscriber logs it.
        pub(crate) fn from_guest(e: $types::Error) -> $crate::Error {
            match e {
                $types::Error::Timeout => $crate::Error::Timeout,
                $types::Error::Connection(m) => $crate::Error::Connection(m),
                $types::Error::PermissionDenied(m) => $crate::Error::PermissionDenied(m),
                $types::Error::Other(m) => $crate::Error::Other(m),
            }
        }

        /// An operation's result, as the guest gets it.
        fn guest<T>(r: anyhow::Result<Result<T, $crate::Error>>) -> MsgResult<T> {
            Ok(r?.map_err(|e| match e {
                $crate::Error::Timeout => $types::Error::Timeout,
                $crate::Error::Connection(m) => $types::Error::Connection(m),
                $crate::Error::PermissionDenied(m) => $types::Error::PermissionDenied(m),
                $crate::Error::Other(m) => $types::Error::Other(m),
            }))
        }

        impl $types::Host for qwasr_kernel::CtxView<'_, $crate::Ctx> {}

        impl $types::HostMessage for qwasr_kernel::CtxView<'_, $crate::Ctx> {
            fn new(&mut self, data: Vec<u8>) -> anyhow::Result<Resource<$crate::Message>> {
                Ok(self.table.push($crate::Message::new(data))?)
            }

            fn topic(&mut self, m: Resource<$crate::Message>) -> anyhow::Result<Option<String>> {
                Ok(self.table.get(&m)?.topic.clone())
            }

            fn content_type(
                &mut self,
                m: Resource<$crate::Message>,
            ) -> anyhow::Result<Option<String>> {
                Ok(self.table.get(&m)?.content_type.clone())
            }

            fn set_content_type(
                &mut self,
                m: Resource<$crate::Message>,
                content_type: String,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&m)?.content_type = Some(content_type);
                Ok(())
            }

            fn data(&mut self, m: Resource<$crate::Message>) -> anyhow::Result<Vec<u8>> {
                Ok(self.table.get(&m)?.data.clone())
            }

            fn set_data(
                &mut self,
                m: Resource<$crate::Message>,
                data: Vec<u8>,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&m)?.data = data;
                Ok(())
            }

            fn metadata(
                &mut self,
                m: Resource<$crate::Message>,
            ) -> anyhow::Result<Option<Vec<(String, String)>>> {
                let metadata = &self.table.get(&m)?.metadata;
                Ok((!metadata.is_empty()).then(|| metadata.clone()))
            }

            fn add_metadata(
                &mut self,
                m: Resource<$crate::Message>,
                key: String,
                value: String,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&m)?.add_metadata(key, value);
                Ok(())
            }

            fn set_metadata(
                &mut self,
                m: Resource<$crate::Message>,
                meta: Vec<(String, String)>,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&m)?.metadata = meta;
                Ok(())
            }

            fn remove_metadata(
                &mut self,
                m: Resource<$crate::Message>,
                key: String,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&m)?.remove_metadata(&key);
                Ok(())
            }

            fn drop(&mut self, m: Resource<$crate::Message>) -> anyhow::Result<()> {
                self.table.delete(m)?;
                Ok(())
            }
        }

        impl $request_reply::HostRequestOptions for qwasr_kernel::CtxView<'_, $crate::Ctx> {
            fn new(&mut self) -> anyhow::Result<Resource<$crate::RequestOptions>> {
                Ok(self.table.push($crate::RequestOptions::default())?)
            }

            fn set_timeout_ms(
                &mut self,
                o: Resource<$crate::RequestOptions>,
                timeout_ms: u32,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&o)?.timeout_ms = Some(timeout_ms);
                Ok(())
            }

            fn set_expected_replies(
                &mut self,
                o: Resource<$crate::RequestOptions>,
                expected: u32,
            ) -> anyhow::Result<()> {
                self.table.get_mut(&o)?.expected_replies = Some(expected);
                Ok(())
            }

            fn drop(&mut self, o: Resource<$crate::RequestOptions>) -> anyhow::Result<()> {
                self.table.delete(o)?;
                Ok(())
            }
        }
    };
}

#[cfg(feature = "async")]
mod asynchronous;
pub mod embedded;
#[cfg(any(feature = "sync", feature = "async"))]
mod server;
#[cfg(feature = "sync")]
mod sync;

#[cfg(any(feature = "sync", feature = "async"))]
pub use server::serve;

use qwasr_kernel::{BackendConfig, CtxView, View};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasData, Linker, Resource};

/// A boxed future, as the backend trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// A messaging error, as a backend reports it and the guest receives it
/// (as the WIT `error` variant of the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The operation timed out (a request got no reply in time).
    Timeout,
    /// The connection to the broker failed or is closed.
    Connection(String),
    /// The broker refused the operation.
    PermissionDenied(String),
    /// Any other failure.
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out"),
            Error::Connection(m) => write!(f, "connection error: {m}"),
            Error::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A message: what a guest builds and sends, and what a subscription delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The concrete topic it was sent to; `None` until it is delivered.
    pub topic: Option<String>,
    /// The payload.
    pub data: Vec<u8>,
    /// The payload's format (`application/json`), if given.
    pub content_type: Option<String>,
    /// Headers, in order; at most one entry per key when set through
    /// [`Message::add_metadata`].
    pub metadata: Vec<(String, String)>,
    /// Where replies go (set on messages delivered by a request); backends
    /// choose the address format.
    pub reply_to: Option<String>,
}

impl Message {
    /// A message carrying `data` and nothing else.
    pub fn new(data: Vec<u8>) -> Message {
        Message {
            data,
            ..Message::default()
        }
    }

    /// Sets `key` to `value`, replacing any value it had.
    pub fn add_metadata(&mut self, key: String, value: String) {
        self.remove_metadata(&key);
        self.metadata.push((key, value));
    }

    /// Removes every value of `key`.
    pub fn remove_metadata(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }
}

/// Deliveries for one [`Broker::subscribe`] call; dropping it unsubscribes.
pub trait Subscription: Send {
    /// The next message, with `topic` set to the concrete topic it was sent
    /// to and `reply_to` set when it came from a request. `None` means the
    /// backend ended the subscription for good.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Message>> + Send + '_>>;
}

/// A backend that pumps deliveries into a tokio channel can hand out the
/// receiver as its subscription.
impl Subscription for tokio::sync::mpsc::Receiver<Message> {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Message>> + Send + '_>> {
        Box::pin(self.recv())
    }
}

/// What a messaging backend implements. Topics and patterns reaching it are
/// already checked ([`check_topic`], [`check_topic_pattern`]), payloads are
/// within the app's size limit, timeouts within the app's request timeout.
pub trait Broker: Send + Sync + 'static {
    /// Publishes `message` to `topic` (its `topic` and `reply_to` fields are
    /// ignored). Succeeds when nobody subscribes: the message is dropped.
    fn send<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, ()>;

    /// Publishes `message` to `topic` with a fresh reply address, and
    /// collects replies until `expected` (at least 1) arrived or `timeout`
    /// passed. Returns what arrived, [`Error::Timeout`] if nothing did.
    fn request<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
        timeout: Duration,
        expected: usize,
    ) -> BoxFuture<'a, Vec<Message>>;

    /// Sends `message` to `address`, a [`Message::reply_to`] this backend set.
    fn reply<'a>(&'a self, address: &'a str, message: Message) -> BoxFuture<'a, ()>;

    /// Subscribes to every topic matching one of `patterns` (see
    /// [`topic_matches`]). A message matching several of them should be
    /// delivered once.
    fn subscribe<'a>(&'a self, patterns: &'a [String]) -> BoxFuture<'a, Box<dyn Subscription>>;
}

/// Per-store `wasi:messaging` state: the backend and the app's limits,
/// shared by every request.
#[derive(Clone)]
pub struct Ctx {
    broker: Arc<dyn Broker>,
    max_message_size: u64,
    timeout: Duration,
}

impl Ctx {
    /// A context over `broker`, with the limits of `cfg`'s app
    /// (`[messaging] max-message-size`, `[limits] timeout`).
    pub fn new(broker: impl Broker, cfg: &BackendConfig) -> Ctx {
        Ctx::with_limits(
            Arc::new(broker),
            cfg.app.messaging.max_message_size,
            cfg.app.limits.timeout,
        )
    }

    fn with_limits(broker: Arc<dyn Broker>, max_message_size: u64, timeout: Duration) -> Ctx {
        Ctx {
            broker,
            max_message_size,
            timeout,
        }
    }

    fn check_size(&self, message: &Message) -> Result<(), Error> {
        let size = message.data.len() as u64;
        if size > self.max_message_size {
            return Err(Error::Other(format!(
                "message of {size} bytes is over the limit of {} bytes \
                 ([messaging] max-message-size in qwasr.toml)",
                self.max_message_size
            )));
        }
        Ok(())
    }

    /// `producer.send`, in every WIT flavour.
    async fn send(&self, topic: &str, mut message: Message) -> Result<(), Error> {
        check_topic(topic).map_err(Error::Other)?;
        self.check_size(&message)?;
        message.topic = None;
        message.reply_to = None;
        self.broker.send(topic, message).await
    }

    /// `request-reply.request`, in every WIT flavour.
    async fn request(
        &self,
        topic: &str,
        mut message: Message,
        options: RequestOptions,
    ) -> Result<Vec<Message>, Error> {
        check_topic(topic).map_err(Error::Other)?;
        self.check_size(&message)?;
        message.topic = None;
        message.reply_to = None;
        let timeout = options.timeout_ms.map_or(self.timeout, |ms| {
            Duration::from_millis(ms.into()).min(self.timeout)
        });
        let expected = options.expected_replies.unwrap_or(1).max(1) as usize;
        self.broker.request(topic, message, timeout, expected).await
    }

    /// `request-reply.reply`, in every WIT flavour.
    /// `address` is the replied-to message's [`Message::reply_to`].
    async fn reply(&self, address: Option<&str>, mut message: Message) -> Result<(), Error> {
        let Some(address) = address else {
            return Err(Error::Other(
                "the message has no reply address: only a message delivered by \
                 request-reply.request can be replied to"
                    .into(),
            ));
        };
        self.check_size(&message)?;
        message.topic = None;
        message.reply_to = None;
        self.broker.reply(address, message).await
    }
}

/// A `client` resource, as the guest holds it.
pub struct Client {
    name: String,
    connected: bool,
}

impl Client {
    fn check(&self) -> Result<(), Error> {
        if self.connected {
            Ok(())
        } else {
            Err(Error::Connection(format!(
                "client `{}` is disconnected",
                self.name
            )))
        }
    }
}

/// A `request-options` resource, as the guest holds it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    timeout_ms: Option<u32>,
    expected_replies: Option<u32>,
}

/// Adds the flavour of `types`, `producer` and `request-reply` compiled in
/// (cargo feature `sync` or `async`) to the linker.
///
/// Both flavours bind `wasi:messaging@0.2.0-draft`, which one linker holds
/// once: with both features on this is an error (qwasr-gen enables the one
/// the component uses).
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    #[cfg(all(feature = "sync", feature = "async"))]
    {
        // Both stay compiled (`--all-features` builds); neither is linked.
        let _ = (
            linker,
            sync::add_to_linker::<T>,
            asynchronous::add_to_linker::<T>,
        );
        anyhow::bail!(
            "qwasr-wasi-messaging is built with both the `sync` and the `async` feature, two \
             flavours of wasi:messaging@0.2.0-draft that cannot be linked together; enable \
             only the one the component uses"
        )
    }
    #[cfg(not(all(feature = "sync", feature = "async")))]
    {
        #[cfg(feature = "sync")]
        sync::add_to_linker(linker)?;
        #[cfg(feature = "async")]
        asynchronous::add_to_linker(linker)?;
        let _ = linker;
        Ok(())
    }
}

pub use qwasr_kernel::{check_topic, check_topic_pattern, topic_matches};

struct HasMessaging;

impl HasData for HasMessaging {
    type Data<'a> = CtxView<'a, Ctx>;
}

fn view<T: View<Ctx>>(t: &mut T) -> CtxView<'_, Ctx> {
    t.view()
}

/// The operations every flavour shares. The outer `Result` traps the guest
/// (a bad resource handle); the inner one is the guest's error.
mod ops {
    use super::*;
    use qwasr_kernel::Access;

    type Op<T> = anyhow::Result<Result<T, Error>>;

    /// `client.connect`: any name; one broker behind every name, the name
    /// only shows up in errors.
    pub(crate) fn connect(s: &mut impl Access<Ctx>, name: String) -> Op<Resource<Client>> {
        let client = Client {
            name,
            connected: true,
        };
        s.on(|v| Ok(Ok(v.table.push(client)?)))
    }

    pub(crate) fn disconnect(v: &mut CtxView<'_, Ctx>, c: &Resource<Client>) -> Op<()> {
        v.table.get_mut(c)?.connected = false;
        Ok(Ok(()))
    }

    pub(crate) async fn send(
        s: &mut impl Access<Ctx>,
        c: &Resource<Client>,
        topic: String,
        message: Resource<Message>,
    ) -> Op<()> {
        let (ctx, message) = s.on(|v| -> anyhow::Result<_> {
            // The message is the guest's to give away, whatever happens next.
            let message = v.table.delete(message)?;
            let ctx = v.table.get(c)?.check().map(|()| v.ctx.clone());
            Ok((ctx, message))
        })?;
        match ctx {
            Ok(ctx) => Ok(ctx.send(&topic, message).await),
            Err(e) => Ok(Err(e)),
        }
    }

    pub(crate) async fn request(
        s: &mut impl Access<Ctx>,
        c: &Resource<Client>,
        topic: String,
        message: &Resource<Message>,
        options: Option<Resource<RequestOptions>>,
    ) -> Op<Vec<Resource<Message>>> {
        let prepared = s.on(|v| -> anyhow::Result<_> {
            let options = match options {
                Some(o) => v.table.delete(o)?,
                None => RequestOptions::default(),
            };
            let message = v.table.get(message)?.clone();
            let ctx = v.table.get(c)?.check().map(|()| v.ctx.clone());
            Ok(ctx.map(|ctx| (ctx, message, options)))
        })?;
        let (ctx, message, options) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        let replies = match ctx.request(&topic, message, options).await {
            Ok(replies) => replies,
            Err(e) => return Ok(Err(e)),
        };
        s.on(|v| {
            let mut handles = Vec::with_capacity(replies.len());
            for reply in replies {
                handles.push(v.table.push(reply)?);
            }
            Ok(Ok(handles))
        })
    }

    pub(crate) async fn reply(
        s: &mut impl Access<Ctx>,
        reply_to: &Resource<Message>,
        message: Resource<Message>,
    ) -> Op<()> {
        let (ctx, address, message) = s.on(|v| -> anyhow::Result<_> {
            let message = v.table.delete(message)?;
            let address = v.table.get(reply_to)?.reply_to.clone();
            Ok((v.ctx.clone(), address, message))
        })?;
        Ok(ctx.reply(address.as_deref(), message).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::Bus;

    fn ctx(max: u64, timeout: Duration) -> Ctx {
        Ctx::with_limits(Arc::new(Bus::new()), max, timeout)
    }

    #[tokio::test]
    async fn send_enforces_the_size_limit_and_topic_rules() {
        let ctx = ctx(4, Duration::from_secs(1));
        let mut sub = ctx.broker.subscribe(&["t".into()]).await.unwrap();
        assert_eq!(
            ctx.send("t", Message::new(vec![0; 5])).await,
            Err(Error::Other(
                "message of 5 bytes is over the limit of 4 bytes \
                 ([messaging] max-message-size in qwasr.toml)"
                    .into()
            ))
        );
        assert_eq!(
            ctx.send("t.*", Message::new(vec![])).await,
            Err(Error::Other(check_topic("t.*").unwrap_err()))
        );
        ctx.send("t", Message::new(vec![1; 4])).await.unwrap();
        assert_eq!(sub.next().await.unwrap().data, vec![1; 4]);
        let mut reply = Message::new(vec![0; 5]);
        reply.reply_to = Some("_INBOX.x".into());
        assert_eq!(
            ctx.request("t", reply.clone(), RequestOptions::default())
                .await
                .unwrap_err()
                .to_string(),
            "message of 5 bytes is over the limit of 4 bytes \
             ([messaging] max-message-size in qwasr.toml)"
        );
        assert_eq!(
            ctx.reply(None, Message::new(vec![])).await,
            Err(Error::Other(
                "the message has no reply address: only a message delivered by \
                 request-reply.request can be replied to"
                    .into()
            ))
        );
    }

    #[tokio::test]
    async fn a_guest_cannot_forge_topic_or_reply_address() {
        let ctx = ctx(1 << 20, Duration::from_secs(1));
        let mut sub = ctx.broker.subscribe(&["a.>".into()]).await.unwrap();
        let mut m = Message::new(b"x".to_vec());
        m.topic = Some("elsewhere".into());
        m.reply_to = Some("_INBOX.42".into());
        m.content_type = Some("text/plain".into());
        m.add_metadata("k".into(), "1".into());
        m.add_metadata("k".into(), "2".into());
        m.add_metadata("j".into(), "3".into());
        ctx.send("a.b", m).await.unwrap();
        let got = sub.next().await.unwrap();
        assert_eq!(got.topic.as_deref(), Some("a.b"));
        assert_eq!(got.reply_to, None);
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            got.metadata,
            vec![("k".into(), "2".into()), ("j".into(), "3".into())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_timeout_defaults_to_and_is_capped_at_the_app_timeout() {
        let ctx = ctx(1 << 20, Duration::from_secs(30));
        let _silent = ctx.broker.subscribe(&["q".into()]).await.unwrap();
        let started = tokio::time::Instant::now();
        let options = RequestOptions {
            timeout_ms: Some(u32::MAX),
            expected_replies: Some(0),
        };
        assert_eq!(
            ctx.request("q", Message::new(vec![]), options).await,
            Err(Error::Timeout)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let options = RequestOptions {
            timeout_ms: Some(250),
            expected_replies: None,
        };
        assert_eq!(
            ctx.request("q", Message::new(vec![]), options).await,
            Err(Error::Timeout)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    #[test]
    fn a_disconnected_client_is_refused() {
        let mut c = Client {
            name: "main".into(),
            connected: true,
        };
        assert_eq!(c.check(), Ok(()));
        c.connected = false;
        assert_eq!(
            c.check(),
            Err(Error::Connection("client `main` is disconnected".into()))
        );
    }

    /// A runtime links one flavour of a name@version.
    #[cfg(all(feature = "sync", feature = "async"))]
    #[test]
    fn both_flavours_are_refused_together() {
        let limits = qwasr_kernel::Limits {
            instances: 1,
            ..qwasr_kernel::Limits::DEFAULT
        };
        let engine = wasmtime::Engine::new(&qwasr_kernel::engine_config(&limits, true)).unwrap();
        let mut linker = Linker::<qwasr_kernel::testing::Bare<Ctx>>::new(&engine);
        assert_eq!(
            add_to_linker(&mut linker).unwrap_err().to_string(),
            "qwasr-wasi-messaging is built with both the `sync` and the `async` feature, two \
             flavours of wasi:messaging@0.2.0-draft that cannot be linked together; enable \
             only the one the component uses"
        );
    }

    #[test]
    fn metadata_keys_are_replaced_and_removed() {
        let mut m = Message::new(vec![]);
        m.add_metadata("a".into(), "1".into());
        m.add_metadata("b".into(), "2".into());
        m.add_metadata("a".into(), "3".into());
        assert_eq!(
            m.metadata,
            vec![("b".into(), "2".into()), ("a".into(), "3".into())]
        );
        m.remove_metadata("b");
        m.remove_metadata("missing");
        assert_eq!(m.metadata, vec![("a".into(), "3".into())]);
    }
}
