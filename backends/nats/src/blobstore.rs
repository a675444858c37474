//! `wasi:blobstore` on the JetStream object store.
//!
//! Each guest container is an object store `<prefix>_<escaped name>`
//! (stream `OBJ_<that>`, file storage), laid out as every NATS client
//! lays it out, so `nats object` tools read it: an object's bytes are
//! chunks of 128 KiB on `$O.<store>.C.<id>`, its metadata one JSON record
//! on `$O.<store>.M.<base64url name>`.
//!
//! - A container's `created-at` is its stream's creation time, which the
//!   server records. Creating it gives the stream a description unique to
//!   that call, so two replicas creating the same container at once cannot
//!   both succeed (the server refuses a second configuration).
//! - Object names are stored as they are; one too long for a subject (over
//!   384 bytes) is stored as `qwasr-sha256:<hex>` with its real name in the
//!   record's metadata (`qwasr-name`).
//! - A body is spooled to an unnamed temp file until its name is known, then
//!   uploaded chunk by chunk, each acknowledged by JetStream; the record
//!   written last makes it visible, and the previous version's chunks are
//!   purged after. Nothing is visible before the commit, nothing is held
//!   whole in memory.
//! - Reading streams the chunks through an ordered pull consumer, a few at a
//!   time. There is no ranged read: a range starting at byte N reads and
//!   skips the N bytes before it.
//! - Copying streams the chunks into a new object; moving copies, then
//!   deletes the source (not atomic: a failure in between leaves both).

use crate::conn::{self, Nats};
use crate::names;
use anyhow::Result;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind, ObjectStoreError};
use async_nats::jetstream::object_store::{self, InfoErrorKind, ObjectOptions, ObjectStore};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{Context, ErrorCode};
use async_nats::{HeaderMap, HeaderValue};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use qwasr_kernel::BackendConfig;
use qwasr_kernel::Shown;
use qwasr_wasi_blobstore::errors::{self, container_exists, no_container, no_object};
use qwasr_wasi_blobstore::{
    Blobstore, BoxFuture, ContainerInfo, Ctx, NamePage, ObjectId, ObjectInfo, ObjectLister,
    ObjectReader, ObjectWriter,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::IntoFuture;
use std::str::FromStr;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes per chunk, as other NATS clients write them.
const CHUNK: usize = 128 << 10;

/// Chunks a reader asks the server for at once.
const READ_AHEAD: i64 = 4;

/// Metadata key holding the real name of an object stored under a hash.
const NAME_KEY: &str = "qwasr-name";

/// Connects to NATS (`NATS_*` settings, see the README) and checks that
/// JetStream is enabled.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    let prefix = conn::prefix(cfg)?;
    let nats = Nats::connect(cfg, conn::STORE_OPTIONS).await?;
    let js = nats.jetstream();
    nats.check_jetstream(&js).await?;
    Ok(Ctx::new(Objects { nats, js, prefix }, cfg))
}

/// `cannot <verb> object `n` in container `c``, for errors.
fn failed_on(verb: &str, container: &str, name: &str) -> String {
    format!(
        "cannot {verb} object `{}` in container `{}`",
        Shown(name),
        Shown(container)
    )
}

/// Guest containers as JetStream object stores.
#[derive(Clone)]
pub struct Objects {
    nats: Nats,
    js: Context,
    prefix: String,
}

fn stream_missing(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn store_missing(e: &ObjectStoreError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .is_some_and(stream_missing)
}

fn unix(t: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

/// The subject of an object's record.
fn meta_subject(bucket: &str, stored: &str) -> String {
    let name = base64::engine::general_purpose::URL_SAFE.encode(stored);
    format!("$O.{bucket}.M.{name}")
}

/// A unique id for an object's chunks (the last token of a fresh inbox is
/// a NUID, what other clients use).
fn new_id(nats: &Nats) -> String {
    let inbox = nats.client.new_inbox();
    inbox.rsplit('.').next().unwrap_or(&inbox).to_string()
}

/// An object as the store holds it.
struct Found {
    info: object_store::ObjectInfo,
    stored: String,
}

impl Objects {
    fn bucket(&self, container: &str) -> String {
        names::bucket(&self.prefix, container)
    }

    /// The object store of an existing container.
    async fn open(&self, container: &str) -> Result<ObjectStore> {
        let what = format!("cannot open container `{}`", Shown(container));
        self.nats.check_connected(&what)?;
        let get = self.js.get_object_store(self.bucket(container));
        match tokio::time::timeout(self.nats.timeout(), get).await {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(e)) if store_missing(&e) => Err(no_container(container)),
            Ok(Err(e)) => Err(self.nats.error(&what, e)),
            Err(_) => Err(self.nats.no_answer(&what)),
        }
    }

    /// The live object `name` of `store`, if there is one.
    async fn find(
        &self,
        store: &ObjectStore,
        container: &str,
        name: &str,
    ) -> Result<Option<Found>> {
        let (stored, hashed) = names::object(name);
        let what = failed_on("read", container, name);
        let info = match tokio::time::timeout(self.nats.timeout(), store.info(&stored)).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) if e.kind() == InfoErrorKind::NotFound => return Ok(None),
            Ok(Err(e)) => return Err(self.nats.error(&what, e)),
            Err(_) => return Err(self.nats.no_answer(&what)),
        };
        let mine = !hashed || info.metadata.get(NAME_KEY).map(String::as_str) == Some(name);
        Ok((!info.deleted && mine).then_some(Found { info, stored }))
    }

    /// Purges the chunks `$O.<bucket>.C.<id>`.
    async fn purge_chunks(&self, bucket: &str, id: &str) -> Result<()> {
        let stream = self
            .js
            .get_stream_no_info(format!("OBJ_{bucket}"))
            .await
            .map_err(|e| self.nats.error("cannot purge chunks", e))?;
        let purge = stream.purge().filter(format!("$O.{bucket}.C.{id}"));
        self.nats
            .bounded("cannot purge replaced chunks", purge.into_future())
            .await
            .map(drop)
    }

    /// Uploads what `source` yields as object `name` in `container`,
    /// replacing any object of that name once it is complete.
    async fn put(&self, container: &str, name: &str, source: &mut dyn Source) -> Result<()> {
        let what = failed_on("store", container, name);
        let store = self.open(container).await?;
        let previous = self.find(&store, container, name).await?;
        let bucket = self.bucket(container);
        let (stored, hashed) = names::object(name);
        let id = new_id(&self.nats);
        let chunks_subject = format!("$O.{bucket}.C.{id}");
        let (mut size, mut chunks, mut sha) = (0usize, 0usize, Sha256::new());
        let uploaded: Result<()> = async {
            while let Some(chunk) = source.next().await? {
                sha.update(&chunk);
                size += chunk.len();
                chunks += 1;
                self.nats.check_connected(&what)?;
                let ack = self
                    .nats
                    .bounded(&what, self.js.publish(chunks_subject.clone(), chunk))
                    .await?;
                self.nats.bounded(&what, ack.into_future()).await?;
            }
            let record = object_store::ObjectInfo {
                name: stored.clone(),
                description: None,
                metadata: if hashed {
                    HashMap::from([(NAME_KEY.to_string(), name.to_string())])
                } else {
                    HashMap::new()
                },
                headers: None,
                options: Some(ObjectOptions {
                    link: None,
                    max_chunk_size: Some(CHUNK),
                }),
                bucket: bucket.clone(),
                nuid: id.clone(),
                size,
                chunks,
                modified: Some(async_nats::datetime::now()),
                digest: Some(format!(
                    "SHA-256={}",
                    base64::engine::general_purpose::URL_SAFE.encode(sha.finalize_reset())
                )),
                deleted: false,
            };
            let record = serde_json::to_vec(&record).map_err(|e| self.nats.error(&what, e))?;
            let mut headers = HeaderMap::new();
            // The record replaces the previous one of this name.
            headers.insert(
                "Nats-Rollup",
                HeaderValue::from_str("sub").map_err(|e| self.nats.error(&what, e))?,
            );
            self.nats.check_connected(&what)?;
            let publish = self.js.publish_with_headers(
                meta_subject(&bucket, &stored),
                headers,
                record.into(),
            );
            let ack = self.nats.bounded(&what, publish).await?;
            self.nats.bounded(&what, ack.into_future()).await?;
            Ok(())
        }
        .await;
        if let Err(e) = uploaded {
            // Chunks nothing points at: remove them if the server lets us.
            if chunks > 0
                && let Err(p) = self.purge_chunks(&bucket, &id).await
            {
                tracing::warn!("{p:#}");
            }
            // A container deleted meanwhile: say so, as the other backends do.
            return match self.container_info(container).await {
                Ok(None) => Err(no_container(container)),
                _ => Err(e),
            };
        }
        if let Some(old) = previous
            && old.info.nuid != id
            && let Err(e) = self.purge_chunks(&bucket, &old.info.nuid).await
        {
            // The object is stored; the old bytes only take room.
            tracing::warn!("{e:#}");
        }
        Ok(())
    }

    /// A reader of `len` bytes from `offset` of a found object.
    async fn reader(
        &self,
        container: &str,
        name: &str,
        found: Found,
        offset: u64,
        len: u64,
    ) -> Result<ChunkReader> {
        let what = failed_on("read", container, name);
        let bucket = self.bucket(container);
        let messages = if len == 0 {
            None
        } else {
            let stream = self
                .js
                .get_stream_no_info(format!("OBJ_{bucket}"))
                .await
                .map_err(|e| self.nats.error(&what, e))?;
            let config = pull::OrderedConfig {
                filter_subject: format!("$O.{bucket}.C.{}", found.info.nuid),
                max_batch: READ_AHEAD,
                ..Default::default()
            };
            let consumer = self
                .nats
                .bounded(&what, stream.create_consumer(config))
                .await?;
            Some(self.nats.bounded(&what, consumer.messages()).await?)
        };
        Ok(ChunkReader {
            nats: self.nats.clone(),
            js: self.js.clone(),
            bucket,
            stored: found.stored,
            id: found.info.nuid,
            what,
            messages,
            skip: offset,
            size: len,
            remaining: len,
            buffered: Bytes::new(),
        })
    }

    fn container_info_fut<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ContainerInfo>> {
        Box::pin(async move {
            let what = format!("cannot look up container `{}`", Shown(name));
            self.nats.check_connected(&what)?;
            let get = self.js.get_stream(format!("OBJ_{}", self.bucket(name)));
            match tokio::time::timeout(self.nats.timeout(), get).await {
                Ok(Ok(stream)) => Ok(Some(ContainerInfo {
                    name: name.to_string(),
                    created_at: unix(stream.cached_info().created),
                })),
                Ok(Err(e)) if stream_missing(&e) => Ok(None),
                Ok(Err(e)) => Err(self.nats.error(&what, e)),
                Err(_) => Err(self.nats.no_answer(&what)),
            }
        })
    }
}

impl Blobstore for Objects {
    fn create_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ContainerInfo> {
        Box::pin(async move {
            let what = format!("cannot create container `{}`", Shown(name));
            self.nats.check_connected(&what)?;
            let bucket = self.bucket(name);
            // The same settings `create_object_store` uses, with a description
            // of this call's own: a concurrent create of the name then fails.
            let config = stream::Config {
                name: format!("OBJ_{bucket}"),
                description: Some(format!(
                    "qwasr blobstore container `{}` ({})",
                    Shown(name),
                    new_id(&self.nats)
                )),
                subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
                storage: StorageType::File,
                discard: DiscardPolicy::New,
                allow_rollup: true,
                allow_direct: true,
                ..Default::default()
            };
            let create = self.js.create_stream(config);
            match tokio::time::timeout(self.nats.timeout(), create).await {
                Ok(Ok(mut stream)) => {
                    let created = stream.info().await.map(|i| unix(i.created)).unwrap_or(0);
                    Ok(ContainerInfo {
                        name: name.to_string(),
                        created_at: created,
                    })
                }
                Ok(Err(e))
                    if matches!(e.kind(), async_nats::jetstream::context::CreateStreamErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::STREAM_NAME_EXIST) =>
                {
                    Err(container_exists(name))
                }
                Ok(Err(e)) => Err(self.nats.error(&what, e)),
                Err(_) => Err(self.nats.no_answer(&what)),
            }
        })
    }

    fn container_info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ContainerInfo>> {
        self.container_info_fut(name)
    }

    fn delete_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let what = format!("cannot delete container `{}`", Shown(name));
            self.nats.check_connected(&what)?;
            let delete = self.js.delete_stream(format!("OBJ_{}", self.bucket(name)));
            match tokio::time::timeout(self.nats.timeout(), delete).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) if stream_missing(&e) => Err(no_container(name)),
                Ok(Err(e)) => Err(self.nats.error(&what, e)),
                Err(_) => Err(self.nats.no_answer(&what)),
            }
        })
    }

    fn object_info<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Option<ObjectInfo>> {
        let what = move || failed_on("read", container, name);
        Box::pin(self.nats.within(what, async move {
            let store = self.open(container).await?;
            Ok(self
                .find(&store, container, name)
                .await?
                .map(|f| ObjectInfo {
                    container: container.to_string(),
                    name: name.to_string(),
                    size: f.info.size as u64,
                    created_at: f.info.modified.map_or(0, unix),
                }))
        }))
    }

    fn read<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
        start: u64,
        end: u64,
    ) -> BoxFuture<'a, Box<dyn ObjectReader>> {
        Box::pin(async move {
            let store = self.open(container).await?;
            let found = self
                .find(&store, container, name)
                .await?
                .ok_or_else(|| no_object(container, name))?;
            let size = found.info.size as u64;
            let (offset, len) = errors::byte_range(container, name, start, end, size)?;
            let reader = self.reader(container, name, found, offset, len).await?;
            Ok(Box::new(reader) as Box<dyn ObjectReader>)
        })
    }

    fn writer(&self) -> BoxFuture<'_, Box<dyn ObjectWriter>> {
        Box::pin(async move {
            let file = tokio::task::spawn_blocking(tempfile::tempfile)
                .await
                .map_err(|e| anyhow::anyhow!("a blobstore file task failed: {e}"))?
                .map_err(|e| anyhow::anyhow!("cannot create a temp file for the object: {e}"))?;
            Ok(Box::new(Spool {
                objects: self.clone(),
                file: tokio::fs::File::from_std(file),
            }) as Box<dyn ObjectWriter>)
        })
    }

    fn delete_object<'a>(&'a self, container: &'a str, name: &'a str) -> BoxFuture<'a, ()> {
        let what = move || failed_on("delete", container, name);
        Box::pin(self.nats.within(what, async move {
            let store = self.open(container).await?;
            let Some(found) = self.find(&store, container, name).await? else {
                return Ok(());
            };
            let what = failed_on("delete", container, name);
            self.nats.check_connected(&what)?;
            self.nats.bounded(&what, store.delete(&found.stored)).await
        }))
    }

    fn list_objects<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Box<dyn ObjectLister>> {
        Box::pin(async move {
            let store = self.open(container).await?;
            let what = format!("cannot list container `{}`", Shown(container));
            let list = self.nats.bounded(&what, store.list()).await?;
            Ok(Box::new(Lister {
                nats: self.nats.clone(),
                what,
                list: Some(list),
            }) as Box<dyn ObjectLister>)
        })
    }

    fn clear<'a>(&'a self, container: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let store = self.open(container).await?;
            let mut lister = self.list_objects(container).await?;
            loop {
                let page = lister.next_page(1000).await?;
                for name in &page.names {
                    let (stored, _) = names::object(name);
                    let what = failed_on("delete", container, name);
                    self.nats.check_connected(&what)?;
                    self.nats.bounded(&what, store.delete(&stored)).await?;
                }
                if !page.more {
                    return Ok(());
                }
            }
        })
    }

    fn copy_object<'a>(&'a self, src: &'a ObjectId, dest: &'a ObjectId) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let src_store = self.open(&src.container).await?;
            self.open(&dest.container).await?;
            let found = self
                .find(&src_store, &src.container, &src.name)
                .await?
                .ok_or_else(|| no_object(&src.container, &src.name))?;
            if src == dest {
                return Ok(());
            }
            let size = found.info.size as u64;
            let mut reader = self
                .reader(&src.container, &src.name, found, 0, size)
                .await?;
            self.put(&dest.container, &dest.name, &mut reader).await
        })
    }

    fn move_object<'a>(&'a self, src: &'a ObjectId, dest: &'a ObjectId) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.copy_object(src, dest).await?;
            if src != dest {
                self.delete_object(&src.container, &src.name).await?;
            }
            Ok(())
        })
    }
}

/// Where an upload's chunks come from.
trait Source: Send {
    /// The next chunk (at most [`CHUNK`] bytes, never empty), `None` at the end.
    fn next(&mut self) -> BoxFuture<'_, Option<Bytes>>;
}

/// A body spooled to an unnamed temp file (gone when dropped).
struct Spool {
    objects: Objects,
    file: tokio::fs::File,
}

impl Source for tokio::fs::File {
    fn next(&mut self) -> BoxFuture<'_, Option<Bytes>> {
        Box::pin(async move {
            let mut buf = vec![0; CHUNK];
            let mut n = 0;
            while n < CHUNK {
                let read = self
                    .read(&mut buf[n..])
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot read the object's temp file: {e}"))?;
                if read == 0 {
                    break;
                }
                n += read;
            }
            buf.truncate(n);
            Ok((n > 0).then(|| Bytes::from(buf)))
        })
    }
}

impl ObjectWriter for Spool {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.file
                .write_all(&chunk)
                .await
                .map_err(|e| anyhow::anyhow!("cannot write the object's temp file: {e}"))
        })
    }

    fn commit<'a>(self: Box<Self>, container: &'a str, name: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Spool { objects, mut file } = *self;
            file.flush()
                .await
                .and(file.seek(std::io::SeekFrom::Start(0)).await.map(drop))
                .map_err(|e| anyhow::anyhow!("cannot rewind the object's temp file: {e}"))?;
            objects.put(container, name, &mut file).await
        })
    }
}

/// The bytes of one version of an object, chunk by chunk.
struct ChunkReader {
    nats: Nats,
    js: Context,
    bucket: String,
    stored: String,
    /// The chunks' id: the version being read.
    id: String,
    what: String,
    messages: Option<pull::Ordered>,
    /// Bytes still to skip before the range.
    skip: u64,
    size: u64,
    remaining: u64,
    buffered: Bytes,
}

impl ChunkReader {
    /// Why no chunk came: the object was replaced or deleted (the store
    /// keeps no snapshot), or the server did not answer. (Owned values: the
    /// consumer in `self` is not `Sync`.)
    async fn stalled(
        nats: Nats,
        js: Context,
        bucket: String,
        stored: String,
        id: String,
        what: String,
    ) -> anyhow::Error {
        let record = async {
            let store = js.get_object_store(&bucket).await.ok()?;
            store.info(&stored).await.ok()
        };
        match tokio::time::timeout(nats.timeout(), record).await {
            Ok(Some(info)) if info.nuid != id || info.deleted => nats.error(
                &what,
                "the object was replaced or deleted while it was being read \
                 (the NATS object store keeps no snapshot of it)",
            ),
            _ => nats.no_answer(&what),
        }
    }
}

impl ObjectReader for ChunkReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&mut self, max: usize) -> BoxFuture<'_, Option<Bytes>> {
        Box::pin(async move {
            loop {
                if self.remaining == 0 {
                    return Ok(None);
                }
                if !self.buffered.is_empty() {
                    let n = (max.max(1) as u64)
                        .min(self.remaining)
                        .min(self.buffered.len() as u64) as usize;
                    self.remaining -= n as u64;
                    return Ok(Some(self.buffered.split_to(n)));
                }
                let Some(messages) = self.messages.as_mut() else {
                    return Err(self.nats.error(&self.what, "the object ended early"));
                };
                let next = match tokio::time::timeout(self.nats.timeout(), messages.next()).await {
                    Ok(Some(Ok(m))) => m,
                    Ok(Some(Err(e))) => return Err(self.nats.error(&self.what, e)),
                    Ok(None) => return Err(self.nats.error(&self.what, "the object ended early")),
                    Err(_) => {
                        let stalled = Self::stalled(
                            self.nats.clone(),
                            self.js.clone(),
                            self.bucket.clone(),
                            self.stored.clone(),
                            self.id.clone(),
                            self.what.clone(),
                        );
                        return Err(stalled.await);
                    }
                };
                let mut payload = next.message.payload.clone();
                let len = payload.len() as u64;
                if self.skip >= len {
                    self.skip -= len;
                    continue;
                }
                // skip < len, a usize.
                self.buffered = payload.split_off(self.skip as usize);
                self.skip = 0;
            }
        })
    }
}

impl Source for ChunkReader {
    fn next(&mut self) -> BoxFuture<'_, Option<Bytes>> {
        self.read(CHUNK)
    }
}

/// A listing in progress: the store's record stream.
struct Lister {
    nats: Nats,
    what: String,
    list: Option<object_store::List>,
}

impl ObjectLister for Lister {
    fn next_page(&mut self, max: usize) -> BoxFuture<'_, NamePage> {
        Box::pin(async move {
            let mut names = Vec::new();
            while names.len() < max.max(1) {
                let Some(list) = self.list.as_mut() else {
                    break;
                };
                let next = match tokio::time::timeout(self.nats.timeout(), list.next()).await {
                    Ok(next) => next,
                    Err(_) => return Err(self.nats.no_answer(&self.what)),
                };
                match next {
                    None => self.list = None,
                    Some(Err(e)) => return Err(self.nats.error(&self.what, e)),
                    Some(Ok(info)) => match info.metadata.get(NAME_KEY) {
                        Some(real) => names.push(real.clone()),
                        // A hashed name without its real one is not ours.
                        None if info.name.starts_with(names::HASHED_OBJECT) => {}
                        None => names.push(info.name),
                    },
                }
            }
            Ok(NamePage {
                names,
                more: self.list.is_some(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Server};
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    async fn store(url: &str) -> (Ctx, BackendConfig) {
        let cfg = testing::config(testing::app("blob-test"), "blobstore", url);
        (connect(&cfg).await.unwrap(), cfg)
    }

    async fn put(s: &dyn Blobstore, c: &str, n: &str, data: &[u8]) -> Result<()> {
        let mut w = s.writer().await?;
        for chunk in data.chunks(64 << 10) {
            w.write(Bytes::copy_from_slice(chunk)).await?;
        }
        w.commit(c, n).await
    }

    async fn get(s: &dyn Blobstore, c: &str, n: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut r = s.read(c, n, start, end).await?;
        let mut out = Vec::new();
        while let Some(chunk) = r.read(64 << 10).await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn list(s: &dyn Blobstore, c: &str) -> Vec<Vec<String>> {
        let mut lister = s.list_objects(c).await.unwrap();
        let mut pages = Vec::new();
        loop {
            let page = lister.next_page(1000).await.unwrap();
            pages.push(page.names);
            if !page.more {
                return pages;
            }
        }
    }

    fn err<T>(r: Result<T>) -> String {
        format!("{:#}", r.err().expect("an error"))
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn containers_are_created_once_and_deleted_with_their_objects() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        let info = s.create_container("c").await.unwrap();
        assert!(info.created_at.abs_diff(now()) < 60);
        assert_eq!(
            err(s.create_container("c").await),
            "container `c` already exists"
        );
        assert_eq!(s.container_info("c").await.unwrap(), Some(info));
        assert_eq!(s.container_info("d").await.unwrap(), None);
        assert_eq!(
            err(s.delete_container("d").await),
            "container `d` does not exist"
        );
        put(s, "c", "x", b"1").await.unwrap();
        s.delete_container("c").await.unwrap();
        assert_eq!(s.container_info("c").await.unwrap(), None);
        assert_eq!(
            err(s.object_info("c", "x").await),
            "container `c` does not exist"
        );
        assert_eq!(
            err(put(s, "c", "x", b"1").await),
            "container `c` does not exist"
        );
        assert_eq!(
            err(s.list_objects("c").await.map(drop)),
            "container `c` does not exist"
        );
        s.create_container("c").await.unwrap();
        assert!(s.object_info("c", "x").await.unwrap().is_none());
        // Two creates at once: one wins.
        let (ctx2, cfg2) = store(&testing::url()).await;
        let (a, b) = tokio::join!(s.create_container("race"), s.create_container("race"));
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        drop(ctx2);
        testing::cleanup(&cfg2).await;
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn ranges_are_inclusive_and_checked() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        s.create_container("c").await.unwrap();
        put(s, "c", "digits", b"0123456789").await.unwrap();
        put(s, "c", "empty", b"").await.unwrap();
        let read = |start, end| get(s, "c", "digits", start, end);
        assert_eq!(read(0, 0).await.unwrap(), b"0");
        assert_eq!(read(2, 4).await.unwrap(), b"234");
        assert_eq!(read(0, 9).await.unwrap(), b"0123456789");
        assert_eq!(read(9, 9).await.unwrap(), b"9");
        assert_eq!(read(5, u64::MAX).await.unwrap(), b"56789");
        assert_eq!(s.read("c", "digits", 3, 6).await.unwrap().size(), 4);
        assert_eq!(
            err(read(10, 10).await),
            "cannot read bytes 10..=10 (inclusive) of object `digits` in container `c` (10 bytes): \
             the start offset is past the end of the object"
        );
        assert_eq!(
            err(read(5, 4).await),
            "cannot read bytes 5..=4 (inclusive) of object `digits` in container `c` (10 bytes): \
             the start offset is after the end offset"
        );
        assert_eq!(get(s, "c", "empty", 0, u64::MAX).await.unwrap(), b"");
        assert!(err(get(s, "c", "empty", 1, 1).await).contains("past the end"));
        assert_eq!(
            err(get(s, "c", "nope", 0, 0).await),
            "object `nope` does not exist in container `c`"
        );
        assert_eq!(
            err(get(s, "d", "x", 0, 0).await),
            "container `d` does not exist"
        );
        let info = s.object_info("c", "digits").await.unwrap().unwrap();
        assert_eq!(
            (info.size, info.container.as_str(), info.name.as_str()),
            (10, "c", "digits")
        );
        assert!(info.created_at.abs_diff(now()) < 60);
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn nothing_is_visible_until_commit() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        s.create_container("c").await.unwrap();
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        assert!(s.object_info("c", "x").await.unwrap().is_none());
        drop(w);
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        w.abort().await;
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"orphan")).await.unwrap();
        assert_eq!(
            err(w.commit("nope", "x").await),
            "container `nope` does not exist"
        );
        assert!(list(s, "c").await.concat().is_empty());
        put(s, "c", "x", b"one").await.unwrap();
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(get(s, "c", "x", 0, 99).await.unwrap(), b"one");
        w.commit("c", "x").await.unwrap();
        assert_eq!(get(s, "c", "x", 0, 99).await.unwrap(), b"two");
        s.delete_object("c", "x").await.unwrap();
        s.delete_object("c", "x").await.unwrap(); // absent: not an error
        assert!(s.object_info("c", "x").await.unwrap().is_none());
        assert_eq!(
            err(s.delete_object("nope", "x").await),
            "container `nope` does not exist"
        );
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn large_objects_move_in_chunks_and_ranges_skip() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        s.create_container("c").await.unwrap();
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        put(s, "c", "big", &data).await.unwrap();
        let mut r = s.read("c", "big", 1, 4_999_998).await.unwrap();
        assert_eq!(r.size(), 4_999_998);
        let mut out = Vec::new();
        while let Some(c) = r.read(qwasr_wasi_blobstore::CHUNK).await.unwrap() {
            assert!(c.len() <= qwasr_wasi_blobstore::CHUNK);
            out.extend_from_slice(&c);
        }
        assert_eq!(out, &data[1..4_999_999]);
        assert_eq!(
            get(s, "c", "big", 3_000_000, 3_000_009).await.unwrap(),
            &data[3_000_000..3_000_010]
        );
        let info = s.object_info("c", "big").await.unwrap().unwrap();
        assert_eq!(info.size, 5_000_000);
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn a_reader_of_a_replaced_object_fails_instead_of_mixing() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        s.create_container("c").await.unwrap();
        let old: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        put(s, "c", "x", &old).await.unwrap();
        let mut r = s.read("c", "x", 0, u64::MAX).await.unwrap();
        let first = r.read(1000).await.unwrap().unwrap();
        assert_eq!(&first[..], &old[..1000]);
        put(s, "c", "x", b"new").await.unwrap();
        let mut seen = first.to_vec();
        let e = loop {
            match r.read(64 << 10).await {
                Ok(Some(c)) => seen.extend_from_slice(&c),
                Ok(None) => break None,
                Err(e) => break Some(format!("{e:#}")),
            }
        };
        // Whatever was read is the old object's, never the new one's.
        assert_eq!(seen, &old[..seen.len()]);
        let e = e.expect("the old chunks are gone");
        assert!(
            e.contains("replaced or deleted while it was being read"),
            "{e}"
        );
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn copy_and_move_overwrite_and_check_both_ends() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        let long = "l".repeat(1000);
        for c in ["a", "b", long.as_str()] {
            s.create_container(c).await.unwrap();
        }
        let big: Vec<u8> = (0..400_000u32).map(|i| (i * 7) as u8).collect();
        put(s, "a", "src", b"source").await.unwrap();
        put(s, "a", "big", &big).await.unwrap();
        put(s, "b", "dst", b"old").await.unwrap();
        let id = ObjectId::new;
        s.copy_object(&id("a", "src"), &id("b", "dst"))
            .await
            .unwrap();
        assert_eq!(get(s, "b", "dst", 0, 99).await.unwrap(), b"source");
        assert_eq!(get(s, "a", "src", 0, 99).await.unwrap(), b"source");
        s.copy_object(&id("a", "big"), &id("b", "big"))
            .await
            .unwrap();
        assert_eq!(get(s, "b", "big", 0, u64::MAX).await.unwrap(), big);
        s.copy_object(&id("a", "src"), &id("a", "src"))
            .await
            .unwrap();
        assert_eq!(get(s, "a", "src", 0, 99).await.unwrap(), b"source");
        s.copy_object(&id("a", "src"), &id(&long, &long))
            .await
            .unwrap();
        assert_eq!(get(s, &long, &long, 0, 99).await.unwrap(), b"source");

        put(s, "b", "dst", b"older").await.unwrap();
        s.move_object(&id("a", "src"), &id("b", "dst"))
            .await
            .unwrap();
        assert_eq!(get(s, "b", "dst", 0, 99).await.unwrap(), b"source");
        assert!(s.object_info("a", "src").await.unwrap().is_none());
        s.move_object(&id("b", "dst"), &id("b", "dst"))
            .await
            .unwrap();
        assert_eq!(get(s, "b", "dst", 0, 99).await.unwrap(), b"source");
        s.move_object(&id(&long, &long), &id("a", &long))
            .await
            .unwrap();
        assert_eq!(get(s, "a", &long, 0, 99).await.unwrap(), b"source");
        assert!(s.object_info(&long, &long).await.unwrap().is_none());
        let mut listed = list(s, "a").await.concat();
        listed.sort();
        assert_eq!(listed, vec!["big".to_string(), long.clone()]);

        for (src, dest, msg) in [
            (
                id("a", "gone"),
                id("b", "x"),
                "object `gone` does not exist in container `a`",
            ),
            (
                id("a", &long),
                id("nope", "x"),
                "container `nope` does not exist",
            ),
            (
                id("nope", "x"),
                id("b", "x"),
                "container `nope` does not exist",
            ),
        ] {
            assert_eq!(err(s.copy_object(&src, &dest).await), msg);
            assert_eq!(err(s.move_object(&src, &dest).await), msg);
        }
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn listing_pages_through_2500_objects_and_clear_empties() {
        let (ctx, cfg) = store(&testing::url()).await;
        let ctx = Arc::new(ctx);
        ctx.backend().create_container("c").await.unwrap();
        let names: Vec<String> = (0..2500)
            .map(|i| {
                if i % 10 == 0 {
                    format!("{i:05}/{}", "x".repeat(600))
                } else {
                    format!("{i:05}")
                }
            })
            .collect();
        let tasks: Vec<_> = names
            .chunks(100)
            .map(|chunk| {
                let (ctx, chunk) = (ctx.clone(), chunk.to_vec());
                tokio::spawn(async move {
                    for n in chunk {
                        put(ctx.backend(), "c", &n, b"").await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let s = ctx.backend();
        let pages = list(s, "c").await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let listed: HashSet<String> = pages.concat().into_iter().collect();
        assert_eq!(listed, names.iter().cloned().collect::<HashSet<_>>());
        s.clear("c").await.unwrap();
        assert!(list(s, "c").await.concat().is_empty());
        assert!(s.container_info("c").await.unwrap().is_some());
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn odd_names_round_trip_and_never_collide() {
        let (ctx, cfg) = store(&testing::url()).await;
        let s = ctx.backend();
        let long = "x".repeat(4096);
        let names = [
            "",
            ".",
            "..",
            "a/b",
            "../../etc/passwd",
            "a.b",
            "a\0",
            "\0",
            "é",
            "日本",
            "*",
            ">",
            " ",
            "qwasr-sha256:00",
            long.as_str(),
        ];
        for c in names {
            s.create_container(c).await.unwrap();
            for (i, n) in names.iter().enumerate() {
                put(s, c, n, &[i as u8]).await.unwrap();
            }
        }
        let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        want.sort();
        for c in names {
            for (i, n) in names.iter().enumerate() {
                assert_eq!(
                    get(s, c, n, 0, 9).await.unwrap(),
                    vec![i as u8],
                    "{c:?} {n:?}"
                );
                let info = s.object_info(c, n).await.unwrap().unwrap();
                assert_eq!((info.name.as_str(), info.size), (*n, 1));
            }
            let mut listed = list(s, c).await.concat();
            listed.sort();
            assert_eq!(listed, want, "{c:?}");
            assert_eq!(s.container_info(c).await.unwrap().unwrap().name, c);
        }
        s.delete_object("", "..").await.unwrap();
        assert!(s.object_info("", "..").await.unwrap().is_none());
        assert!(s.object_info("", ".").await.unwrap().is_some());
        assert!(s.object_info("..", "..").await.unwrap().is_some());
        for c in names {
            s.delete_container(c).await.unwrap();
        }
        testing::cleanup(&cfg).await;
    }

    #[tokio::test]
    async fn an_outage_gives_errors_then_recovers_by_itself() {
        let mut server = Server::start();
        let mut cfg = testing::config(testing::app("blob-outage"), "blobstore", &server.url());
        cfg.options.push(("user".into(), "u".into()));
        cfg.options.push(("password".into(), "pa55w0rd-x".into()));
        let ctx = connect(&cfg).await.unwrap();
        let s = ctx.backend();
        s.create_container("c").await.unwrap();
        put(s, "c", "x", b"before").await.unwrap();

        server.kill();
        for op in 0..3 {
            let started = std::time::Instant::now();
            let e = match op {
                0 => s.object_info("c", "x").await.map(drop),
                1 => put(s, "c", "y", b"during").await,
                _ => get(s, "c", "x", 0, 99).await.map(drop),
            };
            let e = err(e);
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "op {op}: {:?}",
                started.elapsed()
            );
            assert!(
                e.contains(&format!("NATS at nats://127.0.0.1:{}", server.port)),
                "{e}"
            );
            assert!(!e.contains("pa55w0rd"), "{e}");
        }

        server.restart();
        let started = std::time::Instant::now();
        loop {
            match get(s, "c", "x", 0, 99).await {
                Ok(v) => {
                    assert_eq!(v, b"before");
                    break;
                }
                Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        put(s, "c", "y", b"after").await.unwrap();
        assert_eq!(get(s, "c", "y", 0, 99).await.unwrap(), b"after");
    }
}
