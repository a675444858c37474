//! Against the shared test Redis (`QWASR_TEST_REDIS_URL`, default
//! redis://127.0.0.1:16379), each test under its own prefix; the outage and
//! start-up tests run their own `redis-server` (`QWASR_TEST_REDIS_SERVER`,
//! default `redis-server` on the PATH) on a free port.

use super::*;
use qwasr_kernel::{App, Code};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

fn test_url() -> String {
    std::env::var("QWASR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

/// A configuration with `url` and `options`, as the manifest would give them.
fn config(url: &str, options: &[(&str, &str)]) -> BackendConfig {
    // The environment overrides the manifest: a developer's REDIS_URL would
    // send these tests elsewhere.
    for var in [
        "REDIS_URL",
        "REDIS_TIMEOUT",
        "REDIS_RETRIES",
        "REDIS_PREFIX",
    ] {
        assert!(
            std::env::var_os(var).is_none(),
            "unset {var} to run these tests"
        );
    }
    let app: &'static App = Box::leak(Box::new(App::new("t", Code::Wasm(&[]))));
    let mut cfg = qwasr_kernel::testing::backend_config(app, "keyvalue", "redis");
    cfg.options = vec![("url".into(), url.into())];
    cfg.options
        .extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    cfg
}

/// A prefix no other test, run or process uses.
fn unique_prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("qwasr-test:{}:{nanos}:{n}", std::process::id())
}

/// A backend on the test server under a fresh prefix.
struct Fixture {
    redis: Redis,
    prefix: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let prefix = unique_prefix();
        let redis = Redis::connect(&config(&test_url(), &[("prefix", &prefix)]))
            .await
            .unwrap();
        Fixture { redis, prefix }
    }

    /// Removes every Redis key under the prefix (a failed test leaves its
    /// keys behind, under a prefix no later run uses).
    async fn clean(self) {
        let mut conn = self.redis.conn.clone();
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        let mut cursor = 0u64;
        loop {
            let (next, names): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !names.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(names)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// Every key of `bucket`, following string cursors; and the pages' sizes.
async fn drain(store: &dyn Store, bucket: &str) -> (Vec<String>, Vec<usize>) {
    let (mut keys, mut pages, mut cursor) = (Vec::new(), Vec::new(), None);
    loop {
        let page = store.list_keys(bucket, cursor).await.unwrap();
        pages.push(page.keys.len());
        keys.extend(page.keys);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return (keys, pages),
        }
    }
}

/// Every key of `bucket`, following numeric cursors.
async fn drain_at(store: &dyn Store, bucket: &str) -> Vec<String> {
    let (mut keys, mut cursor) = (Vec::new(), 0);
    loop {
        let page = store.list_keys_at(bucket, cursor).await.unwrap();
        keys.extend(page.keys);
        match page.cursor {
            Some(c) => cursor = c,
            None => return keys,
        }
    }
}

fn sorted(keys: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    keys.into_iter().collect()
}

#[tokio::test]
async fn single_operations_round_trip() {
    let t = Fixture::new().await;
    let r = &t.redis;
    assert_eq!(r.get("b", "k").await.unwrap(), None);
    assert!(!r.exists("b", "k").await.unwrap());
    r.set("b", "k", b"v1".to_vec()).await.unwrap();
    assert_eq!(r.get("b", "k").await.unwrap(), Some(b"v1".to_vec()));
    assert!(r.exists("b", "k").await.unwrap());
    r.set("b", "k", b"v2".to_vec()).await.unwrap();
    assert_eq!(r.get("b", "k").await.unwrap(), Some(b"v2".to_vec()));
    r.delete("b", "k").await.unwrap();
    r.delete("b", "k").await.unwrap(); // absent: not an error
    assert_eq!(r.get("b", "k").await.unwrap(), None);
    assert!(!r.exists("b", "k").await.unwrap());

    // An empty value exists; binary values come back byte for byte.
    r.set("b", "empty", Vec::new()).await.unwrap();
    assert!(r.exists("b", "empty").await.unwrap());
    assert_eq!(r.get("b", "empty").await.unwrap(), Some(Vec::new()));
    let binary: Vec<u8> = (0..=255).chain([0, 0xff, 0xfe]).collect();
    r.set("b", "bin", binary.clone()).await.unwrap();
    assert_eq!(r.get("b", "bin").await.unwrap(), Some(binary));
    let big = vec![7u8; 4 << 20];
    r.set("b", "big", big.clone()).await.unwrap();
    assert_eq!(r.get("b", "big").await.unwrap(), Some(big));

    // Reads of a bucket never written are empty, not errors.
    assert_eq!(r.get("ghost", "k").await.unwrap(), None);
    assert_eq!(
        r.list_keys("ghost", None).await.unwrap(),
        KeyPage::default()
    );
    assert_eq!(
        r.list_keys_at("ghost", 0).await.unwrap(),
        KeyPage::default()
    );
    t.clean().await;
}

#[tokio::test]
async fn counters_are_decimal_text_and_buckets_are_separate() {
    let t = Fixture::new().await;
    let m = &t.redis;
    // The memory and embedded backends' assertions, on Redis.
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
    assert_eq!(
        e.to_string(),
        format!("counter `max` would overflow ({} + 1)", i64::MAX)
    );

    // Text the embedded backend reads as a counter but INCRBY refuses.
    for (text, want) in [(" 5 ", 6), ("+5", 6), ("007", 8)] {
        m.set("", "odd", text.as_bytes().to_vec()).await.unwrap();
        assert_eq!(m.increment("", "odd", 1).await.unwrap(), want, "{text:?}");
        let stored = want.to_string().into_bytes();
        assert_eq!(m.get("", "odd").await.unwrap(), Some(stored));
    }
    m.set("", "nul", b"1\0".to_vec()).await.unwrap();
    let e = m.increment("", "nul", 1).await.unwrap_err();
    assert_eq!(e.to_string(), "value of `nul` is not a decimal counter");
    t.clean().await;
}

#[tokio::test]
async fn compare_and_swap_fails_after_a_write() {
    let t = Fixture::new().await;
    let m = &t.redis;
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
    assert_eq!(m.get("", "k").await.unwrap(), Some(b"2".to_vec()));
    // Expecting a value of an absent key fails, even the empty value.
    assert!(
        !m.compare_and_swap("", "absent", Some(Vec::new()), b"x".to_vec())
            .await
            .unwrap()
    );
    assert!(!m.exists("", "absent").await.unwrap());
    // An empty value is present: `None` does not match it, `Some("")` does.
    m.set("", "e", Vec::new()).await.unwrap();
    assert!(
        !m.compare_and_swap("", "e", None, b"x".to_vec())
            .await
            .unwrap()
    );
    let bin = vec![0, 1, 0xff];
    assert!(
        m.compare_and_swap("", "e", Some(Vec::new()), bin.clone())
            .await
            .unwrap()
    );
    assert!(
        m.compare_and_swap("", "e", Some(bin), b"y".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(m.get("", "e").await.unwrap(), Some(b"y".to_vec()));
    t.clean().await;
}

#[tokio::test]
async fn batches_are_one_command_each() {
    let t = Fixture::new().await;
    let m = &t.redis;
    let kvs = vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())];
    m.set_many("x", kvs).await.unwrap();
    let keys = ["b", "z", "a", "b"].map(String::from);
    let got = m.get_many("x", &keys).await.unwrap();
    let want = vec![
        Some(b"2".to_vec()),
        None,
        Some(b"1".to_vec()),
        Some(b"2".to_vec()),
    ];
    assert_eq!(got, want);
    assert_eq!(m.get_many("x", &keys[..1]).await.unwrap(), want[..1]);
    m.delete_many("x", vec!["a".into(), "z".into()])
        .await
        .unwrap();
    assert_eq!(m.list_keys("x", None).await.unwrap().keys, vec!["b"]);
    // Empty batches are no-ops (Redis refuses MGET, MSET and DEL of nothing).
    assert!(m.get_many("x", &[]).await.unwrap().is_empty());
    m.set_many("x", Vec::new()).await.unwrap();
    m.delete_many("x", Vec::new()).await.unwrap();
    // A key given twice in one set-many: the last value wins, as in a loop.
    let twice = vec![("d".into(), b"1".to_vec()), ("d".into(), b"2".to_vec())];
    m.set_many("x", twice).await.unwrap();
    assert_eq!(m.get("x", "d").await.unwrap(), Some(b"2".to_vec()));
    t.clean().await;
}

#[tokio::test]
async fn odd_names_round_trip_and_never_collide() {
    let t = Fixture::new().await;
    let m = &t.redis;
    let long = "x".repeat(4096);
    let names = [
        "", "a", "a/b", "../x", "é", "日本", "\0", "a\0b", ":", "1:", "a:1", "1:a:b", "*", "?",
        "[a]", "\\", "\\*", "a*", &long,
    ];
    for (bi, bucket) in names.iter().enumerate() {
        let kvs = names
            .iter()
            .enumerate()
            .map(|(ki, key)| (key.to_string(), format!("{bi}/{ki}").into_bytes()))
            .collect();
        m.set_many(bucket, kvs).await.unwrap();
    }
    let want = sorted(names.iter().map(|n| n.to_string()));
    for (bi, bucket) in names.iter().enumerate() {
        for (ki, key) in names.iter().enumerate() {
            let value = Some(format!("{bi}/{ki}").into_bytes());
            assert_eq!(
                m.get(bucket, key).await.unwrap(),
                value,
                "{bucket:?} {key:?}"
            );
        }
        let keys: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let values = m.get_many(bucket, &keys).await.unwrap();
        assert!(values.iter().all(Option::is_some));
        let (listed, _) = drain(m, bucket).await;
        assert_eq!(listed.len(), names.len(), "{bucket:?}");
        assert_eq!(sorted(listed), want, "{bucket:?}");
        assert_eq!(sorted(drain_at(m, bucket).await), want, "{bucket:?}");
    }
    // Deleting in one bucket leaves the same key in the others.
    m.delete("*", "a").await.unwrap();
    assert_eq!(m.get("a*", "a").await.unwrap(), Some(b"17/1".to_vec()));
    assert_eq!(m.get("?", "a").await.unwrap(), Some(b"13/1".to_vec()));
    t.clean().await;
}

#[tokio::test]
async fn pages_through_2500_keys_with_both_cursors() {
    let t = Fixture::new().await;
    let m = &t.redis;
    let want: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    let kvs = want.iter().map(|k| (k.clone(), vec![])).collect();
    m.set_many("b", kvs).await.unwrap();
    // Neighbouring buckets, and ones a pattern would match unescaped, stay out.
    for bucket in ["b\0", "a", "?", "[b]", "*"] {
        m.set(bucket, "k", vec![]).await.unwrap();
    }

    let (keys, pages) = drain(m, "b").await;
    assert!(pages.iter().all(|n| *n <= PAGE_KEYS), "{pages:?}");
    assert!(pages.len() >= 3, "{pages:?}");
    assert_eq!(sorted(keys), sorted(want.clone()));
    assert_eq!(sorted(drain_at(m, "b").await), sorted(want));
    for bucket in ["b\0", "a", "?", "[b]", "*"] {
        assert_eq!(m.list_keys(bucket, None).await.unwrap().keys, ["k"]);
    }
    t.clean().await;
}

#[tokio::test]
async fn pages_keep_to_the_byte_budget() {
    let t = Fixture::new().await;
    let m = &t.redis;
    // 600 keys of 4 KiB: 2.4 MiB of names, so at least 3 pages of at most 1 MiB.
    let want: Vec<String> = (0..600)
        .map(|i| format!("{i:04}{}", "y".repeat(4092)))
        .collect();
    let kvs = want.iter().map(|k| (k.clone(), vec![1])).collect();
    m.set_many("long", kvs).await.unwrap();
    let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let page = m.list_keys("long", cursor).await.unwrap();
        let bytes: usize = page.keys.iter().map(String::len).sum();
        assert!(bytes <= PAGE_BYTES, "a page of {bytes} bytes");
        pages += 1;
        keys.extend(page.keys);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(sorted(keys), sorted(want));
    t.clean().await;
}

#[tokio::test]
async fn a_cursor_that_is_not_a_number_is_an_error() {
    let t = Fixture::new().await;
    let e = t
        .redis
        .list_keys("b", Some("k00999".into()))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "list-keys cursor `k00999` is not one the Redis keyvalue backend returned: \
         its cursors are decimal Redis SCAN cursors"
    );
    let e = t
        .redis
        .list_keys("b", Some("z".repeat(1000)))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.len() < 300, "{e}");
    t.clean().await;
}

#[tokio::test]
async fn prefixes_keep_apps_apart() {
    let (one, two) = (Fixture::new().await, Fixture::new().await);
    one.redis.set("b", "k", b"1".to_vec()).await.unwrap();
    two.redis.set("b", "k", b"2".to_vec()).await.unwrap();
    two.redis.set("b", "only-two", vec![]).await.unwrap();
    assert_eq!(one.redis.get("b", "k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(two.redis.get("b", "k").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(one.redis.list_keys("b", None).await.unwrap().keys, ["k"]);
    let mut conn = one.redis.conn.clone();
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{}:1:b:k", one.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw, Some(b"1".to_vec()), "the documented key layout");
    one.clean().await;
    two.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_and_swaps_are_atomic_under_concurrency() {
    let t = Fixture::new().await;
    let redis = Arc::new(t.redis);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let r = redis.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    r.increment("b", "n", 1).await.unwrap();
                    // A compare-and-swap counter: retry until our swap wins.
                    loop {
                        let seen = r.get("b", "cas").await.unwrap();
                        let n = seen
                            .as_deref()
                            .map_or(0, |v| parse_counter("cas", v).unwrap());
                        let next = (n + 1).to_string().into_bytes();
                        if r.compare_and_swap("b", "cas", seen, next).await.unwrap() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(redis.get("b", "n").await.unwrap(), Some(b"320".to_vec()));
    assert_eq!(redis.get("b", "cas").await.unwrap(), Some(b"320".to_vec()));
    let redis = Arc::into_inner(redis).unwrap();
    Fixture {
        redis,
        prefix: t.prefix,
    }
    .clean()
    .await;
}

#[tokio::test]
async fn connect_checks_its_options() {
    let e = Redis::connect(&config(&test_url(), &[("path", "x")]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "the redis keyvalue backend has no option `path`; it takes url, pool-size, timeout, retries, prefix"
    );
    let e = Redis::connect(&config("rediss://u:hunter22@127.0.0.1:1", &[]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("Redis at rediss://u:***@127.0.0.1:1 is a TLS URL (`rediss://`), but this Redis backend does not support TLS"),
        "{e}"
    );
    assert!(!e.contains("hunter22"), "{e}");
    let e = Redis::connect(&config("http://127.0.0.1:1", &[]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("invalid URL (REDIS_URL or `url`): Redis at http://127.0.0.1:1"),
        "{e}"
    );

    // The default prefix is the app's name.
    let r = Redis::connect(&config(&test_url(), &[])).await.unwrap();
    assert_eq!(r.prefix, "qwasr:t");
    assert_eq!(r.name("b", "k"), "qwasr:t:1:b:k");
}

/// A port nothing listens on (it was free a moment ago).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn start_up_gives_up_naming_redis_without_the_password() {
    let port = free_port();
    let url = format!("redis://:pw-s3cret@127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let e = Redis::connect(&config(&url, &[("retries", "2"), ("timeout", "2s")]))
        .await
        .err()
        .unwrap()
        .to_string();
    let shown =
        format!("cannot connect to Redis at redis://:***@127.0.0.1:{port} after 2 attempts");
    assert!(e.starts_with(&shown), "{e}");
    assert!(e.contains("REDIS_URL"), "{e}");
    assert!(!e.contains("pw-s3cret"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// A `redis-server` of our own, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    const PASSWORD: &str = "outage-s3cret";

    fn start(port: u16) -> Server {
        let bin =
            std::env::var("QWASR_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = std::env::temp_dir();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--requirepass", Self::PASSWORD])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (set QWASR_TEST_REDIS_SERVER)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no goodbye to the clients
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn recovers_by_itself_after_an_outage() {
    let port = free_port();
    let server = Server::start(port);
    let url = format!("redis://:{}@127.0.0.1:{port}", Server::PASSWORD);
    let timeout = Duration::from_secs(1);
    let cfg = config(&url, &[("timeout", "1s"), ("prefix", "outage")]);
    let r = Redis::connect(&cfg).await.unwrap();
    r.set("b", "k", b"1".to_vec()).await.unwrap();
    assert!(
        r.compare_and_swap("b", "k", Some(b"1".to_vec()), b"2".to_vec())
            .await
            .unwrap()
    );

    server.kill();
    let shown = format!("Redis at redis://:***@127.0.0.1:{port}");
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let e = r.get("b", "k").await.unwrap_err().to_string();
        assert!(
            started.elapsed() < timeout + Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert!(e.starts_with("keyvalue get failed: "), "{e}");
        assert!(e.contains(&shown), "{e}");
        assert!(!e.contains(Server::PASSWORD), "{e}");
        let e = r.set("b", "k", vec![]).await.unwrap_err().to_string();
        assert!(e.contains(&shown) && !e.contains(Server::PASSWORD), "{e}");
    }

    let _server = Server::start(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut failures = 0;
    while let Err(e) = r.set("b", "k", b"3".to_vec()).await {
        failures += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "not back after {failures} tries: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted server is empty (no persistence); the script cache too,
    // so compare-and-swap loads its script again.
    assert_eq!(r.get("b", "k").await.unwrap(), Some(b"3".to_vec()));
    assert!(
        r.compare_and_swap("b", "k", Some(b"3".to_vec()), b"4".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(r.increment("b", "n", 2).await.unwrap(), 2);
    assert_eq!(r.list_keys("b", None).await.unwrap().keys.len(), 2);
}

/// Figures for choosing how many connections to open, not a pass/fail test:
/// `cargo test -p qwasr-redis --all-features throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    const RUN: Duration = Duration::from_secs(3);
    let client = redis::Client::open(test_url()).unwrap();
    let prefix = unique_prefix();
    for managers in [1, 2, 4, 16] {
        let mut conns = Vec::new();
        for _ in 0..managers {
            conns.push(ConnectionManager::new(client.clone()).await.unwrap());
        }
        for tasks in [1, 16, 64] {
            let started = std::time::Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let mut conn = conns[t % managers].clone();
                    let key = format!("{prefix}:{t}");
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while started.elapsed() < RUN {
                            let _: () = redis::cmd("SET")
                                .arg(&key)
                                .arg(&[7u8; 64][..])
                                .query_async(&mut conn)
                                .await
                                .unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for h in handles {
                total += h.await.unwrap();
            }
            println!(
                "{managers:2} connections, {tasks:2} tasks: {:8.0} sets/s",
                total as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let mut conn = ConnectionManager::new(client).await.unwrap();
    let names: Vec<String> = (0..64).map(|t| format!("{prefix}:{t}")).collect();
    let _: i64 = redis::cmd("DEL")
        .arg(names)
        .query_async(&mut conn)
        .await
        .unwrap();
}
