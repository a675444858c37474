//! `qwasr.toml`, the app's manifest. Every key is optional; unknown keys are
//! errors that point at `file:line:col` and suggest the nearest valid key.

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_edit::{Document, Item, TableLike, Value};

/// A position in the manifest, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loc {
    /// The manifest's path as the user gave it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A value and where the manifest says it.
#[derive(Debug, Clone, Serialize)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub loc: Loc,
}

/// A `[backends]` entry: `keyvalue = "redis"` or `sql = { backend = "postgres", pool-size = 16 }`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendChoice {
    /// Interface short name (the key).
    pub interface: Located<String>,
    /// Backend name.
    pub backend: Located<String>,
    /// The other keys of the table form, as text.
    pub options: Vec<(String, String)>,
}

/// An allow-list of names the guest may open through one interface.
#[derive(Debug, Clone, Serialize)]
pub struct NameGrant {
    /// Interface short name (the section: `keyvalue`).
    pub interface: String,
    /// The key (`buckets`).
    pub key: &'static str,
    /// The names.
    pub names: Vec<String>,
    /// Where the list is written.
    pub loc: Loc,
}

/// Sections holding an allow-list of names, and the key of each.
pub const NAME_SECTIONS: &[(&str, &str)] = &[
    ("keyvalue", "buckets"),
    ("blobstore", "containers"),
    ("sql", "databases"),
];

/// The parsed manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifest {
    /// The manifest file, if there is one.
    pub path: Option<PathBuf>,
    /// `[app] name`.
    pub name: Option<Located<String>>,
    /// `[app] component`, resolved against the manifest's directory.
    pub component: Option<PathBuf>,
    /// `[backends]`.
    pub backends: Vec<BackendChoice>,
    /// `[config]`, values as text.
    pub config: Vec<(String, String)>,
    /// `[http] addr`.
    pub http_addr: Option<String>,
    /// `[http] outgoing`: `host:port` entries.
    pub outgoing: Vec<String>,
    /// `[app] data-dir`, resolved against the manifest's directory.
    pub data_dir: Option<PathBuf>,
    /// `[messaging] topics`.
    pub topics: Vec<String>,
    /// `[messaging] max-message-size`, bytes.
    pub max_message_size: Option<u64>,
    /// Allow-lists of names per interface: `[keyvalue] buckets`,
    /// `[blobstore] containers`, `[sql] databases`.
    pub names: Vec<NameGrant>,
    /// `[limits] memory`, bytes.
    pub memory: Option<u64>,
    /// `[limits] timeout`.
    pub timeout: Option<Duration>,
    /// `[limits] instances`.
    pub instances: Option<u32>,
    /// `[limits] memory-checks`; `None` lets the planner choose.
    #[serde(skip)]
    pub memory_checks: Option<qwasr_kernel::MemoryChecks>,
    /// `[grants] env`.
    pub grant_env: Vec<String>,
    /// `[grants] dirs`: guest path → host path (absolute).
    pub grant_dirs: Vec<(String, PathBuf)>,
}

const SECTIONS: &[&str] = &[
    "app",
    "backends",
    "config",
    "http",
    "messaging",
    "limits",
    "grants",
    "keyvalue",
    "blobstore",
    "sql",
];

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read manifest `{}`: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` names it in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        let file = path.display().to_string();
        let at = |span: Option<std::ops::Range<usize>>| {
            loc(&file, text, span.map(|s| s.start).unwrap_or(0))
        };
        let doc = Document::parse(text.to_string()).map_err(|e| {
            let l = at(e.span());
            anyhow!("{l}: invalid TOML: {}", e.message().trim_end())
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let p = Parser { file: &file, text };
        let mut m = Manifest {
            path: Some(path.to_path_buf()),
            ..Manifest::default()
        };
        let root = doc.as_table();
        p.known_keys(root, SECTIONS, "the manifest")?;
        if let Some(app) = p.section(root, "app")? {
            p.known_keys(app, &["name", "component", "data-dir"], "[app]")?;
            if let Some((v, l)) = p.string(app, "name")? {
                if !valid_name(&v) {
                    bail!(
                        "{l}: app name `{v}` is not usable as a binary name; use lower-case letters, digits, `-` and `_`, starting with a letter"
                    );
                }
                m.name = Some(Located { value: v, loc: l });
            }
            m.component = p.string(app, "component")?.map(|(v, _)| dir.join(v));
            if let Some((v, l)) = p.string(app, "data-dir")? {
                // Absolute, so the runtime finds it from any working directory.
                let d = std::path::absolute(dir.join(&v))
                    .map_err(|e| anyhow!("{l}: [app] data-dir `{v}`: {e}"))?;
                m.data_dir = Some(d);
            }
        }
        if let Some(backends) = p.section(root, "backends")? {
            for (key, item) in backends.iter() {
                let (k, _) = backends.get_key_value(key).expect("key from iter");
                let interface = Located {
                    value: key.to_string(),
                    loc: at(k.span()),
                };
                let choice = match item {
                    Item::Value(Value::String(s)) => BackendChoice {
                        interface,
                        backend: Located {
                            value: s.value().clone(),
                            loc: at(s.span()),
                        },
                        options: Vec::new(),
                    },
                    other => {
                        let Some(t) = other.as_table_like() else {
                            bail!(
                                "{}: [backends] {key} must be a backend name (`{key} = \"redis\"`) or a table (`{key} = {{ backend = \"redis\", ... }}`)",
                                interface.loc
                            );
                        };
                        let Some((backend, bloc)) = p.string(t, "backend")? else {
                            bail!(
                                "{}: [backends] {key} needs `backend = \"<name>\"`",
                                interface.loc
                            );
                        };
                        let mut options = Vec::new();
                        for (k, v) in t.iter().filter(|(k, _)| *k != "backend") {
                            options.push((k.to_string(), p.scalar(t, k, v)?));
                        }
                        BackendChoice {
                            interface,
                            backend: Located {
                                value: backend,
                                loc: bloc,
                            },
                            options,
                        }
                    }
                };
                m.backends.push(choice);
            }
        }
        if let Some(config) = p.section(root, "config")? {
            for (k, v) in config.iter() {
                m.config.push((k.to_string(), p.scalar(config, k, v)?));
            }
        }
        if let Some(http) = p.section(root, "http")? {
            p.known_keys(http, &["addr", "outgoing"], "[http]")?;
            if let Some((addr, l)) = p.string(http, "addr")? {
                if addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
                    bail!(
                        "{l}: [http] addr `{addr}` is not a host:port address (e.g. \"0.0.0.0:8080\")"
                    );
                }
                m.http_addr = Some(addr);
            }
            for (host, l) in p.strings(http, "outgoing")? {
                match host.rsplit_once(':') {
                    Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok() => {
                        m.outgoing.push(host.to_ascii_lowercase())
                    }
                    _ => bail!(
                        "{l}: [http] outgoing entry `{host}` must be host:port (e.g. \"api.example.com:443\")"
                    ),
                }
            }
        }
        if let Some(messaging) = p.section(root, "messaging")? {
            p.known_keys(messaging, &["topics", "max-message-size"], "[messaging]")?;
            for (t, l) in p.strings(messaging, "topics")? {
                if let Err(e) = qwasr_kernel::check_topic_pattern(&t) {
                    bail!("{l}: [messaging] topics: {e}");
                }
                m.topics.push(t);
            }
            if let Some((v, l)) = p.string(messaging, "max-message-size")? {
                m.max_message_size = Some(
                    parse_size(&v)
                        .map_err(|e| anyhow!("{l}: [messaging] max-message-size: {e}"))?,
                );
            }
        }
        for (section, key) in NAME_SECTIONS {
            if let Some(t) = p.section(root, section)? {
                p.known_keys(t, &[key], &format!("[{section}]"))?;
                if t.get(key).is_some() {
                    let names = p.strings(t, key)?;
                    m.names.push(NameGrant {
                        interface: section.to_string(),
                        key,
                        names: names.into_iter().map(|(n, _)| n).collect(),
                        loc: p.key_loc(t, key),
                    });
                }
            }
        }
        if let Some(limits) = p.section(root, "limits")? {
            p.known_keys(
                limits,
                &["memory", "timeout", "instances", "memory-checks"],
                "[limits]",
            )?;
            let checks = p.string(limits, "memory-checks")?;
            if let Some((v, l)) = &checks {
                let all = qwasr_kernel::MemoryChecks::ALL;
                m.memory_checks = all.into_iter().find(|c| c.as_str() == v);
                if m.memory_checks.is_none() && v != "auto" {
                    bail!(
                        "{l}: [limits] memory-checks is `{v}`; use \"guard-pages\" (fastest guest \
                         code), \"explicit\" (cheapest per request for small guests) or \"auto\" \
                         (qwasr-gen decides; the default)"
                    );
                }
            }
            if let Some((v, l)) = p.string(limits, "memory")? {
                m.memory = Some(parse_size(&v).map_err(|e| anyhow!("{l}: [limits] memory: {e}"))?);
            }
            if let Some((v, l)) = p.string(limits, "timeout")? {
                m.timeout =
                    Some(parse_duration(&v).map_err(|e| anyhow!("{l}: [limits] timeout: {e}"))?);
            }
            if let Some(item) = limits.get("instances") {
                let l = at(item.span());
                let n = item
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        anyhow!("{l}: [limits] instances must be a positive whole number")
                    })?;
                m.instances = Some(n);
            }
            let max = crate::plan::GUARD_PAGES_MAX_INSTANCES;
            if let (Some((_, l)), Some(n)) = (&checks, m.instances)
                && m.memory_checks == Some(qwasr_kernel::MemoryChecks::GuardPages)
                && n > max
            {
                bail!(
                    "{l}: [limits] memory-checks = \"guard-pages\" reserves ~8 GiB of address \
                     space per instance, too much for instances = {n}; lower [limits] instances \
                     to {max} or use \"explicit\""
                );
            }
        }
        if let Some(grants) = p.section(root, "grants")? {
            p.known_keys(grants, &["env", "dirs"], "[grants]")?;
            m.grant_env = p
                .strings(grants, "env")?
                .into_iter()
                .map(|(t, _)| t)
                .collect();
            if let Some(item) = grants.get("dirs") {
                let Some(dirs) = item.as_table_like() else {
                    bail!(
                        "{}: [grants] dirs must be a table of guest path = host path",
                        at(item.span())
                    );
                };
                for (guest, host) in dirs.iter() {
                    let host = p.scalar(dirs, guest, host)?;
                    // Absolute, so the runtime finds it from any working directory.
                    let host = std::path::absolute(dir.join(&host)).map_err(|e| {
                        anyhow!("{}: [grants] dirs `{host}`: {e}", p.key_loc(dirs, guest))
                    })?;
                    m.grant_dirs.push((guest.to_string(), host));
                }
            }
        }
        Ok(m)
    }
}

struct Parser<'a> {
    file: &'a str,
    text: &'a str,
}

impl Parser<'_> {
    fn at(&self, span: Option<std::ops::Range<usize>>) -> Loc {
        loc(self.file, self.text, span.map(|s| s.start).unwrap_or(0))
    }

    fn key_loc(&self, t: &dyn TableLike, key: &str) -> Loc {
        self.at(t.get_key_value(key).and_then(|(k, _)| k.span()))
    }

    fn known_keys(&self, t: &dyn TableLike, known: &[&str], what: &str) -> Result<()> {
        for (key, _) in t.iter() {
            if !known.contains(&key) {
                let l = self.key_loc(t, key);
                let hint = match nearest(key, known) {
                    Some(k) => format!("did you mean `{k}`?"),
                    None => format!("valid keys: {}", known.join(", ")),
                };
                bail!("{l}: unknown key `{key}` in {what}; {hint}");
            }
        }
        Ok(())
    }

    fn section<'t>(
        &self,
        root: &'t toml_edit::Table,
        name: &str,
    ) -> Result<Option<&'t dyn TableLike>> {
        match root.get(name) {
            None => Ok(None),
            Some(item) => match item.as_table_like() {
                Some(t) => Ok(Some(t)),
                None => bail!(
                    "{}: `{name}` must be a table ([{name}])",
                    self.key_loc(root, name)
                ),
            },
        }
    }

    fn string(&self, t: &dyn TableLike, key: &str) -> Result<Option<(String, Loc)>> {
        match t.get(key) {
            None => Ok(None),
            Some(item) => match item.as_str() {
                Some(s) => Ok(Some((s.to_string(), self.at(item.span())))),
                None => bail!("{}: `{key}` must be a string", self.key_loc(t, key)),
            },
        }
    }

    fn strings(&self, t: &dyn TableLike, key: &str) -> Result<Vec<(String, Loc)>> {
        let Some(item) = t.get(key) else {
            return Ok(Vec::new());
        };
        let err = || {
            anyhow!(
                "{}: `{key}` must be an array of strings",
                self.key_loc(t, key)
            )
        };
        let array = item.as_array().ok_or_else(err)?;
        array
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| (s.to_string(), self.at(v.span())))
                    .ok_or_else(err)
            })
            .collect()
    }

    fn scalar(&self, t: &dyn TableLike, key: &str, item: &Item) -> Result<String> {
        match item.as_value() {
            Some(Value::String(s)) => Ok(s.value().clone()),
            Some(Value::Integer(i)) => Ok(i.value().to_string()),
            Some(Value::Float(f)) => Ok(f.value().to_string()),
            Some(Value::Boolean(b)) => Ok(b.value().to_string()),
            _ => bail!(
                "{}: `{key}` must be a string, number or boolean",
                self.key_loc(t, key)
            ),
        }
    }
}

fn loc(file: &str, text: &str, offset: usize) -> Loc {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Loc {
        file: file.to_string(),
        line,
        col,
    }
}

/// Whether `name` can be a crate and binary name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// `64MiB`, `512KiB`, `1GiB`, `1000000` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a size; write e.g. \"64MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => bail!("unknown size unit `{u}` in `{s}`; use B, KiB, MiB or GiB"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("`{s}` is too large"))
}

pub use qwasr_kernel::service::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(Path::new("qwasr.toml"), text)
    }

    #[test]
    fn a_full_manifest_parses() {
        let m = parse(
            r#"
[app]
name = "counter"
component = "app.wasm"

[backends]
keyvalue = "embedded"
sql = { backend = "postgres", pool-size = 16 }

[config]
greeting = "hello"
retries = 3

[http]
addr = "127.0.0.1:9000"
outgoing = ["api.example.com:443"]

[limits]
memory = "64MiB"
timeout = "500ms"
instances = 10

[grants]
env = ["TZ"]
dirs = { "/data" = "data" }
"#,
        )
        .unwrap();
        assert_eq!(m.name.unwrap().value, "counter");
        assert_eq!(m.backends.len(), 2);
        assert_eq!(
            m.backends[1].options,
            vec![("pool-size".into(), "16".into())]
        );
        assert_eq!(m.config[1], ("retries".into(), "3".into()));
        assert_eq!(m.memory, Some(64 << 20));
        assert_eq!(m.timeout, Some(Duration::from_millis(500)));
        assert_eq!(m.grant_dirs[0].0, "/data");
    }

    #[test]
    fn typos_point_at_the_key_and_suggest_a_fix() {
        let e = parse("[limits]\nmemroy = \"1MiB\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "qwasr.toml:2:1: unknown key `memroy` in [limits]; did you mean `memory`?"
        );
        let e = parse("[backend]\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "qwasr.toml:1:2: unknown key `backend` in the manifest; did you mean `backends`?"
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse("[app]\nname = \"x\nother = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("qwasr.toml:2:"), "{e}");
        assert!(e.contains("invalid TOML"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }
}
