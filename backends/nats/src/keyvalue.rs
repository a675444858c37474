//! `wasi:keyvalue` on JetStream key-value buckets.
//!
//! Each guest bucket is a KV bucket `<prefix>_<escaped name>` (stream
//! `KV_<that>`), created on first use with file storage and a history of 1.
//! Keys are escaped into what NATS accepts and decoded again when listed
//! (see `names`). A write is acknowledged once JetStream has stored it.
//!
//! - `increment` and `compare-and-swap` read the key's current value and
//!   revision, then write with `Nats-Expected-Last-Subject-Sequence` set to
//!   that revision: the server refuses the write if anything wrote the key
//!   in between, and the operation starts over (until the timeout).
//! - `list-keys` walks every key of the bucket (the server hands them out in
//!   no useful order) and keeps the smallest [`PAGE_KEYS`] after the cursor:
//!   each page costs a pass over the whole bucket.

use crate::conn::{self, Nats};
use crate::names::{self, Decoded, Key};
use anyhow::Result;
use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use futures_util::StreamExt;
use qwasr_kernel::BackendConfig;
use qwasr_kernel::Shown;
use qwasr_wasi_keyvalue::{
    BoxFuture, Ctx, KeyPage, PAGE_KEYS, Pager, Store, add_counter, parse_counter,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// Connects to NATS (`NATS_*` settings, see the README) and checks that
/// JetStream is enabled.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    let prefix = conn::prefix(cfg)?;
    let nats = Nats::connect(cfg, conn::STORE_OPTIONS).await?;
    let js = nats.jetstream();
    nats.check_jetstream(&js).await?;
    Ok(Ctx::new(
        Kv {
            nats,
            js,
            prefix,
            buckets: Mutex::default(),
        },
        cfg,
    ))
}

/// Guest buckets as JetStream KV buckets.
pub struct Kv {
    nats: Nats,
    js: async_nats::jetstream::Context,
    prefix: String,
    /// Buckets opened so far; one is dropped after an error, so that a bucket
    /// deleted behind our back is created again.
    buckets: Mutex<HashMap<String, kv::Store>>,
}

/// The current state of a key: its value (`None`: absent or deleted) and
/// the revision a conditional write must name (0: never written).
struct Current {
    value: Option<Bytes>,
    revision: u64,
}

impl Kv {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, kv::Store>> {
        // The map is only a cache: whatever a panic left in it is usable.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The KV bucket for `name`, created if missing.
    async fn bucket(&self, name: &str) -> Result<kv::Store> {
        // While reconnecting nothing can succeed: say so at once.
        self.nats
            .check_connected(&format!("cannot use bucket `{}`", Shown(name)))?;
        if let Some(store) = self.lock().get(name) {
            return Ok(store.clone());
        }
        let bucket = names::bucket(&self.prefix, name);
        let config = kv::Config {
            bucket: bucket.clone(),
            description: format!("qwasr keyvalue bucket `{}`", Shown(name)),
            history: 1,
            storage: StorageType::File,
            ..Default::default()
        };
        let what = format!("cannot open bucket `{}`", Shown(name));
        let store = match self
            .nats
            .bounded(&what, self.js.create_key_value(config))
            .await
        {
            Ok(store) => store,
            // It exists with settings of its own (made by hand?): use it as it is.
            Err(create) => match self
                .nats
                .bounded(&what, self.js.get_key_value(&bucket))
                .await
            {
                Ok(store) => store,
                Err(_) => return Err(create),
            },
        };
        self.lock().insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// Drops `bucket` from the cache after `e`, and returns `e`.
    fn forget(&self, bucket: &str, e: anyhow::Error) -> anyhow::Error {
        self.lock().remove(bucket);
        e
    }

    /// The guest's value in a stored one: itself, or for a hashed key what
    /// follows the real key (`None` if the key is another's).
    fn value(key: &str, k: &Key, stored: &[u8]) -> Option<Vec<u8>> {
        if k.hashed {
            match names::unwrap(stored) {
                Some((real, value)) if real == key => Some(value.to_vec()),
                _ => None,
            }
        } else {
            Some(stored.to_vec())
        }
    }

    /// What to store for the guest's `value`.
    fn stored(key: &str, k: &Key, value: &[u8]) -> Bytes {
        if k.hashed {
            Bytes::from(names::wrap(key, value))
        } else {
            Bytes::copy_from_slice(value)
        }
    }

    async fn current(
        &self,
        store: &kv::Store,
        bucket: &str,
        key: &str,
        k: &Key,
    ) -> Result<Current> {
        let what = || failed_on("read", bucket, key);
        let entry = self
            .nats
            .bounded(&what(), store.entry(k.stored.clone()))
            .await
            .map_err(|e| self.forget(bucket, e))?;
        Ok(match entry {
            None => Current {
                value: None,
                revision: 0,
            },
            Some(e) => Current {
                value: (e.operation == Operation::Put)
                    .then(|| Self::value(key, k, &e.value).map(Bytes::from))
                    .flatten(),
                revision: e.revision,
            },
        })
    }

    /// Writes `value` to `key` if its revision is still `revision`;
    /// `Ok(false)` if it moved.
    async fn write_if(
        &self,
        store: &kv::Store,
        bucket: &str,
        key: &str,
        k: &Key,
        value: &[u8],
        revision: u64,
    ) -> Result<bool> {
        let what = failed_on("write", bucket, key);
        self.nats.check_connected(&what)?;
        let update = store.update(k.stored.clone(), Self::stored(key, k, value), revision);
        match tokio::time::timeout(self.nats.timeout(), update).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Ok(Err(e)) => Err(self.forget(bucket, self.nats.error(&what, e))),
            Err(_) => Err(self.nats.no_answer(&what)),
        }
    }

    /// The guest key a stored one stands for; `None` for keys this backend
    /// did not write.
    async fn listed(
        &self,
        store: &kv::Store,
        bucket: &str,
        stored: String,
    ) -> Result<Option<String>> {
        match names::decode_key(&stored) {
            Decoded::Key(key) => Ok(Some(key)),
            Decoded::Foreign => Ok(None),
            Decoded::Hashed => {
                let what = format!("cannot list bucket `{}`", Shown(bucket));
                let value = self.nats.bounded(&what, store.get(stored)).await?;
                Ok(value.and_then(|v| names::unwrap(&v).map(|(key, _)| key.to_string())))
            }
        }
    }
}

/// `cannot <verb> key `k` in bucket `b``, for errors.
fn failed_on(verb: &str, bucket: &str, key: &str) -> String {
    format!(
        "cannot {verb} key `{}` in bucket `{}`",
        Shown(key),
        Shown(bucket)
    )
}

impl Store for Kv {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let what = move || failed_on("read", bucket, key);
        Box::pin(self.nats.within(what, async move {
            let store = self.bucket(bucket).await?;
            let k = names::key(key);
            let what = failed_on("read", bucket, key);
            let value = self
                .nats
                .bounded(&what, store.get(k.stored.clone()))
                .await
                .map_err(|e| self.forget(bucket, e))?;
            Ok(value.and_then(|v| Self::value(key, &k, &v)))
        }))
    }

    fn set<'a>(&'a self, bucket: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()> {
        let what = move || failed_on("write", bucket, key);
        Box::pin(self.nats.within(what, async move {
            let store = self.bucket(bucket).await?;
            let k = names::key(key);
            let what = failed_on("write", bucket, key);
            self.nats.check_connected(&what)?;
            let put = store.put(k.stored.clone(), Self::stored(key, &k, &value));
            self.nats
                .bounded(&what, put)
                .await
                .map_err(|e| self.forget(bucket, e))?;
            Ok(())
        }))
    }

    fn delete<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        let what = move || failed_on("delete", bucket, key);
        Box::pin(self.nats.within(what, async move {
            let store = self.bucket(bucket).await?;
            let k = names::key(key);
            // Deleting leaves a marker: write none for a key that is not there.
            if self.current(&store, bucket, key, &k).await?.value.is_none() {
                return Ok(());
            }
            let what = failed_on("delete", bucket, key);
            self.nats.check_connected(&what)?;
            self.nats
                .bounded(&what, store.delete(k.stored.clone()))
                .await
                .map_err(|e| self.forget(bucket, e))?;
            Ok(())
        }))
    }

    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move { Ok(self.get(bucket, key).await?.is_some()) })
    }

    fn list_keys<'a>(&'a self, bucket: &'a str, cursor: Option<String>) -> BoxFuture<'a, KeyPage> {
        Box::pin(async move {
            let store = self.bucket(bucket).await?;
            let what = format!("cannot list bucket `{}`", Shown(bucket));
            let mut keys = self
                .nats
                .bounded(&what, store.keys())
                .await
                .map_err(|e| self.forget(bucket, e))?;
            // The smallest PAGE_KEYS keys after the cursor, in order.
            let mut page = BTreeSet::new();
            let mut more = false;
            loop {
                let next = match tokio::time::timeout(self.nats.timeout(), keys.next()).await {
                    Ok(next) => next,
                    Err(_) => return Err(self.nats.no_answer(&what)),
                };
                let Some(stored) = next else { break };
                let stored = stored.map_err(|e| self.nats.error(&what, e))?;
                let Some(key) = self.listed(&store, bucket, stored).await? else {
                    continue;
                };
                if cursor.as_ref().is_some_and(|c| key.as_str() <= c.as_str()) {
                    continue;
                }
                page.insert(key);
                if page.len() > PAGE_KEYS {
                    page.pop_last();
                    more = true;
                }
            }
            let mut pager = Pager::default();
            for key in &page {
                if !pager.push(key) {
                    more = true;
                    break;
                }
            }
            Ok(pager.finish(more))
        })
    }

    fn increment<'a>(&'a self, bucket: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, i64> {
        let what = move || failed_on("increment", bucket, key);
        Box::pin(self.nats.within(what, async move {
            let store = self.bucket(bucket).await?;
            let k = names::key(key);
            // Before the outer bound, so that contention is named as such.
            let deadline = Instant::now() + self.nats.timeout() * 9 / 10;
            loop {
                let current = self.current(&store, bucket, key, &k).await?;
                let n = match &current.value {
                    None => 0,
                    Some(v) => parse_counter(key, v)?,
                };
                let next = add_counter(key, n, delta)?;
                let text = next.to_string();
                if self
                    .write_if(&store, bucket, key, &k, text.as_bytes(), current.revision)
                    .await?
                {
                    return Ok(next);
                }
                if Instant::now() >= deadline {
                    return Err(self.nats.error(
                        &failed_on("increment", bucket, key),
                        format!(
                            "other writers kept changing it for {:?}",
                            self.nats.timeout()
                        ),
                    ));
                }
            }
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> BoxFuture<'a, bool> {
        let what = move || failed_on("swap", bucket, key);
        Box::pin(self.nats.within(what, async move {
            let store = self.bucket(bucket).await?;
            let k = names::key(key);
            // Before the outer bound, so that contention is named as such.
            let deadline = Instant::now() + self.nats.timeout() * 9 / 10;
            loop {
                let current = self.current(&store, bucket, key, &k).await?;
                if current.value.as_deref() != expected.as_deref() {
                    return Ok(false);
                }
                if self
                    .write_if(&store, bucket, key, &k, &value, current.revision)
                    .await?
                {
                    return Ok(true);
                }
                // Moved since it was read: compare again with what is there now.
                if Instant::now() >= deadline {
                    return Err(self.nats.error(
                        &failed_on("swap", bucket, key),
                        format!(
                            "other writers kept changing it for {:?}",
                            self.nats.timeout()
                        ),
                    ));
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Server};
    use std::sync::Arc;
    use std::time::Duration;

    async fn store(url: &str) -> (Ctx, BackendConfig) {
        let cfg = testing::config(testing::app("kv-test"), "keyvalue", url);
        (connect(&cfg).await.unwrap(), cfg)
    }

    #[tokio::test]
    async fn every_method_works_against_the_server() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.store();
        assert_eq!(s.get("b", "k").await.unwrap(), None);
        assert!(!s.exists("b", "k").await.unwrap());
        s.set("b", "k", b"v".to_vec()).await.unwrap();
        assert_eq!(s.get("b", "k").await.unwrap(), Some(b"v".to_vec()));
        assert!(s.exists("b", "k").await.unwrap());
        s.set("b", "k", Vec::new()).await.unwrap();
        assert_eq!(s.get("b", "k").await.unwrap(), Some(Vec::new()));
        s.delete("b", "k").await.unwrap();
        s.delete("b", "k").await.unwrap(); // absent: not an error
        assert_eq!(s.get("b", "k").await.unwrap(), None);
        assert!(!s.exists("b", "k").await.unwrap());

        // Counters are decimal text, as in every backend.
        assert_eq!(s.increment("b", "n", 2).await.unwrap(), 2);
        assert_eq!(s.increment("b", "n", -3).await.unwrap(), -1);
        assert_eq!(s.get("b", "n").await.unwrap(), Some(b"-1".to_vec()));
        s.set("b", "s", b"x".to_vec()).await.unwrap();
        let e = s.increment("b", "s", 1).await.unwrap_err();
        assert_eq!(e.to_string(), "value of `s` is not a decimal counter");
        s.set("b", "max", i64::MAX.to_string().into_bytes())
            .await
            .unwrap();
        let e = s.increment("b", "max", 1).await.unwrap_err();
        assert!(e.to_string().contains("would overflow"), "{e}");
        s.delete("b", "n").await.unwrap();
        assert_eq!(s.increment("b", "n", 5).await.unwrap(), 5);

        // Compare-and-swap: absent, matching, stale, deleted.
        assert!(
            s.compare_and_swap("b", "c", None, b"1".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !s.compare_and_swap("b", "c", None, b"2".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !s.compare_and_swap("b", "c", Some(b"0".to_vec()), b"2".to_vec())
                .await
                .unwrap()
        );
        assert!(
            s.compare_and_swap("b", "c", Some(b"1".to_vec()), b"2".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(s.get("b", "c").await.unwrap(), Some(b"2".to_vec()));
        s.delete("b", "c").await.unwrap();
        assert!(
            !s.compare_and_swap("b", "c", Some(b"2".to_vec()), b"3".to_vec())
                .await
                .unwrap()
        );
        assert!(
            s.compare_and_swap("b", "c", None, b"3".to_vec())
                .await
                .unwrap()
        );

        // Batches.
        let kvs = vec![
            ("x".to_string(), b"1".to_vec()),
            ("y".to_string(), b"2".to_vec()),
        ];
        s.set_many("m", kvs).await.unwrap();
        let keys = ["y", "missing", "x"].map(String::from);
        assert_eq!(
            s.get_many("m", &keys).await.unwrap(),
            vec![Some(b"2".to_vec()), None, Some(b"1".to_vec())]
        );
        s.delete_many("m", vec!["x".into(), "missing".into()])
            .await
            .unwrap();
        assert_eq!(
            s.list_keys("m", None).await.unwrap().keys,
            vec!["y".to_string()]
        );
        assert_eq!(
            s.list_keys("empty", None).await.unwrap(),
            KeyPage::default()
        );
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn odd_names_round_trip_and_never_collide() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.store();
        let long = "x".repeat(4096);
        let long_u = "é".repeat(2048);
        let names = [
            "",
            "a",
            "A",
            "a/b",
            "../x",
            "a.b",
            ".",
            "..",
            "a\0",
            "\0",
            "a\0b",
            "é",
            "日本",
            "*",
            ">",
            "=",
            "==",
            "_",
            "a_b",
            "a b",
            long.as_str(),
            long_u.as_str(),
        ];
        for (i, bucket) in names.iter().enumerate() {
            for (j, key) in names.iter().enumerate() {
                s.set(bucket, key, vec![i as u8, j as u8]).await.unwrap();
            }
        }
        let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sorted.sort();
        for (i, bucket) in names.iter().enumerate() {
            for (j, key) in names.iter().enumerate() {
                assert_eq!(
                    s.get(bucket, key).await.unwrap(),
                    Some(vec![i as u8, j as u8]),
                    "{bucket:?} {key:?}"
                );
            }
            assert_eq!(
                s.list_keys(bucket, None).await.unwrap().keys,
                sorted,
                "{bucket:?}"
            );
        }
        // A cursor resumes after a long, hashed key too.
        let page = s.list_keys("", Some(long.clone())).await.unwrap();
        assert_eq!(
            page.keys,
            sorted[sorted.iter().position(|k| *k == long).unwrap() + 1..]
        );
        assert!(
            s.compare_and_swap("", &long, Some(vec![0, 20]), b"new".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(s.get("", &long).await.unwrap(), Some(b"new".to_vec()));
        assert_eq!(
            s.increment("", &long_u, 1).await.unwrap_err().to_string(),
            format!("value of `{long_u}` is not a decimal counter")
        );
        s.delete("", &long).await.unwrap();
        assert_eq!(s.get("", &long).await.unwrap(), None);
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn pages_through_2500_keys_with_both_cursors() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = Arc::new(ctx);
        let want: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        let tasks: Vec<_> = want
            .chunks(100)
            .map(|chunk| {
                let (s, chunk) = (s.clone(), chunk.to_vec());
                tokio::spawn(async move {
                    for k in chunk {
                        s.store().set("b", &k, vec![]).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        s.store().set("b\0", "k", vec![]).await.unwrap();
        let s = s.store();
        let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, None);
        loop {
            let page = s.list_keys("b", cursor).await.unwrap();
            keys.extend(page.keys);
            pages += 1;
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!((keys, pages), (want.clone(), 3));
        let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, 0);
        loop {
            let page = s.list_keys_at("b", cursor).await.unwrap();
            keys.extend(page.keys);
            pages += 1;
            match page.cursor {
                Some(c) => cursor = c,
                None => break,
            }
        }
        assert_eq!((keys, pages), (want, 3));
        s.delete("b", "k00999").await.unwrap();
        let page = s.list_keys("b", Some("k00999".into())).await.unwrap();
        assert_eq!(page.keys.first().map(String::as_str), Some("k01000"));
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn increments_and_swaps_are_atomic() {
        let (ctx, cfg) = store(&testing::url()).await;
        let ctx = Arc::new(ctx);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let s = ctx.store();
                    for _ in 0..25 {
                        s.increment("b", "n", 1).await.unwrap();
                        loop {
                            let seen = s.get("b", "cas").await.unwrap();
                            let n: i64 = seen
                                .as_deref()
                                .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                            let next = (n + 1).to_string().into_bytes();
                            if s.compare_and_swap("b", "cas", seen, next).await.unwrap() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            ctx.store().get("b", "n").await.unwrap(),
            Some(b"200".to_vec())
        );
        assert_eq!(
            ctx.store().get("b", "cas").await.unwrap(),
            Some(b"200".to_vec())
        );
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn an_outage_gives_errors_then_recovers_by_itself() {
        let mut server = Server::start();
        let mut cfg = testing::config(testing::app("kv-outage"), "keyvalue", &server.url());
        cfg.options.push(("token".into(), "s3cr3t-t0ken".into()));
        let ctx = connect(&cfg).await.unwrap();
        let s = ctx.store();
        s.set("b", "k", b"before".to_vec()).await.unwrap();

        server.kill();
        for op in 0..3 {
            let started = std::time::Instant::now();
            let e = match op {
                0 => s.get("b", "k").await.map(drop),
                1 => s.set("b", "k", b"during".to_vec()).await,
                _ => s.increment("b", "n", 1).await.map(drop),
            }
            .unwrap_err();
            let e = format!("{e:#}");
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "op {op}: {:?}",
                started.elapsed()
            );
            assert!(
                e.contains(&format!("NATS at nats://127.0.0.1:{}", server.port)),
                "{e}"
            );
            assert!(!e.contains("s3cr3t"), "{e}");
        }

        server.restart();
        let started = std::time::Instant::now();
        loop {
            match s.get("b", "k").await {
                Ok(v) => {
                    assert_eq!(v, Some(b"before".to_vec()));
                    break;
                }
                Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        s.set("b", "k", b"after".to_vec()).await.unwrap();
        assert_eq!(s.get("b", "k").await.unwrap(), Some(b"after".to_vec()));
    }

    #[tokio::test]
    async fn bad_options_are_refused_by_name() {
        let mut cfg = testing::config(testing::app("kv-options"), "keyvalue", &testing::url());
        cfg.options.push(("pool".into(), "3".into()));
        let e = format!("{:#}", connect(&cfg).await.err().unwrap());
        assert!(
            e.starts_with(
                "the nats keyvalue backend has no option `pool`; it accepts url, pool-size"
            ),
            "{e}"
        );
        let mut cfg = testing::config(testing::app("kv-options"), "keyvalue", &testing::url());
        cfg.options.retain(|(k, _)| k != "prefix");
        cfg.options.push(("prefix".into(), "a.b".into()));
        let e = format!("{:#}", connect(&cfg).await.err().unwrap());
        assert!(e.starts_with("the NATS prefix `a.b`"), "{e}");
        let mut cfg = testing::config(testing::app("kv-options"), "keyvalue", &testing::url());
        cfg.options.push(("user".into(), "u".into()));
        let e = format!("{:#}", connect(&cfg).await.err().unwrap());
        assert!(
            e.contains("NATS_USER is set but NATS_PASSWORD is not"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn start_up_gives_up_naming_nats_and_the_redacted_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://user:hunter22@127.0.0.1:{port}");
        let mut cfg = testing::config(testing::app("kv-startup"), "keyvalue", &url);
        cfg.options.push(("retries".into(), "2".into()));
        let e = format!("{:#}", connect(&cfg).await.err().unwrap());
        assert!(
            e.starts_with(&format!(
                "cannot connect to NATS at nats://user:***@127.0.0.1:{port} after 2 attempts"
            )),
            "{e}"
        );
        assert!(!e.contains("hunter22"), "{e}");
        assert!(e.contains("NATS_URL"), "{e}");
    }
}
