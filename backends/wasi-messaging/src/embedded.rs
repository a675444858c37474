//! The embedded default: an in-process broker, [`Bus`]. At most once, in
//! memory, bounded queues; see the crate docs for what it guarantees.

use crate::{BoxFuture, Broker, Ctx, Error, Message, Subscription, check_topic_pattern};
use qwasr_kernel::BackendConfig;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Messages each subscription queues before `send` to it fails.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Starts the in-process broker; it takes no options.
pub async fn connect(cfg: &BackendConfig) -> anyhow::Result<Ctx> {
    if let Some((k, _)) = cfg.options.first() {
        anyhow::bail!("the embedded messaging backend takes no options, but `{k}` was given");
    }
    Ok(Ctx::new(Bus::new(), cfg))
}

/// An in-process message bus: subscriptions with bounded queues, and
/// inboxes for request-reply.
pub struct Bus {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    subscriptions: Vec<Sub>,
    /// Reply addresses of requests still waiting, and where their replies go.
    inboxes: HashMap<String, mpsc::Sender<Message>>,
    next_inbox: u64,
}

struct Sub {
    patterns: Vec<String>,
    queue: mpsc::Sender<Message>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// A bus whose subscriptions queue [`QUEUE_CAPACITY`] messages each.
    pub fn new() -> Bus {
        Bus::with_capacity(QUEUE_CAPACITY)
    }

    /// A bus whose subscriptions queue `capacity` messages each (at least 1).
    pub fn with_capacity(capacity: usize) -> Bus {
        Bus {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a panic
        // elsewhere while holding the lock is no reason to stop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `message` for every subscription matching `topic`, or for
    /// none if one of them is full; returns how many got it.
    fn publish(&self, topic: &str, mut message: Message) -> Result<usize, Error> {
        let mut state = self.lock();
        state.subscriptions.retain(|s| !s.queue.is_closed());
        let mut slots = Vec::new();
        for sub in &state.subscriptions {
            let Some(pattern) = sub.patterns.iter().find(|p| crate::topic_matches(p, topic)) else {
                continue;
            };
            match sub.queue.try_reserve() {
                Ok(slot) => slots.push(slot),
                Err(TrySendError::Full(())) => {
                    return Err(Error::Other(format!(
                        "queue for `{pattern}` is full ({} messages waiting for a handler); \
                         the message was not sent",
                        self.capacity
                    )));
                }
                // Unsubscribed since the `retain` above: nobody to deliver to.
                Err(TrySendError::Closed(())) => {}
            }
        }
        let delivered = slots.len();
        message.topic = Some(topic.to_string());
        if let Some(last) = slots.pop() {
            for slot in slots {
                slot.send(message.clone());
            }
            last.send(message);
        }
        Ok(delivered)
    }
}

/// Forgets a request's inbox when the request returns or is dropped.
struct Inbox<'a> {
    bus: &'a Bus,
    address: String,
}

impl Drop for Inbox<'_> {
    fn drop(&mut self) {
        self.bus.lock().inboxes.remove(&self.address);
    }
}

impl Broker for Bus {
    fn send<'a>(&'a self, topic: &'a str, mut message: Message) -> BoxFuture<'a, ()> {
        message.reply_to = None;
        let result = self.publish(topic, message).map(|_| ());
        Box::pin(async move { result })
    }

    fn request<'a>(
        &'a self,
        topic: &'a str,
        mut message: Message,
        timeout: Duration,
        expected: usize,
    ) -> BoxFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let expected = expected.max(1);
            // Room for every reply the requester waits for; more are dropped.
            let (tx, mut rx) = mpsc::channel(expected.min(self.capacity));
            let inbox = {
                let mut state = self.lock();
                let address = format!("_INBOX.{}", state.next_inbox);
                state.next_inbox += 1;
                state.inboxes.insert(address.clone(), tx);
                Inbox { bus: self, address }
            };
            message.reply_to = Some(inbox.address.clone());
            if self.publish(topic, message)? == 0 {
                return Err(Error::Other(format!("no subscriber for topic `{topic}`")));
            }
            let deadline = tokio::time::Instant::now().checked_add(timeout);
            let mut replies = Vec::new();
            while replies.len() < expected {
                let next = match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                    None => rx.recv().await,
                };
                match next {
                    Some(reply) => replies.push(reply),
                    None => break,
                }
            }
            drop(inbox);
            if replies.is_empty() {
                Err(Error::Timeout)
            } else {
                Ok(replies)
            }
        })
    }

    fn reply<'a>(&'a self, address: &'a str, mut message: Message) -> BoxFuture<'a, ()> {
        if let Some(inbox) = self.lock().inboxes.get(address) {
            message.topic = Some(address.to_string());
            message.reply_to = None;
            // Full: the requester already has every reply it waits for.
            if inbox.try_send(message).is_err() {
                tracing::debug!(address, "reply dropped: the requester has enough replies");
            }
        } else {
            tracing::debug!(address, "reply dropped: the requester stopped waiting");
        }
        Box::pin(async { Ok(()) })
    }

    fn subscribe<'a>(&'a self, patterns: &'a [String]) -> BoxFuture<'a, Box<dyn Subscription>> {
        let result = patterns
            .iter()
            .try_for_each(|p| check_topic_pattern(p))
            .map_err(Error::Other)
            .map(|()| {
                let (queue, deliveries) = mpsc::channel(self.capacity);
                let mut state = self.lock();
                state.subscriptions.retain(|s| !s.queue.is_closed());
                state.subscriptions.push(Sub {
                    patterns: patterns.to_vec(),
                    queue,
                });
                Box::new(deliveries) as Box<dyn Subscription>
            });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn patterns(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    fn msg(data: &str) -> Message {
        Message::new(data.as_bytes().to_vec())
    }

    /// Answers every request on `sub` with `answer`, `n` times per request.
    fn responder(bus: Arc<Bus>, mut sub: Box<dyn Subscription>, answer: &'static str, n: usize) {
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let address = m.reply_to.clone().unwrap();
                for _ in 0..n {
                    bus.reply(&address, msg(answer)).await.unwrap();
                }
            }
        });
    }

    #[tokio::test]
    async fn fans_out_to_every_matching_subscription() {
        let bus = Bus::new();
        let mut exact = bus.subscribe(&patterns(&["orders.created"])).await.unwrap();
        let mut wild = bus
            .subscribe(&patterns(&["orders.*", "orders.>"]))
            .await
            .unwrap();
        let mut other = bus.subscribe(&patterns(&["audit.*"])).await.unwrap();
        let mut m = msg("one");
        m.content_type = Some("text/plain".into());
        m.metadata = vec![("k".into(), "v".into())];
        bus.send("orders.created", m.clone()).await.unwrap();
        bus.send("orders.x.y", msg("two")).await.unwrap();

        let want = Message {
            topic: Some("orders.created".into()),
            ..m
        };
        assert_eq!(exact.next().await.unwrap(), want);
        // Two of its patterns match, yet it is delivered once.
        assert_eq!(wild.next().await.unwrap(), want);
        let second = wild.next().await.unwrap();
        assert_eq!(
            (second.topic.as_deref(), &second.data[..]),
            (Some("orders.x.y"), &b"two"[..])
        );
        bus.send("audit.login", msg("three")).await.unwrap();
        assert_eq!(other.next().await.unwrap().data, b"three");
        // Nothing else was queued for the others.
        let mut exact_rx = exact;
        assert!(
            tokio::time::timeout(Duration::from_millis(20), exact_rx.next())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_send_nobody_listens_to_is_dropped() {
        let bus = Bus::new();
        bus.send("nobody.here", msg("x")).await.unwrap();
        let sub = bus.subscribe(&patterns(&["gone"])).await.unwrap();
        drop(sub);
        bus.send("gone", msg("x")).await.unwrap();
        assert_eq!(bus.lock().subscriptions.len(), 0);
    }

    #[tokio::test]
    async fn request_gets_one_reply() {
        let bus = Arc::new(Bus::new());
        let sub = bus.subscribe(&patterns(&["svc.*"])).await.unwrap();
        responder(bus.clone(), sub, "pong", 1);
        let replies = bus
            .request("svc.ping", msg("ping"), Duration::from_secs(5), 1)
            .await
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].data, b"pong");
        assert!(replies[0].topic.as_deref().unwrap().starts_with("_INBOX."));
        assert!(bus.lock().inboxes.is_empty());
    }

    #[tokio::test]
    async fn request_collects_several_replies() {
        let bus = Arc::new(Bus::new());
        responder(
            bus.clone(),
            bus.subscribe(&patterns(&["q"])).await.unwrap(),
            "a",
            1,
        );
        responder(
            bus.clone(),
            bus.subscribe(&patterns(&["q"])).await.unwrap(),
            "b",
            1,
        );
        let mut replies: Vec<Vec<u8>> = bus
            .request("q", msg("?"), Duration::from_secs(5), 2)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.data)
            .collect();
        replies.sort();
        assert_eq!(replies, vec![b"a".to_vec(), b"b".to_vec()]);

        // One responder replying three times: the request stops at two.
        let bus = Arc::new(Bus::new());
        responder(
            bus.clone(),
            bus.subscribe(&patterns(&["q"])).await.unwrap(),
            "c",
            3,
        );
        let replies = bus
            .request("q", msg("?"), Duration::from_secs(5), 2)
            .await
            .unwrap();
        assert_eq!(replies.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn request_returns_what_arrived_by_the_timeout() {
        let bus = Arc::new(Bus::new());
        responder(
            bus.clone(),
            bus.subscribe(&patterns(&["q"])).await.unwrap(),
            "a",
            1,
        );
        let started = tokio::time::Instant::now();
        let replies = bus
            .request("q", msg("?"), Duration::from_millis(300), 3)
            .await
            .unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn request_without_replies_times_out() {
        let bus = Bus::new();
        let _silent = bus.subscribe(&patterns(&["q"])).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            bus.request("q", msg("?"), Duration::from_millis(500), 1)
                .await,
            Err(Error::Timeout)
        );
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert!(bus.lock().inboxes.is_empty());
    }

    #[tokio::test]
    async fn request_without_subscriber_fails_at_once() {
        let bus = Bus::new();
        let _other = bus.subscribe(&patterns(&["other"])).await.unwrap();
        assert_eq!(
            bus.request("q.x", msg("?"), Duration::from_secs(3600), 1)
                .await,
            Err(Error::Other("no subscriber for topic `q.x`".into()))
        );
        assert!(bus.lock().inboxes.is_empty());
    }

    #[tokio::test]
    async fn late_replies_are_dropped_without_error() {
        let bus = Bus::new();
        bus.reply("_INBOX.7", msg("late")).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_refuses_the_send_for_everyone() {
        let bus = Bus::with_capacity(2);
        let mut full = bus.subscribe(&patterns(&["jobs.>"])).await.unwrap();
        let mut roomy = bus.subscribe(&patterns(&["jobs.b"])).await.unwrap();
        bus.send("jobs.a", msg("1")).await.unwrap();
        bus.send("jobs.a", msg("2")).await.unwrap();
        assert_eq!(
            bus.send("jobs.b", msg("3")).await,
            Err(Error::Other(
                "queue for `jobs.>` is full (2 messages waiting for a handler); \
                 the message was not sent"
                    .into()
            ))
        );
        // Not delivered to the subscription with room either.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), roomy.next())
                .await
                .is_err()
        );
        // Taking one off the queue makes room again.
        assert_eq!(full.next().await.unwrap().data, b"1");
        bus.send("jobs.b", msg("4")).await.unwrap();
        assert_eq!(roomy.next().await.unwrap().data, b"4");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_a_request_too() {
        let bus = Bus::with_capacity(1);
        let _sub = bus.subscribe(&patterns(&["q"])).await.unwrap();
        bus.send("q", msg("1")).await.unwrap();
        assert_eq!(
            bus.request("q", msg("2"), Duration::from_secs(1), 1).await,
            Err(Error::Other(
                "queue for `q` is full (1 messages waiting for a handler); \
                 the message was not sent"
                    .into()
            ))
        );
        assert!(bus.lock().inboxes.is_empty());
    }

    #[tokio::test]
    async fn subscribe_checks_patterns() {
        let bus = Bus::new();
        let err = bus.subscribe(&patterns(&["ok", "a.>.b"])).await.err();
        assert_eq!(
            err,
            Some(Error::Other(check_topic_pattern("a.>.b").unwrap_err()))
        );
    }
}
