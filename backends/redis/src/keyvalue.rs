//! `wasi:keyvalue` on Redis: the `redis` backend of qwasr-wasi-keyvalue's
//! [`Store`] trait.
//!
//! Every (bucket, key) is one Redis string named
//! `<prefix>:<byte length of bucket>:<bucket>:<key>`. The length makes the
//! name unambiguous whatever the bucket holds (`:`, `*`, NUL), so buckets
//! never collide, and a bucket's keys are exactly the names starting with
//! `<prefix>:<len>:<bucket>:`. Listing is `SCAN` with that (glob-escaped)
//! prefix as `MATCH` pattern; both WIT cursors are `SCAN`'s own cursor.
//!
//! One [`ConnectionManager`] serves every request: it multiplexes concurrent
//! commands on one connection (pipelining) and replaces the connection by
//! itself when it breaks. Every operation is bounded by the `timeout`
//! setting, and errors name Redis and its URL with the password redacted.

use anyhow::{Result, anyhow, bail};
use qwasr_kernel::BackendConfig;
use qwasr_kernel::service::{Service, Settings};
use qwasr_wasi_keyvalue::{
    BoxFuture, Ctx, KeyPage, PAGE_BYTES, PAGE_KEYS, Store, add_counter, parse_counter,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Redis as the kernel's service settings know it (`REDIS_URL`, …).
const SERVICE: Service = Service {
    name: "Redis",
    prefix: "REDIS",
    default_url: "redis://127.0.0.1:6379",
};

/// The manifest keys this backend accepts.
const OPTIONS: &[&str] = &["url", "pool-size", "timeout", "retries", "prefix"];

/// Further tries the client makes, 100 ms to 1 s apart, when it reconnects a
/// lost connection; requests waiting for it fail after those (each later
/// request starts another round). A few absorb a Redis restart or failover.
const RECONNECT_TRIES: usize = 2;

/// Most compare-and-swap rounds an increment of a value `INCRBY` refuses
/// (see [`Redis::increment_text`]) makes before giving up.
const CAS_TRIES: usize = 64;

/// Largest `COUNT` given to one `SCAN`: Redis visits about that many slots
/// per call, so it bounds the time one call holds the server.
const MAX_SCAN_COUNT: usize = 8 * PAGE_KEYS;

/// Compare-and-swap in one step on the server. `ARGV[1]` is `1` when a value
/// is expected (`ARGV[2]`), `0` when the key must be absent; `GET` of an
/// absent key is `false`, which equals no string.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

/// Connects to Redis as `cfg` says (environment over manifest options over
/// defaults; see the crate's README) and serves `wasi:keyvalue` from it.
///
/// Retries the first connection `retries` times with backoff, then fails
/// with an error naming Redis and its URL (password redacted).
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    let redis = Redis::connect(cfg).await?;
    Ok(Ctx::new(redis, cfg))
}

/// The backend: a self-reconnecting multiplexed connection and the names'
/// prefix.
pub(crate) struct Redis {
    conn: ConnectionManager,
    settings: Settings,
    prefix: String,
    cas: redis::Script,
}

/// Why a command did not answer.
enum Failure {
    Redis(RedisError),
    Timeout(Duration),
}

impl Redis {
    pub(crate) async fn connect(cfg: &BackendConfig) -> Result<Redis> {
        if let Some((k, _)) = cfg.options.iter().find(|(k, _)| !OPTIONS.contains(&&**k)) {
            bail!(
                "the redis keyvalue backend has no option `{k}`; it takes {}",
                OPTIONS.join(", ")
            );
        }
        let settings = Settings::new(cfg, SERVICE)?;
        let prefix = match cfg.get("prefix", "REDIS_PREFIX")? {
            Some(prefix) => prefix,
            None => format!("qwasr:{}", cfg.app.name),
        };
        let scheme = settings.url.split_once("://").map_or("", |(s, _)| s);
        if matches!(scheme, "rediss" | "valkeys") {
            bail!(
                "Redis at {} is a TLS URL (`{scheme}://`), but this Redis backend \
                 does not support TLS; use a `redis://` URL (through a TLS tunnel \
                 such as stunnel if the server requires TLS)",
                settings.shown_url()
            );
        }
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| settings.error("invalid URL (REDIS_URL or `url`)", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(RECONNECT_TRIES)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let conn = settings
            .connect(|| {
                let (client, config) = (client.clone(), config.clone());
                async move {
                    let mut conn = ConnectionManager::new_with_config(client, config).await?;
                    // A server that accepts connections but refuses commands
                    // (wrong password, still loading) fails here, at start-up.
                    redis::cmd("PING").query_async::<()>(&mut conn).await?;
                    Ok(conn)
                }
            })
            .await?;
        Ok(Redis {
            conn,
            settings,
            prefix,
            cas: redis::Script::new(CAS_SCRIPT),
        })
    }

    /// The start of the Redis names of `bucket`'s keys.
    fn head(&self, bucket: &str) -> String {
        format!("{}:{}:{bucket}:", self.prefix, bucket.len())
    }

    /// The Redis name of `key` in `bucket`.
    fn name(&self, bucket: &str, key: &str) -> String {
        format!("{}{key}", self.head(bucket))
    }

    /// Runs `op` until `deadline`.
    async fn attempt<T>(
        &self,
        deadline: Instant,
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout_at(deadline, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout(self.settings.timeout)),
        }
    }

    /// The error the guest sees for `failure` of operation `what`.
    fn fail(&self, what: &str, write: bool, failure: Failure) -> anyhow::Error {
        match failure {
            Failure::Redis(e) => self.settings.error(what, e),
            Failure::Timeout(t) if write => self.settings.error(
                what,
                format_args!("no answer within {t:?} (the write may or may not have been applied)"),
            ),
            Failure::Timeout(t) => self
                .settings
                .error(what, format_args!("no answer within {t:?}")),
        }
    }

    /// Runs `op` within the timeout; errors as [`Redis::fail`] makes them.
    async fn bounded<T>(
        &self,
        what: &str,
        write: bool,
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.settings.timeout;
        self.attempt(deadline, op)
            .await
            .map_err(|f| self.fail(what, write, f))
    }

    /// Sends `cmd` and reads its answer as `T`, within the timeout.
    async fn query<T: FromRedisValue>(
        &self,
        what: &str,
        write: bool,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        self.bounded(what, write, cmd.query_async(&mut conn)).await
    }

    /// Compare-and-swap by [`CAS_SCRIPT`].
    async fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool> {
        let mut conn = self.conn.clone();
        let mut call = self.cas.key(self.name(bucket, key));
        call.arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(value);
        let swapped: i64 = self
            .bounded(
                "keyvalue compare-and-swap failed",
                true,
                call.invoke_async(&mut conn),
            )
            .await?;
        Ok(swapped == 1)
    }

    /// An increment of a value `INCRBY` refuses: parsed and added as the
    /// embedded backend does (so ` 5`, `+5` and `007` count, and the errors
    /// read the same), written back by compare-and-swap, retried if the value
    /// moved meanwhile.
    async fn increment_text(&self, bucket: &str, key: &str, delta: i64) -> Result<i64> {
        for _ in 0..CAS_TRIES {
            let current = self.get_value(bucket, key).await?;
            let n = match &current {
                None => 0,
                Some(v) => parse_counter(key, v)?,
            };
            let next = add_counter(key, n, delta)?;
            let text = next.to_string().into_bytes();
            if self.swap(bucket, key, current, text).await? {
                return Ok(next);
            }
        }
        bail!("counter `{key}` kept changing while it was incremented ({CAS_TRIES} tries)")
    }

    async fn get_value(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.name(bucket, key));
        self.query("keyvalue get failed", false, &cmd).await
    }

    /// One page of `bucket`'s keys from `SCAN` cursor `start`, and the cursor
    /// after it (`None`: the scan is complete).
    ///
    /// `SCAN` answers in batches whose size `COUNT` only steers, and its
    /// cursor cannot point inside one; so a batch that would overflow the
    /// page is scanned again from the same cursor with half the `COUNT`, or
    /// left for the next page. A page stops early, with a cursor, once half
    /// the timeout is spent (a bucket sparse in a big database), so it may
    /// hold few or no keys. Duplicates `SCAN` returns (while Redis resizes
    /// its table) are dropped within a page; across pages they may remain.
    async fn page(&self, bucket: &str, start: u64) -> Result<(Vec<String>, Option<u64>)> {
        const WHAT: &str = "keyvalue list-keys failed";
        let head = self.head(bucket);
        let pattern = format!("{}*", glob_escape(&head));
        let began = Instant::now();
        let (hard, soft) = (
            began + self.settings.timeout,
            began + self.settings.timeout / 2,
        );
        let (mut keys, mut seen, mut bytes) = (Vec::new(), HashSet::new(), 0);
        let (mut cursor, mut count) = (start, PAGE_KEYS);
        loop {
            let mut conn = self.conn.clone();
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(count);
            let (next, batch): (u64, Vec<Vec<u8>>) = self
                .attempt(hard, scan.query_async(&mut conn))
                .await
                .map_err(|f| self.fail(WHAT, false, f))?;
            let mut fresh: Vec<String> = batch
                .into_iter()
                .filter_map(|name| {
                    let key = name.strip_prefix(head.as_bytes())?;
                    // Not valid UTF-8: not a name this backend wrote.
                    String::from_utf8(key.to_vec()).ok()
                })
                .filter(|key| !seen.contains(key))
                .collect();
            fresh.sort_unstable();
            fresh.dedup();
            let fresh_bytes: usize = fresh.iter().map(String::len).sum();
            let fits = keys.len() + fresh.len() <= PAGE_KEYS && bytes + fresh_bytes <= PAGE_BYTES;
            if !fits {
                if count > 1 {
                    count /= 2;
                    continue;
                }
                if !keys.is_empty() {
                    return Ok((keys, Some(cursor)));
                }
                // One hash slot's keys over budget on an empty page: a page
                // holds at least its first batch, however long.
            }
            let sparse = fresh.len() < count / 2;
            bytes += fresh_bytes;
            for key in fresh {
                seen.insert(key.clone());
                keys.push(key);
            }
            if next == 0 {
                return Ok((keys, None));
            }
            cursor = next;
            if keys.len() >= PAGE_KEYS || bytes >= PAGE_BYTES || Instant::now() >= soft {
                return Ok((keys, Some(cursor)));
            }
            count = if sparse {
                (count * 2).min(MAX_SCAN_COUNT)
            } else {
                count.min(PAGE_KEYS - keys.len()).max(1)
            };
        }
    }
}

/// `text` with Redis glob metacharacters (`*?[]\`) escaped, so that a
/// `MATCH` pattern made of it matches it literally.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `INCRBY` refused the value (not an integer as Redis reads them,
/// or the sum would overflow), rather than failing.
fn refused_increment(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
        && e.detail()
            .is_some_and(|d| d.contains("not an integer") || d.contains("overflow"))
}

/// A draft2 string cursor as the `SCAN` cursor it was made from.
fn parse_cursor(cursor: &str) -> Result<u64> {
    cursor.parse().map_err(|_| {
        let shown: String = cursor.chars().take(64).collect();
        let cut = if shown.len() < cursor.len() {
            "…"
        } else {
            ""
        };
        anyhow!(
            "list-keys cursor `{shown}{cut}` is not one the Redis keyvalue backend \
             returned: its cursors are decimal Redis SCAN cursors"
        )
    })
}

impl Store for Redis {
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.get_value(bucket, key))
    }

    fn set<'a>(&'a self, bucket: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.name(bucket, key)).arg(value);
            self.query("keyvalue set failed", true, &cmd).await
        })
    }

    fn delete<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.name(bucket, key));
            self.query::<i64>("keyvalue delete failed", true, &cmd)
                .await
                .map(drop)
        })
    }

    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(self.name(bucket, key));
            let n: i64 = self.query("keyvalue exists failed", false, &cmd).await?;
            Ok(n > 0)
        })
    }

    fn list_keys<'a>(&'a self, bucket: &'a str, cursor: Option<String>) -> BoxFuture<'a, KeyPage> {
        Box::pin(async move {
            let start = match cursor {
                None => 0,
                Some(c) => parse_cursor(&c)?,
            };
            let (keys, next) = self.page(bucket, start).await?;
            Ok(KeyPage {
                keys,
                cursor: next.map(|c| c.to_string()),
            })
        })
    }

    fn list_keys_at<'a>(&'a self, bucket: &'a str, cursor: u64) -> BoxFuture<'a, KeyPage<u64>> {
        Box::pin(async move {
            let (keys, cursor) = self.page(bucket, cursor).await?;
            Ok(KeyPage { keys, cursor })
        })
    }

    fn increment<'a>(&'a self, bucket: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, i64> {
        Box::pin(async move {
            const WHAT: &str = "keyvalue increment failed";
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("INCRBY");
            cmd.arg(self.name(bucket, key)).arg(delta);
            let deadline = Instant::now() + self.settings.timeout;
            match self.attempt(deadline, cmd.query_async(&mut conn)).await {
                Ok(n) => Ok(n),
                Err(Failure::Redis(e)) if refused_increment(&e) => {
                    self.increment_text(bucket, key, delta).await
                }
                Err(f) => Err(self.fail(WHAT, true, f)),
            }
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.swap(bucket, key, expected, value))
    }

    /// One `MGET`.
    fn get_many<'a>(
        &'a self,
        bucket: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = redis::cmd("MGET");
            for key in keys {
                cmd.arg(self.name(bucket, key));
            }
            self.query("keyvalue get-many failed", false, &cmd).await
        })
    }

    /// One `MSET`: all pairs are written, atomically, or none.
    fn set_many<'a>(&'a self, bucket: &'a str, kvs: Vec<(String, Vec<u8>)>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if kvs.is_empty() {
                return Ok(());
            }
            let mut cmd = redis::cmd("MSET");
            for (key, value) in kvs {
                cmd.arg(self.name(bucket, &key)).arg(value);
            }
            self.query("keyvalue set-many failed", true, &cmd).await
        })
    }

    /// One `DEL` of every key.
    fn delete_many<'a>(&'a self, bucket: &'a str, keys: Vec<String>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let mut cmd = redis::cmd("DEL");
            for key in &keys {
                cmd.arg(self.name(bucket, key));
            }
            self.query::<i64>("keyvalue delete-many failed", true, &cmd)
                .await
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests;
