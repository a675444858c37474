//! The embedded default: buckets in process memory, lost when the process exits.

use crate::{BoxFuture, Ctx, KeyPage, Store};
use anyhow::Result;
use qwasr_kernel::BackendConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Keys per `list-keys` page.
const PAGE: usize = 1000;

/// Opens the in-memory store; it takes no options.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    if let Some((k, _)) = cfg.options.first() {
        anyhow::bail!("the embedded keyvalue backend takes no options, but `{k}` was given");
    }
    Ok(Ctx::new(Memory::default()))
}

/// Buckets of sorted keys behind one lock; every operation is a few map look-ups.
#[derive(Default)]
pub struct Memory {
    buckets: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl Memory {
    fn with<R>(&self, bucket: &str, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R) -> R {
        // A poisoned lock only means another request panicked mid-operation;
        // each operation leaves the map consistent, so keep going.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        f(buckets.entry(bucket.to_string()).or_default())
    }
}

impl Store for Memory {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        let v = self.with(bucket, |b| b.get(key).cloned());
        Box::pin(async move { Ok(v) })
    }

    fn set<'a>(&'a self, bucket: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()> {
        self.with(bucket, |b| b.insert(key.to_string(), value));
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        self.with(bucket, |b| b.remove(key));
        Box::pin(async { Ok(()) })
    }

    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, bool> {
        let v = self.with(bucket, |b| b.contains_key(key));
        Box::pin(async move { Ok(v) })
    }

    fn list_keys<'a>(&'a self, bucket: &'a str, cursor: Option<String>) -> BoxFuture<'a, KeyPage> {
        Box::pin(async move {
            let start: usize = match cursor {
                None => 0,
                Some(c) => c.parse().map_err(|_| {
                    anyhow::anyhow!("invalid cursor `{c}`: pass back the cursor list-keys returned")
                })?,
            };
            Ok(self.with(bucket, |b| {
                let keys: Vec<String> = b.keys().skip(start).take(PAGE).cloned().collect();
                let next = start + keys.len();
                KeyPage {
                    cursor: (next < b.len()).then(|| next.to_string()),
                    keys,
                }
            }))
        })
    }

    fn increment<'a>(&'a self, bucket: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, i64> {
        let r = self.with(bucket, |b| {
            let current = match b.get(key) {
                None => 0,
                Some(v) => parse_counter(key, v)?,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| anyhow::anyhow!("counter `{key}` would overflow"))?;
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
        let swapped = self.with(bucket, |b| {
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

/// Reads a counter stored as decimal text.
pub fn parse_counter(key: &str, v: &[u8]) -> Result<i64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("value of `{key}` is not a decimal counter"))
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
        assert!(m.increment("", "s", 1).await.is_err());
    }

    #[tokio::test]
    async fn list_keys_pages_through_everything() {
        let m = Memory::default();
        for i in 0..2500 {
            m.set("b", &format!("k{i:05}"), vec![]).await.unwrap();
        }
        let mut cursor = None;
        let mut seen = 0;
        loop {
            let page = m.list_keys("b", cursor).await.unwrap();
            seen += page.keys.len();
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, 2500);
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
}
