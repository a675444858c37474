//! The HTTP server end to end over TCP: `p2` with a WASI 0.2 guest, `p3`
//! (feature `p3`) with a WASI 0.3 guest.
//!
//! Each test ends by sending SIGTERM to the whole process, which reaches
//! every kernel in it: they take turns ([`Sigterm`]).

#![cfg(unix)]

mod p2;
#[cfg(feature = "p3")]
mod p3;

use qwasr_kernel::{App, Cli, Kernel};
use qwasr_wasi_http::Ctx;

/// A runtime's state with wasi:http alone.
type State = qwasr_kernel::testing::State<Ctx>;

/// Held by a test from before it starts a server until its servers have
/// stopped: its SIGTERM must not stop another test's servers, nor count as
/// the signal another test waits for.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's turn with the process's SIGTERM.
struct Sigterm {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    signal: tokio::signal::unix::Signal,
}

impl Sigterm {
    /// Waits for the test before to finish, then listens for SIGTERM (so
    /// the one this test sends reaches tokio's handlers, the kernels' among
    /// them, instead of ending the process) and logs to the test's output.
    async fn take() -> Sigterm {
        let turn = TURN.lock().await;
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let signal =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        Sigterm {
            _turn: turn,
            signal,
        }
    }

    /// Sends SIGTERM to this process; returns once tokio has seen it.
    async fn send(&mut self) {
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        self.signal.recv().await;
    }
}

/// A local address nothing listens on.
fn free_addr() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

/// Runs `app` as its emitted runtime would, listening on `addr`, until SIGTERM.
async fn serve(app: &'static App, addr: String, http: Ctx) -> anyhow::Result<()> {
    let cli = Cli {
        addr: Some(addr),
        ..Cli::default()
    };
    let kernel = Kernel::new(app, cli)?;
    let mut linker = kernel.linker::<State>()?;
    qwasr_wasi_http::add_to_linker(&mut linker)?;
    qwasr_wasi_http::serve(&kernel, &linker, move |kernel| State {
        kernel,
        ctx: http.clone(),
    })
    .await
}
