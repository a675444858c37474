//! The embedded default: SQLite, one database file per connection name under
//! `<data dir>/sql`.
//!
//! # Durability and concurrency
//!
//! Databases run in WAL mode with `synchronous=FULL`: an `exec` that commits
//! (every statement outside an explicit transaction, or the `COMMIT`)
//! returns after its commit is fsynced. Writers from parallel requests wait
//! for each other (`busy_timeout`, the app's `[limits] timeout`) instead of
//! failing with "database is locked". `foreign_keys` is on, as in
//! PostgreSQL.
//!
//! Statements run on tokio's blocking threads, never on the async workers,
//! so a slow query holds up nobody else. A statement still running after the
//! request timeout, or whose request has gone away, is interrupted.
//!
//! Each guest `connection` takes a SQLite connection from its database's
//! pool (opening one only when none is idle) and keeps it until the guest
//! drops it, so `exec("BEGIN")` … `exec("COMMIT")` is one transaction; one
//! left open is rolled back when the connection goes back to the pool. Up to
//! [`MAX_IDLE`] idle connections are kept per database and
//! [`MAX_IDLE_TOTAL`] across all of them. Settings a guest changes with
//! `PRAGMA` stay with the pooled connection.
//!
//! `ATTACH` (and `VACUUM INTO`) of files is refused: a guest reaches only the
//! databases it opens by name.
//!
//! # Names
//!
//! Any string names a database; it maps to a file name that cannot leave the
//! directory and that no other name shares: `[a-z0-9_-]` stay as they are,
//! every other byte becomes `%xx` (`orders` → `n-orders.db`, `../x` →
//! `n-%2e%2e%2fx.db`), and names whose encoding passes 200 bytes are stored
//! under their SHA-256 (`h-<hex>.db`).
//!
//! # Parameters
//!
//! `$1`, `$2`, … are rewritten to SQLite's `?1`, `?2`, … outside string
//! literals, quoted identifiers and comments, so they bind by number as in
//! PostgreSQL; `?` and `?NNN` work as SQLite defines them. The number of
//! values must equal the statement's parameter count (the highest number
//! used).
//!
//! # Types
//!
//! Parameters are stored as:
//!
//! | value | SQLite |
//! |---|---|
//! | NULL | NULL |
//! | int32, int64, uint32 | INTEGER |
//! | uint64 | INTEGER; above `i64::MAX` an error, never wrapped |
//! | float, double | REAL |
//! | boolean | INTEGER 0 or 1 |
//! | str, date, time, timestamp | TEXT (dates and times as ISO 8601 text, not checked) |
//! | binary | BLOB |
//!
//! Results are typed by the column's declared type (case-insensitive; a
//! size like `(20)` is ignored), checked in this order:
//!
//! | declared type | value |
//! |---|---|
//! | `BOOLEAN`, `BOOL` | boolean (INTEGER ≠ 0; TEXT `t`/`true`/`f`/`false`/…) |
//! | `DATE` | date |
//! | `TIME`, `TIMETZ`, `TIME WITH[OUT] TIME ZONE` | time |
//! | `TIMESTAMP`, `TIMESTAMPTZ`, `DATETIME`, `TIMESTAMP WITH[OUT] TIME ZONE` | timestamp |
//! | `INT2`, `INT4`, `SMALLINT`, `TINYINT`, `MEDIUMINT` | int32 |
//! | `FLOAT4` | float |
//! | containing `UNSIGNED`: with `BIG` or `INT8` | uint64 |
//! | containing `UNSIGNED`: otherwise | uint32 |
//! | containing `INT` (`INTEGER`, `INT`, `BIGINT`, `INT8`) | int64 |
//! | containing `CHAR`, `CLOB` or `TEXT` (`VARCHAR(20)`) | str |
//! | containing `BLOB` | binary |
//! | containing `REAL`, `FLOA` or `DOUB` | double |
//!
//! A column without a declared type (an expression, `NUMERIC`, `DECIMAL`),
//! or a stored value that does not fit the declared one (text in an
//! `INTEGER` column, a negative number in an unsigned one, a date stored as
//! a number), is typed by its storage class: INTEGER → int64, REAL → double,
//! TEXT → str (bytes that are not UTF-8 → binary), BLOB → binary. NULL is
//! `null` in the proposal's flavour and, in Qwasr's, `none` in the case of
//! the column's declared type (`str(none)` without one).
//!
//! `exec` returns the rows the statement inserted, updated or deleted (0 for
//! others). Without parameters it also takes several statements separated by
//! `;` (a migration) and returns the rows they changed together.
//!
//! A query result is held in memory before the guest gets it; one larger
//! than the app's `[limits] memory` is an error.

mod convert;
mod names;
mod params;

use crate::text::{count, shown};
use crate::{Backend, BoxFuture, Column, Ctx, Rows, Session, Value};
use anyhow::{Context, Result, bail};
use qwasr_kernel::{BackendConfig, lock};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{InterruptHandle, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Idle SQLite connections kept per database.
pub const MAX_IDLE: usize = 16;
/// Idle SQLite connections kept across all databases (each holds three
/// file descriptors: the database, its WAL and its shared memory).
pub const MAX_IDLE_TOTAL: usize = 128;

/// Longest busy wait and statement run time SQLite's API takes.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Opens the SQLite backend on `<data dir>/sql`; it takes no options. The
/// app's `[limits]` bound each statement: `timeout` its run time (and
/// waiting for a writer), `memory` the size of a query's result.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    if let Some((k, _)) = cfg.options.first() {
        bail!("the embedded sql backend takes no options, but `{k}` was given");
    }
    let dir = cfg.data_dir()?;
    let limits = &cfg.app.limits;
    let sqlite = Sqlite::new(dir)
        .with_timeout(limits.timeout)
        .with_max_result_bytes(usize::try_from(limits.memory).unwrap_or(usize::MAX));
    Ok(Ctx::new(sqlite, cfg))
}

/// SQLite databases in one directory, one file per name, each with a pool
/// of connections.
pub struct Sqlite {
    dir: PathBuf,
    settings: Settings,
    /// Idle connections across every pool.
    idle_total: Arc<AtomicUsize>,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    timeout: Duration,
    max_result_bytes: usize,
}

impl Sqlite {
    /// Databases in `dir` (which must exist), with a 30 s statement timeout
    /// and results of at most 128 MiB.
    pub fn new(dir: impl Into<PathBuf>) -> Sqlite {
        Sqlite {
            dir: dir.into(),
            settings: Settings {
                timeout: Duration::from_secs(30),
                max_result_bytes: 128 << 20,
            },
            idle_total: Arc::new(AtomicUsize::new(0)),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// How long a statement may run, and wait for another writer, before it
    /// fails.
    pub fn with_timeout(mut self, timeout: Duration) -> Sqlite {
        self.settings.timeout = timeout.clamp(Duration::from_millis(1), MAX_TIMEOUT);
        self
    }

    /// The largest query result, in bytes, held for a guest.
    pub fn with_max_result_bytes(mut self, bytes: usize) -> Sqlite {
        self.settings.max_result_bytes = bytes;
        self
    }

    /// The file holding database `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(names::file_name(name))
    }

    fn pool(&self, name: &str) -> Arc<Pool> {
        lock(&self.pools)
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Pool {
                    name: shown(name),
                    path: self.path(name),
                    settings: self.settings,
                    idle_total: self.idle_total.clone(),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }
}

impl Backend for Sqlite {
    fn open<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Arc<dyn Session>> {
        Box::pin(async move {
            let pool = self.pool(name);
            let conn = match pool.take_idle() {
                Some(conn) => conn,
                // Opening touches the disk: off the async threads.
                None => {
                    let p = pool.clone();
                    tokio::task::spawn_blocking(move || p.connect())
                        .await
                        .context("the database thread failed")??
                }
            };
            let session: Arc<dyn Session> = Arc::new(SqliteSession {
                lease: Arc::new(Lease {
                    pool,
                    conn: Mutex::new(Some(conn)),
                }),
            });
            Ok(session)
        })
    }
}

/// The connections of one database file.
struct Pool {
    /// The database's name, shortened for messages.
    name: String,
    path: PathBuf,
    settings: Settings,
    idle_total: Arc<AtomicUsize>,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Pool {
    fn take_idle(&self) -> Option<rusqlite::Connection> {
        let conn = lock(&self.idle).pop()?;
        self.idle_total.fetch_sub(1, Ordering::Relaxed);
        Some(conn)
    }

    /// A new connection, set up for durability and waiting on writers. Blocking.
    fn connect(&self) -> Result<rusqlite::Connection> {
        open(&self.path, self.settings.timeout)
            .with_context(|| format!("opening database `{}`", self.name))
    }

    /// Takes back a connection a session is done with. Blocking if it was
    /// left inside a transaction (rolled back) or there is no room for it
    /// (closed).
    fn give_back(&self, conn: rusqlite::Connection) {
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return close(conn);
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            if self.idle_total.fetch_add(1, Ordering::Relaxed) < MAX_IDLE_TOTAL {
                idle.push(conn);
                return;
            }
            self.idle_total.fetch_sub(1, Ordering::Relaxed);
        }
        drop(idle);
        close(conn);
    }
}

/// Closes a connection off the async threads when there are any: closing the
/// last connection of a database checkpoints its WAL.
fn close(conn: rusqlite::Connection) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(conn))),
        Err(_) => drop(conn),
    }
}

/// Opens `path` in WAL mode with `synchronous=FULL`, `busy_timeout`,
/// foreign keys on and `ATTACH` of files refused.
fn open(path: &Path, timeout: Duration) -> Result<rusqlite::Connection> {
    // No URI names, no shared cache: the path is only ever a file.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = rusqlite::Connection::open_with_flags(path, flags).map_err(plain)?;
    conn.busy_timeout(timeout.min(MAX_TIMEOUT)).map_err(plain)?;
    conn.authorizer(Some(authorize)).map_err(plain)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(plain)?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("the database cannot use WAL mode (journal mode is `{mode}`)");
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(plain)?;
    Ok(conn)
}

/// Refuses `ATTACH` of any file (and so `VACUUM INTO` one), which would reach
/// past the directory and the grants; a temporary database (`''`, which
/// plain `VACUUM` uses) is fine.
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { filename } if filename.is_empty() || filename == ":memory:" => {
            Authorization::Allow
        }
        AuthAction::Attach { .. } => Authorization::Deny,
        AuthAction::Unknown { code, .. } if code == rusqlite::ffi::SQLITE_ATTACH => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// A SQLite connection held for one guest connection; back to the pool when
/// the session and any statement still running on it are done.
struct Lease {
    pool: Arc<Pool>,
    conn: Mutex<Option<rusqlite::Connection>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(conn) = conn {
            self.pool.give_back(conn);
        }
    }
}

struct SqliteSession {
    lease: Arc<Lease>,
}

/// A statement's run, shared between its future and its blocking thread.
#[derive(Default)]
struct Run {
    /// The future was dropped (or timed out): do not start, or stop.
    cancelled: bool,
    /// Set while the statement runs.
    interrupt: Option<InterruptHandle>,
}

/// Interrupts the statement when its future goes away before it finished.
struct CancelOnDrop(Arc<Mutex<Run>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let mut run = lock(&self.0);
        run.cancelled = true;
        if let Some(handle) = run.interrupt.take() {
            handle.interrupt();
        }
    }
}

impl SqliteSession {
    /// Runs `f` on the session's connection on a blocking thread, within the
    /// statement timeout.
    async fn run<T: Send + 'static>(
        &self,
        sql: &str,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let lease = self.lease.clone();
        let state = Arc::new(Mutex::new(Run::default()));
        let guard = CancelOnDrop(state.clone());
        let task = tokio::task::spawn_blocking(move || {
            let mut slot = lock(&lease.conn);
            let conn = match &mut *slot {
                Some(conn) => conn,
                // A connection lost to a failed rollback or a panic: start afresh.
                empty => empty.insert(lease.pool.connect()?),
            };
            {
                let mut run = lock(&state);
                if run.cancelled {
                    bail!("cancelled before it started");
                }
                run.interrupt = Some(conn.get_interrupt_handle());
            }
            let result = f(&*conn);
            lock(&state).interrupt = None;
            result
        });
        let timeout = self.lease.pool.settings.timeout;
        let joined = tokio::time::timeout(timeout, task).await;
        // Dropping the guard interrupts the statement if it is still running
        // (timed out); a finished one has already withdrawn its handle.
        drop(guard);
        match joined {
            Ok(joined) => joined.context("the database thread failed")?,
            Err(_) => bail!(
                "`{}` did not finish within {timeout:?} ([limits] timeout) and was interrupted",
                shown(sql)
            ),
        }
    }
}

impl Session for SqliteSession {
    fn query<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFuture<'a, Rows> {
        let max_bytes = self.lease.pool.settings.max_result_bytes;
        let (owned_sql, params) = (sql.to_string(), params.to_vec());
        Box::pin(self.run(sql, move |conn| query(conn, &owned_sql, &params, max_bytes)))
    }

    fn exec<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFuture<'a, u64> {
        let (owned_sql, params) = (sql.to_string(), params.to_vec());
        Box::pin(self.run(sql, move |conn| exec(conn, &owned_sql, &params)))
    }
}

/// Prepares `sql` (with `$N` as `?N`) and binds `params`. Blocking.
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    params: &[Value],
    what: &str,
) -> Result<rusqlite::CachedStatement<'c>> {
    let rewritten = params::positional(sql);
    let mut stmt = match conn.prepare_cached(&rewritten) {
        Err(rusqlite::Error::MultipleStatement) => bail!(
            "preparing `{}`: {what} takes a single statement, but more than one was given",
            shown(sql)
        ),
        r => r
            .map_err(plain)
            .with_context(|| format!("preparing `{}`", shown(sql)))?,
    };
    let n = stmt.parameter_count();
    if n != params.len() {
        bail!(
            "`{}` takes {} but {} given",
            shown(sql),
            count(n, "parameter"),
            match params.len() {
                1 => "1 was".to_string(),
                m => format!("{m} were"),
            }
        );
    }
    for (i, v) in params.iter().enumerate() {
        let bound =
            convert::to_sql(v).and_then(|v| stmt.raw_bind_parameter(i + 1, v).map_err(plain));
        bound.with_context(|| format!("binding parameter ${} of `{}`", i + 1, shown(sql)))?;
    }
    Ok(stmt)
}

/// Runs a query and reads its rows. Blocking.
fn query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[Value],
    max_bytes: usize,
) -> Result<Rows> {
    let mut stmt = prepare(conn, sql, params, "a query")?;
    let columns: Vec<Column> = stmt
        .columns()
        .map(|c| Column {
            name: c.name().to_string(),
            kind: c.decl_type().and_then(convert::declared),
        })
        .collect();
    let running = || format!("running `{}`", shown(sql));
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(plain).with_context(running)? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            let v = convert::from_sql(row.get_ref(i).map_err(plain).with_context(running)?, c.kind);
            bytes = bytes.saturating_add(convert::size(&v));
            values.push(v);
        }
        if bytes > max_bytes {
            bail!(
                "the result of `{}` is larger than {max_bytes} bytes ([limits] memory); \
                 select fewer rows or columns",
                shown(sql)
            );
        }
        out.push(values);
    }
    Ok(Rows { columns, rows: out })
}

/// Runs a statement and counts the rows it changed. Blocking.
fn exec(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<u64> {
    if params.is_empty() && is_batch(conn, sql) {
        let before = conn.total_changes();
        conn.execute_batch(sql)
            .map_err(plain)
            .with_context(|| format!("running `{}`", shown(sql)))?;
        return Ok(conn.total_changes().saturating_sub(before));
    }
    let mut stmt = prepare(conn, sql, params, "exec with parameters")?;
    let before = conn.total_changes();
    let mut rows = stmt.raw_query();
    // Stepping through every row also runs `INSERT … RETURNING` to its end.
    while rows
        .next()
        .map_err(plain)
        .with_context(|| format!("running `{}`", shown(sql)))?
        .is_some()
    {}
    drop(rows);
    // `changes()` keeps the count of the last INSERT/UPDATE/DELETE, so only
    // trust it if this statement changed something.
    Ok(if conn.total_changes() == before {
        0
    } else {
        conn.changes()
    })
}

/// Whether `sql` holds more than one statement.
fn is_batch(conn: &rusqlite::Connection, sql: &str) -> bool {
    matches!(
        conn.prepare_cached(&params::positional(sql)),
        Err(rusqlite::Error::MultipleStatement)
    )
}

/// SQLite's message alone (rusqlite's error would add its numeric code as a
/// cause, which `{:#}` prints).
fn plain(e: rusqlite::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Runs ~1 s on this machine's SQLite (a recursive CTE of `n` steps).
    const SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) \
                        SELECT count(*) FROM c";

    async fn session(db: &Sqlite, name: &str) -> Arc<dyn Session> {
        db.open(name).await.unwrap()
    }

    async fn values(s: &dyn Session, sql: &str, params: &[Value]) -> Vec<Vec<Value>> {
        s.query(sql, params).await.unwrap().rows
    }

    async fn err(r: BoxFuture<'_, impl std::fmt::Debug>) -> String {
        format!("{:#}", r.await.unwrap_err())
    }

    fn int(i: i64) -> Value {
        Value::Int64(i)
    }

    fn text(s: &str) -> Value {
        Value::Str(s.into())
    }

    #[tokio::test]
    async fn dollar_parameters_bind_by_number_like_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path());
        let s = session(&db, "p").await;
        let s = s.as_ref();
        assert_eq!(
            values(s, "SELECT $2, $1, $2", &[int(1), text("a")]).await,
            [[text("a"), int(1), text("a")]]
        );
        assert_eq!(
            values(s, "SELECT ?, ?", &[int(1), int(2)]).await,
            [[int(1), int(2)]]
        );
        assert_eq!(
            values(s, "SELECT ?2, ?1", &[int(1), int(2)]).await,
            [[int(2), int(1)]]
        );
        assert_eq!(
            values(
                s,
                "SELECT 'it''s $1' AS \"col$1\", $1 -- $2\n /* $3 */",
                &[int(9)]
            )
            .await,
            [[text("it's $1"), int(9)]]
        );
        let rows = s.query("SELECT $1 AS \"col$1\"", &[int(1)]).await.unwrap();
        assert_eq!(rows.columns[0].name, "col$1");

        assert_eq!(
            err(s.query("SELECT $1, $2", &[int(1)])).await,
            "`SELECT $1, $2` takes 2 parameters but 1 was given"
        );
        assert_eq!(
            err(s.query("SELECT 1", &[int(1), int(2)])).await,
            "`SELECT 1` takes 0 parameters but 2 were given"
        );
        assert_eq!(
            err(s.query("SELECT $1", &[])).await,
            "`SELECT $1` takes 1 parameter but 0 were given"
        );
    }

    #[tokio::test]
    async fn database_errors_keep_the_database_message() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path());
        let s = session(&db, "e").await;
        let s = s.as_ref();
        let e = err(s.exec("SELEC 1", &[])).await;
        assert!(
            e.starts_with("preparing `SELEC 1`: near \"SELEC\": syntax error"),
            "{e}"
        );
        assert!(
            err(s.query("SELECT * FROM nope", &[]))
                .await
                .starts_with("preparing `SELECT * FROM nope`: no such table: nope"),
        );
        s.exec(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY);
             CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (name <> ''),
                            p INTEGER REFERENCES parent(id))",
            &[],
        )
        .await
        .unwrap();
        s.exec("PRAGMA foreign_keys=ON", &[]).await.unwrap();
        let insert = "INSERT INTO t VALUES ($1, $2, $3)";
        s.exec(insert, &[int(1), text("a"), Value::Null])
            .await
            .unwrap();
        let cases = [
            (
                vec![int(1), text("b"), Value::Null],
                "UNIQUE constraint failed: t.id",
            ),
            (
                vec![int(2), Value::Null, Value::Null],
                "NOT NULL constraint failed: t.name",
            ),
            (
                vec![int(2), text(""), Value::Null],
                "CHECK constraint failed: name <> ''",
            ),
            (
                vec![int(2), text("b"), int(7)],
                "FOREIGN KEY constraint failed",
            ),
        ];
        for (params, message) in cases {
            assert_eq!(
                err(s.exec(insert, &params)).await,
                format!("running `{insert}`: {message}")
            );
        }
        assert_eq!(
            err(s.query("SELECT 1; SELECT 2", &[])).await,
            "preparing `SELECT 1; SELECT 2`: a query takes a single statement, but more than one was given"
        );
        // The session is still usable after every error.
        assert_eq!(values(s, "SELECT count(*) FROM t", &[]).await, [[int(1)]]);
    }

    #[tokio::test]
    async fn exec_counts_changed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path());
        let s = session(&db, "n").await;
        let s = s.as_ref();
        assert_eq!(s.exec("CREATE TABLE t(x INTEGER)", &[]).await.unwrap(), 0);
        let three = "INSERT INTO t VALUES ($1), ($2), ($3)";
        assert_eq!(s.exec(three, &[int(1), int(2), int(3)]).await.unwrap(), 3);
        assert_eq!(
            s.exec("UPDATE t SET x = x + 10 WHERE x > $1", &[int(1)])
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            s.exec("UPDATE t SET x = 0 WHERE x > 100", &[])
                .await
                .unwrap(),
            0
        );
        assert_eq!(s.exec("SELECT * FROM t", &[]).await.unwrap(), 0);
        assert_eq!(
            s.exec("INSERT INTO t VALUES (4) RETURNING x", &[])
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.exec("DELETE FROM t WHERE x = $1", &[int(1)])
                .await
                .unwrap(),
            1
        );
        // Several statements without parameters: the rows they changed together.
        assert_eq!(
            s.exec(
                "DELETE FROM t WHERE x = 4; INSERT INTO t VALUES (5); CREATE INDEX i ON t(x)",
                &[]
            )
            .await
            .unwrap(),
            2
        );
        assert_eq!(
            err(s.exec("INSERT INTO t VALUES ($1); SELECT 1", &[int(1)])).await,
            "preparing `INSERT INTO t VALUES ($1); SELECT 1`: exec with parameters takes a single \
             statement, but more than one was given"
        );
        let rows = s.query("SELECT x FROM t ORDER BY x", &[]).await.unwrap();
        assert_eq!(rows.rows, [[int(5)], [int(12)], [int(13)]]);
        assert_eq!(rows.named().next().unwrap(), [("x", &int(5))]);
    }

    #[tokio::test]
    async fn a_slow_query_does_not_hold_up_another_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Sqlite::new(dir.path()));
        let slow = session(&db, "slow").await;
        let quick = session(&db, "quick").await;
        let started = Instant::now();
        // This test runs on a single-threaded runtime: a query run on it
        // would stop everything else until it finished.
        let slow_task = tokio::spawn(async move {
            let r = slow.query(SLOW, &[int(7_000_000)]).await;
            (r, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(values(quick.as_ref(), "SELECT 1", &[]).await, [[int(1)]]);
        let quick_done = started.elapsed();
        assert!(
            !slow_task.is_finished(),
            "the slow query finished in {quick_done:?}"
        );
        let (rows, slow_done) = slow_task.await.unwrap();
        assert_eq!(rows.unwrap().rows, [[int(7_000_000)]]);
        assert!(quick_done < slow_done, "{quick_done:?} vs {slow_done:?}");
        eprintln!("quick query after {quick_done:?}, slow one after {slow_done:?}");
    }

    #[tokio::test]
    async fn statements_past_the_timeout_or_abandoned_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path()).with_timeout(Duration::from_millis(200));
        let s = session(&db, "t").await;
        let started = Instant::now();
        let endless = [int(i64::MAX)];
        assert_eq!(
            err(s.query(SLOW, &endless)).await,
            format!("`{SLOW}` did not finish within 200ms ([limits] timeout) and was interrupted")
        );
        // The interrupted connection is free again at once.
        assert_eq!(values(s.as_ref(), "SELECT 2", &[]).await, [[int(2)]]);
        assert!(started.elapsed() < Duration::from_secs(5));

        let db = Sqlite::new(dir.path());
        let s = session(&db, "t").await;
        let started = Instant::now();
        let abandoned = tokio::time::timeout(Duration::from_millis(100), s.query(SLOW, &endless));
        assert!(abandoned.await.is_err());
        assert_eq!(values(s.as_ref(), "SELECT 3", &[]).await, [[int(3)]]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn committed_rows_survive_the_backend_and_settings_hold() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Sqlite::new(dir.path());
            let s = session(&db, "keep").await;
            s.exec("CREATE TABLE t(x TEXT)", &[]).await.unwrap();
            s.exec("INSERT INTO t VALUES ($1)", &[text("kept")])
                .await
                .unwrap();
            assert_eq!(
                values(s.as_ref(), "PRAGMA journal_mode", &[]).await,
                [[text("wal")]]
            );
            // 2 = FULL.
            assert_eq!(
                values(s.as_ref(), "PRAGMA synchronous", &[]).await,
                [[int(2)]]
            );
            assert_eq!(
                values(s.as_ref(), "PRAGMA foreign_keys", &[]).await,
                [[int(1)]]
            );
            assert_eq!(
                values(s.as_ref(), "PRAGMA busy_timeout", &[]).await,
                [[int(30_000)]]
            );
        }
        let db = Sqlite::new(dir.path());
        let s = session(&db, "keep").await;
        assert_eq!(
            values(s.as_ref(), "SELECT x FROM t", &[]).await,
            [[text("kept")]]
        );
    }

    #[tokio::test]
    async fn a_transaction_spans_calls_and_is_rolled_back_if_left_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path());
        let s = session(&db, "tx").await;
        s.exec("CREATE TABLE t(x)", &[]).await.unwrap();
        s.exec("BEGIN", &[]).await.unwrap();
        s.exec("INSERT INTO t VALUES (1)", &[]).await.unwrap();
        assert_eq!(
            values(s.as_ref(), "SELECT count(*) FROM t", &[]).await,
            [[int(1)]]
        );
        drop(s);
        // The same pooled connection comes back, outside any transaction.
        let s = session(&db, "tx").await;
        assert_eq!(
            values(s.as_ref(), "SELECT count(*) FROM t", &[]).await,
            [[int(0)]]
        );
        s.exec("BEGIN", &[]).await.unwrap();
        s.exec("INSERT INTO t VALUES (2)", &[]).await.unwrap();
        s.exec("COMMIT", &[]).await.unwrap();
        assert_eq!(values(s.as_ref(), "SELECT x FROM t", &[]).await, [[int(2)]]);
    }

    #[tokio::test]
    async fn a_second_writer_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path());
        let a = session(&db, "w").await;
        let b = session(&db, "w").await;
        a.exec("CREATE TABLE t(x)", &[]).await.unwrap();
        a.exec("BEGIN IMMEDIATE", &[]).await.unwrap();
        a.exec("INSERT INTO t VALUES ('a')", &[]).await.unwrap();
        let waiting = tokio::spawn(async move { b.exec("INSERT INTO t VALUES ('b')", &[]).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        a.exec("COMMIT", &[]).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 1);
        assert_eq!(
            values(a.as_ref(), "SELECT x FROM t ORDER BY x", &[]).await,
            [[text("a")], [text("b")]]
        );
    }

    #[tokio::test]
    async fn every_name_gets_its_own_file_inside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sql");
        std::fs::create_dir(&dir).unwrap();
        let db = Sqlite::new(&dir);
        let long = "é".repeat(2048);
        let names = [
            "../x",
            "a/b",
            "a\0b",
            "",
            ".",
            "A",
            "a",
            long.as_str(),
            "/etc/passwd",
        ];
        for (i, name) in names.iter().enumerate() {
            let s = session(&db, name).await;
            s.exec("CREATE TABLE t(name TEXT, i INTEGER)", &[])
                .await
                .unwrap();
            s.exec(
                "INSERT INTO t VALUES ($1, $2)",
                &[text(name), int(i as i64)],
            )
            .await
            .unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            let s = session(&db, name).await;
            assert_eq!(
                values(s.as_ref(), "SELECT * FROM t", &[]).await,
                [[text(name), int(i as i64)]],
                "{name:?}"
            );
        }
        let files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".db"))
            .collect();
        assert_eq!(files.len(), names.len(), "{files:?}");
        let outside: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(outside.len(), 1, "only the sql directory: {outside:?}");
    }

    #[tokio::test]
    async fn attaching_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path());
        let s = session(&db, "a").await;
        session(&db, "b")
            .await
            .exec("CREATE TABLE secret(x)", &[])
            .await
            .unwrap();
        let b = db.path("b").display().to_string();
        let copy = dir.path().join("copy.db").display().to_string();
        for (sql, message) in [
            (
                format!("ATTACH '{b}' AS b"),
                "preparing `{}`: not authorized",
            ),
            (
                format!("ATTACH '{b}' || '' AS b"),
                "preparing `{}`: not authorized",
            ),
            (
                format!("VACUUM INTO '{copy}'"),
                "running `{}`: authorization denied",
            ),
        ] {
            let e = err(s.exec(&sql, &[])).await;
            assert_eq!(e, message.replace("{}", &sql));
        }
        assert!(!dir.path().join("copy.db").exists());
        s.exec("CREATE TABLE t(x)", &[]).await.unwrap();
        s.exec("VACUUM", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn results_larger_than_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::new(dir.path()).with_max_result_bytes(10_000);
        let s = session(&db, "big").await;
        let sql = "SELECT zeroblob(1000) FROM generate_series(1, 100)";
        let sql = if s.query(sql, &[]).await.is_err() {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) \
             SELECT zeroblob(1000) FROM c"
        } else {
            sql
        };
        assert_eq!(
            err(s.query(sql, &[])).await,
            format!(
                "the result of `{sql}` is larger than 10000 bytes ([limits] memory); \
                 select fewer rows or columns"
            )
        );
        assert_eq!(
            values(s.as_ref(), "SELECT zeroblob(10)", &[]).await.len(),
            1
        );
    }

    #[test]
    fn messages_show_sql_on_one_short_line() {
        assert_eq!(shown("SELECT\n1"), "SELECT 1");
        let long = "x".repeat(500);
        assert_eq!(shown(&long), format!("{}…", "x".repeat(200)));
        assert_eq!(shown(&"é".repeat(200)), "é".repeat(200));
    }
}
