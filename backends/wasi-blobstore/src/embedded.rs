//! The embedded default: containers as directories, objects as files, under
//! `<data dir>/blobstore`.
//!
//! ```text
//! <data dir>/blobstore/
//!   containers/
//!     c<name>/              a container (see `names` for the encoding)
//!       .container          "<created-at>\n<name>"
//!       o<name>             an object's bytes, exactly
//!       h<sha256>           an object with a long name ...
//!       n<sha256>           ... and that name
//!     h<sha256>/            a container with a long name
//!   tmp/                    temp files of writes in progress, deleted containers
//! ```
//!
//! Guarantees:
//! - An object is written to a temp file in `tmp/` (same filesystem), which
//!   is fsynced, renamed over the object's file and the container directory
//!   fsynced before the write is acknowledged: readers see the old bytes or
//!   the new ones, never a mix, and an acknowledged write survives `kill -9`
//!   and power loss (as far as the filesystem honours fsync).
//! - A container appears with its `.container` file or not at all (it is
//!   built in `tmp/` and renamed into place).
//! - A reader opens the object's file when it is made, so it reads the bytes
//!   of that moment even if the object is replaced or deleted afterwards.
//! - Objects move in 64 KiB chunks; nothing holds a whole object in memory.
//!   Every file operation runs on tokio's blocking threads.
//! - `created-at` of an object is its file's modification time, set when it
//!   is stored; of a container, recorded in `.container`.
//! - Temp files left by a crash are removed at the next start once they are
//!   an hour old (another runtime on the same directory may still be
//!   writing younger ones).

mod names;

use crate::errors::{self, Shown};
use crate::{
    Blobstore, BoxFuture, ContainerInfo, Ctx, NamePage, ObjectId, ObjectInfo, ObjectLister,
    ObjectReader, ObjectWriter,
};
use anyhow::{Context, Result};
use bytes::Bytes;
use qwasr_kernel::BackendConfig;
use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::NamedTempFile;

/// A container's own file: its creation time and real name.
const META: &str = ".container";

/// Age after which a leftover temp file is surely abandoned.
const STALE: Duration = Duration::from_secs(3600);

/// Opens the store under `cfg.data_dir()` (`<data dir>/blobstore`); it takes
/// no options.
pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
    if let Some((k, _)) = cfg.options.first() {
        anyhow::bail!("the embedded blobstore backend takes no options, but `{k}` was given");
    }
    let dir = cfg.data_dir()?;
    Ok(Ctx::new(Embedded::open(dir).await?, cfg))
}

/// Containers and objects as directories and files under one root.
#[derive(Clone)]
pub struct Embedded {
    dirs: Arc<Dirs>,
}

struct Dirs {
    containers: PathBuf,
    tmp: PathBuf,
}

impl Embedded {
    /// Opens (creating if needed) a store rooted at `root`, and removes
    /// what crashed writes left behind.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Embedded> {
        let root = root.into();
        let dirs = Dirs {
            containers: root.join("containers"),
            tmp: root.join("tmp"),
        };
        let dirs = blocking(move || {
            for dir in [&dirs.containers, &dirs.tmp] {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            dirs.remove_stale();
            Ok(dirs)
        })
        .await?;
        Ok(Embedded {
            dirs: Arc::new(dirs),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Dirs) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let dirs = self.dirs.clone();
        blocking(move || f(&dirs)).await
    }
}

/// Runs file I/O on tokio's blocking threads, off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("a blobstore file task failed: {e}"))?
}

fn now() -> u64 {
    secs(SystemTime::now())
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Makes a directory's entries (a rename, a new file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// An object's files in its container directory.
struct ObjectFile {
    data: PathBuf,
    sidecar: Option<PathBuf>,
}

impl ObjectFile {
    fn new(dir: &Path, name: &str) -> ObjectFile {
        let f = names::encode(names::OBJECT, name);
        ObjectFile {
            data: dir.join(f.file()),
            sidecar: f.sidecar().map(|s| dir.join(s)),
        }
    }

    /// Whether the file is `name`'s: always for a readable file name; for a
    /// hashed one, when its sidecar says so.
    fn is(&self, name: &str) -> Result<bool> {
        match &self.sidecar {
            None => Ok(true),
            Some(s) => match fs::read(s) {
                Ok(stored) => Ok(stored == name.as_bytes()),
                Err(e) if not_found(&e) => Ok(false),
                Err(e) => Err(e.into()),
            },
        }
    }
}

impl Dirs {
    fn container_dir(&self, name: &str) -> PathBuf {
        self.containers
            .join(names::encode(names::CONTAINER, name).file())
    }

    /// The container's creation time and name, if it exists.
    fn meta(dir: &Path) -> Result<Option<(u64, String)>> {
        let text = match fs::read_to_string(dir.join(META)) {
            Ok(t) => t,
            Err(e) if not_found(&e) || e.kind() == io::ErrorKind::NotADirectory => {
                return Ok(None);
            }
            Err(e) => return Err(e).context("cannot read a container's metadata"),
        };
        let (created, name) = text.split_once('\n').unwrap_or((&text, ""));
        let created = created
            .parse()
            .with_context(|| format!("container metadata `{}` is damaged", dir.display()))?;
        Ok(Some((created, name.to_string())))
    }

    /// The directory of an existing container.
    fn open_container(&self, name: &str) -> Result<(PathBuf, u64)> {
        let dir = self.container_dir(name);
        match Self::meta(&dir)? {
            // A hashed directory whose name differs would be a SHA-256 collision.
            Some((created, stored)) if stored == name => Ok((dir, created)),
            _ => Err(errors::no_container(name)),
        }
    }

    fn temp(&self) -> Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix("w-")
            .tempfile_in(&self.tmp)
            .context("cannot create a temp file for the object")
    }

    fn create_container(&self, name: &str) -> Result<ContainerInfo> {
        let dir = self.container_dir(name);
        if Self::meta(&dir)?.is_some() {
            return Err(errors::container_exists(name));
        }
        let fail = || format!("cannot create container `{}`", Shown(name));
        // Built aside and renamed into place: it appears whole or not at all.
        let staging = tempfile::Builder::new()
            .prefix("c-")
            .tempdir_in(&self.tmp)
            .with_context(fail)?;
        let created_at = now();
        let mut meta = File::create(staging.path().join(META)).with_context(fail)?;
        meta.write_all(format!("{created_at}\n{name}").as_bytes())
            .and_then(|()| meta.sync_all())
            .and_then(|()| sync_dir(staging.path()))
            .with_context(fail)?;
        match fs::rename(staging.path(), &dir) {
            Ok(()) => {
                // Its path is now the container's; nothing left to remove.
                let _ = staging.keep();
            }
            // Renaming onto a directory with entries fails: someone else made it first.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                ) =>
            {
                return Err(errors::container_exists(name));
            }
            Err(e) => return Err(e).with_context(fail),
        }
        sync_dir(&self.containers).with_context(fail)?;
        Ok(ContainerInfo {
            name: name.to_string(),
            created_at,
        })
    }

    fn delete_container(&self, name: &str) -> Result<()> {
        static TRASH: AtomicU64 = AtomicU64::new(0);
        let (dir, _) = self.open_container(name)?;
        let trash = self.tmp.join(format!(
            "trash-{}-{}",
            std::process::id(),
            TRASH.fetch_add(1, Ordering::Relaxed)
        ));
        // One rename takes the container away; removing its files can then
        // take as long as it takes (and is redone at start-up after a crash).
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Err(errors::no_container(name)),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot delete container `{}`", Shown(name)));
            }
        }
        sync_dir(&self.containers)
            .with_context(|| format!("cannot delete container `{}`", Shown(name)))?;
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!("cannot remove `{}`: {e}", trash.display());
        }
        Ok(())
    }

    fn object_info(&self, container: &str, name: &str) -> Result<Option<ObjectInfo>> {
        let (dir, _) = self.open_container(container)?;
        let f = ObjectFile::new(&dir, name);
        let md = match fs::metadata(&f.data) {
            Ok(md) => md,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot read object `{}` in `{}`",
                        Shown(name),
                        Shown(container)
                    )
                });
            }
        };
        if !f.is(name)? {
            return Ok(None);
        }
        Ok(Some(ObjectInfo {
            container: container.to_string(),
            name: name.to_string(),
            size: md.len(),
            created_at: md.modified().map_or(0, secs),
        }))
    }

    /// Opens the object's file: from here on it reads these bytes whatever
    /// happens to the name.
    fn open_object(&self, container: &str, name: &str) -> Result<(PathBuf, File)> {
        let (dir, _) = self.open_container(container)?;
        let f = ObjectFile::new(&dir, name);
        let file = match File::open(&f.data) {
            Ok(file) => file,
            Err(e) if not_found(&e) => return Err(errors::no_object(container, name)),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot open object `{}` in `{}`",
                        Shown(name),
                        Shown(container)
                    )
                });
            }
        };
        if !f.is(name)? {
            return Err(errors::no_object(container, name));
        }
        Ok((dir, file))
    }

    fn read(&self, container: &str, name: &str, start: u64, end: u64) -> Result<FileReader> {
        let (_, mut file) = self.open_object(container, name)?;
        let size = file.metadata()?.len();
        let (offset, len) = errors::byte_range(container, name, start, end, size)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(FileReader {
            file: Some(file),
            size: len,
            remaining: len,
        })
    }

    /// Records a hashed object's real name beside it (before its data, so
    /// a data file always has its name).
    fn write_sidecar(&self, path: &Path, name: &str) -> Result<()> {
        match fs::read(path) {
            Ok(stored) if stored == name.as_bytes() => return Ok(()),
            Ok(_) => anyhow::bail!(
                "object name `{}` has the same SHA-256 as another object's name; choose another name",
                Shown(name)
            ),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut tmp = self.temp()?;
        tmp.write_all(name.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Stores a finished temp file as `name` in `container`, durably.
    fn commit(&self, tmp: NamedTempFile, container: &str, name: &str) -> Result<()> {
        let fail = || {
            format!(
                "cannot store object `{}` in `{}`",
                Shown(name),
                Shown(container)
            )
        };
        let (dir, _) = self.open_container(container)?;
        let f = ObjectFile::new(&dir, name);
        let file = tmp.as_file();
        // created-at: when the object was stored.
        file.set_modified(SystemTime::now()).with_context(fail)?;
        file.sync_all().with_context(fail)?;
        if let Some(sidecar) = &f.sidecar {
            self.write_sidecar(sidecar, name).with_context(fail)?;
        }
        match tmp.persist(&f.data) {
            Ok(_) => {}
            // The container was deleted since it was opened.
            Err(e) if not_found(&e.error) => return Err(errors::no_container(container)),
            Err(e) => return Err(e.error).with_context(fail),
        }
        sync_dir(&dir).with_context(fail)?;
        Ok(())
    }

    fn delete_object(&self, container: &str, name: &str) -> Result<()> {
        let (dir, _) = self.open_container(container)?;
        let f = ObjectFile::new(&dir, name);
        // A sidecar stays: it only names a file, and removing it could race
        // with a write of the same name.
        if !f.is(name)? {
            return Ok(());
        }
        match fs::remove_file(&f.data) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if not_found(&e) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot delete object `{}` in `{}`",
                        Shown(name),
                        Shown(container)
                    )
                });
            }
        }
        Ok(())
    }

    fn clear(&self, container: &str) -> Result<()> {
        let (dir, _) = self.open_container(container)?;
        let fail = || format!("cannot clear container `{}`", Shown(container));
        // Objects first, then the names beside them: a crash in between
        // leaves only unused sidecars, never an object without its name.
        for objects in [true, false] {
            for entry in fs::read_dir(&dir).with_context(fail)? {
                let entry = entry.with_context(fail)?;
                let file = entry.file_name();
                if file == META {
                    continue;
                }
                let is_object = file
                    .to_str()
                    .is_some_and(|f| f.starts_with(names::OBJECT) || f.starts_with(names::HASHED));
                if is_object != objects {
                    continue;
                }
                match fs::remove_file(entry.path()) {
                    Err(e) if !not_found(&e) => return Err(e).with_context(fail),
                    _ => {}
                }
            }
        }
        sync_dir(&dir).with_context(fail)?;
        Ok(())
    }

    fn copy_object(&self, src: &ObjectId, dest: &ObjectId) -> Result<()> {
        self.open_container(&dest.container)?;
        let (_, mut from) = self.open_object(&src.container, &src.name)?;
        let mut tmp = self.temp()?;
        // std::io::copy uses copy_file_range where it can: no bytes in our memory.
        io::copy(&mut from, tmp.as_file_mut()).with_context(|| {
            format!(
                "cannot copy object `{}` in `{}`",
                Shown(&src.name),
                Shown(&src.container)
            )
        })?;
        self.commit(tmp, &dest.container, &dest.name)
    }

    fn move_object(&self, src: &ObjectId, dest: &ObjectId) -> Result<()> {
        let (dest_dir, _) = self.open_container(&dest.container)?;
        let (src_dir, _) = self.open_container(&src.container)?;
        let from = ObjectFile::new(&src_dir, &src.name);
        if !from.data.is_file() || !from.is(&src.name)? {
            return Err(errors::no_object(&src.container, &src.name));
        }
        if src == dest {
            return Ok(());
        }
        let fail = || {
            format!(
                "cannot move object `{}` in `{}` to `{}` in `{}`",
                Shown(&src.name),
                Shown(&src.container),
                Shown(&dest.name),
                Shown(&dest.container)
            )
        };
        let to = ObjectFile::new(&dest_dir, &dest.name);
        if let Some(sidecar) = &to.sidecar {
            self.write_sidecar(sidecar, &dest.name).with_context(fail)?;
        }
        match fs::rename(&from.data, &to.data) {
            Ok(()) => {}
            Err(e) if not_found(&e) => {
                return Err(errors::no_object(&src.container, &src.name));
            }
            Err(e) => return Err(e).with_context(fail),
        }
        sync_dir(&dest_dir).with_context(fail)?;
        if src_dir != dest_dir {
            sync_dir(&src_dir).with_context(fail)?;
        }
        Ok(())
    }

    /// Removes what writes and deletes interrupted by a crash left in `tmp/`.
    fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let trash = entry.file_name().to_string_lossy().starts_with("trash-");
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if !(trash || stale) {
                continue;
            }
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = removed
                && !not_found(&e)
            {
                tracing::warn!("cannot remove `{}`: {e}", path.display());
            }
        }
    }
}

impl Blobstore for Embedded {
    fn create_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ContainerInfo> {
        let name = name.to_string();
        Box::pin(self.run(move |d| d.create_container(&name)))
    }

    fn container_info<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ContainerInfo>> {
        let name = name.to_string();
        Box::pin(self.run(move |d| {
            Ok(match Dirs::meta(&d.container_dir(&name))? {
                Some((created_at, stored)) if stored == name => {
                    Some(ContainerInfo { name, created_at })
                }
                _ => None,
            })
        }))
    }

    fn delete_container<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        let name = name.to_string();
        Box::pin(self.run(move |d| d.delete_container(&name)))
    }

    fn object_info<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Option<ObjectInfo>> {
        let (container, name) = (container.to_string(), name.to_string());
        Box::pin(self.run(move |d| d.object_info(&container, &name)))
    }

    fn read<'a>(
        &'a self,
        container: &'a str,
        name: &'a str,
        start: u64,
        end: u64,
    ) -> BoxFuture<'a, Box<dyn ObjectReader>> {
        let (container, name) = (container.to_string(), name.to_string());
        Box::pin(async move {
            let r = self
                .run(move |d| d.read(&container, &name, start, end))
                .await?;
            Ok(Box::new(r) as Box<dyn ObjectReader>)
        })
    }

    fn writer(&self) -> BoxFuture<'_, Box<dyn ObjectWriter>> {
        Box::pin(async move {
            let tmp = self.run(|d| d.temp()).await?;
            Ok(Box::new(FileWriter {
                dirs: self.dirs.clone(),
                tmp: Some(tmp),
            }) as Box<dyn ObjectWriter>)
        })
    }

    fn delete_object<'a>(&'a self, container: &'a str, name: &'a str) -> BoxFuture<'a, ()> {
        let (container, name) = (container.to_string(), name.to_string());
        Box::pin(self.run(move |d| d.delete_object(&container, &name)))
    }

    fn list_objects<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Box<dyn ObjectLister>> {
        let container = container.to_string();
        Box::pin(async move {
            let (dir, _) = self.run(move |d| d.open_container(&container)).await?;
            Ok(Box::new(DirLister {
                dir,
                entries: None,
                done: false,
            }) as Box<dyn ObjectLister>)
        })
    }

    fn clear<'a>(&'a self, container: &'a str) -> BoxFuture<'a, ()> {
        let container = container.to_string();
        Box::pin(self.run(move |d| d.clear(&container)))
    }

    fn copy_object<'a>(&'a self, src: &'a ObjectId, dest: &'a ObjectId) -> BoxFuture<'a, ()> {
        let (src, dest) = (src.clone(), dest.clone());
        Box::pin(self.run(move |d| d.copy_object(&src, &dest)))
    }

    fn move_object<'a>(&'a self, src: &'a ObjectId, dest: &'a ObjectId) -> BoxFuture<'a, ()> {
        let (src, dest) = (src.clone(), dest.clone());
        Box::pin(self.run(move |d| d.move_object(&src, &dest)))
    }
}

/// Bytes being written to a temp file in `tmp/`; dropping it removes the file.
struct FileWriter {
    dirs: Arc<Dirs>,
    /// `None` only while a chunk is being written (or after a failed write).
    tmp: Option<NamedTempFile>,
}

impl FileWriter {
    fn take(&mut self) -> Result<NamedTempFile> {
        self.tmp
            .take()
            .context("the object's temp file was lost when an earlier write failed")
    }
}

impl ObjectWriter for FileWriter {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut tmp = self.take()?;
            let tmp = blocking(move || {
                tmp.write_all(&chunk)
                    .context("cannot write the object's temp file")?;
                Ok(tmp)
            })
            .await?;
            self.tmp = Some(tmp);
            Ok(())
        })
    }

    fn commit<'a>(mut self: Box<Self>, container: &'a str, name: &'a str) -> BoxFuture<'a, ()> {
        let (container, name) = (container.to_string(), name.to_string());
        Box::pin(async move {
            let tmp = self.take()?;
            let dirs = self.dirs.clone();
            blocking(move || dirs.commit(tmp, &container, &name)).await
        })
    }

    fn abort(mut self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // Removing the temp file is file I/O too: off the async workers.
        let tmp = self.tmp.take();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || drop(tmp)).await;
        })
    }
}

/// A byte range of an open file.
struct FileReader {
    /// `None` only while a chunk is being read (or after a failed read).
    file: Option<File>,
    size: u64,
    remaining: u64,
}

impl ObjectReader for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&mut self, max: usize) -> BoxFuture<'_, Option<Bytes>> {
        Box::pin(async move {
            let n = self.remaining.min(max as u64);
            if n == 0 {
                return Ok(None);
            }
            let mut file = self
                .file
                .take()
                .context("the value's file was lost when an earlier read failed")?;
            let (file, buf) = blocking(move || {
                // n <= max, a usize.
                let mut buf = vec![0; n as usize];
                file.read_exact(&mut buf)
                    .context("cannot read the object's file")?;
                Ok((file, buf))
            })
            .await?;
            self.file = Some(file);
            self.remaining -= n;
            Ok(Some(Bytes::from(buf)))
        })
    }
}

/// Lists a container directory as it goes: one open directory handle, no
/// listing held in memory.
struct DirLister {
    dir: PathBuf,
    /// Opened on the first page; `None` while a page is being read.
    entries: Option<fs::ReadDir>,
    done: bool,
}

impl ObjectLister for DirLister {
    fn next_page(&mut self, max: usize) -> BoxFuture<'_, NamePage> {
        Box::pin(async move {
            if self.done {
                return Ok(NamePage::default());
            }
            let entries = self.entries.take();
            let dir = self.dir.clone();
            let (entries, names) = blocking(move || page(&dir, entries, max)).await?;
            self.done = entries.is_none();
            self.entries = entries;
            Ok(NamePage {
                names,
                more: !self.done,
            })
        })
    }
}

/// Up to `max` object names from the directory; the handle comes back
/// unless the directory is exhausted.
fn page(
    dir: &Path,
    entries: Option<fs::ReadDir>,
    max: usize,
) -> Result<(Option<fs::ReadDir>, Vec<String>)> {
    let fail = "cannot list the container";
    let mut entries = match entries {
        Some(e) => e,
        None => fs::read_dir(dir).context(fail)?,
    };
    let mut out = Vec::new();
    while out.len() < max {
        let Some(entry) = entries.next() else {
            return Ok((None, out));
        };
        let entry = entry.context(fail)?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(name) = names::decode(names::OBJECT, file) {
            out.push(name);
        } else if let Some(hash) = file.strip_prefix(names::HASHED) {
            let sidecar = dir.join(format!("{}{hash}", names::SIDECAR));
            match fs::read(&sidecar) {
                Ok(name) => match String::from_utf8(name) {
                    Ok(name) => out.push(name),
                    Err(_) => tracing::warn!("`{}` is not UTF-8; skipped", sidecar.display()),
                },
                // Deleted since the directory was read.
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e).context(fail),
            }
        }
    }
    Ok((Some(entries), out))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

    pub(crate) async fn store() -> (tempfile::TempDir, Embedded) {
        let dir = tempfile::tempdir().unwrap();
        let s = Embedded::open(dir.path().join("blobstore")).await.unwrap();
        (dir, s)
    }

    pub(crate) async fn put(s: &dyn Blobstore, c: &str, n: &str, data: &[u8]) -> Result<()> {
        let mut w = s.writer().await?;
        for chunk in data.chunks(crate::CHUNK) {
            w.write(Bytes::copy_from_slice(chunk)).await?;
        }
        w.commit(c, n).await
    }

    pub(crate) async fn get(
        s: &dyn Blobstore,
        c: &str,
        n: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>> {
        let mut r = s.read(c, n, start, end).await?;
        let out = drain(&mut *r).await?;
        assert_eq!(out.len() as u64, r.size());
        Ok(out)
    }

    async fn drain(r: &mut dyn ObjectReader) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = r.read(crate::CHUNK).await? {
            assert!(!chunk.is_empty() && chunk.len() <= crate::CHUNK);
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn list(s: &dyn Blobstore, c: &str, page: usize) -> Vec<Vec<String>> {
        let mut l = s.list_objects(c).await.unwrap();
        let mut pages = Vec::new();
        loop {
            let p = l.next_page(page).await.unwrap();
            assert!(p.names.len() <= page);
            pages.push(p.names);
            if !p.more {
                return pages;
            }
        }
    }

    fn tmp_files(s: &Embedded) -> Vec<PathBuf> {
        fs::read_dir(&s.dirs.tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[tokio::test]
    async fn any_name_stays_inside_the_data_dir_and_apart_from_every_other() {
        let (dir, s) = store().await;
        // Something an escaping name could clobber.
        let outside = dir.path().join("passwd");
        fs::write(&outside, "root").unwrap();
        let containers = [
            "",
            "..",
            "../../etc/passwd",
            "a/b",
            "\0",
            &"c".repeat(4096),
            "A",
            "a",
        ];
        let objects = names::tests::nasty();
        for (ci, c) in containers.iter().enumerate() {
            s.create_container(c).await.unwrap();
            for (oi, o) in objects.iter().enumerate() {
                put(&s, c, o, format!("{ci}:{oi}").as_bytes())
                    .await
                    .unwrap();
            }
        }
        for (ci, c) in containers.iter().enumerate() {
            assert_eq!(s.container_info(c).await.unwrap().unwrap().name, *c);
            for (oi, o) in objects.iter().enumerate() {
                let data = get(&s, c, o, 0, u64::MAX).await.unwrap();
                assert_eq!(data, format!("{ci}:{oi}").as_bytes(), "{c:?}/{o:?}");
                let info = s.object_info(c, o).await.unwrap().unwrap();
                assert_eq!(
                    (info.container.as_str(), info.name.as_str()),
                    (*c, o.as_str())
                );
            }
            let listed: BTreeSet<String> = list(&s, c, 7).await.concat().into_iter().collect();
            assert_eq!(listed, objects.iter().cloned().collect(), "{c:?}");
        }
        assert_eq!(fs::read_to_string(&outside).unwrap(), "root");
        // Every file is under the store's root, named only with safe bytes.
        let root = dir.path().join("blobstore");
        let mut stack = vec![dir.path().to_path_buf()];
        let mut files = 0;
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p == outside {
                    continue;
                }
                assert!(p.starts_with(&root), "{} escaped", p.display());
                let name = p.file_name().unwrap().to_str().unwrap();
                assert!(name.len() <= names::MAX_PLAIN);
                assert!(name != "." && name != "..");
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files += 1;
                }
            }
        }
        // Objects, sidecars of the 3 long object names, one `.container` each.
        assert_eq!(files, containers.len() * (objects.len() + 3 + 1));
        // Deleting one name touches no other.
        s.delete_object("", "..").await.unwrap();
        assert!(s.object_info("", "..").await.unwrap().is_none());
        assert!(s.object_info("", ".").await.unwrap().is_some());
        assert!(s.object_info("..", "..").await.unwrap().is_some());
        assert_eq!(list(&s, "", 1000).await.concat().len(), objects.len() - 1);
    }

    #[tokio::test]
    async fn ranges_are_inclusive_and_checked() {
        let (_d, s) = store().await;
        s.create_container("c").await.unwrap();
        put(&s, "c", "digits", b"0123456789").await.unwrap();
        put(&s, "c", "empty", b"").await.unwrap();
        let read = |start, end| get(&s, "c", "digits", start, end);
        assert_eq!(read(0, 0).await.unwrap(), b"0");
        assert_eq!(read(2, 4).await.unwrap(), b"234");
        assert_eq!(read(0, 9).await.unwrap(), b"0123456789");
        assert_eq!(read(9, 9).await.unwrap(), b"9");
        assert_eq!(read(5, 10).await.unwrap(), b"56789");
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
        assert_eq!(get(&s, "c", "empty", 0, 0).await.unwrap(), b"");
        assert_eq!(get(&s, "c", "empty", 0, u64::MAX).await.unwrap(), b"");
        assert!(err(get(&s, "c", "empty", 1, 1).await).contains("past the end"));
        assert_eq!(
            err(get(&s, "c", "nope", 0, 0).await),
            "object `nope` does not exist in container `c`"
        );
        assert_eq!(
            err(get(&s, "d", "x", 0, 0).await),
            "container `d` does not exist"
        );
    }

    #[tokio::test]
    async fn a_reader_keeps_the_bytes_it_was_made_for() {
        let (_d, s) = store().await;
        s.create_container("c").await.unwrap();
        let old: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        put(&s, "c", "x", &old).await.unwrap();
        let mut replaced = s.read("c", "x", 0, u64::MAX).await.unwrap();
        let mut deleted = s.read("c", "x", 100, 199).await.unwrap();
        // Half read before the object changes.
        let first = replaced.read(1000).await.unwrap().unwrap();
        put(&s, "c", "x", b"new").await.unwrap();
        let mut rest = drain(&mut *replaced).await.unwrap();
        let mut seen = first.to_vec();
        seen.append(&mut rest);
        assert_eq!(seen, old);
        s.delete_object("c", "x").await.unwrap();
        s.delete_object("c", "x").await.unwrap(); // absent: not an error
        assert_eq!(drain(&mut *deleted).await.unwrap(), &old[100..200]);
        assert!(s.object_info("c", "x").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn nothing_is_visible_until_commit_and_an_abandoned_write_leaves_nothing() {
        let (_d, s) = store().await;
        s.create_container("c").await.unwrap();
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        assert_eq!(tmp_files(&s).len(), 1);
        assert!(s.object_info("c", "x").await.unwrap().is_none());
        drop(w);
        assert!(tmp_files(&s).is_empty());
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        w.abort().await;
        assert!(tmp_files(&s).is_empty());
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"orphan")).await.unwrap();
        assert_eq!(
            err(w.commit("nope", "x").await),
            "container `nope` does not exist"
        );
        assert!(tmp_files(&s).is_empty());
        assert!(list(&s, "c", 10).await.concat().is_empty());
        // Replacing keeps the old bytes until the new ones are complete.
        put(&s, "c", "x", b"one").await.unwrap();
        let mut w = s.writer().await.unwrap();
        w.write(Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(get(&s, "c", "x", 0, 99).await.unwrap(), b"one");
        w.commit("c", "x").await.unwrap();
        assert_eq!(get(&s, "c", "x", 0, 99).await.unwrap(), b"two");
    }

    #[tokio::test]
    async fn large_objects_move_in_chunks() {
        let (_d, s) = store().await;
        s.create_container("c").await.unwrap();
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        put(&s, "c", "big", &data).await.unwrap();
        let mut r = s.read("c", "big", 1, 4_999_998).await.unwrap();
        assert_eq!(r.size(), 4_999_998);
        let mut chunks = 0;
        let mut out = Vec::new();
        while let Some(c) = r.read(crate::CHUNK).await.unwrap() {
            chunks += 1;
            out.extend_from_slice(&c);
        }
        assert_eq!(chunks, 4_999_998usize.div_ceil(crate::CHUNK));
        assert_eq!(out, &data[1..4_999_999]);
        let info = s.object_info("c", "big").await.unwrap().unwrap();
        assert_eq!(info.size, 5_000_000);
        assert!(info.created_at.abs_diff(now()) < 60);
    }

    #[tokio::test]
    async fn copy_and_move_overwrite_and_check_both_ends() {
        let (_d, s) = store().await;
        let long = "l".repeat(1000);
        for c in ["a", "b", long.as_str()] {
            s.create_container(c).await.unwrap();
        }
        put(&s, "a", "src", b"source").await.unwrap();
        put(&s, "b", "dst", b"old").await.unwrap();
        let id = ObjectId::new;
        s.copy_object(&id("a", "src"), &id("b", "dst"))
            .await
            .unwrap();
        assert_eq!(get(&s, "b", "dst", 0, 99).await.unwrap(), b"source");
        assert_eq!(get(&s, "a", "src", 0, 99).await.unwrap(), b"source");
        s.copy_object(&id("a", "src"), &id("a", "src"))
            .await
            .unwrap();
        assert_eq!(get(&s, "a", "src", 0, 99).await.unwrap(), b"source");
        s.copy_object(&id("a", "src"), &id(&long, &long))
            .await
            .unwrap();
        assert_eq!(get(&s, &long, &long, 0, 99).await.unwrap(), b"source");

        put(&s, "b", "dst", b"older").await.unwrap();
        s.move_object(&id("a", "src"), &id("b", "dst"))
            .await
            .unwrap();
        assert_eq!(get(&s, "b", "dst", 0, 99).await.unwrap(), b"source");
        assert!(s.object_info("a", "src").await.unwrap().is_none());
        s.move_object(&id("b", "dst"), &id("b", "dst"))
            .await
            .unwrap();
        s.move_object(&id(&long, &long), &id("a", &long))
            .await
            .unwrap();
        assert_eq!(get(&s, "a", &long, 0, 99).await.unwrap(), b"source");
        assert!(s.object_info(&long, &long).await.unwrap().is_none());
        assert_eq!(list(&s, "a", 10).await.concat(), vec![long.clone()]);
        assert!(list(&s, &long, 10).await.concat().is_empty());

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
        assert_eq!(get(&s, "a", &long, 0, 99).await.unwrap(), b"source");
        assert!(tmp_files(&s).is_empty());
    }

    #[tokio::test]
    async fn listing_pages_through_2500_objects() {
        let (_d, s) = store().await;
        s.create_container("c").await.unwrap();
        let mut all = HashSet::new();
        for i in 0..2500 {
            // Every tenth name is long enough to be hashed.
            let name = if i % 10 == 0 {
                format!("{i:05}/{}", "x".repeat(300))
            } else {
                format!("{i:05}")
            };
            put(&s, "c", &name, b"").await.unwrap();
            all.insert(name);
        }
        let pages = list(&s, "c", 1000).await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let listed: HashSet<String> = pages.concat().into_iter().collect();
        assert_eq!(listed, all);
        s.clear("c").await.unwrap();
        assert!(list(&s, "c", 1000).await.concat().is_empty());
        assert_eq!(fs::read_dir(s.dirs.container_dir("c")).unwrap().count(), 1);
        assert!(s.container_info("c").await.unwrap().is_some());
        assert_eq!(
            err(s.list_objects("nope").await.map(|_| ())),
            "container `nope` does not exist"
        );
    }

    #[tokio::test]
    async fn containers_are_created_once_and_deleted_with_their_objects() {
        let (_d, s) = store().await;
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
        put(&s, "c", "x", b"1").await.unwrap();
        s.delete_container("c").await.unwrap();
        assert_eq!(s.container_info("c").await.unwrap(), None);
        assert_eq!(
            err(s.object_info("c", "x").await),
            "container `c` does not exist"
        );
        assert_eq!(
            err(put(&s, "c", "x", b"1").await),
            "container `c` does not exist"
        );
        s.create_container("c").await.unwrap();
        assert!(s.object_info("c", "x").await.unwrap().is_none());
        assert!(tmp_files(&s).is_empty());
    }

    #[tokio::test]
    async fn everything_is_found_again_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobstore");
        let long = "é".repeat(500);
        let (info, created) = {
            let s = Embedded::open(&root).await.unwrap();
            let info = s.create_container(&long).await.unwrap();
            put(&s, &long, "a", b"alpha").await.unwrap();
            put(&s, &long, &long, b"long").await.unwrap();
            let created = s.object_info(&long, "a").await.unwrap().unwrap().created_at;
            (info, created)
        };
        let s = Embedded::open(&root).await.unwrap();
        assert_eq!(s.container_info(&long).await.unwrap(), Some(info));
        assert_eq!(get(&s, &long, "a", 0, 99).await.unwrap(), b"alpha");
        assert_eq!(get(&s, &long, &long, 0, 99).await.unwrap(), b"long");
        assert_eq!(
            s.object_info(&long, "a").await.unwrap().unwrap().created_at,
            created
        );
        let mut listed = list(&s, &long, 10).await.concat();
        listed.sort();
        assert_eq!(listed, vec!["a".to_string(), long.clone()]);
    }

    #[tokio::test]
    async fn leftovers_of_a_crash_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobstore");
        drop(Embedded::open(&root).await.unwrap());
        let tmp = root.join("tmp");
        let old = File::create(tmp.join("w-old")).unwrap();
        old.set_modified(SystemTime::now() - 2 * STALE).unwrap();
        drop(old);
        fs::write(tmp.join("w-young"), "in progress elsewhere").unwrap();
        fs::create_dir_all(tmp.join("trash-1-0/o")).unwrap();
        drop(Embedded::open(&root).await.unwrap());
        let left: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["w-young"]);
    }

    /// The writer half of `acknowledged_writes_survive_kill_9`, run as a
    /// child process: it stores objects until killed, printing each name
    /// once `commit` returned.
    #[tokio::test]
    #[ignore = "run by acknowledged_writes_survive_kill_9"]
    async fn kill_9_child() {
        let Some(root) = std::env::var_os("QWASR_BLOBSTORE_KILL9") else {
            return;
        };
        let s = Embedded::open(PathBuf::from(root)).await.unwrap();
        let _ = s.create_container("c").await;
        for i in 0u32.. {
            put(&s, "c", &i.to_string(), &payload(i)).await.unwrap();
            println!("acked {i}");
        }
    }

    fn payload(i: u32) -> Vec<u8> {
        (0..300_000u32)
            .map(|j| (i.wrapping_mul(31) ^ j) as u8)
            .collect()
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_kill_9() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobstore");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "embedded::tests::kill_9_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("QWASR_BLOBSTORE_KILL9", &root)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = io::BufReader::new(child.stdout.take().unwrap());
        let mut acked = Vec::new();
        for line in out.lines() {
            if let Some(i) = line.unwrap().strip_prefix("acked ") {
                acked.push(i.parse::<u32>().unwrap());
                if acked.len() == 20 {
                    break;
                }
            }
        }
        // SIGKILL, mid-write of the next object.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(acked.len(), 20, "the child stopped early");
        let s = Embedded::open(&root).await.unwrap();
        for i in &acked {
            assert_eq!(
                get(&s, "c", &i.to_string(), 0, u64::MAX).await.unwrap(),
                payload(*i)
            );
        }
        // Whatever else is there is whole, never a torn write.
        for name in list(&s, "c", 1000).await.concat() {
            let i: u32 = name.parse().unwrap();
            assert_eq!(get(&s, "c", &name, 0, u64::MAX).await.unwrap(), payload(i));
        }
    }
}
