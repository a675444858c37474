//! The `wasi:io` streams of blobstore values, as wasmtime-wasi's p2 stream
//! objects: the kernel's `wasi:io` implementation serves them to the guest.
//!
//! Both move one chunk at a time through a spawned task, so the next chunk
//! is read (or the last one written) while the guest works, and no call
//! blocks an async worker on file I/O.

use crate::{Blobstore, Body, CHUNK, ObjectReader, ObjectWriter, lock};
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

type Read = (Box<dyn ObjectReader>, anyhow::Result<Option<Bytes>>);

/// `incoming-value-consume-async`'s input stream.
pub(crate) struct ValueStream {
    state: ReadState,
}

enum ReadState {
    /// A chunk is being read.
    Reading(JoinHandle<Read>),
    /// A chunk is waiting for the guest.
    Ready(Box<dyn ObjectReader>, Bytes),
    /// Reading failed; reported once, then the stream is closed.
    Failed(anyhow::Error),
    Done,
}

impl ValueStream {
    pub(crate) fn new(reader: Box<dyn ObjectReader>) -> ValueStream {
        let mut stream = ValueStream {
            state: ReadState::Done,
        };
        stream.start(reader);
        stream
    }

    fn start(&mut self, mut reader: Box<dyn ObjectReader>) {
        if reader.size() == 0 {
            self.state = ReadState::Done;
            return;
        }
        self.state = ReadState::Reading(tokio::spawn(async move {
            let r = reader.read(CHUNK).await;
            (reader, r)
        }));
    }
}

#[async_trait]
impl Pollable for ValueStream {
    async fn ready(&mut self) {
        if let ReadState::Reading(task) = &mut self.state {
            // Awaiting a join handle is cancel-safe: if the guest's poll
            // moves on, the read keeps its place in `state`.
            self.state = match task.await {
                Ok((reader, Ok(Some(chunk)))) if !chunk.is_empty() => {
                    ReadState::Ready(reader, chunk)
                }
                Ok((_, Ok(_))) => ReadState::Done,
                Ok((_, Err(e))) => ReadState::Failed(e),
                Err(e) => ReadState::Failed(anyhow::anyhow!("reading the value failed: {e}")),
            };
        }
    }
}

#[async_trait]
impl InputStream for ValueStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match std::mem::replace(&mut self.state, ReadState::Done) {
            ReadState::Ready(reader, mut chunk) => {
                let out = chunk.split_to(size.min(chunk.len()));
                if chunk.is_empty() {
                    // Read ahead while the guest handles this chunk.
                    self.start(reader);
                } else {
                    self.state = ReadState::Ready(reader, chunk);
                }
                Ok(out)
            }
            ReadState::Reading(task) => {
                self.state = ReadState::Reading(task);
                Ok(Bytes::new())
            }
            ReadState::Failed(e) => Err(StreamError::LastOperationFailed(
                wasmtime::Error::from_anyhow(e),
            )),
            ReadState::Done => Err(StreamError::Closed),
        }
    }
}

type Write = (Option<Box<dyn ObjectWriter>>, anyhow::Result<()>);

/// `outgoing-value-write-body`'s output stream. The guest's writes collect
/// in a buffer of up to [`CHUNK`] bytes; a full buffer (or a flush) goes to
/// the backend's writer in a spawned task while the next one fills. When the
/// guest drops the stream, wasmtime-wasi calls [`OutputStream::cancel`],
/// which writes out the rest and hands the writer back to the value.
pub(crate) struct BodyStream {
    backend: Arc<dyn Blobstore>,
    body: Arc<Mutex<Body>>,
    /// `None` until the first chunk goes out, and while a chunk is in flight.
    writer: Option<Box<dyn ObjectWriter>>,
    in_flight: Option<JoinHandle<Write>>,
    buffer: BytesMut,
    flushing: bool,
    /// An error not yet reported to the guest.
    error: Option<anyhow::Error>,
    /// Why the body is broken, once it is.
    failure: Option<String>,
}

impl BodyStream {
    pub(crate) fn new(backend: Arc<dyn Blobstore>, body: Arc<Mutex<Body>>) -> BodyStream {
        BodyStream {
            backend,
            body,
            writer: None,
            in_flight: None,
            buffer: BytesMut::new(),
            flushing: false,
            error: None,
            failure: None,
        }
    }

    fn send(&mut self) {
        let chunk = self.buffer.split().freeze();
        let writer = self.writer.take();
        let backend = self.backend.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let mut writer = match writer {
                Some(w) => w,
                None => match backend.writer().await {
                    Ok(w) => w,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = writer.write(chunk).await;
            (Some(writer), r)
        }));
    }

    fn fail(&mut self, e: anyhow::Error) {
        self.failure = Some(format!("{e:#}"));
        self.error = Some(e);
        self.buffer.clear();
        self.writer = None;
    }

    fn check(&mut self) -> StreamResult<()> {
        if let Some(e) = self.error.take() {
            return Err(StreamError::LastOperationFailed(
                wasmtime::Error::from_anyhow(e),
            ));
        }
        if self.failure.is_some() {
            return Err(StreamError::Closed);
        }
        Ok(())
    }
}

#[async_trait]
impl Pollable for BodyStream {
    async fn ready(&mut self) {
        loop {
            if self.failure.is_some() {
                return;
            }
            if let Some(task) = &mut self.in_flight {
                if !self.flushing && self.buffer.len() < CHUNK {
                    return;
                }
                let (writer, r) = match task.await {
                    Ok(done) => done,
                    Err(e) => (None, Err(anyhow::anyhow!("writing the value failed: {e}"))),
                };
                self.in_flight = None;
                self.writer = writer;
                if let Err(e) = r {
                    self.fail(e);
                    return;
                }
                continue;
            }
            if !self.buffer.is_empty() && (self.flushing || self.buffer.len() >= CHUNK) {
                self.send();
                continue;
            }
            self.flushing = false;
            return;
        }
    }
}

#[async_trait]
impl OutputStream for BodyStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.check()?;
        if bytes.len() > CHUNK - self.buffer.len() {
            return Err(StreamError::trap(
                "write exceeds the permit check-write returned",
            ));
        }
        self.buffer.extend_from_slice(&bytes);
        if self.buffer.len() >= CHUNK && self.in_flight.is_none() {
            self.send();
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.check()?;
        self.flushing = true;
        if self.in_flight.is_none() && !self.buffer.is_empty() {
            self.send();
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.check()?;
        if self.flushing && (self.in_flight.is_some() || !self.buffer.is_empty()) {
            return Ok(0);
        }
        Ok(CHUNK - self.buffer.len())
    }

    async fn cancel(&mut self) {
        self.flushing = true;
        self.ready().await;
        let mut body = lock(&self.body);
        body.streaming = false;
        body.writer = self.writer.take();
        body.failure = self.failure.take();
    }
}
