//! The connection every module shares the making of: settings, credentials,
//! one `async_nats::Client` per `connect`, and errors that name NATS and
//! never carry a secret.

use anyhow::{Context, Result};
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event};
use qwasr_kernel::BackendConfig;
use qwasr_kernel::service::{Service, Settings};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The service, as messages and variables name it.
pub(crate) const NATS: Service = Service {
    name: "NATS",
    prefix: "NATS",
    default_url: "nats://127.0.0.1:4222",
};

/// Longest accepted `prefix`: bucket names must stay well inside the
/// server's limits on stream names (they become directory names).
const MAX_PREFIX: usize = 64;

/// How the client authenticates, besides what the URL carries.
#[derive(Default)]
struct Auth {
    /// Contents of the `.creds` file (read once, before the attempts).
    creds: Option<String>,
    token: Option<String>,
    user: Option<(String, String)>,
}

/// A connected client and what every operation needs with it.
#[derive(Clone)]
pub(crate) struct Nats {
    pub(crate) client: Client,
    pub(crate) settings: Arc<Settings>,
    /// Values to hide from any text shown (token, password).
    secrets: Arc<Vec<String>>,
}

/// The manifest keys of the keyvalue and blobstore backends.
pub(crate) const STORE_OPTIONS: &[&str] = &[
    "url",
    "pool-size",
    "timeout",
    "retries",
    "prefix",
    "creds",
    "token",
    "user",
    "password",
];

/// The manifest keys of the messaging backend (no names to prefix).
pub(crate) const MESSAGING_OPTIONS: &[&str] = &[
    "url",
    "pool-size",
    "timeout",
    "retries",
    "creds",
    "token",
    "user",
    "password",
];

impl Nats {
    /// Reads the settings of `cfg` (whose manifest keys must be among
    /// `accepted`) and connects, retrying at start-up as the settings say.
    /// The client reconnects by itself afterwards.
    pub(crate) async fn connect(cfg: &BackendConfig, accepted: &[&str]) -> Result<Nats> {
        if let Some((key, _)) = cfg
            .options
            .iter()
            .find(|(k, _)| !accepted.contains(&k.as_str()))
        {
            anyhow::bail!(
                "the nats {} backend has no option `{key}`; it accepts {}",
                cfg.interface,
                accepted.join(", ")
            );
        }
        let settings = Settings::new(cfg, NATS)?;
        let (auth, secrets) = auth(cfg, &settings.url)?;
        let name = format!("qwasr {}", cfg.app.name);
        let shown = settings.shown_url();
        // `a,b,c`: servers to fail over between.
        let servers: Vec<String> = settings
            .url
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let client = settings
            .connect(|| {
                let options = options(&settings, &auth, &name, &shown);
                let servers = servers.clone();
                async move {
                    let options = options?;
                    Ok(options.connect(servers).await?)
                }
            })
            .await
            .map_err(|e| anyhow::anyhow!("{}", hide(&secrets, &e.to_string())))?;
        Ok(Nats {
            client,
            settings: Arc::new(settings),
            secrets: Arc::new(secrets),
        })
    }

    /// The bound on one operation.
    pub(crate) fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// `e` as the guest and the log see it: what failed, NATS and its
    /// redacted URL, the cause without secrets.
    pub(crate) fn error(&self, what: &str, e: impl std::fmt::Display) -> anyhow::Error {
        let e = self.settings.error(what, e).to_string();
        anyhow::anyhow!("{}", hide(&self.secrets, &e))
    }

    /// Fails at once while the client is reconnecting: a publish made now
    /// would wait in the client's buffer and reach the server later, after
    /// the caller was told it failed.
    pub(crate) fn check_connected(&self, what: &str) -> Result<()> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            _ => Err(self.error(what, "not connected (the client is reconnecting)")),
        }
    }

    /// Runs `op` within the timeout; an error or the timeout becomes
    /// [`Nats::error`]`(what, ..)`.
    pub(crate) async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, E>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout(), op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(_) => Err(self.no_answer(what)),
        }
    }

    /// Runs `op`, which reports its own errors, within the timeout: a bound
    /// on operations made of several requests.
    pub(crate) async fn within<T>(
        &self,
        what: impl FnOnce() -> String,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout(), op).await {
            Ok(r) => r,
            Err(_) => Err(self.no_answer(&what())),
        }
    }

    /// The error of an operation that got no answer in time.
    pub(crate) fn no_answer(&self, what: &str) -> anyhow::Error {
        self.error(what, format!("no answer within {:?}", self.timeout()))
    }

    /// Checks that JetStream is enabled for this account, so that a server
    /// started without `-js` stops the runtime at start-up, not at the first
    /// write.
    pub(crate) async fn check_jetstream(&self, js: &async_nats::jetstream::Context) -> Result<()> {
        self.bounded("JetStream is not available", js.query_account())
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e:#}; start nats-server with JetStream enabled (`-js`)"))
    }

    /// A JetStream context whose every request is bounded by the timeout.
    pub(crate) fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::ContextBuilder::new()
            .timeout(self.timeout())
            .build(self.client.clone())
    }
}

/// `text` with every secret replaced.
fn hide(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// The credentials in a URL's user info: `user:password@` or `token@`
/// (the client does not read them from the URL itself).
fn url_auth(url: &str) -> Auth {
    let mut auth = Auth::default();
    let userinfo = url
        .split(',')
        .filter_map(|u| u.trim().split_once("://").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(['/', '?', '#']).next())
        .find_map(|authority| authority.rsplit_once('@').map(|(info, _)| info));
    match userinfo.map(|i| i.split_once(':').ok_or(i)) {
        Some(Ok((user, password))) => auth.user = Some((user.to_string(), password.to_string())),
        Some(Err(token)) if !token.is_empty() => auth.token = Some(token.to_string()),
        _ => {}
    }
    auth
}

/// Credentials from `cfg` (over those in `url`) and the values never to show.
fn auth(cfg: &BackendConfig, url: &str) -> Result<(Auth, Vec<String>)> {
    let mut auth = url_auth(url);
    let mut secrets: Vec<String> = auth
        .token
        .iter()
        .cloned()
        .chain(auth.user.iter().map(|(_, p)| p.clone()))
        .collect();
    if let Some(path) = cfg.get("creds", "NATS_CREDS")? {
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read the NATS credentials file `{path}` (NATS_CREDS)")
        })?;
        auth.creds = Some(text);
    }
    if let Some(token) = cfg.get("token", "NATS_TOKEN")? {
        secrets.push(token.clone());
        auth.token = Some(token);
    }
    let user = cfg.get("user", "NATS_USER")?;
    let password = cfg.get("password", "NATS_PASSWORD")?;
    match (user, password) {
        (Some(user), Some(password)) => {
            secrets.push(password.clone());
            auth.user = Some((user, password));
        }
        (Some(_), None) => anyhow::bail!("NATS_USER is set but NATS_PASSWORD is not; set both"),
        (None, Some(_)) => anyhow::bail!("NATS_PASSWORD is set but NATS_USER is not; set both"),
        (None, None) => {}
    }
    Ok((auth, secrets))
}

/// Client options for one attempt (options hold callbacks: not `Clone`).
fn options(settings: &Settings, auth: &Auth, name: &str, shown: &str) -> Result<ConnectOptions> {
    let mut o = ConnectOptions::new();
    if let Some(creds) = &auth.creds {
        o = o
            .credentials(creds)
            .context("the NATS credentials file (NATS_CREDS) is not valid")?;
    }
    if let Some(token) = &auth.token {
        o = o.token(token.clone());
    }
    if let Some((user, password)) = &auth.user {
        o = o.user_and_password(user.clone(), password.clone());
    }
    let shown = shown.to_string();
    Ok(o.name(name)
        .connection_timeout(settings.timeout)
        .request_timeout(Some(settings.timeout))
        // Notice a server that vanished without closing the socket.
        .ping_interval(Duration::from_secs(20))
        // Retry soon after an outage: 0 ms, then doubling from 100 ms to 2 s.
        .reconnect_delay_callback(|attempts| match attempts {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(100u64.saturating_mul(1 << (n - 2).min(5))).min(Duration::from_secs(2)),
        })
        .event_callback(move |event| {
            let shown = shown.clone();
            async move {
                match event {
                    Event::Disconnected => {
                        tracing::warn!("lost the connection to NATS at {shown}; reconnecting")
                    }
                    Event::Connected => tracing::info!("connected to NATS at {shown}"),
                    Event::SlowConsumer(sid) => tracing::warn!(
                        "NATS at {shown}: subscription {sid} is too slow, the client dropped messages"
                    ),
                    Event::ServerError(e) => tracing::warn!("NATS at {shown}: server error: {e}"),
                    other => tracing::debug!("NATS at {shown}: {other}"),
                }
            }
        }))
}

/// The name every bucket and object store starts with: `prefix` (env
/// `NATS_PREFIX`), else `qwasr_<app name>` with what a bucket name cannot
/// hold replaced by `_`.
pub(crate) fn prefix(cfg: &BackendConfig) -> Result<String> {
    match cfg.get("prefix", "NATS_PREFIX")? {
        Some(p) => {
            let valid = !p.is_empty()
                && p.len() <= MAX_PREFIX
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                anyhow::bail!(
                    "the NATS prefix `{p}` (NATS_PREFIX or `prefix` in [backends]) must be 1 to \
                     {MAX_PREFIX} letters, digits, `_` or `-`"
                );
            }
            Ok(p)
        }
        None => {
            let app: String = cfg
                .app
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(MAX_PREFIX - 6)
                .collect();
            Ok(format!("qwasr_{app}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_url() {
        let a = url_auth("nats://u:p@h:4222");
        assert_eq!(a.user, Some(("u".into(), "p".into())));
        let a = url_auth("nats://h1:4222, nats://tok@h2:4222/");
        assert_eq!((a.token.as_deref(), a.user), (Some("tok"), None));
        let a = url_auth("nats://h:4222");
        assert_eq!((a.token, a.user), (None, None));
    }
}
