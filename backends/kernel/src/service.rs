//! What every backend for a network service (Redis, NATS, PostgreSQL, …)
//! needs the same way: its settings from the manifest and the environment,
//! URLs with their secrets redacted, and bounded retries at start-up.
//!
//! Settings come from the manifest's `[backends]` table form
//! (`sql = { backend = "postgres", pool-size = 16 }`) and are overridden by
//! environment variables named after the service (`POSTGRES_POOL_SIZE`):
//!
//! | manifest key | variable | meaning | default |
//! |---|---|---|---|
//! | `url` | `<PREFIX>_URL` | where the service is | the service's localhost URL |
//! | `pool-size` | `<PREFIX>_POOL_SIZE` | connections kept open | 16 |
//! | `timeout` | `<PREFIX>_TIMEOUT` | bound on one operation (`"5s"`, `"500ms"`) | 10s |
//! | `retries` | `<PREFIX>_RETRIES` | connection attempts at start-up before giving up | 5 |

use crate::BackendConfig;
use anyhow::{Context, Result, bail};
use std::future::Future;
use std::time::{Duration, Instant};

/// A network service a backend connects to.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Its name in messages (`Redis`).
    pub name: &'static str,
    /// Prefix of its environment variables (`REDIS` for `REDIS_URL`).
    pub prefix: &'static str,
    /// URL used when neither the environment nor the manifest gives one.
    pub default_url: &'static str,
}

/// Settings of one backend's connection to its service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service.
    pub service: Service,
    /// Where it is, secrets included: never log this, log [`Settings::shown_url`].
    pub url: String,
    /// Connections to keep open.
    pub pool_size: usize,
    /// Bound on one operation (a command, a query, a connection attempt).
    pub timeout: Duration,
    /// Connection attempts at start-up before the runtime gives up.
    pub retries: u32,
}

/// The manifest keys every service backend accepts (see the module docs).
pub const OPTIONS: &[&str] = &["url", "pool-size", "timeout", "retries"];

impl Settings {
    /// Reads `service`'s settings from `cfg` (environment over manifest
    /// over defaults). A value that does not parse is an error naming the
    /// variable or key and what it should look like.
    pub fn new(cfg: &BackendConfig, service: Service) -> Result<Settings> {
        let var = |key: &str| format!("{}_{}", service.prefix, key);
        let get = |key: &str, suffix: &str| -> Result<Option<(String, String)>> {
            let env = var(suffix);
            let from_env = std::env::var_os(&env).is_some();
            Ok(cfg.get(key, &env)?.map(|v| {
                let source = if from_env {
                    env
                } else {
                    format!("`{key}` in [backends] {}", cfg.interface)
                };
                (v, source)
            }))
        };
        let url = match get("url", "URL")? {
            Some((url, _)) => url,
            None => service.default_url.to_string(),
        };
        let pool_size = match get("pool-size", "POOL_SIZE")? {
            Some((v, source)) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    bail!("{source} is `{v}`; it must be a whole number of connections, at least 1")
                }
            },
            None => 16,
        };
        let timeout = match get("timeout", "TIMEOUT")? {
            Some((v, source)) => match parse_duration(&v) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => bail!("{source} is `{v}`; a timeout must be more than 0"),
                Err(e) => return Err(e.context(format!("{source} is not a duration"))),
            },
            None => Duration::from_secs(10),
        };
        let retries = match get("retries", "RETRIES")? {
            Some((v, source)) => v.trim().parse::<u32>().map_err(|_| {
                anyhow::anyhow!("{source} is `{v}`; it must be a whole number of attempts")
            })?,
            None => 5,
        };
        Ok(Settings {
            service,
            url,
            pool_size,
            timeout,
            retries,
        })
    }

    /// The URL with any password or token replaced (see [`redact`]).
    pub fn shown_url(&self) -> String {
        redact(&self.url)
    }

    /// Connects with `attempt`, retrying with exponential backoff (100 ms,
    /// doubling, at most 2 s apart) until it succeeds or [`Settings::retries`]
    /// attempts have failed; each attempt is bounded by the timeout. The
    /// final error names the service, the redacted URL, the variable to set
    /// and the last cause (whose text is redacted too: client libraries
    /// often repeat the URL they were given).
    pub async fn connect<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let attempts = self.retries.max(1);
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for n in 1..=attempts {
            let result = match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("no answer within {:?}", self.timeout)),
            };
            match result {
                Ok(client) => {
                    tracing::info!("connected to {} at {}", self.service.name, self.shown_url());
                    return Ok(client);
                }
                Err(e) => {
                    let cause = self.redact_text(&format!("{e:#}"));
                    if n < attempts {
                        tracing::warn!(
                            "cannot connect to {} at {} (attempt {n} of {attempts}): {cause}; retrying in {delay:?}",
                            self.service.name,
                            self.shown_url()
                        );
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    last = Some(cause);
                }
            }
        }
        bail!(
            "cannot connect to {} at {} after {attempts} attempts over {:.1} s: {}; \
             is the server running? Set {}_URL (or `url` in [backends]) to its address",
            self.service.name,
            self.shown_url(),
            started.elapsed().as_secs_f64(),
            last.unwrap_or_default(),
            self.service.prefix,
        )
    }

    /// `text` with this service's URL, and the secrets in it, hidden.
    pub fn redact_text(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.shown_url());
        for secret in secrets(&self.url) {
            if secret.len() >= 3 {
                out = out.replace(&secret, "***");
            }
        }
        out
    }

    /// An error from the service as the guest and the log see it: with the
    /// service's name, and no secret.
    pub fn error(&self, what: &str, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{what}: {} at {}: {}",
            self.service.name,
            self.shown_url(),
            self.redact_text(&e.to_string())
        )
    }
}

/// The password of a URL's user info and the values of query parameters
/// that carry secrets (`password`, `token`, `secret`, …).
fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            match userinfo.split_once(':') {
                Some((_, password)) => out.push(password.to_string()),
                // `nats://TOKEN@host`: a user name alone is a token.
                None if url.starts_with("nats") => out.push(userinfo.to_string()),
                None => {}
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                let k = k.to_ascii_lowercase();
                if ["password", "pass", "token", "secret", "key", "sig"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    out.push(v.to_string());
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// `url` with the password in its user info (and a bare NATS token) and any
/// secret-bearing query value replaced by `***`:
/// `redis://user:hunter2@h:6379/0` → `redis://user:***@h:6379/0`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Parses a duration written `500ms`, `30s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a duration; write e.g. \"30s\" or \"500ms\""))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        u => bail!("unknown duration unit `{u}` in `{s}`; use ms, s or m"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact("redis://user:hunter2@h:6379/0"),
            "redis://user:***@h:6379/0"
        );
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact("nats://s3cr3t@h:4222"), "nats://***@h:4222");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=x1y2"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[tokio::test]
    async fn connect_gives_up_naming_the_service_without_the_secret() {
        let app: &'static crate::App =
            Box::leak(Box::new(crate::App::new("t", crate::Code::Wasm(&[]))));
        let mut cfg = crate::testing::backend_config(app, "keyvalue", "redis");
        cfg.options = vec![
            ("url".into(), "redis://u:topsecret@127.0.0.1:1".into()),
            ("retries".into(), "2".into()),
        ];
        let settings = Settings::new(
            &cfg,
            Service {
                name: "Redis",
                prefix: "QWASR_TEST_NO_SUCH",
                default_url: "redis://127.0.0.1:6379",
            },
        )
        .unwrap();
        let mut tries = 0;
        let err = settings
            .connect(|| {
                tries += 1;
                async {
                    Err::<(), _>(anyhow::anyhow!(
                        "refused by redis://u:topsecret@127.0.0.1:1"
                    ))
                }
            })
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(tries, 2);
        assert!(!err.contains("topsecret"), "{err}");
        assert!(
            err.starts_with(
                "cannot connect to Redis at redis://u:***@127.0.0.1:1 after 2 attempts"
            ),
            "{err}"
        );
        assert!(err.contains("QWASR_TEST_NO_SUCH_URL"), "{err}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let app: &'static crate::App =
            Box::leak(Box::new(crate::App::new("t", crate::Code::Wasm(&[]))));
        let mut cfg = crate::testing::backend_config(app, "sql", "postgres");
        cfg.options = vec![("pool-size".into(), "many".into())];
        let service = Service {
            name: "PostgreSQL",
            prefix: "QWASR_TEST_NO_SUCH",
            default_url: "postgres://127.0.0.1:5432/postgres",
        };
        let err = Settings::new(&cfg, service).unwrap_err().to_string();
        assert_eq!(
            err,
            "`pool-size` in [backends] sql is `many`; it must be a whole number of connections, at least 1"
        );
        cfg.options = vec![("timeout".into(), "soon".into())];
        let err = format!("{:#}", Settings::new(&cfg, service).unwrap_err());
        assert!(
            err.starts_with("`timeout` in [backends] sql is not a duration"),
            "{err}"
        );
    }
}
