//! messaging: sends over wasi:messaging from HTTP, and handles the messages
//! of the topics its `qwasr.toml` subscribes to.
//!
//! HTTP:
//! - `POST /publish/<topic>` sends the body → 202 `sent`.
//! - `POST /request/<topic>` sends the body as a request and waits up to 2 s
//!   → 200 with each reply's data on its own line; 504 `timeout` if none.
//! - `GET /received/<topic>` → `<count> <last data>` of the messages this
//!   guest handled on that topic (kept in wasi:keyvalue bucket `messages`).
//!
//! Messages: topic `fail` returns an error, `trap` panics; any other is
//! counted and remembered, and on `rpc.*` topics answered with
//! `echo: <data>`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "qwasr:examples/messaging",
    generate_all,
});
guest_util::http_helpers!(wasi::io0_2_12::streams);

use guest_util::percent_decode;
use http::{respond, Reply};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use wasi::keyvalue0_2_0_draft2::{atomics, store};
use wasi::messaging::producer;
use wasi::messaging::request_reply::{self, RequestOptions};
use wasi::messaging::types::{Client, Error, Message};

/// Messages are held whole by the broker anyway; bodies past this are refused.
const MAX_BODY: usize = 1 << 20;

struct Messaging;

impl exports::wasi::http::incoming_handler::Guest for Messaging {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (path, _) = guest_util::split_path_query(&path);
        let route = |prefix: &str| path.strip_prefix(prefix).map(percent_decode);
        match request.method() {
            Method::Post => {
                if let Some(topic) = route("/publish/") {
                    publish(&request, &topic, out)
                } else if let Some(topic) = route("/request/") {
                    ask(&request, &topic, out)
                } else {
                    respond(
                        out,
                        404,
                        "try POST /publish/<topic> or POST /request/<topic>\n",
                    )
                }
            }
            Method::Get => match route("/received/") {
                Some(topic) => received(&topic, out),
                None => respond(out, 404, "try GET /received/<topic>\n"),
            },
            _ => respond(
                out,
                405,
                "use POST /publish/<topic>, POST /request/<topic> or GET /received/<topic>\n",
            ),
        }
    }
}

fn connect_and_read(request: &IncomingRequest) -> Result<(Client, Vec<u8>), (u16, String)> {
    let body = http::read_small_body(request, MAX_BODY).map_err(|e| (400, format!("{e}\n")))?;
    let client = Client::connect("default").map_err(|e| (502, format!("{e}\n")))?;
    Ok((client, body))
}

fn publish(request: &IncomingRequest, topic: &str, out: ResponseOutparam) {
    let (client, body) = match connect_and_read(request) {
        Ok(x) => x,
        Err((status, text)) => return respond(out, status, &text),
    };
    match producer::send(&client, topic, Message::new(&body)) {
        Ok(()) => respond(out, 202, "sent\n"),
        Err(e) => respond(out, 502, &format!("{e}\n")),
    }
}

fn ask(request: &IncomingRequest, topic: &str, out: ResponseOutparam) {
    let (client, body) = match connect_and_read(request) {
        Ok(x) => x,
        Err((status, text)) => return respond(out, status, &text),
    };
    let options = RequestOptions::new();
    options.set_timeout_ms(2000);
    match request_reply::request(&client, topic, &Message::new(&body), Some(options)) {
        Ok(replies) => {
            let headers = [("content-type", "application/octet-stream")];
            let Some(mut reply) = Reply::start(out, 200, &headers) else {
                return;
            };
            for message in replies {
                let mut line = message.data();
                line.push(b'\n');
                if reply.write(&line).is_err() {
                    return;
                }
            }
            reply.finish();
        }
        Err(Error::Timeout) => respond(out, 504, "timeout\n"),
        Err(e) => respond(out, 502, &format!("{e}\n")),
    }
}

fn received(topic: &str, out: ResponseOutparam) {
    let result = (|| {
        let bucket = store::open("messages")?;
        let count_key = format!("count:{topic}");
        if !bucket.exists(&count_key)? {
            return Ok(None);
        }
        // Adding 0 reads the counter whatever encoding the store keeps it in.
        let count = atomics::increment(&bucket, &count_key, 0)?;
        let last = bucket.get(&format!("last:{topic}"))?.unwrap_or_default();
        Ok(Some((count, last)))
    })();
    match result {
        Ok(Some((count, last))) => respond(
            out,
            200,
            &format!("{count} {}\n", String::from_utf8_lossy(&last)),
        ),
        Ok(None) => respond(out, 404, &format!("nothing received on {topic}\n")),
        Err(e) => respond(out, 500, &format!("keyvalue: {}\n", kv_error(e))),
    }
}

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(s) => s,
    }
}

impl exports::wasi::messaging::incoming_handler::Guest for Messaging {
    fn handle(message: Message) -> Result<(), Error> {
        let topic = message.topic().unwrap_or_default();
        match topic.as_str() {
            "fail" => return Err(Error::Other("asked to fail".into())),
            "trap" => panic!("asked to trap"),
            _ => {}
        }
        let data = message.data();
        let record = || -> Result<(), store::Error> {
            let bucket = store::open("messages")?;
            atomics::increment(&bucket, &format!("count:{topic}"), 1)?;
            bucket.set(&format!("last:{topic}"), &data)
        };
        record().map_err(|e| Error::Other(format!("keyvalue: {}", kv_error(e))))?;
        if topic.starts_with("rpc.") {
            let mut echo = b"echo: ".to_vec();
            echo.extend_from_slice(&data);
            request_reply::reply(&message, Message::new(&echo))?;
        }
        Ok(())
    }
}

export!(Messaging);
