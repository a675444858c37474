//! End to end on the embedded data backends: keyvalue on disk, blobstore,
//! sql and messaging, each through an example's runtime over HTTP; every
//! acknowledged write present after `kill -9`.

use super::*;
use runtime::{Runtime, build, build_in};
use std::sync::{Arc, Mutex};

/// Runs `work(thread, i)` from `threads` threads in a loop until the runtime
/// is killed (after `for_how_long`); returns what each acknowledged.
fn hammer_then_kill<T: Send + 'static>(
    rt: Runtime,
    threads: usize,
    for_how_long: Duration,
    work: impl Fn(&str, usize, usize) -> Option<T> + Send + Sync + 'static,
) -> Vec<T> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (acked, stop, work, addr) =
                (acked.clone(), stop.clone(), work.clone(), rt.addr.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // `None`: the request failed (the runtime is gone): not acknowledged.
                    if let Some(v) = work(&addr, t, i) {
                        acked.lock().unwrap().push(v);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(for_how_long);
    rt.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged before the kill"
    );
    acked
}

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn keyvalue_on_disk_keeps_every_acknowledged_increment_across_kill_9() {
    let (counter, _) = build(&["--manifest", "examples/counter/qwasr.toml"]);
    let dir = data_dir();
    let env = [("QWASR_DATA_DIR", dir.path().to_str().unwrap())];
    let rt = Runtime::start(&counter, &env);
    assert_eq!(rt.get("/"), (200, "1\n".to_string()));
    assert_eq!(rt.get("/"), (200, "2\n".to_string()));
    let addr = rt.addr.clone();
    // A clean stop keeps the data too.
    assert_eq!(rt.stop().code(), Some(0));
    let rt = Runtime::start_on(&counter, &[], &env, &addr);
    assert_eq!(rt.get("/"), (200, "3\n".to_string()));

    // Sixteen clients increment; whatever value a client was told was
    // stored must be there after kill -9.
    let acked = hammer_then_kill(rt, 16, Duration::from_millis(1500), |addr, _, _| {
        let r = runtime::request(addr, "GET", "/", &[], b"").ok()?;
        (r.status == 200).then(|| r.text().trim().parse::<u64>().unwrap())
    });
    let highest = *acked.iter().max().unwrap();
    eprintln!("{} increments acknowledged, highest {highest}", acked.len());
    let rt = Runtime::start_on(&counter, &[], &env, &addr);
    let (status, next) = rt.get("/");
    assert_eq!(status, 200);
    let next: u64 = next.trim().parse().unwrap();
    assert!(
        next > highest,
        "after kill -9 the counter went on at {next}, but {highest} had been acknowledged"
    );
    assert!(dir.path().join("keyvalue").is_dir());
}

#[test]
fn blobstore_example_streams_ranges_lists_and_survives_kill_9() {
    let (bin, _) = build(&["--manifest", "examples/blobstore/qwasr.toml"]);
    let dir = data_dir();
    let env = [("QWASR_DATA_DIR", dir.path().to_str().unwrap())];
    let rt = Runtime::start(&bin, &env);
    blobstore_checks(&rt);
    // Names are data, never paths: nothing outside the data directory was touched.
    let written: Vec<PathBuf> = walk(dir.path());
    assert!(written.iter().all(|p| p.starts_with(dir.path())));

    // Every acknowledged upload is there, intact, after kill -9.
    let addr = rt.addr.clone();
    let acked = hammer_then_kill(rt, 8, Duration::from_millis(1500), |addr, t, i| {
        let name = format!("t{t}-{i}");
        let body = format!("{name} {}", "z".repeat(i % 5000));
        let r =
            runtime::request(addr, "PUT", &format!("/crash/{name}"), &[], body.as_bytes()).ok()?;
        (r.status == 201).then_some((name, body))
    });
    let rt = Runtime::start_on(&bin, &[], &env, &addr);
    for (name, body) in &acked {
        let r = rt.request("GET", &format!("/crash/{name}"), &[], b"");
        assert_eq!(
            (r.status, r.text()),
            (200, body.clone()),
            "acknowledged object {name} after kill -9"
        );
    }
    eprintln!("{} acknowledged uploads all present", acked.len());
}

/// What the blobstore example must do on every backend: a 3 MB object
/// streamed in and out, inclusive ranges, object info, names that look like
/// paths kept as data, listing, copy, move and delete.
pub fn blobstore_checks(rt: &Runtime) {
    // A 3 MB object, streamed in and out.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let r = rt.request("PUT", "/photos/big.bin", &[], &big);
    assert_eq!((r.status, r.text()), (201, "stored 3000000 bytes\n".into()));
    let r = rt.request("GET", "/photos/big.bin", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body == big, "download differs from upload");
    // Inclusive ranges, as the WIT says.
    let r = rt.request("GET", "/photos/big.bin", &[("Range", "bytes=10-19")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, big[10..=19]);
    assert!(
        r.headers
            .contains(&("content-range".into(), "bytes 10-19/3000000".into())),
        "{:?}",
        r.headers
    );
    let r = rt.request(
        "GET",
        "/photos/big.bin",
        &[("Range", "bytes=2999990-")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &big[2_999_990..]));
    let r = rt.request("GET", "/photos/big.bin?info", &[], b"");
    assert!(
        r.text().starts_with("size=3000000 created-at="),
        "{}",
        r.text()
    );

    // Names are data, never paths.
    for name in ["..%2F..%2Fetc%2Fpasswd", "a%2Fb", "%2E%2E", "caf%C3%A9"] {
        let r = rt.request("PUT", &format!("/photos/{name}"), &[], name.as_bytes());
        assert_eq!(r.status, 201, "{name}: {}", r.text());
    }
    let long = "x".repeat(4096);
    assert_eq!(
        rt.request("PUT", &format!("/photos/{long}"), &[], b"long")
            .status,
        201
    );
    assert_eq!(rt.request("GET", "/photos/a%2Fb", &[], b"").text(), "a%2Fb");
    assert!(!std::path::Path::new("/etc/passwd.qwasr").exists());
    let listing = rt.request("GET", "/photos/", &[], b"").text();
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        vec![
            "..",
            "../../etc/passwd",
            "a/b",
            "big.bin",
            "café",
            long.as_str()
        ]
    );
    // Copy, move, delete.
    assert_eq!(
        rt.request("POST", "/photos/a%2Fb?copy-to=backup/ab", &[], b"")
            .status,
        200
    );
    assert_eq!(rt.request("GET", "/backup/ab", &[], b"").text(), "a%2Fb");
    assert_eq!(
        rt.request("POST", "/backup/ab?move-to=backup/moved", &[], b"")
            .status,
        200
    );
    assert_eq!(rt.request("GET", "/backup/ab", &[], b"").status, 404);
    assert_eq!(rt.request("DELETE", "/backup/moved", &[], b"").status, 204);
    assert_eq!(rt.request("GET", "/backup/", &[], b"").text(), "");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn notes_example_on_sqlite_maps_types_reports_errors_and_survives_kill_9() {
    let (bin, _) = build(&["--manifest", "examples/notes/qwasr.toml"]);
    let dir = data_dir();
    let env = [("QWASR_DATA_DIR", dir.path().to_str().unwrap())];
    let rt = Runtime::start(&bin, &env);
    notes_checks(&rt, "UNIQUE constraint failed: notes.title", SQLITE_TYPES);

    let addr = rt.addr.clone();
    let acked = hammer_then_kill(rt, 8, Duration::from_millis(1500), |addr, t, i| {
        let title = format!("t{t}-{i}");
        let r = runtime::request(
            addr,
            "POST",
            "/notes",
            &[],
            format!("{title}\nbody").as_bytes(),
        )
        .ok()?;
        (r.status == 201).then_some(title)
    });
    let rt = Runtime::start_on(&bin, &[], &env, &addr);
    let all = rt.get("/notes").1;
    let stored: std::collections::HashSet<&str> =
        all.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    for title in &acked {
        assert!(
            stored.contains(title.as_str()),
            "acknowledged note {title} missing after kill -9"
        );
    }
    eprintln!("{} acknowledged inserts all present", acked.len());
}

/// `/types` of the notes example on SQLite: every case both ways.
pub const SQLITE_TYPES: &str = "i32=int32(-5)\ni64=int64(-9000000000)\nu32=uint32(4000000000)\n\
             u64=uint64(9000000000)\nf32=float(1.5)\nf64=double(2.25)\nstr=str(héllo)\n\
             bool=boolean(true)\ndate=date(2024-01-02)\ntime=time(03:04:05)\n\
             timestamp=timestamp(2024-01-02T03:04:05Z)\nbinary=binary([0, 1, 2, 255])\n\
             none=str(null)\n";

/// What the notes example must do on every SQL backend: create, list,
/// search, show and delete notes; a constraint violation (the database's
/// message contains `unique`) and a syntax error are the interface's errors,
/// never traps; `/types` answers `types`.
pub fn notes_checks(rt: &Runtime, unique: &str, types: &str) {
    let r = rt.request("POST", "/notes", &[], b"groceries\nmilk, eggs");
    assert_eq!((r.status, r.text()), (201, "created 1\n".into()));
    let r = rt.request("POST", "/notes", &[], b"ideas\nqwasr");
    assert_eq!((r.status, r.text()), (201, "created 2\n".into()));
    assert_eq!(rt.get("/notes"), (200, "1\tgroceries\n2\tideas\n".into()));
    assert_eq!(rt.get("/notes/1"), (200, "groceries\nmilk, eggs".into()));
    assert_eq!(rt.get("/notes?search=dea"), (200, "2\tideas\n".into()));
    // A constraint violation is the interface's error with the database's message.
    let r = rt.request("POST", "/notes", &[], b"ideas\nagain");
    assert_eq!(r.status, 409);
    assert!(r.text().contains(unique), "{}", r.text());
    // So is a syntax error; neither traps.
    let r = rt.request("POST", "/sql", &[], b"SELEC title FROM notes");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("syntax error"), "{}", r.text());
    assert_eq!(rt.request("DELETE", "/notes/2", &[], b"").status, 204);
    assert_eq!(rt.request("DELETE", "/notes/2", &[], b"").status, 404);
    // Every data type goes in as a parameter and comes back from a column
    // declared with the matching SQL type; NULL is `none`.
    assert_eq!(rt.get("/types"), (200, types.to_string()));
}

#[test]
fn messaging_example_runs_http_and_the_subscriber_together() {
    let (bin, _) = build(&["--manifest", "examples/messaging/qwasr.toml"]);
    let help = Command::new(&bin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("serves: HTTP on HTTP_ADDR (wasi:http/incoming-handler@0.2.12)"),
        "{help}"
    );
    assert!(
        help.contains(
            "serves: messages on topics orders, audit.*, rpc.>, fail, trap (wasi:messaging/incoming-handler@0.2.0-draft)"
        ),
        "{help}"
    );
    let dir = data_dir();
    let rt = Runtime::start(&bin, &[("QWASR_DATA_DIR", dir.path().to_str().unwrap())]);

    messaging_checks(&rt);
    assert_eq!(rt.stop().code(), Some(0), "SIGTERM drains both servers");
}

/// What the messaging example must do on every broker: publish to exact
/// and wildcard subscriptions (the handler sees the concrete topic),
/// request-reply, a timeout, no subscriber, failing handlers that do not
/// stop the broker, and the message size limit.
pub fn messaging_checks(rt: &Runtime) {
    let r = rt.request("POST", "/publish/orders", &[], b"order #1");
    assert_eq!((r.status, r.text()), (202, "sent\n".into()));
    // A wildcard subscription; the handler sees the concrete topic.
    assert_eq!(
        rt.request("POST", "/publish/audit.login", &[], b"alice")
            .status,
        202
    );
    eventually(rt, "/received/orders", "1 order #1\n");
    eventually(rt, "/received/audit.login", "1 alice\n");
    // Request-reply through the in-process broker.
    let r = rt.request("POST", "/request/rpc.echo", &[], b"ping");
    assert_eq!((r.status, r.text()), (200, "echo: ping\n".into()));
    // No reply within the timeout; nobody subscribed at all.
    let started = Instant::now();
    let r = rt.request("POST", "/request/orders", &[], b"no reply");
    assert_eq!((r.status, r.text()), (504, "timeout\n".into()));
    assert!(started.elapsed() >= Duration::from_millis(1900));
    // The handler still got the request as a message.
    eventually(rt, "/received/orders", "2 no reply\n");
    let r = rt.request("POST", "/request/nobody.home", &[], b"x");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("no subscriber for topic `nobody.home`"),
        "{}",
        r.text()
    );
    // Handlers that fail or trap are logged; the broker goes on.
    for t in ["fail", "trap", "fail"] {
        assert_eq!(
            rt.request("POST", &format!("/publish/{t}"), &[], b"x")
                .status,
            202
        );
    }
    assert_eq!(
        rt.request("POST", "/publish/orders", &[], b"order #2")
            .status,
        202
    );
    eventually(rt, "/received/orders", "3 order #2\n");
    // Over the message size limit (1 KiB in this example's manifest).
    let r = rt.request("POST", "/publish/orders", &[], &[b'x'; 2048]);
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("over the limit of 1024 bytes"),
        "{}",
        r.text()
    );
}

/// GETs `path` until it answers 200 `want` (messages are handled asynchronously).
pub fn eventually(rt: &Runtime, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = rt.get(path);
        if status == 200 && body == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answered {status} {body:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_component_using_every_data_interface_builds_without_a_manifest() {
    // From a directory with no qwasr.toml: everything on embedded defaults.
    let dir = data_dir();
    let wasm = root().join("examples/everything/everything.wasm");
    std::fs::copy(&wasm, dir.path().join("everything.wasm")).unwrap();
    let plan = succeeds(&["plan", "everything.wasm"], dir.path());
    for line in [
        "wasi:blobstore/blobstore@0.2.0-draft         sync     blobstore via qwasr-wasi-blobstore, backend embedded (embedded default)",
        "wasi:config/store@0.2.0-rc.1                 sync     config via qwasr-wasi-config, backend embedded (embedded default)",
        "wasi:keyvalue/store@0.2.0-draft2             sync     keyvalue via qwasr-wasi-keyvalue, backend embedded (embedded default)",
        "wasi:messaging/producer@0.2.0-draft          sync     messaging via qwasr-wasi-messaging, backend embedded (embedded default)",
        "wasi:sql/readwrite@0.2.0-draft               sync     sql via qwasr-wasi-sql, backend embedded (embedded default)",
        "wasi:http/incoming-handler@0.2.12            sync     served by the http server",
    ] {
        assert!(plan.contains(line), "missing {line:?} in\n{plan}");
    }
    let (bin, _) = build_in(dir.path(), &["everything.wasm"]);
    let data = data_dir();
    let rt = Runtime::start(&bin, &[("QWASR_DATA_DIR", data.path().to_str().unwrap())]);
    assert_eq!(
        rt.get("/"),
        (
            200,
            "hits=1 blob=hello rows=1 sent=ok greeting=hello\n".into()
        )
    );
    assert_eq!(
        rt.get("/"),
        (
            200,
            "hits=2 blob=hello rows=2 sent=ok greeting=hello\n".into()
        )
    );
    drop(rt);
    // An unwritable data directory is a start-up error naming it.
    let file = data.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(&bin)
        .env("QWASR_DATA_DIR", &file)
        .env("HTTP_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot create the data directory `{}",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("set QWASR_DATA_DIR"), "{err}");
}

/// Spin's draft2 (batch.get-many returns a value option per key) is served
/// by its own flavour; a bucket outside `[keyvalue] buckets` is access-denied.
#[test]
fn a_guest_built_against_spins_keyvalue_runs_its_conformance_checks() {
    let plan = succeeds(
        &["plan", "--manifest", "examples/keyvalue-spin/qwasr.toml"],
        &root(),
    );
    assert!(
        plan.contains("wasi:keyvalue/batch@0.2.0-draft2             spin     keyvalue"),
        "{plan}"
    );
    assert!(plan.contains("keyvalue buckets: default"), "{plan}");
    let (bin, _) = build(&["--manifest", "examples/keyvalue-spin/qwasr.toml"]);
    let dir = data_dir();
    let rt = Runtime::start(&bin, &[("QWASR_DATA_DIR", dir.path().to_str().unwrap())]);
    assert_eq!(rt.get("/"), (200, "ok\n".into()));
}
