//! What the tests share: the shared test server, configurations with a
//! prefix of their own, and NATS servers of their own to stop and start.

use qwasr_kernel::{App, BackendConfig, Code};
use std::sync::atomic::{AtomicU32, Ordering};

/// The shared test server (JetStream enabled).
pub(crate) fn url() -> String {
    std::env::var("QWASR_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into())
}

/// A prefix no other test (or run) uses.
pub(crate) fn prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// An app named `name`, leaked (configurations hold `&'static App`).
pub(crate) fn app(name: &str) -> &'static App {
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    Box::leak(Box::new(App::new(name, Code::Wasm(&[]))))
}

/// A configuration of `interface` on `url` with its own prefix and a short timeout.
pub(crate) fn config(app: &'static App, interface: &'static str, url: &str) -> BackendConfig {
    let mut cfg = qwasr_kernel::testing::backend_config(app, interface, "nats");
    cfg.options = vec![
        ("url".into(), url.to_string()),
        ("timeout".into(), "3s".into()),
    ];
    if interface != "messaging" {
        cfg.options.push(("prefix".into(), prefix()));
    }
    cfg
}

/// A nats-server of the test's own, on a port it picked, with JetStream
/// data in a directory that outlives restarts.
pub(crate) struct Server {
    pub(crate) port: u16,
    /// Further `nats-server` arguments (authentication).
    args: Vec<String>,
    pub(crate) dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Server {
    pub(crate) fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server started with `args` too.
    pub(crate) fn start_with(args: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Server {
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store directory) and
    /// waits until it accepts connections.
    pub(crate) fn restart(&mut self) {
        let bin = std::env::var("QWASR_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "/root/.cache/qwasr/nats-server-2.15.1/bin/nats-server".into());
        let child = std::process::Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed().as_secs() < 20,
                "nats-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deletes every stream of `cfg`'s prefix on the server it names (buckets
/// and object stores a test made), so that runs do not pile up.
pub(crate) async fn cleanup(cfg: &BackendConfig) {
    use futures_util::StreamExt;
    let get = |k: &str| {
        cfg.options
            .iter()
            .find(|(o, _)| o == k)
            .map(|(_, v)| v.clone())
    };
    let (Some(url), Some(prefix)) = (get("url"), get("prefix")) else {
        return;
    };
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut mine = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.unwrap();
        if name.starts_with(&format!("KV_{prefix}_")) || name.starts_with(&format!("OBJ_{prefix}_"))
        {
            mine.push(name);
        }
    }
    for name in mine {
        js.delete_stream(name).await.unwrap();
    }
}
