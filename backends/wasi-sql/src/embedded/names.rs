//! Database names to file names.
//!
//! A name is any string, escaped as [`qwasr_kernel::fs`] says (`[a-z0-9_-]`
//! as-is, every other byte `%xx`, so two names never differ only in case),
//! giving `n-<escaped>.db`. Without `/` or `.` in the escaped name, a name
//! can never leave the directory, and two names never share a file. Names
//! whose encoding would make an over-long file name become
//! `h-<SHA-256 of the name>.db`. SQLite's own `-wal`/`-shm` files add a
//! suffix after `.db`, which no database file name has.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Longest `n-<escaped>` kept readable; file names stay below 255 bytes.
const MAX_ENCODED: usize = 200;

/// The file name of database `name`.
pub(crate) fn file_name(name: &str) -> String {
    match qwasr_kernel::fs::escape_name(name, MAX_ENCODED - "n-".len()) {
        Some(escaped) => format!("n-{escaped}.db"),
        None => hashed(name),
    }
}

fn hashed(name: &str) -> String {
    let mut out = String::with_capacity(2 + 64 + 3);
    out.push_str("h-");
    for b in Sha256::digest(name.as_bytes()) {
        let _ = write!(out, "{b:02x}");
    }
    out.push_str(".db");
    out
}

#[cfg(test)]
mod tests {
    use super::file_name;
    use std::collections::HashSet;

    #[test]
    fn names_map_to_distinct_plain_file_names() {
        let long = "x".repeat(4096);
        let long2 = format!("{}y", "x".repeat(4095));
        let names = [
            "",
            "orders",
            "Orders",
            "ORDERS",
            "../x",
            "..",
            ".",
            "a/b",
            "a%2fb",
            "a\0b",
            "a\\b",
            "n-x",
            "h-x",
            "x.db",
            "x.db-wal",
            "%",
            "%25",
            "é",
            "A",
            "%41",
            "con",
            long.as_str(),
            long2.as_str(),
        ];
        let mut seen = HashSet::new();
        for name in names {
            let f = file_name(name);
            assert!(f.len() < 250, "{name:?} -> {} bytes", f.len());
            assert!(
                f.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-%.".contains(&b)),
                "{name:?} -> {f}"
            );
            assert_eq!(f.matches('.').count(), 1, "{name:?} -> {f}");
            assert!(f.ends_with(".db") && !f.starts_with('.'), "{name:?} -> {f}");
            assert!(
                seen.insert(f.to_ascii_lowercase()),
                "{name:?} collides: {f}"
            );
        }
        assert_eq!(file_name("orders"), "n-orders.db");
        assert_eq!(file_name("../x"), "n-%2e%2e%2fx.db");
        assert!(file_name(&long).starts_with("h-"));
    }
}
