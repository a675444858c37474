//! `wasi:messaging` on core NATS.
//!
//! Topics are NATS subjects as they are (the interface's topic syntax is
//! NATS's). A message's metadata travels as NATS headers and its content
//! type as the `Content-Type` header.
//!
//! - `subscribe` makes one queue subscription per pattern in the queue group
//!   `qwasr.<app name>`: every replica of the app joins it, so each message
//!   is handled by one of them. Patterns covered by another pattern of the
//!   same call (`orders.*` under `orders.>`) are dropped, so such a message
//!   arrives once; a message matching two overlapping patterns neither of
//!   which covers the other (`a.*.c`, `a.b.*`) arrives once per pattern.
//! - `send` and `reply` publish and flush: they return once the message is
//!   written to the server's socket. Core NATS is at most once: a message
//!   nobody subscribes to is dropped, and one in flight when the connection
//!   breaks may be lost.
//! - `request` subscribes to a fresh inbox, publishes with it as the reply
//!   address and collects replies until enough arrived or the timeout;
//!   the server's "no responders" answer fails it at once.

use crate::conn::{self, Nats};
use async_nats::client::RequestErrorKind;
use async_nats::{HeaderMap, HeaderName, HeaderValue, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::select_all;
use qwasr_kernel::BackendConfig;
use qwasr_wasi_messaging::{BoxFuture, Broker, Ctx, Error, Message, Subscription};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

/// Deliveries a subscription holds before the pump stops reading from the
/// client (whose own buffer then fills, and NATS drops for slow consumers).
const QUEUE: usize = 1024;

/// The header carrying [`Message::content_type`].
const CONTENT_TYPE: &str = "Content-Type";

/// Connects to NATS (`NATS_*` settings, see the README).
pub async fn connect(cfg: &BackendConfig) -> anyhow::Result<Ctx> {
    let nats = Nats::connect(cfg, conn::MESSAGING_OPTIONS).await?;
    Ok(Ctx::new(
        NatsBroker {
            nats,
            group: queue_group(cfg.app.name),
        },
        cfg,
    ))
}

/// The queue group of an app's replicas: `qwasr.<app>` (a group name holds
/// no whitespace).
fn queue_group(app: &str) -> String {
    let app: String = app
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    format!("qwasr.{app}")
}

/// A [`Broker`] on one NATS client.
pub struct NatsBroker {
    nats: Nats,
    group: String,
}

impl NatsBroker {
    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Other(format!("{:#}", self.nats.error(what, e)))
    }

    fn connection(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Connection(format!("{:#}", self.nats.error(what, e)))
    }

    fn check_connected(&self, what: &str) -> Result<(), Error> {
        self.nats
            .check_connected(what)
            .map_err(|e| Error::Connection(format!("{e:#}")))
    }

    /// Runs `op` within the timeout: its error is `Other`, running out of
    /// time is `Connection` (a live server answers at once).
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.nats.timeout(), op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(_) => {
                Err(self.connection(what, format!("no answer within {:?}", self.nats.timeout())))
            }
        }
    }

    /// Waits until the server has processed everything published so far: a
    /// request to a subject nobody listens to, which the server answers at
    /// once with "no responders" (a NATS connection keeps its order). A
    /// flush alone would only reach the socket, which a dead server does
    /// not refuse at first.
    async fn flush(&self, what: &str) -> Result<(), Error> {
        let probe = self.nats.client.new_inbox();
        let request = self.nats.client.request(probe, Bytes::new());
        match tokio::time::timeout(self.nats.timeout(), request).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(e)) => Err(self.connection(what, e)),
            Err(_) => {
                Err(self.connection(what, format!("no answer within {:?}", self.nats.timeout())))
            }
        }
    }

    /// Publishes `message` to `subject` (with `reply`) and flushes.
    async fn publish(
        &self,
        what: &str,
        subject: &str,
        reply: Option<&str>,
        message: Message,
    ) -> Result<(), Error> {
        self.check_connected(what)?;
        let headers = headers(&message).map_err(|e| Error::Other(format!("{what}: {e}")))?;
        let client = &self.nats.client;
        let subject = subject.to_string();
        let payload = message.data.into();
        let published = match (reply, headers) {
            (None, None) => self.bounded(what, client.publish(subject, payload)).await,
            (None, Some(h)) => {
                self.bounded(what, client.publish_with_headers(subject, h, payload))
                    .await
            }
            (Some(r), None) => {
                let r = r.to_string();
                self.bounded(what, client.publish_with_reply(subject, r, payload))
                    .await
            }
            (Some(r), Some(h)) => {
                let r = r.to_string();
                let publish = client.publish_with_reply_and_headers(subject, r, h, payload);
                self.bounded(what, publish).await
            }
        };
        published?;
        self.flush(what).await
    }
}

/// The NATS headers for a message's metadata and content type; `None` when
/// it has neither.
fn headers(message: &Message) -> Result<Option<HeaderMap>, String> {
    if message.metadata.is_empty() && message.content_type.is_none() {
        return Ok(None);
    }
    let mut h = HeaderMap::new();
    let pairs = message
        .content_type
        .iter()
        .map(|ct| (CONTENT_TYPE, ct.as_str()))
        .chain(
            message
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    for (k, v) in pairs {
        let name = HeaderName::from_str(k)
            .map_err(|_| format!("metadata key `{k}` cannot be a NATS header name"))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            format!("metadata value of `{k}` cannot be a NATS header value (no CR or LF)")
        })?;
        h.append(name, value);
    }
    Ok(Some(h))
}

/// A NATS message as the guest sees it.
fn from_nats(m: async_nats::Message) -> Message {
    let mut out = Message::new(m.payload.to_vec());
    out.topic = Some(m.subject.to_string());
    out.reply_to = m.reply.map(|r| r.to_string());
    if let Some(h) = &m.headers {
        for (name, values) in h.iter() {
            let name = name.to_string();
            for v in values {
                if name.eq_ignore_ascii_case(CONTENT_TYPE) && out.content_type.is_none() {
                    out.content_type = Some(v.to_string());
                } else {
                    out.metadata.push((name.clone(), v.to_string()));
                }
            }
        }
    }
    out
}

/// Whether every subject `narrow` matches, `wide` matches too.
fn covers(wide: &str, narrow: &str) -> bool {
    let (w, n): (Vec<&str>, Vec<&str>) = (wide.split('.').collect(), narrow.split('.').collect());
    for (i, wt) in w.iter().enumerate() {
        match *wt {
            // Matches one or more trailing tokens: `narrow` must have one.
            ">" => return i < n.len(),
            "*" => match n.get(i) {
                Some(&">") | None => return false,
                Some(_) => {}
            },
            lit => {
                if n.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
    }
    w.len() == n.len()
}

/// `patterns` without those another one covers (and without repeats).
fn prune(patterns: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        let covered = patterns.iter().enumerate().any(|(j, q)| {
            // Of two equal patterns keep the first.
            j != i && covers(q, p) && (!covers(p, q) || j < i)
        });
        if !covered {
            kept.push(p.clone());
        }
    }
    kept
}

impl Broker for NatsBroker {
    fn send<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let what = format!("cannot send to `{topic}`");
            self.publish(&what, topic, None, message).await
        })
    }

    fn request<'a>(
        &'a self,
        topic: &'a str,
        message: Message,
        timeout: Duration,
        expected: usize,
    ) -> BoxFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let what = format!("cannot send a request to `{topic}`");
            self.check_connected(&what)?;
            let expected = expected.max(1);
            let deadline = tokio::time::Instant::now().checked_add(timeout);
            let inbox = self.nats.client.new_inbox();
            let mut replies_sub = self
                .bounded(&what, self.nats.client.subscribe(inbox.clone()))
                .await?;
            self.publish(&what, topic, Some(&inbox), message).await?;
            let mut replies = Vec::new();
            while replies.len() < expected {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, replies_sub.next()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                    None => replies_sub.next().await,
                };
                let Some(reply) = next else { break };
                match reply.status {
                    Some(StatusCode::NO_RESPONDERS) if replies.is_empty() => {
                        return Err(Error::Other(format!("no subscriber for topic `{topic}`")));
                    }
                    // Other status messages are the server's, not replies.
                    Some(s) if s != StatusCode::OK => continue,
                    _ => replies.push(from_nats(reply)),
                }
            }
            // Dropping the subscription unsubscribes: later replies are dropped.
            drop(replies_sub);
            if replies.is_empty() {
                Err(Error::Timeout)
            } else {
                Ok(replies)
            }
        })
    }

    fn reply<'a>(&'a self, address: &'a str, message: Message) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let what = format!("cannot reply to `{address}`");
            self.publish(&what, address, None, message).await
        })
    }

    fn subscribe<'a>(&'a self, patterns: &'a [String]) -> BoxFuture<'a, Box<dyn Subscription>> {
        Box::pin(async move {
            for p in patterns {
                qwasr_wasi_messaging::check_topic_pattern(p).map_err(Error::Other)?;
            }
            let mut subs: Vec<Subscriber> = Vec::new();
            for p in prune(patterns) {
                let what = format!("cannot subscribe to `{p}`");
                self.check_connected(&what)?;
                let sub = self.nats.client.queue_subscribe(p, self.group.clone());
                subs.push(self.bounded(&what, sub).await?);
            }
            // Make sure the server has the subscriptions before returning.
            self.flush("cannot subscribe").await?;
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(pump(select_all(subs), tx));
            Ok(Box::new(rx) as Box<dyn Subscription>)
        })
    }
}

/// Moves deliveries into `tx` until the subscription is dropped; dropping
/// the NATS subscribers on the way out unsubscribes them.
async fn pump(mut subs: futures_util::stream::SelectAll<Subscriber>, tx: mpsc::Sender<Message>) {
    loop {
        let next = tokio::select! {
            () = tx.closed() => return,
            next = subs.next() => next,
        };
        let Some(m) = next else { return };
        if m.status.is_some_and(|s| s != StatusCode::OK) {
            continue;
        }
        if tx.send(from_nats(m)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Server};
    use std::collections::HashSet;
    use std::sync::Arc;

    async fn broker(app: &'static qwasr_kernel::App, url: &str) -> NatsBroker {
        let cfg = testing::config(app, "messaging", url);
        NatsBroker {
            nats: Nats::connect(&cfg, conn::MESSAGING_OPTIONS).await.unwrap(),
            group: queue_group(app.name),
        }
    }

    fn topic(name: &str) -> String {
        format!("{}.{name}", testing::prefix())
    }

    fn msg(data: &str) -> Message {
        Message::new(data.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn connect_builds_a_context() {
        let cfg = testing::config(testing::app("m-ctx"), "messaging", &testing::url());
        connect(&cfg).await.unwrap();
    }

    #[tokio::test]
    async fn replicas_in_one_queue_group_share_the_messages() {
        let app = testing::app(&format!("m-queue-{}", testing::prefix()));
        let (a, b, sender) = (
            broker(app, &testing::url()).await,
            broker(app, &testing::url()).await,
            broker(testing::app("m-sender"), &testing::url()).await,
        );
        let t = topic("jobs");
        let pattern = vec![format!("{t}.*")];
        let mut subs = [
            a.subscribe(&pattern).await.unwrap(),
            b.subscribe(&pattern).await.unwrap(),
        ];
        for i in 0..100 {
            sender
                .send(&format!("{t}.x"), msg(&i.to_string()))
                .await
                .unwrap();
        }
        let mut got = [Vec::new(), Vec::new()];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got[0].len() + got[1].len() < 100 {
            let [sa, sb] = &mut subs;
            let (n, m) = tokio::select! {
                m = sa.next() => (0, m),
                m = sb.next() => (1, m),
                () = tokio::time::sleep_until(deadline) => panic!("only {} messages", got[0].len() + got[1].len()),
            };
            let m = m.unwrap();
            assert_eq!(m.topic.as_deref(), Some(format!("{t}.x").as_str()));
            got[n].push(String::from_utf8(m.data).unwrap());
        }
        // Nothing more comes: each message went to one replica only.
        for s in &mut subs {
            assert!(
                tokio::time::timeout(Duration::from_millis(300), s.next())
                    .await
                    .is_err()
            );
        }
        assert!(!got[0].is_empty() && !got[1].is_empty(), "{got:?}");
        let all: HashSet<String> = got.concat().into_iter().collect();
        assert_eq!(all, (0..100).map(|i| i.to_string()).collect::<HashSet<_>>());
    }

    #[tokio::test]
    async fn a_message_matching_covering_patterns_arrives_once() {
        let b = broker(testing::app("m-cover"), &testing::url()).await;
        let t = topic("orders");
        let mut sub = b
            .subscribe(&[format!("{t}.*"), format!("{t}.>")])
            .await
            .unwrap();
        b.send(&format!("{t}.a"), msg("one")).await.unwrap();
        b.send(&format!("{t}.a.b"), msg("two")).await.unwrap();
        assert_eq!(sub.next().await.unwrap().data, b"one");
        assert_eq!(sub.next().await.unwrap().data, b"two");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sub.next())
                .await
                .is_err()
        );
        let e = b.subscribe(&["a.>.b".to_string()]).await.err();
        assert_eq!(
            e,
            Some(Error::Other(
                qwasr_wasi_messaging::check_topic_pattern("a.>.b").unwrap_err()
            ))
        );
    }

    /// Answers every request on `sub` with `answer`.
    fn responder(b: Arc<NatsBroker>, mut sub: Box<dyn Subscription>, answer: &'static str) {
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let address = m.reply_to.clone().unwrap();
                let mut reply = msg(answer);
                reply.metadata = m.metadata.clone();
                b.reply(&address, reply).await.unwrap();
            }
        });
    }

    #[tokio::test]
    async fn request_reply() {
        let a = Arc::new(broker(testing::app("m-rr-a"), &testing::url()).await);
        let b = Arc::new(broker(testing::app("m-rr-b"), &testing::url()).await);
        let t = topic("svc");
        responder(
            a.clone(),
            a.subscribe(&[format!("{t}.*")]).await.unwrap(),
            "pong-a",
        );
        let mut ping = msg("ping");
        ping.metadata = vec![("trace".into(), "42".into())];
        let replies = b
            .request(
                &format!("{t}.ping"),
                ping.clone(),
                Duration::from_secs(5),
                1,
            )
            .await
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].data, b"pong-a");
        assert_eq!(
            replies[0].metadata,
            vec![("trace".to_string(), "42".to_string())]
        );
        assert!(replies[0].topic.as_deref().unwrap().starts_with("_INBOX."));

        // Another app's group answers too: two replies.
        responder(
            b.clone(),
            b.subscribe(&[format!("{t}.*")]).await.unwrap(),
            "pong-b",
        );
        let mut got: Vec<Vec<u8>> = b
            .request(&format!("{t}.ping"), ping, Duration::from_secs(5), 2)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.data)
            .collect();
        got.sort();
        assert_eq!(got, vec![b"pong-a".to_vec(), b"pong-b".to_vec()]);

        // Nobody listens: at once. A silent listener: a timeout.
        let started = std::time::Instant::now();
        let nobody = format!("{t}-nobody.x");
        assert_eq!(
            b.request(&nobody, msg("?"), Duration::from_secs(30), 1)
                .await,
            Err(Error::Other(format!("no subscriber for topic `{nobody}`")))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let silent = topic("silent");
        let _s = a.subscribe(std::slice::from_ref(&silent)).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            b.request(&silent, msg("?"), Duration::from_millis(500), 1)
                .await,
            Err(Error::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        // A late reply is dropped without error.
        b.reply("_INBOX.gone", msg("late")).await.unwrap();
    }

    #[tokio::test]
    async fn plain_nats_clients_interoperate() {
        let b = broker(testing::app("m-plain"), &testing::url()).await;
        let plain = async_nats::connect(testing::url()).await.unwrap();
        let t = topic("plain");

        // Plain client to a Broker subscription, with headers.
        let mut sub = b.subscribe(&[format!("{t}.in")]).await.unwrap();
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "text/plain");
        h.insert("X-Key", "v");
        plain
            .publish_with_headers(format!("{t}.in"), h, "hello".into())
            .await
            .unwrap();
        plain
            .publish(format!("{t}.in"), "bare".into())
            .await
            .unwrap();
        plain.flush().await.unwrap();
        let m = sub.next().await.unwrap();
        assert_eq!(m.topic.as_deref(), Some(format!("{t}.in").as_str()));
        assert_eq!(m.data, b"hello");
        assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        assert_eq!(m.metadata, vec![("X-Key".to_string(), "v".to_string())]);
        assert_eq!(m.reply_to, None);
        let m = sub.next().await.unwrap();
        assert_eq!(
            (m.data, m.content_type, m.metadata),
            (b"bare".to_vec(), None, vec![])
        );

        // Broker to a plain subscriber.
        let mut plain_sub = plain.subscribe(format!("{t}.out")).await.unwrap();
        // A round trip: the server has the subscription once it answers.
        let _ = plain.request(plain.new_inbox(), "".into()).await;
        let mut out = msg("world");
        out.content_type = Some("application/json".into());
        out.metadata = vec![("k".into(), "v1".into())];
        b.send(&format!("{t}.out"), out).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), plain_sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&m.payload[..], b"world");
        let h = m.headers.unwrap();
        assert_eq!(
            h.get("Content-Type").map(|v| v.as_str()),
            Some("application/json")
        );
        assert_eq!(h.get("k").map(|v| v.as_str()), Some("v1"));

        // Metadata NATS cannot carry is refused, not mangled.
        let mut bad = msg("x");
        bad.metadata = vec![("a\r\nb".into(), "v".into())];
        assert!(matches!(
            b.send(&format!("{t}.out"), bad).await,
            Err(Error::Other(_))
        ));
    }

    #[tokio::test]
    async fn an_outage_gives_errors_then_recovers_by_itself() {
        let mut server = Server::start();
        let app = testing::app("m-outage");
        let b = broker(app, &server.url()).await;
        let t = topic("o");
        let mut sub = b.subscribe(std::slice::from_ref(&t)).await.unwrap();
        b.send(&t, msg("before")).await.unwrap();
        assert_eq!(sub.next().await.unwrap().data, b"before");

        server.kill();
        let started = std::time::Instant::now();
        let e = b.send(&t, msg("during")).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let Error::Connection(text) = &e else {
            panic!("{e:?}")
        };
        assert!(
            text.contains(&format!("NATS at nats://127.0.0.1:{}", server.port)),
            "{text}"
        );
        let e = b
            .request(&t, msg("?"), Duration::from_secs(1), 1)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Connection(_)), "{e:?}");

        server.restart();
        let started = std::time::Instant::now();
        while let Err(e) = b.send(&t, msg("after")).await {
            assert!(started.elapsed() < Duration::from_secs(20), "{e:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The subscription was renewed with the connection. "during" may
        // have reached the server before it died: at most once, not never.
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap()
                .unwrap();
            if m.data == b"after" {
                break;
            }
            assert_eq!(m.data, b"during");
        }
    }

    #[tokio::test]
    async fn credentials_from_the_url_and_the_settings_are_used() {
        let server = Server::start_with(&["--user", "alice", "--pass", "wonder1and"]);
        let app = testing::app("m-auth");
        let port = server.port;
        let url = format!("nats://alice:wonder1and@127.0.0.1:{port}");
        let b = broker(app, &url).await;
        b.send("t", msg("x")).await.unwrap();
        let mut cfg = testing::config(app, "messaging", &server.url());
        cfg.options.push(("user".into(), "alice".into()));
        cfg.options.push(("password".into(), "wonder1and".into()));
        connect(&cfg).await.unwrap();

        let mut cfg = testing::config(app, "messaging", &server.url());
        cfg.options.push(("user".into(), "alice".into()));
        cfg.options.push(("password".into(), "wr0ng-pass".into()));
        cfg.options.push(("retries".into(), "1".into()));
        let e = format!("{:#}", connect(&cfg).await.err().unwrap());
        assert!(
            e.starts_with(&format!(
                "cannot connect to NATS at nats://127.0.0.1:{port}"
            )),
            "{e}"
        );
        assert!(e.contains("authorization violation"), "{e}");
        assert!(!e.contains("wr0ng"), "{e}");
    }

    #[tokio::test]
    async fn start_up_gives_up_naming_nats_and_the_redacted_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://tok3n-secret@127.0.0.1:{port}");
        let mut cfg = testing::config(testing::app("m-startup"), "messaging", &url);
        cfg.options.push(("retries".into(), "2".into()));
        let e = format!("{:#}", connect(&cfg).await.err().unwrap());
        assert!(
            e.starts_with(&format!(
                "cannot connect to NATS at nats://***@127.0.0.1:{port} after 2 attempts"
            )),
            "{e}"
        );
        assert!(!e.contains("tok3n"), "{e}");
    }

    #[test]
    fn covering_patterns() {
        assert!(covers("a.>", "a.*"));
        assert!(covers("a.>", "a.b.c"));
        assert!(covers("a.>", "a.>"));
        assert!(!covers("a.>", "a"));
        assert!(covers("a.*", "a.b"));
        assert!(!covers("a.*", "a.>"));
        assert!(!covers("a.*", "a.b.c"));
        assert!(covers(">", "a"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.*.c", "a.b.*"));
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            prune(&p(&["orders.*", "orders.>", "audit"])),
            p(&["orders.>", "audit"])
        );
        assert_eq!(prune(&p(&["x", "x", "y.*"])), p(&["x", "y.*"]));
        assert_eq!(prune(&p(&["a.*.c", "a.b.*"])), p(&["a.*.c", "a.b.*"]));
    }
}
