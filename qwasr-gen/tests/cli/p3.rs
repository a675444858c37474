//! WASI 0.3 components end to end: `wasi:http/handler@0.3.0` served with
//! streamed bodies and the same limits as 0.2, Qwasr's async flavours, and
//! release candidates refused.

use super::*;
use runtime::{Runtime, build};

#[test]
fn a_wasi_0_3_hello_streams_bodies_and_keeps_its_deadline() {
    let plan = succeeds(
        &["plan", "--manifest", "examples/hello-p3/qwasr.toml"],
        &root(),
    );
    assert!(
        plan.contains(
            "wasi:http/handler@0.3.0                      async    served by the http server"
        ),
        "{plan}"
    );
    assert!(plan.contains("qwasr-kernel (features: p3)"), "{plan}");
    let (bin, _) = build(&["--manifest", "examples/hello-p3/qwasr.toml"]);
    let rt = Runtime::start(&bin, &[]);
    assert_eq!(
        rt.get("/?x=1"),
        (200, "Hello from WASI 0.3! You asked for /?x=1\n".into())
    );

    // A large body in and out.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let r = rt.request("POST", "/echo", &[], &big);
    assert_eq!(r.status, 200);
    assert!(r.body == big, "echoed body differs");
    // A streamed response.
    let r = rt.request("GET", "/stream?n=1000", &[], b"");
    assert_eq!(r.status, 200);
    let lines: Vec<String> = r.text().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[999], "line 999");

    // Both directions stream: the first chunk comes back before the
    // request body has ended.
    let mut s = TcpStream::connect(&rt.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nhello\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("hello\n") {
        let n = s
            .read(&mut buf)
            .expect("the echo of the first chunk arrives while the request is still open");
        assert!(n > 0, "connection closed early: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    write!(s, "6\r\nworld\n\r\n0\r\n\r\n").unwrap();
    s.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("world\n"), "{text}");

    // Over the deadline (1 s in its manifest), running or waiting: a 5xx;
    // a request at the same time is unaffected.
    let addr = rt.addr.clone();
    let waiting = std::thread::spawn(move || {
        runtime::request(&addr, "GET", "/sleep?ms=5000", &[], b"").unwrap()
    });
    let started = Instant::now();
    let r = rt.request("GET", "/spin", &[], b"");
    assert!(r.status >= 500, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        rt.get("/"),
        (200, "Hello from WASI 0.3! You asked for /\n".into())
    );
    let r = waiting.join().unwrap();
    assert!(r.status >= 500, "{r:?}");
    assert_eq!(
        rt.get("/"),
        (200, "Hello from WASI 0.3! You asked for /\n".into())
    );
    assert_eq!(rt.stop().code(), Some(0), "SIGTERM exits 0");
}

#[test]
fn a_qwasr_style_guest_runs_on_the_async_flavours() {
    let plan = succeeds(
        &["plan", "--manifest", "examples/qwasr-p3/qwasr.toml"],
        &root(),
    );
    for line in [
        "wasi:keyvalue/store@0.2.0-draft2             async    keyvalue via qwasr-wasi-keyvalue",
        "wasi:blobstore/blobstore@0.2.0-draft         async    blobstore via qwasr-wasi-blobstore",
        "wasi:sql/readwrite@0.2.0-draft               async    sql via qwasr-wasi-sql",
        "wasi:http/handler@0.3.0                      async    served by the http server",
    ] {
        assert!(plan.contains(line), "missing {line:?} in\n{plan}");
    }
    let (bin, _) = build(&["--manifest", "examples/qwasr-p3/qwasr.toml"]);
    let data = tempfile::tempdir().unwrap();
    let rt = Runtime::start(&bin, &[("QWASR_DATA_DIR", data.path().to_str().unwrap())]);
    assert_eq!(rt.request("PUT", "/kv/greeting", &[], b"hi").status, 204);
    assert_eq!(rt.get("/kv/greeting"), (200, "hi".into()));
    assert_eq!(rt.get("/kv/missing").0, 404);
    assert_eq!(rt.request("POST", "/counter", &[], b"").text(), "1\n");
    assert_eq!(rt.request("POST", "/counter", &[], b"").text(), "2\n");
    let blob: Vec<u8> = (0..1_000_000u32).map(|i| (i % 7) as u8).collect();
    let r = rt.request("PUT", "/files/data.bin", &[], &blob);
    assert_eq!((r.status, r.text()), (201, "stored 1000000 bytes\n".into()));
    let r = rt.request("GET", "/files/data.bin", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == blob, "blob read back differs");
    assert_eq!(
        rt.request("POST", "/notes", &[], b"first").text(),
        "created 1\n"
    );
    assert_eq!(
        rt.request("POST", "/notes", &[], b"second").text(),
        "created 2\n"
    );
    assert_eq!(rt.get("/notes"), (200, "1\tfirst\n2\tsecond\n".into()));
    assert_eq!(rt.stop().code(), Some(0));
}

/// Spin's current http-rust template (spin-sdk 6.0) builds against
/// `@0.3.0-rc-2026-03-15`: refused at plan, never built into a runtime
/// that would trap.
#[test]
fn a_component_from_spins_template_is_refused_at_plan() {
    let wasm = root().join("examples/spin-rc/app.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: run scripts/build-examples.sh",
        wasm.display()
    );
    let inspect = succeeds(&["inspect", wasm.to_str().unwrap()], &root());
    assert!(
        inspect.contains("wasi:http/handler@0.3.0-rc-2026-03-15"),
        "{inspect}"
    );
    let err = fails(&["plan", wasm.to_str().unwrap()], &root());
    assert!(
        err.starts_with(
            "error: the component is built against a WASI 0.3 release candidate (`@0.3.0-rc-2026-03-15`, \
             e.g. wasi:http/handler@0.3.0-rc-2026-03-15"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "Spin's current `http-rust` template emits it (spin-sdk 6.0, through wasip3 0.6)"
        ),
        "{err}"
    );
    let out = tempfile::tempdir().unwrap();
    let bin = out.path().join("spin");
    fails(
        &["build", wasm.to_str().unwrap(), "-o", bin.to_str().unwrap()],
        &root(),
    );
    assert!(!bin.exists());
}
