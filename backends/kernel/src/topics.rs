//! Messaging topics and subscription patterns, NATS-style: tokens separated
//! by `.`; in a pattern `*` matches exactly one token and `>` one or more
//! trailing tokens. Shared by the generator (to check `[messaging] topics`
//! at plan time) and every messaging backend.

pub(crate) const PATTERN_RULE: &str = "a pattern is tokens separated by `.`, where `*` matches exactly one \
     token and `>`, only as the last token, one or more";
pub(crate) const TOPIC_RULE: &str =
    "a topic is non-empty tokens separated by `.`, without wildcards";

/// Checks a subscription pattern (`orders`, `audit.*`, `events.>`); the
/// error names the pattern, what is wrong and the rule.
pub fn check_topic_pattern(pattern: &str) -> Result<(), String> {
    check(pattern, true)
        .map_err(|why| format!("invalid topic pattern `{pattern}`: {why}; {PATTERN_RULE}"))
}

/// Checks a concrete topic, as `send` and `request` take it: no wildcards.
pub fn check_topic(topic: &str) -> Result<(), String> {
    check(topic, false).map_err(|why| format!("invalid topic `{topic}`: {why}; {TOPIC_RULE}"))
}

fn check(s: &str, pattern: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    let count = s.split('.').count();
    for (i, token) in s.split('.').enumerate() {
        let n = i + 1;
        if token.is_empty() {
            return Err(format!("token {n} is empty"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("token {n} contains whitespace"));
        }
        if !token.contains(['*', '>']) {
            continue;
        }
        if !pattern {
            return Err(
                "wildcards (`*`, `>`) are for subscriptions in [messaging] topics, not for sending"
                    .into(),
            );
        }
        match token {
            "*" => {}
            ">" if n == count => {}
            ">" => return Err("`>` must be the last token".into()),
            _ => return Err(format!("token {n} (`{token}`) mixes a wildcard with text")),
        }
    }
    Ok(())
}

/// Whether the concrete `topic` matches `pattern` (both already checked).
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_topics_are_checked() {
        for ok in [
            "orders",
            "orders.created",
            "audit.*",
            "events.>",
            "*",
            ">",
            "a.*.c",
            "_INBOX.1",
        ] {
            assert_eq!(check_topic_pattern(ok), Ok(()), "{ok}");
        }
        for ok in ["orders", "orders.created", "a-b.c_d.1"] {
            assert_eq!(check_topic(ok), Ok(()), "{ok}");
        }
        let bad_patterns = [
            ("", "it is empty"),
            ("a..b", "token 2 is empty"),
            (".a", "token 1 is empty"),
            ("a.", "token 2 is empty"),
            ("a b", "token 1 contains whitespace"),
            ("events.>.x", "`>` must be the last token"),
            ("a.b*", "token 2 (`b*`) mixes a wildcard with text"),
            ("a.>b", "token 2 (`>b`) mixes a wildcard with text"),
        ];
        for (p, why) in bad_patterns {
            assert_eq!(
                check_topic_pattern(p),
                Err(format!(
                    "invalid topic pattern `{p}`: {why}; {PATTERN_RULE}"
                )),
            );
        }
        let wild =
            "wildcards (`*`, `>`) are for subscriptions in [messaging] topics, not for sending";
        let bad_topics = [
            ("", "it is empty"),
            ("a..b", "token 2 is empty"),
            ("a\tb", "token 1 contains whitespace"),
            ("audit.*", wild),
            ("events.>", wild),
            ("a*", wild),
        ];
        for (t, why) in bad_topics {
            assert_eq!(
                check_topic(t),
                Err(format!("invalid topic `{t}`: {why}; {TOPIC_RULE}")),
            );
        }
        assert_eq!(
            check_topic("a..b").unwrap_err(),
            "invalid topic `a..b`: token 2 is empty; \
             a topic is non-empty tokens separated by `.`, without wildcards"
        );
    }

    #[test]
    fn patterns_match_whole_tokens() {
        let table = [
            ("orders", "orders", true),
            ("orders", "orders.x", false),
            ("orders", "order", false),
            ("orders.x", "orders", false),
            ("audit.*", "audit.login", true),
            ("audit.*", "audit", false),
            ("audit.*", "audit.a.b", false),
            ("*.created", "orders.created", true),
            ("*", "orders", true),
            ("*", "orders.x", false),
            ("events.>", "events.a", true),
            ("events.>", "events.a.b", true),
            ("events.>", "events", false),
            ("events.>", "eventsx.a", false),
            (">", "anything.at.all", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
        ];
        for (pattern, topic, expected) in table {
            assert_eq!(
                topic_matches(pattern, topic),
                expected,
                "{pattern} ~ {topic}"
            );
        }
    }
}
