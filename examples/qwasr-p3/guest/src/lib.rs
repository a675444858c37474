//! qwasr-p3: a WASI 0.3 service in the style of the original Qwasr's
//! examples: one router over the `async func` flavours of wasi:keyvalue
//! (0.2.0-draft2), wasi:blobstore and wasi:sql (0.2.0-draft), exporting
//! `wasi:http/handler@0.3.0`.
//!
//! - `PUT /kv/<key>` body → set in bucket `default` → 204;
//!   `GET /kv/<key>` → 200 the value, or 404.
//! - `POST /counter` → increments `hits` in `default` → 200 `<n>`.
//! - `PUT /files/<name>` body → object `<name>` in container `files`
//!   (created if missing), streamed in → 201 `stored <n> bytes`;
//!   `GET /files/<name>` → 200 the bytes, streamed out, or 404.
//! - `POST /notes` body `title` → 201 `created <id>`;
//!   `GET /notes` → 200 `<id>\t<title>` lines (database `notes`).
//!
//! An interface's error is a 500 with the interface's error text.

wit_bindgen::generate!({
    path: "../../wit-p3",
    world: "qwasr:examples-p3/qwasr-p3",
    generate_all,
});
guest_util::http_p3_helpers!();

use exports::wasi::http::handler::Guest;
use guest_util::{percent_decode, split_path_query, CHUNK};
use http::{respond, respond_with, RequestBody};
use wasi::blobstore::blobstore;
use wasi::blobstore::container::Container;
use wasi::blobstore::types::{IncomingValue, OutgoingValue};
use wasi::http::types::{ErrorCode, Method, Request, Response};
use wasi::io::streams::StreamError;
use wasi::keyvalue::{atomics, store};
use wasi::sql::readwrite;
use wasi::sql::types::{Connection, DataType, Row, Statement};

/// A handler's answer: a response, or the error text of a 500.
type Reply = Result<Response, String>;

/// Values and note titles are read whole (they are single values); past this, 413.
const MAX_VALUE: usize = 1 << 20;

struct Http;

impl Guest for Http {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        Ok(route(request)
            .await
            .unwrap_or_else(|e| respond(500, e + "\n")))
    }
}

/// The route table: method and path segments to a handler.
async fn route(request: Request) -> Reply {
    let path_with_query = request.get_path_with_query().unwrap_or_default();
    let (path, _query) = split_path_query(&path_with_query);
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.get_method(), segments.as_slice()) {
        (Method::Put, ["kv", key]) => kv_set(request, key).await,
        (Method::Get, ["kv", key]) => kv_get(key).await,
        (Method::Post, ["counter"]) => counter().await,
        (Method::Put, ["files", name]) => file_put(request, name).await,
        (Method::Get, ["files", name]) => file_get(name).await,
        (Method::Post, ["notes"]) => note_create(request).await,
        (Method::Get, ["notes"]) => notes_list().await,
        (_, ["kv", _] | ["counter"] | ["files", _] | ["notes"]) => {
            Ok(respond(405, "method not allowed\n"))
        }
        _ => Ok(respond(
            404,
            "try /kv/<key>, /counter, /files/<name> or /notes\n",
        )),
    }
}

// ------------------------------------------------------------------ keyvalue

/// The interface's error as text (`access-denied`, …, or the store's own words).
fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "keyvalue: no-such-store".into(),
        store::Error::AccessDenied => "keyvalue: access-denied".into(),
        store::Error::Other(text) => format!("keyvalue: {text}"),
    }
}

async fn bucket() -> Result<store::Bucket, String> {
    store::open("default".to_string()).await.map_err(kv_error)
}

async fn kv_set(request: Request, key: &str) -> Reply {
    let value = match RequestBody::of(request).read_all(MAX_VALUE).await {
        Ok(value) => value,
        Err(e) => return Ok(respond(413, e + "\n")),
    };
    bucket()
        .await?
        .set(key.to_string(), value)
        .await
        .map_err(kv_error)?;
    Ok(respond(204, ""))
}

async fn kv_get(key: &str) -> Reply {
    match bucket()
        .await?
        .get(key.to_string())
        .await
        .map_err(kv_error)?
    {
        Some(value) => Ok(respond_with(200, "application/octet-stream", value)),
        None => Ok(respond(404, format!("no key {key}\n"))),
    }
}

async fn counter() -> Reply {
    let bucket = bucket().await?;
    let n = atomics::increment(&bucket, "hits".to_string(), 1)
        .await
        .map_err(kv_error)?;
    Ok(respond(200, format!("{n}\n")))
}

// ----------------------------------------------------------------- blobstore

const FILES: &str = "files";

fn blob_error(e: String) -> String {
    format!("blobstore: {e}")
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::LastOperationFailed(e) => blob_error(e.to_debug_string()),
        StreamError::Closed => blob_error("the stream was closed".into()),
    }
}

/// Container `files`, created on first use (another request may create it
/// at the same moment: then it is opened).
async fn files() -> Result<Container, String> {
    let name = FILES.to_string();
    if blobstore::container_exists(name.clone())
        .await
        .map_err(blob_error)?
    {
        return blobstore::get_container(name).await.map_err(blob_error);
    }
    match blobstore::create_container(name.clone()).await {
        Ok(container) => Ok(container),
        Err(e) => blobstore::get_container(name)
            .await
            .map_err(|_| blob_error(e)),
    }
}

/// Streams the request body into the object, chunk by chunk: the body is
/// never in memory whole. The object's body is a wasi:io@0.2.2 output stream
/// (this flavour's), written while the request body arrives.
async fn file_put(request: Request, name: &str) -> Reply {
    let container = files().await?;
    let value = OutgoingValue::new_outgoing_value();
    let out = value
        .outgoing_value_write_body()
        .await
        .map_err(|()| blob_error("the outgoing-value gave no body stream".into()))?;
    let mut body = RequestBody::of(request);
    let mut size = 0u64;
    while let Some(chunk) = body.chunk().await {
        guest_util::write_all!(out, &chunk).map_err(stream_error)?;
        size += chunk.len() as u64;
    }
    out.blocking_flush().map_err(stream_error)?;
    drop(out);
    container
        .write_data(name.to_string(), &value)
        .await
        .map_err(blob_error)?;
    OutgoingValue::finish(value).map_err(blob_error)?;
    Ok(respond(201, format!("stored {size} bytes\n")))
}

/// Streams the object out: the response is returned at once and a task
/// copies the object's wasi:io input stream to the response body.
async fn file_get(name: &str) -> Reply {
    let container = files().await?;
    if !container
        .has_object(name.to_string())
        .await
        .map_err(blob_error)?
    {
        return Ok(respond(404, format!("no file {name}\n")));
    }
    // Offsets are inclusive; an end past the object reads to its end.
    let value = container
        .get_data(name.to_string(), 0, u64::MAX)
        .await
        .map_err(blob_error)?;
    let input = IncomingValue::incoming_value_consume_async(value)
        .await
        .map_err(blob_error)?;
    let (response, mut out) = http::streaming(200, &[("content-type", "application/octet-stream")]);
    wit_bindgen::spawn_local(async move {
        loop {
            match input.blocking_read(CHUNK as u64) {
                Ok(chunk) => {
                    if !out.write(chunk).await {
                        return; // the client went away
                    }
                }
                Err(StreamError::Closed) => return,
                // The status is sent: the client sees the body end early.
                Err(StreamError::LastOperationFailed(_)) => return,
            }
        }
    });
    Ok(response)
}

// ----------------------------------------------------------------------- sql

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL)";

fn sql_error(e: wasi::sql::types::Error) -> String {
    format!("sql: {}", e.trace())
}

async fn statement(sql: &str, params: Vec<DataType>) -> Result<Statement, String> {
    Statement::prepare(sql.to_string(), params)
        .await
        .map_err(sql_error)
}

/// Connection `notes`, with the table in place.
async fn notes() -> Result<Connection, String> {
    let db = Connection::open("notes".to_string())
        .await
        .map_err(sql_error)?;
    readwrite::exec(&db, &statement(SCHEMA, vec![]).await?)
        .await
        .map_err(sql_error)?;
    Ok(db)
}

async fn note_create(request: Request) -> Reply {
    let title = match RequestBody::of(request).read_all(MAX_VALUE).await {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(title) => title,
            Err(_) => return Ok(respond(400, "the title is not UTF-8\n")),
        },
        Err(e) => return Ok(respond(413, e + "\n")),
    };
    let title = title.trim_end_matches(['\r', '\n']);
    if title.is_empty() {
        return Ok(respond(400, "the body is the note's title: it is empty\n"));
    }
    let db = notes().await?;
    let insert = statement(
        "INSERT INTO notes (title) VALUES ($1) RETURNING id",
        vec![DataType::Str(Some(title.to_string()))],
    )
    .await?;
    let rows = readwrite::query(&db, &insert).await.map_err(sql_error)?;
    match rows.first().and_then(|row| row.fields.first()) {
        Some(id) => Ok(respond(201, format!("created {}\n", text(&id.value)))),
        None => Err("sql: the insert returned no id".into()),
    }
}

async fn notes_list() -> Reply {
    let db = notes().await?;
    let select = statement("SELECT id, title FROM notes ORDER BY id", vec![]).await?;
    let rows = readwrite::query(&db, &select).await.map_err(sql_error)?;
    let body: String = rows
        .iter()
        .map(|row| format!("{}\t{}\n", field(row, "id"), field(row, "title")))
        .collect();
    Ok(respond(200, body))
}

/// A value as text (`null` for NULL).
fn text(value: &DataType) -> String {
    fn s<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map_or_else(|| "null".into(), T::to_string)
    }
    match value {
        DataType::Int32(v) => s(v),
        DataType::Int64(v) => s(v),
        DataType::Uint32(v) => s(v),
        DataType::Uint64(v) => s(v),
        DataType::Float(v) => s(v),
        DataType::Double(v) => s(v),
        DataType::Str(v) | DataType::Date(v) | DataType::Time(v) | DataType::Timestamp(v) => s(v),
        DataType::Boolean(v) => s(v),
        DataType::Binary(v) => v
            .as_ref()
            .map_or_else(|| "null".into(), |b| format!("{b:?}")),
    }
}

/// A column of a row by name, as text.
fn field(row: &Row, name: &str) -> String {
    row.fields
        .iter()
        .find(|f| f.name == name)
        .map_or_else(|| "null".into(), |f| text(&f.value))
}

export!(Http);
