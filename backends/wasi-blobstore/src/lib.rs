//! `wasi:blobstore@0.2.0-draft` for qwasr runtimes: containers of named
//! objects, written and read through `wasi:io` streams, over one backend
//! trait, [`Blobstore`].
//!
//! # What a guest can rely on
//!
//! - Containers and objects open by any UTF-8 name (empty, `..`, `a/b`,
//!   `../../etc/passwd`, NUL, 4 KB long): names are data, never paths.
//! - `get-data(name, start, end)` reads bytes `start..=end` (the WIT's offsets
//!   are inclusive). An `end` past the object reads to its end; `start > end`
//!   or `start` past the end is an error naming the offsets and the size; an
//!   empty object reads as empty from offset 0. The returned `incoming-value`
//!   is a snapshot: it reads the bytes it was made for even if the object is
//!   deleted or replaced afterwards.
//! - `created-at` is in seconds since the Unix epoch: for an object, when it
//!   was last written (stored by `write-data`/`finish` or copied); for a
//!   container, when it was created.
//! - An `outgoing-value` is stored at the first moment both its content and
//!   its name are known: in `write-data` when its body stream was already
//!   dropped (or never taken), else in `finish`. The call that stores it
//!   returns only once the backend has made the object durable. A value
//!   dropped before that is discarded.
//! - `list-objects` pages through the backend: no listing is held in memory
//!   at once, and one `read-stream-object-names` call returns at most
//!   10,000 names (call it again until it reports the end).
//! - `incoming-value-consume-sync` refuses a value larger than an instance's
//!   memory limit (`[limits] memory`); `incoming-value-consume-async`
//!   streams any size in 64 KiB chunks.
//! - With `[blobstore] containers = [...]` in `qwasr.toml`, only the listed
//!   containers can be created, opened, deleted, tested, copied or moved
//!   from or to; anything else is the error
//!   ``container `x` is not granted: add it to [blobstore] containers in qwasr.toml``.
//!
//! # Flavours
//!
//! One cargo feature per WIT flavour of `wasi:blobstore@0.2.0-draft`, over
//! the same backend and with the same behaviour (grants, error texts,
//! durability, streaming):
//!
//! - `sync` (default): the proposal's WIT, sync functions, values through
//!   `wasi:io@0.2.1` streams (WASI 0.2 guests).
//! - `async`: the original Qwasr's WIT, the same functions as `async func`s,
//!   values through `wasi:io@0.2.2` streams (WASI 0.3 guests). It needs the
//!   component model's async ABI (`qwasr-kernel/p3`, an app with
//!   `concurrency`).
//!
//! Both bind the same name@version, so a runtime links one: with both
//! features on, [`add_to_linker`] returns an error.
//!
//! # The embedded default
//!
//! [`embedded`] keeps containers as directories and objects as files under
//! `<data dir>/blobstore`. Names are encoded into safe file names (hashed
//! when too long, with the real name kept beside), so nothing escapes that
//! directory and no two names share a file. Writes go to a temp file, are
//! fsynced, renamed into place and the directory fsynced before they are
//! acknowledged, so an acknowledged write survives `kill -9` (and power
//! loss, as far as the filesystem honours fsync). Objects are streamed in
//! chunks, never held whole in memory.
//!
//! # Writing another backend
//!
//! Implement [`Blobstore`] (with an [`ObjectWriter`], an [`ObjectReader`]
//! and an [`ObjectLister`]) and return `Ctx::new(backend, cfg)` from your
//! `connect`. The WIT mapping, grants and stream plumbing stay here. Use the
//! helpers in [`errors`] so every backend reports the same messages.

#![deny(missing_docs)]
// Without a binding feature the resource types and operations are unused.
#![cfg_attr(not(any(feature = "sync", feature = "async")), allow(dead_code))]

/// `bindgen!` for one flavour's WIT (`path`) and function flavours
/// (`imports`), with what every flavour shares: the kernel's `wasi:io`
/// (wasmtime-wasi's, so the stream resources are the same) and this crate's
/// resource types.
#[cfg(any(feature = "sync", feature = "async"))]
macro_rules! bindgen {
    ($path:tt, $imports:tt) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: "wasi:blobstore/imports",
            imports: $imports,
            with: {
                "wasi:io": wasmtime_wasi::p2::bindings::io,
                "wasi:blobstore/container.container": crate::Container,
                "wasi:blobstore/container.stream-object-names": crate::ObjectNames,
                "wasi:blobstore/types.outgoing-value": crate::OutgoingValue,
                "wasi:blobstore/types.incoming-value": crate::IncomingValue,
            },
            anyhow: true,
        });
    };
}

/// Conversions between this crate's values and one flavour's generated
/// `types` records.
#[cfg(any(feature = "sync", feature = "async"))]
macro_rules! conversions {
    ($types:ident) => {
        impl From<crate::ContainerInfo> for $types::ContainerMetadata {
            fn from(i: crate::ContainerInfo) -> Self {
                Self {
                    name: i.name,
                    created_at: i.created_at,
                }
            }
        }

        impl From<crate::ObjectInfo> for $types::ObjectMetadata {
            fn from(i: crate::ObjectInfo) -> Self {
                Self {
                    name: i.name,
                    container: i.container,
                    created_at: i.created_at,
                    size: i.size,
                }
            }
        }

        impl From<$types::ObjectId> for crate::ObjectId {
            fn from(o: $types::ObjectId) -> Self {
                crate::ObjectId::new(o.container, o.object)
            }
        }
    };
}

#[cfg(feature = "sync")]
mod draft;
#[cfg(feature = "async")]
mod draft_async;
pub mod embedded;
#[cfg(test)]
mod guest_tests;
mod streams;

use anyhow::Result;
use bytes::Bytes;
use qwasr_kernel::{BackendConfig, View, lock};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Linker};

/// A boxed future, as the backend traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Bytes moved per step when streaming an object in or out.
pub const CHUNK: usize = 64 << 10;

/// Most names one `read-stream-object-names` call returns.
const MAX_NAMES_PER_READ: usize = 10_000;

/// Names asked of a backend's lister at once.
const PAGE: usize = 1000;

/// A container as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The container's name.
    pub name: String,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at: u64,
}

/// An object as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The container holding it.
    pub container: String,
    /// The object's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, in seconds since the Unix epoch.
    pub created_at: u64,
}

/// An object's address: its container and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// The container's name.
    pub container: String,
    /// The object's name within the container.
    pub name: String,
}

impl ObjectId {
    /// The object `name` in `container`.
    pub fn new(container: impl Into<String>, name: impl Into<String>) -> ObjectId {
        ObjectId {
            container: container.into(),
            name: name.into(),
        }
    }
}

/// One page of object names from an [`ObjectLister`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamePage {
    /// Names on this page, in no particular order.
    pub names: Vec<String>,
    /// Whether more pages may follow; `false` on the last page.
    pub more: bool,
}

/// What a blobstore backend implements. Errors become the guest's error
/// string (`{e:#}`), so say what failed and name the container or object
/// (see [`errors`]).
///
/// Names are arbitrary UTF-8 (empty, `..`, `a/b`, NUL, kilobytes long): a
/// backend must store any of them and never let two names share an object.
/// Grants are checked before the backend is called.
pub trait Blobstore: Send + Sync + 'static {
    /// Creates an empty container; an existing one is an error
    /// ([`errors::container_exists`]).
    fn create_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ContainerInfo>;

    /// The container `name`, or `None` if it does not exist.
    fn container_info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ContainerInfo>>;

    /// Deletes a container and every object in it; a missing one is an
    /// error ([`errors::no_container`]).
    fn delete_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()>;

    /// The object `name` in `container`, or `None` if there is no such
    /// object; a missing container is an error.
    fn object_info<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Option<ObjectInfo>>;

    /// Opens bytes `start..=end` (inclusive) of an object for reading, as
    /// [`errors::byte_range`] clamps and checks them against the object's
    /// size. The reader is a snapshot: it yields the bytes of the object as
    /// it was when `read` returned, even if it is replaced or deleted later.
    fn read<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
        start: u64,
        end: u64,
    ) -> BoxFuture<'a, Box<dyn ObjectReader>>;

    /// Starts a new object whose name is not known yet: the guest may write
    /// its body before saying where it goes. Nothing is visible until
    /// [`ObjectWriter::commit`]. (A remote store can spool to a local temp
    /// file, or upload to a staging key and copy or rename it at commit.)
    fn writer(&self) -> BoxFuture<'_, Box<dyn ObjectWriter>>;

    /// Deletes an object; a missing object is not an error, a missing
    /// container is.
    fn delete_object<'a>(&'a self, container: &'a str, name: &'a str) -> BoxFuture<'a, ()>;

    /// Starts listing the names of the objects in `container`.
    fn list_objects<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Box<dyn ObjectLister>>;

    /// Deletes every object in `container`, keeping the container.
    fn clear<'a>(&'a self, container: &'a str) -> BoxFuture<'a, ()>;

    /// Copies an object, replacing `dest` if it exists. A missing source
    /// object or destination container is an error.
    fn copy_object<'a>(&'a self, src: &'a ObjectId, dest: &'a ObjectId) -> BoxFuture<'a, ()>;

    /// Moves (renames) an object, replacing `dest` if it exists. A missing
    /// source object or destination container is an error.
    fn move_object<'a>(&'a self, src: &'a ObjectId, dest: &'a ObjectId) -> BoxFuture<'a, ()>;
}

/// Receives an object's body in chunks and stores it under a name given at
/// the end. Dropping a writer without committing discards what was written
/// (a backend that must clean up asynchronously does so in
/// [`ObjectWriter::abort`], which the bindings call when they can).
pub trait ObjectWriter: Send + 'static {
    /// Appends `chunk` to the body.
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, ()>;

    /// Stores the body as object `name` in `container`, replacing any
    /// object of that name; returns once the object is durable. A missing
    /// container is an error ([`errors::no_container`]).
    fn commit<'a>(self: Box<Self>, container: &'a str, name: &'a str) -> BoxFuture<'a, ()>;

    /// Discards the body.
    fn abort(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { drop(self) })
    }
}

/// Yields the bytes of a range of an object, in order.
pub trait ObjectReader: Send + 'static {
    /// The number of bytes in the range (fixed when the reader was made).
    fn size(&self) -> u64;

    /// The next chunk of at most `max` bytes (never empty), or `None` at
    /// the end of the range.
    fn read(&mut self, max: usize) -> BoxFuture<'_, Option<Bytes>>;
}

/// Lists the names in a container page by page; it holds whatever cursor
/// the backend needs (an open directory, a continuation token).
pub trait ObjectLister: Send + 'static {
    /// The next names, at most `max` of them.
    fn next_page(&mut self, max: usize) -> BoxFuture<'_, NamePage>;
}

/// Error messages shared by every backend, so guests see the same text
/// whichever backend serves them.
pub mod errors {
    pub use qwasr_kernel::Shown;

    /// ``container `x` does not exist``.
    pub fn no_container(name: &str) -> anyhow::Error {
        anyhow::anyhow!("container `{}` does not exist", Shown(name))
    }

    /// ``container `x` already exists``.
    pub fn container_exists(name: &str) -> anyhow::Error {
        anyhow::anyhow!("container `{}` already exists", Shown(name))
    }

    /// ``object `n` does not exist in container `c` ``.
    pub fn no_object(container: &str, name: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "object `{}` does not exist in container `{}`",
            Shown(name),
            Shown(container)
        )
    }

    /// The message for a container the manifest does not grant.
    pub fn not_granted(name: &str) -> String {
        format!(
            "container `{}` is not granted: add it to [blobstore] containers in qwasr.toml",
            Shown(name)
        )
    }

    /// Checks the inclusive range `start..=end` against an object of `size`
    /// bytes and returns `(offset, length)` of the bytes to read: `end` past
    /// the object reads to its end, an empty object reads as empty from 0,
    /// and `start > end` or `start` past the end is an error.
    pub fn byte_range(
        container: &str,
        name: &str,
        start: u64,
        end: u64,
        size: u64,
    ) -> anyhow::Result<(u64, u64)> {
        let what = || {
            format!(
                "cannot read bytes {start}..={end} (inclusive) of object `{}` in container `{}` ({size} bytes)",
                Shown(name),
                Shown(container)
            )
        };
        if start > end {
            anyhow::bail!("{}: the start offset is after the end offset", what());
        }
        if size == 0 && start == 0 {
            return Ok((0, 0));
        }
        if start >= size {
            anyhow::bail!("{}: the start offset is past the end of the object", what());
        }
        let last = end.min(size - 1);
        Ok((start, last - start + 1))
    }
}

/// Per-store `wasi:blobstore` state: the backend and the manifest's grants,
/// shared by every request.
#[derive(Clone)]
pub struct Ctx {
    backend: Arc<dyn Blobstore>,
    granted: Option<&'static [&'static str]>,
    max_sync_read: u64,
}

impl Ctx {
    /// A context over `backend`, enforcing `cfg`'s `[blobstore] containers`
    /// and sizing `incoming-value-consume-sync` by the app's memory limit.
    pub fn new(backend: impl Blobstore, cfg: &BackendConfig) -> Ctx {
        Ctx {
            backend: Arc::new(backend),
            granted: cfg.names(),
            max_sync_read: cfg.app.limits.memory,
        }
    }

    /// The backend behind this context.
    pub fn backend(&self) -> &dyn Blobstore {
        &*self.backend
    }

    fn grant(&self, name: &str) -> Result<(), String> {
        match self.granted {
            Some(names) if !names.contains(&name) => Err(errors::not_granted(name)),
            _ => Ok(()),
        }
    }
}

/// An open container, as the guest holds it.
pub struct Container {
    name: String,
}

/// An object's body, shared between an outgoing value and its output
/// stream: the stream holds the writer while it is open and hands it back
/// when it is dropped.
#[derive(Default)]
struct Body {
    writer: Option<Box<dyn ObjectWriter>>,
    /// Whether an output stream currently holds the body.
    streaming: bool,
    /// Why writing the body failed, if it did.
    failure: Option<String>,
}

/// Where an outgoing value stands.
enum Stage {
    /// Not yet named by `write-data`.
    Open,
    /// Named while its stream was still open: stored by `finish`.
    Named(ObjectId),
    /// `write-data` is storing it (an `async func` call may still be running).
    Storing(ObjectId),
    /// Stored.
    Stored(ObjectId),
    /// Storing it failed (the guest got the error).
    Failed,
}

/// A value being written, as the guest holds it (`outgoing-value`).
pub struct OutgoingValue {
    body: Arc<Mutex<Body>>,
    taken: bool,
    stage: Stage,
}

/// A value being read, as the guest holds it (`incoming-value`).
pub struct IncomingValue {
    reader: Box<dyn ObjectReader>,
}

/// A listing in progress, as the guest holds it (`stream-object-names`).
pub struct ObjectNames {
    /// Behind an async lock, so a read can await the backend without
    /// holding the store, and overlapping reads of one stream take turns.
    listing: Arc<tokio::sync::Mutex<Listing>>,
}

struct Listing {
    lister: Box<dyn ObjectLister>,
    buffered: VecDeque<String>,
    end: bool,
}

/// Adds the `wasi:blobstore` flavour compiled in (cargo feature `sync` or
/// `async`) to the linker. `wasi:io` comes from the kernel's linker
/// (`wasmtime_wasi::p2::add_to_linker_async`), whose streams these share.
///
/// Both flavours bind `wasi:blobstore@0.2.0-draft`, which one linker holds
/// once: with both features on this is an error (qwasr-gen enables the one
/// the component imports).
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    #[cfg(all(feature = "sync", feature = "async"))]
    {
        // Both stay compiled (`--all-features` builds); neither is linked.
        let _ = (
            linker,
            draft::add_to_linker::<T>,
            draft_async::add_to_linker::<T>,
        );
        anyhow::bail!(
            "qwasr-wasi-blobstore is built with both the `sync` and the `async` feature, two \
             flavours of wasi:blobstore@0.2.0-draft that cannot be linked together; enable \
             only the one the component imports"
        )
    }
    #[cfg(not(all(feature = "sync", feature = "async")))]
    {
        #[cfg(feature = "sync")]
        draft::add_to_linker(linker)?;
        #[cfg(feature = "async")]
        draft_async::add_to_linker(linker)?;
        let _ = linker;
        Ok(())
    }
}

struct HasBlobstore;

impl HasData for HasBlobstore {
    type Data<'a> = qwasr_kernel::CtxView<'a, Ctx>;
}

fn view<T: View<Ctx>>(t: &mut T) -> qwasr_kernel::CtxView<'_, Ctx> {
    t.view()
}

/// The operations every flavour shares. The outer `Result` traps the guest
/// (a bad resource handle); the inner one is the error string the guest
/// gets.
mod ops {
    use super::*;
    use crate::errors::{Shown, no_container};
    use crate::streams::{BodyStream, ValueStream};
    use qwasr_kernel::Access;
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

    pub(crate) type Op<T> = Result<Result<T, String>>;

    fn text(e: anyhow::Error) -> String {
        format!("{e:#}")
    }

    /// The backend, if the manifest grants every one of `names`.
    fn granted(s: &mut impl Access<Ctx>, names: &[&str]) -> Result<Arc<dyn Blobstore>, String> {
        s.on(|v| {
            for name in names {
                v.ctx.grant(name)?;
            }
            Ok(v.ctx.backend.clone())
        })
    }

    /// The backend and the name of an open container.
    fn open(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
    ) -> Result<(Arc<dyn Blobstore>, String)> {
        s.on(|v| Ok((v.ctx.backend.clone(), v.table.get(c)?.name.clone())))
    }

    fn push<R: Send + 'static>(s: &mut impl Access<Ctx>, r: R) -> Result<Resource<R>> {
        s.on(|v| Ok(v.table.push(r)?))
    }

    pub(crate) async fn create_container(
        s: &mut impl Access<Ctx>,
        name: String,
    ) -> Op<Resource<Container>> {
        let backend = match granted(s, &[&name]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        match backend.create_container(&name).await {
            Ok(_) => Ok(Ok(push(s, Container { name })?)),
            Err(e) => Ok(Err(text(e))),
        }
    }

    pub(crate) async fn get_container(
        s: &mut impl Access<Ctx>,
        name: String,
    ) -> Op<Resource<Container>> {
        let backend = match granted(s, &[&name]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        match backend.container_info(&name).await {
            Ok(Some(_)) => Ok(Ok(push(s, Container { name })?)),
            Ok(None) => Ok(Err(text(no_container(&name)))),
            Err(e) => Ok(Err(text(e))),
        }
    }

    pub(crate) async fn delete_container(s: &mut impl Access<Ctx>, name: String) -> Op<()> {
        let backend = match granted(s, &[&name]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.delete_container(&name).await.map_err(text))
    }

    pub(crate) async fn container_exists(s: &mut impl Access<Ctx>, name: String) -> Op<bool> {
        let backend = match granted(s, &[&name]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend
            .container_info(&name)
            .await
            .map(|i| i.is_some())
            .map_err(text))
    }

    pub(crate) async fn copy_object(
        s: &mut impl Access<Ctx>,
        src: ObjectId,
        dest: ObjectId,
    ) -> Op<()> {
        let backend = match granted(s, &[&src.container, &dest.container]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.copy_object(&src, &dest).await.map_err(text))
    }

    pub(crate) async fn move_object(
        s: &mut impl Access<Ctx>,
        src: ObjectId,
        dest: ObjectId,
    ) -> Op<()> {
        let backend = match granted(s, &[&src.container, &dest.container]) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        Ok(backend.move_object(&src, &dest).await.map_err(text))
    }

    pub(crate) fn name(s: &mut impl Access<Ctx>, c: &Resource<Container>) -> Op<String> {
        Ok(Ok(open(s, c)?.1))
    }

    pub(crate) async fn info(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
    ) -> Op<ContainerInfo> {
        let (backend, name) = open(s, c)?;
        Ok(match backend.container_info(&name).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(text(no_container(&name))),
            Err(e) => Err(text(e)),
        })
    }

    pub(crate) async fn get_data(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Op<Resource<IncomingValue>> {
        let (backend, container) = open(s, c)?;
        match backend.read(&container, &name, start, end).await {
            Ok(reader) => Ok(Ok(push(s, IncomingValue { reader })?)),
            Err(e) => Ok(Err(text(e))),
        }
    }

    /// Stores the body under `id`: the writer the stream handed back, or
    /// an empty body if no stream ever wrote.
    async fn store(
        backend: &Arc<dyn Blobstore>,
        writer: Option<Box<dyn ObjectWriter>>,
        failure: Option<String>,
        id: &ObjectId,
    ) -> Result<(), String> {
        if let Some(failure) = failure {
            if let Some(w) = writer {
                w.abort().await;
            }
            return Err(format!(
                "object `{}` in container `{}` was not stored: writing its body failed: {failure}",
                Shown(&id.name),
                Shown(&id.container)
            ));
        }
        let writer = match writer {
            Some(w) => w,
            None => backend.writer().await.map_err(text)?,
        };
        writer.commit(&id.container, &id.name).await.map_err(text)
    }

    const FAILED: &str =
        "this outgoing-value could not be stored (see the error write-data returned)";

    /// What `write-data` stores once the store is released.
    type Pending = (
        Arc<dyn Blobstore>,
        Option<Box<dyn ObjectWriter>>,
        Option<String>,
        ObjectId,
    );

    pub(crate) async fn write_data(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
        name: String,
        data: &Resource<OutgoingValue>,
    ) -> Op<()> {
        let pending = s.on(|v| -> Result<Result<Option<Pending>, String>> {
            let id = ObjectId::new(v.table.get(c)?.name.clone(), name);
            let backend = v.ctx.backend.clone();
            let value = v.table.get_mut(data)?;
            match &value.stage {
                Stage::Open => {}
                Stage::Named(first) | Stage::Storing(first) | Stage::Stored(first) => {
                    return Ok(Err(format!(
                        "write-data was already called for this outgoing-value (object `{}` in container `{}`); \
                         use a new outgoing-value for another object",
                        Shown(&first.name),
                        Shown(&first.container)
                    )));
                }
                Stage::Failed => return Ok(Err(FAILED.to_string())),
            }
            let mut body = lock(&value.body);
            if body.streaming {
                // The guest still writes the body: `finish` stores it.
                drop(body);
                value.stage = Stage::Named(id);
                return Ok(Ok(None));
            }
            let (writer, failure) = (body.writer.take(), body.failure.take());
            drop(body);
            value.stage = Stage::Storing(id.clone());
            Ok(Ok(Some((backend, writer, failure, id))))
        })?;
        let (backend, writer, failure, id) = match pending {
            Ok(Some(pending)) => pending,
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e)),
        };
        let stored = store(&backend, writer, failure, &id).await;
        s.on(|v| -> Result<()> {
            v.table.get_mut(data)?.stage = match stored {
                Ok(()) => Stage::Stored(id),
                Err(_) => Stage::Failed,
            };
            Ok(())
        })?;
        Ok(stored)
    }

    pub(crate) async fn list_objects(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
    ) -> Op<Resource<ObjectNames>> {
        let (backend, container) = open(s, c)?;
        match backend.list_objects(&container).await {
            Ok(lister) => {
                let listing = Listing {
                    lister,
                    buffered: VecDeque::new(),
                    end: false,
                };
                Ok(Ok(push(
                    s,
                    ObjectNames {
                        listing: Arc::new(tokio::sync::Mutex::new(listing)),
                    },
                )?))
            }
            Err(e) => Ok(Err(text(e))),
        }
    }

    pub(crate) async fn delete_object(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
        name: String,
    ) -> Op<()> {
        let (backend, container) = open(s, c)?;
        Ok(backend.delete_object(&container, &name).await.map_err(text))
    }

    pub(crate) async fn delete_objects(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
        names: Vec<String>,
    ) -> Op<()> {
        let (backend, container) = open(s, c)?;
        for name in names {
            if let Err(e) = backend.delete_object(&container, &name).await {
                return Ok(Err(text(e)));
            }
        }
        Ok(Ok(()))
    }

    pub(crate) async fn has_object(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
        name: String,
    ) -> Op<bool> {
        let (backend, container) = open(s, c)?;
        Ok(backend
            .object_info(&container, &name)
            .await
            .map(|i| i.is_some())
            .map_err(text))
    }

    pub(crate) async fn object_info(
        s: &mut impl Access<Ctx>,
        c: &Resource<Container>,
        name: String,
    ) -> Op<ObjectInfo> {
        let (backend, container) = open(s, c)?;
        Ok(match backend.object_info(&container, &name).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(text(errors::no_object(&container, &name))),
            Err(e) => Err(text(e)),
        })
    }

    pub(crate) async fn clear(s: &mut impl Access<Ctx>, c: &Resource<Container>) -> Op<()> {
        let (backend, container) = open(s, c)?;
        Ok(backend.clear(&container).await.map_err(text))
    }

    fn listing(
        s: &mut impl Access<Ctx>,
        names: &Resource<ObjectNames>,
    ) -> Result<Arc<tokio::sync::Mutex<Listing>>> {
        s.on(|v| Ok(v.table.get(names)?.listing.clone()))
    }

    impl Listing {
        /// Buffers the next page of at most `max` names.
        async fn fetch(&mut self, max: usize) -> Result<(), String> {
            let page = self.lister.next_page(max).await.map_err(text)?;
            self.buffered.extend(page.names);
            self.end = !page.more;
            Ok(())
        }

        fn done(&self) -> bool {
            self.end && self.buffered.is_empty()
        }
    }

    pub(crate) async fn read_names(
        s: &mut impl Access<Ctx>,
        names: &Resource<ObjectNames>,
        len: u64,
    ) -> Op<(Vec<String>, bool)> {
        let listing = listing(s, names)?;
        let mut names = listing.lock().await;
        let want = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(MAX_NAMES_PER_READ);
        while names.buffered.len() < want && !names.end {
            let ask = (want - names.buffered.len()).min(PAGE);
            if let Err(e) = names.fetch(ask).await {
                return Ok(Err(e));
            }
        }
        let n = want.min(names.buffered.len());
        let out: Vec<String> = names.buffered.drain(..n).collect();
        Ok(Ok((out, names.done())))
    }

    pub(crate) async fn skip_names(
        s: &mut impl Access<Ctx>,
        names: &Resource<ObjectNames>,
        num: u64,
    ) -> Op<(u64, bool)> {
        let listing = listing(s, names)?;
        let mut names = listing.lock().await;
        let mut skipped: u64 = 0;
        while skipped < num {
            if names.buffered.is_empty() {
                if names.end {
                    break;
                }
                let ask = usize::try_from(num - skipped).unwrap_or(PAGE).min(PAGE);
                if let Err(e) = names.fetch(ask).await {
                    return Ok(Err(e));
                }
                continue;
            }
            let n = usize::try_from(num - skipped)
                .unwrap_or(usize::MAX)
                .min(names.buffered.len());
            names.buffered.drain(..n);
            skipped += n as u64;
        }
        Ok(Ok((skipped, names.done())))
    }

    pub(crate) fn new_outgoing_value(s: &mut impl Access<Ctx>) -> Result<Resource<OutgoingValue>> {
        push(
            s,
            OutgoingValue {
                body: Arc::new(Mutex::new(Body::default())),
                taken: false,
                stage: Stage::Open,
            },
        )
    }

    /// `outgoing-value-write-body`: the value's output stream, at most once.
    pub(crate) fn write_body(
        s: &mut impl Access<Ctx>,
        value: Resource<OutgoingValue>,
    ) -> Result<Result<Resource<DynOutputStream>, ()>> {
        s.on(|v| {
            let backend = v.ctx.backend.clone();
            let out = v.table.get_mut(&value)?;
            // At most once, and not after write-data stored an empty body.
            if out.taken || !matches!(out.stage, Stage::Open) {
                return Ok(Err(()));
            }
            out.taken = true;
            lock(&out.body).streaming = true;
            let stream: DynOutputStream = Box::new(BodyStream::new(backend, out.body.clone()));
            // A child: finishing or dropping the value while the stream is
            // open traps, as the WIT says.
            Ok(Ok(v.table.push_child(stream, &value)?))
        })
    }

    pub(crate) async fn finish(s: &mut impl Access<Ctx>, value: Resource<OutgoingValue>) -> Op<()> {
        // Traps while the body stream is still open: it is a child resource.
        let (value, backend) =
            s.on(|v| -> Result<_> { Ok((v.table.delete(value)?, v.ctx.backend.clone())) })?;
        let (writer, failure) = {
            let mut body = lock(&value.body);
            (body.writer.take(), body.failure.take())
        };
        match value.stage {
            Stage::Stored(_) => Ok(Ok(())),
            Stage::Failed => Ok(Err(FAILED.to_string())),
            Stage::Storing(id) => Ok(Err(format!(
                "finish was called before write-data finished storing object `{}` in container `{}`",
                Shown(&id.name),
                Shown(&id.container)
            ))),
            Stage::Named(id) => Ok(store(&backend, writer, failure, &id).await),
            Stage::Open => {
                if let Some(w) = writer {
                    w.abort().await;
                }
                Ok(Err(
                    "finish was called before write-data named the object: \
                     nothing was stored"
                        .to_string(),
                ))
            }
        }
    }

    pub(crate) async fn drop_outgoing_value(
        s: &mut impl Access<Ctx>,
        value: Resource<OutgoingValue>,
    ) -> Result<()> {
        let value = s.on(|v| v.table.delete(value))?;
        let writer = lock(&value.body).writer.take();
        if let Some(w) = writer {
            w.abort().await;
        }
        Ok(())
    }

    pub(crate) async fn consume_sync(
        s: &mut impl Access<Ctx>,
        value: Resource<IncomingValue>,
    ) -> Op<Vec<u8>> {
        let (IncomingValue { mut reader }, max) =
            s.on(|v| -> Result<_> { Ok((v.table.delete(value)?, v.ctx.max_sync_read)) })?;
        let size = reader.size();
        if size > max {
            return Ok(Err(format!(
                "the value is {size} bytes, more than an instance may hold ({max} bytes, [limits] memory): \
                 read it with incoming-value-consume-async"
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        loop {
            match reader.read(CHUNK).await {
                Ok(Some(chunk)) => out.extend_from_slice(&chunk),
                Ok(None) => return Ok(Ok(out)),
                Err(e) => return Ok(Err(text(e))),
            }
        }
    }

    /// `incoming-value-consume-async`: the value as an input stream.
    pub(crate) fn consume_async(
        s: &mut impl Access<Ctx>,
        value: Resource<IncomingValue>,
    ) -> Op<Resource<DynInputStream>> {
        s.on(|v| {
            let IncomingValue { reader } = v.table.delete(value)?;
            let stream: DynInputStream = Box::new(ValueStream::new(reader));
            Ok(Ok(v.table.push(stream)?))
        })
    }

    pub(crate) fn size(s: &mut impl Access<Ctx>, value: &Resource<IncomingValue>) -> Result<u64> {
        s.on(|v| Ok(v.table.get(value)?.reader.size()))
    }

    /// Drops a resource that needs no clean-up beyond its Rust `Drop`.
    pub(crate) fn delete<R: 'static>(s: &mut impl Access<Ctx>, r: Resource<R>) -> Result<()> {
        s.on(|v| {
            v.table.delete(r)?;
            Ok(())
        })
    }
}
