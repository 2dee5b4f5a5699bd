//! Credentials read again without a restart (SIGHUP, `POST /admin/api/reload`):
//! the configuration file is read again and, for every app the instance
//! serves, its providers are built anew from it (APNs key or certificate, FCM
//! service account, Web Push key) and swapped into the worker at once; the
//! server's own TLS certificate is swapped into the listener. Sends under way
//! finish with the old clients. Any file that does not load refuses the whole
//! reload, with the file named, and the old credentials stay.
//!
//! What a reload does not change (apps added or removed, keys, limits,
//! routing, the store) needs a restart: the process keeps serving as it was
//! started. A Web Push key cannot change either: browsers subscribed with
//! the public half pushgate served, and their subscriptions would all break.

use crate::config::Config;
use crate::providers::{app_providers, configured_vapid_public_key};
use anyhow::Context as _;
use pushgate_delivery::Worker;
use pushgate_domain::AppId;
use pushgate_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// Where the configuration came from, to read it again.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file, if any.
    pub file: Option<PathBuf>,
    /// The `PUSHGATE_…` variables it was read with.
    pub environment: Vec<(String, String)>,
}

/// The instance's reload.
#[derive(Debug)]
pub struct Reloader {
    source: Mutex<Option<ConfigSource>>,
    worker: Option<Arc<Worker>>,
    store: Arc<dyn Store>,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    /// Each app served, with the VAPID public key it serves (if any).
    apps: HashMap<AppId, Option<String>>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        worker: Option<Arc<Worker>>,
        store: Arc<dyn Store>,
        tls: Option<axum_server::tls_rustls::RustlsConfig>,
        apps: HashMap<AppId, Option<String>>,
    ) -> Self {
        Self { source: Mutex::new(None), worker, store, tls, apps, running: tokio::sync::Mutex::new(()) }
    }

    /// Where to read the configuration again from.
    pub fn set_source(&self, source: ConfigSource) {
        *self.source.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// Reads the credentials again and swaps them in; answers what was
    /// reloaded, or why nothing was.
    pub async fn reload(&self) -> anyhow::Result<Vec<String>> {
        let _one_at_a_time = self.running.lock().await;
        let source = self.source.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let source = source.context("this instance was started without a configuration to read again")?;
        let config = Config::load(source.file.as_deref(), source.environment)
            .map_err(|error| anyhow::anyhow!("the configuration does not load: {error}"))?;
        let mut providers = HashMap::new();
        let mut reloaded = Vec::new();
        for (id, served_key) in &self.apps {
            let (_, app) = config
                .app(id.as_str())
                .with_context(|| format!("app {id} is no longer there (a restart removes an app)"))?;
            if let Some(webpush) = &app.webpush {
                let key = configured_vapid_public_key(webpush)?;
                anyhow::ensure!(
                    served_key.as_deref() == Some(key.as_str()),
                    "app {id}: {} is another Web Push key than the one browsers subscribed with; a restart changes it",
                    webpush.vapid_private_key_file.display()
                );
            }
            if self.worker.is_some() {
                let built = app_providers(id, app, config.max_attempts(app), &self.store)
                    .with_context(|| format!("app {id}"))?;
                providers.insert(id.clone(), built);
                reloaded.push(format!("providers of app {id}"));
            }
        }
        let tls = match (&self.tls, &config.server.tls_cert, &config.server.tls_key) {
            (Some(tls), Some(cert), Some(key)) => Some((tls, cert, key)),
            _ => None,
        };
        // Everything is loaded before anything is swapped: a bad file changes nothing.
        if let Some((tls, cert, key)) = tls {
            tls.reload_from_pem_file(cert, key)
                .await
                .with_context(|| format!("the server certificate {} and key {}", cert.display(), key.display()))?;
            reloaded.push("the server's TLS certificate".into());
        }
        if let Some(worker) = &self.worker {
            worker.replace_providers(providers);
        }
        reloaded.sort();
        Ok(reloaded)
    }
}

#[async_trait::async_trait]
impl pushgate_api::Reload for Reloader {
    async fn reload(&self) -> Result<Vec<String>, String> {
        match Reloader::reload(self).await {
            Ok(reloaded) => {
                tracing::info!(reloaded = ?reloaded, "credentials reloaded");
                Ok(reloaded)
            }
            Err(error) => {
                let why = format!("{error:#}");
                tracing::error!(error = %why, "credentials not reloaded; the old ones stay");
                Err(why)
            }
        }
    }
}
