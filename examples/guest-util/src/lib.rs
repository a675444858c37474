//! Plumbing shared by the example guests.
//!
//! The functions here know nothing of WIT: URL and `Range` parsing. The
//! `wasi:http` helpers cannot live in this crate as code, because every guest
//! generates its own bindings (its own `IncomingRequest`, `OutputStream`, …
//! types); [`http_helpers!`] therefore expands them inside the guest, against
//! the guest's `crate::wasi` module, and [`write_all!`] works on any
//! `wasi:io` output stream, whichever `wasi:io` version it comes from.
//! [`http_p3_helpers!`] does the same for `wasi:http@0.3` guests.

/// Bytes read or written per step when a body is streamed.
pub const CHUNK: usize = 64 * 1024;

/// Splits `path?query` into the path and, if there is a `?`, the query.
pub fn split_path_query(path_with_query: &str) -> (&str, Option<&str>) {
    match path_with_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_with_query, None),
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are); bytes that are
/// not UTF-8 become U+FFFD. `+` stays `+` (this is for paths as much as queries).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query parameter `key`, percent-decoded: `Some("")` for a bare `?key`
/// or `?key=`, `None` if absent.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// The query parameter `key` as written (not decoded), for values the
/// caller splits before decoding (`copy-to=a%2Fb/c` is container `a/b`).
pub fn query_param_raw<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then_some(v)
    })
}

/// A single byte range from a `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=A-B`: A..=B.
    FromTo(u64, u64),
    /// `bytes=A-`: from A to the end.
    From(u64),
    /// `bytes=-N`: the last N bytes.
    Last(u64),
}

impl ByteRange {
    /// Parses `bytes=A-B`, `bytes=A-` or `bytes=-N`; `None` for anything
    /// else (other units, several ranges, B < A).
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| s.trim().parse::<u64>().ok();
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                (a <= b).then_some(ByteRange::FromTo(a, b))
            }
            (false, true) => Some(ByteRange::From(num(a)?)),
            (true, false) => Some(ByteRange::Last(num(b)?)),
            (true, true) => None,
        }
    }

    /// The inclusive offsets this range selects in an object of `size`
    /// bytes (the end clamped to the last byte), or `None` if it selects
    /// nothing (416 Range Not Satisfiable).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        let last = size.checked_sub(1)?;
        let (start, end) = match self {
            ByteRange::FromTo(a, b) => (a, b.min(last)),
            ByteRange::From(a) => (a, last),
            ByteRange::Last(0) => return None,
            ByteRange::Last(n) => (size.saturating_sub(n), last),
        };
        (start <= end).then_some((start, end))
    }
}

/// Writes all of `data` to a `wasi:io` output stream (any version: the
/// stream is only called by method), honouring `check-write` and waiting on
/// its pollable when the stream is full. Evaluates to `Result<(), StreamError>`.
/// Does not flush: call `blocking_flush` once after the last write.
#[macro_export]
macro_rules! write_all {
    ($stream:expr, $data:expr) => {{
        let stream = &$stream;
        let mut data: &[u8] = $data;
        let mut result = Ok(());
        while !data.is_empty() {
            match stream.check_write() {
                Ok(0) => stream.subscribe().block(),
                Ok(n) => {
                    let n = data.len().min(n as usize);
                    if let Err(e) = stream.write(&data[..n]) {
                        result = Err(e);
                        break;
                    }
                    data = &data[n..];
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        result
    }};
}

/// Expands to a module `http` of `wasi:http` helpers written against the
/// calling guest's bindings (`crate::wasi::http::types`). The argument is
/// the path of the guest's `wasi:io/streams` module for the version
/// `wasi:http` uses (wit-bindgen puts the version in the name when the WIT
/// holds several, e.g. `wasi::io0_2_12::streams`).
///
/// - `http::respond(out, status, text)`: a whole plain-text response.
/// - `http::Reply::start(out, status, headers)`: a response whose body is
///   then streamed with `write` and ended with `finish` (or dropped to abort).
/// - `http::read_body(&request, sink)`: the request body, in chunks of at
///   most [`CHUNK`] bytes, handed to `sink`; returns the byte count.
/// - `http::read_small_body(&request, limit)`: the body as bytes, refused
///   past `limit`.
/// - `http::header(&request, name)`: the first value of a header.
// `crate::wasi` is meant: the guest's own bindings, not this crate's.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! http_helpers {
    ($($streams:ident)::+) => {
        #[allow(dead_code)]
        mod http {
            use crate::wasi::http::types::{
                Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse,
                OutputStream, ResponseOutparam,
            };
            use crate::$($streams)::+::StreamError;

            /// Sends a complete plain-text response.
            pub fn respond(out: ResponseOutparam, status: u16, text: &str) {
                let headers = [("content-type", "text/plain; charset=utf-8")];
                if let Some(mut reply) = Reply::start(out, status, &headers) {
                    if reply.write(text.as_bytes()).is_ok() {
                        reply.finish();
                    }
                }
            }

            /// A response whose status and headers are sent; its body is written next.
            pub struct Reply {
                stream: Option<OutputStream>,
                body: Option<OutgoingBody>,
            }

            impl Reply {
                /// Sends the status and headers. `None` if the host refused them.
                pub fn start(out: ResponseOutparam, status: u16, headers: &[(&str, &str)]) -> Option<Reply> {
                    let fields = Fields::new();
                    for (name, value) in headers {
                        let _ = fields.append(name, value.as_bytes());
                    }
                    let response = OutgoingResponse::new(fields);
                    let _ = response.set_status_code(status);
                    let body = response.body().ok()?;
                    ResponseOutparam::set(out, Ok(response));
                    let stream = body.write().ok()?;
                    Some(Reply { stream: Some(stream), body: Some(body) })
                }

                /// Writes bytes of the body (any length).
                pub fn write(&mut self, data: &[u8]) -> Result<(), StreamError> {
                    let stream = self.stream.as_ref().expect("reply already finished");
                    $crate::write_all!(stream, data)
                }

                /// Flushes and ends the body. (Dropping a `Reply` without
                /// `finish` aborts the response: the client sees it cut short.)
                pub fn finish(mut self) {
                    if let Some(stream) = self.stream.take() {
                        let _ = stream.blocking_flush();
                    }
                    if let Some(body) = self.body.take() {
                        let _ = OutgoingBody::finish(body, None);
                    }
                }
            }

            /// Why a request body could not be read to its end.
            #[derive(Debug)]
            pub enum BodyError<E> {
                /// The body stream failed (the client went away, …).
                Read(String),
                /// The sink refused a chunk.
                Sink(E),
            }

            /// Streams the request body to `sink` in chunks of at most
            /// `guest_util::CHUNK` bytes; returns how many bytes were read.
            pub fn read_body<E>(
                request: &IncomingRequest,
                mut sink: impl FnMut(&[u8]) -> Result<(), E>,
            ) -> Result<u64, BodyError<E>> {
                let body: IncomingBody = request
                    .consume()
                    .map_err(|()| BodyError::Read("the request body was already taken".into()))?;
                let stream = body
                    .stream()
                    .map_err(|()| BodyError::Read("the request body stream was already taken".into()))?;
                let mut total = 0u64;
                loop {
                    match stream.blocking_read($crate::CHUNK as u64) {
                        Ok(chunk) => {
                            total += chunk.len() as u64;
                            sink(&chunk).map_err(BodyError::Sink)?;
                        }
                        Err(StreamError::Closed) => break,
                        Err(StreamError::LastOperationFailed(e)) => {
                            return Err(BodyError::Read(e.to_debug_string()));
                        }
                    }
                }
                drop(stream);
                let _ = IncomingBody::finish(body);
                Ok(total)
            }

            /// The whole request body, for bodies that must be in memory
            /// anyway (an SQL parameter, a message); refused past `limit` bytes.
            pub fn read_small_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, String> {
                let mut all = Vec::new();
                read_body(request, |chunk| {
                    if all.len() + chunk.len() > limit {
                        return Err(format!("the body is over {limit} bytes"));
                    }
                    all.extend_from_slice(chunk);
                    Ok(())
                })
                .map_err(|e| match e {
                    BodyError::Read(e) => format!("cannot read the body: {e}"),
                    BodyError::Sink(e) => e,
                })?;
                Ok(all)
            }

            /// The first value of header `name`, as text.
            pub fn header(request: &IncomingRequest, name: &str) -> Option<String> {
                let headers = request.headers();
                let values = headers.get(name);
                values.first().map(|v| String::from_utf8_lossy(v).into_owned())
            }
        }
    };
}

/// Expands to a module `http` of `wasi:http@0.3` helpers written against the
/// calling guest's bindings: `crate::wasi::http::types` (0.3.0), and the
/// `crate::wit_stream` / `crate::wit_future` modules `generate!` emits. The
/// guest needs wit-bindgen's `async-spawn` feature.
///
/// - `http::respond(status, text)`: a whole plain-text response.
/// - `http::respond_with(status, content_type, bytes)`: the same for any bytes.
/// - `http::streaming(status, headers)`: a response whose body is written
///   afterwards through the returned `http::Body`, from a task started with
///   `wit_bindgen::spawn_local` (component-model streams are rendezvous:
///   the host reads the body only once `handle` has returned the response,
///   so writing it before returning would wait forever). Dropping the
///   `Body` ends the response.
/// - `http::RequestBody::of(request)`: the request body, read with `chunk()`
///   (at most [`CHUNK`] bytes at a time, `None` at the end), or whole with
///   `read_all(limit)`.
/// - `http::header(&request, name)`: the first value of a header.
///
/// The status codes given are assumed valid (a constant in the guest): an
/// invalid one panics, which traps the request.
// `crate::wasi` is meant: the guest's own bindings, not this crate's.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! http_p3_helpers {
    () => {
        #[allow(dead_code)]
        mod http {
            use crate::wasi::http::types::{ErrorCode, Fields, Request, Response, Trailers};
            use ::wit_bindgen::{FutureWriter, StreamReader, StreamResult, StreamWriter};

            /// The body of a response that has been returned to the host.
            pub struct Body {
                // Fields drop in order: the stream ends, then the trailers
                // future resolves (to its default, no trailers).
                stream: StreamWriter<u8>,
                _trailers: FutureWriter<Result<Option<Trailers>, ErrorCode>>,
            }

            impl Body {
                /// Sends `bytes`, waiting until the client has taken them.
                /// `false` if the client has gone away (nothing more will be read).
                pub async fn write(&mut self, bytes: impl Into<Vec<u8>>) -> bool {
                    self.stream.write_all(bytes.into()).await.is_empty()
                }
            }

            /// A response with `status` and `headers`; its body is written
            /// through the `Body` once the response has been returned.
            pub fn streaming(status: u16, headers: &[(&str, &str)]) -> (Response, Body) {
                let fields = Fields::new();
                for (name, value) in headers {
                    let _ = fields.append(name, value.as_bytes());
                }
                let (stream, contents) = crate::wit_stream::new::<u8>();
                let (trailers, trailers_rx) = crate::wit_future::new(|| Ok(None));
                let (response, _sent) = Response::new(fields, Some(contents), trailers_rx);
                response
                    .set_status_code(status)
                    .expect("a valid status code");
                (
                    response,
                    Body {
                        stream,
                        _trailers: trailers,
                    },
                )
            }

            /// A whole response of `content_type`, written by a task of its own.
            pub fn respond_with(
                status: u16,
                content_type: &str,
                body: impl Into<Vec<u8>>,
            ) -> Response {
                let (response, mut writer) = streaming(status, &[("content-type", content_type)]);
                let body = body.into();
                if !body.is_empty() {
                    ::wit_bindgen::spawn_local(async move {
                        writer.write(body).await;
                    });
                }
                response
            }

            /// A whole plain-text response.
            pub fn respond(status: u16, text: impl Into<String>) -> Response {
                respond_with(status, "text/plain; charset=utf-8", text.into())
            }

            /// The first value of header `name`, as text.
            pub fn header(request: &Request, name: &str) -> Option<String> {
                let values = request.get_headers().get(name);
                values
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            }

            /// A request's body, read as it arrives.
            pub struct RequestBody {
                // The stream is dropped first, then `done` tells the host
                // the body was handled (its default, `Ok`).
                stream: StreamReader<u8>,
                ended: bool,
                _done: FutureWriter<Result<(), ErrorCode>>,
            }

            impl RequestBody {
                /// Takes the body of `request` (its trailers are ignored).
                pub fn of(request: Request) -> RequestBody {
                    let (done, done_rx) = crate::wit_future::new(|| Ok(()));
                    let (stream, _trailers) = Request::consume_body(request, done_rx);
                    RequestBody {
                        stream,
                        ended: false,
                        _done: done,
                    }
                }

                /// The next chunk of at most `guest_util::CHUNK` bytes, as
                /// soon as the client has sent it; `None` at the end.
                pub async fn chunk(&mut self) -> Option<Vec<u8>> {
                    while !self.ended {
                        let (status, chunk) =
                            self.stream.read(Vec::with_capacity($crate::CHUNK)).await;
                        if matches!(status, StreamResult::Dropped | StreamResult::Cancelled) {
                            self.ended = true;
                        }
                        if !chunk.is_empty() {
                            return Some(chunk);
                        }
                    }
                    None
                }

                /// The whole body, for bodies that must be in memory anyway
                /// (a keyvalue value, an SQL parameter); refused past `limit` bytes.
                pub async fn read_all(mut self, limit: usize) -> Result<Vec<u8>, String> {
                    let mut all = Vec::new();
                    while let Some(chunk) = self.chunk().await {
                        if all.len() + chunk.len() > limit {
                            return Err(format!("the body is over {limit} bytes"));
                        }
                        all.extend_from_slice(&chunk);
                    }
                    Ok(all)
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(percent_decode("..%2F..%2Fetc%2Fpasswd"), "../../etc/passwd");
        assert_eq!(percent_decode("h%C3%A9llo%20w"), "héllo w");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn queries() {
        assert_eq!(query_param(Some("info"), "info").as_deref(), Some(""));
        assert_eq!(
            query_param(Some("a=1&copy-to=c%2Fd"), "copy-to").as_deref(),
            Some("c/d")
        );
        assert_eq!(query_param(Some("a=1"), "b"), None);
        assert_eq!(query_param(None, "b"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(ByteRange::parse("bytes=2-5"), Some(ByteRange::FromTo(2, 5)));
        assert_eq!(ByteRange::parse("bytes=2-"), Some(ByteRange::From(2)));
        assert_eq!(ByteRange::parse("bytes=-3"), Some(ByteRange::Last(3)));
        assert_eq!(ByteRange::parse("bytes=5-2"), None);
        assert_eq!(ByteRange::parse("bytes=1-2,4-5"), None);
        assert_eq!(ByteRange::parse("items=1-2"), None);
        assert_eq!(ByteRange::FromTo(2, 100).resolve(10), Some((2, 9)));
        assert_eq!(ByteRange::From(10).resolve(10), None);
        assert_eq!(ByteRange::Last(3).resolve(10), Some((7, 9)));
        assert_eq!(ByteRange::Last(30).resolve(10), Some((0, 9)));
        assert_eq!(ByteRange::From(0).resolve(0), None);
    }
}
