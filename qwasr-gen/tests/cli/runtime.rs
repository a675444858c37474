//! Built runtimes as processes, and a small HTTP/1.1 client to drive them.

use super::*;

/// Builds a runtime with `qwasr-gen build ARGS` (run from the repository
/// root, debug, in the shared `target/qwasr-apps`); returns the binary and
/// how long the build took.
pub fn build(args: &[&str]) -> (PathBuf, Duration) {
    build_in(&root(), args)
}

/// [`build`], run from `cwd`.
pub fn build_in(cwd: &Path, args: &[&str]) -> (PathBuf, Duration) {
    let started = Instant::now();
    let target = root().join("target/qwasr-apps");
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    let out = Command::new(BIN)
        .args(&full)
        .current_dir(cwd)
        .env("QWASR_TARGET_DIR", &target)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "qwasr-gen build {args:?} failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let bin = PathBuf::from(stdout.trim());
    assert!(
        bin.is_file(),
        "build printed {stdout:?}, which is not a file"
    );
    let took = started.elapsed();
    // Past the test harness's capture, so CI logs show where build time goes.
    let _ = writeln!(
        std::io::stderr(),
        "qwasr-gen build {} took {:.1} s",
        args.join(" "),
        took.as_secs_f64()
    );
    (bin, took)
}

/// A running runtime, killed when dropped.
pub struct Runtime {
    child: Child,
    pub addr: String,
}

/// An HTTP response as the client saw it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Runtime {
    pub fn start(bin: &Path, extra_env: &[(&str, &str)]) -> Runtime {
        Self::start_with_args(bin, &[], extra_env)
    }

    pub fn start_with_args(bin: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Runtime {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(bin, args, extra_env, &format!("127.0.0.1:{port}"))
    }

    /// Starts on a given address (a restart on the same port).
    pub fn start_on(bin: &Path, args: &[&str], extra_env: &[(&str, &str)], addr: &str) -> Runtime {
        let child = Command::new(bin)
            .args(args)
            .env("HTTP_ADDR", addr)
            // Image copies stay in the target directory, not in ~/.cache.
            .env(
                "QWASR_CACHE_DIR",
                root().join("target/qwasr-apps/image-cache"),
            )
            .envs(extra_env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runtime");
        let mut rt = Runtime {
            child,
            addr: addr.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(&rt.addr).is_err() {
            if let Ok(Some(status)) = rt.child.try_wait() {
                panic!("runtime exited before listening: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "runtime did not listen on {}",
                rt.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rt
    }

    /// GET `path`; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.request("GET", path, &[], b"");
        (r.status, r.text())
    }

    /// Sends one request on a fresh connection and reads the whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Runtime::request`], returning I/O errors (a runtime being killed).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        request(&self.addr, method, path, headers, body)
    }

    /// The process's memory map (/proc/PID/maps): which files it maps.
    pub fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.child.id())).unwrap()
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "runtime ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; the body is sent with a
/// Content-Length, the response read to EOF (chunked bodies are decoded).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("truncated chunked body"))?;
        let size_text = String::from_utf8_lossy(&b[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text:?}")))?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(std::io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
