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

/// How long after a start its copy is written (a stop before then writes
/// none).
const WRITE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

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

    /// Writes `image` to the cache on a thread of its own. Failures are
    /// logged at debug level: the cache only makes later starts faster.
    pub(crate) fn fill_in_background(self, image: &'static [u8]) {
        let spawned = std::thread::Builder::new()
            .name("qwasr-cache".into())
            .spawn(move || {
                // The copy only helps later starts: it waits until this one
                // has served its first requests.
                std::thread::sleep(WRITE_AFTER);
                match self.fill(image) {
                    Ok(Some(path)) => {
                        tracing::debug!(path = %path.display(), "image cached for later starts")
                    }
                    Ok(None) => tracing::debug!("image being cached by another start"),
                    Err(e) => tracing::debug!("image not cached: {e:#}"),
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("image not cached: {e}");
        }
    }

    /// Removes what earlier runs left, then writes the copy unless another
    /// live process is writing it already (`Ok(None)`).
    fn fill(&self, image: &[u8]) -> Result<Option<PathBuf>> {
        if self.sweep() {
            return Ok(None);
        }
        let path = self.file();
        // The pid says whether the writer still lives; the nonce keeps apart
        // writers with the same pid (in containers sharing the directory).
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos());
        let tmp = self.dir.join(format!(
            ".{}-{}.{}.{nonce:08x}.tmp",
            self.app,
            self.id,
            std::process::id()
        ));
        let mut file = {
            // Created under the lock, so a stop either comes first (nothing
            // written) or finds the file to remove.
            let mut writer = writer();
            anyhow::ensure!(
                !matches!(*writer, Writer::Stopped),
                "the runtime is stopping"
            );
            let file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("creating `{}`", tmp.display()))?;
            *writer = Writer::Writing(tmp.clone());
            file
        };
        let written = (|| {
            file.write_all(image)?;
            // Renamed only once on disk: a crash never leaves a short file
            // under the final name.
            file.sync_data()?;
            fs::rename(&tmp, &path)
        })();
        {
            let mut writer = writer();
            if matches!(*writer, Writer::Writing(_)) {
                *writer = Writer::Idle;
            }
        }
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing `{}`", path.display()));
        }
        Ok(Some(path))
    }

    /// Removes images of earlier builds of this app (same name, other
    /// digest) and copies left half-written by runtimes that were killed;
    /// true if a live process is writing this image now.
    fn sweep(&self) -> bool {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return false;
        };
        let prefix = format!("{}-", self.app);
        let is_id =
            |id: &str| id.len() == self.id.len() && id.bytes().all(|b| b.is_ascii_hexdigit());
        let mut in_progress = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let earlier = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".cwasm"))
                .is_some_and(|id| id != self.id && is_id(id));
            let writer = name
                .strip_prefix('.')
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(|rest| rest.split_once('.'))
                .filter(|(id, _)| is_id(id))
                .and_then(|(id, rest)| Some((id, rest.split('.').next()?.parse::<u32>().ok()?)));
            let abandoned = match writer {
                // Not ours (this process has not created its file yet): an
                // earlier process with the same pid, as pid 1 in a container.
                Some((_, pid)) if pid == std::process::id() => true,
                Some((id, pid)) if Path::new("/proc").join(pid.to_string()).exists() => {
                    in_progress |= id == self.id;
                    false
                }
                Some(_) => true,
                None => false,
            };
            if earlier || abandoned {
                let _ = fs::remove_file(entry.path());
            }
        }
        in_progress
    }
}

/// What this process's cache writer is doing.
enum Writer {
    Idle,
    /// Writing this temporary file.
    Writing(PathBuf),
    /// The runtime is stopping: write nothing more.
    Stopped,
}

fn writer() -> std::sync::MutexGuard<'static, Writer> {
    static WRITER: std::sync::Mutex<Writer> = std::sync::Mutex::new(Writer::Idle);
    WRITER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called as the runtime stops (e.g. SIGTERM soon after a first start):
/// removes the copy this process is still writing and starts no other, so no
/// half-written file is left behind. A killed process's file is removed by
/// the next start that writes one.
pub(crate) fn abandon_unfinished() {
    if let Writer::Writing(tmp) = std::mem::replace(&mut *writer(), Writer::Stopped) {
        let _ = fs::remove_file(tmp);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_and_fill_leave_only_this_image() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let id = "0123456789abcdef0123456789abcdef";
        let other = "fedcba9876543210fedcba9876543210";
        let cache = Cache {
            dir: dir.to_path_buf(),
            app: "app",
            id,
        };
        let touch = |name: String| fs::write(dir.join(name), b"x").unwrap();
        let names = || {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        touch(format!("app-{other}.cwasm")); // an earlier build
        touch(format!(".app-{id}.4294967295.1a2b3c4d.tmp")); // a writer that died
        let me = std::process::id();
        touch(format!(".app-{id}.{me}.00000000.tmp")); // an earlier process, same pid
        touch(format!("app-x-{other}.cwasm")); // another app's
        touch(format!(".app-{id}.1.0badcafe.tmp")); // pid 1 lives: a start writing now
        assert_eq!(cache.fill(b"image").unwrap(), None);
        assert_eq!(
            names(),
            [
                format!(".app-{id}.1.0badcafe.tmp"),
                format!("app-x-{other}.cwasm")
            ]
        );

        fs::remove_file(dir.join(format!(".app-{id}.1.0badcafe.tmp"))).unwrap();
        let written = cache.fill(b"image").unwrap().unwrap();
        assert_eq!(fs::read(&written).unwrap(), b"image");
        assert_eq!(
            names(),
            [format!("app-{id}.cwasm"), format!("app-x-{other}.cwasm")]
        );
        assert!(matches!(*writer(), Writer::Idle));

        abandon_unfinished();
        assert!(
            cache.fill(b"image").is_err(),
            "nothing is written once stopping"
        );
    }
}
