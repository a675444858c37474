//! The server end to end over TCP with a WASI 0.2 guest (the hello-http
//! example): answered through the same listener, and stopped by SIGTERM.
//! With the `p3` feature also on an engine with concurrency support, as for
//! an app whose other imports are WASI 0.3.
//!
//! One test in its own binary: the SIGTERM at the end reaches the whole process.

#![cfg(unix)]

use qwasr_kernel::wasmtime_wasi::{WasiCtxView, WasiView};
use qwasr_kernel::{App, Cli, Code, CtxView, Host, Kernel, KernelCtx, Limits, View};
use qwasr_wasi_http::Ctx;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GUEST: &[u8] = include_bytes!("../../../examples/hello-http/app.wasm");

struct State {
    kernel: KernelCtx,
    http: Ctx,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.kernel.wasi_view()
    }
}

impl Host for State {
    fn kernel(&mut self) -> &mut KernelCtx {
        &mut self.kernel
    }
}

impl View<Ctx> for State {
    fn view(&mut self) -> CtxView<'_, Ctx> {
        CtxView {
            ctx: &mut self.http,
            table: &mut self.kernel.table,
        }
    }
}

/// Starts serving `guest` on a free port; returns the address and the server task.
async fn start(
    guest: &'static [u8],
    concurrency: bool,
) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let app: &'static App = Box::leak(Box::new(App {
        concurrency,
        limits: Limits {
            memory: 16 << 20,
            timeout: Duration::from_secs(2),
            instances: 4,
        },
        ..App::new("p2-test", Code::Wasm(guest))
    }));
    let cli = Cli {
        addr: Some(addr.clone()),
        ..Cli::default()
    };
    let kernel = Kernel::new(app, cli).unwrap();
    let mut linker = kernel.linker::<State>().unwrap();
    qwasr_wasi_http::add_to_linker(&mut linker).unwrap();
    let http = Ctx::new(&[]);
    let server = tokio::spawn(async move {
        qwasr_wasi_http::serve(&kernel, &linker, move |kernel| State {
            kernel,
            http: http.clone(),
        })
        .await
    });
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
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    // Installed first, so the SIGTERM below reaches tokio's handlers (the
    // kernels' among them) instead of ending the process.
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
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
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    sigterm.recv().await;
    for (addr, server) in servers {
        let stopped = tokio::time::timeout(Duration::from_secs(3), server).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{addr}: {stopped:?}");
        assert!(
            TcpStream::connect(&addr).await.is_err(),
            "{addr} still accepts"
        );
    }
}
