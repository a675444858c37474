//! Building an emitted crate with cargo, in a target directory all apps share.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared target directory: `QWASR_TARGET_DIR`, else `CARGO_TARGET_DIR`,
/// else `qwasr-gen/target` in the user's cache directory.
pub fn default_target_dir() -> Result<PathBuf> {
    for var in ["QWASR_TARGET_DIR", "CARGO_TARGET_DIR"] {
        if let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("cannot choose a target directory: set QWASR_TARGET_DIR (or pass --target-dir)")?;
    Ok(cache.join("qwasr-gen").join("target"))
}

/// Runs `cargo build` on the crate at `krate`; returns the executable's path.
///
/// Cargo's progress goes to stderr as usual.
pub fn cargo_build(krate: &Path, app: &str, target_dir: &Path, release: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        // Cargo prints results on stdout only for some commands; keep ours clean.
        .stdout(std::process::Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().with_context(|| {
        format!(
            "cannot run `{}`; is cargo installed and on PATH?",
            Path::new(&cargo).display()
        )
    })?;
    if !status.success() {
        bail!(
            "cargo could not build the `{app}` runtime (crate at `{}`); see cargo's messages above",
            krate.display()
        );
    }
    let bin = target_dir
        .join(if release { "release" } else { "debug" })
        .join(format!("{app}{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("cargo finished but `{}` is missing", bin.display());
    }
    Ok(bin)
}

/// Copies `from` to `to` atomically (write beside, then rename).
pub fn install(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read `{}`", from.display()))?;
    install_bytes(&bytes, to)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Writes `bytes` to `to` atomically (write beside, then rename).
pub fn install_bytes(bytes: &[u8], to: &Path) -> Result<()> {
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.qwasr-{}",
        to.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, to) {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::from(e).context(format!("cannot write `{}`", to.display())));
    }
    Ok(())
}
