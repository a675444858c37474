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
#![cfg_attr(not(feature = "sync"), allow(dead_code))]

#[cfg(feature = "sync")]
mod draft;
pub mod embedded;
#[cfg(feature = "sync")]
mod streams;

use anyhow::Result;
use bytes::Bytes;
use qwasr_kernel::{BackendConfig, View};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
    use std::fmt;

    /// A name as shown in messages: control characters escaped, very long
    /// names cut short.
    pub struct Shown<'a>(pub &'a str);

    impl fmt::Display for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            const MAX: usize = 200;
            for (i, c) in self.0.chars().enumerate() {
                if i == MAX {
                    return write!(f, "…({} bytes)", self.0.len());
                }
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            Ok(())
        }
    }

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

fn lock(body: &Mutex<Body>) -> MutexGuard<'_, Body> {
    // Every update leaves the body consistent, so a panic elsewhere while
    // it was locked does not matter.
    body.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where an outgoing value stands.
enum Stage {
    /// Not yet named by `write-data`.
    Open,
    /// Named while its stream was still open: stored by `finish`.
    Named(ObjectId),
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
    lister: Box<dyn ObjectLister>,
    buffered: VecDeque<String>,
    end: bool,
}

/// Adds every `wasi:blobstore` flavour compiled in (cargo features) to the
/// linker. `wasi:io` comes from the kernel's linker
/// (`wasmtime_wasi::p2::add_to_linker_async`), whose streams these share.
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    #[cfg(feature = "sync")]
    draft::add_to_linker(linker)?;
    let _ = linker;
    Ok(())
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
    use qwasr_kernel::CtxView;
    use wasmtime::component::Resource;

    pub(crate) type Op<T> = Result<Result<T, String>>;

    fn text(e: anyhow::Error) -> String {
        format!("{e:#}")
    }

    fn container(v: &CtxView<'_, Ctx>, c: &Resource<Container>) -> Result<String> {
        Ok(v.table.get(c)?.name.clone())
    }

    pub(crate) async fn create_container(
        v: &mut CtxView<'_, Ctx>,
        name: String,
    ) -> Op<Resource<Container>> {
        if let Err(e) = v.ctx.grant(&name) {
            return Ok(Err(e));
        }
        match v.ctx.backend.create_container(&name).await {
            Ok(_) => Ok(Ok(v.table.push(Container { name })?)),
            Err(e) => Ok(Err(text(e))),
        }
    }

    pub(crate) async fn get_container(
        v: &mut CtxView<'_, Ctx>,
        name: String,
    ) -> Op<Resource<Container>> {
        if let Err(e) = v.ctx.grant(&name) {
            return Ok(Err(e));
        }
        match v.ctx.backend.container_info(&name).await {
            Ok(Some(_)) => Ok(Ok(v.table.push(Container { name })?)),
            Ok(None) => Ok(Err(text(no_container(&name)))),
            Err(e) => Ok(Err(text(e))),
        }
    }

    pub(crate) async fn delete_container(v: &mut CtxView<'_, Ctx>, name: String) -> Op<()> {
        if let Err(e) = v.ctx.grant(&name) {
            return Ok(Err(e));
        }
        Ok(v.ctx.backend.delete_container(&name).await.map_err(text))
    }

    pub(crate) async fn container_exists(v: &mut CtxView<'_, Ctx>, name: String) -> Op<bool> {
        if let Err(e) = v.ctx.grant(&name) {
            return Ok(Err(e));
        }
        Ok(v.ctx
            .backend
            .container_info(&name)
            .await
            .map(|i| i.is_some())
            .map_err(text))
    }

    pub(crate) async fn copy_object(
        v: &mut CtxView<'_, Ctx>,
        src: ObjectId,
        dest: ObjectId,
    ) -> Op<()> {
        if let Err(e) = v
            .ctx
            .grant(&src.container)
            .and(v.ctx.grant(&dest.container))
        {
            return Ok(Err(e));
        }
        Ok(v.ctx.backend.copy_object(&src, &dest).await.map_err(text))
    }

    pub(crate) async fn move_object(
        v: &mut CtxView<'_, Ctx>,
        src: ObjectId,
        dest: ObjectId,
    ) -> Op<()> {
        if let Err(e) = v
            .ctx
            .grant(&src.container)
            .and(v.ctx.grant(&dest.container))
        {
            return Ok(Err(e));
        }
        Ok(v.ctx.backend.move_object(&src, &dest).await.map_err(text))
    }

    pub(crate) fn name(v: &mut CtxView<'_, Ctx>, c: &Resource<Container>) -> Op<String> {
        Ok(Ok(container(v, c)?))
    }

    pub(crate) async fn info(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
    ) -> Op<ContainerInfo> {
        let name = container(v, c)?;
        Ok(match v.ctx.backend.container_info(&name).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(text(no_container(&name))),
            Err(e) => Err(text(e)),
        })
    }

    pub(crate) async fn get_data(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Op<Resource<IncomingValue>> {
        let container = container(v, c)?;
        match v.ctx.backend.read(&container, &name, start, end).await {
            Ok(reader) => Ok(Ok(v.table.push(IncomingValue { reader })?)),
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

    pub(crate) async fn write_data(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
        name: String,
        data: &Resource<OutgoingValue>,
    ) -> Op<()> {
        let id = ObjectId::new(container(v, c)?, name);
        let backend = v.ctx.backend.clone();
        let value = v.table.get_mut(data)?;
        match &value.stage {
            Stage::Open => {}
            Stage::Named(first) | Stage::Stored(first) => {
                return Ok(Err(format!(
                    "write-data was already called for this outgoing-value (object `{}` in container `{}`); \
                     use a new outgoing-value for another object",
                    Shown(&first.name),
                    Shown(&first.container)
                )));
            }
            Stage::Failed => {
                return Ok(Err(
                    "this outgoing-value could not be stored (see the error write-data returned)"
                        .to_string(),
                ));
            }
        }
        let (streaming, writer, failure) = {
            let mut body = lock(&value.body);
            if body.streaming {
                (true, None, None)
            } else {
                (false, body.writer.take(), body.failure.take())
            }
        };
        if streaming {
            // The guest still writes the body: `finish` stores it.
            value.stage = Stage::Named(id);
            return Ok(Ok(()));
        }
        let stored = store(&backend, writer, failure, &id).await;
        value.stage = match stored {
            Ok(()) => Stage::Stored(id),
            Err(_) => Stage::Failed,
        };
        Ok(stored)
    }

    pub(crate) async fn list_objects(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
    ) -> Op<Resource<ObjectNames>> {
        let container = container(v, c)?;
        match v.ctx.backend.list_objects(&container).await {
            Ok(lister) => Ok(Ok(v.table.push(ObjectNames {
                lister,
                buffered: VecDeque::new(),
                end: false,
            })?)),
            Err(e) => Ok(Err(text(e))),
        }
    }

    pub(crate) async fn delete_object(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
        name: String,
    ) -> Op<()> {
        let container = container(v, c)?;
        Ok(v.ctx
            .backend
            .delete_object(&container, &name)
            .await
            .map_err(text))
    }

    pub(crate) async fn delete_objects(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
        names: Vec<String>,
    ) -> Op<()> {
        let container = container(v, c)?;
        for name in names {
            if let Err(e) = v.ctx.backend.delete_object(&container, &name).await {
                return Ok(Err(text(e)));
            }
        }
        Ok(Ok(()))
    }

    pub(crate) async fn has_object(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
        name: String,
    ) -> Op<bool> {
        let container = container(v, c)?;
        Ok(v.ctx
            .backend
            .object_info(&container, &name)
            .await
            .map(|i| i.is_some())
            .map_err(text))
    }

    pub(crate) async fn object_info(
        v: &mut CtxView<'_, Ctx>,
        c: &Resource<Container>,
        name: String,
    ) -> Op<ObjectInfo> {
        let container = container(v, c)?;
        Ok(match v.ctx.backend.object_info(&container, &name).await {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(text(errors::no_object(&container, &name))),
            Err(e) => Err(text(e)),
        })
    }

    pub(crate) async fn clear(v: &mut CtxView<'_, Ctx>, c: &Resource<Container>) -> Op<()> {
        let container = container(v, c)?;
        Ok(v.ctx.backend.clear(&container).await.map_err(text))
    }

    pub(crate) async fn read_names(
        v: &mut CtxView<'_, Ctx>,
        names: &Resource<ObjectNames>,
        len: u64,
    ) -> Op<(Vec<String>, bool)> {
        let names = v.table.get_mut(names)?;
        let want = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(MAX_NAMES_PER_READ);
        while names.buffered.len() < want && !names.end {
            let ask = (want - names.buffered.len()).min(PAGE);
            match names.lister.next_page(ask).await {
                Ok(page) => {
                    names.buffered.extend(page.names);
                    names.end = !page.more;
                }
                Err(e) => return Ok(Err(text(e))),
            }
        }
        let n = want.min(names.buffered.len());
        let out: Vec<String> = names.buffered.drain(..n).collect();
        Ok(Ok((out, names.end && names.buffered.is_empty())))
    }

    pub(crate) async fn skip_names(
        v: &mut CtxView<'_, Ctx>,
        names: &Resource<ObjectNames>,
        num: u64,
    ) -> Op<(u64, bool)> {
        let names = v.table.get_mut(names)?;
        let mut skipped: u64 = 0;
        while skipped < num {
            if names.buffered.is_empty() {
                if names.end {
                    break;
                }
                let ask = usize::try_from(num - skipped).unwrap_or(PAGE).min(PAGE);
                match names.lister.next_page(ask).await {
                    Ok(page) => {
                        names.buffered.extend(page.names);
                        names.end = !page.more;
                    }
                    Err(e) => return Ok(Err(text(e))),
                }
                continue;
            }
            let n = usize::try_from(num - skipped)
                .unwrap_or(usize::MAX)
                .min(names.buffered.len());
            names.buffered.drain(..n);
            skipped += n as u64;
        }
        Ok(Ok((skipped, names.end && names.buffered.is_empty())))
    }

    pub(crate) fn new_outgoing_value(v: &mut CtxView<'_, Ctx>) -> Result<Resource<OutgoingValue>> {
        Ok(v.table.push(OutgoingValue {
            body: Arc::new(Mutex::new(Body::default())),
            taken: false,
            stage: Stage::Open,
        })?)
    }

    pub(crate) async fn finish(v: &mut CtxView<'_, Ctx>, value: Resource<OutgoingValue>) -> Op<()> {
        // Traps while the body stream is still open: it is a child resource.
        let value = v.table.delete(value)?;
        let (writer, failure) = {
            let mut body = lock(&value.body);
            (body.writer.take(), body.failure.take())
        };
        match value.stage {
            Stage::Stored(_) => Ok(Ok(())),
            Stage::Failed => Ok(Err(
                "this outgoing-value could not be stored (see the error write-data returned)"
                    .to_string(),
            )),
            Stage::Named(id) => Ok(store(&v.ctx.backend, writer, failure, &id).await),
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
        v: &mut CtxView<'_, Ctx>,
        value: Resource<OutgoingValue>,
    ) -> Result<()> {
        let value = v.table.delete(value)?;
        let writer = lock(&value.body).writer.take();
        if let Some(w) = writer {
            w.abort().await;
        }
        Ok(())
    }

    pub(crate) async fn consume_sync(
        v: &mut CtxView<'_, Ctx>,
        value: Resource<IncomingValue>,
    ) -> Op<Vec<u8>> {
        let IncomingValue { mut reader } = v.table.delete(value)?;
        let size = reader.size();
        if size > v.ctx.max_sync_read {
            return Ok(Err(format!(
                "the value is {size} bytes, more than an instance may hold ({} bytes, [limits] memory): \
                 read it with incoming-value-consume-async",
                v.ctx.max_sync_read
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

    pub(crate) fn size(v: &mut CtxView<'_, Ctx>, value: &Resource<IncomingValue>) -> Result<u64> {
        Ok(v.table.get(value)?.reader.size())
    }
}
