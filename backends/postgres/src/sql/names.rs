//! Guest database names → PostgreSQL database names.
//!
//! A name that is a plain lower-case identifier (`[a-z_][a-z0-9_]*`) maps to
//! `<prefix><name>`. Any other name maps to `<prefix>~<escaped>`, where
//! `[a-z0-9_]` stay as they are and every other byte becomes `%xx` (`Orders`
//! → `~%4frders`, `a/b` → `~a%2fb`, the empty name → `~`): reversible, and
//! never equal to a plain name (`~` is not in one). A result longer than
//! PostgreSQL's 63 bytes is `<prefix>#<first 32 hex digits of the name's
//! SHA-256>` instead.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
pub(crate) const MAX_NAME: usize = 63;

/// Longest prefix: room for `#` and 32 hex digits.
pub(crate) const MAX_PREFIX: usize = MAX_NAME - 33;

/// The database holding guest database `name`.
pub(crate) fn database(prefix: &str, name: &str) -> String {
    let plain =
        name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && name.bytes().all(keep);
    let mapped = if plain {
        format!("{prefix}{name}")
    } else {
        let mut s = format!("{prefix}~");
        for b in name.bytes() {
            if keep(b) {
                s.push(char::from(b));
            } else {
                let _ = write!(s, "%{b:02x}");
            }
        }
        s
    };
    if mapped.len() <= MAX_NAME {
        return mapped;
    }
    let digest = Sha256::digest(name.as_bytes());
    let mut s = format!("{prefix}#");
    for b in &digest[..16] {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn keep(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
