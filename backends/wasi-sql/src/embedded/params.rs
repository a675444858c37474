//! PostgreSQL's `$N` parameters on SQLite.
//!
//! SQLite reads `$1` as a *named* parameter, numbered by first appearance,
//! so `SELECT $2, $1` would bind the first value to `$2`. `?N` is SQLite's
//! positional form, so every `$N` outside string literals, quoted
//! identifiers and comments becomes `?N`.

use std::borrow::Cow;

/// `sql` with each `$N` parameter spelled `?N`; other text is untouched.
pub(crate) fn positional(sql: &str) -> Cow<'_, str> {
    let b = sql.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // 'text', "identifier", `identifier`: a doubled quote is an escaped one.
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            // [identifier], SQLite's MS Access-style quoting.
            b'[' => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(b.len(), |p| i + p + 1)
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(b.len(), |p| i + 2 + p + 2);
            }
            b'$' => {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                let end = i + 1 + digits;
                // `a$1` is an identifier and `$1a` a named parameter, as in SQLite.
                let inside_word = i > 0 && is_word(b[i - 1]);
                let word_follows = b.get(end).is_some_and(|&c| is_word(c));
                if digits > 0 && !inside_word && !word_follows {
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    copied = i + 1;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        Cow::Borrowed(sql)
    } else {
        out.push_str(&sql[copied..]);
        Cow::Owned(out)
    }
}

/// Bytes SQLite accepts inside an unquoted identifier (any non-ASCII byte too).
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

#[cfg(test)]
mod tests {
    use super::positional;

    #[test]
    fn rewrites_only_parameters_outside_literals_identifiers_and_comments() {
        let table = [
            ("SELECT $1", "SELECT ?1"),
            ("SELECT $2, $1, $2", "SELECT ?2, ?1, ?2"),
            ("SELECT $10+$1", "SELECT ?10+?1"),
            ("INSERT INTO t VALUES($1,$2)", "INSERT INTO t VALUES(?1,?2)"),
            ("SELECT ?, ?2, ?", "SELECT ?, ?2, ?"),
            ("SELECT 'it''s $1', $1", "SELECT 'it''s $1', ?1"),
            ("SELECT \"col$1\", $1", "SELECT \"col$1\", ?1"),
            ("SELECT \"a\"\"$1\" FROM t", "SELECT \"a\"\"$1\" FROM t"),
            ("SELECT `x$1` , [y $2], $3", "SELECT `x$1` , [y $2], ?3"),
            ("SELECT $1 -- $2\n, $3", "SELECT ?1 -- $2\n, ?3"),
            ("SELECT /* $1 */ $2 /* $3", "SELECT /* $1 */ ?2 /* $3"),
            ("SELECT $1 - -$2 / $3", "SELECT ?1 - -?2 / ?3"),
            (
                "SELECT a$1, $1a, $name, $, $$",
                "SELECT a$1, $1a, $name, $, $$",
            ),
            ("SELECT x'00$1', $1", "SELECT x'00$1', ?1"),
            ("SELECT 'é', $1, 'ü'", "SELECT 'é', ?1, 'ü'"),
            ("SELECT 'unterminated $1", "SELECT 'unterminated $1"),
            ("SELECT $1 -- trailing", "SELECT ?1 -- trailing"),
            ("", ""),
        ];
        for (sql, want) in table {
            assert_eq!(positional(sql), want, "rewriting {sql:?}");
        }
    }

    #[test]
    fn text_without_parameters_is_not_copied() {
        assert!(matches!(
            positional("SELECT 1"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
