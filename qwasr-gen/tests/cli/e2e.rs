//! End to end: the examples' runtimes built and driven over HTTP.

use super::*;
use runtime::{Runtime, build};

/// One test, so the apps build one after another in one shared target directory.
#[test]
fn end_to_end_counter_hello_draft2_and_python() {
    let (counter, first) = build(&["--manifest", "examples/counter/qwasr.toml"]);
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    let rt = Runtime::start(&counter, &[("QWASR_DATA_DIR", data)]);
    assert_eq!(rt.get("/"), (200, "1\n".to_string()));
    assert_eq!(rt.get("/"), (200, "2\n".to_string()));
    assert_eq!(rt.get("/other"), (200, "1\n".to_string()));
    assert_eq!(rt.stop().code(), Some(0), "SIGTERM exits 0");

    // wasi:config from the environment picks another bucket: counting starts again.
    let rt = Runtime::start(
        &counter,
        &[
            ("QWASR_CONFIG_BUCKET", "elsewhere"),
            ("QWASR_DATA_DIR", data),
        ],
    );
    assert_eq!(rt.get("/"), (200, "1\n".to_string()));
    drop(rt);

    let (hello, second) = build(&[
        "examples/hello-http/app.wasm",
        "--manifest",
        "examples/hello-http/qwasr.toml",
    ]);
    eprintln!("first build {first:?}, second app {second:?}");
    let rt = Runtime::start(&hello, &[]);
    assert_eq!(
        rt.get("/hi?x=1"),
        (200, "Hello from qwasr! You asked for /hi?x=1\n".to_string())
    );
    drop(rt);

    // compute asks for guard pages: its code runs without bounds checks, the
    // answer is the same.
    let (compute, _) = build(&["--manifest", "examples/compute/qwasr.toml"]);
    let rt = Runtime::start(&compute, &[]);
    assert_eq!(
        rt.get("/?n=100").1,
        "primes below 100: 25\nchecksum of 300000 sorted: 18171570353688423511\n"
    );
    assert_eq!(rt.get("/").0, 200);
    // A 512 MB table is past the 128 MiB limit: memory.grow fails, the
    // request gets a 500, the next one is served.
    assert_eq!(rt.get("/?n=512000000").0, 500);
    assert_eq!(rt.get("/?n=10").0, 200);
    drop(rt);

    // Limits: a request over its deadline or memory gets a 500; the next is fine.
    let (limits, _) = build(&["--manifest", "examples/limits/qwasr.toml"]);
    let rt = Runtime::start(&limits, &[]);
    let started = Instant::now();
    assert_eq!(rt.get("/spin").0, 500);
    let spun = started.elapsed();
    assert!(
        spun >= Duration::from_millis(900) && spun < Duration::from_secs(10),
        "deadline took {spun:?}"
    );
    assert_eq!(rt.get("/"), (200, "fine\n".to_string()));
    // A computing guest yields at every epoch tick: while one request spins
    // towards its deadline, requests on other connections (some on the same
    // HTTP thread) are answered meanwhile, not after it.
    std::thread::scope(|s| {
        let spinning = s.spawn(|| rt.get("/spin").0);
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        for _ in 0..8 {
            assert_eq!(rt.get("/"), (200, "fine\n".to_string()));
        }
        let took = started.elapsed();
        assert!(
            !spinning.is_finished(),
            "8 requests beside a spinning guest took {took:?}: they waited for it"
        );
        assert_eq!(spinning.join().unwrap(), 500);
    });
    assert_eq!(rt.get("/grow?mb=64").0, 500);
    assert_eq!(
        rt.get("/grow?mb=4"),
        (200, "grew 4 MiB (1024 pages)\n".to_string())
    );
    drop(rt);

    // A development runtime compiles WebAssembly at start-up, and runs another
    // .wasm given on its command line.
    let jit_out = root().join("target/qwasr-apps/hello-jit");
    let (jit, _) = build(&[
        "--manifest",
        "examples/hello-http/qwasr.toml",
        "--jit",
        "-o",
        jit_out.to_str().unwrap(),
    ]);
    let rt = Runtime::start(&jit, &[]);
    assert_eq!(
        rt.get("/j"),
        (200, "Hello from qwasr! You asked for /j\n".to_string())
    );
    drop(rt);
    let limits_wasm = root().join("examples/limits/app.wasm");
    let rt = Runtime::start_with_args(&jit, &["--component", limits_wasm.to_str().unwrap()], &[]);
    assert_eq!(rt.get("/"), (200, "fine\n".to_string()));
    drop(rt);

    // The same counter against wasi:keyvalue@0.2.0-draft2, with -o.
    // The in-memory backend by name.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counter2");
    let manifest = dir.path().join("qwasr.toml");
    std::fs::write(
        &manifest,
        "[app]\nname = \"counter2\"\n\n[backends]\nkeyvalue = \"memory\"\n",
    )
    .unwrap();
    let (bin, _) = build(&[
        "examples/counter/app-draft2.wasm",
        "--manifest",
        manifest.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(bin, out);
    // In memory, by name: nothing on disk.
    let rt = Runtime::start(&bin, &[("QWASR_DATA_DIR", "/nonexistent/qwasr")]);
    assert_eq!(rt.get("/"), (200, "1\n".to_string()));
    assert_eq!(rt.get("/"), (200, "2\n".to_string()));

    drop(rt);

    // A component from another toolchain: CPython via componentize-py, ~25
    // standard WASI imports at mixed 0.2.x versions, nothing granted.
    let py = root().join("examples/hello-python/app.wasm");
    assert!(
        py.is_file(),
        "{} is missing: run scripts/build-examples.sh",
        py.display()
    );
    let (bin, _) = build(&["--manifest", "examples/hello-python/qwasr.toml"]);
    let rt = Runtime::start(&bin, &[("QWASR_TEST_SECRET", "hidden")]);
    assert_eq!(
        rt.get("/py"),
        (
            200,
            "Hello from Python on qwasr! You asked for /py\n".to_string()
        )
    );
    assert_eq!(
        rt.get("/env"),
        (200, "\n".to_string()),
        "the guest sees no host environment"
    );
    drop(rt);
    image_cache(&bin);
}

/// The image cache: written after a start that did not find it, mapped by
/// the next (CPython's heap straight from the file), never loaded from a
/// file that is not this image or not private to this user.
fn image_cache(bin: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let hello = |rt: &Runtime| {
        assert_eq!(
            rt.get("/py").1,
            "Hello from Python on qwasr! You asked for /py\n"
        );
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let env = [("QWASR_CACHE_DIR", dir.to_str().unwrap())];
    let rt = Runtime::start(bin, &env);
    hello(&rt);
    assert!(!rt.maps().contains(dir.to_str().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let file = loop {
        let cached: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        if let [file] = cached.as_slice() {
            break file.clone();
        }
        assert!(Instant::now() < deadline, "no image cached in {dir:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(rt);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
    let image = std::fs::read(&file).unwrap();

    let rt = Runtime::start(bin, &env);
    hello(&rt);
    assert!(
        rt.maps().contains(file.to_str().unwrap()),
        "the second start maps {file:?}"
    );
    drop(rt);

    // Not this image (same size, other bytes): the embedded one runs, and
    // the copy is written again.
    std::fs::write(&file, vec![0u8; image.len()]).unwrap();
    let rt = Runtime::start(bin, &env);
    hello(&rt);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read(&file).unwrap() != image {
        assert!(Instant::now() < deadline, "{file:?} was not rewritten");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(rt);

    // Stopped (SIGTERM) right after a first start: the copy is either whole
    // or gone, never left half-written.
    let quick = tmp.path().join("quick");
    let rt = Runtime::start(bin, &[("QWASR_CACHE_DIR", quick.to_str().unwrap())]);
    hello(&rt);
    assert!(rt.stop().success());
    let left: Vec<_> = std::fs::read_dir(&quick)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "half-written copies left: {left:?}");

    // A directory others may write to is not trusted; --no-cache writes nothing.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let rt = Runtime::start(bin, &env);
    hello(&rt);
    assert!(!rt.maps().contains(dir.to_str().unwrap()));
    drop(rt);
    let off = tmp.path().join("off");
    let rt = Runtime::start_with_args(
        bin,
        &["--no-cache"],
        &[("QWASR_CACHE_DIR", off.to_str().unwrap())],
    );
    hello(&rt);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!off.exists(), "--no-cache wrote {off:?}");
}
