//! blobstore: objects over HTTP, kept in wasi:blobstore.
//!
//! - `PUT /<container>/<object>`: stores the body (the container is created
//!   if missing) → 201 `stored <n> bytes`.
//! - `GET /<container>/<object>`: the bytes; with `Range: bytes=A-B`, `A-`
//!   or `-N` → 206 with that part.
//! - `GET /<container>/<object>?info` → `size=<n> created-at=<t>`.
//! - `GET /<container>/` → the object names, one per line, sorted.
//! - `DELETE /<container>/<object>` → 204.
//! - `POST /<container>/<object>?copy-to=<c2>/<o2>` (or `?move-to=`) → 200.
//!
//! Each path segment is percent-decoded: `/c/..%2F..%2Fetc%2Fpasswd` is the
//! object `../../etc/passwd` in container `c`. Bodies are streamed in 64 KiB
//! chunks both ways, never held whole.

wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/blobstore",
    generate_all,
});
guest_util::http_helpers!(wasi::io0_2_12::streams);

use exports::wasi::http::incoming_handler::Guest;
use guest_util::{
    percent_decode, query_param, query_param_raw, split_path_query, ByteRange, CHUNK,
};
use http::{respond, BodyError, Reply};
use wasi::blobstore::blobstore as store;
use wasi::blobstore::container::Container;
use wasi::blobstore::types::{IncomingValue, ObjectId, OutgoingValue};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wasi::io0_2_1::streams::StreamError as BlobStreamError;

struct Blobstore;

impl Guest for Blobstore {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = split_path_query(&path_with_query);
        let Some((container, object)) = path.strip_prefix('/').and_then(|p| p.split_once('/'))
        else {
            return respond(out, 400, "use /<container>/<object> or /<container>/\n");
        };
        let (container, object) = (percent_decode(container), percent_decode(object));
        if container.is_empty() {
            return respond(out, 400, "the container name is empty\n");
        }
        let (c, o) = (container.as_str(), object.as_str());
        match request.method() {
            Method::Get if o.is_empty() => list(out, c),
            Method::Get if query_param(query, "info").is_some() => info(out, c, o),
            Method::Get => get(&request, out, c, o),
            Method::Put if !o.is_empty() => put(&request, out, c, o),
            Method::Delete if !o.is_empty() => delete(out, c, o),
            Method::Post if !o.is_empty() => {
                if let Some(dest) = query_param_raw(query, "copy-to") {
                    transfer(out, c, o, dest, false)
                } else if let Some(dest) = query_param_raw(query, "move-to") {
                    transfer(out, c, o, dest, true)
                } else {
                    respond(
                        out,
                        400,
                        "POST needs ?copy-to=<container>/<object> or ?move-to=...\n",
                    )
                }
            }
            _ => respond(
                out,
                405,
                "use GET, PUT, DELETE or POST on /<container>/<object>, GET on /<container>/\n",
            ),
        }
    }
}

/// A 500 with the blobstore's error text.
fn fail(out: ResponseOutparam, error: &str) {
    respond(out, 500, &format!("{error}\n"))
}

/// The container if it exists.
fn existing(name: &str) -> Result<Option<Container>, String> {
    if store::container_exists(name)? {
        store::get_container(name).map(Some)
    } else {
        Ok(None)
    }
}

/// The container, created if missing.
fn open_or_create(name: &str) -> Result<Container, String> {
    match existing(name)? {
        Some(c) => Ok(c),
        // Another request may create it in between: then open it.
        None => {
            store::create_container(name).or_else(|e| store::get_container(name).map_err(|_| e))
        }
    }
}

/// The container holding `object`, or `None` if either is missing.
fn holding(container: &str, object: &str) -> Result<Option<Container>, String> {
    match existing(container)? {
        Some(c) if c.has_object(object)? => Ok(Some(c)),
        _ => Ok(None),
    }
}

fn stream_error(e: BlobStreamError) -> String {
    match e {
        BlobStreamError::LastOperationFailed(e) => e.to_debug_string(),
        BlobStreamError::Closed => "the stream was closed".into(),
    }
}

fn put(request: &IncomingRequest, out: ResponseOutparam, container: &str, name: &str) {
    let container = match open_or_create(container) {
        Ok(c) => c,
        Err(e) => return fail(out, &e),
    };
    let value = OutgoingValue::new_outgoing_value();
    let Ok(stream) = value.outgoing_value_write_body() else {
        return fail(out, "the outgoing-value gave no body stream");
    };
    let written = http::read_body(request, |chunk| guest_util::write_all!(stream, chunk));
    let size = match written {
        Ok(n) => n,
        Err(BodyError::Read(e)) => {
            return respond(out, 400, &format!("cannot read the request body: {e}\n"))
        }
        Err(BodyError::Sink(e)) => return fail(out, &stream_error(e)),
    };
    if let Err(e) = stream.blocking_flush() {
        return fail(out, &stream_error(e));
    }
    drop(stream);
    if let Err(e) = container.write_data(name, &value) {
        return fail(out, &e);
    }
    if let Err(e) = OutgoingValue::finish(value) {
        return fail(out, &e);
    }
    respond(out, 201, &format!("stored {size} bytes\n"))
}

fn get(request: &IncomingRequest, out: ResponseOutparam, container: &str, name: &str) {
    let container = match holding(container, name) {
        Ok(Some(c)) => c,
        Ok(None) => return respond(out, 404, &format!("no object {name}\n")),
        Err(e) => return fail(out, &e),
    };
    // Offsets are inclusive; an end past the object reads to its end.
    let (status, start, end, content_range) = match http::header(request, "range") {
        None => (200, 0, u64::MAX, None),
        Some(header) => {
            let Some(range) = ByteRange::parse(&header) else {
                return respond(
                    out,
                    416,
                    &format!("unsupported range {header}: use bytes=A-B, bytes=A- or bytes=-N\n"),
                );
            };
            let size = match container.object_info(name) {
                Ok(info) => info.size,
                Err(e) => return fail(out, &e),
            };
            let Some((start, end)) = range.resolve(size) else {
                return respond(
                    out,
                    416,
                    &format!("range {header} is outside the object's {size} bytes\n"),
                );
            };
            (206, start, end, Some(format!("bytes {start}-{end}/{size}")))
        }
    };
    let stream = match container
        .get_data(name, start, end)
        .and_then(IncomingValue::incoming_value_consume_async)
    {
        Ok(s) => s,
        Err(e) => return fail(out, &e),
    };
    let mut headers = vec![("content-type", "application/octet-stream")];
    if let Some(range) = &content_range {
        headers.push(("content-range", range));
    }
    let Some(mut reply) = Reply::start(out, status, &headers) else {
        return;
    };
    loop {
        match stream.blocking_read(CHUNK as u64) {
            Ok(chunk) => {
                if reply.write(&chunk).is_err() {
                    return; // the client went away
                }
            }
            Err(BlobStreamError::Closed) => break,
            // Dropping the reply unfinished cuts the response short: the
            // client sees an error rather than a truncated 200.
            Err(BlobStreamError::LastOperationFailed(_)) => return,
        }
    }
    reply.finish();
}

fn info(out: ResponseOutparam, container: &str, name: &str) {
    let result = holding(container, name).and_then(|c| c.map(|c| c.object_info(name)).transpose());
    match result {
        Ok(Some(info)) => respond(
            out,
            200,
            &format!("size={} created-at={}\n", info.size, info.created_at),
        ),
        Ok(None) => respond(out, 404, &format!("no object {name}\n")),
        Err(e) => fail(out, &e),
    }
}

fn list(out: ResponseOutparam, container: &str) {
    let names = existing(container).and_then(|c| {
        let Some(c) = c else { return Ok(None) };
        let stream = c.list_objects()?;
        let mut names = Vec::new();
        loop {
            let (page, end) = stream.read_stream_object_names(100)?;
            let empty = page.is_empty();
            names.extend(page);
            if end || empty {
                break;
            }
        }
        names.sort();
        Ok(Some(names))
    });
    match names {
        Ok(Some(names)) => {
            let body: String = names.iter().map(|n| format!("{n}\n")).collect();
            respond(out, 200, &body)
        }
        Ok(None) => respond(out, 404, &format!("no container {container}\n")),
        Err(e) => fail(out, &e),
    }
}

fn delete(out: ResponseOutparam, container: &str, name: &str) {
    match existing(container) {
        Ok(Some(c)) => match c.delete_object(name) {
            Ok(()) => respond(out, 204, ""),
            Err(e) => fail(out, &e),
        },
        Ok(None) => respond(out, 404, &format!("no container {container}\n")),
        Err(e) => fail(out, &e),
    }
}

/// Copies (or moves) an object to `dest`, `<container>/<object>` as written
/// in the query: split at the first `/`, then each part percent-decoded.
fn transfer(out: ResponseOutparam, container: &str, name: &str, dest: &str, moving: bool) {
    let Some((c2, o2)) = dest
        .split_once('/')
        .map(|(c, o)| (percent_decode(c), percent_decode(o)))
    else {
        return respond(out, 400, "the destination is <container>/<object>\n");
    };
    if c2.is_empty() || o2.is_empty() {
        return respond(out, 400, "the destination is <container>/<object>\n");
    }
    match holding(container, name) {
        Ok(Some(_)) => {}
        Ok(None) => return respond(out, 404, &format!("no object {name}\n")),
        Err(e) => return fail(out, &e),
    }
    if let Err(e) = open_or_create(&c2) {
        return fail(out, &e);
    }
    let src = ObjectId {
        container: container.to_string(),
        object: name.to_string(),
    };
    let dest = ObjectId {
        container: c2,
        object: o2,
    };
    let done = if moving {
        store::move_object(&src, &dest)
    } else {
        store::copy_object(&src, &dest)
    };
    match done {
        Ok(()) => respond(out, 200, if moving { "moved\n" } else { "copied\n" }),
        Err(e) => fail(out, &e),
    }
}

export!(Blobstore);
