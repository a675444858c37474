//! A WASI 0.3 guest (`fixtures/p3-guest.wasm`, built as
//! `fixtures/README.md` says): streamed bodies both ways, outgoing requests
//! under the allow-list, the deadline before and after the response head,
//! traps, and a SIGTERM that drains what is in flight.

use crate::{Sigterm, free_addr, serve};
use qwasr_kernel::{App, Code, Limits};
use qwasr_wasi_http::Ctx;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GUEST: &[u8] = include_bytes!("../fixtures/p3-guest.wasm");
const TIMEOUT: Duration = Duration::from_millis(1500);
/// Allowance for scheduling around the timeout.
const SLACK: Duration = Duration::from_millis(1000);
const END: &[u8] = b"0\r\n\r\n";

/// A raw HTTP/1.1 client connection: exactly what goes over the wire.
struct Conn {
    stream: TcpStream,
    got: Vec<u8>,
    eof: bool,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.unwrap(),
            got: Vec::new(),
            eof: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until `done` holds for what arrived, the peer closes, or `within` passes.
    async fn read_until(&mut self, within: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !done(&self.got) && !self.eof {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.eof = true,
                Ok(Ok(n)) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => return false,
            }
        }
        done(&self.got)
    }

    async fn has(&mut self, needle: &str, within: Duration) -> bool {
        let needle = needle.as_bytes().to_vec();
        self.read_until(within, |got| contains(got, &needle)).await
    }

    /// Reads to the end of the connection; `true` if it closed within `within`.
    async fn closes(&mut self, within: Duration) -> bool {
        self.read_until(within, |_| false).await;
        self.eof
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got).into_owned()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

fn post_chunked(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n")
}

/// A complete GET; returns the raw response once its body has ended.
async fn fetch(addr: &str, path: &str) -> String {
    let mut conn = Conn::open(addr).await;
    conn.send(get(path).as_bytes()).await;
    assert!(
        conn.read_until(Duration::from_secs(5), |got| got.ends_with(END))
            .await,
        "GET {path}: {}",
        conn.text()
    );
    conn.text()
}

/// A deadline or trap before the head: a 500, about `TIMEOUT` after `sent`.
async fn fails_before_head(mut conn: Conn, sent: Instant, what: &str) {
    assert!(
        conn.has("HTTP/1.1 500", TIMEOUT + SLACK).await,
        "{what}: {}",
        conn.text()
    );
    assert!(
        sent.elapsed() + Duration::from_millis(300) >= TIMEOUT,
        "{what}: answered after {:?}",
        sent.elapsed()
    );
}

/// A deadline or trap after the head: the connection closes without the
/// chunked body's terminator, so the client cannot take it as complete.
async fn aborts_body(mut conn: Conn, what: &str) {
    assert!(
        conn.closes(TIMEOUT + SLACK).await,
        "{what}: {}",
        conn.text()
    );
    assert!(
        conn.text().starts_with("HTTP/1.1 200"),
        "{what}: {}",
        conn.text()
    );
    assert!(
        !conn.got.ends_with(END),
        "{what} ended cleanly: {}",
        conn.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_a_wasi_0_3_handler() {
    let mut sigterm = Sigterm::take().await;
    let addr = free_addr();
    let app: &'static App = Box::leak(Box::new(App {
        concurrency: true,
        limits: Limits {
            memory: 16 << 20,
            timeout: TIMEOUT,
            instances: 8,
            ..Limits::DEFAULT
        },
        ..App::new("p3-test", Code::Wasm(GUEST))
    }));
    // The guest may call this server itself, and nothing else.
    let http = Ctx::new(&[addr.as_str()]);
    // The server has a runtime of its own, with two workers: a guest that
    // held a worker would show as a stall, which the client (on this
    // runtime) measures unaffected.
    let server_addr = addr.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(serve(app, server_addr, http))
    });
    let started = Instant::now();
    while TcpStream::connect(&addr).await.is_err() {
        if server.is_finished() {
            panic!("server failed: {:?}", server.join());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Both bodies stream: the head and each echoed chunk arrive before the
    // client sends the next one, and the response ends cleanly.
    let mut conn = Conn::open(&addr).await;
    conn.send(post_chunked("/echo").as_bytes()).await;
    conn.send(chunk("first").as_bytes()).await;
    assert!(conn.has("first", SLACK).await, "{}", conn.text());
    let head = conn.text().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("hello\n"), "{head}");
    conn.send(chunk("second").as_bytes()).await;
    assert!(conn.has("second", SLACK).await, "{}", conn.text());
    conn.send(END).await;
    assert!(
        conn.read_until(SLACK, |got| got.ends_with(END)).await,
        "{}",
        conn.text()
    );

    // A large body streams through both ways at once: the client writes
    // while it reads.
    let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    const LARGE: usize = 8 << 20;
    let writing = tokio::spawn(async move {
        writer
            .write_all(post_chunked("/echo").as_bytes())
            .await
            .unwrap();
        let piece = chunk(&"x".repeat(64 << 10));
        for _ in 0..LARGE / (64 << 10) {
            writer.write_all(piece.as_bytes()).await.unwrap();
        }
        writer.write_all(END).await.unwrap();
        writer
    });
    let mut large = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 64 << 10];
        while !large.ends_with(END) {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            large.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap();
    let _ = writing.await.unwrap();
    let body_at = large.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let echoed = large[body_at..].iter().filter(|&&b| b == b'x').count();
    assert_eq!(echoed, LARGE);

    // Keep-alive responses streamed in pieces are not held back by Nagle's
    // algorithm waiting for the client's delayed ACK (~40 ms each).
    let mut conn = Conn::open(&addr).await;
    let keep_alive = Instant::now();
    for _ in 0..20 {
        let before = conn.got.len();
        conn.send(get("/echo").as_bytes()).await;
        let ended = conn
            .read_until(SLACK, |got| got.len() > before && got.ends_with(END))
            .await;
        assert!(ended, "{}", conn.text());
    }
    assert!(
        keep_alive.elapsed() < Duration::from_millis(200),
        "20 requests took {:?}",
        keep_alive.elapsed()
    );

    assert!(
        fetch(&addr, "/nothing-here")
            .await
            .starts_with("HTTP/1.1 404")
    );

    // Outgoing requests (wasi:http/client@0.3.0) pass the same allow-list
    // as 0.2's: a host not listed is `http-request-denied` for the guest.
    let denied = fetch(&addr, "/outgoing?to=127.0.0.1:9").await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(denied.contains("denied\n"), "{denied}");
    let relayed = fetch(&addr, &format!("/outgoing?to={addr}")).await;
    if cfg!(feature = "outgoing") {
        assert!(relayed.starts_with("HTTP/1.1 200"), "{relayed}");
        assert!(relayed.contains("hello\n"), "{relayed}");
    } else {
        assert!(relayed.starts_with("HTTP/1.1 403"), "{relayed}");
    }

    // Past the deadline: before the head a 500, after it an aborted body;
    // the same for a guest waiting on its client (wall clock) and a guest
    // spinning (epoch). Requests beside them are served at once.
    let sent = Instant::now();
    let mut stalled_before = Conn::open(&addr).await;
    stalled_before
        .send(format!("{}{}", post_chunked("/read-first"), chunk("stall")).as_bytes())
        .await;
    let mut stalled_after = Conn::open(&addr).await;
    stalled_after
        .send(format!("{}{}", post_chunked("/echo"), chunk("stall")).as_bytes())
        .await;
    assert!(
        stalled_after.has("stall", SLACK).await,
        "{}",
        stalled_after.text()
    );
    let mut spinning_before = Conn::open(&addr).await;
    spinning_before.send(get("/spin").as_bytes()).await;
    let mut spinning_after = Conn::open(&addr).await;
    spinning_after.send(get("/spin-in-body").as_bytes()).await;
    // Delivered while the guest spins: the kernel makes it yield.
    assert!(
        spinning_after.has("partial\n", TIMEOUT / 2).await,
        "{}",
        spinning_after.text()
    );
    let beside = Instant::now();
    let answer = fetch(&addr, "/echo").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("hello\n"),
        "{answer}"
    );
    assert!(
        beside.elapsed() < TIMEOUT / 2,
        "a request beside stalled ones took {:?}",
        beside.elapsed()
    );
    tokio::join!(
        fails_before_head(stalled_before, sent, "stalled client before the head"),
        aborts_body(stalled_after, "stalled client after the head"),
        fails_before_head(spinning_before, sent, "spinning guest before the head"),
        aborts_body(spinning_after, "spinning guest after the head"),
    );

    // Every instance slot came back: as many requests as the pool holds, at once.
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let addr = addr.clone();
        all.spawn(async move { fetch(&addr, "/echo").await });
    }
    while let Some(answer) = all.join_next().await {
        let answer = answer.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    // SIGTERM: no new connections, while the request in flight finishes
    // (its body still streaming) and then `serve` returns.
    let mut in_flight = Conn::open(&addr).await;
    in_flight
        .send(format!("{}{}", post_chunked("/echo"), chunk("before")).as_bytes())
        .await;
    assert!(in_flight.has("before", SLACK).await, "{}", in_flight.text());
    sigterm.send().await;
    let refused = Instant::now();
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(refused.elapsed() < SLACK, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !server.is_finished(),
        "stopped before the request in flight finished"
    );
    in_flight.send(chunk("after").as_bytes()).await;
    in_flight.send(END).await;
    assert!(
        in_flight.read_until(SLACK, |got| got.ends_with(END)).await,
        "{}",
        in_flight.text()
    );
    assert!(in_flight.text().contains("after"), "{}", in_flight.text());
    let drained = Instant::now();
    while !server.is_finished() {
        assert!(
            drained.elapsed() < SLACK,
            "serve did not return after draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = server.join().unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}
