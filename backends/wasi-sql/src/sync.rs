//! Qwasr's `wasi:sql@0.2.0-draft`: rows of named fields with an index, and
//! data types whose `none` is SQL NULL.

use crate::{
    Connection, Ctx, Error, HasSql, Kind, Rows, Statement, Value, bindings, ops, sql_glue, view,
};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};

bindings!("../../wit/deps/sql-0.2.0-draft", imports: { default: async | trappable });

use generated::wasi::sql::readwrite;
pub(crate) use generated::wasi::sql::types::{self, DataType, Field, Row};

sql_glue!(link);
sql_glue!(qwasr types);

impl types::Host for CtxView<'_, Ctx> {}

impl types::HostConnection for CtxView<'_, Ctx> {
    sql_glue!(open [&mut self] self);

    async fn drop(&mut self, c: Resource<Connection>) -> Result<()> {
        ops::drop_connection(self, c)
    }
}

impl types::HostStatement for CtxView<'_, Ctx> {
    sql_glue!(prepare [&mut self] self);

    async fn drop(&mut self, s: Resource<Statement>) -> Result<()> {
        ops::drop_statement(self, s)
    }
}

impl types::HostError for CtxView<'_, Ctx> {
    async fn trace(&mut self, e: Resource<Error>) -> Result<String> {
        ops::trace(self, &e)
    }

    async fn drop(&mut self, e: Resource<Error>) -> Result<()> {
        ops::drop_error(self, e)
    }
}

impl readwrite::Host for CtxView<'_, Ctx> {
    sql_glue!(readwrite [&mut self] self);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{ctx, ok};
    use qwasr_kernel::testing::Bare;

    fn all(some: bool) -> Vec<DataType> {
        vec![
            DataType::Int32(some.then_some(-7)),
            DataType::Int64(some.then_some(i64::MIN)),
            DataType::Uint32(some.then_some(u32::MAX)),
            DataType::Uint64(some.then_some(i64::MAX as u64)),
            DataType::Float(some.then_some(1.25)),
            DataType::Double(some.then_some(-0.1)),
            DataType::Str(some.then(|| "héllo 'x'".to_string())),
            DataType::Boolean(some.then_some(true)),
            DataType::Date(some.then(|| "2024-05-17".to_string())),
            DataType::Time(some.then(|| "13:45:00.250".to_string())),
            DataType::Timestamp(some.then(|| "2024-05-17T13:45:00Z".to_string())),
            DataType::Binary(some.then(|| vec![0, 159, 255])),
        ]
    }

    const COLUMNS: [&str; 12] = [
        "i32", "i64", "u32", "u64", "f", "d", "s", "b", "dt", "tm", "ts", "bin",
    ];

    async fn exec(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Connection>,
        sql: &str,
        p: Vec<DataType>,
    ) -> Result<u32, String> {
        let st = types::HostStatement::prepare(v, sql.into(), p).await;
        let st = ok(v, st)?;
        let r = readwrite::Host::exec(v, Resource::new_borrow(c.rep()), st).await;
        ok(v, r)
    }

    async fn query(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Connection>,
        sql: &str,
        p: Vec<DataType>,
    ) -> Result<Vec<Row>, String> {
        let st = types::HostStatement::prepare(v, sql.into(), p).await;
        let st = ok(v, st)?;
        let r = readwrite::Host::query(v, Resource::new_borrow(c.rep()), st).await;
        ok(v, r)
    }

    #[tokio::test]
    async fn every_type_and_null_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Bare::new(ctx(dir.path(), None));
        let v = &mut st.view();
        let c = types::HostConnection::open(v, "types".into()).await;
        let c = ok(v, c).unwrap();
        let create = "CREATE TABLE t(i32 INT4, i64 INTEGER, u32 INT UNSIGNED, \
            u64 BIGINT UNSIGNED, f FLOAT4, d DOUBLE, s TEXT, b BOOLEAN, dt DATE, \
            tm TIME, ts TIMESTAMP, bin BLOB)";
        assert_eq!(exec(v, &c, create, vec![]).await, Ok(0));
        let insert = "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        assert_eq!(exec(v, &c, insert, all(true)).await, Ok(1));
        assert_eq!(exec(v, &c, insert, all(false)).await, Ok(1));

        let rows = query(v, &c, "SELECT * FROM t", vec![]).await.unwrap();
        assert_eq!(rows.len(), 2);
        for (i, (row, want)) in rows.iter().zip([all(true), all(false)]).enumerate() {
            assert_eq!(row.index, i.to_string());
            let names: Vec<&str> = row.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, COLUMNS);
            let got: Vec<DataType> = row.fields.iter().map(|f| f.value.clone()).collect();
            assert_eq!(got, want);
        }

        // Expressions have no declared type: typed by storage class, NULL as str(none).
        let rows = query(
            v,
            &c,
            "SELECT $1 AS a, $2 AS b, $3 AS c, $4 AS d, NULL AS e",
            vec![
                DataType::Int32(Some(5)),
                DataType::Boolean(Some(false)),
                DataType::Float(Some(0.5)),
                DataType::Binary(Some(vec![1])),
            ],
        )
        .await
        .unwrap();
        let got: Vec<DataType> = rows[0].fields.iter().map(|f| f.value.clone()).collect();
        assert_eq!(
            got,
            [
                DataType::Int64(Some(5)),
                DataType::Int64(Some(0)),
                DataType::Double(Some(0.5)),
                DataType::Binary(Some(vec![1])),
                DataType::Str(None),
            ]
        );
    }

    #[tokio::test]
    async fn errors_are_error_resources_with_the_database_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Bare::new(ctx(dir.path(), None));
        let v = &mut st.view();
        let c = types::HostConnection::open(v, "db".into()).await;
        let c = ok(v, c).unwrap();
        let e = query(v, &c, "SELEC 1", vec![]).await.unwrap_err();
        assert!(e.starts_with("preparing `SELEC 1`: "), "{e}");
        assert!(e.contains("syntax error"), "{e}");
        exec(v, &c, "CREATE TABLE t(id INTEGER PRIMARY KEY)", vec![])
            .await
            .unwrap();
        let insert = "INSERT INTO t VALUES ($1)";
        exec(v, &c, insert, vec![DataType::Int64(Some(1))])
            .await
            .unwrap();
        let e = exec(v, &c, insert, vec![DataType::Int64(Some(1))]).await;
        assert_eq!(
            e.err().as_deref(),
            Some("running `INSERT INTO t VALUES ($1)`: UNIQUE constraint failed: t.id")
        );
        let e = exec(v, &c, insert, vec![DataType::Uint64(Some(u64::MAX))]).await;
        assert_eq!(
            e.err().as_deref(),
            Some(
                "binding parameter $1 of `INSERT INTO t VALUES ($1)`: uint64 \
                 18446744073709551615 is larger than SQLite's largest integer (9223372036854775807)"
            )
        );
    }

    #[test]
    fn none_of_every_case_is_null() {
        for d in all(false) {
            assert_eq!(value(d), Value::Null);
        }
        let values: Vec<Value> = all(true).into_iter().map(value).collect();
        assert_eq!(
            values.iter().map(Value::kind).collect::<Vec<_>>(),
            [
                Kind::Int32,
                Kind::Int64,
                Kind::Uint32,
                Kind::Uint64,
                Kind::Float,
                Kind::Double,
                Kind::Str,
                Kind::Boolean,
                Kind::Date,
                Kind::Time,
                Kind::Timestamp,
                Kind::Binary
            ]
            .map(Some)
        );
        for (v, d) in values.into_iter().zip(all(true)) {
            assert_eq!(data_type(v, None), d);
        }
    }
}
