//! Qwasr's `wasi:sql@0.2.0-draft` for WASI 0.3 guests: the `sync` flavour's
//! types with `open`, `prepare`, `query` and `exec` as `async func`s.
//!
//! Each of those runs as a host task in the store's event loop, so a guest
//! task waiting on a statement does not hold up the guest's other tasks.
//! `error.trace` and the resource drops are plain functions in this WIT and
//! stay sync here.

use crate::{
    Connection, Ctx, Error, HasSql, Kind, Rows, Statement, Value, bindings, ops, sql_glue, view,
};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Accessor, Linker, Resource};

// `async func`s are bound as concurrent host functions whatever `imports`
// says; the rest (`trace`, the drops) stay sync.
bindings!("../../wit/flavours/sql-0.2.0-draft.qwasr-async", imports: { default: trappable });

use generated::wasi::sql::readwrite;
use generated::wasi::sql::types::{self, DataType, Field, Row};

sql_glue!(link);
sql_glue!(qwasr types);

impl<T> types::HostConnectionWithStore<T> for HasSql {
    sql_glue!(open [acc: &Accessor<T, Self>] acc);
}

impl<T> types::HostStatementWithStore<T> for HasSql {
    sql_glue!(prepare [acc: &Accessor<T, Self>] acc);
}

impl<T> readwrite::HostWithStore<T> for HasSql {
    sql_glue!(readwrite [acc: &Accessor<T, Self>] acc);
}

impl types::Host for CtxView<'_, Ctx> {}
impl readwrite::Host for CtxView<'_, Ctx> {}

impl types::HostConnection for CtxView<'_, Ctx> {
    fn drop(&mut self, c: Resource<Connection>) -> Result<()> {
        ops::drop_connection(self, c)
    }
}

impl types::HostStatement for CtxView<'_, Ctx> {
    fn drop(&mut self, s: Resource<Statement>) -> Result<()> {
        ops::drop_statement(self, s)
    }
}

impl types::HostError for CtxView<'_, Ctx> {
    fn trace(&mut self, e: Resource<Error>) -> Result<String> {
        ops::trace(self, &e)
    }

    fn drop(&mut self, e: Resource<Error>) -> Result<()> {
        ops::drop_error(self, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::ctx;
    use qwasr_kernel::testing::{Bare, in_store};

    type Acc = Accessor<Bare<Ctx>, HasSql>;

    /// The value, or the trace of the returned error (read with the sync `trace`).
    fn ok<T>(acc: &Acc, r: ops::Op<T>) -> Result<T, String> {
        match r.expect("no trap") {
            Ok(t) => Ok(t),
            Err(e) => Err(acc.with(|mut a| types::HostError::trace(&mut a.get(), e).unwrap())),
        }
    }

    async fn open(acc: &Acc, name: &str) -> Result<Resource<Connection>, String> {
        let c = types::HostConnectionWithStore::open(acc, name.into()).await;
        ok(acc, c)
    }

    /// Prepares and runs `sql` on `c`: `exec`'s count, or `query`'s rows.
    async fn run(
        acc: &Acc,
        c: &Resource<Connection>,
        sql: &str,
        params: Vec<DataType>,
    ) -> Result<(u32, Vec<Row>), String> {
        let st = types::HostStatementWithStore::prepare(acc, sql.into(), params).await;
        let st = ok(acc, st)?;
        let (c, q) = (
            Resource::new_borrow(c.rep()),
            Resource::new_borrow(st.rep()),
        );
        let result = if sql.starts_with("SELECT") {
            let rows = readwrite::HostWithStore::query(acc, c, q).await;
            ok(acc, rows).map(|rows| (0, rows))
        } else {
            let n = readwrite::HostWithStore::exec(acc, c, q).await;
            ok(acc, n).map(|n| (n, vec![]))
        };
        acc.with(|mut a| types::HostStatement::drop(&mut a.get(), st))
            .unwrap();
        result
    }

    fn int(v: i64) -> DataType {
        DataType::Int64(Some(v))
    }

    #[tokio::test]
    async fn an_ungranted_database_is_an_error_naming_the_manifest_key() {
        let dir = tempfile::tempdir().unwrap();
        in_store::<_, HasSql, _>(ctx(dir.path(), Some(&["orders"])), async |acc| {
            assert!(open(acc, "orders").await.is_ok());
            assert_eq!(
                open(acc, "users").await.err().as_deref(),
                Some("database `users` is not granted: add it to [sql] databases in qwasr.toml")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_connection_keeps_its_transaction_and_errors_carry_the_database_message() {
        let dir = tempfile::tempdir().unwrap();
        in_store::<_, HasSql, _>(ctx(dir.path(), None), async |acc| {
            let c = open(acc, "db").await.unwrap();
            let create = "CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT)";
            assert_eq!(run(acc, &c, create, vec![]).await, Ok((0, vec![])));
            let insert = "INSERT INTO t VALUES ($1, $2)";
            let note = DataType::Str(None);
            let one = run(acc, &c, insert, vec![int(1), note.clone()]).await;
            assert_eq!(one, Ok((1, vec![])));
            let again = run(acc, &c, insert, vec![int(1), note.clone()]).await;
            assert_eq!(
                again.err().as_deref(),
                Some("running `INSERT INTO t VALUES ($1, $2)`: UNIQUE constraint failed: t.id")
            );

            run(acc, &c, "BEGIN", vec![]).await.unwrap();
            run(acc, &c, insert, vec![int(2), note]).await.unwrap();
            let select = "SELECT id, note FROM t ORDER BY id";
            let (_, rows) = run(acc, &c, select, vec![]).await.unwrap();
            assert_eq!(rows.len(), 2, "the open transaction sees its own insert");
            assert_eq!(
                rows[1].fields,
                [
                    Field {
                        name: "id".into(),
                        value: int(2)
                    },
                    Field {
                        name: "note".into(),
                        value: DataType::Str(None)
                    },
                ]
            );
            run(acc, &c, "ROLLBACK", vec![]).await.unwrap();
            let (_, rows) = run(acc, &c, select, vec![]).await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].index, "0");
        })
        .await;
    }

    #[tokio::test]
    async fn calls_in_flight_together_each_get_their_own_result() {
        let dir = tempfile::tempdir().unwrap();
        in_store::<_, HasSql, _>(ctx(dir.path(), None), async |acc| {
            let (a, b) = (open(acc, "a").await.unwrap(), open(acc, "b").await.unwrap());
            let (x, y) = tokio::join!(
                run(acc, &a, "SELECT $1 AS n", vec![int(1)]),
                run(acc, &b, "SELEC 2", vec![]),
            );
            assert_eq!(x.unwrap().1[0].fields[0].value, int(1));
            let y = y.unwrap_err();
            assert!(y.starts_with("preparing `SELEC 2`: "), "{y}");

            // A stale handle is a trap, not an error value.
            let stale = Resource::<Connection>::new_borrow(b.rep() + 100);
            let st = types::HostStatementWithStore::prepare(acc, "SELECT 1".into(), vec![]);
            let st = ok(acc, st.await).unwrap();
            let r = readwrite::HostWithStore::query(acc, stale, st).await;
            assert!(r.is_err());
        })
        .await;
    }
}
