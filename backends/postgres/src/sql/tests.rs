//! Tests against the PostgreSQL server of `QWASR_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:15432/postgres`, trust auth).
//! Each test names its databases `qt<pid>_<n>_…` and drops them at the end.

use super::*;
use qwasr_kernel::{App, Code};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio_postgres::NoTls;

fn server_url() -> String {
    std::env::var("QWASR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:15432/postgres".into())
}

fn app() -> &'static App {
    Box::leak(Box::new(App::new("t", Code::Wasm(&[]))))
}

fn config(options: &[(&str, &str)]) -> BackendConfig {
    let mut cfg = qwasr_kernel::testing::backend_config(app(), "sql", "postgres");
    cfg.options = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    cfg
}

/// A test's own prefix; its databases (and roles) are dropped when it ends,
/// also when it fails.
struct Env {
    url: String,
    prefix: String,
}

impl Env {
    fn new() -> Env {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Env {
            url: server_url(),
            prefix: format!(
                "qt{}_{}_",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The backend on the test server with this prefix and `options`.
    async fn backend(&self, options: &[(&str, &str)]) -> Postgres {
        let mut all = vec![("url", self.url.as_str()), ("prefix", self.prefix.as_str())];
        all.extend_from_slice(options);
        Postgres::connect(&config(&all)).await.unwrap()
    }

    /// A direct connection to the URL's database.
    async fn admin(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// This test's databases.
    async fn databases(&self) -> Vec<String> {
        let rows = self
            .admin()
            .await
            .query(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
                &[&self.prefix],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
                tokio::spawn(conn);
                let like = |table: &str, column: &str| {
                    format!("SELECT {column} FROM {table} WHERE starts_with({column}, $1)")
                };
                for row in client
                    .query(&like("pg_database", "datname"), &[&prefix])
                    .await
                    .unwrap()
                {
                    let db: String = row.get(0);
                    let drop = format!("DROP DATABASE {} WITH (FORCE)", names::quoted(&db));
                    client.batch_execute(&drop).await.unwrap();
                }
                for row in client
                    .query(&like("pg_roles", "rolname"), &[&prefix])
                    .await
                    .unwrap()
                {
                    let role: String = row.get(0);
                    let drop = format!("DROP ROLE {}", names::quoted(&role));
                    client.batch_execute(&drop).await.unwrap();
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn session(pg: &Postgres, name: &str) -> Arc<dyn Session> {
    pg.open(name).await.unwrap()
}

async fn values(s: &dyn Session, sql: &str, params: &[Value]) -> Vec<Vec<Value>> {
    match s.query(sql, params).await {
        Ok(rows) => rows.rows,
        Err(e) => panic!("{sql}: {e:#}"),
    }
}

async fn exec(s: &dyn Session, sql: &str, params: &[Value]) -> u64 {
    match s.exec(sql, params).await {
        Ok(n) => n,
        Err(e) => panic!("{sql}: {e:#}"),
    }
}

async fn err<T>(r: BoxFuture<'_, T>) -> String {
    match r.await {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn int(i: i64) -> Value {
    Value::Int64(i)
}

fn text(s: &str) -> Value {
    Value::Str(s.into())
}

#[test]
fn names_map_to_safe_distinct_database_names() {
    assert_eq!(names::database("", "orders"), "orders");
    assert_eq!(names::database("p_", "orders_2"), "p_orders_2");
    assert_eq!(names::database("p_", "Orders"), "p_~%4frders");
    assert_eq!(names::database("p_", "a/b"), "p_~a%2fb");
    assert_eq!(names::database("p_", ""), "p_~");
    assert_eq!(names::database("p_", "2024"), "p_~2024");
    assert_eq!(names::database("p_", "é"), "p_~%c3%a9");
    assert_eq!(names::database("p_", "~%41"), "p_~%7e%2541");
    let long = names::database("p_", &"x".repeat(100));
    assert!(long.starts_with("p_#") && long.len() == 35, "{long}");
    assert_eq!(names::database("", &"x".repeat(63)), "x".repeat(63));
    assert!(names::database("", &"x".repeat(64)).starts_with('#'));
    assert_eq!(names::quoted("a\"b"), "\"a\"\"b\"");
}

#[tokio::test]
async fn every_type_round_trips_both_ways() {
    let env = Env::new();
    let pg = env.backend(&[]).await;
    let s = session(&pg, "types").await;
    let s = s.as_ref();
    exec(
        s,
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
         CREATE TABLE t(
            id serial PRIMARY KEY, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8,
            n numeric, b bool, tx text, vc varchar(10), bp char(3), nm name, d date, tm time,
            ttz timetz, ts timestamp, tstz timestamptz, by bytea, u uuid, j json, jb jsonb,
            m mood, p posint, iv interval, arr int4[])",
        &[],
    )
    .await;
    let columns = "i2, i4, i8, o, f4, f8, n, b, tx, vc, bp, nm, d, tm, ttz, ts, tstz, by, u, j, \
                   jb, m, p, iv, arr";
    let insert = format!(
        "INSERT INTO t({columns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
    );
    let given = vec![
        Value::Int32(-7),
        Value::Int32(i32::MIN),
        Value::Int64(i64::MAX),
        Value::Uint32(u32::MAX),
        Value::Float(1.5),
        Value::Double(-2.25e300),
        text("123456789012345678901234567890.123456789"),
        Value::Boolean(true),
        text("héllo 'q' \"x\" $1 ; --"),
        text("abc"),
        text("ab"),
        text("nm"),
        Value::Date("2024-05-17".into()),
        Value::Time("13:45:00.123".into()),
        Value::Time("13:45:00+02:00".into()),
        Value::Timestamp("2024-05-17T13:45:00.5".into()),
        Value::Timestamp("2024-05-17T13:45:00+02:00".into()),
        Value::Binary(vec![0, 1, 2, 255]),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text("{\"a\": [1, 2]}"),
        text("{\"b\": null, \"a\": 1}"),
        text("happy"),
        Value::Int32(5),
        text("1 day 02:00:00"),
        text("{1,2,NULL}"),
    ];
    assert_eq!(exec(s, &insert, &given).await, 1);
    let nulls = vec![Value::Null; given.len()];
    assert_eq!(exec(s, &insert, &nulls).await, 1);

    let select = format!("SELECT {columns} FROM t ORDER BY id");
    let rows = s.query(&select, &[]).await.unwrap();
    use qwasr_wasi_sql::Kind::*;
    let kinds: Vec<_> = rows.columns.iter().map(|c| c.kind.unwrap()).collect();
    assert_eq!(
        kinds,
        [
            Int32, Int32, Int64, Uint32, Float, Double, Str, Boolean, Str, Str, Str, Str, Date,
            Time, Time, Timestamp, Timestamp, Binary, Str, Str, Str, Str, Int32, Str, Str
        ]
    );
    assert_eq!(rows.columns[0].name, "i2");
    let expected = vec![
        Value::Int32(-7),
        Value::Int32(i32::MIN),
        Value::Int64(i64::MAX),
        Value::Uint32(u32::MAX),
        Value::Float(1.5),
        Value::Double(-2.25e300),
        text("123456789012345678901234567890.123456789"),
        Value::Boolean(true),
        text("héllo 'q' \"x\" $1 ; --"),
        text("abc"),
        text("ab "),
        text("nm"),
        Value::Date("2024-05-17".into()),
        Value::Time("13:45:00.123".into()),
        Value::Time("13:45:00+02:00".into()),
        Value::Timestamp("2024-05-17T13:45:00.5".into()),
        Value::Timestamp("2024-05-17T11:45:00Z".into()),
        Value::Binary(vec![0, 1, 2, 255]),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text("{\"a\": [1, 2]}"),
        text("{\"a\": 1, \"b\": null}"),
        text("happy"),
        Value::Int32(5),
        text("1 day 02:00:00"),
        text("{1,2,NULL}"),
    ];
    assert_eq!(rows.rows, [expected.clone(), nulls.clone()]);

    // And back: what was read, bound again, reads the same.
    for row in &rows.rows {
        assert_eq!(exec(s, &insert, row).await, 1);
    }
    let again = s.query(&format!("{select} OFFSET 2"), &[]).await.unwrap();
    assert_eq!(again.rows, [expected, nulls]);
}

#[tokio::test]
async fn values_convert_to_the_inferred_types() {
    let env = Env::new();
    let pg = env.backend(&[]).await;
    let s = session(&pg, "conv").await;
    let s = s.as_ref();
    let one = |sql: &'static str, v: Value| async move { values(s, sql, &[v]).await[0][0].clone() };
    assert_eq!(one("SELECT $1::int2", int(-3)).await, Value::Int32(-3));
    assert_eq!(
        one("SELECT $1::int4", Value::Uint32(7)).await,
        Value::Int32(7)
    );
    assert_eq!(one("SELECT $1::int8", Value::Uint64(9)).await, int(9));
    assert_eq!(
        one("SELECT $1::int8", Value::Uint32(u32::MAX)).await,
        int(i64::from(u32::MAX))
    );
    assert_eq!(
        one("SELECT $1::numeric", Value::Uint64(u64::MAX)).await,
        text("18446744073709551615")
    );
    assert_eq!(
        one("SELECT $1::numeric", Value::Float(0.1)).await,
        text("0.1")
    );
    assert_eq!(
        one("SELECT $1::numeric", Value::Double(f64::NAN)).await,
        text("NaN")
    );
    assert_eq!(one("SELECT $1::float8", int(3)).await, Value::Double(3.0));
    assert_eq!(
        one("SELECT $1::float4", Value::Double(0.5)).await,
        Value::Float(0.5)
    );
    assert_eq!(one("SELECT $1::int4", text("42")).await, Value::Int32(42));
    assert_eq!(
        one("SELECT $1::bool", text("yes")).await,
        Value::Boolean(true)
    );
    assert_eq!(one("SELECT $1", int(5)).await, text("5"));
    assert_eq!(
        one("SELECT $1::text", Value::Boolean(false)).await,
        text("false")
    );
    assert_eq!(
        one("SELECT $1::jsonb", Value::Boolean(true)).await,
        text("true")
    );
    assert_eq!(
        one("SELECT $1::timestamptz", Value::Date("2024-05-17".into())).await,
        Value::Timestamp("2024-05-17T00:00:00Z".into())
    );
    assert_eq!(one("SELECT $1::int4", Value::Null).await, Value::Null);
    assert_eq!(one("SELECT $1::bytea", Value::Null).await, Value::Null);
    assert_eq!(
        values(
            s,
            "SELECT $2::text, $1::int8, $2::text",
            &[int(1), text("a")]
        )
        .await,
        [[text("a"), int(1), text("a")]]
    );

    let sql = "SELECT $1::int4, $2::int4";
    assert_eq!(
        err(s.query(sql, &[int(1), Value::Double(1.0)])).await,
        format!("binding `{sql}`: parameter $2 is a double, but the statement takes int4 there")
    );
    assert_eq!(
        err(s.query("SELECT $1::int8", &[Value::Uint64(u64::MAX)])).await,
        "binding `SELECT $1::int8`: parameter $1 is the uint64 18446744073709551615, out of \
         range for int8"
    );
    assert_eq!(
        err(s.query("SELECT $1::int2", &[int(40_000)])).await,
        "binding `SELECT $1::int2`: parameter $1 is the int64 40000, out of range for int2"
    );
    assert_eq!(
        err(s.query("SELECT $1::bytea", &[int(1)])).await,
        "binding `SELECT $1::bytea`: parameter $1 is an int64, but the statement takes bytea there"
    );
    assert_eq!(
        err(s.query("SELECT $1::date", &[Value::Binary(vec![1])])).await,
        "binding `SELECT $1::date`: parameter $1 is a binary, but the statement takes date there"
    );
    // A str the server cannot parse: its message, naming the parameter.
    let e = err(s.query("SELECT $1::int4", &[text("abc")])).await;
    assert!(
        e.starts_with("running `SELECT $1::int4`: invalid input syntax for type integer: \"abc\""),
        "{e}"
    );
    assert!(e.contains("SQLSTATE 22P02") && e.contains("$1"), "{e}");

    assert_eq!(
        err(s.query("SELECT $1, $2", &[int(1)])).await,
        "`SELECT $1, $2` takes 2 parameters but 1 was given"
    );
    assert_eq!(
        err(s.query("SELECT 1", &[int(1), int(2)])).await,
        "`SELECT 1` takes 0 parameters but 2 were given"
    );
    assert_eq!(
        err(s.exec("SELECT $1::int4", &[])).await,
        "running `SELECT $1::int4`: there is no parameter $1 at character 8 (SQLSTATE 42P02)"
    );
}

#[tokio::test]
async fn results_read_like_the_servers_own_text() {
    let env = Env::new();
    let pg = env.backend(&[]).await;
    let s = session(&pg, "text").await;
    let s = s.as_ref();
    // Each value read here equals the server's text for it (timestamps
    // with `T` and `Z`).
    let cases = [
        "SELECT x, x::text FROM unnest(ARRAY[0, 1.5, -0.0001, 123456789.123456789, 1e20, 1e-20, \
         'NaN', 'Infinity', '-Infinity', 10000, 0.00, 99999999.99990000, -5]::numeric[]) x",
        "SELECT x, x::text FROM unnest(ARRAY['2024-02-29', '1999-12-31', '0001-01-01', \
         '0044-03-15 BC', '5874897-12-31', 'infinity', '-infinity', '1900-03-01']::date[]) x",
        "SELECT x, replace(x::text, ' ', 'T') FROM unnest(ARRAY['2024-02-29 23:59:59.999999', \
         '1970-01-01 00:00:00', '1850-06-01 12:00:00.1']::timestamp[]) x",
        "SELECT x, replace(replace(x::text, ' ', 'T'), '+00', 'Z') FROM unnest(ARRAY[\
         '2024-02-29 23:59:59.999999+00', '2000-01-01 00:00:00+05']::timestamptz[]) x",
        "SELECT x, x::text FROM unnest(ARRAY['00:00:00', '23:59:59.000001', '24:00:00', \
         '12:30']::time[]) x",
    ];
    for sql in cases {
        for row in values(s, sql, &[]).await {
            let shown = match &row[0] {
                Value::Str(x) | Value::Date(x) | Value::Timestamp(x) | Value::Time(x) => x.clone(),
                v => panic!("{v:?}"),
            };
            assert_eq!(text(&shown), row[1], "{sql}");
        }
    }
    assert_eq!(
        values(
            s,
            "SELECT 'infinity'::timestamptz, '0044-03-15 10:00:00 BC'::timestamp",
            &[]
        )
        .await,
        [[
            Value::Timestamp("infinity".into()),
            Value::Timestamp("0044-03-15T10:00:00 BC".into())
        ]]
    );
    // What is read binds back to the same value.
    for (v, ty) in [
        (Value::Date("0044-03-15 BC".into()), "date"),
        (
            Value::Timestamp("0044-03-15T10:00:00 BC".into()),
            "timestamp",
        ),
        (Value::Timestamp("-infinity".into()), "timestamptz"),
        (Value::Time("24:00:00".into()), "time"),
    ] {
        let sql = format!("SELECT $1::{ty}");
        assert_eq!(values(s, &sql, std::slice::from_ref(&v)).await, [[v]]);
    }
    // Types read as text: several columns and rows, NULLs among them.
    let rows = s
        .query(
            "SELECT x AS iv, ARRAY[x] AS arr, '1.5'::money AS m, inet '10.0.0.1/8' AS ip, \
             int4range(1, x::int) AS r, B'101' AS bits \
             FROM (VALUES (1), (NULL), (3)) v(x) ORDER BY x NULLS LAST",
            &[],
        )
        .await
        .unwrap();
    for c in &rows.columns[1..] {
        assert_eq!(c.kind, Some(qwasr_wasi_sql::Kind::Str), "{}", c.name);
    }
    assert_eq!(rows.rows.len(), 3);
    assert_eq!(rows.rows[0][1], text("{1}"));
    assert_eq!(rows.rows[1][4], text("[1,3)"));
    assert_eq!(rows.rows[0][3], text("10.0.0.1/8"));
    assert_eq!(rows.rows[0][5], text("101"));
    assert_eq!(rows.rows[2][1], text("{NULL}"));
    assert_eq!(rows.rows[2][4], text("[1,)"));
    assert_eq!(rows.rows[2][0], Value::Null);
    assert_eq!(values(s, "SELECT pg_sleep(0)", &[]).await, [[text("")]]);
    // Anonymous records have no input function: the server cannot read them back.
    assert_eq!(
        err(s.query("SELECT (1, 'a') AS r", &[])).await,
        "reading column `r` of `SELECT (1, 'a') AS r` (PostgreSQL type record) as text: input \
         of anonymous composite types is not implemented (SQLSTATE 0A000); CONTEXT: unnamed \
         portal parameter $1; cast it to text in the statement (`(…)::text AS r`)"
    );
    assert_eq!(
        values(s, "SELECT (1, 'a')::text AS r", &[]).await,
        [[text("(1,a)")]]
    );
    assert_eq!(
        values(s, "SELECT 'x'::\"char\", 'abc'::name, 42::oid", &[]).await,
        [[text("x"), text("abc"), Value::Uint32(42)]]
    );
}

#[tokio::test]
async fn database_errors_keep_the_servers_message() {
    let env = Env::new();
    let pg = env.backend(&[]).await;
    let s = session(&pg, "e").await;
    let s = s.as_ref();
    assert_eq!(
        err(s.exec("SELEC 1", &[])).await,
        "running `SELEC 1`: syntax error at or near \"SELEC\" at character 1 (SQLSTATE 42601)"
    );
    assert_eq!(
        err(s.query("SELEC $1", &[int(1)])).await,
        "preparing `SELEC $1`: syntax error at or near \"SELEC\" at character 1 (SQLSTATE 42601)"
    );
    assert_eq!(
        err(s.query("SELECT * FROM nope", &[])).await,
        "preparing `SELECT * FROM nope`: relation \"nope\" does not exist at character 15 \
         (SQLSTATE 42P01)"
    );
    exec(
        s,
        "CREATE TABLE parent(id int PRIMARY KEY);
         CREATE TABLE t(id int PRIMARY KEY, name text NOT NULL CHECK (name <> ''),
                        p int REFERENCES parent(id))",
        &[],
    )
    .await;
    let insert = "INSERT INTO t VALUES ($1, $2, $3)";
    exec(s, insert, &[int(1), text("a"), Value::Null]).await;
    let cases = [
        (
            vec![int(1), text("b"), Value::Null],
            "duplicate key value violates unique constraint \"t_pkey\" (SQLSTATE 23505); \
             DETAIL: Key (id)=(1) already exists.",
        ),
        (
            vec![int(2), Value::Null, Value::Null],
            "null value in column \"name\" of relation \"t\" violates not-null constraint \
             (SQLSTATE 23502); DETAIL: Failing row contains (2, null, null).",
        ),
        (
            vec![int(2), text(""), Value::Null],
            "new row for relation \"t\" violates check constraint \"t_name_check\" \
             (SQLSTATE 23514); DETAIL: Failing row contains (2, , null).",
        ),
        (
            vec![int(2), text("b"), int(7)],
            "insert or update on table \"t\" violates foreign key constraint \"t_p_fkey\" \
             (SQLSTATE 23503); DETAIL: Key (p)=(7) is not present in table \"parent\".",
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
        "preparing `SELECT 1; SELECT 2`: cannot insert multiple commands into a prepared \
         statement (SQLSTATE 42601)"
    );
    let e = err(s.exec(
        "DO $$ BEGIN RAISE EXCEPTION 'boom' USING HINT = 'h'; END $$",
        &[],
    ))
    .await;
    assert!(e.ends_with("boom (SQLSTATE P0001); HINT: h; CONTEXT: PL/pgSQL function inline_code_block line 1 at RAISE"), "{e}");
    // The session is still usable after every error.
    assert_eq!(values(s, "SELECT count(*) FROM t", &[]).await, [[int(1)]]);
}

#[tokio::test]
async fn exec_counts_changed_rows() {
    let env = Env::new();
    let pg = env.backend(&[]).await;
    let s = session(&pg, "n").await;
    let s = s.as_ref();
    assert_eq!(exec(s, "CREATE TABLE t(x int)", &[]).await, 0);
    let three = "INSERT INTO t VALUES ($1), ($2), ($3)";
    assert_eq!(exec(s, three, &[int(1), int(2), int(3)]).await, 3);
    assert_eq!(
        exec(s, "UPDATE t SET x = x + 10 WHERE x > $1", &[int(1)]).await,
        2
    );
    assert_eq!(exec(s, "UPDATE t SET x = 0 WHERE x > 100", &[]).await, 0);
    assert_eq!(exec(s, "SELECT * FROM t", &[]).await, 0);
    assert_eq!(exec(s, "SELECT * FROM t WHERE x > $1", &[int(0)]).await, 0);
    assert_eq!(
        exec(s, "INSERT INTO t VALUES (4) RETURNING x", &[]).await,
        1
    );
    assert_eq!(exec(s, "DELETE FROM t WHERE x = $1", &[int(1)]).await, 1);
    assert_eq!(
        exec(
            s,
            "WITH gone AS (DELETE FROM t WHERE x = 4 RETURNING x) \
             INSERT INTO t SELECT x + 1 FROM gone",
            &[]
        )
        .await,
        1
    );
    // Several statements without parameters: the rows they changed together.
    assert_eq!(
        exec(
            s,
            "DELETE FROM t WHERE x = 5; INSERT INTO t VALUES (5); SELECT 1; CREATE INDEX i ON t(x)",
            &[]
        )
        .await,
        2
    );
    assert_eq!(
        values(s, "SELECT x FROM t ORDER BY x", &[]).await,
        [[Value::Int32(5)], [Value::Int32(12)], [Value::Int32(13)]]
    );
    // A failing migration changes nothing: it runs as one transaction.
    let e = err(s.exec("INSERT INTO t VALUES (6); SELEC", &[])).await;
    assert!(e.contains("syntax error"), "{e}");
    assert_eq!(values(s, "SELECT count(*) FROM t", &[]).await, [[int(3)]]);
    assert_eq!(exec(s, "", &[]).await, 0);
    // COPY has no data to read or write here.
    for sql in [
        "COPY t FROM STDIN",
        "COPY (SELECT 1) TO stdout WITH (FORMAT csv)",
    ] {
        assert_eq!(
            err(s.query(sql, &[])).await,
            format!(
                "`{sql}` is not supported: wasi:sql has no stream for COPY data; use INSERT, or \
                 COPY from or to a file on the server"
            )
        );
    }
    assert_eq!(values(s, "SELECT count(*) FROM t", &[]).await, [[int(3)]]);
}

#[tokio::test]
async fn a_transaction_spans_calls_and_is_rolled_back_if_left_open() {
    let env = Env::new();
    // One connection: each session gets the previous one's.
    let pg = env.backend(&[("pool-size", "1")]).await;
    let s = session(&pg, "tx").await;
    exec(s.as_ref(), "CREATE TABLE t(x int)", &[]).await;
    let pid = values(s.as_ref(), "SELECT pg_backend_pid()", &[]).await;
    exec(s.as_ref(), "BEGIN", &[]).await;
    exec(s.as_ref(), "INSERT INTO t VALUES (1)", &[]).await;
    exec(s.as_ref(), "SET application_name = 'changed'", &[]).await;
    exec(s.as_ref(), "CREATE TEMP TABLE scratch(x int)", &[]).await;
    assert_eq!(
        values(s.as_ref(), "SELECT count(*) FROM t", &[]).await,
        [[int(1)]]
    );
    drop(s);
    let s = session(&pg, "tx").await;
    assert_eq!(
        values(s.as_ref(), "SELECT pg_backend_pid()", &[]).await,
        pid
    );
    assert_eq!(
        values(s.as_ref(), "SELECT count(*) FROM t", &[]).await,
        [[int(0)]]
    );
    assert_eq!(
        values(s.as_ref(), "SHOW application_name", &[]).await,
        [[text("qwasr")]]
    );
    assert_eq!(
        values(s.as_ref(), "SHOW TimeZone", &[]).await,
        [[text("UTC")]]
    );
    // A failed statement aborts the transaction until ROLLBACK, as in PostgreSQL.
    exec(s.as_ref(), "BEGIN", &[]).await;
    exec(s.as_ref(), "INSERT INTO t VALUES (2)", &[]).await;
    assert!(s.exec("SELEC", &[]).await.is_err());
    let e = err(s.exec("INSERT INTO t VALUES (3)", &[])).await;
    assert!(e.contains("current transaction is aborted"), "{e}");
    exec(s.as_ref(), "ROLLBACK", &[]).await;
    exec(s.as_ref(), "START TRANSACTION", &[]).await;
    exec(s.as_ref(), "INSERT INTO t VALUES (4)", &[]).await;
    exec(s.as_ref(), "COMMIT", &[]).await;
    drop(s);
    // A session left in an aborted transaction is cleaned up too.
    let s = session(&pg, "tx").await;
    exec(s.as_ref(), "BEGIN", &[]).await;
    assert!(s.exec("SELEC", &[]).await.is_err());
    drop(s);
    let s = session(&pg, "tx").await;
    assert_eq!(
        values(s.as_ref(), "SELECT x FROM t", &[]).await,
        [[Value::Int32(4)]]
    );
}

#[tokio::test]
async fn a_slow_statement_is_cancelled_and_holds_up_nobody() {
    let env = Env::new();
    let pg = Arc::new(env.backend(&[("timeout", "1s")]).await);
    let slow = session(&pg, "slow").await;
    let quick = session(&pg, "slow").await;
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let r = slow
            .query("SELECT pg_sleep(5)", &[])
            .await
            .map_err(|e| format!("{e:#}"));
        (r, started.elapsed(), slow)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        values(quick.as_ref(), "SELECT 1", &[]).await,
        [[Value::Int32(1)]]
    );
    let quick_done = started.elapsed();
    assert!(!task.is_finished());
    let (r, slow_done, slow) = task.await.unwrap();
    assert_eq!(
        r.unwrap_err(),
        "`SELECT pg_sleep(5)` did not finish within 1s (the PostgreSQL timeout) and was cancelled"
    );
    assert!(quick_done < Duration::from_millis(900), "{quick_done:?}");
    assert!(slow_done < Duration::from_millis(2500), "{slow_done:?}");
    // The session goes on at once, and the server stopped the statement.
    assert_eq!(
        values(slow.as_ref(), "SELECT 2", &[]).await,
        [[Value::Int32(2)]]
    );
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' \
                   AND state = 'active' AND datname = current_database()";
    assert_eq!(values(quick.as_ref(), running, &[]).await, [[int(0)]]);
    assert!(started.elapsed() < Duration::from_secs(4));

    // A statement whose future is dropped is cancelled too.
    let started = Instant::now();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        slow.query("SELECT pg_sleep(5)", &[]),
    );
    assert!(abandoned.await.is_err());
    assert_eq!(
        values(slow.as_ref(), "SELECT 3", &[]).await,
        [[Value::Int32(3)]]
    );
    assert_eq!(values(quick.as_ref(), running, &[]).await, [[int(0)]]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_name_gets_its_own_database() {
    let env = Env::new();
    let pg = env.backend(&[]).await;
    let long = "é".repeat(2048);
    let names = [
        "../x",
        "a/b",
        "a\0b",
        "",
        ".",
        "A",
        "a",
        "~%41",
        long.as_str(),
        "日本",
    ];
    for (i, name) in names.iter().enumerate() {
        let s = session(&pg, name).await;
        exec(s.as_ref(), "CREATE TABLE t(name bytea, i int8)", &[]).await;
        exec(
            s.as_ref(),
            "INSERT INTO t VALUES ($1, $2)",
            &[Value::Binary(name.as_bytes().to_vec()), int(i as i64)],
        )
        .await;
    }
    for (i, name) in names.iter().enumerate() {
        let s = session(&pg, name).await;
        assert_eq!(
            values(s.as_ref(), "SELECT * FROM t", &[]).await,
            [[Value::Binary(name.as_bytes().to_vec()), int(i as i64)]],
            "{name:?}"
        );
    }
    let databases = env.databases().await;
    assert_eq!(databases.len(), names.len(), "{databases:?}");
    for name in names {
        assert!(databases.contains(&pg.database_name(name)), "{name:?}");
    }
    // Without a prefix, PostgreSQL's templates are refused.
    let bare = Postgres::new(Settings::new(&config(&[]), SERVICE).unwrap(), "", 1 << 20).unwrap();
    let e = err(bare.open("template1")).await;
    assert_eq!(
        e,
        "database `template1` is one of PostgreSQL's templates and cannot be opened; use \
         another name (or set POSTGRES_PREFIX)"
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_created_is_named() {
    let env = Env::new();
    let role = format!("{}user", env.prefix);
    env.admin()
        .await
        .batch_execute(&format!("CREATE ROLE {role} LOGIN NOCREATEDB"))
        .await
        .unwrap();
    let url = server_url().replacen("postgres@", &format!("{role}:pw123@"), 1);
    let pg = Postgres::connect(&config(&[("url", &url), ("prefix", &env.prefix)]))
        .await
        .unwrap();
    let e = err(pg.open("orders")).await;
    let db = format!("{}orders", env.prefix);
    assert_eq!(
        e,
        format!(
            "database `orders` is kept in PostgreSQL database `{db}`, which does not exist, \
             and user `{role}` may not create it (permission denied to create database); \
             create it with `CREATE DATABASE \"{db}\"` (or grant CREATEDB)"
        )
    );
    // Once it exists, it opens.
    env.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE \"{db}\" OWNER {role}"))
        .await
        .unwrap();
    let s = session(&pg, "orders").await;
    assert_eq!(
        values(s.as_ref(), "SELECT current_user::text", &[]).await,
        [[text(&role)]]
    );
}

#[tokio::test]
async fn pool_size_bounds_open_connections() {
    let env = Env::new();
    let pg = env
        .backend(&[("pool-size", "1"), ("timeout", "300ms")])
        .await;
    let first = session(&pg, "p").await;
    let e = err(pg.open("p")).await;
    let db = format!("{}p", env.prefix);
    assert_eq!(
        e,
        format!(
            "opening database `p`: all 1 connections to PostgreSQL database `{db}` are in use by \
             other guest connections (pool-size) and none was free within 300ms"
        )
    );
    // Another database has its own pool.
    session(&pg, "q").await;
    drop(first);
    session(&pg, "p").await;
}

#[tokio::test]
async fn results_larger_than_the_limit_are_refused() {
    let env = Env::new();
    let mut pg = env.backend(&[]).await;
    Arc::get_mut(&mut pg.shared).unwrap().max_result_bytes = 10_000;
    let s = session(&pg, "big").await;
    let sql = "SELECT repeat('x', 1000) FROM generate_series(1, 100)";
    assert_eq!(
        err(s.query(sql, &[])).await,
        format!(
            "the result of `{sql}` is larger than 10000 bytes ([limits] memory); select fewer \
             rows or columns"
        )
    );
    assert_eq!(
        values(s.as_ref(), "SELECT 1", &[]).await,
        [[Value::Int32(1)]]
    );
}

#[tokio::test]
async fn settings_are_checked() {
    let e = Postgres::connect(&config(&[("pool", "4")]))
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "the postgres sql backend takes the options `url`, `pool-size`, `timeout`, `retries`, \
         `prefix`, but `pool` was given"
    );
    let e = Postgres::connect(&config(&[(
        "url",
        "postgres://u:topsecret@127.0.0.1:1/db?sslmode=verify-full",
    )]))
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("verify-full") && e.contains("does not offer"),
        "{e}"
    );
    assert!(!e.contains("topsecret"), "{e}");
    let e = Postgres::connect(&config(&[("url", "postgres://u:topsecret@h/db?bogus=1")]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("is not a PostgreSQL URL") && !e.contains("topsecret"),
        "{e}"
    );
    let e = Postgres::connect(&config(&[("prefix", &"p".repeat(31))]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("at most 30 bytes"), "{e}");
    // `connect` gives the runtime its context.
    let env = Env::new();
    let cfg = config(&[("url", &env.url), ("prefix", &env.prefix)]);
    assert!(connect(&cfg).await.is_ok());
}

#[tokio::test]
async fn start_up_fails_naming_the_service_without_the_secret() {
    let port = free_port();
    let url = format!("postgres://u:topsecret@127.0.0.1:{port}/db");
    let started = Instant::now();
    let e = Postgres::connect(&config(&[
        ("url", &url),
        ("retries", "2"),
        ("timeout", "2s"),
    ]))
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with(&format!(
            "cannot connect to PostgreSQL at postgres://u:***@127.0.0.1:{port}/db after 2 attempts"
        )),
        "{e}"
    );
    assert!(
        !e.contains("topsecret") && e.contains("POSTGRES_URL"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL cluster of the test's own, on a free port, stopped (and
/// deleted) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    /// Serves TLS (`ssl=on`) with a self-signed certificate.
    tls: bool,
}

impl Cluster {
    fn bin(tool: &str) -> String {
        let dir = std::env::var("QWASR_TEST_PG_BIN")
            .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        format!("{dir}/{tool}")
    }

    /// `tool args` as the `postgres` user when run as root (initdb refuses root).
    fn run(tool: &str, args: &[&str]) {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.trim_ascii() == b"0")
            .unwrap_or(false);
        let mut cmd = if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &Self::bin(tool)]);
            c
        } else {
            std::process::Command::new(Self::bin(tool))
        };
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {out:?}");
    }

    fn new() -> Cluster {
        Self::with_tls(false)
    }

    fn with_tls(tls: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres:", &dir.path().display().to_string()])
            .status();
        let data = dir.path().join("data").display().to_string();
        Self::run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        if tls {
            let (crt, key) = (format!("{data}/server.crt"), format!("{data}/server.key"));
            let out = std::process::Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-x509",
                    "-days",
                    "2",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                ])
                .args(["-newkey", "rsa:2048", "-keyout", &key, "-out", &crt])
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl: {out:?}");
            for f in [&crt, &key] {
                let _ = std::process::Command::new("chown")
                    .args(["postgres:", f])
                    .status();
            }
            let _ = std::process::Command::new("chmod")
                .args(["600", &key])
                .status();
        }
        let cluster = Cluster {
            dir,
            port: free_port(),
            tls,
        };
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn start(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c ssl={}",
            self.port,
            self.dir.path().display(),
            if self.tls { "on" } else { "off" }
        );
        let log = self.dir.path().join("server.log").display().to_string();
        Self::run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "-o", &opts, "start"],
        );
    }

    fn stop(&self) {
        Self::run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &Self::bin("pg_ctl")])
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test]
async fn an_outage_fails_statements_and_recovery_needs_nobody() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::new).await.unwrap());
    // Trust auth ignores the password: it is only here to be kept secret.
    let url = format!(
        "postgres://postgres:s3cretpw@127.0.0.1:{}/postgres",
        cluster.port
    );
    let pg = Postgres::connect(&config(&[
        ("url", &url),
        ("timeout", "2s"),
        ("prefix", "o_"),
    ]))
    .await
    .unwrap();
    let s = session(&pg, "db").await;
    let in_tx = session(&pg, "db").await;
    exec(s.as_ref(), "CREATE TABLE t(x int)", &[]).await;
    exec(in_tx.as_ref(), "BEGIN", &[]).await;
    exec(in_tx.as_ref(), "INSERT INTO t VALUES (1)", &[]).await;

    tokio::task::spawn_blocking({
        let c = cluster.clone();
        move || c.stop()
    })
    .await
    .unwrap();
    let shown = format!(
        "postgres://postgres:***@127.0.0.1:{}/postgres",
        cluster.port
    );
    for (session, sql) in [(&s, "SELECT 1"), (&in_tx, "INSERT INTO t VALUES (2)")] {
        let started = Instant::now();
        let e = err(session.query(sql, &[])).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(e.contains(&format!("PostgreSQL at {shown}")), "{e}");
        assert!(!e.contains("s3cretpw"), "{e}");
    }
    let e = err(pg.open("db")).await;
    assert!(
        e.starts_with(&format!("opening database `db`: PostgreSQL at {shown}: ")),
        "{e}"
    );
    assert!(!e.contains("s3cretpw"), "{e}");

    tokio::task::spawn_blocking({
        let c = cluster.clone();
        move || c.start()
    })
    .await
    .unwrap();

    // The same session goes on with a new connection.
    assert_eq!(
        values(s.as_ref(), "SELECT 1", &[]).await,
        [[Value::Int32(1)]]
    );
    // The one inside a transaction learns it was rolled back.
    let e = err(in_tx.exec("INSERT INTO t VALUES (3)", &[])).await;
    assert!(
        e.contains("lost inside a transaction") && e.contains("ROLLBACK"),
        "{e}"
    );
    let e = err(in_tx.exec("COMMIT", &[])).await;
    assert!(e.contains("nothing of it was committed"), "{e}");
    exec(in_tx.as_ref(), "INSERT INTO t VALUES (4)", &[]).await;
    exec(in_tx.as_ref(), "BEGIN", &[]).await;
    exec(in_tx.as_ref(), "ROLLBACK", &[]).await;
    assert_eq!(
        values(s.as_ref(), "SELECT x FROM t", &[]).await,
        [[Value::Int32(4)]]
    );
    let fresh = session(&pg, "db").await;
    assert_eq!(
        values(fresh.as_ref(), "SELECT count(*) FROM t", &[]).await,
        [[int(1)]]
    );
    cluster.stop();
}

#[tokio::test]
async fn tls_is_used_when_offered_and_required_when_asked() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::with_tls(true))
        .await
        .unwrap();
    let port = cluster.port;
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    for (mode, encrypted) in [("require", true), ("prefer", true), ("disable", false)] {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode={mode}");
        let pg = Postgres::connect(&config(&[("url", &url), ("timeout", "1s")]))
            .await
            .unwrap();
        let s = session(&pg, "db").await;
        assert_eq!(
            values(s.as_ref(), ssl, &[]).await,
            [[Value::Boolean(encrypted)]],
            "{mode}"
        );
        // Cancel requests go through TLS too.
        let e = err(s.query("SELECT pg_sleep(5)", &[])).await;
        assert!(e.contains("was cancelled"), "{e}");
        assert_eq!(
            values(s.as_ref(), "SELECT 1", &[]).await,
            [[Value::Int32(1)]]
        );
    }
    // The shared test server has no TLS: `require` fails, naming the service.
    let url = format!("{}?sslmode=require", server_url());
    let e = Postgres::connect(&config(&[("url", &url), ("retries", "1")]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot connect to PostgreSQL") && e.contains("server does not support TLS"),
        "{e}"
    );
    drop(cluster);
}
