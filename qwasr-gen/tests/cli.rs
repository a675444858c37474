//! qwasr-gen as a user runs it: the binary, real components, real cargo
//! builds, real runtimes answering HTTP on a real port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wit_parser::{ManglingAndAbi, Resolve};

const BIN: &str = env!("CARGO_BIN_EXE_qwasr-gen");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn qwasr(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("QWASR_BACKENDS")
        .output()
        .expect("run qwasr-gen")
}

/// Runs qwasr-gen expecting failure; returns its stderr.
fn fails(args: &[&str], cwd: &Path) -> String {
    let out = qwasr(args, cwd);
    assert!(
        !out.status.success(),
        "expected failure, got success: {out:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout on failure: {out:?}"
    );
    String::from_utf8(out.stderr).unwrap()
}

fn succeeds(args: &[&str], cwd: &Path) -> String {
    let out = qwasr(args, cwd);
    assert!(
        out.status.success(),
        "qwasr-gen {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A component whose world is `wit`'s `app` world; its code traps, so it is for inspect/plan only.
fn fixture(dir: &Path, name: &str, wit: &str) -> PathBuf {
    let mut resolve = Resolve::default();
    let pkg = resolve
        .push_str("fixture.wit", wit)
        .expect("fixture WIT parses");
    let world = resolve.select_world(&[pkg], Some("app")).unwrap();
    let mut module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, component).unwrap();
    path
}

const HTTP_EXPORT: &str = "
package wasi:http@0.2.9 {
  interface types { type t = u32; }
  interface incoming-handler { use types.{t}; handle: func(x: t); }
}
";

// ---------------------------------------------------------------- errors

#[test]
fn not_a_wasm_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), "hello, I am text\n").unwrap();
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.lines().next().unwrap(),
        "error: `app.wasm` is not a WebAssembly file (it does not start with the `\\0asm` magic bytes); \
         pass the component your guest build produced (e.g. target/wasm32-wasip2/release/app.wasm)"
    );
}

#[test]
fn a_core_module_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let err = fails(&["inspect", "core.wasm"], dir.path());
    assert_eq!(
        err.lines().next().unwrap(),
        "error: `core.wasm` is a core WebAssembly module, not a component; build for wasm32-wasip2, \
         or turn it into a component with `qwasr-gen componentize core.wasm -o app.wasm` (or `wasm-tools component new`)"
    );
}

#[test]
fn truncated_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join("examples/counter/app.wasm")).unwrap();
    std::fs::write(dir.path().join("cut.wasm"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["plan", "cut.wasm"], dir.path());
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("error: `cut.wasm` is not a valid component: "),
        "{err}"
    );
    assert!(
        first.ends_with("(is the file truncated or corrupted?)"),
        "{err}"
    );
}

#[test]
fn an_import_nobody_serves_is_named_with_what_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    fixture(
        dir.path(),
        "app.wasm",
        &format!(
            "package test:app;
             package acme:widgets@1.0.0 {{ interface gadget {{ spin: func(); }} }}
             {HTTP_EXPORT}
             world app {{ import acme:widgets/gadget@1.0.0; export wasi:http/incoming-handler@0.2.9; }}"
        ),
    );
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: no backend serves the import acme:widgets/gadget@1.0.0; supported packages: \
         wasi:config, wasi:http, wasi:keyvalue, wasi:io/cli/clocks/random/filesystem/sockets (0.2)"
    );
}

#[test]
fn a_known_interface_at_an_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    fixture(
        dir.path(),
        "app.wasm",
        &format!(
            "package test:app;
             package wasi:keyvalue@0.1.0 {{ interface store {{ get: func(k: string) -> u32; }} }}
             {HTTP_EXPORT}
             world app {{ import wasi:keyvalue/store@0.1.0; export wasi:http/incoming-handler@0.2.9; }}"
        ),
    );
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: wasi:keyvalue/store@0.1.0 is not supported at this version; qwasr serves \
         wasi:keyvalue/store@0.2.0-draft, wasi:keyvalue/store@0.2.0-draft2: build the guest against one of those"
    );
}

#[test]
fn a_component_with_nothing_to_serve() {
    let dir = tempfile::tempdir().unwrap();
    fixture(
        dir.path(),
        "lib.wasm",
        "package test:app; interface api { f: func(); } world app { export api; }",
    );
    let err = fails(&["plan", "lib.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: the component exports nothing qwasr can run (it exports test:app/api); \
         a service must export one of: wasi:http/incoming-handler@0.2.x"
    );
}

#[test]
fn manifest_syntax_errors_point_at_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qwasr.toml"), "[app]\nname = \"counter\n").unwrap();
    let app = root().join("examples/counter/app.wasm");
    let err = fails(&["plan", app.to_str().unwrap()], dir.path());
    assert!(err.starts_with("error: qwasr.toml:2:"), "{err}");
    assert!(err.contains("invalid TOML"), "{err}");
}

#[test]
fn manifest_typos_suggest_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("qwasr.toml");
    std::fs::write(
        &m,
        "[app]\ncomponent = \"x.wasm\"\n\n[limits]\ntimeuot = \"5s\"\n",
    )
    .unwrap();
    let err = fails(&["plan", "--manifest", "qwasr.toml"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:5:1: unknown key `timeuot` in [limits]; did you mean `timeout`?"
    );
}

#[test]
fn unknown_backend_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nkeyvalue = \"embeded\"\n",
    )
    .unwrap();
    let app = root().join("examples/counter/app.wasm");
    let err = fails(&["plan", app.to_str().unwrap()], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:12: unknown backend `embeded` for keyvalue; did you mean `embedded`?"
    );
}

#[test]
fn unknown_interface_in_backends() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nkeyvalu = \"embedded\"\n",
    )
    .unwrap();
    let app = root().join("examples/counter/app.wasm");
    let err = fails(&["plan", app.to_str().unwrap()], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:1: unknown interface `keyvalu` in [backends]; did you mean `keyvalue`?"
    );
}

/// A catalog with the real crates plus a backend crate that implements only keyvalue.
fn catalog_with_fake_redis() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("backends")).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let redis = dir.path().join("redis");
    std::fs::create_dir(&redis).unwrap();
    std::fs::write(
        redis.join("Cargo.toml"),
        "[package]\nname = \"qwasr-redis\"\nversion = \"0.1.0\"\n\n\
         [package.metadata.qwasr.backend]\nname = \"redis\"\nimplements = [\"wasi:keyvalue\"]\nenv = [\"REDIS_URL\"]\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_backend_on_an_interface_it_does_not_implement() {
    let catalog = catalog_with_fake_redis();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nconfig = \"redis\"\n",
    )
    .unwrap();
    let app = root().join("examples/counter/app.wasm");
    let err = fails(
        &[
            "plan",
            app.to_str().unwrap(),
            "--backends",
            catalog.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:10: backend `redis` does not implement wasi:config; backends for config: embedded"
    );
}

#[test]
fn a_catalog_backend_is_chosen_from_the_manifest_without_generator_changes() {
    let catalog = catalog_with_fake_redis();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nkeyvalue = \"redis\"\n",
    )
    .unwrap();
    let app = root().join("examples/counter/app.wasm");
    let out = succeeds(
        &[
            "plan",
            app.to_str().unwrap(),
            "--json",
            "--backends",
            catalog.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kv = plan["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["interface"] == "keyvalue")
        .unwrap();
    assert_eq!(kv["backend"], "redis");
    assert_eq!(kv["backend_crate"]["name"], "qwasr-redis");
    assert_eq!(kv["reason"], "qwasr.toml:2:12");
    assert_eq!(kv["env"][0], "REDIS_URL");
}

#[test]
fn several_problems_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    fixture(
        dir.path(),
        "app.wasm",
        "package test:app;
         package acme:a@1.0.0 { interface x { f: func(); } }
         package acme:b@1.0.0 { interface y { f: func(); } }
         world app { import acme:a/x@1.0.0; import acme:b/y@1.0.0; }",
    );
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert!(err.starts_with("error: 3 problems stop this app from building:\n  - no backend serves the import acme:a/x@1.0.0"), "{err}");
}

#[test]
fn a_failed_generate_leaves_the_output_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    std::fs::write(dir.path().join("bad.wasm"), "nope").unwrap();
    fails(&["generate", "bad.wasm", "--out", "out"], dir.path());
    fails(&["generate", "bad.wasm", "--out", "fresh"], dir.path());
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(!dir.path().join("fresh").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "no staging directories left behind: {leftovers:?}"
    );
}

// ---------------------------------------------------------------- inspect / plan

#[test]
fn inspect_reads_imports_and_exports_from_the_binary() {
    let out = succeeds(&["inspect", "examples/counter/app.wasm"], &root());
    for line in [
        "  wasi:keyvalue/store@0.2.0-draft",
        "  wasi:keyvalue/atomics@0.2.0-draft",
        "  wasi:config/store@0.2.0-rc.1",
        "  wasi:http/types@0.2.12",
        "exports:\n  wasi:http/incoming-handler@0.2.12",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn plan_shows_keyvalue_on_the_embedded_default_and_http_served() {
    let out = succeeds(
        &[
            "plan",
            "examples/counter/app.wasm",
            "--manifest",
            "examples/counter/qwasr.toml",
        ],
        &root(),
    );
    assert!(out.contains(
        "wasi:keyvalue/store@0.2.0-draft              keyvalue via qwasr-wasi-keyvalue, backend embedded (set in examples/counter/qwasr.toml:7:12)"
    ), "{out}");
    assert!(
        out.contains("wasi:http/incoming-handler@0.2.12            served by the http server"),
        "{out}"
    );
    let hello = succeeds(&["plan", "examples/hello-http/app.wasm"], &root());
    assert!(
        hello.contains("backend embedded (embedded default)"),
        "{hello}"
    );
    assert!(!hello.contains("keyvalue"), "{hello}");
}

#[test]
fn other_patch_versions_of_wasi_http_plan() {
    let dir = tempfile::tempdir().unwrap();
    for v in ["0.2.0", "0.2.9", "0.2.10", "0.2.12"] {
        fixture(
            dir.path(),
            "app.wasm",
            &format!(
                "package test:app;
                 package wasi:http@{v} {{
                   interface types {{ type t = u32; }}
                   interface incoming-handler {{ use types.{{t}}; handle: func(x: t); }}
                 }}
                 world app {{ export wasi:http/incoming-handler@{v}; }}"
            ),
        );
        let out = succeeds(&["plan", "app.wasm", "--json"], dir.path());
        let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(plan["servers"][0]["name"], "http", "{v}: {out}");
        assert_eq!(plan["imports"][0]["backend"], "embedded", "{v}: {out}");
    }
}

#[test]
fn outgoing_http_is_linked_only_into_apps_that_import_it() {
    let dir = tempfile::tempdir().unwrap();
    let wit = |imports: &str| {
        format!(
            "package test:app;
             package wasi:http@0.2.3 {{
               interface types {{ type t = u32; }}
               interface outgoing-handler {{ use types.{{t}}; handle: func(x: t); }}
               interface incoming-handler {{ use types.{{t}}; handle: func(x: t); }}
             }}
             world app {{ {imports} export wasi:http/incoming-handler@0.2.3; }}"
        )
    };
    let dependency = |wasm: &str| {
        let out = dir.path().join(wasm.replace(".wasm", ""));
        succeeds(
            &["generate", wasm, "--out", out.to_str().unwrap()],
            dir.path(),
        );
        let cargo = std::fs::read_to_string(out.join("Cargo.toml")).unwrap();
        cargo
            .lines()
            .find(|l| l.starts_with("qwasr-wasi-http"))
            .unwrap()
            .to_string()
    };
    fixture(dir.path(), "server.wasm", &wit(""));
    fixture(
        dir.path(),
        "client.wasm",
        &wit("import wasi:http/outgoing-handler@0.2.3;"),
    );
    assert!(!dependency("server.wasm").contains("features"));
    assert!(
        dependency("client.wasm").contains(r#"features = ["outgoing"]"#),
        "{}",
        dependency("client.wasm")
    );
}

#[test]
fn cargo_qwasr_needs_no_arguments_in_an_app_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-qwasr"))
        .args(["qwasr", "plan", "--json"])
        .current_dir(root().join("examples/counter"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["app"], "counter");
}

// ---------------------------------------------------------------- golden files

/// Generates `example`'s crate and compares it with tests/golden/<example>/.
/// `QWASR_BLESS=1` rewrites the golden files.
fn golden(example: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(example);
    let manifest = format!("examples/{example}/qwasr.toml");
    succeeds(
        &[
            "generate",
            "--manifest",
            &manifest,
            "--out",
            out.to_str().unwrap(),
        ],
        &root(),
    );
    let backends = root().join("backends").canonicalize().unwrap();
    let golden = root().join("qwasr-gen/tests/golden").join(example);
    for file in ["Cargo.toml", "src/main.rs", "README.md"] {
        let got = std::fs::read_to_string(out.join(file))
            .unwrap()
            .replace(backends.to_str().unwrap(), "{BACKENDS}");
        let path = golden.join(file);
        if std::env::var_os("QWASR_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}; run with QWASR_BLESS=1", path.display()));
        assert_eq!(
            got, want,
            "{example}/{file} differs from its golden file; review, then QWASR_BLESS=1"
        );
    }
    // The component is embedded precompiled: wasmtime's ELF artifact.
    let code = std::fs::read(out.join("app.cwasm")).unwrap();
    assert_eq!(&code[..4], b"\x7fELF");
    assert!(!out.join("app.wasm").exists());
}

#[test]
fn golden_counter() {
    golden("counter");
}

#[test]
fn golden_hello_http() {
    golden("hello-http");
}

// ---------------------------------------------------------------- end to end

struct Runtime {
    child: Child,
    addr: String,
}

impl Runtime {
    fn start(bin: &Path, extra_env: &[(&str, &str)]) -> Runtime {
        Self::start_with_args(bin, &[], extra_env)
    }

    fn start_with_args(bin: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Runtime {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(args)
            .env("HTTP_ADDR", &addr)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start runtime");
        let mut rt = Runtime { child, addr };
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
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
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
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build(args: &[&str]) -> (PathBuf, Duration) {
    let started = Instant::now();
    let target = root().join("target/qwasr-apps");
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    let out = Command::new(BIN)
        .args(&full)
        .current_dir(root())
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
    (bin, started.elapsed())
}

/// One test, so the apps build one after another in one shared target directory.
#[test]
fn end_to_end_counter_hello_draft2_and_python() {
    let (counter, first) = build(&["--manifest", "examples/counter/qwasr.toml"]);
    let rt = Runtime::start(&counter, &[]);
    assert_eq!(rt.get("/"), (200, "1\n".to_string()));
    assert_eq!(rt.get("/"), (200, "2\n".to_string()));
    assert_eq!(rt.get("/other"), (200, "1\n".to_string()));
    assert_eq!(rt.stop().code(), Some(0), "SIGTERM exits 0");

    // wasi:config from the environment picks another bucket: counting starts again.
    let rt = Runtime::start(&counter, &[("QWASR_CONFIG_BUCKET", "elsewhere")]);
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
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counter2");
    let (bin, _) = build(&[
        "examples/counter/app-draft2.wasm",
        "--manifest",
        "examples/counter/qwasr.toml",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(bin, out);
    let rt = Runtime::start(&bin, &[]);
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
}
