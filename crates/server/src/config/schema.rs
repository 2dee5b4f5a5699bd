//! The configuration's sections, one struct each, and their defaults: each
//! struct's doc comments are the reference for its keys.

use super::*;

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
    /// Traces exported over OTLP; off by default.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
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

/// `[telemetry]`: OpenTelemetry traces of every push (spans `http`, `accept`,
/// `fan_out`, `claim`, `deliver`, `build`, `send`, `settle`), exported over
/// OTLP/HTTP (protobuf) when `otlp_endpoint` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, such as `http://otel-collector:4318`; spans go to `{it}/v1/traces`.
    pub otlp_endpoint: Option<url::Url>,
    /// The `service.name` the spans carry; default `pushgate`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of new traces kept, 0 to 1 (default 1). A trace a caller's `traceparent` began follows the
    /// caller's choice, and a push's spans all follow its accept's.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { otlp_endpoint: None, service_name: default_service_name(), sample_ratio: default_sample_ratio() }
    }
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "pushgate".to_owned()
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
    /// Storm control: a busy room alerts once per window per recipient.
    #[serde(default)]
    pub coalescing: CoalescingConfig,
    /// What APNs and FCM may read of chat alerts.
    #[serde(default)]
    pub privacy: PrivacyConfig,
}

/// `[apps.privacy]`: private payloads for APNs and FCM devices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// `off` (the default: the message in clear), `encrypt` (sealed to each device's `pushKey`, RFC 8291) or
    /// `id_only` (a neutral alert with the message's id and room; the app fetches the content).
    pub mode: String,
    /// With `encrypt`, what a device without a `pushKey` gets: `id_only` (the default) or `clear`.
    pub fallback: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { mode: "off".into(), fallback: "id_only".into() }
    }
}

impl PrivacyConfig {
    /// The setting, once validated (an unknown value is the default's).
    pub fn privacy(&self) -> pushgate_domain::Privacy {
        let default = pushgate_domain::Privacy::default();
        pushgate_domain::Privacy {
            mode: pushgate_domain::PrivacyMode::parse(&self.mode).unwrap_or(default.mode),
            fallback: pushgate_domain::PrivacyFallback::parse(&self.fallback).unwrap_or(default.fallback),
        }
    }
}

/// `[apps.coalescing]`: a busy room's alerts, coalesced per recipient.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoalescingConfig {
    /// After a room alerts a recipient, its messages for this long are held
    /// and go out as one alert at the window's end ("5 new messages"); 0 (the
    /// default) is off: every message alerts.
    pub window_seconds: u32,
}

/// Longest coalescing window: past it, a busy room's badge and text lag too long.
pub const MAX_COALESCING_WINDOW_SECONDS: u32 = 300;

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
pub(super) const MAX_CHAT_SETTING_BYTES: usize = 256;

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
    /// Another endpoint for Apple's broadcast channel management API (Apple's:
    /// `api-manage-broadcast.push.apple.com:2196`, sandbox `…sandbox…:2195`).
    pub channels_endpoint: Option<url::Url>,
    /// An extra CA certificate (PEM) to trust for `endpoint`.
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 connections kept open to APNs per environment; default 2.
    #[serde(default = "default_apns_connections")]
    pub connections: usize,
    /// Most sends per second to APNs for this app (a token bucket with as
    /// large a burst); absent: no limit (APNs publishes no quota).
    pub rate_per_second: Option<u32>,
    /// Whether Apple granted the app the Critical Alerts entitlement: only
    /// then may a push2clients set `interruption-level` `critical`.
    #[serde(default)]
    pub critical_alerts: bool,
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
