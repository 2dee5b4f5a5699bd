//! Wiring: from a validated [`Config`] to a bound, ready-to-serve application.

use crate::config::{Config, LogFormat, StoreKind, WebPushConfig};
use crate::providers::app_providers;
use crate::reload::{ConfigSource, Reloader};
use anyhow::Context as _;
use base64::Engine as _;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use pushgate_api::admin::Console;
use pushgate_api::auth::{ApiKeyRing, AppSettings, Apps, api_key_digest};
use pushgate_api::certificates::CertificateWatch;
use pushgate_api::limits::{InboundLimits, InboundSettings};
use pushgate_api::metrics::Metrics;
use pushgate_api::origin::OriginCheck;
use pushgate_api::{AppState, DeliveryStatus, PausedProvider, RouterOptions, UnreachableProvider, now_ms};
use pushgate_delivery::{DeliveryHandle, DeliveryMetrics, Worker};
use pushgate_domain::{AppId, Environment, OnlinePolicy, ProviderKind};
use pushgate_providers::SystemClock;
use pushgate_store::{ApiKeyKind, PgStore, SqliteStore, Store, StoreError, StoredApiKey};
use secrecy::{ExposeSecret as _, SecretString};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// An API key pushgate made for an app that had none. It exists in clear
/// only here, to be shown once; the store keeps its digest.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The app the key opens.
    pub app_id: AppId,
    /// The key itself.
    pub key: SecretString,
}

/// A bound listener with everything behind it, ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    generated_keys: Vec<GeneratedKey>,
    /// `None` on an API-only node.
    worker: Option<Arc<Worker>>,
    /// On a shared store and a node that accepts: the store to announce
    /// work on, and the signal that work was accepted.
    announcer: Option<(Arc<dyn Store>, Arc<tokio::sync::Notify>)>,
    /// Closed cleanly once the server stopped.
    store: Arc<dyn Store>,
    /// The API keys, refreshed from the store while serving.
    keyring: KeyRefresh,
    /// The console's history and the metrics it samples.
    history: (Arc<Console>, Arc<Metrics>),
    /// Drains the worker at a stop.
    delivery: Arc<DeliveryHandle>,
    /// How long a stop waits for requests and sends under way.
    grace: Duration,
    /// Reads credentials again (SIGHUP, `POST /admin/api/reload`).
    reloader: Arc<Reloader>,
    hangups: Hangups,
    /// The certificates to watch, and their metric.
    certificates: (Arc<CertificateWatch>, Family<CertificateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>),
}

/// How long a key created or revoked with `pushgate keys` (in the store)
/// takes at most to open, or stop opening, its app on a running node.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// The configured keys, and the ring the API checks keys against: the ring
/// is rebuilt from them and the store's keys every [`KEY_REFRESH_INTERVAL`].
#[derive(Debug, Default)]
struct KeyRefresh {
    configured: Vec<(AppId, [u8; 32])>,
    ring: Arc<ApiKeyRing>,
}

impl KeyRefresh {
    /// The keys that open each app: its configured ones and those created
    /// with `pushgate keys`; its generated one only while none is configured.
    fn keys(&self, stored: &[StoredApiKey]) -> Vec<(AppId, [u8; 32])> {
        let configured = |app: &AppId| self.configured.iter().any(|(owner, _)| owner == app);
        let stored = stored
            .iter()
            .filter(|key| key.kind == ApiKeyKind::Created || !configured(&key.app_id))
            .map(|key| (key.app_id.clone(), key.digest));
        self.configured.iter().cloned().chain(stored).collect()
    }

    async fn run(self, store: Arc<dyn Store>) {
        loop {
            tokio::time::sleep(KEY_REFRESH_INTERVAL).await;
            match store.api_keys().await {
                Ok(stored) => self.ring.replace_all(self.keys(&stored)),
                Err(error) => {
                    tracing::warn!(error = %error, "cannot refresh the API keys from the store; keeping the ones known")
                }
            }
        }
    }
}

/// Picks the one rustls crypto provider of the whole binary (aws-lc-rs).
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is the goal.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Starts logging to standard error as the configuration says; `RUST_LOG` wins.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colour codes only for a person at a terminal, never into a file or a log shipper.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

impl Application {
    /// Opens the store, loads and (where an app has none) generates API keys,
    /// builds the router and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_as(config, Role::All).await
    }

    /// As [`Application::build`], for one side of a split deployment: `Api`
    /// serves the API and runs no worker; `Worker` delivers and serves only
    /// the operations routes (health, readiness, metrics).
    pub async fn build_as(config: &Config, role: Role) -> anyhow::Result<Self> {
        install_crypto_provider();
        // The listener and the server's own certificate first: a key is
        // generated (and shown) only once nothing else can stop the start,
        // so a start that fails never leaves a stored key nobody has seen.
        let listener = std::net::TcpListener::bind(config.server.listen)
            .with_context(|| format!("binding {}", config.server.listen))?;
        listener.set_nonblocking(true).context("setting the listener non-blocking")?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .context("loading server.tls_cert and server.tls_key")?,
            ),
            _ => None,
        };
        let store = open_store(&config.store.url).await.with_context(|| {
            // The URL may carry a password: only its scheme is shown.
            let scheme = config.store.url.split(':').next().unwrap_or_default();
            format!("opening the store ({scheme})")
        })?;

        let mut apps = Apps::new();
        let mut providers = std::collections::HashMap::new();
        let keys = ApiKeyRing::default();
        let mut keyring = KeyRefresh::default();
        for (id, app) in config.app_ids() {
            if app.apns.is_none() && app.fcm.is_none() && app.webpush.is_none() {
                tracing::warn!(app.id = %id, "this app has no provider configured ([apps.apns], [apps.fcm] or [apps.webpush]): its pushes are accepted and every delivery is skipped");
            }
            providers.insert(
                id.clone(),
                app_providers(&id, app, config.max_attempts(app), &store)
                    .with_context(|| format!("setting up the providers of app {id}"))?,
            );
            let default_environment = app.apns.as_ref().map_or(Environment::Production, |apns| apns.environment);
            let max_age_ms = config.max_age_ms(app);
            let vapid_public_key =
                app.webpush.as_ref().map(crate::providers::configured_vapid_public_key).transpose()?;
            let origin = app.generic_push.as_ref().map_or_else(OriginCheck::default, |generic| {
                OriginCheck::new(
                    generic.secret.as_ref().map(|secret| secret.expose_secret().as_bytes().to_vec()),
                    generic.allow_ips.clone(),
                    generic.signature_tolerance_seconds,
                )
            });
            apps.insert(
                id.clone(),
                Arc::new(AppSettings {
                    id: id.clone(),
                    default_environment,
                    max_age_ms,
                    origin,
                    // Validated with the configuration.
                    online_policy: OnlinePolicy::parse(&app.routing.online).unwrap_or_default(),
                    count_muted_rooms: app.routing.count_muted_rooms,
                    webpush_endpoints: app.webpush.as_ref().map(WebPushConfig::endpoints).unwrap_or_default(),
                    vapid_public_key,
                    client_auth: app
                        .imkit
                        .as_ref()
                        .map(crate::providers::client_auth)
                        .transpose()
                        .with_context(|| format!("setting up the client credentials of app {id}"))?
                        .map(Arc::new),
                    inbound: Arc::new(InboundLimits::new(InboundSettings {
                        requests_per_second: app.limits.requests_per_second,
                        burst: app.limits.burst,
                        in_flight: app.limits.in_flight,
                    })),
                }),
            );
            for key in &app.api_keys {
                keyring.configured.push((id.clone(), api_key_digest(key.expose_secret())));
            }
        }
        let stored = store.api_keys().await.context("loading API keys")?;
        for key in stored.iter().filter(|key| key.kind == ApiKeyKind::Generated) {
            if keyring.configured.iter().any(|(app, _)| *app == key.app_id) {
                tracing::info!(app.id = %key.app_id, "the app has configured API keys; its generated key no longer opens it");
            }
        }
        keys.replace_all(keyring.keys(&stored));
        let mut generated_keys = Vec::new();
        for id in apps.keys() {
            if !keys.has_key_for(id) {
                let key = generate_api_key()?;
                let digest = api_key_digest(key.expose_secret());
                let generated =
                    StoredApiKey { app_id: id.clone(), digest, kind: ApiKeyKind::Generated, created_at_ms: now_ms() };
                let kept = store.insert_api_key(&generated).await.context("storing a generated API key")?;
                if kept {
                    keys.insert(id.clone(), digest);
                    tracing::info!(app.id = %id, "generated an API key for an app that had none");
                    generated_keys.push(GeneratedKey { app_id: id.clone(), key });
                } else {
                    // Another node sharing the store generated the app's key
                    // first: that one opens it, and it was shown there.
                    let theirs = store.api_keys().await.context("loading API keys")?;
                    for stored in theirs.into_iter().filter(|stored| &stored.app_id == id) {
                        keys.insert(stored.app_id, stored.digest);
                    }
                    tracing::info!(app.id = %id, "another node generated this app's API key first; using it");
                }
            }
        }

        // One registry for the instance: the worker's metrics and the API's,
        // rendered together at `/metrics`.
        let mut registry = prometheus_client::registry::Registry::with_prefix("pushgate");
        let delivery_metrics = DeliveryMetrics::register(&mut registry);
        let certificates = Arc::new(CertificateWatch(config.certificates()));
        let certificate_days = Family::<CertificateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "certificate_expiry_days",
            "Days until a certificate expires (server_tls, apns per app); negative once expired",
            certificate_days.clone(),
        );
        let metrics = Arc::new(Metrics::new(registry));
        let delivery = Arc::new(DeliveryHandle::default());
        let worker = Arc::new(Worker::new(
            Arc::clone(&store),
            providers,
            config.delivery.clone(),
            Arc::clone(&delivery),
            delivery_metrics.clone(),
            Arc::new(SystemClock),
        ));
        // On a shared store, the other nodes hear of every accept (at most
        // one announcement per ANNOUNCE_INTERVAL): their workers may be the
        // ones to deliver it. A worker-only node accepts nothing.
        let announcer = (store.is_shared() && role != Role::Worker)
            .then(|| (Arc::clone(&store), Arc::new(tokio::sync::Notify::new())));
        keys.set_admin_keys(config.admin.api_keys.iter().map(|key| api_key_digest(key.expose_secret())).collect());
        let keys = Arc::new(keys);
        keyring.ring = Arc::clone(&keys);
        let console = Arc::new(Console::default());
        let history = (Arc::clone(&console), Arc::clone(&metrics));
        let worker = (role != Role::Api).then_some(worker);
        let vapid_keys = apps.iter().map(|(id, app)| (id.clone(), app.vapid_public_key.clone())).collect();
        let reloader = Arc::new(Reloader::new(worker.clone(), Arc::clone(&store), tls.clone(), vapid_keys));
        let state = AppState {
            store: Arc::clone(&store),
            apps: Arc::new(apps),
            keys,
            metrics,
            delivery: Arc::new(WorkerStatus {
                handle: Arc::clone(&delivery),
                store: Arc::clone(&store),
                metrics: delivery_metrics,
                local: role != Role::Api,
                announce: announcer.as_ref().map(|(_, wanted)| Arc::clone(wanted)),
            }),
            console,
            certificates: Arc::clone(&certificates),
            reload: Some(Arc::clone(&reloader) as Arc<dyn pushgate_api::Reload>),
        };
        let options =
            RouterOptions { max_body_bytes: config.server.max_body_bytes, operations_only: role == Role::Worker };
        let router = pushgate_api::router(state, &options);

        let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
        Ok(Self {
            listener,
            local_addr,
            router,
            tls,
            generated_keys,
            worker,
            announcer,
            store,
            keyring,
            history,
            delivery,
            grace,
            certificates: (certificates, certificate_days),
            reloader,
            hangups: listen_for_hangups(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://` or `https://` and the bound address.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Where the configuration came from: a reload (SIGHUP, `POST
    /// /admin/api/reload`) reads it again. Without one, a reload is refused.
    pub fn reload_from(&self, source: ConfigSource) {
        self.reloader.set_source(source);
    }

    /// Keys generated during [`Application::build`], to be shown once.
    pub fn take_generated_keys(&mut self) -> Vec<GeneratedKey> {
        std::mem::take(&mut self.generated_keys)
    }

    /// Serves HTTP/1.1 and HTTP/2 (over TLS when configured, h2c otherwise)
    /// until `shutdown` completes, then drains within the grace time:
    /// readiness fails at once, the listener closes and the requests under
    /// way finish, the worker claims nothing more and the sends under way
    /// finish and are recorded. Whatever is still under way when the grace
    /// time is up is released, due again at once (for another node, or at
    /// the next start).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let worker = self.worker.map(|worker| (Arc::clone(&worker), worker.spawn()));
        let stop_announcer =
            self.announcer.map(|(store, wanted)| AbortOnDrop(tokio::spawn(announce_work(store, wanted))));
        let stop_key_refresh = AbortOnDrop(tokio::spawn(self.keyring.run(Arc::clone(&self.store))));
        let (console, metrics) = self.history;
        let stop_history = AbortOnDrop(tokio::spawn(console.record_history(metrics)));
        let (watch, days) = self.certificates;
        let stop_certificates = AbortOnDrop(tokio::spawn(watch_certificates(watch, days)));
        let stop_hangups = AbortOnDrop(tokio::spawn(reload_on_hangup(Arc::clone(&self.reloader), self.hangups)));
        // The stop: readiness first, then the listener.
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let delivery = Arc::clone(&self.delivery);
        tokio::spawn(async move {
            shutdown.await;
            delivery.drain();
            tracing::info!("stopping: not ready, closing the listener, finishing what is under way");
            let _ = stopping.send(true);
        });
        let stop_requested = {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let grace = self.grace;
        // The peer address is kept for the callbacks' IP allowlists.
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let served = match self.tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    stop_requested.await;
                    stopper.graceful_shutdown(Some(grace));
                });
                axum_server::from_tcp_rustls(self.listener, tls)
                    .context("serving HTTPS")?
                    .handle(handle)
                    .serve(service)
                    .await
                    .context("serving HTTPS")
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(self.listener).context("adopting the listener")?;
                let serving = axum::serve(listener, service).with_graceful_shutdown(stop_requested);
                let mut stopped = stopped.clone();
                let mut serving = std::pin::pin!(serving.into_future());
                tokio::select! {
                    served = &mut serving => served.context("serving HTTP"),
                    // Requests still under way when the grace time is up are cut off.
                    () = async {
                        let _ = stopped.wait_for(|stop| *stop).await;
                        tokio::time::sleep(grace).await;
                    } => {
                        tracing::warn!(grace_seconds = grace.as_secs(), "requests were still under way when the grace time ran out");
                        Ok(())
                    }
                }
            }
        };
        if let Some((worker, task)) = worker {
            self.delivery.drain();
            let mut task = AbortOnDrop(task);
            if tokio::time::timeout(grace, &mut task.0).await.is_err() {
                let released = worker.release_in_flight().await;
                tracing::warn!(
                    deliveries = released,
                    grace_seconds = grace.as_secs(),
                    "sends were still under way when the grace time ran out; released, due again"
                );
            }
        }
        drop((stop_announcer, stop_key_refresh, stop_history, stop_certificates, stop_hangups));
        self.store.close().await;
        served
    }
}

/// What a pushgate process runs (`pushgate serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API and the delivery worker (the default).
    All,
    /// The API only: pushes are stored for the worker nodes to deliver.
    Api,
    /// The delivery worker only, with the operations routes.
    Worker,
}

/// SIGHUP, listened for from when the application is built (so a hangup
/// right after the server says it listens reloads rather than kills it).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn listen_for_hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /admin/api/reload"))
            .ok()
    }
    #[cfg(not(unix))]
    None
}

/// Reads the credentials again on every SIGHUP (the reload logs its outcome).
async fn reload_on_hangup(reloader: Arc<Reloader>, hangups: Hangups) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reading the credentials again");
            let _ = pushgate_api::Reload::reload(reloader.as_ref()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = (reloader, hangups);
}

/// The labels of `pushgate_certificate_expiry_days`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CertificateLabels {
    /// The app; empty for the server's own certificate.
    app: String,
    /// `server_tls` or `apns`.
    certificate: String,
}

/// How often the certificates' days are counted again (and logged when near).
const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Sets each certificate's days left, every [`CERTIFICATE_CHECK_INTERVAL`]
/// from the start, with a warning in the log within 30 days of its expiry
/// and an error once it has expired.
async fn watch_certificates(
    watch: Arc<CertificateWatch>,
    days: Family<CertificateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
) {
    let mut ticks = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    loop {
        ticks.tick().await;
        let now = now_ms();
        for watched in &watch.0 {
            let labels = CertificateLabels {
                app: watched.app.clone().unwrap_or_default(),
                certificate: watched.certificate.to_owned(),
            };
            days.get_or_create(&labels).set((watched.not_after_ms - now) as f64 / 86_400_000.0);
        }
        for found in watch.expiring(now) {
            if found.state == "expired" {
                tracing::error!(
                    certificate = found.key,
                    days = -found.days_left,
                    "the certificate has expired: replace it"
                );
            } else {
                tracing::warn!(
                    certificate = found.key,
                    days = found.days_left,
                    "the certificate expires soon: replace it"
                );
            }
        }
    }
}

/// The API's view of the worker.
#[derive(Debug)]
struct WorkerStatus {
    handle: Arc<DeliveryHandle>,
    /// The store an operator's resume expedites held deliveries in.
    store: Arc<dyn Store>,
    /// The worker's metrics, whose pause gauge a resume lowers.
    metrics: DeliveryMetrics,
    /// Whether this process runs a worker (an API-only node has none of
    /// its own to wait for).
    local: bool,
    /// Asks [`announce_work`] to tell the other nodes, on a shared store.
    announce: Option<Arc<tokio::sync::Notify>>,
}

/// The shortest time between two announcements of work to the other nodes:
/// accepts in between share the next one.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(10);

/// Announces work to the nodes sharing the store each time `wanted` is
/// notified, at most once per [`ANNOUNCE_INTERVAL`] (a `NOTIFY` per accept
/// would serialise the database's commits on its notification queue).
async fn announce_work(store: Arc<dyn Store>, wanted: Arc<tokio::sync::Notify>) {
    let Some(cluster) = store.cluster() else { return };
    loop {
        wanted.notified().await;
        if let Err(error) = cluster.announce_work().await {
            tracing::warn!(error = %error, "cannot tell the other nodes of new work; they find it at their next poll");
        }
        tokio::time::sleep(ANNOUNCE_INTERVAL).await;
    }
}

#[async_trait::async_trait]
impl DeliveryStatus for WorkerStatus {
    fn wake(&self) {
        self.handle.wake();
        if let Some(announce) = &self.announce {
            announce.notify_one();
        }
    }

    fn is_running(&self) -> bool {
        !self.local || self.handle.is_running()
    }

    fn is_draining(&self) -> bool {
        self.handle.is_draining()
    }

    fn paused_providers(&self) -> Vec<PausedProvider> {
        self.handle
            .pauses
            .snapshot()
            .into_iter()
            .map(|pause| PausedProvider {
                app: pause.app.to_string(),
                provider: pause.provider.to_string(),
                reason: pause.reason,
                until_ms: pause.until_ms,
            })
            .collect()
    }

    fn unreachable_providers(&self) -> Vec<UnreachableProvider> {
        self.handle
            .reach
            .unreachable()
            .into_iter()
            .map(|(app, provider, run)| UnreachableProvider {
                app: app.to_string(),
                provider: provider.to_string(),
                sends: run.sends,
                since_ms: run.since_ms,
                reason: run.reason,
            })
            .collect()
    }

    async fn resume(&self, app: &AppId, provider: ProviderKind) -> Result<bool, StoreError> {
        let resumed = self.handle.resume(self.store.as_ref(), app, provider, now_ms()).await?;
        if resumed {
            self.metrics.provider_paused(app, provider, false);
        }
        Ok(resumed)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// 32 random bytes from the operating system, base64url: 256 bits of key.
pub(crate) fn generate_api_key() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness from the OS: {error}"))?;
    Ok(SecretString::from(format!("pgk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))))
}

/// A future that resolves when the process is asked to stop (Ctrl-C or
/// SIGTERM). The handlers are installed when this is called, not when the
/// future is first polled, so a signal that comes right after the server
/// says it listens is never taken by the default action (an unclean exit).
/// Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = signals;
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let terminate = async {
                match terminate.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupt => {},
                () = terminate => {},
            }
        }
        #[cfg(not(unix))]
        {
            // If the handler cannot be installed, the server runs until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The store `url` names (the configuration checked that it names one).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, pushgate_store::StoreError> {
    Ok(match StoreKind::of(url) {
        Some(StoreKind::Postgres) => Arc::new(PgStore::open(url).await?),
        _ => Arc::new(SqliteStore::open(url).await?),
    })
}
