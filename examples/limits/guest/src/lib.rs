//! limits: misbehaves on request, to show that a runtime contains it.
//!
//! - `GET /spin` loops forever: the request's deadline stops it.
//! - `GET /grow?mb=N` allocates and touches N MiB: past the memory limit the
//!   allocation fails and the instance traps.
//! - anything else answers `fine`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/limits",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Limits;

impl Guest for Limits {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path == "/spin" {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if let Some(mb) = path.strip_prefix("/grow?mb=").and_then(|n| n.parse::<usize>().ok()) {
            let mut block = vec![0u8; mb << 20];
            for i in (0..block.len()).step_by(4096) {
                block[i] = 1;
            }
            let touched = std::hint::black_box(&block).iter().step_by(4096).filter(|b| **b == 1).count();
            return respond(out, &format!("grew {mb} MiB ({touched} pages)\n"));
        }
        respond(out, "fine\n");
    }
}

fn respond(out: ResponseOutparam, body: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        let _ = stream.blocking_write_and_flush(body.as_bytes());
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

export!(Limits);
