//! `wasi:sql` on PostgreSQL: the `postgres` backend of qwasr-wasi-sql's
//! [`Backend`] trait.
//!
//! # Databases
//!
//! The guest opens a database by name; it is the PostgreSQL database
//! `<prefix><name>` on the server of `POSTGRES_URL` (the URL's own database
//! is replaced). Names that are not plain lower-case identifiers, or that
//! would pass PostgreSQL's 63 bytes, get a safe form (see the crate README):
//! `Orders` → `~%4frders`, a 4 KB name → `#<32 hex digits of its SHA-256>`.
//! A database that does not exist is created on first open with
//! `CREATE DATABASE`, run in the URL's own database; without the `CREATEDB`
//! privilege the error names the database to create by hand. `template0`
//! and `template1` are refused.
//!
//! # Connections
//!
//! Each database has its own pool of up to `pool-size` connections, made
//! when first needed. A guest connection holds one pooled connection for its
//! whole life, so `exec("BEGIN")` … `exec("COMMIT")` is one transaction;
//! when it is dropped, its connection runs `ROLLBACK` and resets the session
//! (`RESET ALL`, `DISCARD TEMP`, …) before going back to the pool, or is
//! closed if that fails, so the next guest never inherits a transaction or a
//! setting. Connections use `TimeZone=UTC` unless the URL's `options` set a
//! time zone.
//!
//! A connection the server closed (restart, failover) is replaced by a new
//! one on the next statement, unless a transaction was open on it: then the
//! server has rolled that transaction back, and the session's statements
//! fail until the guest runs `ROLLBACK` (a `COMMIT` fails saying nothing was
//! committed), as PostgreSQL itself does in an aborted transaction.
//!
//! Every statement is bounded by `timeout`: one still running then is
//! cancelled on the server (a cancel request, as `pg_cancel_backend`) and
//! fails with an error saying so; inside a transaction, that aborts the
//! transaction. A statement whose future is dropped is cancelled the same
//! way.
//!
//! # Parameters
//!
//! Statements use PostgreSQL's own `$1`, `$2`, …; the server infers each
//! parameter's type from the statement and values are converted to it:
//!
//! | value | parameter types it binds to |
//! |---|---|
//! | int32, int64, uint32, uint64 | int2, int4, int8, oid (range checked), float4, float8, numeric, text types, json(b) |
//! | float, double | float4 (range checked), float8, numeric, text types, json(b) |
//! | str | any type: sent as text, parsed by the server (`'42'` for int4, a UUID, JSON, an array literal) |
//! | boolean | bool, text types, json(b) |
//! | date, time, timestamp | date, time, timetz, timestamp, timestamptz, text types (parsed by the server) |
//! | binary | bytea |
//! | NULL | any type |
//!
//! Any other pair is an error naming the parameter and both types. A bare
//! `SELECT $1` has a `text` parameter in PostgreSQL, so its result is text;
//! write `$1::int8` to get a number back.
//!
//! # Results
//!
//! | PostgreSQL type | value |
//! |---|---|
//! | int2, int4 | int32 |
//! | int8 | int64 |
//! | oid | uint32 |
//! | float4 | float |
//! | float8 | double |
//! | numeric | str, its exact decimal text (`123.45`, `NaN`) |
//! | bool | boolean |
//! | text, varchar, char(n), name, citext, enums | str |
//! | date | date (`2024-05-17`) |
//! | time, timetz | time (`13:45:00.5`, `13:45:00+02:00`) |
//! | timestamp | timestamp (`2024-05-17T13:45:00`) |
//! | timestamptz | timestamp in UTC (`2024-05-17T13:45:00Z`) |
//! | bytea | binary |
//! | uuid, json, jsonb | str |
//! | anything else (interval, arrays, money, inet, ranges, …) | str: the server's text for it |
//!
//! Dates before year 1 end in ` BC` and infinite ones are `infinity` /
//! `-infinity`, as PostgreSQL writes them. A column of a domain reads as
//! the domain's base type. NULL is `none` in the column's kind.
//!
//! `exec` returns the rows inserted, updated, deleted or merged (0 for other
//! statements, including a `SELECT`). Without parameters it also takes
//! several statements separated by `;` (a migration), run in one implicit
//! transaction unless they hold their own `BEGIN`/`COMMIT`, and returns the
//! rows they changed together.
//!
//! A query's result is held in memory before the guest gets it; one larger
//! than the app's `[limits] memory` is an error. `COPY … FROM STDIN` and
//! `TO STDOUT` are refused: the interface has no stream for their data.
//!
//! # TLS
//!
//! `sslmode` as libpq reads it: `prefer` (the default) encrypts when the
//! server offers TLS, `require` insists, `disable` never encrypts; the
//! server's certificate is not verified (`verify-ca` and `verify-full` are
//! refused).

mod convert;
mod lex;
mod names;
#[cfg(test)]
mod tests;
mod tls;

use anyhow::{Context, Result, anyhow, bail};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use futures_util::{StreamExt, TryStreamExt};
use qwasr_kernel::service::{Service, Settings};
use qwasr_kernel::{BackendConfig, lock};
use qwasr_wasi_sql::text::{count, shown};
use qwasr_wasi_sql::{Backend, BoxFuture, Column, Ctx, Rows, Session, Value};
use std::collections::HashMap;
use std::error::Error as _;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::error::{DbError, ErrorPosition, SqlState};
use tokio_postgres::{CancelToken, Client, Config, SimpleQueryMessage};

/// PostgreSQL as the kernel's service settings know it (`POSTGRES_URL`, …).
const SERVICE: Service = Service {
    name: "PostgreSQL",
    prefix: "POSTGRES",
    default_url: "postgres://postgres@127.0.0.1:5432/postgres",
};

/// The manifest keys this backend accepts.
const OPTIONS: &[&str] = &["url", "pool-size", "timeout", "retries", "prefix"];

/// Run on a connection before it goes back to the pool: ends a transaction
/// the guest left open and resets what it changed in the session (what
/// `DISCARD ALL` does, but keeping the client's own prepared statements).
const RESET: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
                     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// Opens the PostgreSQL backend: reads its settings (`POSTGRES_*` over the
/// manifest's options) and checks, with retries, that the server at the
/// URL answers. The app's `[limits] memory` bounds a query's result.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    let pg = Postgres::connect(cfg).await?;
    Ok(Ctx::new(pg, cfg))
}

impl Postgres {
    /// What [`connect`] does, short of the context.
    async fn connect(cfg: &BackendConfig) -> Result<Postgres> {
        if let Some((k, _)) = cfg
            .options
            .iter()
            .find(|(k, _)| !OPTIONS.contains(&k.as_str()))
        {
            bail!(
                "the postgres sql backend takes the options `{}`, but `{k}` was given",
                OPTIONS.join("`, `")
            );
        }
        let settings = Settings::new(cfg, SERVICE)?;
        let prefix = cfg.get("prefix", "POSTGRES_PREFIX")?.unwrap_or_default();
        let max_result_bytes = usize::try_from(cfg.app.limits.memory).unwrap_or(usize::MAX);
        let pg = Postgres::new(settings, &prefix, max_result_bytes)?;
        let version = pg
            .shared
            .settings
            .connect(|| async {
                let client = pg.shared.admin().await?;
                let row = client.query_one("SHOW server_version", &[]).await?;
                Ok(row.try_get::<_, String>(0)?)
            })
            .await?;
        tracing::info!(
            "wasi:sql on PostgreSQL {version} at {}, databases named `{prefix}<name>`",
            pg.shared.settings.shown_url()
        );
        Ok(pg)
    }
}

/// PostgreSQL databases on one server, one pool of connections each.
pub(crate) struct Postgres {
    shared: Arc<Shared>,
    databases: Mutex<HashMap<String, Arc<Database>>>,
}

/// What every database and session of a [`Postgres`] reads.
struct Shared {
    settings: Settings,
    /// The URL's configuration, with the backend's additions.
    base: Config,
    tls: tls::Tls,
    prefix: String,
    max_result_bytes: usize,
}

impl Postgres {
    /// A backend on the server of `settings.url`, naming databases
    /// `<prefix><name>`. Connects to nothing yet.
    pub(crate) fn new(
        settings: Settings,
        prefix: &str,
        max_result_bytes: usize,
    ) -> Result<Postgres> {
        if prefix.len() > names::MAX_PREFIX || prefix.contains('\0') {
            bail!(
                "the postgres prefix `{}` must be at most {} bytes, without NUL",
                prefix.escape_debug(),
                names::MAX_PREFIX
            );
        }
        if settings.url.contains("sslmode=verify-") {
            bail!(
                "{}_URL `{}` asks for sslmode=verify-ca or verify-full, which this backend does \
                 not offer: it encrypts with sslmode=prefer (the default) or require, without \
                 checking the server's certificate",
                SERVICE.prefix,
                settings.shown_url()
            );
        }
        let mut base: Config = settings.url.parse().map_err(|e| {
            anyhow!(
                "{}_URL (or `url` in [backends]) `{}` is not a PostgreSQL URL: {}",
                SERVICE.prefix,
                settings.shown_url(),
                settings.redact_text(&pg_text(&e))
            )
        })?;
        let tls = tls::Tls::new().context("setting up TLS")?;
        base.connect_timeout(settings.timeout);
        if base.get_application_name().is_none() {
            base.application_name("qwasr");
        }
        // Timestamps without a zone are read, and `timestamptz` shown by the
        // server, in UTC rather than in the server's local time.
        let options = base.get_options().unwrap_or_default().to_string();
        if !options.to_ascii_lowercase().contains("timezone") {
            base.options(format!("{options} -c TimeZone=UTC").trim_start());
        }
        Ok(Postgres {
            shared: Arc::new(Shared {
                settings,
                base,
                tls,
                prefix: prefix.to_string(),
                max_result_bytes,
            }),
            databases: Mutex::new(HashMap::new()),
        })
    }

    /// The PostgreSQL database guest database `name` is kept in.
    pub(crate) fn database_name(&self, name: &str) -> String {
        names::database(&self.shared.prefix, name)
    }

    /// Database `name`, with its pool.
    fn database(&self, name: &str) -> Result<Arc<Database>> {
        let db = self.database_name(name);
        if db == "template0" || db == "template1" {
            bail!(
                "database `{db}` is one of PostgreSQL's templates and cannot be opened; \
                 use another name (or set {}_PREFIX)",
                SERVICE.prefix
            );
        }
        let mut databases = lock(&self.databases);
        if let Some(d) = databases.get(&db) {
            return Ok(d.clone());
        }
        let settings = &self.shared.settings;
        let mut config = self.shared.base.clone();
        config.dbname(&db);
        let manager = Manager::from_config(
            config,
            self.shared.tls.clone(),
            // Only drop closed connections here: sessions check theirs when
            // they give them back (`RESET`).
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .context("building a PostgreSQL connection pool")?;
        let d = Arc::new(Database {
            name: shown(name),
            db: db.clone(),
            pool,
            creating: tokio::sync::Mutex::new(()),
            shared: self.shared.clone(),
        });
        databases.insert(db, d.clone());
        Ok(d)
    }
}

impl Backend for Postgres {
    fn open<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Arc<dyn Session>> {
        Box::pin(async move {
            let db = self.database(name)?;
            let conn = db.get(Instant::now() + db.shared.settings.timeout).await?;
            let session: Arc<dyn Session> = Arc::new(PgSession {
                db,
                state: tokio::sync::Mutex::new(State {
                    conn: Some(conn),
                    tx: Tx::Idle,
                }),
                cancelling: Arc::new(Mutex::new(None)),
            });
            Ok(session)
        })
    }
}

impl Shared {
    /// A connection to the URL's own database, for what is done outside
    /// the guests' databases (checking the server, `CREATE DATABASE`).
    async fn admin(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.base.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// An error of the server or the connection, as the guest sees it:
    /// PostgreSQL's own message for what the server refused; for anything
    /// else, with the service's name and URL (redacted).
    fn fail(&self, what: &str, e: &tokio_postgres::Error) -> anyhow::Error {
        match e.as_db_error() {
            Some(db) => anyhow!("{what}: {}", db_text(db)),
            None => self.settings.error(what, pg_text(e)),
        }
    }
}

/// One database's pool.
struct Database {
    /// The guest's name for it, shortened for messages.
    name: String,
    /// PostgreSQL's name for it.
    db: String,
    pool: Pool,
    /// Held while creating the database, so one open creates it.
    creating: tokio::sync::Mutex<()>,
    shared: Arc<Shared>,
}

impl Database {
    /// A pooled connection by `deadline`, creating the database first if it
    /// is missing.
    async fn get(&self, deadline: Instant) -> Result<Object> {
        match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(r) => r,
            Err(_) => {
                let status = self.pool.status();
                Err(if status.available == 0 && status.size >= status.max_size {
                    self.exhausted()
                } else {
                    self.shared.settings.error(
                        &format!("opening database `{}`", self.name),
                        format!("no connection within {:?}", self.shared.settings.timeout),
                    )
                })
            }
        }
    }

    async fn connection(&self) -> Result<Object> {
        match self.pool.get().await {
            Ok(conn) => Ok(conn),
            Err(PoolError::Backend(e)) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
                self.create().await?;
                self.pool.get().await.map_err(|e| self.pool_error(e))
            }
            Err(e) => Err(self.pool_error(e)),
        }
    }

    fn pool_error(&self, e: PoolError) -> anyhow::Error {
        let settings = &self.shared.settings;
        let what = format!("opening database `{}`", self.name);
        match e {
            PoolError::Timeout(TimeoutType::Wait) => self.exhausted(),
            PoolError::Timeout(_) => settings.error(
                &what,
                format!("no connection within {:?}", settings.timeout),
            ),
            PoolError::Backend(e) => settings.error(&what, pg_text(&e)),
            e => settings.error(&what, e),
        }
    }

    fn exhausted(&self) -> anyhow::Error {
        let settings = &self.shared.settings;
        anyhow!(
            "opening database `{}`: all {} connections to PostgreSQL database `{}` are in use \
             by other guest connections (pool-size) and none was free within {:?}",
            self.name,
            settings.pool_size,
            self.db,
            settings.timeout
        )
    }

    /// `CREATE DATABASE`, through the URL's own database.
    async fn create(&self) -> Result<()> {
        let _one = self.creating.lock().await;
        let shared = &self.shared;
        let what = format!(
            "creating PostgreSQL database `{}` for database `{}`",
            self.db, self.name
        );
        let sql = format!("CREATE DATABASE {}", names::quoted(&self.db));
        let run = async {
            let client = shared.admin().await?;
            client.batch_execute(&sql).await
        };
        let result = tokio::time::timeout(shared.settings.timeout, run)
            .await
            .map_err(|_| {
                shared.settings.error(
                    &what,
                    format!("no answer within {:?}", shared.settings.timeout),
                )
            })?;
        match result {
            Ok(()) => {
                tracing::info!("created PostgreSQL database `{}`", self.db);
                Ok(())
            }
            // Created meanwhile by another process.
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                Ok(())
            }
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => bail!(
                "database `{}` is kept in PostgreSQL database `{}`, which does not exist, and \
                 user `{}` may not create it ({}); create it with `{sql}` (or grant CREATEDB)",
                self.name,
                self.db,
                shared.base.get_user().unwrap_or("?"),
                e.as_db_error().map(|d| d.message()).unwrap_or_default()
            ),
            Err(e) => Err(shared.fail(&what, &e)),
        }
    }
}

/// One guest connection: a pooled connection held until the guest drops it.
struct PgSession {
    db: Arc<Database>,
    /// Held for the whole of each statement: they run one after another.
    state: tokio::sync::Mutex<State>,
    /// The cancel request of a statement that timed out or was abandoned;
    /// the next statement waits for it to reach the server, so it cannot
    /// cancel that one instead.
    cancelling: Arc<Mutex<Option<JoinHandle<()>>>>,
}

struct State {
    /// `None` once the connection was lost; the next statement takes a new one.
    conn: Option<Object>,
    tx: Tx,
}

/// The session's transaction, as far as its statements tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    Idle,
    /// Begun, not yet ended.
    Open,
    /// Open when the connection was lost: the server rolled it back.
    Lost,
}

impl State {
    /// Drops a connection that is closed or no longer to be trusted.
    fn lose(&mut self) {
        drop(Discard(self.conn.take()));
        if self.tx == Tx::Open {
            self.tx = Tx::Lost;
        }
    }
}

/// What a statement is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Query,
    Exec,
}

enum Out {
    Rows(Rows),
    Count(u64),
}

impl Session for PgSession {
    fn query<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFuture<'a, Rows> {
        Box::pin(async move {
            match self.run(sql, params, Op::Query).await? {
                Out::Rows(rows) => Ok(rows),
                Out::Count(_) => Ok(Rows::default()),
            }
        })
    }

    fn exec<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFuture<'a, u64> {
        Box::pin(async move {
            match self.run(sql, params, Op::Exec).await? {
                Out::Count(n) => Ok(n),
                Out::Rows(_) => Ok(0),
            }
        })
    }
}

impl PgSession {
    /// Runs one call on the session's connection, within the timeout.
    async fn run(&self, sql: &str, params: &[Value], op: Op) -> Result<Out> {
        let shared = &self.db.shared;
        let timeout = shared.settings.timeout;
        let statements = lex::statements(sql);
        if statements.iter().any(lex::Statement::copies_with_client) {
            bail!(
                "`{}` is not supported: wasi:sql has no stream for COPY data; use INSERT, or \
                 COPY from or to a file on the server",
                shown(sql)
            );
        }
        let mut st = self.state.lock().await;
        // One budget for the whole call, from when it has the connection to itself.
        let deadline = Instant::now() + timeout;
        // A cancel request that cannot reach the server within the budget:
        // the connection is not to be trusted.
        if !self.settle(deadline).await {
            st.lose();
        }
        if st.conn.as_ref().is_some_and(|c| c.is_closed()) {
            st.lose();
        }
        if st.conn.is_none() {
            if st.tx == Tx::Lost {
                return self.after_lost(&mut st, sql, &statements, op);
            }
            let conn = self
                .db
                .get(deadline)
                .await
                .with_context(|| format!("running `{}`", shown(sql)))?;
            st.conn = Some(conn);
        }
        let Some(conn) = st.conn.as_ref() else {
            bail!("running `{}`: no connection", shown(sql));
        };
        let client: &Client = conn;
        let mut guard = CancelOnDrop {
            token: Some(client.cancel_token()),
            tls: shared.tls.clone(),
            slot: self.cancelling.clone(),
            timeout,
        };
        let mut work = Box::pin(self.work(client, sql, params, &statements, op));
        let result = match tokio::time::timeout_at(deadline, &mut work).await {
            Ok(r) => {
                guard.token = None;
                r
            }
            Err(_) => {
                // `guard` sends the cancel request when dropped; the next
                // statement waits for it to arrive.
                Err(anyhow!(
                    "`{}` did not finish within {timeout:?} (the PostgreSQL timeout) and was \
                     cancelled",
                    shown(sql)
                ))
            }
        };
        drop(work);
        drop(guard);
        let closed = st.conn.as_ref().is_none_or(|c| c.is_closed());
        let mut tx = st.tx;
        for s in &statements {
            match s.effect() {
                lex::Effect::Begin => tx = Tx::Open,
                lex::Effect::End => tx = Tx::Idle,
                lex::Effect::Nothing => {}
            }
        }
        // A failed text may have stopped after its BEGIN: assume it is open.
        if result.is_err() && statements.iter().any(|s| s.effect() == lex::Effect::Begin) {
            tx = Tx::Open;
        }
        st.tx = tx;
        if !closed {
            return result;
        }
        st.lose();
        match result {
            // The server answered before it went: the statement's outcome stands.
            Ok(out) => Ok(out),
            Err(e) => Err(anyhow!(
                "{e:#}; the connection to PostgreSQL at {} was lost{}",
                shared.settings.shown_url(),
                if st.tx == Tx::Lost {
                    " inside a transaction, which the server rolled back; run ROLLBACK to go on"
                } else {
                    ""
                }
            )),
        }
    }

    /// A statement on a session whose connection was lost inside a
    /// transaction: only ending the transaction is possible.
    fn after_lost(
        &self,
        st: &mut State,
        sql: &str,
        statements: &[lex::Statement],
        op: Op,
    ) -> Result<Out> {
        let url = self.db.shared.settings.shown_url();
        match statements {
            [s] if s.effect() == lex::Effect::End => {
                st.tx = Tx::Idle;
                if matches!(s.verb(), "rollback" | "abort") {
                    return Ok(match op {
                        Op::Query => Out::Rows(Rows::default()),
                        Op::Exec => Out::Count(0),
                    });
                }
                bail!(
                    "`{}` failed: the connection to PostgreSQL at {url} was lost inside the \
                     transaction and the server rolled it back; nothing of it was committed",
                    shown(sql)
                )
            }
            _ => bail!(
                "running `{}`: the connection to PostgreSQL at {url} was lost inside a \
                 transaction, which the server rolled back; run ROLLBACK to go on",
                shown(sql)
            ),
        }
    }

    /// Waits for a cancel request sent earlier to reach the server; false
    /// if it did not by `deadline`.
    async fn settle(&self, deadline: Instant) -> bool {
        let pending = lock(&self.cancelling).take();
        match pending {
            Some(handle) => tokio::time::timeout_at(deadline, handle).await.is_ok(),
            None => true,
        }
    }

    async fn work(
        &self,
        client: &Client,
        sql: &str,
        params: &[Value],
        statements: &[lex::Statement],
        op: Op,
    ) -> Result<Out> {
        let shared = &self.db.shared;
        let running = || format!("running `{}`", shown(sql));
        if op == Op::Exec && params.is_empty() {
            // One round trip, and several statements may be given.
            let stream = client
                .simple_query_raw(sql)
                .await
                .map_err(|e| shared.fail(&running(), &e))?;
            let mut counts = Vec::new();
            let mut stream = std::pin::pin!(stream);
            while let Some(m) = stream.next().await {
                if let SimpleQueryMessage::CommandComplete(n) =
                    m.map_err(|e| shared.fail(&running(), &e))?
                {
                    counts.push(n);
                }
            }
            return Ok(Out::Count(
                counts
                    .iter()
                    .zip(statements)
                    .filter(|(_, s)| s.changes_rows())
                    .map(|(n, _)| n)
                    .sum(),
            ));
        }
        let stmt = client
            .prepare(sql)
            .await
            .map_err(|e| shared.fail(&format!("preparing `{}`", shown(sql)), &e))?;
        let types = stmt.params();
        if types.len() != params.len() {
            bail!(
                "`{}` takes {} but {} given",
                shown(sql),
                count(types.len(), "parameter"),
                match params.len() {
                    1 => "1 was".to_string(),
                    m => format!("{m} were"),
                }
            );
        }
        let bound = params
            .iter()
            .zip(types)
            .enumerate()
            .map(|(i, (v, ty))| convert::param(i + 1, v, ty))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| anyhow!("binding `{}`: {e}", shown(sql)))?;
        if op == Op::Exec {
            let n = client
                .execute_raw(&stmt, bound.iter())
                .await
                .map_err(|e| shared.fail(&running(), &e))?;
            let changes = statements.first().is_some_and(lex::Statement::changes_rows);
            return Ok(Out::Count(if changes { n } else { 0 }));
        }
        let columns: Vec<Column> = stmt
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                kind: Some(convert::kind(c.type_())),
            })
            .collect();
        let stream = client
            .query_raw(&stmt, bound.iter())
            .await
            .map_err(|e| shared.fail(&running(), &e))?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        // Fields the server's text is fetched for: (row, column, bytes).
        let mut as_text: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        let mut bytes = 0usize;
        let max = shared.max_result_bytes;
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| shared.fail(&running(), &e))?
        {
            let mut values = Vec::with_capacity(columns.len());
            for (i, c) in stmt.columns().iter().enumerate() {
                let field = row
                    .try_get::<_, Option<convert::Raw>>(i)
                    .map_err(|e| shared.fail(&running(), &e))?;
                let v = match field {
                    None => Value::Null,
                    Some(raw) if convert::needs_text(c.type_()) => {
                        bytes = bytes.saturating_add(raw.0.len());
                        as_text.push((rows.len(), i, raw.0.to_vec()));
                        Value::Null
                    }
                    Some(raw) => convert::value(c.type_(), raw.0).map_err(|e| {
                        anyhow!("reading column `{}` of `{}`: {e}", c.name(), shown(sql))
                    })?,
                };
                bytes = bytes.saturating_add(convert::size(&v));
                values.push(v);
            }
            if bytes > max {
                bail!(
                    "the result of `{}` is larger than {max} bytes ([limits] memory); \
                     select fewer rows or columns",
                    shown(sql)
                );
            }
            rows.push(values);
        }
        self.read_as_text(client, sql, stmt.columns(), &mut rows, as_text)
            .await?;
        Ok(Out::Rows(Rows { columns, rows }))
    }

    /// Fills in the fields of types read as text with the server's text for
    /// them: `SELECT $1::text` with the value as parameter, a column at a
    /// time, its values pipelined.
    async fn read_as_text(
        &self,
        client: &Client,
        sql: &str,
        columns: &[tokio_postgres::Column],
        rows: &mut [Vec<Value>],
        fields: Vec<(usize, usize, Vec<u8>)>,
    ) -> Result<()> {
        let shared = &self.db.shared;
        for (i, c) in columns.iter().enumerate() {
            let column: Vec<_> = fields.iter().filter(|f| f.1 == i).collect();
            if column.is_empty() {
                continue;
            }
            let ty = c.type_();
            let what = format!(
                "reading column `{}` of `{}` (PostgreSQL type {}) as text",
                c.name(),
                shown(sql),
                ty.name(),
            );
            let hint = |e: &tokio_postgres::Error| {
                anyhow!(
                    "{:#}; cast it to text in the statement (`(…)::text AS {}`)",
                    shared.fail(&what, e),
                    c.name()
                )
            };
            let stmt = client
                .prepare_typed("SELECT $1::text", std::slice::from_ref(ty))
                .await
                .map_err(|e| hint(&e))?;
            let texts = futures_util::future::try_join_all(column.iter().map(|(_, _, raw)| {
                let stmt = &stmt;
                async move {
                    let param = convert::Param::Binary(raw.clone());
                    let row = client.query_one(stmt, &[&param]).await?;
                    row.try_get::<_, Option<String>>(0)
                }
            }))
            .await
            .map_err(|e| hint(&e))?;
            for ((r, c, _), text) in column.into_iter().zip(texts) {
                rows[*r][*c] = text.map_or(Value::Null, Value::Str);
            }
        }
        Ok(())
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let Some(conn) = self.state.get_mut().conn.take() else {
            return;
        };
        let pending = lock(&self.cancelling).take();
        let timeout = self.db.shared.settings.timeout;
        match tokio::runtime::Handle::try_current() {
            // Back to the pool only once clean; closed if that fails.
            Ok(rt) => drop(rt.spawn(async move {
                // Closed unless the reset went through, also if this task
                // is dropped (the runtime stopping).
                let mut conn = Discard(Some(conn));
                if let Some(handle) = pending {
                    let _ = handle.await;
                }
                if let Some(c) = &conn.0
                    && let Ok(Ok(())) = tokio::time::timeout(timeout, c.batch_execute(RESET)).await
                {
                    drop(conn.0.take());
                }
            })),
            Err(_) => drop(Discard(Some(conn))),
        }
    }
}

/// A pooled connection to close rather than give back to its pool.
struct Discard(Option<Object>);

impl Drop for Discard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// Sends a cancel request for the statement running on a connection if
/// dropped while armed (its future dropped, or timed out).
struct CancelOnDrop {
    token: Option<CancelToken>,
    tls: tls::Tls,
    slot: Arc<Mutex<Option<JoinHandle<()>>>>,
    timeout: Duration,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let (timeout, tls) = (self.timeout, self.tls.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let handle = rt.spawn(async move {
                match tokio::time::timeout(timeout, token.cancel_query(tls)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!("cancelling a PostgreSQL statement: {}", pg_text(&e))
                    }
                    Err(_) => tracing::warn!("cancelling a PostgreSQL statement: no answer"),
                }
            });
            *lock(&self.slot) = Some(handle);
        }
    }
}

/// PostgreSQL's report of an error: its message, where it happened,
/// SQLSTATE, detail, hint and context, on one line.
fn db_text(e: &DbError) -> String {
    let mut s = e.message().to_string();
    if let Some(ErrorPosition::Original(p)) = e.position() {
        let _ = write!(s, " at character {p}");
    }
    let _ = write!(s, " (SQLSTATE {})", e.code().code());
    if let Some(d) = e.detail() {
        let _ = write!(s, "; DETAIL: {d}");
    }
    if let Some(h) = e.hint() {
        let _ = write!(s, "; HINT: {h}");
    }
    if let Some(w) = e.where_() {
        let _ = write!(s, "; CONTEXT: {}", w.replace('\n', " / "));
    }
    s
}

/// A client error with its causes (`error connecting to server: Connection
/// refused (os error 111)`).
fn pg_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db_text(db);
    }
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}
