//! How guest names (any UTF-8: empty, `a/b`, NUL, kilobytes long) become
//! the restricted names NATS accepts, one to one.
//!
//! - Bucket and object-store names (`[A-Za-z0-9_-]`): `<prefix>_<escaped>`,
//!   where letters, digits and `-` stand for themselves and every other
//!   byte is `_XX` (hex). Past [`MAX_BUCKET`] characters the escaped form
//!   is replaced by `__<sha256 hex>` (escaping never yields `__`).
//! - Keys (`[-/_=.a-zA-Z0-9]`, no leading or trailing `.`): letters,
//!   digits, `-`, `_` and `/` stand for themselves, every other byte is
//!   `=XX`; the empty key is `=`. Past [`MAX_KEY`] characters the key is
//!   `==<sha256 hex>` and the real key travels with the value.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Longest escaped bucket name kept readable (the server makes a directory
/// of each stream).
pub(crate) const MAX_BUCKET: usize = 64;

/// Longest escaped key kept as it is: a key is part of a subject, and a
/// subject must fit the server's 4 KB protocol line with room to spare.
pub(crate) const MAX_KEY: usize = 512;

/// Lower-case hex of the SHA-256 of `s`.
pub(crate) fn sha256_hex(s: &str) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(s.as_bytes()) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Escapes `s`: bytes `keep` accepts stay, others become `<esc>XX`.
fn escape(s: &str, esc: char, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "{esc}{b:02X}");
        }
    }
    out
}

/// The NATS bucket (KV bucket, object store) for the guest's `name`.
pub(crate) fn bucket(prefix: &str, name: &str) -> String {
    let escaped = escape(name, '_', |b| b.is_ascii_alphanumeric() || b == b'-');
    if escaped.len() > MAX_BUCKET {
        format!("{prefix}___{}", sha256_hex(name))
    } else {
        format!("{prefix}_{escaped}")
    }
}

/// A guest key as a NATS KV key.
#[cfg(feature = "keyvalue")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    /// The key NATS stores.
    pub(crate) stored: String,
    /// Whether it is a hash, the real key being kept with the value.
    pub(crate) hashed: bool,
}

#[cfg(feature = "keyvalue")]
fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/')
}

/// The NATS key for the guest's `key`.
#[cfg(feature = "keyvalue")]
pub(crate) fn key(key: &str) -> Key {
    if key.is_empty() {
        return Key {
            stored: "=".into(),
            hashed: false,
        };
    }
    let escaped = escape(key, '=', key_byte);
    if escaped.len() > MAX_KEY {
        Key {
            stored: format!("=={}", sha256_hex(key)),
            hashed: true,
        }
    } else {
        Key {
            stored: escaped,
            hashed: false,
        }
    }
}

/// What a stored key stands for.
#[cfg(feature = "keyvalue")]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// The guest's key.
    Key(String),
    /// A hashed key: the real one is with the value.
    Hashed,
    /// Not a key this backend wrote (another client's): skipped.
    Foreign,
}

/// The guest key a stored key stands for.
#[cfg(feature = "keyvalue")]
pub(crate) fn decode_key(stored: &str) -> Decoded {
    if stored == "=" {
        return Decoded::Key(String::new());
    }
    if let Some(hash) = stored.strip_prefix("==") {
        return if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            Decoded::Hashed
        } else {
            Decoded::Foreign
        };
    }
    if stored.len() > MAX_KEY {
        return Decoded::Foreign;
    }
    let bytes = stored.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hex = stored
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                // Only what `key` writes: an escaped byte it would not keep.
                Some(v)
                    if !key_byte(v)
                        && bytes[i + 1..i + 3].iter().all(|c| !c.is_ascii_lowercase()) =>
                {
                    out.push(v)
                }
                _ => return Decoded::Foreign,
            }
            i += 3;
        } else if key_byte(b) {
            out.push(b);
            i += 1;
        } else {
            return Decoded::Foreign;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Decoded::Key(s),
        Err(_) => Decoded::Foreign,
    }
}

/// A value as stored under a hashed key: the real key first, so that a
/// listing can name it (4-byte big-endian length, key, value).
#[cfg(feature = "keyvalue")]
pub(crate) fn wrap(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + value.len());
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    out
}

/// The real key and the value of a value stored under a hashed key;
/// `None` if it is not in that shape.
#[cfg(feature = "keyvalue")]
pub(crate) fn unwrap(stored: &[u8]) -> Option<(&str, &[u8])> {
    let len = stored.get(..4)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let key = stored.get(4..4usize.checked_add(len)?)?;
    let key = std::str::from_utf8(key).ok()?;
    Some((key, &stored[4 + len..]))
}

/// The object name the object store holds for the guest's `name`: the name
/// itself unless it is too long for a subject (or looks like a hash): then
/// its hash, the real name being kept in the object's metadata. The empty
/// name (an empty subject token) is hashed too.
#[cfg(feature = "blobstore")]
pub(crate) fn object(name: &str) -> (String, bool) {
    // The store puts base64url(name) in a subject: 4/3 of its length.
    if name.is_empty() || name.len() > 3 * MAX_KEY / 4 || name.starts_with(HASHED_OBJECT) {
        (format!("{HASHED_OBJECT}{}", sha256_hex(name)), true)
    } else {
        (name.to_string(), false)
    }
}

/// How a hashed object name starts.
#[cfg(feature = "blobstore")]
pub(crate) const HASHED_OBJECT: &str = "qwasr-sha256:";

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_bucket(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    #[test]
    fn buckets_are_valid_and_distinct() {
        let long = "x".repeat(4096);
        let names = [
            "",
            "a",
            "A",
            "a/b",
            "a_b",
            "a_5Fb",
            "a\0",
            "\0",
            "é",
            "-",
            "__",
            long.as_str(),
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let b = bucket("p", n);
            assert!(valid_bucket(&b), "{b}");
            assert!(b.len() <= 2 + 2 + 64 + 1, "{b}");
            assert!(seen.insert(b), "{n:?}");
        }
    }

    #[cfg(feature = "keyvalue")]
    #[test]
    fn keys_round_trip() {
        let long = "é".repeat(2048);
        let keys = [
            "",
            "a",
            ".",
            "..",
            "a.b",
            ".a",
            "a.",
            "=",
            "==",
            "=41",
            "a/b",
            "../x",
            "*",
            ">",
            " ",
            "\0",
            "a\0b",
            "é",
            "日本",
            "-_/",
            long.as_str(),
        ];
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            let key = key(k);
            assert!(seen.insert(key.stored.clone()), "{k:?}");
            let s = &key.stored;
            assert!(
                !s.is_empty() && !s.starts_with('.') && !s.ends_with('.'),
                "{s}"
            );
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b)),
                "{s}"
            );
            if key.hashed {
                assert_eq!(decode_key(s), Decoded::Hashed);
            } else {
                assert_eq!(decode_key(s), Decoded::Key(k.to_string()), "{s}");
            }
        }
        assert_eq!(decode_key("plain.dotted"), Decoded::Foreign);
        assert_eq!(decode_key("=41"), Decoded::Foreign);
        assert_eq!(decode_key("=2e"), Decoded::Foreign);
        assert_eq!(decode_key("=2"), Decoded::Foreign);
        let stored = wrap("k", b"value");
        assert_eq!(unwrap(&stored), Some(("k", &b"value"[..])));
        assert_eq!(unwrap(b"\0\0"), None);
    }
}
