//! Configuration: built-in defaults, then a TOML file, then environment
//! variables `PUSHGATE_<SECTION>__<KEY>`; secrets may be given as files.
//! Each struct's doc comments are the reference for its keys.
//!
//! The environment layer is written here rather than taken from the `config`
//! or `figment` crates because `[[apps]]` is an array of tables, and those
//! crates cannot address one element of it from the environment; here
//! `PUSHGATE_APPS__<app id or index>__<KEY>` can.

use ipnet::IpNet;
use pushgate_api::certificates::WatchedCertificate;
pub use pushgate_delivery::DeliveryConfig;
use pushgate_domain::{AppId, Environment};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "PUSHGATE_";
/// The id of the app that exists when the configuration names none.
pub const DEFAULT_APP_ID: &str = "SampleApp";
/// Shortest API key accepted in the configuration: a guessable key is no key.
const MIN_API_KEY_LEN: usize = 16;

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP(S) listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where durable state lives.
    #[serde(default)]
    pub store: StoreConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The delivery queue and its retries.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The admin console's own keys.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The IMKIT apps this instance serves; one `SampleApp` when none is given.
    pub apps: Vec<AppConfig>,
}

/// `[admin]`: keys that open every app, for the console at `/admin` (and
/// the API, naming the app in `IM-APP-ID`). An app's own key opens the
/// console too, for that app alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin keys, each at least 16 characters.
    #[serde(default)]
    pub api_keys: Vec<SecretString>,
    /// A file with more admin keys, one per line (`#` starts a comment).
    pub api_keys_file: Option<PathBuf>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; default `127.0.0.1:8080`. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the listener speaks HTTPS (HTTP/1.1 and HTTP/2).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request body, in bytes; default 1 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// On SIGTERM or Ctrl-C, how long requests and sends under way may take
    /// to finish (readiness fails at once, the listener closes, nothing new
    /// is claimed); default 20. What is left is due again at the next start.
    #[serde(default = "default_shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://pushgate.db` (the default, relative to the working directory),
    /// `sqlite:///absolute/path.db`, or `postgres://user@host:5432/database`
    /// (several pushgate processes may share one PostgreSQL database).
    #[serde(default = "default_store_url")]
    pub url: String,
}

/// Which backend a store URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `sqlite:`: the embedded file, one process.
    Sqlite,
    /// `postgres:` or `postgresql:`: a server several processes may share.
    Postgres,
}

impl StoreKind {
    /// The backend of `url`, if it names one pushgate has.
    pub fn of(url: &str) -> Option<Self> {
        match url.split(':').next() {
            Some("sqlite") => Some(Self::Sqlite),
            Some("postgres" | "postgresql") => Some(Self::Postgres),
            _ => None,
        }
    }
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `pushgate=debug,info`; `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[[apps]]`: one IMKIT app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The IMKIT `appID`.
    pub id: String,
    /// API keys accepted in `IM-API-KEY`, each at least 16 characters. When an
    /// app has none, pushgate generates one on first start and prints it once.
    #[serde(default)]
    pub api_keys: Vec<SecretString>,
    /// A file with more API keys, one per line (`#` starts a comment).
    pub api_keys_file: Option<PathBuf>,
    /// Origin verification of IMKIT's push callbacks.
    pub generic_push: Option<GenericPushConfig>,
    /// Apple Push Notification service.
    pub apns: Option<ApnsConfig>,
    /// Firebase Cloud Messaging HTTP v1.
    pub fcm: Option<FcmConfig>,
    /// Web Push (VAPID).
    pub webpush: Option<WebPushConfig>,
    /// The app's IMKIT chat server: client credentials on `/me/subscribe`.
    pub imkit: Option<ImkitConfig>,
    /// This app's own retry limits, overriding `[delivery]`.
    #[serde(default)]
    pub delivery: AppDeliveryConfig,
    /// Limits on the app's accept routes (push2clients, the callbacks).
    #[serde(default)]
    pub limits: InboundLimitsConfig,
    /// How chat pushes (from IMKIT's callbacks) look.
    #[serde(default)]
    pub chat: ChatConfig,
    /// How chat pushes are routed per recipient, and badge rules.
    #[serde(default)]
    pub routing: RoutingConfig,
}

/// `[apps.routing]`: per-recipient routing of chat pushes from v2 callbacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// What a recipient online (`PUT /v1/clients/{id}/presence`) gets: `skip` (nothing), `silent` (a badge
    /// update only, the default) or `deliver` (the alert).
    pub online: String,
    /// Whether a muted room's unreads count in the badge; default true.
    pub count_muted_rooms: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self { online: "silent".into(), count_muted_rooms: true }
    }
}

/// `[apps.chat]`: the look of chat pushes built from IMKIT's callbacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Fallback text language when a device gave no locale pushgate has text
    /// for: `en`, `zh-TW` or `ja`.
    pub locale: String,
    /// Sound of an alert (`aps.sound`, `android.notification.sound`); empty for none.
    pub sound: String,
    /// `android.notification.icon`.
    pub icon: Option<String>,
    /// `android.notification.click_action`.
    pub click_action: String,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self { locale: "en".into(), sound: "default".into(), icon: None, click_action: "push_chatroom".into() }
    }
}

/// Longest `[apps.chat]` string: they go into every payload, whose size is bounded.
const MAX_CHAT_SETTING_BYTES: usize = 256;

/// `[apps.limits]`: how much an app may send to the accept routes
/// (`/push/push2clients`, `/imkit/push/v2`, `/imkit/push`); past it, 429
/// `RATE_LIMITED` with `Retry-After`. IMKIT does not retry a callback, so a
/// refused callback is a lost notification: these guard the other apps
/// against a runaway caller and belong well above the app's peak.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundLimitsConfig {
    /// Sustained requests per second; default 5,000.
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    /// Requests at once above the rate; default 10,000.
    #[serde(default = "default_request_burst")]
    pub burst: u32,
    /// Requests under way at the same time; default 1,024.
    #[serde(default = "default_requests_in_flight")]
    pub in_flight: u32,
}

impl Default for InboundLimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: default_requests_per_second(),
            burst: default_request_burst(),
            in_flight: default_requests_in_flight(),
        }
    }
}

fn default_requests_per_second() -> u32 {
    5_000
}
fn default_request_burst() -> u32 {
    10_000
}
fn default_requests_in_flight() -> u32 {
    1_024
}

/// `[apps.delivery]`: an app's own retry limits; what is left out comes from `[delivery]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDeliveryConfig {
    /// Attempts before a delivery fails for good.
    pub max_attempts: Option<u32>,
    /// No attempt later than this after acceptance, s.
    pub max_age_seconds: Option<u64>,
}

impl Config {
    /// The attempts limit of an app: its own, else the instance's.
    pub fn max_attempts(&self, app: &AppConfig) -> u32 {
        app.delivery.max_attempts.unwrap_or(self.delivery.max_attempts)
    }

    /// The maximum age of an app's pushes in ms: its own, else the instance's.
    pub fn max_age_ms(&self, app: &AppConfig) -> i64 {
        let seconds = app.delivery.max_age_seconds.unwrap_or(self.delivery.max_age_seconds);
        i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// `generic_push = { ... }` of an app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericPushConfig {
    /// Shared secret expected in `?secret=` or `X-Pushgate-Secret`.
    pub secret: Option<SecretString>,
    /// File holding the shared secret (surrounding white space is ignored).
    pub secret_file: Option<PathBuf>,
    /// Callers allowed by address, as CIDRs (`10.0.0.0/8`, `2001:db8::/32`).
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
    /// How far an `X-Pushgate-Signature` timestamp may be from now, s.
    #[serde(default = "default_signature_tolerance")]
    pub signature_tolerance_seconds: u64,
}

fn default_signature_tolerance() -> u64 {
    300
}

/// `[apps.apns]`: token authentication (`key_file`, `key_id`, `team_id`) or
/// certificate authentication (`certificate_file`, `certificate_key_file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsConfig {
    /// The `.p8` token-signing key from Apple.
    pub key_file: Option<PathBuf>,
    /// The key's 10-character id.
    pub key_id: Option<String>,
    /// The 10-character team id.
    pub team_id: Option<String>,
    /// A PEM client certificate (chain) for certificate authentication.
    pub certificate_file: Option<PathBuf>,
    /// The PEM private key of `certificate_file`.
    pub certificate_key_file: Option<PathBuf>,
    /// The bundle id, sent as `apns-topic`.
    pub topic: String,
    /// `production` (default) or `sandbox`: the environment of iOS devices that do not name one.
    #[serde(default = "default_environment")]
    pub environment: Environment,
    /// Another APNs endpoint, such as a local fake (`https://127.0.0.1:9443`).
    pub endpoint: Option<url::Url>,
    /// An extra CA certificate (PEM) to trust for `endpoint`.
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 connections kept open to APNs per environment; default 2.
    #[serde(default = "default_apns_connections")]
    pub connections: usize,
    /// Most sends per second to APNs for this app (a token bucket with as
    /// large a burst); absent: no limit (APNs publishes no quota).
    pub rate_per_second: Option<u32>,
}

/// `[apps.fcm]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The Google service-account JSON; its `token_uri` is honoured.
    pub service_account_file: PathBuf,
    /// Another FCM base URL, such as a local fake.
    pub endpoint: Option<url::Url>,
    /// An extra CA certificate (PEM) to trust for `endpoint` and `token_uri`.
    pub ca_file: Option<PathBuf>,
    /// Most sends per second to FCM for this app; default 10000, FCM's
    /// default project quota of 600,000 a minute.
    #[serde(default = "default_fcm_rate")]
    pub rate_per_second: u32,
}

/// `[apps.webpush]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    /// The VAPID P-256 private key (PEM).
    pub vapid_private_key_file: PathBuf,
    /// The contact sent in the VAPID token: `mailto:` or `https:`.
    pub subject: String,
    /// Endpoint hosts allowed beyond the known push services (UnifiedPush
    /// distributors, test servers); `*.example.net` allows subdomains.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Whether `http://` endpoints are allowed: only for test push services.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// The page a notification opens (`{room}` becomes the room id): makes
    /// payloads Declarative Web Push, shown without a service worker.
    pub navigate: Option<String>,
    /// An extra CA certificate (PEM) to trust for push services (a test push service).
    pub ca_file: Option<PathBuf>,
    /// Most Web Push sends per second for this app; none by default.
    pub rate_per_second: Option<u32>,
}

impl WebPushConfig {
    /// Where the app's subscriptions may point.
    pub fn endpoints(&self) -> pushgate_domain::WebPushEndpoints {
        pushgate_domain::WebPushEndpoints {
            allowed_hosts: self.allowed_hosts.clone(),
            allow_plain_http: self.allow_plain_http,
        }
    }
}

/// `[apps.imkit]`: the app's chat server, asked who holds a client token
/// (`GET {url}/me`) when an app registers with IMKIT's client credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImkitConfig {
    /// The app's chat server, `https://your-app.imkit.io`.
    pub url: url::Url,
    /// The app's `IM-CLIENT-KEY` (public: shipped in the app); tells apps apart.
    pub client_key: String,
    /// An extra CA certificate (PEM) to trust for the chat server (a test server).
    pub ca_file: Option<PathBuf>,
    /// How long a token the chat server vouched for is trusted; default 300.
    #[serde(default = "default_client_cache_seconds")]
    pub cache_seconds: u64,
    /// How long a refused token is refused without asking again; default 30.
    #[serde(default = "default_refused_cache_seconds")]
    pub refused_cache_seconds: u64,
    /// How long a call to the chat server may take; default 3000.
    #[serde(default = "default_imkit_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_client_cache_seconds() -> u64 {
    300
}
fn default_refused_cache_seconds() -> u64 {
    30
}
fn default_imkit_timeout_ms() -> u64 {
    3000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_shutdown_grace_seconds() -> u64 {
    20
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_store_url() -> String {
    "sqlite://pushgate.db".to_owned()
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_fcm_rate() -> u32 {
    10_000
}
fn default_apns_connections() -> usize {
    2
}
fn default_environment() -> Environment {
    Environment::Production
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace_seconds: default_shutdown_grace_seconds(),
        }
    }
}
impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: default_store_url() }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::Text }
    }
}

/// Why the configuration was refused: every problem found, each naming its key.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        Self(vec![problem.into()])
    }
}

impl Config {
    /// Loads the file (if any), applies the environment, reads secret files
    /// and validates the result.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| ConfigError::one(format!("cannot read config file {}: {error}", path.display())))?,
            None => String::new(),
        };
        let name = file.map_or_else(|| "the configuration".to_owned(), |path| path.display().to_string());
        Self::from_text(&text, &name, file.and_then(Path::parent), environment)
    }

    /// As [`Config::load`], from the text of a file called `name` in `folder`
    /// (relative paths in it resolve there).
    pub fn from_text(
        text: &str,
        name: &str,
        folder: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = text
            .parse::<toml::Table>()
            .map_err(|error| ConfigError::one(format!("{name} is not valid TOML: {error}")))?;
        if !table.contains_key("apps") {
            let mut sample = toml::Table::new();
            sample.insert("id".into(), DEFAULT_APP_ID.into());
            table.insert("apps".into(), toml::Value::Array(vec![toml::Value::Table(sample)]));
        }
        apply_environment(&mut table, environment)?;
        // Every problem at once: a key the file gets wrong is reported and
        // left out, and the rest is read again, so one unknown key or bad
        // value does not hide the others (nor the checks after reading).
        let mut problems = Vec::new();
        let mut config = loop {
            let error = match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table.clone())) {
                Ok(config) => break Some(config),
                Err(error) => error,
            };
            let path = error.path().to_string();
            // The toml crate appends "in `section`" on a second line; the path already says it.
            let message = error.into_inner().to_string();
            let message = message.lines().next().unwrap_or_default().to_owned();
            let removed = problems.len() < 50 && remove_key(&mut table, &path);
            // A required key left out would only be reported again as missing.
            let missing_again = message.starts_with("missing field")
                && problems.iter().any(|problem: &String| problem.starts_with(&format!("{path}.")));
            if !missing_again {
                problems.push(format!("{path}: {message}"));
            }
            if !removed || missing_again {
                break None;
            }
        };
        if let Some(config) = &mut config {
            if let Some(folder) = folder {
                config.resolve_paths(folder);
            }
            for step in [Self::read_secret_files, |config: &mut Self| config.validate()] {
                if let Err(ConfigError(more)) = step(config) {
                    problems.extend(more);
                }
            }
        }
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError(problems)),
        }
    }

    /// Every certificate the configuration names (the server's TLS
    /// certificate, APNs client certificates), with when its first
    /// certificate (the leaf) expires; a file that does not parse is left out.
    pub fn certificates(&self) -> Vec<WatchedCertificate> {
        let mut files: Vec<(Option<String>, &'static str, String, &Path)> = Vec::new();
        if let Some(cert) = &self.server.tls_cert {
            files.push((None, "server_tls", "server.tls_cert".into(), cert));
        }
        for (index, app) in self.apps.iter().enumerate() {
            if let Some(cert) = app.apns.as_ref().and_then(|apns| apns.certificate_file.as_deref()) {
                files.push((Some(app.id.clone()), "apns", format!("apps[{index}].apns.certificate_file"), cert));
            }
        }
        files
            .into_iter()
            .filter_map(|(app, certificate, key, path)| {
                let pem = std::fs::read(path).ok()?;
                let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
                let parsed = pem.parse_x509().ok()?;
                let not_after_ms = parsed.validity().not_after.timestamp().saturating_mul(1000);
                Some(WatchedCertificate { app, certificate, key, not_after_ms })
            })
            .collect()
    }

    /// Makes every relative file path relative to the configuration file's
    /// folder (not to the working directory, which depends on how pushgate was started).
    fn resolve_paths(&mut self, folder: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = folder.join(&*path);
            }
        };
        let resolve_some = |path: &mut Option<PathBuf>| {
            if let Some(path) = path {
                resolve(path);
            }
        };
        resolve_some(&mut self.server.tls_cert);
        resolve_some(&mut self.server.tls_key);
        resolve_some(&mut self.admin.api_keys_file);
        for app in &mut self.apps {
            resolve_some(&mut app.api_keys_file);
            if let Some(generic) = &mut app.generic_push {
                resolve_some(&mut generic.secret_file);
            }
            if let Some(apns) = &mut app.apns {
                resolve_some(&mut apns.key_file);
                resolve_some(&mut apns.certificate_file);
                resolve_some(&mut apns.certificate_key_file);
                resolve_some(&mut apns.ca_file);
            }
            if let Some(fcm) = &mut app.fcm {
                resolve(&mut fcm.service_account_file);
                resolve_some(&mut fcm.ca_file);
            }
            if let Some(webpush) = &mut app.webpush {
                resolve(&mut webpush.vapid_private_key_file);
                resolve_some(&mut webpush.ca_file);
            }
            if let Some(imkit) = &mut app.imkit {
                resolve_some(&mut imkit.ca_file);
            }
        }
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let read_keys = |path: &Path, keys: &mut Vec<SecretString>, at: &str, problems: &mut Vec<String>| {
            match std::fs::read_to_string(path) {
                Ok(text) => keys.extend(
                    text.lines()
                        .map(|line| line.split('#').next().unwrap_or_default().trim())
                        .filter(|line| !line.is_empty())
                        .map(|line| SecretString::from(line.to_owned())),
                ),
                Err(error) => problems.push(format!("{at}.api_keys_file: cannot read {}: {error}", path.display())),
            }
        };
        if let Some(path) = &self.admin.api_keys_file {
            read_keys(path, &mut self.admin.api_keys, "admin", &mut problems);
        }
        for (index, app) in self.apps.iter_mut().enumerate() {
            if let Some(path) = &app.api_keys_file {
                read_keys(path, &mut app.api_keys, &format!("apps[{index}]"), &mut problems);
            }
            if let Some(generic) = &mut app.generic_push
                && let Some(path) = &generic.secret_file
            {
                if generic.secret.is_some() {
                    problems.push(format!("apps[{index}].generic_push: give secret or secret_file, not both"));
                }
                match std::fs::read_to_string(path) {
                    Ok(text) => generic.secret = Some(SecretString::from(text.trim().to_owned())),
                    Err(error) => {
                        problems.push(format!(
                            "apps[{index}].generic_push.secret_file: cannot read {}: {error}",
                            path.display()
                        ));
                    }
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(cert), Some(key)) => {
                check_readable(&mut problems, "server.tls_cert", cert);
                check_readable(&mut problems, "server.tls_key", key);
            }
            (None, None) => {}
            _ => problems.push("server.tls_cert and server.tls_key must be given together".into()),
        }
        if self.server.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes: must be at least 1024".into());
        }
        if StoreKind::of(&self.store.url).is_none() {
            problems.push(format!(
                "store.url: expected sqlite://<path> or postgres://<user>@<host>/<database>, got {:?}",
                self.store.url.split(':').next().unwrap_or_default()
            ));
        }
        let delivery = &self.delivery;
        for (key, value, low, high) in [
            ("concurrency", delivery.concurrency as u64, 1, 10_000),
            ("batch", u64::from(delivery.batch), 1, 10_000),
            ("lease_ms", delivery.lease_ms, 1_000, 3_600_000),
            ("retry_base_ms", delivery.retry_base_ms, 1, 3_600_000),
            ("retry_max_ms", delivery.retry_max_ms, delivery.retry_base_ms, 86_400_000),
            ("max_attempts", u64::from(delivery.max_attempts), 1, 1_000),
            ("max_age_seconds", delivery.max_age_seconds, 1, 30 * 86_400),
            ("poll_interval_ms", delivery.poll_interval_ms, 10, 60_000),
            ("pause_base_ms", delivery.pause_base_ms, 10, 3_600_000),
            ("pause_max_ms", delivery.pause_max_ms, delivery.pause_base_ms, 86_400_000),
            ("retention_hours", delivery.retention_hours, 1, 24 * 366),
        ] {
            if !(low..=high).contains(&value) {
                problems.push(format!("delivery.{key}: must be from {low} to {high}, got {value}"));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problems
                .push(format!("log.level: {:?} is not a valid filter such as info or pushgate=debug", self.log.level));
        }
        if self.apps.is_empty() {
            problems.push("apps: at least one app is required".into());
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        let mut client_keys = HashSet::new();
        check_keys(&mut problems, "admin", &self.admin.api_keys, &mut keys);
        for (index, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{index}]");
            match AppId::parse(&app.id) {
                Ok(_) if !ids.insert(app.id.as_str()) => {
                    problems.push(format!("{at}.id: {:?} is used by another app", app.id))
                }
                Ok(_) => {}
                Err(error) => problems.push(format!("{at}.id: {error}")),
            }
            check_keys(&mut problems, &at, &app.api_keys, &mut keys);
            if let Some(generic) = &app.generic_push
                && generic
                    .secret
                    .as_ref()
                    .is_some_and(|secret| secret.expose_secret().chars().count() < MIN_API_KEY_LEN)
            {
                problems.push(format!("{at}.generic_push.secret: must be at least {MIN_API_KEY_LEN} characters"));
            }
            if let Err(error) = pushgate_domain::OnlinePolicy::parse(&app.routing.online) {
                problems.push(format!("{at}.routing.online: {error}"));
            }
            match pushgate_domain::Locale::parse(&app.chat.locale) {
                Ok(locale) if pushgate_domain::has_text_for(&locale) => {}
                _ => problems.push(format!("{at}.chat.locale: must be en, zh-TW or ja")),
            }
            for (key, value) in [
                ("sound", Some(&app.chat.sound)),
                ("icon", app.chat.icon.as_ref()),
                ("click_action", Some(&app.chat.click_action)),
            ] {
                if value.is_some_and(|value| value.len() > MAX_CHAT_SETTING_BYTES) {
                    problems.push(format!("{at}.chat.{key}: must be at most {MAX_CHAT_SETTING_BYTES} bytes"));
                }
            }
            if let Some(apns) = &app.apns {
                check_apns_auth(&mut problems, &format!("{at}.apns"), apns);
                if !(1..=16).contains(&apns.connections) {
                    problems.push(format!("{at}.apns.connections: must be from 1 to 16"));
                }
                if apns.rate_per_second == Some(0) {
                    problems.push(format!("{at}.apns.rate_per_second: must be at least 1 (leave it out for no limit)"));
                }
                if apns.topic.trim().is_empty() {
                    problems.push(format!("{at}.apns.topic: the app's bundle id is required"));
                }
                check_endpoint(&mut problems, &format!("{at}.apns.endpoint"), apns.endpoint.as_ref());
                if let Some(ca) = &apns.ca_file {
                    check_readable(&mut problems, &format!("{at}.apns.ca_file"), ca);
                }
            }
            if let Some(fcm) = &app.fcm
                && fcm.rate_per_second == 0
            {
                problems.push(format!("{at}.fcm.rate_per_second: must be at least 1"));
            }
            if let Some(fcm) = &app.fcm {
                check_service_account(
                    &mut problems,
                    &format!("{at}.fcm.service_account_file"),
                    &fcm.service_account_file,
                );
                check_endpoint(&mut problems, &format!("{at}.fcm.endpoint"), fcm.endpoint.as_ref());
                if let Some(ca) = &fcm.ca_file {
                    check_readable(&mut problems, &format!("{at}.fcm.ca_file"), ca);
                }
            }
            if let Some(webpush) = &app.webpush {
                check_readable(
                    &mut problems,
                    &format!("{at}.webpush.vapid_private_key_file"),
                    &webpush.vapid_private_key_file,
                );
                if !(webpush.subject.starts_with("mailto:") || webpush.subject.starts_with("https:")) {
                    problems.push(format!("{at}.webpush.subject: must start with mailto: or https:"));
                }
                if let Some(ca) = &webpush.ca_file {
                    check_readable(&mut problems, &format!("{at}.webpush.ca_file"), ca);
                }
                if webpush.rate_per_second == Some(0) {
                    problems
                        .push(format!("{at}.webpush.rate_per_second: must be at least 1 (leave it out for no limit)"));
                }
                if let Some(navigate) = &webpush.navigate
                    && url::Url::parse(&navigate.replace("{room}", "room")).map_or(true, |url| url.scheme() != "https")
                {
                    problems
                        .push(format!("{at}.webpush.navigate: must be an https URL ({{room}} stands for the room id)"));
                }
                for host in &webpush.allowed_hosts {
                    let name = host.strip_prefix("*.").unwrap_or(host);
                    if url::Host::parse(name).is_err() || name.contains(['/', ':', '*']) {
                        problems.push(format!("{at}.webpush.allowed_hosts: {host:?} is not a host name"));
                    }
                }
            }
            for (key, value) in [
                ("requests_per_second", app.limits.requests_per_second),
                ("burst", app.limits.burst),
                ("in_flight", app.limits.in_flight),
            ] {
                if value == 0 {
                    problems.push(format!("{at}.limits.{key}: must be at least 1"));
                }
            }
            if let Some(imkit) = &app.imkit {
                if imkit.url.scheme() != "https" || imkit.url.host().is_none() {
                    problems.push(format!("{at}.imkit.url: must be the chat server's https URL, got {}", imkit.url));
                }
                if imkit.client_key.trim().is_empty() {
                    problems.push(format!("{at}.imkit.client_key: must be the app's IM-CLIENT-KEY"));
                } else if !client_keys.insert(imkit.client_key.as_str()) {
                    problems.push(format!("{at}.imkit.client_key: another app has the same one (it tells apps apart)"));
                }
                if let Some(ca) = &imkit.ca_file {
                    check_readable(&mut problems, &format!("{at}.imkit.ca_file"), ca);
                }
                for (key, value, low, high) in [
                    ("cache_seconds", imkit.cache_seconds, 0, 86_400),
                    ("refused_cache_seconds", imkit.refused_cache_seconds, 0, 3_600),
                    ("timeout_ms", imkit.timeout_ms, 100, 60_000),
                ] {
                    if !(low..=high).contains(&value) {
                        problems.push(format!("{at}.imkit.{key}: must be from {low} to {high}, got {value}"));
                    }
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }

    /// The app id as a domain value; validated at load.
    pub fn app_ids(&self) -> impl Iterator<Item = (AppId, &AppConfig)> {
        self.apps.iter().filter_map(|app| AppId::parse(&app.id).ok().map(|id| (id, app)))
    }

    /// The configured app `id` names.
    pub fn app(&self, id: &str) -> anyhow::Result<(AppId, &AppConfig)> {
        self.app_ids()
            .find(|(app_id, _)| app_id.as_str() == id)
            .ok_or_else(|| anyhow::anyhow!("no app {id:?} in the configuration"))
    }
}

/// Removes the key at `path` (`apps[1].apns.key_id`, as serde_path_to_error
/// names it) from `table`; `false` when there is none to remove.
fn remove_key(table: &mut toml::Table, path: &str) -> bool {
    let mut parts: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|part| match part.split_once('[') {
            Some((name, index)) => (name, index.trim_end_matches(']').parse().ok()),
            None => (part, None),
        })
        .collect();
    let Some((last, last_index)) = parts.pop() else { return false };
    let mut current = table;
    for (name, index) in parts {
        let value = match current.get_mut(name) {
            Some(value) => value,
            None => return false,
        };
        let value = match (value, index) {
            (toml::Value::Array(items), Some(index)) => match items.get_mut(index) {
                Some(item) => item,
                None => return false,
            },
            (value, None) => value,
            _ => return false,
        };
        match value {
            toml::Value::Table(next) => current = next,
            _ => return false,
        }
    }
    match last_index {
        None => current.remove(last).is_some(),
        Some(index) => match current.get_mut(last) {
            Some(toml::Value::Array(items)) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
    }
}

/// Each key long enough and given once over the whole configuration (an
/// admin key that is also an app's would be both).
fn check_keys<'a>(problems: &mut Vec<String>, at: &str, given: &'a [SecretString], seen: &mut HashSet<&'a str>) {
    for (index, key) in given.iter().enumerate() {
        let key = key.expose_secret();
        if key.chars().count() < MIN_API_KEY_LEN || key.trim() != key {
            problems.push(format!(
                "{at}.api_keys[{index}]: an API key must be at least {MIN_API_KEY_LEN} characters without surrounding space"
            ));
        } else if !seen.insert(key) {
            problems.push(format!("{at}.api_keys[{index}]: the same key is given twice"));
        }
    }
}

fn check_readable(problems: &mut Vec<String>, key: &str, path: &Path) {
    if let Err(error) = std::fs::File::open(path) {
        problems.push(format!("{key}: cannot read {}: {error}", path.display()));
    }
}

/// Apple's key and team ids are 10 upper-case letters and digits (`ABC123DEFG`).
fn check_apple_id(problems: &mut Vec<String>, key: &str, value: &str) {
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        problems.push(format!(
            "{key}: must be Apple's id, 10 upper-case letters and digits such as ABC123DEFG, got {value:?}"
        ));
    }
}

fn check_endpoint(problems: &mut Vec<String>, key: &str, endpoint: Option<&url::Url>) {
    if let Some(url) = endpoint
        && (url.scheme() != "https" || url.host().is_none())
    {
        problems.push(format!("{key}: must be an https URL"));
    }
}

/// Token or certificate authentication, complete, with keys that parse.
fn check_apns_auth(problems: &mut Vec<String>, at: &str, apns: &ApnsConfig) {
    let token = (&apns.key_file, &apns.key_id, &apns.team_id);
    let certificate = (&apns.certificate_file, &apns.certificate_key_file);
    match (token, certificate) {
        ((Some(key_file), Some(key_id), Some(team_id)), (None, None)) => {
            check_apple_id(problems, &format!("{at}.key_id"), key_id);
            check_apple_id(problems, &format!("{at}.team_id"), team_id);
            match std::fs::read(key_file) {
                Err(error) => problems.push(format!("{at}.key_file: cannot read {}: {error}", key_file.display())),
                Ok(pem) => {
                    let clock = std::sync::Arc::new(pushgate_providers::SystemClock);
                    if let Err(error) = pushgate_providers::apns::TokenSigner::new(&pem, key_id, team_id, clock) {
                        problems.push(format!("{at}.key_file: {error}"));
                    }
                }
            }
        }
        ((None, None, None), (Some(certificate_file), Some(key_file))) => {
            match (std::fs::read(certificate_file), std::fs::read(key_file)) {
                (Ok(chain), Ok(key)) => {
                    if let Err(error) = pushgate_providers::client_tls_config(None, &[b"h2"], Some((&chain, &key))) {
                        problems.push(format!("{at}.certificate_file: {error}"));
                    }
                }
                (Err(error), _) => {
                    problems.push(format!("{at}.certificate_file: cannot read {}: {error}", certificate_file.display()));
                }
                (_, Err(error)) => {
                    problems.push(format!("{at}.certificate_key_file: cannot read {}: {error}", key_file.display()));
                }
            }
        }
        _ => problems.push(format!(
            "{at}: give either key_file, key_id and team_id (token authentication) or certificate_file and certificate_key_file (certificate authentication)"
        )),
    }
}

fn check_service_account(problems: &mut Vec<String>, key: &str, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => return problems.push(format!("{key}: cannot read {}: {error}", path.display())),
    };
    let client_file = serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|value| value.get("project_info").is_some() && value.get("client").is_some());
    if client_file {
        return problems.push(format!(
            "{key}: {} is a Firebase client file (google-services.json), which apps embed; pushgate needs a service \
             account key (Firebase console: Project settings, Service accounts, Generate new private key)",
            path.display()
        ));
    }
    match serde_json::from_str::<pushgate_providers::fcm::ServiceAccount>(&text) {
        Err(error) => problems.push(format!("{key}: {} is not a service-account JSON file: {error}", path.display())),
        Ok(account) => {
            if let Err(error) = account.check() {
                problems.push(format!("{key}: {error}"));
            }
        }
    }
}

/// Applies `PUSHGATE_<SECTION>__<KEY>` variables to the parsed file.
///
/// Path segments are lower-cased. Under `APPS` the next segment is an app id
/// (matched without regard to case) or an index. A value that reads as a
/// TOML array, inline table, boolean or number is taken as one; anything else
/// is a string (quote it, `'"true"'`, to force a string).
fn apply_environment(
    table: &mut toml::Table,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut variables: Vec<_> = environment
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name[ENV_PREFIX.len()..].contains("__"))
        .collect();
    // Apply in a fixed order so the outcome does not depend on the environment's order.
    variables.sort();
    for (name, raw) in variables {
        let segments: Vec<&str> = name[ENV_PREFIX.len()..].split("__").collect();
        if let Err(problem) = apply_one(table, &segments, parse_env_value(&raw)) {
            problems.push(format!("{name}: {problem}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
}

fn apply_one(table: &mut toml::Table, segments: &[&str], value: toml::Value) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("empty name".into());
    };
    if first.is_empty() || rest.iter().any(|segment| segment.is_empty()) {
        return Err("empty segment in the name".into());
    }
    let section = first.to_ascii_lowercase();
    if section == "apps" {
        let Some((selector, keys)) = rest.split_first().filter(|(_, keys)| !keys.is_empty()) else {
            return Err("expected PUSHGATE_APPS__<app id or index>__<KEY>".into());
        };
        let Some(toml::Value::Array(apps)) = table.get_mut("apps") else {
            return Err("apps is not an array of tables".into());
        };
        let position = selector.parse::<usize>().ok().filter(|index| *index < apps.len()).or_else(|| {
            apps.iter().position(|app| {
                app.get("id").and_then(toml::Value::as_str).is_some_and(|id| id.eq_ignore_ascii_case(selector))
            })
        });
        let Some(toml::Value::Table(app)) = position.and_then(|index| apps.get_mut(index)) else {
            return Err(format!("no app with id or index {selector:?}"));
        };
        return set_path(app, keys, value);
    }
    set_path(table, segments, value)
}

fn set_path(table: &mut toml::Table, segments: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("empty name")?;
    let mut current = table;
    for segment in parents {
        let entry =
            current.entry(segment.to_ascii_lowercase()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("{segment} is not a table"))?;
    }
    current.insert(last.to_ascii_lowercase(), value);
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    let looks_typed = trimmed.starts_with(['[', '{', '"'])
        || trimmed == "true"
        || trimmed == "false"
        || trimmed.parse::<i64>().is_ok()
        || trimmed.parse::<f64>().is_ok();
    if looks_typed
        && let Ok(mut parsed) = format!("value = {trimmed}").parse::<toml::Table>()
        && let Some(value) = parsed.remove("value")
    {
        return value;
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn load_text(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("pushgate.toml");
        std::fs::write(&path, text).expect("write config");
        Config::load(Some(&path), env(pairs))
    }

    #[test]
    fn no_file_gives_the_documented_defaults() {
        let config = Config::load(None, env(&[])).expect("defaults are valid");
        assert_eq!(config.server.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.store.url, "sqlite://pushgate.db");
        assert_eq!(config.server.max_body_bytes, 1024 * 1024);
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].id, "SampleApp");
        assert!(config.apps[0].api_keys.is_empty());
    }

    #[test]
    fn environment_variables_override_sections() {
        let config = Config::load(
            None,
            env(&[("PUSHGATE_SERVER__LISTEN", "0.0.0.0:9000"), ("PUSHGATE_SERVER__MAX_BODY_BYTES", "4096")]),
        )
        .expect("valid");
        assert_eq!(config.server.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(config.server.max_body_bytes, 4096);
    }

    #[test]
    fn an_app_is_addressed_by_id_or_index_from_the_environment() {
        let text = "[[apps]]\nid = \"One\"\n[[apps]]\nid = \"Two\"\n";
        let config = load_text(
            text,
            &[
                ("PUSHGATE_APPS__TWO__API_KEYS", r#"["key-for-app-two-000"]"#),
                ("PUSHGATE_APPS__0__API_KEYS", r#"["key-for-app-one-000"]"#),
            ],
        )
        .expect("valid");
        assert_eq!(config.apps[0].api_keys[0].expose_secret(), "key-for-app-one-000");
        assert_eq!(config.apps[1].api_keys[0].expose_secret(), "key-for-app-two-000");
    }

    #[test]
    fn an_override_of_an_unknown_app_names_the_variable() {
        let error = Config::load(None, env(&[("PUSHGATE_APPS__NOPE__API_KEYS", "[]")])).unwrap_err();
        assert_eq!(error.0, vec![r#"PUSHGATE_APPS__NOPE__API_KEYS: no app with id or index "NOPE""#.to_owned()]);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_section() {
        let error = load_text("[server]\nlisten_on = \"x\"\n", &[]).unwrap_err();
        assert!(
            error.0[0].starts_with("server.listen_on: unknown field `listen_on`, expected one of `listen`"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_listen_address_names_the_key() {
        let error = Config::load(None, env(&[("PUSHGATE_SERVER__LISTEN", "localhost")])).unwrap_err();
        assert!(error.0[0].starts_with("server.listen: "), "{error}");
    }

    #[test]
    fn short_api_keys_are_refused() {
        let error = load_text("[[apps]]\nid = \"A\"\napi_keys = [\"short\"]\n", &[]).unwrap_err();
        assert_eq!(
            error.0,
            vec!["apps[0].api_keys[0]: an API key must be at least 16 characters without surrounding space".to_owned()]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "[[apps]]\nid = \"A\"\n[[apps]]\nid = \"A\"\n[apps.apns]\nkey_file = \"/nonexistent.p8\"\nkey_id = \"ABC\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"io.imkit.app\"\n";
        let error = load_text(text, &[]).unwrap_err();
        let joined = error.to_string();
        assert!(joined.contains("apps[1].id: \"A\" is used by another app"), "{joined}");
        assert!(joined.contains("apps[1].apns.key_file: cannot read /nonexistent.p8"), "{joined}");
        assert!(
            joined.contains(
                r#"apps[1].apns.key_id: must be Apple's id, 10 upper-case letters and digits such as ABC123DEFG, got "ABC""#
            ),
            "{joined}"
        );
    }

    #[test]
    fn problems_found_while_reading_do_not_hide_the_others() {
        let text = "[server]\nlisten_on = \"x\"\n[[apps]]\nid = \"A\"\napi_keys = [\"short\"]\n[apps.apns]\nkey_file = \"/nonexistent.p8\"\nkey_id = \"ABC123DEFG\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"io.imkit.app\"\nenvironment = \"staging\"\n";
        let problems = load_text(text, &[]).unwrap_err().0;
        assert_eq!(problems.len(), 4, "{problems:?}");
        for expected in [
            "server.listen_on: unknown field",
            "apps[0].apns.environment: unknown variant `staging`",
            "apps[0].api_keys[0]: an API key must be at least",
            "apps[0].apns.key_file: cannot read",
        ] {
            assert!(problems.iter().any(|problem| problem.starts_with(expected)), "{expected}: {problems:?}");
        }
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_files_folder() {
        let directory = tempfile::tempdir().expect("temp dir");
        std::fs::write(directory.path().join("keys"), "key-from-a-file-0001\n").expect("write");
        let config_path = directory.path().join("pushgate.toml");
        std::fs::write(&config_path, "[[apps]]\nid = \"A\"\napi_keys_file = \"keys\"\n").expect("write");
        let config = Config::load(Some(&config_path), env(&[])).expect("the key file is found beside the config");
        assert_eq!(config.apps[0].api_keys_file.as_deref(), Some(directory.path().join("keys").as_path()));
        assert_eq!(config.apps[0].api_keys[0].expose_secret(), "key-from-a-file-0001");
    }

    #[test]
    fn a_firebase_client_file_is_named_as_such() {
        let directory = tempfile::tempdir().expect("temp dir");
        let client = directory.path().join("google-services.json");
        std::fs::write(&client, r#"{"project_info":{"project_id":"demo"},"client":[{"api_key":[]}]}"#).expect("write");
        let text =
            format!("[[apps]]\nid = \"A\"\n[apps.fcm]\nservice_account_file = {:?}\n", client.display().to_string());
        let error = load_text(&text, &[]).unwrap_err().to_string();
        assert!(error.contains("is a Firebase client file (google-services.json)"), "{error}");
    }

    #[test]
    fn api_keys_can_be_read_from_a_file() {
        let directory = tempfile::tempdir().expect("temp dir");
        let keys = directory.path().join("keys");
        std::fs::write(&keys, "# production\nkey-from-a-file-0001\n\nkey-from-a-file-0002 # rotated\n").expect("write");
        let text = format!("[[apps]]\nid = \"A\"\napi_keys_file = {:?}\n", keys.display().to_string());
        let config = load_text(&text, &[]).expect("valid");
        let loaded: Vec<_> = config.apps[0].api_keys.iter().map(|key| key.expose_secret().to_owned()).collect();
        assert_eq!(loaded, ["key-from-a-file-0001", "key-from-a-file-0002"]);
    }

    #[test]
    fn tls_needs_both_files() {
        let error = Config::load(None, env(&[("PUSHGATE_SERVER__TLS_CERT", "cert.pem")])).unwrap_err();
        assert_eq!(error.0, vec!["server.tls_cert and server.tls_key must be given together".to_owned()]);
    }

    #[test]
    fn the_store_url_names_sqlite_or_postgres_and_nothing_else() {
        let config = Config::load(None, env(&[("PUSHGATE_STORE__URL", "postgres://localhost/test")])).expect("valid");
        assert_eq!(StoreKind::of(&config.store.url), Some(StoreKind::Postgres));
        assert_eq!(StoreKind::of("postgresql://localhost/test"), Some(StoreKind::Postgres));
        assert_eq!(StoreKind::of("sqlite://pushgate.db"), Some(StoreKind::Sqlite));
        let error = Config::load(None, env(&[("PUSHGATE_STORE__URL", "mysql://localhost/test")])).unwrap_err();
        assert!(error.0[0].starts_with("store.url: expected sqlite://<path> or postgres://"), "{error}");
    }

    #[test]
    fn bad_cidrs_in_the_allowlist_name_the_key() {
        let error =
            load_text("[[apps]]\nid = \"A\"\ngeneric_push = { allow_ips = [\"10.0.0.0/33\"] }\n", &[]).unwrap_err();
        assert!(error.0[0].starts_with("apps[0].generic_push.allow_ips[0]: "), "{error}");
    }

    #[test]
    fn a_secret_never_shows_in_the_debug_print() {
        let config = Config::load(None, env(&[("PUSHGATE_APPS__SAMPLEAPP__API_KEYS", r#"["very-secret-key-000"]"#)]))
            .expect("valid");
        assert!(!format!("{config:?}").contains("very-secret-key-000"));
    }

    fn write(directory: &Path, name: &str, content: &str) -> String {
        let path = directory.join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    }

    #[test]
    fn a_real_p8_key_and_a_real_service_account_are_accepted() {
        let directory = tempfile::tempdir().expect("temp dir");
        let key = pushgate_testkit::Es256Key::generate();
        let account =
            pushgate_testkit::TestServiceAccount::generate("imkit-demo", "https://oauth2.googleapis.com/token");
        let p8 = write(directory.path(), "AuthKey_ABC123DEFG.p8", &key.private_pem);
        let json = write(directory.path(), "service-account.json", &account.json);
        let text = format!(
            "[[apps]]\nid = \"A\"\n[apps.apns]\nkey_file = {p8:?}\nkey_id = \"ABC123DEFG\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"io.imkit.app\"\n[apps.fcm]\nservice_account_file = {json:?}\n"
        );
        let config = load_text(&text, &[]).expect("valid");
        assert_eq!(config.apps[0].apns.as_ref().map(|apns| apns.connections), Some(2));
    }

    #[test]
    fn a_p8_file_that_is_not_a_p256_key_is_refused_at_start() {
        let directory = tempfile::tempdir().expect("temp dir");
        let p8 =
            write(directory.path(), "AuthKey.p8", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let text = format!(
            "[[apps]]\nid = \"A\"\n[apps.apns]\nkey_file = {p8:?}\nkey_id = \"ABC123DEFG\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"t\"\n"
        );
        let error = load_text(&text, &[]).expect_err("invalid key");
        assert!(error.0[0].starts_with("apps[0].apns.key_file: the APNs key is not a P-256 private key"), "{error}");
    }

    #[test]
    fn certificate_authentication_is_the_alternative_and_half_of_each_is_refused() {
        let directory = tempfile::tempdir().expect("temp dir");
        let ca = pushgate_testkit::TestCa::generate();
        let (chain, key) = ca.client_certificate("push");
        let chain = write(directory.path(), "push.pem", &chain);
        let key = write(directory.path(), "push.key", &key);
        let text = format!(
            "[[apps]]\nid = \"A\"\n[apps.apns]\ncertificate_file = {chain:?}\ncertificate_key_file = {key:?}\ntopic = \"t\"\n"
        );
        load_text(&text, &[]).expect("certificate auth is valid");
        let mixed = format!(
            "[[apps]]\nid = \"A\"\n[apps.apns]\ncertificate_file = {chain:?}\nkey_id = \"ABC123DEFG\"\ntopic = \"t\"\n"
        );
        let error = load_text(&mixed, &[]).expect_err("mixed auth");
        assert!(error.0[0].starts_with("apps[0].apns: give either key_file, key_id and team_id"), "{error}");
    }

    #[test]
    fn a_service_account_with_a_broken_key_is_refused_at_start() {
        let directory = tempfile::tempdir().expect("temp dir");
        let account = pushgate_testkit::TestServiceAccount::generate("p", "https://oauth2.googleapis.com/token");
        let mut json: serde_json::Value = serde_json::from_str(&account.json).expect("json");
        json["private_key"] = "not a key".into();
        let path = write(directory.path(), "sa.json", &json.to_string());
        let text = format!("[[apps]]\nid = \"A\"\n[apps.fcm]\nservice_account_file = {path:?}\n");
        let error = load_text(&text, &[]).expect_err("broken key");
        assert!(
            error.0[0]
                .starts_with("apps[0].fcm.service_account_file: the service account's private_key is not an RSA key"),
            "{error}"
        );
    }

    #[test]
    fn the_documented_example_configuration_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pushgate.example.toml");
        let config = Config::load(Some(&example), env(&[])).expect("pushgate.example.toml is valid");
        assert_eq!(config.delivery.max_attempts, 10);
        assert_eq!(config.apps[0].id, "SampleApp");
    }
}
