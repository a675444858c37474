//! The data benchmarks' native baselines (`bench/run.py`, section `data`):
//! what the embedded backends do on disk, done directly by threads of a
//! native program, with the same durability. Prints one JSON object.
//!
//! ```text
//! native-data blob --size N --threads T --seconds S --dir D [--warmup W]
//! native-data sql --threads T --seconds S --dir D [--warmup W]
//! ```
//!
//! `blob`: each thread stores objects the way the embedded blobstore does
//! and reads each one back: write N bytes (64 KiB writes) to a temp file in
//! `D/tmp`, fsync it, rename it to `D/objects/o<thread>-<n>`, fsync
//! `D/objects`, then read the file (64 KiB reads). A write and a read count
//! as two operations, N bytes each.
//!
//! `sql`: each thread opens its own connection to `D/notes.db` (WAL,
//! `synchronous=FULL`, `busy_timeout` 30 s, as the embedded SQL backend
//! opens them) and inserts rows with unique titles into the notes example's
//! table with the statement the example uses.
//!
//! Threads start together and stop starting operations after S seconds;
//! rates divide the operations completed by the time until every thread
//! finished its last one. `--warmup W` first runs the same work for W
//! seconds, uncounted, in the same process: a server measured after a
//! warm-up has its files and connections in their steady state (SQLite's
//! WAL grown to its working size, which it deletes when its last connection
//! closes), and so do these threads.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The notes example's table (examples/notes/guest/src/lib.rs).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, \
    title TEXT NOT NULL UNIQUE, body TEXT, created TIMESTAMP DEFAULT CURRENT_TIMESTAMP)";
/// The notes example's insert (`POST /notes`).
const INSERT: &str = "INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING id";
/// The chunk size the blobstore backend moves objects in.
const CHUNK: usize = 64 * 1024;

struct Args {
    size: usize,
    threads: usize,
    seconds: f64,
    warmup: f64,
    dir: PathBuf,
}

fn main() {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let result = parse(argv).and_then(|args| match cmd.as_str() {
        "blob" => blob(&args),
        "sql" => sql(&args),
        _ => Err(format!("unknown subcommand `{cmd}`")),
    });
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!(
                "error: {e}\n\nusage: native-data blob --size N --threads T --seconds S --dir D [--warmup W]\n       native-data sql --threads T --seconds S --dir D [--warmup W]"
            );
            std::process::exit(2);
        }
    }
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        size: 1024,
        threads: 16,
        seconds: 8.0,
        warmup: 0.0,
        dir: PathBuf::new(),
    };
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or(format!("`{flag}` needs a value"))?;
        let bad = || format!("bad value `{value}` for `{flag}`");
        match flag.as_str() {
            "--size" => args.size = value.parse().map_err(|_| bad())?,
            "--threads" => args.threads = value.parse().map_err(|_| bad())?,
            "--seconds" => args.seconds = value.parse().map_err(|_| bad())?,
            "--warmup" => args.warmup = value.parse().map_err(|_| bad())?,
            "--dir" => args.dir = PathBuf::from(value),
            _ => return Err(format!("unknown flag `{flag}`")),
        }
    }
    if args.dir.as_os_str().is_empty() {
        return Err("`--dir` is required".into());
    }
    if args.threads == 0 {
        return Err("`--threads` must be at least 1".into());
    }
    Ok(args)
}

/// Runs `op(thread, n)` on `args.threads` threads for `args.warmup`
/// seconds, then again for `args.seconds`; returns (operations, seconds
/// until the last thread finished) of the second period.
fn measure(
    args: &Args,
    op: impl Fn(usize, u64) -> Result<(), String> + Send + Sync + 'static,
) -> Result<(u64, f64), String> {
    let op = Arc::new(op);
    if args.warmup > 0.0 {
        let op = op.clone();
        // n from 2^63 on: names the measured period never uses.
        run_threads(args.threads, args.warmup, move |t, n| op(t, (1 << 63) + n))?;
    }
    run_threads(args.threads, args.seconds, move |t, n| op(t, n))
}

/// Runs `op(thread, n)` on `threads` threads until `seconds` have passed;
/// returns (operations, seconds until the last thread finished).
fn run_threads(
    threads: usize,
    seconds: f64,
    op: impl Fn(usize, u64) -> Result<(), String> + Send + Sync + 'static,
) -> Result<(u64, f64), String> {
    let op = Arc::new(op);
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, start) = (op.clone(), start.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                start.wait();
                let deadline = Instant::now() + Duration::from_secs_f64(seconds);
                let mut n = 0;
                while Instant::now() < deadline {
                    op(t, n)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| "a thread panicked".to_string())??;
    }
    Ok((total, began.elapsed().as_secs_f64()))
}

fn blob(args: &Args) -> Result<String, String> {
    let tmp = args.dir.join("tmp");
    let objects = args.dir.join("objects");
    for d in [&tmp, &objects] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let data: Vec<u8> = (0..args.size).map(|i| (i % 251) as u8).collect();
    let size = args.size;
    // Names unique across runs on the same directory.
    let run = std::process::id();
    let (pairs, secs) = measure(args, move |t, n| {
        let name = format!("o{run}-{t}-{n}");
        store(&tmp, &objects, &name, &data).map_err(|e| format!("store {name}: {e}"))?;
        let read = load(&objects.join(&name)).map_err(|e| format!("read {name}: {e}"))?;
        if read != size {
            return Err(format!("read {read} bytes of {name}, wrote {size}"));
        }
        Ok(())
    })?;
    let ops = pairs * 2;
    let bytes = ops * args.size as u64;
    Ok(format!(
        "{{\"ops\": {ops}, \"bytes\": {bytes}, \"seconds\": {secs:.4}, \"ops_per_s\": {:.2}, \"mb_per_s\": {:.3}}}",
        ops as f64 / secs,
        bytes as f64 / 1e6 / secs
    ))
}

/// Temp file, fsync, rename into place, fsync the directory.
fn store(tmp: &Path, objects: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let staging = tmp.join(format!("w-{name}"));
    let mut f = File::create(&staging)?;
    for chunk in data.chunks(CHUNK) {
        f.write_all(chunk)?;
    }
    f.sync_all()?;
    drop(f);
    fs::rename(&staging, objects.join(name))?;
    File::open(objects)?.sync_all()
}

/// Reads a file back in chunks; returns its length.
fn load(path: &Path) -> std::io::Result<usize> {
    let mut f = File::open(path)?;
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

fn open_db(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert_eq!(mode, "wal", "the database cannot use WAL mode");
    conn.execute_batch("PRAGMA synchronous=FULL;")?;
    Ok(conn)
}

fn sql(args: &Args) -> Result<String, String> {
    fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let path = args.dir.join("notes.db");
    open_db(&path)
        .and_then(|c| c.execute_batch(SCHEMA))
        .map_err(|e| format!("cannot create the table: {e}"))?;
    // Each thread's connection, opened before the clock starts.
    let conns: Vec<_> = (0..args.threads)
        .map(|_| open_db(&path).map(std::sync::Mutex::new))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let run = std::process::id();
    let (inserts, secs) = measure(args, move |t, n| {
        // Only thread t locks conns[t]: the lock is never contended.
        let conn = conns[t].lock().unwrap();
        let title = format!("t{run}-{t}-{n}");
        conn.prepare_cached(INSERT)
            .and_then(|mut s| {
                s.query_row(rusqlite::params![title, "benchmark note"], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map(drop)
            .map_err(|e| format!("insert {title}: {e}"))
    })?;
    Ok(format!(
        "{{\"inserts\": {inserts}, \"seconds\": {secs:.4}, \"inserts_per_s\": {:.2}}}",
        inserts as f64 / secs
    ))
}
