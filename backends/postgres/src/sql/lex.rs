//! Just enough of PostgreSQL's lexer to split a text into statements and
//! read their top-level keywords: which ones open or close a transaction
//! (to know whether a lost connection took a transaction with it) and which
//! ones change rows (what `exec` counts).
//!
//! Strings (`'…'`, `E'…'`), quoted identifiers, dollar-quoted bodies
//! (`$$…$$`, `$fn$…$fn$`) and comments (`--`, nested `/* */`) are skipped,
//! so a `;` or a keyword inside them counts for nothing.

/// One statement of a text: its words outside parentheses, lower-cased.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub(crate) words: Vec<String>,
}

/// What a statement does to the session's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`, `PREPARE TRANSACTION`.
    End,
    /// Anything else (`ROLLBACK TO SAVEPOINT`, `COMMIT AND CHAIN`, …).
    Nothing,
}

impl Statement {
    fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }

    fn has(&self, w: &str) -> bool {
        self.words.iter().any(|x| x == w)
    }

    /// What the statement does to the transaction.
    pub(crate) fn effect(&self) -> Effect {
        match self.word(0) {
            "begin" => Effect::Begin,
            "start" if self.word(1) == "transaction" => Effect::Begin,
            "prepare" if self.word(1) == "transaction" => Effect::End,
            "commit" | "end" | "rollback" | "abort" => {
                let chained = self
                    .words
                    .windows(2)
                    .any(|w| w[0] == "and" && w[1] == "chain");
                if self.word(1) == "prepared" || self.has("to") || chained {
                    Effect::Nothing
                } else {
                    Effect::End
                }
            }
            _ => Effect::Nothing,
        }
    }

    /// The statement's own verb: the first word, or for `WITH …` the verb
    /// after the common table expressions (`WITH a AS (…) INSERT …`).
    pub(crate) fn verb(&self) -> &str {
        const VERBS: &[&str] = &[
            "select", "insert", "update", "delete", "merge", "values", "table",
        ];
        match self.word(0) {
            "with" => self.words[1..]
                .iter()
                .find(|w| VERBS.contains(&w.as_str()))
                .map_or("with", String::as_str),
            w => w,
        }
    }

    /// Whether it is a `COPY` from the client or to it (`FROM STDIN`, `TO
    /// STDOUT`), which needs a data stream the interface does not have.
    pub(crate) fn copies_with_client(&self) -> bool {
        self.word(0) == "copy" && (self.has("stdin") || self.has("stdout"))
    }

    /// Whether the rows in its command tag are rows it inserted, updated or
    /// deleted (rather than rows it selected, copied, …).
    pub(crate) fn changes_rows(&self) -> bool {
        matches!(self.verb(), "insert" | "update" | "delete" | "merge")
    }
}

/// The statements of `sql`, empty ones left out.
pub(crate) fn statements(sql: &str) -> Vec<Statement> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut cur = Statement::default();
    let mut tokens = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b';' => {
                if tokens {
                    out.push(std::mem::take(&mut cur));
                }
                tokens = false;
                depth = 0;
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_comment(b, i);
                continue;
            }
            _ => {}
        }
        tokens = true;
        match c {
            b'\'' => i = skip_quoted(b, i, b'\'', false),
            b'"' => i = skip_quoted(b, i, b'"', false),
            b'$' => i = skip_dollar(b, i),
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'$') || b[i] >= 0x80)
                {
                    i += 1;
                }
                let word = String::from_utf8_lossy(&b[start..i]);
                match b.get(i) {
                    // E'…': backslash escapes.
                    Some(b'\'') if word.eq_ignore_ascii_case("e") => {
                        i = skip_quoted(b, i, b'\'', true);
                    }
                    // B'…', X'…', N'…' and the like: a prefixed string.
                    Some(b'\'') if word.len() == 1 => i = skip_quoted(b, i, b'\'', false),
                    // U&'…', U&"…".
                    Some(b'&')
                        if word.eq_ignore_ascii_case("u")
                            && matches!(b.get(i + 1), Some(b'\'' | b'"')) =>
                    {
                        let q = b[i + 1];
                        i = skip_quoted(b, i + 1, q, false);
                    }
                    _ if depth == 0 => cur.words.push(word.to_ascii_lowercase()),
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    if tokens {
        out.push(cur);
    }
    out
}

/// Past the `/* … */` comment (nested, as PostgreSQL has them) at `i`.
fn skip_comment(b: &[u8], mut i: usize) -> usize {
    let mut level = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            level += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            level -= 1;
            i += 2;
            if level == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Past the string or identifier quoted by `q` at `i` (a doubled `q` is one
/// inside it; with `backslash`, `\` escapes the next byte).
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    i += 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Past the `$` at `i`: a parameter (`$1`), a dollar-quoted string
/// (`$tag$ … $tag$`), or the `$` alone.
fn skip_dollar(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    let tag_ok = j == i + 1 || !b[i + 1].is_ascii_digit();
    if !(tag_ok && b.get(j) == Some(&b'$')) {
        // `$1` or a stray `$`.
        return j.max(i + 1);
    }
    let tag = &b[i..=j];
    let mut k = j + 1;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verbs(sql: &str) -> Vec<String> {
        statements(sql)
            .iter()
            .map(|s| s.verb().to_string())
            .collect()
    }

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        assert_eq!(verbs("SELECT 1; SELECT 2"), ["select", "select"]);
        assert_eq!(
            verbs(" ;; -- x;\n /* a; /* b; */ c; */ "),
            Vec::<String>::new()
        );
        assert_eq!(
            verbs("INSERT INTO t VALUES ('a;b', E'\\';', \"x;\"); DELETE FROM t"),
            ["insert", "delete"]
        );
        assert_eq!(
            verbs(
                "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN; RETURN 1; END $body$ LANGUAGE plpgsql; COMMIT"
            ),
            ["create", "commit"]
        );
        assert_eq!(verbs("DO $$ BEGIN COMMIT; END $$"), ["do"]);
        assert_eq!(
            verbs("SELECT $1, $2; UPDATE t SET x = $1"),
            ["select", "update"]
        );
        assert_eq!(verbs("SELECT U&'d;' , x'0;'"), ["select"]);
        assert_eq!(
            verbs(
                "WITH a AS (SELECT 1), b AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM b"
            ),
            ["insert"]
        );
        assert_eq!(
            verbs("WITH a AS (INSERT INTO t VALUES (1)) SELECT 1"),
            ["select"]
        );
        assert_eq!(verbs("SELECT 'unterminated; x"), ["select"]);
    }

    #[test]
    fn odd_texts_do_not_trip_it() {
        let texts = [
            "$",
            "$$",
            "$a",
            "$1a$",
            "E'",
            "e'\\",
            "'\\",
            "/*",
            "/* /* */",
            "--",
            "é$é$x",
            "U&",
            "u&\"",
            "x'",
            "$é$ ; $é$;",
            "\"",
            "()))((",
            ";",
            "ÿ",
            "BEGIN/**/",
            "B'",
        ];
        for t in texts {
            let _ = statements(t);
            for cut in 0..t.len() {
                if let Some(prefix) = t.get(..cut) {
                    let _ = statements(prefix);
                }
            }
        }
        assert_eq!(statements("BEGIN/**/;COMMIT")[0].effect(), Effect::Begin);
    }

    #[test]
    fn transaction_control_is_recognised() {
        let effects =
            |sql: &str| -> Vec<Effect> { statements(sql).iter().map(Statement::effect).collect() };
        use Effect::*;
        assert_eq!(
            effects(
                "begin; START TRANSACTION ISOLATION LEVEL SERIALIZABLE; commit; END; rollback; ABORT"
            ),
            [Begin, Begin, End, End, End, End]
        );
        assert_eq!(
            effects(
                "ROLLBACK TO SAVEPOINT a; ROLLBACK WORK TO a; COMMIT AND CHAIN; COMMIT PREPARED 'x'; ROLLBACK AND NO CHAIN"
            ),
            [Nothing, Nothing, Nothing, Nothing, End]
        );
        assert_eq!(
            effects("PREPARE TRANSACTION 'x'; SAVEPOINT a; SELECT 1"),
            [End, Nothing, Nothing]
        );
        assert_eq!(effects("/* begin */ select 'begin'"), [Nothing]);
    }
}
