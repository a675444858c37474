//! `wasi:sql@0.2.0-draft` for qwasr runtimes: `connection.open`,
//! `statement.prepare`, `readwrite.query` and `readwrite.exec`, over one
//! backend trait, [`Backend`].
//!
//! Several WIT texts are published under that same name and version, and a
//! guest imports one of them; each is a thin binding module behind its own
//! cargo feature (one runtime links only one; [`add_to_linker`] refuses
//! more):
//!
//! - `sync` (default): Qwasr's flavour. A row is `{index, fields: list<field>}`
//!   where `index` is the row's position as a decimal string; every
//!   `data-type` case carries an `option`, and `none` is SQL NULL;
//!   parameters are `list<data-type>`.
//! - `async`: the same types for WASI 0.3 guests, with `open`, `prepare`,
//!   `query` and `exec` as `async func`s (needs the kernel's `p3`). Grants,
//!   errors and durability are those of `sync`.
//! - `proposal`: the wasi-sql proposal's text. Its `row` record holds one
//!   `{field-name, value}` pair, so a result is returned as every field of
//!   every result row, one `row` item each, row after row and in column order
//!   within a row (a query of 3 columns returning 2 rows gives 6 items).
//!   `data-type` has a `null` case. Its parameters are `list<string>`; each
//!   is bound as text, and the database converts it where the column asks for
//!   it (SQLite's type affinity: `'42'` stored into an `INTEGER` column
//!   becomes the integer 42).
//!
//! # Parameters
//!
//! Statements use PostgreSQL-style positional parameters on every backend:
//! `$1`, `$2`, … bind the first, second, … value of the statement's
//! parameter list, in any order and any number of times
//! (`SELECT $2, $1, $2`). The SQLite backend also takes SQLite's own `?` and
//! `?NNN`. A statement given more or fewer values than it has parameters is
//! an error saying how many it takes.
//!
//! # Errors
//!
//! Everything a statement can get wrong (syntax, a missing table, a UNIQUE,
//! NOT NULL, CHECK or FOREIGN KEY violation, a bad parameter) comes back as
//! the interface's `error` resource; its `trace()` is what was being done
//! followed by the database's own message, e.g.
//! ``running `INSERT INTO t VALUES ($1)`: UNIQUE constraint failed: t.id``.
//! Only a bad resource handle traps the guest.
//!
//! # Grants
//!
//! With `[sql] databases = [...]` in `qwasr.toml`, `connection.open` of any
//! other name returns an error whose trace is
//! ``database `<name>` is not granted: add it to [sql] databases in qwasr.toml``.
//!
//! # The embedded default
//!
//! [`embedded`] keeps one SQLite database file per connection name under
//! `<data dir>/sql`, in WAL mode with `synchronous=FULL`: an `exec` that
//! commits returns only after the commit is fsynced. Statements run on
//! blocking threads, so a slow query never holds up other requests; see the
//! module for the type mapping, pooling and file names.

#![deny(missing_docs)]

/// Message text shared by every SQL backend.
pub mod text {
    /// `1 parameter`, `2 parameters`.
    pub fn count(n: usize, noun: &str) -> String {
        if n == 1 {
            format!("1 {noun}")
        } else {
            format!("{n} {noun}s")
        }
    }

    /// A statement as messages show it: one line, at most 200 characters.
    pub fn shown(s: &str) -> String {
        const MAX: usize = 200;
        let one_line: String = s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX + 1)
            .collect();
        match one_line.char_indices().nth(MAX) {
            Some((i, _)) => format!("{}…", &one_line[..i]),
            None => one_line,
        }
    }
}

#[cfg(feature = "async")]
mod asynchronous;
pub mod embedded;
#[cfg(feature = "proposal")]
mod proposal;
#[cfg(feature = "sync")]
mod sync;

use anyhow::Result;
use qwasr_kernel::{BackendConfig, View};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::Linker;

/// A boxed future, as the backend traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A value bound to a parameter or read from a result, neutral of any WIT
/// flavour and of any database.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 32-bit signed integer.
    Int32(i32),
    /// A 64-bit signed integer.
    Int64(i64),
    /// A 32-bit unsigned integer.
    Uint32(u32),
    /// A 64-bit unsigned integer; backends that store signed 64-bit integers
    /// refuse values above `i64::MAX` rather than wrap them.
    Uint64(u64),
    /// A single-precision float.
    Float(f32),
    /// A double-precision float.
    Double(f64),
    /// Text.
    Str(String),
    /// A boolean.
    Boolean(bool),
    /// A date as ISO 8601 text (`2024-05-17`).
    Date(String),
    /// A time of day as ISO 8601 text (`13:45:00`, `13:45:00.123`).
    Time(String),
    /// A date and time as ISO 8601 text (`2024-05-17T13:45:00Z`,
    /// `2024-05-17 13:45:00`).
    Timestamp(String),
    /// Bytes.
    Binary(Vec<u8>),
}

/// The type of a [`Value`] without its payload: what a column is declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Value::Int32`].
    Int32,
    /// [`Value::Int64`].
    Int64,
    /// [`Value::Uint32`].
    Uint32,
    /// [`Value::Uint64`].
    Uint64,
    /// [`Value::Float`].
    Float,
    /// [`Value::Double`].
    Double,
    /// [`Value::Str`].
    Str,
    /// [`Value::Boolean`].
    Boolean,
    /// [`Value::Date`].
    Date,
    /// [`Value::Time`].
    Time,
    /// [`Value::Timestamp`].
    Timestamp,
    /// [`Value::Binary`].
    Binary,
}

impl Value {
    /// The value's type; `None` for [`Value::Null`].
    pub fn kind(&self) -> Option<Kind> {
        Some(match self {
            Value::Null => return None,
            Value::Int32(_) => Kind::Int32,
            Value::Int64(_) => Kind::Int64,
            Value::Uint32(_) => Kind::Uint32,
            Value::Uint64(_) => Kind::Uint64,
            Value::Float(_) => Kind::Float,
            Value::Double(_) => Kind::Double,
            Value::Str(_) => Kind::Str,
            Value::Boolean(_) => Kind::Boolean,
            Value::Date(_) => Kind::Date,
            Value::Time(_) => Kind::Time,
            Value::Timestamp(_) => Kind::Timestamp,
            Value::Binary(_) => Kind::Binary,
        })
    }
}

/// One column of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name as the statement gives it (`id`, `count(*)`, an alias).
    pub name: String,
    /// The type the column is declared with, if the backend knows one; it
    /// types the column's NULLs for flavours whose NULLs carry a type.
    pub kind: Option<Kind>,
}

/// The result of a query: its columns and its rows, each row one value per
/// column, in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The result's columns.
    pub columns: Vec<Column>,
    /// The rows, in the order the database returned them.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Each row as `(column name, value)` pairs.
    pub fn named(&self) -> impl Iterator<Item = Vec<(&str, &Value)>> + '_ {
        self.rows.iter().map(|row| {
            self.columns
                .iter()
                .map(|c| c.name.as_str())
                .zip(row.iter())
                .collect()
        })
    }
}

/// What a SQL backend implements: opening a database by name.
///
/// Statements are written with positional parameters `$1`, `$2`, … (see the
/// crate docs); a backend whose database spells them differently rewrites
/// them itself. Errors become the guest's `error` resource with the error's
/// full chain (`{:#}`) as its trace, so say what was being done.
pub trait Backend: Send + Sync + 'static {
    /// Opens database `name` for one guest connection. Grants are checked
    /// before this is called; the backend decides which names exist.
    fn open<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Arc<dyn Session>>;
}

/// One guest connection to one database.
///
/// Calls on a session run one after another on the same underlying database
/// connection, so a transaction begun with `exec("BEGIN")` covers the
/// session's later statements until `COMMIT` or `ROLLBACK`; a session
/// dropped inside a transaction rolls it back. A future dropped before it
/// completes should cancel its statement.
pub trait Session: Send + Sync + 'static {
    /// Runs `sql` with `params` bound to `$1`, `$2`, … and returns its rows.
    fn query<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFuture<'a, Rows>;
    /// Runs `sql` with `params` bound to `$1`, `$2`, … and returns the
    /// number of rows it inserted, updated or deleted (0 for other
    /// statements). Returns once the change is as durable as the backend
    /// promises.
    fn exec<'a>(&'a self, sql: &'a str, params: &'a [Value]) -> BoxFuture<'a, u64>;
}

/// Per-store `wasi:sql` state: the backend and the names the guest may open,
/// shared by every request.
#[derive(Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    names: Option<&'static [&'static str]>,
}

impl Ctx {
    /// A context over `backend`, granting the names `cfg` allows
    /// (`[sql] databases`).
    pub fn new(backend: impl Backend, cfg: &BackendConfig) -> Ctx {
        Ctx {
            backend: Arc::new(backend),
            names: cfg.names(),
        }
    }

    /// Whether the guest may open database `name`.
    fn allows(&self, name: &str) -> bool {
        self.names.is_none_or(|names| names.contains(&name))
    }
}

/// An open connection, as the guest holds it.
pub struct Connection {
    session: Arc<dyn Session>,
}

/// A prepared statement, as the guest holds it: the SQL and its parameters,
/// run by `query` or `exec` (as often as the guest likes).
pub struct Statement {
    // Shared, so a call takes them out of the resource table without a copy.
    sql: Arc<str>,
    params: Arc<[Value]>,
}

/// An error, as the guest holds it.
pub struct Error {
    trace: String,
}

/// Adds every compiled-in flavour of `wasi:sql@0.2.0-draft` (`types` and
/// `readwrite`) to the linker: `sync`, `proposal` or `async`.
///
/// Fails if more than one of them is enabled: they define the same
/// `wasi:sql/*@0.2.0-draft` names, so one runtime links only one.
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    let flavours = [
        ("sync", cfg!(feature = "sync")),
        ("proposal", cfg!(feature = "proposal")),
        ("async", cfg!(feature = "async")),
    ];
    let on: Vec<&str> = flavours.iter().filter(|f| f.1).map(|f| f.0).collect();
    if on.len() > 1 {
        anyhow::bail!(
            "qwasr-wasi-sql is built with features `{}`, which each bind \
             wasi:sql@0.2.0-draft; enable only the one the component imports",
            on.join("`, `")
        );
    }
    #[cfg(feature = "sync")]
    sync::add_to_linker(linker)?;
    #[cfg(feature = "proposal")]
    proposal::add_to_linker(linker)?;
    #[cfg(feature = "async")]
    asynchronous::add_to_linker(linker)?;
    let _ = linker;
    Ok(())
}

#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
struct HasSql;

#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
impl wasmtime::component::HasData for HasSql {
    type Data<'a> = qwasr_kernel::CtxView<'a, Ctx>;
}

#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
fn view<T: View<Ctx>>(t: &mut T) -> qwasr_kernel::CtxView<'_, Ctx> {
    t.view()
}

/// `mod generated`: `bindgen!` over the WIT at `$path` (a flavour of
/// `wasi:sql/imports`), with `imports` as given and this crate's resource types.
#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
macro_rules! bindings {
    ($path:literal, imports: $imports:tt) => {
        mod generated {
            wasmtime::component::bindgen!({
                path: $path,
                world: "wasi:sql/imports",
                imports: $imports,
                with: {
                    "wasi:sql/types.connection": crate::Connection,
                    "wasi:sql/types.statement": crate::Statement,
                    "wasi:sql/types.error": crate::Error,
                },
                anyhow: true,
                additional_derives: [PartialEq],
            });
        }
    };
}
#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
use bindings;

/// The glue the flavours share token for token (only the generated types
/// differ).
///
/// An arm with a receiver writes methods for the sync flavours with
/// `[&mut self] self` (inside `impl … for CtxView`) and for the async one
/// with `[acc: &Accessor<T, Self>] acc` (inside `impl<T> …WithStore<T> for
/// HasSql`); both reach [`ops`] through [`qwasr_kernel::Access`]. Expects `types`,
/// `Connection`, `Statement`, `Resource` and, per arm, `rows`, `value`,
/// `DataType`, `Field` and `Row` in scope.
#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
macro_rules! sql_glue {
    // `types::add_to_linker` and `readwrite::add_to_linker`.
    (link) => {
        pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
            types::add_to_linker::<T, HasSql>(linker, view::<T>)?;
            readwrite::add_to_linker::<T, HasSql>(linker, view::<T>)?;
            Ok(())
        }
    };
    // Conversions of Qwasr's `data-type` and `row` (the `sync` and `async` flavours).
    (qwasr types) => {
        /// A guest's parameter as a neutral value; any case holding `none` is NULL.
        pub(crate) fn value(d: DataType) -> Value {
            match d {
                DataType::Int32(v) => v.map_or(Value::Null, Value::Int32),
                DataType::Int64(v) => v.map_or(Value::Null, Value::Int64),
                DataType::Uint32(v) => v.map_or(Value::Null, Value::Uint32),
                DataType::Uint64(v) => v.map_or(Value::Null, Value::Uint64),
                DataType::Float(v) => v.map_or(Value::Null, Value::Float),
                DataType::Double(v) => v.map_or(Value::Null, Value::Double),
                DataType::Str(v) => v.map_or(Value::Null, Value::Str),
                DataType::Boolean(v) => v.map_or(Value::Null, Value::Boolean),
                DataType::Date(v) => v.map_or(Value::Null, Value::Date),
                DataType::Time(v) => v.map_or(Value::Null, Value::Time),
                DataType::Timestamp(v) => v.map_or(Value::Null, Value::Timestamp),
                DataType::Binary(v) => v.map_or(Value::Null, Value::Binary),
            }
        }

        /// A result value for the guest. A NULL takes the case of its column's
        /// declared type, and `str(none)` where the column has none (an expression).
        pub(crate) fn data_type(v: Value, column: Option<Kind>) -> DataType {
            match v {
                Value::Null => match column.unwrap_or(Kind::Str) {
                    Kind::Int32 => DataType::Int32(None),
                    Kind::Int64 => DataType::Int64(None),
                    Kind::Uint32 => DataType::Uint32(None),
                    Kind::Uint64 => DataType::Uint64(None),
                    Kind::Float => DataType::Float(None),
                    Kind::Double => DataType::Double(None),
                    Kind::Str => DataType::Str(None),
                    Kind::Boolean => DataType::Boolean(None),
                    Kind::Date => DataType::Date(None),
                    Kind::Time => DataType::Time(None),
                    Kind::Timestamp => DataType::Timestamp(None),
                    Kind::Binary => DataType::Binary(None),
                },
                Value::Int32(v) => DataType::Int32(Some(v)),
                Value::Int64(v) => DataType::Int64(Some(v)),
                Value::Uint32(v) => DataType::Uint32(Some(v)),
                Value::Uint64(v) => DataType::Uint64(Some(v)),
                Value::Float(v) => DataType::Float(Some(v)),
                Value::Double(v) => DataType::Double(Some(v)),
                Value::Str(v) => DataType::Str(Some(v)),
                Value::Boolean(v) => DataType::Boolean(Some(v)),
                Value::Date(v) => DataType::Date(Some(v)),
                Value::Time(v) => DataType::Time(Some(v)),
                Value::Timestamp(v) => DataType::Timestamp(Some(v)),
                Value::Binary(v) => DataType::Binary(Some(v)),
            }
        }

        /// One `row` per result row, `index` its position (`"0"`, `"1"`, …).
        pub(crate) fn rows(r: Rows) -> Vec<Row> {
            let Rows { columns, rows } = r;
            rows.into_iter()
                .enumerate()
                .map(|(i, values)| Row {
                    index: i.to_string(),
                    fields: columns
                        .iter()
                        .zip(values)
                        .map(|(c, v)| Field {
                            name: c.name.clone(),
                            value: data_type(v, c.kind),
                        })
                        .collect(),
                })
                .collect()
        }
    };
    (open [$($recv:tt)*] $r:ident) => {
        async fn open($($recv)*, name: String) -> $crate::ops::Op<Resource<Connection>> {
            $crate::ops::open($r, name).await
        }
    };
    // Qwasr's `prepare`: typed parameters.
    (prepare [$($recv:tt)*] $r:ident) => {
        async fn prepare(
            $($recv)*,
            query: String,
            params: Vec<DataType>,
        ) -> $crate::ops::Op<Resource<Statement>> {
            $crate::ops::prepare($r, query, params.into_iter().map(value).collect())
        }
    };
    (readwrite [$($recv:tt)*] $r:ident) => {
        async fn query(
            $($recv)*,
            c: Resource<Connection>,
            q: Resource<Statement>,
        ) -> $crate::ops::Op<Vec<Row>> {
            Ok($crate::ops::query($r, &c, &q).await?.map(rows))
        }

        async fn exec(
            $($recv)*,
            c: Resource<Connection>,
            q: Resource<Statement>,
        ) -> $crate::ops::Op<u32> {
            $crate::ops::exec($r, &c, &q).await
        }
    };
}
#[cfg(any(feature = "sync", feature = "proposal", feature = "async"))]
use sql_glue;

/// What every flavour shares. The outer `Result` traps the guest (a bad
/// resource handle); the inner one is the guest's `error` resource.
#[cfg_attr(
    not(any(feature = "sync", feature = "proposal", feature = "async")),
    allow(dead_code)
)]
mod ops {
    use super::{Connection, Ctx, Error, Rows, Session, Statement, Value};
    use anyhow::Result;
    use qwasr_kernel::Access;
    use std::sync::Arc;
    use wasmtime::component::Resource;

    pub(crate) type Op<T> = Result<Result<T, Resource<Error>>>;

    /// Hands `trace` to the guest as an `error` resource.
    fn fail<T>(a: &mut impl Access<Ctx>, trace: String) -> Op<T> {
        Ok(Err(a.on(|v| v.table.push(Error { trace }))?))
    }

    pub(crate) async fn open(mut a: impl Access<Ctx>, name: String) -> Op<Resource<Connection>> {
        let ctx = a.on(|v| v.ctx.clone());
        if !ctx.allows(&name) {
            return fail(
                &mut a,
                format!(
                    "database `{}` is not granted: add it to [sql] databases in qwasr.toml",
                    name.escape_debug()
                ),
            );
        }
        match ctx.backend.open(&name).await {
            Ok(session) => Ok(Ok(a.on(|v| v.table.push(Connection { session }))?)),
            Err(e) => fail(&mut a, format!("{e:#}")),
        }
    }

    pub(crate) fn prepare(
        mut a: impl Access<Ctx>,
        sql: String,
        params: Vec<Value>,
    ) -> Op<Resource<Statement>> {
        let statement = Statement {
            sql: sql.into(),
            params: params.into(),
        };
        Ok(Ok(a.on(|v| v.table.push(statement))?))
    }

    /// The session of `c` and the text and parameters of `q`, taken out of the view.
    type Run = (Arc<dyn Session>, Arc<str>, Arc<[Value]>);

    fn run(
        a: &mut impl Access<Ctx>,
        c: &Resource<Connection>,
        q: &Resource<Statement>,
    ) -> Result<Run> {
        a.on(|v| {
            let session = v.table.get(c)?.session.clone();
            let st = v.table.get(q)?;
            Ok((session, st.sql.clone(), st.params.clone()))
        })
    }

    pub(crate) async fn query(
        mut a: impl Access<Ctx>,
        c: &Resource<Connection>,
        q: &Resource<Statement>,
    ) -> Op<Rows> {
        let (session, sql, params) = run(&mut a, c, q)?;
        match session.query(&sql, &params).await {
            Ok(rows) => Ok(Ok(rows)),
            Err(e) => fail(&mut a, format!("{e:#}")),
        }
    }

    pub(crate) async fn exec(
        mut a: impl Access<Ctx>,
        c: &Resource<Connection>,
        q: &Resource<Statement>,
    ) -> Op<u32> {
        let (session, sql, params) = run(&mut a, c, q)?;
        match session.exec(&sql, &params).await {
            // The WIT counts in u32; more changed rows than that is reported as u32::MAX.
            Ok(n) => Ok(Ok(u32::try_from(n).unwrap_or(u32::MAX))),
            Err(e) => fail(&mut a, format!("{e:#}")),
        }
    }

    pub(crate) fn trace(mut a: impl Access<Ctx>, e: &Resource<Error>) -> Result<String> {
        a.on(|v| Ok(v.table.get(e)?.trace.clone()))
    }

    pub(crate) fn drop_connection(mut a: impl Access<Ctx>, c: Resource<Connection>) -> Result<()> {
        a.on(|v| v.table.delete(c))?;
        Ok(())
    }

    pub(crate) fn drop_statement(mut a: impl Access<Ctx>, s: Resource<Statement>) -> Result<()> {
        a.on(|v| v.table.delete(s))?;
        Ok(())
    }

    pub(crate) fn drop_error(mut a: impl Access<Ctx>, e: Resource<Error>) -> Result<()> {
        a.on(|v| v.table.delete(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qwasr_kernel::testing::Bare;
    use qwasr_kernel::{App, BackendConfig, Code, CtxView};
    use wasmtime::component::Resource;

    /// A context on SQLite in `dir`, granting `names`.
    pub(crate) fn ctx(dir: &std::path::Path, names: Option<&'static [&'static str]>) -> Ctx {
        Ctx {
            backend: Arc::new(embedded::Sqlite::new(dir)),
            names,
        }
    }

    /// The trace of a returned error, or the value.
    pub(crate) fn ok<T>(v: &mut CtxView<'_, Ctx>, r: ops::Op<T>) -> Result<T, String> {
        match r.expect("no trap") {
            Ok(t) => Ok(t),
            Err(e) => Err(ops::trace(&mut *v, &e).expect("error handle")),
        }
    }

    fn config(dir: &std::path::Path, names: &'static [&'static str]) -> BackendConfig {
        let sql: &'static [(&'static str, &'static [&'static str])] =
            Box::leak(Box::new([("sql", names)]));
        let app: &'static App = Box::leak(Box::new(App {
            names: sql,
            ..App::new("test", Code::Wasm(&[]))
        }));
        BackendConfig {
            data_root: dir.to_path_buf(),
            app,
            interface: "sql",
            backend: "embedded",
            options: vec![],
            overrides: vec![],
        }
    }

    #[tokio::test]
    async fn only_granted_databases_open() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = embedded::connect(&config(dir.path(), &["orders"]))
            .await
            .unwrap();
        let mut st = Bare::new(ctx);
        let v = &mut st.view();
        let c = ops::open(&mut *v, "orders".into()).await;
        assert!(ok(v, c).is_ok());
        let denied = ops::open(&mut *v, "users".into()).await;
        assert_eq!(
            ok(v, denied).err().as_deref(),
            Some("database `users` is not granted: add it to [sql] databases in qwasr.toml")
        );
        assert!(dir.path().join("sql/n-orders.db").exists());
        assert!(!dir.path().join("sql/n-users.db").exists());
    }

    #[tokio::test]
    async fn embedded_takes_no_options() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), &[]);
        cfg.options.push(("pool-size".into(), "4".into()));
        let e = embedded::connect(&cfg).await.err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("the embedded sql backend takes no options, but `pool-size` was given")
        );
    }

    #[tokio::test]
    async fn statements_run_again_and_bad_handles_trap() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Bare::new(ctx(dir.path(), None));
        let v = &mut st.view();
        let c = ops::open(&mut *v, "db".into()).await;
        let c = ok(v, c).unwrap();
        let create = ops::prepare(&mut *v, "CREATE TABLE t(x)".into(), vec![]);
        let create = ok(v, create).unwrap();
        let r = ops::exec(&mut *v, &c, &create).await;
        assert_eq!(ok(v, r), Ok(0));
        let insert = ops::prepare(
            &mut *v,
            "INSERT INTO t VALUES ($1)".into(),
            vec![Value::Int64(1)],
        );
        let insert = ok(v, insert).unwrap();
        for _ in 0..3 {
            let r = ops::exec(&mut *v, &c, &insert).await;
            assert_eq!(ok(v, r), Ok(1));
        }
        let count = ops::prepare(&mut *v, "SELECT count(*) AS n FROM t".into(), vec![]);
        let count = ok(v, count).unwrap();
        let r = ops::query(&mut *v, &c, &count).await;
        let rows = ok(v, r).unwrap();
        assert_eq!(
            rows.named().collect::<Vec<_>>(),
            [[("n", &Value::Int64(3))]]
        );

        let stale: Resource<Connection> = Resource::new_own(c.rep() + 100);
        assert!(ops::query(&mut *v, &stale, &count).await.is_err());
        ops::drop_connection(&mut *v, c).unwrap();
    }

    #[test]
    fn add_to_linker_links_the_flavours_compiled_in() {
        // Concurrency support is on by default when compiled in (`async`).
        let engine = wasmtime::Engine::default();
        let linked = add_to_linker(&mut Linker::<Bare<Ctx>>::new(&engine));
        let flavours = [
            cfg!(feature = "sync"),
            cfg!(feature = "proposal"),
            cfg!(feature = "async"),
        ];
        if flavours.iter().filter(|on| **on).count() > 1 {
            let e = linked.unwrap_err().to_string();
            assert!(e.contains("which each bind wasi:sql@0.2.0-draft"), "{e}");
            if flavours.iter().all(|on| *on) {
                assert!(e.contains("features `sync`, `proposal`, `async`,"), "{e}");
            }
        } else {
            linked.unwrap();
        }
    }
}
