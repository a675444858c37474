//! The same example guests on real servers: the counter on Redis and on
//! NATS KV, the blobstore example on the NATS object store, the notes
//! example on PostgreSQL, the messaging example on NATS, each making the
//! assertions it makes on the embedded default. Servers come from
//! `scripts/services.sh` (their own ports); a test that stops a server
//! starts its own.

use super::*;
use data::{blobstore_checks, eventually, messaging_checks, notes_checks};
use runtime::{Runtime, build};
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};

fn test_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn redis_url() -> String {
    test_url("QWASR_TEST_REDIS_URL", "redis://127.0.0.1:16379")
}

fn nats_url() -> String {
    test_url("QWASR_TEST_NATS_URL", "nats://127.0.0.1:14222")
}

fn postgres_url() -> String {
    test_url(
        "QWASR_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:15432/postgres",
    )
}

/// A name no other test run uses: keys, buckets and databases start with it.
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "qt{}_{nanos:x}_{}_{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds the runtime of example `example` (its component and manifest)
/// under the name `name`, with `backends` as its `[backends]` table.
fn build_on(example: &str, name: &str, backends: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let original =
        std::fs::read_to_string(root().join(format!("examples/{example}/qwasr.toml"))).unwrap();
    let mut doc: toml_edit::DocumentMut = original.parse().unwrap();
    doc["app"]["name"] = toml_edit::value(name);
    doc["app"]["component"] = toml_edit::value(
        root()
            .join(format!("examples/{example}/app.wasm"))
            .display()
            .to_string(),
    );
    let backends: toml_edit::DocumentMut = backends.parse().unwrap();
    doc["backends"] = backends.as_item().clone();
    let manifest = dir.path().join("qwasr.toml");
    std::fs::write(&manifest, doc.to_string()).unwrap();
    let (bin, _) = build(&["--manifest", manifest.to_str().unwrap()]);
    (bin, dir)
}

/// A server process of the test's own, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn wait_up(mut self) -> Server {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("test server exited: {status}");
            }
            assert!(Instant::now() < deadline, "test server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    fn redis(port: u16, password: &str) -> Server {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                password,
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)");
        Server { child, port }.wait_up()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `/` until it answers 200 (a backend reconnecting by itself).
fn recovers(rt: &Runtime, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = rt.get("/");
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} {body:?} after the server came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn counter_on_redis_counts_across_restarts_outages_and_names_a_server_down() {
    let plan = succeeds(
        &["plan", "--manifest", "examples/counter/qwasr.toml"],
        &root(),
    );
    assert!(!plan.contains("REDIS_URL"), "{plan}");
    let (bin, _dir) = build_on(
        "counter",
        "counter-redis",
        r#"keyvalue = { backend = "redis", timeout = "1s" }"#,
    );
    let help = Command::new(&bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("REDIS_URL"), "{help}");

    // The shared test server: counts on where it left off after a restart.
    let prefix = unique("counter");
    let url = redis_url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
    ];
    let rt = Runtime::start(&bin, &env);
    assert_eq!(rt.get("/"), (200, "1\n".into()));
    assert_eq!(rt.get("/"), (200, "2\n".into()));
    assert_eq!(rt.stop().code(), Some(0));
    let rt = Runtime::start(&bin, &env);
    assert_eq!(rt.get("/"), (200, "3\n".into()));
    drop(rt);

    // A server of our own, with a password, lost and back while serving.
    let port = free_port();
    let server = Server::redis(port, "s3cr3t-pw");
    let url = format!("redis://:s3cr3t-pw@127.0.0.1:{port}");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
    ];
    let rt = Runtime::start(&bin, &env);
    assert_eq!(rt.get("/"), (200, "1\n".into()));
    drop(server);
    let started = Instant::now();
    let (status, body) = rt.get("/");
    assert!(status >= 500, "{status} {body}");
    assert!(!body.contains("s3cr3t-pw"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the error took {:?}",
        started.elapsed()
    );
    let _server = Server::redis(port, "s3cr3t-pw");
    // The restarted server is empty (no persistence): the count starts over.
    assert_eq!(recovers(&rt, Duration::from_secs(20)), "1\n");
    drop(rt);

    // Down at start: bounded retries, then an exit naming the service.
    let dead = free_port();
    let out = Command::new(&bin)
        .env("REDIS_URL", format!("redis://:s3cr3t-pw@127.0.0.1:{dead}"))
        .env("REDIS_RETRIES", "2")
        .env("HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot connect to Redis at redis://:***@127.0.0.1:{dead} after 2 attempts"
        )),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-pw"), "{err}");
}

#[test]
fn counter_on_nats_kv_counts_across_restarts() {
    let (bin, _dir) = build_on("counter", "counter-nats", r#"keyvalue = "nats""#);
    let prefix = unique("kv");
    let url = nats_url();
    let env = [("NATS_URL", url.as_str()), ("NATS_PREFIX", prefix.as_str())];
    let rt = Runtime::start(&bin, &env);
    assert_eq!(rt.get("/"), (200, "1\n".into()));
    assert_eq!(rt.get("/"), (200, "2\n".into()));
    assert_eq!(rt.stop().code(), Some(0));
    let rt = Runtime::start(&bin, &env);
    assert_eq!(rt.get("/"), (200, "3\n".into()));
}

#[test]
fn blobstore_example_on_the_nats_object_store() {
    let (bin, _dir) = build_on("blobstore", "blobstore-nats", r#"blobstore = "nats""#);
    let prefix = unique("blob");
    let url = nats_url();
    let rt = Runtime::start(
        &bin,
        &[("NATS_URL", url.as_str()), ("NATS_PREFIX", prefix.as_str())],
    );
    blobstore_checks(&rt);
}

#[test]
fn notes_example_on_postgres() {
    let (bin, _dir) = build_on(
        "notes",
        "notes-postgres",
        r#"sql = { backend = "postgres", pool-size = 4 }"#,
    );
    let prefix = unique("db");
    let url = postgres_url();
    let rt = Runtime::start(
        &bin,
        &[
            ("POSTGRES_URL", url.as_str()),
            ("POSTGRES_PREFIX", prefix.as_str()),
        ],
    );
    notes_checks(
        &rt,
        "duplicate key value violates unique constraint",
        POSTGRES_TYPES,
    );
    drop(rt);
    // The test's database goes; the shared server stays clean.
    let _ = Command::new("psql")
        .args([url.as_str(), "-qc"])
        .arg(format!(
            "DROP DATABASE IF EXISTS \"{prefix}notes\" WITH (FORCE)"
        ))
        .output();
}

/// `/types` of the notes example on PostgreSQL, which has no unsigned
/// integers (the guest stores them as BIGINT) and keeps timestamps with a
/// time zone.
const POSTGRES_TYPES: &str = "i32=int32(-5)\ni64=int64(-9000000000)\nu32=int64(4000000000)\n\
     u64=int64(9000000000)\nf32=float(1.5)\nf64=double(2.25)\nstr=str(héllo)\n\
     bool=boolean(true)\ndate=date(2024-01-02)\ntime=time(03:04:05)\n\
     timestamp=timestamp(2024-01-02T03:04:05Z)\nbinary=binary([0, 1, 2, 255])\n\
     none=str(null)\n";

/// A NATS client speaking the text protocol, enough for a test: publish,
/// subscribe, read messages.
struct Nats {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl Nats {
    fn connect(url: &str) -> Nats {
        let addr = url.trim_start_matches("nats://");
        let writer = TcpStream::connect(addr).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut nats = Nats {
            reader: std::io::BufReader::new(writer.try_clone().unwrap()),
            writer,
        };
        let info = nats.line();
        assert!(info.starts_with("INFO "), "{info}");
        nats.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n");
        nats.flush();
        nats
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// PING, and wait for the PONG: the server has everything sent before.
    fn flush(&mut self) {
        self.send(b"PING\r\n");
        loop {
            match self.line().as_str() {
                "PONG" => return,
                l if l.starts_with("-ERR") => panic!("NATS: {l}"),
                _ => {}
            }
        }
    }

    fn publish(&mut self, subject: &str, payload: &[u8]) {
        self.send(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
        self.send(payload);
        self.send(b"\r\n");
    }

    fn subscribe(&mut self, subject: &str) {
        self.send(format!("SUB {subject} 1\r\n").as_bytes());
        self.flush();
    }

    /// The next message: its subject and payload (headers skipped).
    fn next(&mut self) -> (String, Vec<u8>) {
        loop {
            let line = self.line();
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[0] {
                "PING" => self.send(b"PONG\r\n"),
                "MSG" | "HMSG" => {
                    let total: usize = parts.last().unwrap().parse().unwrap();
                    let headers: usize = if parts[0] == "HMSG" {
                        parts[parts.len() - 2].parse().unwrap()
                    } else {
                        0
                    };
                    let mut buf = vec![0; total + 2];
                    std::io::Read::read_exact(&mut self.reader, &mut buf).unwrap();
                    return (parts[1].to_string(), buf[headers..total].to_vec());
                }
                _ => {}
            }
        }
    }
}

#[test]
fn messaging_example_on_nats_shares_work_between_replicas_and_outside_clients() {
    let (bin, _dir) = build_on("messaging", "messaging-nats", r#"messaging = "nats""#);
    let url = nats_url();
    let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env = |i: usize| {
        vec![
            ("NATS_URL", url.clone()),
            ("QWASR_DATA_DIR", data[i].path().display().to_string()),
        ]
    };
    let start = |i: usize| {
        let env = env(i);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Runtime::start(&bin, &env)
    };
    let one = start(0);
    // Outside subscribers and publishers share the subjects (no other test
    // on this server subscribes to these topics).
    let mut outside = Nats::connect(&url);
    outside.subscribe("orders");
    messaging_checks(&one);
    // The guest's messages reach an outside subscriber.
    let (subject, payload) = outside.next();
    assert_eq!(
        (subject.as_str(), payload.as_slice()),
        ("orders", &b"order #1"[..])
    );

    // An outside publisher reaches the handler.
    let topic = format!("audit.{}", unique("x"));
    outside.publish(&topic, b"from outside");
    outside.flush();
    eventually(&one, &format!("/received/{topic}"), "1 from outside\n");

    // Two replicas in one queue group: each message is handled once.
    let two = start(1);
    let topic = format!("audit.{}", unique("bulk"));
    for i in 0..100 {
        outside.publish(&topic, format!("m{i}").as_bytes());
    }
    outside.flush();
    let count = |rt: &Runtime| -> usize {
        let (status, body) = rt.get(&format!("/received/{topic}"));
        if status != 200 {
            return 0;
        }
        body.split(' ').next().unwrap().parse().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (a, b) = loop {
        let (a, b) = (count(&one), count(&two));
        if a + b >= 100 || Instant::now() > deadline {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    let (a2, b2) = (count(&one), count(&two));
    eprintln!("replica one handled {a2}, replica two {b2}");
    assert_eq!(
        (a, b),
        (a2, b2),
        "more deliveries after all 100 were handled"
    );
    assert_eq!(a + b, 100, "each of 100 messages handled exactly once");
    assert!(a > 0 && b > 0, "both replicas got work: {a} and {b}");
    assert_eq!(one.stop().code(), Some(0));
    assert_eq!(two.stop().code(), Some(0));
}
