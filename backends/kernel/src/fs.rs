//! Names a guest chooses (containers, databases, …) as parts of file names
//! under the data directory.
//!
//! A name is any UTF-8 string, so it is never used as a path. Its bytes
//! `a`-`z`, `0`-`9`, `-` and `_` stand for themselves; every other byte
//! becomes `%xx` (lower-case hex). Upper-case letters are escaped too, so
//! names differing only in case stay apart on case-insensitive file systems;
//! `/`, `\`, `.` and NUL never appear, so with the caller's prefix (which
//! also gives the empty name a file name) the result can neither leave its
//! directory nor be `.` or `..`. The encoding is injective (`%` itself is
//! escaped), so two names never share a file.
//!
//! Names too long to escape within a file name's limit are the caller's to
//! map otherwise (the backends use a hash of the name).

/// Whether byte `b` stands for itself.
fn literal(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// `name` escaped as the module says; `None` if that is longer than `max`
/// bytes.
pub fn escape_name(name: &str, max: usize) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let len: usize = name.bytes().map(|b| if literal(b) { 1 } else { 3 }).sum();
    if len > max {
        return None;
    }
    let mut out = String::with_capacity(len);
    for b in name.bytes() {
        if literal(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Some(out)
}

/// The name [`escape_name`] turned into `escaped`; `None` for any other text
/// (another spelling such as `%61` for `a`, or a file this module did not
/// name).
pub fn unescape_name(escaped: &str) -> Option<String> {
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                let b = hi << 4 | lo;
                // A literal byte is never escaped: `%61` is not `a`.
                if literal(b) {
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if literal(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_round_trip_to_distinct_safe_file_names() {
        let long = "x".repeat(4096);
        let names = [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "A",
            "a",
            "%",
            "%61",
            "%25",
            " ",
            "\n",
            "CON",
            "x.db",
            "ünïcødé ✓ 日本語 🦀",
            long.as_str(),
        ];
        let mut seen = HashSet::new();
        for name in names {
            let e = escape_name(name, usize::MAX).unwrap();
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"%-_".contains(&b)),
                "{name:?} -> {e}"
            );
            assert!(seen.insert(e.to_ascii_lowercase()), "{name:?} collides");
            assert_eq!(unescape_name(&e).as_deref(), Some(name));
        }
        assert_eq!(escape_name("a/B", usize::MAX).unwrap(), "a%2f%42");
        assert_eq!(escape_name("..", usize::MAX).unwrap(), "%2e%2e");
    }

    #[test]
    fn max_counts_escaped_bytes() {
        assert_eq!(escape_name(&"x".repeat(10), 10).unwrap().len(), 10);
        assert_eq!(escape_name(&"x".repeat(11), 10), None);
        assert_eq!(escape_name("é", 6).unwrap(), "%c3%a9");
        assert_eq!(escape_name("é", 5), None);
    }

    #[test]
    fn only_the_canonical_spelling_unescapes() {
        for text in ["%61", "%4", "%zz", "%2F", "A", ".", "a.b", "%ff", "%c3"] {
            assert_eq!(unescape_name(text), None, "{text}");
        }
        assert_eq!(unescape_name("").as_deref(), Some(""));
        assert_eq!(unescape_name("%2e%2e").as_deref(), Some(".."));
    }
}
