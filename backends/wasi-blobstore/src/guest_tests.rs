//! A real component, run by the kernel, for each flavour: the same core
//! module, its imports typed by the flavour's WIT (sync-lowered calls to
//! `async func`s block the guest until the host task finishes). Its
//! `wasi:io` imports are served by the kernel's wasi:io (wasmtime-wasi),
//! with our streams in them.

use crate::Ctx;
use qwasr_kernel::wasmtime::component::Linker;
use qwasr_kernel::{App, Cli, Code, Kernel, Limits, testing};

/// `run` stores "hello blobstore" as `c/obj` through the body stream, reads
/// it back whole through an input stream and bytes 6..=9 with
/// consume-sync; returns 0, or the number of the step that failed. The
/// flavour adds the `run` export (and what it imports for it).
const GUEST: &str = r#"(module
  (import "wasi:blobstore/blobstore@0.2.0-draft" "create-container" (func $create (param i32 i32 i32)))
  (import "wasi:blobstore/types@0.2.0-draft" "[static]outgoing-value.new-outgoing-value" (func $new_value (result i32)))
  (import "wasi:blobstore/types@0.2.0-draft" "[method]outgoing-value.outgoing-value-write-body" (func $body (param i32 i32)))
  (import "wasi:blobstore/types@0.2.0-draft" "[static]outgoing-value.finish" (func $finish (param i32 i32)))
  (import "wasi:blobstore/types@0.2.0-draft" "[static]incoming-value.incoming-value-consume-async" (func $consume_async (param i32 i32)))
  (import "wasi:blobstore/types@0.2.0-draft" "[static]incoming-value.incoming-value-consume-sync" (func $consume_sync (param i32 i32)))
  (import "wasi:blobstore/container@0.2.0-draft" "[method]container.write-data" (func $write_data (param i32 i32 i32 i32 i32)))
  (import "wasi:blobstore/container@0.2.0-draft" "[method]container.get-data" (func $get_data (param i32 i32 i32 i64 i64 i32)))
  (import "wasi:io/streams@IO" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@IO" "[resource-drop]output-stream" (func $drop_out (param i32)))
  (import "wasi:io/streams@IO" "[method]input-stream.blocking-read" (func $read (param i32 i64 i32)))
  ;; IMPORTS
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "hello blobstore")
  (data (i32.const 200) "obj")
  (data (i32.const 210) "c")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $run (result i32)
    (local $c i32) (local $v i32) (local $s i32) (local $in i32)
    (call $create (i32.const 210) (i32.const 1) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 1))))
    (local.set $c (i32.load (i32.const 20)))
    (local.set $v (call $new_value))
    (call $body (local.get $v) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 2))))
    (local.set $s (i32.load (i32.const 20)))
    (call $write (local.get $s) (i32.const 100) (i32.const 15) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 3))))
    (call $drop_out (local.get $s))
    (call $write_data (local.get $c) (i32.const 200) (i32.const 3) (local.get $v) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 4))))
    (call $finish (local.get $v) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 5))))
    (call $get_data (local.get $c) (i32.const 200) (i32.const 3) (i64.const 0) (i64.const -1) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 6))))
    (call $consume_async (i32.load (i32.const 20)) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 7))))
    (local.set $in (i32.load (i32.const 20)))
    (call $read (local.get $in) (i64.const 1000) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 8))))
    (if (i32.ne (i32.load (i32.const 24)) (i32.const 15)) (then (return (i32.const 9))))
    (if (i64.ne (i64.load (i32.load (i32.const 20))) (i64.load (i32.const 100))) (then (return (i32.const 10))))
    ;; The end: stream-error.closed.
    (call $read (local.get $in) (i64.const 1000) (i32.const 16))
    (if (i32.eqz (i32.load8_u (i32.const 16))) (then (return (i32.const 11))))
    (if (i32.ne (i32.load8_u (i32.const 20)) (i32.const 1)) (then (return (i32.const 12))))
    (call $get_data (local.get $c) (i32.const 200) (i32.const 3) (i64.const 6) (i64.const 9) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 13))))
    (call $consume_sync (i32.load (i32.const 20)) (i32.const 16))
    (if (i32.load8_u (i32.const 16)) (then (return (i32.const 14))))
    (if (i32.ne (i32.load (i32.const 24)) (i32.const 4)) (then (return (i32.const 15))))
    (if (i32.ne (i32.load (i32.load (i32.const 20))) (i32.load (i32.const 106))) (then (return (i32.const 16))))
    (i32.const 0))
  ;; EXPORTS
)"#;

/// `run: func() -> u32`, lifted sync.
#[cfg(feature = "sync")]
const SYNC_RUN: (&str, &str) = ("", r#"(func (export "run") (result i32) (call $run))"#);

/// `run: async func() -> u32`, lifted async with a callback: it may block
/// in sync-lowered calls to `async func`s (a sync-lifted export may not).
#[cfg(feature = "async")]
const ASYNC_RUN: (&str, &str) = (
    r#"(import "[export]$root" "[task-return]run" (func $return (param i32)))"#,
    r#"(func (export "[async-lift]run") (result i32) (call $return (call $run)) (i32.const 0))
  (func (export "[callback][async-lift]run") (param i32 i32 i32) (result i32) unreachable)"#,
);

/// One flavour's WIT and bindings.
struct Flavour {
    /// The `wasi:io` version its WIT uses.
    io: &'static str,
    /// Its blobstore WIT, under `wit/`.
    blobstore: &'static str,
    /// Whether it needs the component model's async ABI.
    concurrency: bool,
    /// WAT imports and exports for `run`.
    run: (&'static str, &'static str),
    link: fn(&mut Linker<State>) -> anyhow::Result<()>,
}

fn component(flavour: &Flavour) -> &'static [u8] {
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");
    let world = format!(
        "package test:guest;
        world guest {{
            import wasi:blobstore/blobstore@0.2.0-draft;
            import wasi:io/streams@{};
            export run: {}func() -> u32;
        }}",
        flavour.io,
        if flavour.concurrency { "async " } else { "" }
    );
    let wat = GUEST
        .replace("@IO", &format!("@{}", flavour.io))
        .replace(";; IMPORTS", flavour.run.0)
        .replace(";; EXPORTS", flavour.run.1);
    let deps = [
        format!("{wit}/deps/io-{}", flavour.io),
        format!("{wit}/{}", flavour.blobstore),
    ];
    testing::component(&deps, &world, &wat)
}

type State = testing::State<Ctx>;

async fn a_guest_writes_and_reads_through_the_kernels_wasi_io(flavour: Flavour) {
    let dir = tempfile::tempdir().unwrap();
    let app: &'static App = Box::leak(Box::new(App {
        limits: Limits {
            instances: 1,
            ..Limits::DEFAULT
        },
        concurrency: flavour.concurrency,
        data_dir: Some(Box::leak(
            dir.path().to_str().unwrap().to_string().into_boxed_str(),
        )),
        ..App::new("blobstore-test", Code::Wasm(component(&flavour)))
    }));
    let kernel = Kernel::new(app, Cli::default()).unwrap();
    let ctx = crate::embedded::connect(&kernel.backend_config("blobstore", "embedded", &[]))
        .await
        .unwrap();
    let mut linker = kernel.linker::<State>().unwrap();
    (flavour.link)(&mut linker).unwrap();
    let pre = kernel.instantiate_pre(&linker).unwrap();
    let mut store = kernel.store(State {
        kernel: kernel.ctx(),
        ctx: ctx.clone(),
    });
    let instance = pre.instantiate_async(&mut store).await.unwrap();
    let run = instance
        .get_typed_func::<(), (u32,)>(&mut store, "run")
        .unwrap();
    // With concurrency on, this runs an async-lifted export to its result.
    let result = run.call_async(&mut store, ()).await;
    assert_eq!(result.unwrap(), (0,));
    let info = ctx
        .backend()
        .object_info("c", "obj")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.size, 15);
}

#[cfg(feature = "sync")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flavour() {
    a_guest_writes_and_reads_through_the_kernels_wasi_io(Flavour {
        io: "0.2.1",
        blobstore: "deps/blobstore-0.2.0-draft",
        concurrency: false,
        run: SYNC_RUN,
        link: crate::draft::add_to_linker,
    })
    .await;
}

#[cfg(feature = "async")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flavour() {
    a_guest_writes_and_reads_through_the_kernels_wasi_io(Flavour {
        io: "0.2.2",
        blobstore: "flavours/blobstore-0.2.0-draft.qwasr-async",
        concurrency: true,
        run: ASYNC_RUN,
        link: crate::draft_async::add_to_linker,
    })
    .await;
}

/// A runtime links one flavour of a name@version.
#[cfg(all(feature = "sync", feature = "async"))]
#[test]
fn both_flavours_are_refused_together() {
    let limits = Limits {
        instances: 1,
        ..Limits::DEFAULT
    };
    let engine =
        qwasr_kernel::wasmtime::Engine::new(&qwasr_kernel::engine_config(&limits, true)).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    assert_eq!(
        crate::add_to_linker(&mut linker).unwrap_err().to_string(),
        "qwasr-wasi-blobstore is built with both the `sync` and the `async` feature, two \
         flavours of wasi:blobstore@0.2.0-draft that cannot be linked together; enable \
         only the one the component imports"
    );
}
