//! everything: one request touches every interface qwasr serves, on the
//! runtime's defaults (this app has no `qwasr.toml`).
//!
//! `GET /` increments `hits` in keyvalue bucket `default`, writes object
//! `hello` in blobstore container `everything` and reads it back, adds a row
//! to table `t` of SQL database `everything` and counts the rows, sends a
//! message to topic `events`, and reads config `greeting` (default `hello`):
//!
//!     hits=<n> blob=hello rows=<n> sent=ok greeting=<g>
//!
//! A failing step → 500 naming it.

wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/everything",
    generate_all,
});
guest_util::http_helpers!(wasi::io0_2_12::streams);

use exports::wasi::http::incoming_handler::Guest;
use http::respond;
use wasi::blobstore::blobstore as blobs;
use wasi::blobstore::types::{IncomingValue, OutgoingValue};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wasi::keyvalue0_2_0_draft2::{atomics, store};
use wasi::messaging::producer;
use wasi::messaging::types::{Client, Message};
use wasi::sql::readwrite;
use wasi::sql::types::{Connection, DataType, Statement};

struct Everything;

impl Guest for Everything {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get) {
            return respond(out, 405, "only GET is supported\n");
        }
        if request.path_with_query().as_deref().unwrap_or("/") != "/" {
            return respond(out, 404, "only / is served\n");
        }
        match run() {
            Ok(text) => respond(out, 200, &text),
            Err(e) => respond(out, 500, &format!("{e}\n")),
        }
    }
}

fn run() -> Result<String, String> {
    let hits = hit().map_err(|e| format!("keyvalue: {e:?}"))?;
    let blob = blob().map_err(|e| format!("blobstore: {e}"))?;
    let rows = rows(hits).map_err(|e| format!("sql: {e}"))?;
    send(hits).map_err(|e| format!("messaging: {e:?}"))?;
    let greeting = match wasi::config::store::get("greeting") {
        Ok(g) => g.unwrap_or_else(|| "hello".into()),
        Err(e) => return Err(format!("config: {e:?}")),
    };
    Ok(format!(
        "hits={hits} blob={blob} rows={rows} sent=ok greeting={greeting}\n"
    ))
}

fn hit() -> Result<i64, store::Error> {
    let bucket = store::open("default")?;
    atomics::increment(&bucket, "hits", 1)
}

fn blob() -> Result<String, String> {
    let name = "everything";
    let container = if blobs::container_exists(name)? {
        blobs::get_container(name)?
    } else {
        blobs::create_container(name).or_else(|e| blobs::get_container(name).map_err(|_| e))?
    };
    let value = OutgoingValue::new_outgoing_value();
    let stream = value
        .outgoing_value_write_body()
        .map_err(|()| "no body stream".to_string())?;
    guest_util::write_all!(stream, b"hello")
        .and_then(|()| stream.blocking_flush())
        .map_err(|e| format!("writing: {e:?}"))?;
    drop(stream);
    container.write_data("hello", &value)?;
    OutgoingValue::finish(value)?;
    let data =
        IncomingValue::incoming_value_consume_sync(container.get_data("hello", 0, u64::MAX)?)?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

fn rows(hits: i64) -> Result<String, String> {
    let trace = |e: wasi::sql::types::Error| e.trace();
    let db = Connection::open("everything").map_err(trace)?;
    let exec = |sql: &str, params: &[DataType]| {
        readwrite::exec(&db, &Statement::prepare(sql, params).map_err(trace)?).map_err(trace)
    };
    exec("CREATE TABLE IF NOT EXISTS t (n INTEGER)", &[])?;
    exec(
        "INSERT INTO t (n) VALUES ($1)",
        &[DataType::Int64(Some(hits))],
    )?;
    let count = Statement::prepare("SELECT COUNT(*) AS c FROM t", &[]).map_err(trace)?;
    let rows = readwrite::query(&db, &count).map_err(trace)?;
    let value = rows
        .first()
        .and_then(|r| r.fields.first())
        .map(|f| &f.value);
    match value {
        Some(DataType::Int64(Some(n))) => Ok(n.to_string()),
        Some(DataType::Int32(Some(n))) => Ok(n.to_string()),
        Some(DataType::Uint64(Some(n))) => Ok(n.to_string()),
        Some(DataType::Uint32(Some(n))) => Ok(n.to_string()),
        Some(DataType::Str(Some(n))) => Ok(n.clone()),
        other => Err(format!("COUNT(*) returned {other:?}")),
    }
}

fn send(hits: i64) -> Result<(), wasi::messaging::types::Error> {
    let client = Client::connect("default")?;
    producer::send(
        &client,
        "events",
        Message::new(format!("hit {hits}").as_bytes()),
    )
}

export!(Everything);
