//! A WASI 0.2 guest (the hello-http example): answered through the same
//! listener, and stopped by SIGTERM. With the `p3` feature also on an engine
//! with concurrency support, as for an app whose other imports are WASI 0.3.

use crate::{Sigterm, free_addr, serve};
use qwasr_kernel::{App, Code, Limits};
use qwasr_wasi_http::Ctx;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GUEST: &[u8] = include_bytes!("../../../../examples/hello-http/app.wasm");

/// Starts serving `guest` on a free port; returns the address and the server task.
async fn start(
    guest: &'static [u8],
    concurrency: bool,
) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let addr = free_addr();
    let app: &'static App = Box::leak(Box::new(App {
        concurrency,
        limits: Limits {
            memory: 16 << 20,
            timeout: Duration::from_secs(2),
            instances: 4,
            ..Limits::DEFAULT
        },
        ..App::new("p2-test", Code::Wasm(guest))
    }));
    let server = tokio::spawn(serve(app, addr.clone(), Ctx::new(&[])));
    let started = Instant::now();
    while TcpStream::connect(&addr).await.is_err() && !server.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (addr, server)
}

/// One request on its own connection (closed by the server); the raw response.
async fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_wasi_0_2_incoming_handler() {
    let mut sigterm = Sigterm::take().await;
    // A component without an HTTP export is refused, naming what is missing.
    let (_, refused) = start(b"\0asm\x0d\0\x01\0", false).await;
    let refused = refused.await.unwrap().unwrap_err().to_string();
    assert!(
        refused.contains("wasi:http/incoming-handler@0.2.x"),
        "{refused}"
    );
    assert_eq!(
        refused.contains("wasi:http/handler@0.3.x"),
        cfg!(feature = "p3"),
        "{refused}"
    );

    let mut servers = vec![start(GUEST, false).await];
    if cfg!(feature = "p3") {
        servers.push(start(GUEST, true).await);
    }
    for (addr, _) in &servers {
        let answer = get(addr, "/hi").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("/hi"), "{answer}");
    }
    sigterm.send().await;
    for (addr, server) in servers {
        let stopped = tokio::time::timeout(Duration::from_secs(3), server).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{addr}: {stopped:?}");
        assert!(
            TcpStream::connect(&addr).await.is_err(),
            "{addr} still accepts"
        );
    }
}
