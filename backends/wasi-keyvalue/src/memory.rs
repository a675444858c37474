//! The `memory` backend: buckets in process memory, lost when the process exits.

use crate::{BoxFuture, Ctx, KeyPage, Pager, Store, add_counter, parse_counter};
use anyhow::Result;
use qwasr_kernel::BackendConfig;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// Opens an empty in-memory store; it takes no options.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    if let Some((k, _)) = cfg.options.first() {
        anyhow::bail!("the memory keyvalue backend takes no options, but `{k}` was given");
    }
    Ok(Ctx::new(Memory::default(), cfg))
}

/// Buckets of sorted keys behind one lock; every operation is a few map
/// look-ups. Batch operations use the trait's per-key defaults.
#[derive(Default)]
pub struct Memory {
    buckets: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

type Buckets = HashMap<String, BTreeMap<String, Vec<u8>>>;

impl Memory {
    fn lock(&self) -> MutexGuard<'_, Buckets> {
        // A poisoned lock only means another request panicked mid-operation;
        // each operation leaves the map consistent, so keep going.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `bucket` without creating it.
    fn read<R>(&self, bucket: &str, f: impl FnOnce(Option<&BTreeMap<String, Vec<u8>>>) -> R) -> R {
        f(self.lock().get(bucket))
    }

    fn write<R>(&self, bucket: &str, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R) -> R {
        let mut buckets = self.lock();
        match buckets.get_mut(bucket) {
            Some(b) => f(b),
            None => f(buckets.entry(bucket.to_string()).or_default()),
        }
    }
}

impl Store for Memory {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let v = self.read(bucket, |b| b.and_then(|b| b.get(key).cloned()));
        Box::pin(async move { Ok(v) })
    }

    fn set<'a>(&'a self, bucket: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()> {
        self.write(bucket, |b| b.insert(key.to_string(), value));
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        let mut buckets = self.lock();
        if let Some(b) = buckets.get_mut(bucket) {
            b.remove(key);
            if b.is_empty() {
                buckets.remove(bucket);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, bool> {
        let v = self.read(bucket, |b| b.is_some_and(|b| b.contains_key(key)));
        Box::pin(async move { Ok(v) })
    }

    fn list_keys<'a>(&'a self, bucket: &'a str, cursor: Option<String>) -> BoxFuture<'a, KeyPage> {
        let page = self.read(bucket, |b| {
            let mut pager = Pager::default();
            let Some(b) = b else {
                return pager.finish(false);
            };
            let start = match &cursor {
                None => Bound::Unbounded,
                Some(after) => Bound::Excluded(after.as_str()),
            };
            let mut more = false;
            for key in b.range::<str, _>((start, Bound::Unbounded)).map(|(k, _)| k) {
                if !pager.push(key) {
                    more = true;
                    break;
                }
            }
            pager.finish(more)
        });
        Box::pin(async move { Ok(page) })
    }

    fn increment<'a>(&'a self, bucket: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, i64> {
        let r = self.write(bucket, |b| {
            let current = match b.get(key) {
                None => 0,
                Some(v) => parse_counter(key, v)?,
            };
            let next = add_counter(key, current, delta)?;
            b.insert(key.to_string(), next.to_string().into_bytes());
            Ok(next)
        });
        Box::pin(async move { r })
    }

    fn compare_and_swap<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> BoxFuture<'a, bool> {
        let swapped = self.write(bucket, |b| {
            if b.get(key) == expected.as_ref() {
                b.insert(key.to_string(), value);
                true
            } else {
                false
            }
        });
        Box::pin(async move { Ok(swapped) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_are_decimal_text_and_buckets_are_separate() {
        let m = Memory::default();
        assert_eq!(m.increment("", "n", 2).await.unwrap(), 2);
        assert_eq!(m.increment("other", "n", 5).await.unwrap(), 5);
        assert_eq!(m.increment("", "n", -3).await.unwrap(), -1);
        assert_eq!(m.get("", "n").await.unwrap(), Some(b"-1".to_vec()));
        m.set("", "s", b"x".to_vec()).await.unwrap();
        let e = m.increment("", "s", 1).await.unwrap_err();
        assert_eq!(e.to_string(), "value of `s` is not a decimal counter");
        m.set("", "max", i64::MAX.to_string().into_bytes())
            .await
            .unwrap();
        let e = m.increment("", "max", 1).await.unwrap_err();
        assert!(e.to_string().contains("would overflow"), "{e}");
    }

    #[tokio::test]
    async fn reads_do_not_create_buckets() {
        let m = Memory::default();
        assert_eq!(m.get("ghost", "k").await.unwrap(), None);
        assert!(!m.exists("ghost", "k").await.unwrap());
        assert_eq!(
            m.list_keys("ghost", None).await.unwrap(),
            KeyPage::default()
        );
        assert!(m.lock().is_empty());
        m.set("b", "k", vec![]).await.unwrap();
        m.delete("b", "k").await.unwrap();
        assert!(m.lock().is_empty());
    }

    #[tokio::test]
    async fn compare_and_swap_fails_after_a_write() {
        let m = Memory::default();
        assert!(
            m.compare_and_swap("", "k", None, b"1".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !m.compare_and_swap("", "k", None, b"2".to_vec())
                .await
                .unwrap()
        );
        assert!(
            m.compare_and_swap("", "k", Some(b"1".to_vec()), b"2".to_vec())
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn batch_defaults_loop_over_single_operations() {
        let m = Memory::default();
        let kvs = vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())];
        m.set_many("x", kvs).await.unwrap();
        let keys = ["b", "z", "a"].map(String::from);
        let got = m.get_many("x", &keys).await.unwrap();
        assert_eq!(got, vec![Some(b"2".to_vec()), None, Some(b"1".to_vec())]);
        m.delete_many("x", vec!["a".into(), "z".into()])
            .await
            .unwrap();
        assert_eq!(m.list_keys("x", None).await.unwrap().keys, vec!["b"]);
    }
}
