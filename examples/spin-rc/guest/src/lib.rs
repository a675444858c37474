//! spin-rc: hello world on spin-sdk 6.0, as Spin's current `http-rust`
//! template builds it. The SDK binds wasi:http through wasip3 0.6, so the
//! component imports and exports `wasi:http/*@0.3.0-rc-2026-03-15`.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_service;

/// Greets with the method and path it was asked for.
#[http_service]
async fn hello(req: Request) -> anyhow::Result<impl IntoResponse> {
    let greeting = format!(
        "Hello from spin-sdk 6! {} {}\n",
        req.method(),
        req.uri().path()
    );
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(greeting)?)
}
