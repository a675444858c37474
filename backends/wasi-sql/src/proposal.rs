//! The wasi-sql proposal's `wasi:sql@0.2.0-draft`: a `row` is one
//! `{field-name, value}` pair, `null` is a case of `data-type`, and
//! parameters are strings.

use crate::{
    Connection, Ctx, Error, HasSql, Rows, Statement, Value, bindings, ops, sql_glue, view,
};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};

bindings!("../../wit/flavours/sql-0.2.0-draft.proposal", imports: { default: async | trappable });

use generated::wasi::sql::readwrite;
pub(crate) use generated::wasi::sql::types::{self, DataType, Row};

sql_glue!(link);

/// A result value for the guest (`float` is an f64 in this text).
pub(crate) fn data_type(v: Value) -> DataType {
    match v {
        Value::Null => DataType::Null,
        Value::Int32(v) => DataType::Int32(v),
        Value::Int64(v) => DataType::Int64(v),
        Value::Uint32(v) => DataType::Uint32(v),
        Value::Uint64(v) => DataType::Uint64(v),
        Value::Float(v) => DataType::Float(f64::from(v)),
        Value::Double(v) => DataType::Double(v),
        Value::Str(v) => DataType::Str(v),
        Value::Boolean(v) => DataType::Boolean(v),
        Value::Date(v) => DataType::Date(v),
        Value::Time(v) => DataType::Time(v),
        Value::Timestamp(v) => DataType::Timestamp(v),
        Value::Binary(v) => DataType::Binary(v),
    }
}

/// Every field of every result row as one `row` item, row after row, in
/// column order: the guest splits the list by its number of columns.
pub(crate) fn rows(r: Rows) -> Vec<Row> {
    let Rows { columns, rows } = r;
    let mut out = Vec::with_capacity(rows.len() * columns.len());
    for values in rows {
        for (c, v) in columns.iter().zip(values) {
            out.push(Row {
                field_name: c.name.clone(),
                value: data_type(v),
            });
        }
    }
    out
}

impl types::Host for CtxView<'_, Ctx> {}

impl types::HostConnection for CtxView<'_, Ctx> {
    sql_glue!(open [&mut self] self);

    async fn drop(&mut self, c: Resource<Connection>) -> Result<()> {
        ops::drop_connection(self, c)
    }
}

impl types::HostStatement for CtxView<'_, Ctx> {
    /// Each parameter is bound as text; the database converts it as the
    /// column or expression asks.
    async fn prepare(
        &mut self,
        query: String,
        params: Vec<String>,
    ) -> ops::Op<Resource<Statement>> {
        ops::prepare(self, query, params.into_iter().map(Value::Str).collect())
    }

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

    async fn run(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Connection>,
        sql: &str,
        p: &[&str],
        query: bool,
    ) -> Result<Vec<Row>, String> {
        let p = p.iter().map(|s| s.to_string()).collect();
        let st = types::HostStatement::prepare(v, sql.into(), p).await;
        let st = ok(v, st)?;
        let c = Resource::new_borrow(c.rep());
        if query {
            let r = readwrite::Host::query(v, c, st).await;
            ok(v, r)
        } else {
            let r = readwrite::Host::exec(v, c, st).await;
            ok(v, r).map(|n| {
                vec![Row {
                    field_name: "changed".into(),
                    value: DataType::Uint32(n),
                }]
            })
        }
    }

    #[tokio::test]
    async fn text_parameters_take_the_column_type_and_rows_come_flattened() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Bare::new(ctx(dir.path(), None));
        let v = &mut st.view();
        let c = types::HostConnection::open(v, "db".into()).await;
        let c = ok(v, c).unwrap();
        let create = "CREATE TABLE t(i32 INT4, i64 BIGINT, u32 INT UNSIGNED, u64 UNSIGNED BIG INT, \
            f FLOAT4, d REAL, s VARCHAR(10), b BOOL, dt DATE, tm TIME, ts DATETIME, bin BLOB, n TEXT)";
        run(v, &c, create, &[], false).await.unwrap();
        let insert = "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CAST($12 AS BLOB), NULL)";
        let params = [
            "-7",
            "9000000000",
            "4000000000",
            "18",
            "1.5",
            "2.25",
            "007",
            "true",
            "2024-05-17",
            "13:45:00",
            "2024-05-17 13:45:00",
            "ab",
        ];
        let changed = run(v, &c, insert, &params, false).await.unwrap();
        assert_eq!(changed[0].value, DataType::Uint32(1));
        run(v, &c, insert, &params, false).await.unwrap();

        let rows = run(v, &c, "SELECT * FROM t", &[], true).await.unwrap();
        let one = [
            ("i32", DataType::Int32(-7)),
            ("i64", DataType::Int64(9_000_000_000)),
            ("u32", DataType::Uint32(4_000_000_000)),
            ("u64", DataType::Uint64(18)),
            ("f", DataType::Float(1.5)),
            ("d", DataType::Double(2.25)),
            ("s", DataType::Str("007".into())),
            ("b", DataType::Boolean(true)),
            ("dt", DataType::Date("2024-05-17".into())),
            ("tm", DataType::Time("13:45:00".into())),
            ("ts", DataType::Timestamp("2024-05-17 13:45:00".into())),
            ("bin", DataType::Binary(b"ab".to_vec())),
            ("n", DataType::Null),
        ];
        // Two rows of 13 columns: 26 items, row after row, in column order.
        assert_eq!(rows.len(), 26);
        for (got, (name, value)) in rows.iter().zip(one.iter().chain(one.iter())) {
            assert_eq!((got.field_name.as_str(), &got.value), (*name, value));
        }

        let e = run(v, &c, "SELECT $1, $2", &["x"], true).await.unwrap_err();
        assert_eq!(e, "`SELECT $1, $2` takes 2 parameters but 1 was given");
    }

    #[test]
    fn every_value_has_a_case() {
        let table = [
            (Value::Null, DataType::Null),
            (Value::Int32(-1), DataType::Int32(-1)),
            (Value::Int64(-2), DataType::Int64(-2)),
            (Value::Uint32(3), DataType::Uint32(3)),
            (Value::Uint64(u64::MAX), DataType::Uint64(u64::MAX)),
            (Value::Float(0.5), DataType::Float(0.5)),
            (Value::Double(0.25), DataType::Double(0.25)),
            (Value::Str("s".into()), DataType::Str("s".into())),
            (Value::Boolean(false), DataType::Boolean(false)),
            (Value::Date("d".into()), DataType::Date("d".into())),
            (Value::Time("t".into()), DataType::Time("t".into())),
            (
                Value::Timestamp("ts".into()),
                DataType::Timestamp("ts".into()),
            ),
            (Value::Binary(vec![9]), DataType::Binary(vec![9])),
        ];
        for (v, d) in table {
            assert_eq!(data_type(v), d);
        }
    }
}
