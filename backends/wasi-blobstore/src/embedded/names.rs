//! Container and object names as file names.
//!
//! A name is UTF-8 chosen by the guest, so it is never used as a path. Its
//! bytes are kept as-is only when they are `a`-`z`, `0`-`9`, `-` or `_`;
//! every other byte becomes `%xx` (lowercase hex). Upper-case letters are
//! escaped too, so names differing in case stay apart on case-insensitive
//! filesystems. The result is prefixed with a letter saying what the file is
//! (`c` container, `o` object), which also gives the empty name a file name
//! and keeps every encoded name clear of `.`, `..` and our own files.
//!
//! Encoding is injective (each byte maps to one fixed sequence and `%` is
//! always escaped), so two names never share a file. A name whose encoding
//! would be longer than [`MAX_PLAIN`] bytes is stored as `h` + the SHA-256 of
//! the name in hex instead; objects then keep their real name in a sidecar
//! file `n` + the same hash, containers in their `.container` file.

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

fn literal(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Encodes `name` as a file name starting with `prefix` (or hashed).
pub(crate) fn encode(prefix: char, name: &str) -> FileName {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let len: usize = 1 + name
        .bytes()
        .map(|b| if literal(b) { 1 } else { 3 })
        .sum::<usize>();
    if len > MAX_PLAIN {
        return FileName::Hashed(hash(name));
    }
    let mut out = String::with_capacity(len);
    out.push(prefix);
    for &b in name.as_bytes() {
        if literal(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    FileName::Plain(out)
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
    let rest = file.strip_prefix(prefix)?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else if literal(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    let name = String::from_utf8(out).ok()?;
    // Only the canonical spelling counts (`%61` is not `a`).
    (encode(prefix, &name) == FileName::Plain(file.to_string())).then_some(name)
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
