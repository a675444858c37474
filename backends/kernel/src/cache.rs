//! A file copy of the embedded image, so that later starts map it.
//!
//! wasmtime maps a linear memory's initial contents straight from the file
//! only when the image was loaded from a file; from the executable's own
//! bytes it first copies them into an anonymous file. For an interpreter
//! guest that copy is most of its first request (CPython's heap: ~5 ms,
//! bench/profile.md). The runtime stays one self-contained executable: the
//! copy is written in the background after a start that did not find it,
//! and any start that cannot use it runs the embedded bytes as before.
//!
//! Loading a file runs its machine code, so only files this user wrote in a
//! directory nobody else can write to are loaded; each is named by the
//! image's digest (computed by the generator), so a rebuilt runtime never
//! picks up another build's code.

use anyhow::{Context, Result};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where one app's image is cached.
pub(crate) struct Cache {
    dir: PathBuf,
    app: &'static str,
    id: &'static str,
}

impl Cache {
    /// The cache for `app`'s image `id`: `--cache-dir`, else
    /// `$XDG_CACHE_HOME/qwasr`, else `~/.cache/qwasr`, created (0700) if
    /// missing. None with `--no-cache`, when no such directory can be named,
    /// or when it cannot be created or others may write to it (logged).
    pub(crate) fn open(cli: &crate::Cli, app: &'static str, id: &'static str) -> Option<Cache> {
        if cli.no_cache {
            return None;
        }
        let dir = cli.cache_dir.clone().or_else(default_dir)?;
        let usable = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating `{}`", dir.display()))
            .and_then(|()| private(&fs::metadata(&dir)?, &dir));
        match usable {
            Ok(()) => Some(Cache { dir, app, id }),
            Err(e) => {
                tracing::debug!("not using the image cache: {e:#}");
                None
            }
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.cwasm", self.app, self.id))
    }

    /// The cached image, if it is there and safe to load. `Ok(None)`: not
    /// written yet.
    pub(crate) fn load(&self, engine: &Engine, len: usize) -> Result<Option<Component>> {
        let path = self.file();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading `{}`", path.display())),
        };
        private(&meta, &path)?;
        anyhow::ensure!(
            meta.is_file() && meta.len() == len as u64,
            "`{}` is not a copy of this runtime's image",
            path.display()
        );
        // SAFETY: the file was written by this user, from this runtime's
        // image with this digest, for this wasmtime version (wasmtime checks
        // version and engine settings again), in a directory only this user
        // can write to (checked by `open`); files there are only ever
        // replaced by rename, never modified in place.
        let component = unsafe { Component::deserialize_file(engine, &path) }
            .map_err(anyhow::Error::from)
            .with_context(|| format!("loading `{}`", path.display()))?;
        Ok(Some(component))
    }

    /// Writes `image` to the cache on a thread of its own, then removes this
    /// app's other images (earlier builds). Failures are logged at debug
    /// level: the cache only makes later starts faster.
    pub(crate) fn fill_in_background(self, image: &'static [u8]) {
        let spawned = std::thread::Builder::new()
            .name("qwasr-cache".into())
            .spawn(move || match self.fill(image) {
                Ok(path) => {
                    tracing::debug!(path = %path.display(), "image cached for later starts")
                }
                Err(e) => tracing::debug!("image not cached: {e:#}"),
            });
        if let Err(e) = spawned {
            tracing::debug!("image not cached: {e}");
        }
    }

    fn fill(&self, image: &[u8]) -> Result<PathBuf> {
        let path = self.file();
        let tmp = self.dir.join(format!(
            ".{}-{}.{}.tmp",
            self.app,
            self.id,
            std::process::id()
        ));
        let written = (|| {
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(image)?;
            // Renamed only once on disk: a crash never leaves a short file
            // under the final name.
            file.sync_data()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing `{}`", path.display()));
        }
        self.remove_others();
        Ok(path)
    }

    /// Removes images of earlier builds of this app (same name, other
    /// digest) and copies left half-written by runtimes that were killed.
    fn remove_others(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let prefix = format!("{}-", self.app);
        let is_id =
            |id: &str| id.len() == self.id.len() && id.bytes().all(|b| b.is_ascii_hexdigit());
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let earlier = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".cwasm"))
                .is_some_and(|id| id != self.id && is_id(id));
            let abandoned = name
                .strip_prefix('.')
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(id, pid)| {
                    is_id(id)
                        && pid.parse::<u32>().is_ok()
                        && !Path::new("/proc").join(pid).exists()
                });
            if earlier || abandoned {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".cache"))
        })?;
    Some(base.join("qwasr"))
}

/// Errors unless `meta` (of `path`) is owned by this user, writable by nobody
/// else, and not a symbolic link.
fn private(meta: &fs::Metadata, path: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    anyhow::ensure!(
        meta.uid() == me && meta.mode() & 0o022 == 0 && !meta.file_type().is_symlink(),
        "`{}` is not private to this user (owner {}, mode {:o}); not loading code from it",
        path.display(),
        meta.uid(),
        meta.mode() & 0o7777
    );
    Ok(())
}
