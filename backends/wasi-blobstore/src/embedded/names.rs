//! Container and object names as file names.
//!
//! A name is UTF-8 chosen by the guest, so it is never used as a path: it
//! is escaped as [`qwasr_kernel::fs`] says (`a`-`z`, `0`-`9`, `-`, `_` as-is,
//! every other byte `%xx`, so names differing in case stay apart) and
//! prefixed with a letter saying what the file is (`c` container, `o`
//! object), which also gives the empty name a file name and keeps every
//! encoded name clear of `.`, `..` and our own files.
//!
//! Two names never share a file. A name whose encoding would be longer than
//! [`MAX_PLAIN`] bytes is stored as `h` + the SHA-256 of the name in hex
//! instead; objects then keep their real name in a sidecar file `n` + the
//! same hash, containers in their `.container` file.

use sha2::{Digest, Sha256};

/// Longest encoded file name kept readable; filesystems allow 255 bytes.
pub(crate) const MAX_PLAIN: usize = 200;

/// Prefix of a container directory with a readable name.
pub(crate) const CONTAINER: char = 'c';
/// Prefix of an object file with a readable name.
pub(crate) const OBJECT: char = 'o';
/// Prefix of a file or directory named by a hash.
pub(crate) const HASHED: char = 'h';
/// Prefix of the sidecar holding a hashed object's real name.
pub(crate) const SIDECAR: char = 'n';

/// The file name for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileName {
    /// `prefix` + the escaped name.
    Plain(String),
    /// The hex SHA-256 of the name (the file is `h` + it, the sidecar `n` + it).
    Hashed(String),
}

impl FileName {
    /// The name of the file (or directory) itself.
    pub(crate) fn file(&self) -> String {
        match self {
            FileName::Plain(f) => f.clone(),
            FileName::Hashed(h) => format!("{HASHED}{h}"),
        }
    }

    /// For a hashed object, the name of its sidecar file.
    pub(crate) fn sidecar(&self) -> Option<String> {
        match self {
            FileName::Plain(_) => None,
            FileName::Hashed(h) => Some(format!("{SIDECAR}{h}")),
        }
    }
}

/// Encodes `name` as a file name starting with `prefix` (or hashed).
pub(crate) fn encode(prefix: char, name: &str) -> FileName {
    match qwasr_kernel::fs::escape_name(name, MAX_PLAIN - 1) {
        Some(escaped) => FileName::Plain(format!("{prefix}{escaped}")),
        None => FileName::Hashed(hash(name)),
    }
}

fn hash(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name a plain file name with `prefix` stands for; `None` for files
/// this module did not make (foreign or hashed ones).
pub(crate) fn decode(prefix: char, file: &str) -> Option<String> {
    let name = qwasr_kernel::fs::unescape_name(file.strip_prefix(prefix)?)?;
    // A name this long is stored hashed, never under this file name.
    (file.len() <= MAX_PLAIN).then_some(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;

    pub(crate) fn nasty() -> Vec<String> {
        vec![
            String::new(),
            ".".into(),
            "..".into(),
            "../../etc/passwd".into(),
            "/etc/passwd".into(),
            "a/b".into(),
            "a\\b".into(),
            "a\0b".into(),
            "\0".into(),
            "x".repeat(4096),
            "é".repeat(2000),
            "ünïcødé ✓ 日本語 🦀".into(),
            "A".into(),
            "a".into(),
            "%61".into(),
            "o".into(),
            "h".into(),
            ".container".into(),
            "n0123".into(),
            " ".into(),
            "\n".into(),
            "x".repeat(66),
            "x".repeat(199),
            "x".repeat(200),
            "CON".into(),
        ]
    }

    #[test]
    fn names_round_trip_and_never_collide() {
        let names = nasty();
        let mut files = HashSet::new();
        for name in &names {
            let f = encode(OBJECT, name);
            let file = f.file();
            assert!(file.len() <= MAX_PLAIN, "{file}");
            assert!(
                file.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"%-_".contains(&b)),
                "unsafe file name {file:?}"
            );
            assert!(file != "." && file != "..");
            assert!(files.insert(file.clone()), "{name:?} collides");
            match &f {
                FileName::Plain(p) => assert_eq!(decode(OBJECT, p).as_deref(), Some(name.as_str())),
                FileName::Hashed(_) => assert!(decode(OBJECT, &file).is_none()),
            }
        }
        assert_eq!(encode(OBJECT, "").file(), "o");
        assert_eq!(encode(OBJECT, "a/b").file(), "oa%2fb");
        assert_eq!(encode(CONTAINER, "A").file(), "c%41");
        // Readable up to the limit, hashed past it.
        assert_eq!(encode(OBJECT, &"x".repeat(199)).file().len(), MAX_PLAIN);
        assert!(matches!(
            encode(OBJECT, &"x".repeat(200)),
            FileName::Hashed(_)
        ));
        assert!(matches!(
            encode(OBJECT, &"é".repeat(34)),
            FileName::Hashed(_)
        ));
        assert_eq!(
            encode(OBJECT, &"x".repeat(4096)).sidecar().map(|s| s.len()),
            Some(65)
        );
    }

    #[test]
    fn foreign_files_do_not_decode() {
        for file in [
            "o%61",
            "o%4",
            "o%zz",
            "oA",
            "o.",
            ".container",
            "c",
            "x",
            "o%ff",
            "h00",
            "o%2F",
        ] {
            assert_eq!(decode(OBJECT, file), None, "{file}");
        }
        assert_eq!(decode(OBJECT, "o").as_deref(), Some(""));
        assert_eq!(decode(CONTAINER, "c%2e%2e").as_deref(), Some(".."));
    }
}
