//! hello-p3: a WASI 0.3 HTTP service (`wasi:http/handler@0.3.0`).
//!
//! - `GET /` (any path with a query) → a greeting naming the path asked for.
//! - `POST /echo` → the request body, streamed back chunk by chunk as it
//!   arrives (never held whole).
//! - `GET /stream?n=N` → N lines `line <i>`, each written on its own.
//! - `GET /sleep?ms=N` → waits N ms on `wasi:clocks/monotonic-clock` (the
//!   guest waits, it does not run), then `slept`.
//! - `GET /spin` → loops forever: only the host's deadline stops it.
//! - anything else → 404.

wit_bindgen::generate!({
    path: "../../wit-p3",
    world: "qwasr:examples-p3/hello-p3",
    generate_all,
});
guest_util::http_p3_helpers!();

use exports::wasi::http::handler::Guest;
use guest_util::{query_param, split_path_query};
use http::{respond, RequestBody};
use wasi::clocks::monotonic_clock;
use wasi::http::types::{ErrorCode, Method, Request, Response};

struct Hello;

impl Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = split_path_query(&path_with_query);
        Ok(match (request.get_method(), path) {
            (Method::Get, "/") => respond(
                200,
                format!("Hello from WASI 0.3! You asked for {path_with_query}\n"),
            ),
            (Method::Post, "/echo") => echo(request),
            (Method::Get, "/stream") => lines(query),
            (Method::Get, "/sleep") => sleep(query).await,
            (Method::Get, "/spin") => spin(),
            _ => respond(404, format!("no route for {path}\n")),
        })
    }
}

/// Returns the response at once; a task then copies each chunk of the
/// request body to the response body as it arrives.
fn echo(request: Request) -> Response {
    let content_type =
        http::header(&request, "content-type").unwrap_or_else(|| "application/octet-stream".into());
    let mut body = RequestBody::of(request);
    let (response, mut out) = http::streaming(200, &[("content-type", &content_type)]);
    wit_bindgen::spawn_local(async move {
        while let Some(chunk) = body.chunk().await {
            if !out.write(chunk).await {
                break; // the client went away
            }
        }
    });
    response
}

/// `n` lines (default 10), each a write of its own.
fn lines(query: Option<&str>) -> Response {
    let n = match query_param(query, "n").map(|n| n.parse::<u64>()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(_)) => return respond(400, "n is a count of lines: /stream?n=100\n"),
    };
    let (response, mut out) =
        http::streaming(200, &[("content-type", "text/plain; charset=utf-8")]);
    wit_bindgen::spawn_local(async move {
        for i in 0..n {
            if !out.write(format!("line {i}\n")).await {
                break;
            }
        }
    });
    response
}

/// Waits on the host's clock: the instance is idle, not running, meanwhile.
async fn sleep(query: Option<&str>) -> Response {
    let Some(Ok(ms)) = query_param(query, "ms").map(|ms| ms.parse::<u64>()) else {
        return respond(400, "ms is a number of milliseconds: /sleep?ms=500\n");
    };
    monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
    respond(200, "slept\n")
}

/// Runs until the host stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

export!(Hello);
