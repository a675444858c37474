//! notes: a small notes service over wasi:sql (connection `notes`).
//!
//! - `POST /notes` with `title\nbody` → 201 `created <id>`; a title already
//!   used → 409 with the database's error.
//! - `GET /notes[?search=<s>]` → `<id>\t<title>` lines, by id.
//! - `GET /notes/<id>` → `<title>\n<body>`; `DELETE /notes/<id>` → 204.
//! - `POST /sql` runs the body as SQL → `name=value, ...` per row, 400 on error.
//! - `GET /types` stores one parameter of every `data-type` case (and a
//!   NULL) in columns declared with matching SQL types, reads the row back
//!   and prints what comes back, case and value.

wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/notes",
    generate_all,
});
guest_util::http_helpers!(wasi::io0_2_12::streams);

use exports::wasi::http::incoming_handler::Guest;
use guest_util::{query_param, split_path_query};
use http::respond;
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wasi::sql::readwrite;
use wasi::sql::types::{Connection, DataType, Error, Row, Statement};

/// The table, in the dialect of each database the guest may be given: SQL
/// has no portable auto-increment key.
const SCHEMA_SQLITE: &str = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, \
     title TEXT NOT NULL UNIQUE, body TEXT, created TIMESTAMP DEFAULT CURRENT_TIMESTAMP)";
const SCHEMA_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS notes (id BIGSERIAL PRIMARY KEY, \
     title TEXT NOT NULL UNIQUE, body TEXT, created TIMESTAMP DEFAULT CURRENT_TIMESTAMP)";

/// Which database serves the connection: only SQLite has `sqlite_version()`.
#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Sqlite,
    Postgres,
}

fn dialect(db: &Connection) -> Dialect {
    match query(db, "SELECT sqlite_version()", vec![]) {
        Ok(_) => Dialect::Sqlite,
        Err(_) => Dialect::Postgres,
    }
}

/// Request bodies here become SQL parameters, so they are read whole, up to this.
const MAX_BODY: usize = 1 << 20;

struct Notes;

impl Guest for Notes {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = split_path_query(&path_with_query);
        let db = match Connection::open("notes") {
            Ok(db) => db,
            Err(e) => {
                return respond(
                    out,
                    500,
                    &format!("cannot open the notes database: {}\n", e.trace()),
                )
            }
        };
        let dialect = dialect(&db);
        let schema = match dialect {
            Dialect::Sqlite => SCHEMA_SQLITE,
            Dialect::Postgres => SCHEMA_POSTGRES,
        };
        if let Err(e) = exec(&db, schema, vec![]) {
            return respond(
                out,
                500,
                &format!("cannot create the notes table: {}\n", e.trace()),
            );
        }
        let id = path.strip_prefix("/notes/");
        match (request.method(), path) {
            (Method::Post, "/notes") => create(&db, &request, out),
            (Method::Get, "/notes") => list(&db, query_param(query, "search"), out),
            (Method::Get, _) if id.is_some() => show(&db, id.unwrap_or_default(), out),
            (Method::Delete, _) if id.is_some() => delete(&db, id.unwrap_or_default(), out),
            (Method::Post, "/sql") => raw_sql(&db, &request, out),
            (Method::Get, "/types") => types(&db, dialect, out),
            (_, "/notes" | "/sql" | "/types") => respond(out, 405, "method not allowed\n"),
            _ if id.is_some() => respond(out, 405, "method not allowed\n"),
            _ => respond(out, 404, "try /notes, /notes/<id>, /sql or /types\n"),
        }
    }
}

fn query(db: &Connection, sql: &str, params: Vec<DataType>) -> Result<Vec<Row>, Error> {
    readwrite::query(db, &Statement::prepare(sql, &params)?)
}

fn exec(db: &Connection, sql: &str, params: Vec<DataType>) -> Result<u32, Error> {
    readwrite::exec(db, &Statement::prepare(sql, &params)?)
}

fn create(db: &Connection, request: &IncomingRequest, out: ResponseOutparam) {
    let text = match http::read_small_body(request, MAX_BODY).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => return respond(out, 400, "the body is not UTF-8\n"),
        Err(e) => return respond(out, 400, &format!("{e}\n")),
    };
    let (title, body) = text.split_once('\n').unwrap_or((&text, ""));
    let title = title.strip_suffix('\r').unwrap_or(title);
    if title.is_empty() {
        return respond(out, 400, "the body is `title\\nbody`: the title is empty\n");
    }
    let params = vec![
        DataType::Str(Some(title.into())),
        DataType::Str(Some(body.into())),
    ];
    match query(
        db,
        "INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING id",
        params,
    ) {
        Ok(rows) => match rows.first().and_then(|r| r.fields.first()) {
            Some(field) => respond(out, 201, &format!("created {}\n", plain(&field.value))),
            None => respond(out, 500, "the insert returned no id\n"),
        },
        Err(e) => {
            let trace = e.trace();
            // SQLite says "UNIQUE constraint failed", PostgreSQL "duplicate key value".
            let lower = trace.to_lowercase();
            let status = if lower.contains("unique") || lower.contains("duplicate") {
                409
            } else {
                500
            };
            respond(out, status, &format!("{trace}\n"))
        }
    }
}

fn list(db: &Connection, search: Option<String>, out: ResponseOutparam) {
    let rows = match search {
        Some(s) => query(
            db,
            "SELECT id, title FROM notes WHERE title LIKE '%' || $1 || '%' ORDER BY id",
            vec![DataType::Str(Some(s))],
        ),
        None => query(db, "SELECT id, title FROM notes ORDER BY id", vec![]),
    };
    match rows {
        Ok(rows) => {
            let body: String = rows
                .iter()
                .map(|r| format!("{}\t{}\n", field(r, "id"), field(r, "title")))
                .collect();
            respond(out, 200, &body)
        }
        Err(e) => respond(out, 500, &format!("{}\n", e.trace())),
    }
}

fn show(db: &Connection, id: &str, out: ResponseOutparam) {
    let Ok(n) = id.parse::<i64>() else {
        return respond(out, 404, &format!("no note {id}\n"));
    };
    match query(
        db,
        "SELECT title, body FROM notes WHERE id = $1",
        vec![DataType::Int64(Some(n))],
    ) {
        Ok(rows) => match rows.first() {
            Some(row) => respond(
                out,
                200,
                &format!("{}\n{}", field(row, "title"), text(row, "body")),
            ),
            None => respond(out, 404, &format!("no note {id}\n")),
        },
        Err(e) => respond(out, 500, &format!("{}\n", e.trace())),
    }
}

fn delete(db: &Connection, id: &str, out: ResponseOutparam) {
    let Ok(n) = id.parse::<i64>() else {
        return respond(out, 404, &format!("no note {id}\n"));
    };
    match exec(
        db,
        "DELETE FROM notes WHERE id = $1",
        vec![DataType::Int64(Some(n))],
    ) {
        Ok(0) => respond(out, 404, &format!("no note {id}\n")),
        Ok(_) => respond(out, 204, ""),
        Err(e) => respond(out, 500, &format!("{}\n", e.trace())),
    }
}

fn raw_sql(db: &Connection, request: &IncomingRequest, out: ResponseOutparam) {
    let sql = match http::read_small_body(request, MAX_BODY).map(String::from_utf8) {
        Ok(Ok(sql)) => sql,
        Ok(Err(_)) => return respond(out, 400, "the body is not UTF-8\n"),
        Err(e) => return respond(out, 400, &format!("{e}\n")),
    };
    match query(db, &sql, vec![]) {
        Ok(rows) => {
            let body: String = rows
                .iter()
                .map(|row| {
                    let pairs: Vec<String> = row
                        .fields
                        .iter()
                        .map(|f| format!("{}={}", f.name, plain(&f.value)))
                        .collect();
                    pairs.join(", ") + "\n"
                })
                .collect();
            respond(out, 200, &body)
        }
        Err(e) => respond(out, 400, &format!("{}\n", e.trace())),
    }
}

/// One parameter of each `data-type` case and a NULL, stored in typed
/// columns and selected back: every case both ways.
/// PostgreSQL has no unsigned integers: there they are stored as BIGINT.
fn types(db: &Connection, dialect: Dialect, out: ResponseOutparam) {
    let table = match dialect {
        Dialect::Sqlite => "CREATE TEMP TABLE IF NOT EXISTS types (i32 INT4, i64 BIGINT, \
            u32 INT UNSIGNED, u64 BIGINT UNSIGNED, f32 FLOAT4, f64 DOUBLE, str TEXT, \
            bool BOOLEAN, date DATE, time TIME, timestamp TIMESTAMP, binary BLOB, none TEXT)",
        Dialect::Postgres => "CREATE TEMP TABLE IF NOT EXISTS types (i32 INT4, i64 BIGINT, \
            u32 BIGINT, u64 BIGINT, f32 FLOAT4, f64 DOUBLE PRECISION, str TEXT, \
            bool BOOLEAN, date DATE, time TIME, timestamp TIMESTAMPTZ, \"binary\" BYTEA, none TEXT)",
    };
    if let Err(e) = exec(db, table, Vec::new()).and_then(|_| exec(db, "DELETE FROM types", Vec::new())) {
        return respond(out, 500, &format!("{}\n", e.trace()));
    }
    let params = vec![
        DataType::Int32(Some(-5)),
        DataType::Int64(Some(-9_000_000_000)),
        DataType::Uint32(Some(4_000_000_000)),
        DataType::Uint64(Some(9_000_000_000)),
        DataType::Float(Some(1.5)),
        DataType::Double(Some(2.25)),
        DataType::Str(Some("héllo".into())),
        DataType::Boolean(Some(true)),
        DataType::Date(Some("2024-01-02".into())),
        DataType::Time(Some("03:04:05".into())),
        DataType::Timestamp(Some("2024-01-02T03:04:05Z".into())),
        DataType::Binary(Some(vec![0, 1, 2, 255])),
        DataType::Str(None),
    ];
    let insert = "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    if let Err(e) = exec(db, insert, params) {
        return respond(out, 500, &format!("{}\n", e.trace()));
    }
    match query(db, "SELECT * FROM types", Vec::new()) {
        Ok(rows) => {
            let body: String = rows
                .iter()
                .flat_map(|row| row.fields.iter())
                .map(|f| {
                    let (case, value) = parts(&f.value);
                    format!(
                        "{}={case}({})\n",
                        f.name,
                        value.unwrap_or_else(|| "null".into())
                    )
                })
                .collect();
            respond(out, 200, &body)
        }
        Err(e) => respond(out, 500, &format!("{}\n", e.trace())),
    }
}

/// The variant case's name and its value as text (`None` for NULL).
fn parts(value: &DataType) -> (&'static str, Option<String>) {
    fn s<T: ToString>(v: &Option<T>) -> Option<String> {
        v.as_ref().map(T::to_string)
    }
    match value {
        DataType::Int32(v) => ("int32", s(v)),
        DataType::Int64(v) => ("int64", s(v)),
        DataType::Uint32(v) => ("uint32", s(v)),
        DataType::Uint64(v) => ("uint64", s(v)),
        DataType::Float(v) => ("float", s(v)),
        DataType::Double(v) => ("double", s(v)),
        DataType::Str(v) => ("str", v.clone()),
        DataType::Boolean(v) => ("boolean", s(v)),
        DataType::Date(v) => ("date", v.clone()),
        DataType::Time(v) => ("time", v.clone()),
        DataType::Timestamp(v) => ("timestamp", v.clone()),
        DataType::Binary(v) => ("binary", v.as_ref().map(|b| format!("{b:?}"))),
    }
}

/// A value as text, `null` for NULL.
fn plain(value: &DataType) -> String {
    parts(value).1.unwrap_or_else(|| "null".into())
}

/// A column of a row by name, as text (`null` for NULL or a missing column).
fn field(row: &Row, name: &str) -> String {
    row.fields
        .iter()
        .find(|f| f.name == name)
        .map_or_else(|| "null".into(), |f| plain(&f.value))
}

/// Like [`field`], but NULL reads as empty (a note without a body).
fn text(row: &Row, name: &str) -> String {
    row.fields
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| parts(&f.value).1)
        .unwrap_or_default()
}

export!(Notes);
