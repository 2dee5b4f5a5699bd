//! The composition root: from a validated [`Config`] to a bound,
//! ready-to-serve [`Application`], and its run until a stop. What each part
//! is, is built elsewhere: the apps (`apps`), the API keys (`api_keys`), the
//! API's view of the worker (`status`), the certificate watch
//! (`certificates`), signals (`signals`), logging (`telemetry`).

mod api_keys;
mod apps;
mod certificates;
mod signals;
mod status;
mod telemetry;

pub use api_keys::{GeneratedKey, KEY_REFRESH_INTERVAL, generate_api_key};
pub use signals::shutdown_signal;
pub use telemetry::{Telemetry, init_logging, install_crypto_provider};

use crate::config::{Config, StoreKind};
use crate::reload::{ConfigSource, Reloader};
use anyhow::Context as _;
use api_keys::KeyRefresh;
use certificates::{CertificateDays, watch_certificates};
use pushgate_api::admin::Console;
use pushgate_api::auth::{ApiKeyRing, api_key_digest};
use pushgate_api::certificates::CertificateWatch;
use pushgate_api::metrics::Metrics;
use pushgate_api::{AppState, RouterOptions};
use pushgate_delivery::{DeliveryHandle, DeliveryMetrics, Worker};
use pushgate_providers::{Clock, SystemClock};
use pushgate_store::{PgStore, SqliteStore, Store};
use secrecy::ExposeSecret as _;
use signals::{Hangups, listen_for_hangups, reload_on_hangup};
use status::{WorkerStatus, announce_work};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// Whether [`Application::run_until_stopped`] runs the worker's loop
    /// (see [`Build::driven`]).
    worker_loop: bool,
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
    certificates: (Arc<CertificateWatch>, CertificateDays),
}

/// How to build an [`Application`]: its role, and for tests and tools the
/// worker's clock and whether its loop runs.
#[derive(Debug, Clone)]
pub struct Build {
    role: Role,
    clock: Arc<dyn Clock>,
    worker_loop: bool,
}

impl Build {
    /// A node of this role on the system clock, its worker's loop running.
    pub fn new(role: Role) -> Self {
        Self { role, clock: Arc::new(SystemClock), worker_loop: true }
    }

    /// The worker's loop does not run: whoever holds the application
    /// delivers by calling [`Worker::run_pending`] on [`Application::worker`]
    /// (the deterministic way to drive the queue, for tests and tools), on
    /// `clock`'s time. Readiness counts the worker as running.
    pub fn driven(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.worker_loop = false;
        self
    }
}

impl Application {
    /// Opens the store, loads and (where an app has none) generates API keys,
    /// builds the router and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with(config, Build::new(Role::All)).await
    }

    /// As [`Application::build`], for one side of a split deployment: `Api`
    /// serves the API and runs no worker; `Worker` delivers and serves only
    /// the operations routes (health, readiness, metrics).
    pub async fn build_as(config: &Config, role: Role) -> anyhow::Result<Self> {
        Self::build_with(config, Build::new(role)).await
    }

    /// As [`Application::build`], as `build` says.
    pub async fn build_with(config: &Config, build: Build) -> anyhow::Result<Self> {
        install_crypto_provider();
        let role = build.role;
        // The listener and the server's own certificate first: a key is
        // generated (and shown) only once nothing else can stop the start,
        // so a start that fails never leaves a stored key nobody has seen.
        let listen = config.server.listen;
        let listener = std::net::TcpListener::bind(listen).with_context(|| {
            format!(
                "binding {listen} (another process may hold it: pick another address: `--listen \
                 {ip}:0` for a free port, `[server] listen` or PUSHGATE_SERVER__LISTEN)",
                ip = listen.ip()
            )
        })?;
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

        let apps = apps::configured_apps(config, &store)?;
        let keyring = KeyRefresh { configured: apps.api_keys, ring: Arc::new(ApiKeyRing::default()) };
        let generated_keys = api_keys::load(&keyring, &apps.settings, store.as_ref()).await?;
        keyring
            .ring
            .set_admin_keys(config.admin.api_keys.iter().map(|key| api_key_digest(key.expose_secret())).collect());

        // One registry for the instance: the worker's metrics and the API's,
        // rendered together at `/metrics`.
        let mut registry = prometheus_client::registry::Registry::with_prefix("pushgate");
        let delivery_metrics = DeliveryMetrics::register(&mut registry);
        let certificates = Arc::new(CertificateWatch(config.certificates()));
        let certificate_days = CertificateDays::default();
        registry.register(
            "certificate_expiry_days",
            "Days until a certificate expires (server_tls, apns per app); negative once expired",
            certificate_days.clone(),
        );
        let metrics = Arc::new(Metrics::new(registry));
        let delivery = Arc::new(DeliveryHandle::default());
        let worker = (role != Role::Api).then(|| {
            Arc::new(Worker::new(
                Arc::clone(&store),
                apps.providers,
                config.delivery.clone(),
                Arc::clone(&delivery),
                delivery_metrics.clone(),
                build.clock,
            ))
        });
        if worker.is_some() && !build.worker_loop {
            // Driven by its holder: as ready as a running loop.
            delivery.set_running(true);
        }
        // On a shared store, the other nodes hear of every accept (at most
        // one announcement per ANNOUNCE_INTERVAL): their workers may be the
        // ones to deliver it. A worker-only node accepts nothing.
        let announcer = (store.is_shared() && role != Role::Worker)
            .then(|| (Arc::clone(&store), Arc::new(tokio::sync::Notify::new())));
        let console = Arc::new(Console::default());
        let vapid_keys = apps.settings.iter().map(|(id, app)| (id.clone(), app.vapid_public_key.clone())).collect();
        let reloader = Arc::new(Reloader::new(worker.clone(), Arc::clone(&store), tls.clone(), vapid_keys));
        let state = AppState {
            store: Arc::clone(&store),
            apps: Arc::new(apps.settings),
            keys: Arc::clone(&keyring.ring),
            metrics: Arc::clone(&metrics),
            delivery: Arc::new(WorkerStatus {
                handle: Arc::clone(&delivery),
                store: Arc::clone(&store),
                metrics: delivery_metrics,
                local: role != Role::Api,
                announce: announcer.as_ref().map(|(_, wanted)| Arc::clone(wanted)),
            }),
            console: Arc::clone(&console),
            certificates: Arc::clone(&certificates),
            reload: Some(Arc::clone(&reloader) as Arc<dyn pushgate_api::Reload>),
        };
        let options =
            RouterOptions { max_body_bytes: config.server.max_body_bytes, operations_only: role == Role::Worker };
        Ok(Self {
            listener,
            local_addr,
            router: pushgate_api::router(state, &options),
            tls,
            generated_keys,
            worker,
            worker_loop: build.worker_loop,
            announcer,
            store,
            keyring,
            history: (console, metrics),
            delivery,
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
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

    /// The delivery worker (`None` on an API-only node): to drive it with
    /// [`Worker::run_pending`] when it was built [`Build::driven`].
    pub fn worker(&self) -> Option<Arc<Worker>> {
        self.worker.clone()
    }

    /// The store this application opened.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
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
        let worker = self.worker.filter(|_| self.worker_loop).map(|worker| (Arc::clone(&worker), worker.spawn()));
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The store `url` names (the configuration checked that it names one).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, pushgate_store::StoreError> {
    Ok(match StoreKind::of(url) {
        Some(StoreKind::Postgres) => Arc::new(PgStore::open(url).await?),
        _ => Arc::new(SqliteStore::open(url).await?),
    })
}
