//! qwasr-gen as a user runs it: the binary, real components, real cargo
//! builds, real runtimes answering HTTP on a real port.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wit_parser::{ManglingAndAbi, Resolve};

mod data;
mod e2e;
mod p3;
mod runtime;
mod services;

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

/// A component whose world is `wit`'s `app` world; its code traps, so it is
/// for inspect/plan only. The repository's WASI 0.2.12 packages are loaded
/// first, so worlds may import them.
fn fixture(dir: &Path, name: &str, wit: &str) -> PathBuf {
    fixture_with(dir, name, &[], wit)
}

/// [`fixture`], also loading the WIT directories `extra` (relative to the repository).
fn fixture_with(dir: &Path, name: &str, extra: &[&str], wit: &str) -> PathBuf {
    let mut resolve = wasi_resolve();
    for e in extra {
        resolve.push_path(root().join(e)).unwrap();
    }
    let pkg = resolve
        .push_str("fixture.wit", wit)
        .expect("fixture WIT parses");
    let world = resolve.select_world(&[pkg], Some("app")).unwrap();
    let module = wit_component::dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    write_component(&resolve, world, module, &dir.join(name))
}

/// The repository's WASI 0.2.12 packages.
fn wasi_resolve() -> Resolve {
    let mut resolve = Resolve::default();
    for f in [
        "io",
        "clocks",
        "random",
        "filesystem",
        "sockets",
        "cli",
        "http",
    ] {
        resolve
            .push_path(root().join(format!("wit/deps/{f}.wit")))
            .unwrap();
    }
    resolve
}

/// The core module `module` as a component of `world`, written to `path`.
fn write_component(
    resolve: &Resolve,
    world: wit_parser::WorldId,
    mut module: Vec<u8>,
    path: &Path,
) -> PathBuf {
    wit_component::embed_component_metadata(
        &mut module,
        resolve,
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
    std::fs::write(path, component).unwrap();
    path.to_path_buf()
}

/// `wasi:http/incoming-handler` at `version`, with the published shape
/// (the planner compares types, not only names).
fn http_package(version: &str) -> String {
    format!(
        "package wasi:http@{version} {{
           interface types {{ resource incoming-request; resource response-outparam; }}
           interface incoming-handler {{
             use types.{{incoming-request, response-outparam}};
             handle: func(request: incoming-request, response-out: response-outparam);
           }}
         }}"
    )
}

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
             {}
             world app {{ import acme:widgets/gadget@1.0.0; export wasi:http/incoming-handler@0.2.9; }}",
            http_package("0.2.9")
        ),
    );
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: no backend serves the import acme:widgets/gadget@1.0.0; supported packages: \
         wasi:blobstore, wasi:config, wasi:http, wasi:keyvalue, wasi:messaging, wasi:sql, \
         wasi:io/cli/clocks/random/filesystem/sockets (0.2)"
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
             {}
             world app {{ import wasi:keyvalue/store@0.1.0; export wasi:http/incoming-handler@0.2.9; }}",
            http_package("0.2.9")
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
         a service must export one of: wasi:http/incoming-handler@0.2.x, \
         wasi:http/handler@0.3.x, wasi:messaging/incoming-handler@0.2.0-draft"
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

/// Service backends: options are checked by name, and `plan` lists the
/// variables the chosen backends read, with what each sets.
#[test]
fn service_backend_options_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nkeyvalue = { backend = \"redis\", pool-sise = 4 }\n",
    )
    .unwrap();
    let app = root().join("examples/counter/app.wasm");
    let err = fails(&["plan", app.to_str().unwrap()], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:24: backend `redis` has no option `pool-sise`; did you mean `pool-size`?"
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nkeyvalue = { backend = \"redis\", timeout = \"2s\" }\n",
    )
    .unwrap();
    let plan = succeeds(&["plan", app.to_str().unwrap()], dir.path());
    assert!(
        plan.contains("keyvalue via qwasr-wasi-keyvalue, backend redis (set in qwasr.toml:2:24)"),
        "{plan}"
    );
    assert!(plan.contains("qwasr-redis (features: keyvalue)"), "{plan}");
    assert!(
        plan.contains("environment (read by the backends at start-up):\n"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "  REDIS_URL                Redis server URL (default redis://127.0.0.1:6379)"
        ),
        "{plan}"
    );
    assert!(!plan.contains("QWASR_DATA_DIR"), "{plan}");
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

/// A catalog with the real crates plus a new backend crate that implements only keyvalue.
fn catalog_with_a_new_backend() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root().join("backends")).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let fake = dir.path().join("fakekv");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(
        fake.join("Cargo.toml"),
        "[package]\nname = \"qwasr-fakekv\"\nversion = \"0.1.0\"\n\n\
         [package.metadata.qwasr.backend]\nname = \"fakekv\"\nimplements = [\"wasi:keyvalue\"]\nenv = [\"FAKEKV_URL\"]\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_backend_on_an_interface_it_does_not_implement() {
    let catalog = catalog_with_a_new_backend();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nconfig = \"fakekv\"\n",
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
        "error: qwasr.toml:2:10: backend `fakekv` does not implement wasi:config; backends for config: embedded"
    );
}

#[test]
fn a_catalog_backend_is_chosen_from_the_manifest_without_generator_changes() {
    let catalog = catalog_with_a_new_backend();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[backends]\nkeyvalue = \"fakekv\"\n",
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
    assert_eq!(kv["backend"], "fakekv");
    assert_eq!(kv["backend_crate"]["name"], "qwasr-fakekv");
    assert_eq!(kv["reason"], "qwasr.toml:2:12");
    assert_eq!(kv["env"][0]["name"], "FAKEKV_URL");
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
        "wasi:keyvalue/store@0.2.0-draft              sync     keyvalue via qwasr-wasi-keyvalue, backend embedded (set in examples/counter/qwasr.toml:7:12)"
    ), "{out}");
    assert!(
        out.contains(
            "wasi:http/incoming-handler@0.2.12            sync     served by the http server"
        ),
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
                 {}
                 world app {{ export wasi:http/incoming-handler@{v}; }}",
                // 0.2.12 is the repository's own, loaded by `fixture`.
                if v == "0.2.12" {
                    String::new()
                } else {
                    http_package(v)
                }
            ),
        );
        let out = succeeds(&["plan", "app.wasm", "--json"], dir.path());
        let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(plan["servers"][0]["name"], "http", "{v}: {out}");
        let http = plan["imports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["interface"] == "http")
            .unwrap();
        assert_eq!(http["backend"], "embedded", "{v}: {out}");
    }
}

#[test]
fn outgoing_http_is_linked_only_into_apps_that_import_it() {
    let dir = tempfile::tempdir().unwrap();
    let wit = |imports: &str| {
        format!(
            "package test:app;
             world app {{ {imports} export wasi:http/incoming-handler@0.2.12; }}"
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
        &wit("import wasi:http/outgoing-handler@0.2.12;"),
    );
    assert!(!dependency("server.wasm").contains("features = ["));
    assert!(
        dependency("client.wasm").contains(r#"features = ["outgoing"]"#),
        "{}",
        dependency("client.wasm")
    );
}

const SPIN_KV: &str = "wit/flavours/keyvalue-0.2.0-draft2.spin-variant";

/// A guest built against Spin's draft2 (batch.get-many returns one
/// `tuple<key, option<value>>` per key) gets Spin's flavour; the proposal's
/// would link-fail at start-up.
#[test]
fn the_flavour_whose_types_match_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let world = "package test:app;
        world app {
          import wasi:keyvalue/store@0.2.0-draft2;
          import wasi:keyvalue/batch@0.2.0-draft2;
          export wasi:http/incoming-handler@0.2.12;
        }";
    fixture_with(dir.path(), "spin.wasm", &[SPIN_KV], world);
    fixture_with(
        dir.path(),
        "proposal.wasm",
        &["wit/deps/keyvalue-0.2.0-draft2"],
        world,
    );
    let plan = |wasm: &str| -> serde_json::Value {
        serde_json::from_str(&succeeds(&["plan", wasm, "--json"], dir.path())).unwrap()
    };
    let flavour_of = |plan: &serde_json::Value, import: &str| {
        plan["imports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["import"] == import)
            .map(|i| i["flavour"].as_str().unwrap().to_string())
            .unwrap()
    };
    let spin = plan("spin.wasm");
    assert_eq!(
        flavour_of(&spin, "wasi:keyvalue/batch@0.2.0-draft2"),
        "spin"
    );
    assert_eq!(
        flavour_of(&spin, "wasi:keyvalue/store@0.2.0-draft2"),
        "spin"
    );
    let keyvalue = |plan: &serde_json::Value| {
        plan["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["interface"] == "keyvalue")
            .unwrap()["features"]
            .clone()
    };
    assert_eq!(keyvalue(&spin), serde_json::json!(["draft2-spin"]));
    let proposal = plan("proposal.wasm");
    assert_eq!(
        flavour_of(&proposal, "wasi:keyvalue/batch@0.2.0-draft2"),
        "sync"
    );
    assert_eq!(keyvalue(&proposal), serde_json::json!(["draft2"]));
    let text = succeeds(&["plan", "spin.wasm"], dir.path());
    assert!(
        text.contains(
            "wasi:keyvalue/batch@0.2.0-draft2             spin     keyvalue via qwasr-wasi-keyvalue"
        ),
        "{text}"
    );
}

/// An import whose types match no flavour is refused at plan time, naming
/// the function and what differs from each flavour, instead of building a
/// runtime that fails to link.
#[test]
fn an_import_whose_types_match_no_flavour_names_the_function() {
    let dir = tempfile::tempdir().unwrap();
    // Spin's batch with get-many altered: values as strings.
    let altered = std::fs::read_to_string(root().join(SPIN_KV).join("batch.wit"))
        .unwrap()
        .replace(
            "list<tuple<string, option<list<u8>>>>",
            "list<tuple<string, option<string>>>",
        );
    let mut world = String::from("package wasi:keyvalue@0.2.0-draft2;\n");
    for f in ["store.wit", "atomic.wit", "watch.wit"] {
        let text = std::fs::read_to_string(root().join(SPIN_KV).join(f)).unwrap();
        world.push_str(&text.replace("package wasi:keyvalue@0.2.0-draft2;", ""));
        world.push('\n');
    }
    world.push_str(&altered.replace("package wasi:keyvalue@0.2.0-draft2;", ""));
    let altered_dir = dir.path().join("altered");
    std::fs::create_dir(&altered_dir).unwrap();
    std::fs::write(altered_dir.join("kv.wit"), world).unwrap();
    fixture_with(
        dir.path(),
        "app.wasm",
        &[altered_dir.to_str().unwrap()],
        "package test:app;
         world app {
           import wasi:keyvalue/batch@0.2.0-draft2;
           export wasi:http/incoming-handler@0.2.12;
         }",
    );
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: wasi:keyvalue/batch@0.2.0-draft2 matches none of the flavours qwasr binds for wasi:keyvalue@0.2.0-draft2:
      sync (qwasr-wasi-keyvalue): wasi:keyvalue/batch@0.2.0-draft2: function `get-many`: result: the component has `result<list<tuple<string, option<string>>>, error>` where the host has `result<list<option<tuple<string, list<u8>>>>, error>`
      spin (qwasr-wasi-keyvalue): wasi:keyvalue/batch@0.2.0-draft2: function `get-many`: result: the component has `result<list<tuple<string, option<string>>>, error>` where the host has `result<list<tuple<string, option<list<u8>>>>, error>`
      async (qwasr-wasi-keyvalue): wasi:keyvalue/batch@0.2.0-draft2: function `get-many`: the component's is a sync function, the host's is an `async` function
    build the guest against one of those"
    );
    // Nothing was generated.
    let out = dir.path().join("out");
    fails(
        &["generate", "app.wasm", "--out", out.to_str().unwrap()],
        dir.path(),
    );
    assert!(!out.exists());
}

/// WASI 0.3 release candidates are refused at plan time, naming the
/// version and who emits it: their async ABI differs from 0.3.0's.
#[test]
fn a_wasi_0_3_release_candidate_is_refused_at_plan() {
    let dir = tempfile::tempdir().unwrap();
    for (rc, who) in [
        (
            "0.3.0-rc-2026-03-15",
            "Spin's current `http-rust` template emits it",
        ),
        (
            "0.3.0-rc-2025-09-16",
            "the original Qwasr's published examples import it",
        ),
    ] {
        fixture(
            dir.path(),
            "app.wasm",
            &format!(
                "package test:app;
                 package wasi:http@{rc} {{
                   interface types {{ resource request; resource response; variant error-code {{ internal-error(option<string>) }} }}
                   interface handler {{
                     use types.{{request, response, error-code}};
                     handle: async func(request: request) -> result<response, error-code>;
                   }}
                 }}
                 world app {{ export wasi:http/handler@{rc}; }}"
            ),
        );
        let err = fails(&["plan", "app.wasm"], dir.path());
        assert!(
            err.starts_with(&format!(
                "error: the component is built against a WASI 0.3 release candidate (`@{rc}`, \
                 e.g. wasi:http/handler@{rc}"
            )),
            "{err}"
        );
        assert!(err.contains(who), "{err}");
        assert!(
            err.contains("Rebuild the guest against WASI 0.3.0 or later: a `wasip3` release built on it (0.10 targets 0.3.2)"),
            "{err}"
        );
        // Nothing is generated for it either.
        let out = dir.path().join("out");
        fails(
            &["generate", "app.wasm", "--out", out.to_str().unwrap()],
            dir.path(),
        );
        assert!(!out.exists());
    }
}

/// A WASI 0.2 handler (lifted synchronously) cannot wait for Qwasr's
/// `async func` keyvalue: refused at plan instead of trapping at run time.
#[test]
fn a_sync_export_over_async_imports_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fixture_with(
        dir.path(),
        "app.wasm",
        &["wit/flavours/keyvalue-0.2.0-draft2.qwasr-async"],
        "package test:app;
         world app {
           import wasi:keyvalue/store@0.2.0-draft2;
           export wasi:http/incoming-handler@0.2.12;
         }",
    );
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: the component exports wasi:http/incoming-handler@0.2.12 with synchronous functions \
         but imports `async func`s (wasi:keyvalue/store@0.2.0-draft2: `bucket.get`): a synchronous export \
         cannot wait for an async import (wasmtime traps when it has to); export the WASI 0.3 handler \
         instead, or build the guest against the sync flavour of wasi:keyvalue"
    );
}

#[test]
fn grants_topics_and_limits_of_the_manifest_show_in_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    fixture_with(
        dir.path(),
        "app.wasm",
        &["wit/deps/keyvalue-0.2.0-draft2"],
        "package test:app;
         world app {
           import wasi:keyvalue/store@0.2.0-draft2;
           export wasi:http/incoming-handler@0.2.12;
         }",
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[keyvalue]\nbuckets = [\"default\", \"cache\"]\n\n[sql]\ndatabases = [\"x\"]\n",
    )
    .unwrap();
    let out = succeeds(&["plan", "app.wasm"], dir.path());
    assert!(
        out.contains("names the guest may open:\n  keyvalue buckets: default, cache\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "note: qwasr.toml:5:1: [sql] databases is set, but the component does not use wasi:sql; ignored"
        ),
        "{out}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&succeeds(&["plan", "app.wasm", "--json"], dir.path())).unwrap();
    assert_eq!(
        plan["names"],
        serde_json::json!([{"interface": "keyvalue", "key": "buckets", "names": ["default", "cache"]}])
    );

    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[messaging]\ntopics = [\"orders\", \"audit.*.>\", \"bad..topic\"]\n",
    )
    .unwrap();
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:34: [messaging] topics: invalid topic pattern `bad..topic`: token 2 is empty; \
         a pattern is tokens separated by `.`, where `*` matches exactly one token and `>`, \
         only as the last token, one or more"
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[messaging]\ntopics = [\"audit.>.x\"]\n",
    )
    .unwrap();
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:11: [messaging] topics: invalid topic pattern `audit.>.x`: `>` must be the last token; \
         a pattern is tokens separated by `.`, where `*` matches exactly one token and `>`, \
         only as the last token, one or more"
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[messaging]\nmax-message-size = \"lots\"\n",
    )
    .unwrap();
    let err = fails(&["plan", "app.wasm"], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:20: [messaging] max-message-size: `lots` is not a size; write e.g. \"64MiB\""
    );
}

/// A wasi:http guest whose handler is `code_bytes` of `nop`s: a language
/// runtime's amount of code, without one.
fn large_http_component(dir: &Path, code_bytes: usize) -> PathBuf {
    let mut resolve = wasi_resolve();
    let pkg = resolve
        .push_str(
            "large.wit",
            "package test:large; world app { export wasi:http/incoming-handler@0.2.12; }",
        )
        .unwrap();
    let world = resolve.select_world(&[pkg], Some("app")).unwrap();
    let wat = format!(
        r#"(module
             (memory (export "memory") 1)
             (func (export "wasi:http/incoming-handler@0.2.12#handle") (param i32 i32) {})
             (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable))"#,
        "nop ".repeat(code_bytes)
    );
    let module = wat::parse_str(wat).unwrap();
    write_component(&resolve, world, module, &dir.join("large.wasm"))
}

#[test]
fn memory_checks_are_chosen_per_component_and_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let hello = root().join("examples/hello-http/app.wasm");
    let hello = hello.to_str().unwrap();
    let plan = succeeds(&["plan", hello], dir.path());
    assert!(
        plan.contains("\nmemory checks: explicit (14 KiB of code: per-request set-up dominates"),
        "{plan}"
    );
    let large = large_http_component(dir.path(), 1 << 20);
    let plan = succeeds(&["plan", large.to_str().unwrap()], dir.path());
    assert!(
        plan.contains("\nmemory checks: guard-pages (1025 KiB of code, a language runtime"),
        "{plan}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&succeeds(&["plan", "large.wasm", "--json"], dir.path())).unwrap();
    assert_eq!(json["limits"]["memory_checks"], "guard-pages");

    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[limits]\nmemory-checks = \"guard-pages\"\n",
    )
    .unwrap();
    let plan = succeeds(&["plan", hello], dir.path());
    assert!(
        plan.contains("\nmemory checks: guard-pages (set in [limits] memory-checks)\n"),
        "{plan}"
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[limits]\ninstances = 5000\n",
    )
    .unwrap();
    let plan = succeeds(&["plan", large.to_str().unwrap()], dir.path());
    assert!(
        plan.contains(
            "\nmemory checks: explicit (1025 KiB of code would take guard pages, but 5000 instances"
        ),
        "{plan}"
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[limits]\nmemory-checks = \"guard-pages\"\ninstances = 5000\n",
    )
    .unwrap();
    let err = fails(&["plan", hello], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:17: [limits] memory-checks = \"guard-pages\" reserves ~8 GiB of \
         address space per instance, too much for instances = 5000; lower [limits] instances \
         to 4096 or use \"explicit\""
    );
    std::fs::write(
        dir.path().join("qwasr.toml"),
        "[limits]\nmemory-checks = \"guard\"\n",
    )
    .unwrap();
    let err = fails(&["plan", hello], dir.path());
    assert_eq!(
        err.trim_end(),
        "error: qwasr.toml:2:17: [limits] memory-checks is `guard`; use \"guard-pages\" (fastest \
         guest code), \"explicit\" (cheapest per request for small guests) or \"auto\" \
         (qwasr-gen decides; the default)"
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
    // Named by its digest in the runtime's image cache.
    let id = std::fs::read_to_string(out.join("app.cwasm.id")).unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id:?}"
    );
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

/// Two servers in one runtime: HTTP and the messaging subscriber.
#[test]
fn golden_messaging() {
    golden("messaging");
}
