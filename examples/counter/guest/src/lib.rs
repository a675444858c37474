//! counter: every GET increments a key in wasi:keyvalue and answers with the new value.
//!
//! The bucket name comes from wasi:config (`bucket`, default `"counter"`), so the
//! same guest shows both interfaces at work.

#[cfg(not(feature = "draft2"))]
wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/counter",
    generate_all,
});

#[cfg(feature = "draft2")]
wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/counter-draft2",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
// Two versions of wasi:keyvalue sit in the WIT deps, so module names carry the version.
#[cfg(not(feature = "draft2"))]
use wasi::keyvalue0_2_0_draft::{atomics, store};
#[cfg(feature = "draft2")]
use wasi::keyvalue0_2_0_draft2::{atomics, store};

struct Counter;

impl Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if !matches!(request.method(), Method::Get) {
            return respond(out, 405, "only GET is supported\n");
        }
        let bucket_name = wasi::config::store::get("bucket")
            .ok()
            .flatten()
            .unwrap_or_else(|| "counter".to_string());
        let key = request
            .path_with_query()
            .map(|p| p.trim_start_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "hits".to_string());
        match increment(&bucket_name, &key) {
            Ok(value) => respond(out, 200, &format!("{value}\n")),
            Err(e) => respond(out, 500, &format!("keyvalue error: {e:?}\n")),
        }
    }
}

fn increment(bucket_name: &str, key: &str) -> Result<String, store::Error> {
    let bucket = store::open(bucket_name)?;
    let value = atomics::increment(&bucket, key, 1)?;
    Ok(value.to_string())
}

/// Sends a complete plain-text response.
fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.as_bytes().chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

export!(Counter);
