//! Each configured app as the API and the worker see it: its settings
//! (origin check, limits, routing, client credentials, Web Push key) and its
//! providers.

use crate::config::{Config, WebPushConfig};
use crate::providers::app_providers;
use anyhow::Context as _;
use pushgate_api::auth::{ApnsAuth, AppSettings, Apps};
use pushgate_api::limits::{InboundLimits, InboundSettings};
use pushgate_api::origin::OriginCheck;
use pushgate_delivery::AppProviders;
use pushgate_domain::{AppId, Environment, OnlinePolicy};
use pushgate_store::Store;
use secrecy::ExposeSecret as _;
use std::collections::HashMap;
use std::sync::Arc;

/// Every configured app: its settings for the API, its providers for the
/// worker, and its configured API keys' digests.
pub(super) struct ConfiguredApps {
    pub(super) settings: Apps,
    pub(super) providers: HashMap<AppId, AppProviders>,
    pub(super) api_keys: Vec<(AppId, [u8; 32])>,
}

/// Builds every configured app; a provider credential or client-credential
/// setting that does not load fails the start, naming the app.
pub(super) fn configured_apps(config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<ConfiguredApps> {
    let mut apps = ConfiguredApps { settings: Apps::new(), providers: HashMap::new(), api_keys: Vec::new() };
    for (id, app) in config.app_ids() {
        if app.apns.is_none() && app.fcm.is_none() && app.webpush.is_none() {
            tracing::warn!(app.id = %id, "this app has no provider configured ([apps.apns], [apps.fcm] or [apps.webpush]): its pushes are accepted and every delivery is skipped");
        }
        apps.providers.insert(
            id.clone(),
            app_providers(&id, app, config.max_attempts(app), store)
                .with_context(|| format!("setting up the providers of app {id}"))?,
        );
        let origin = app.generic_push.as_ref().map_or_else(OriginCheck::default, |generic| {
            OriginCheck::new(
                generic.secret.as_ref().map(|secret| secret.expose_secret().as_bytes().to_vec()),
                generic.allow_ips.clone(),
                generic.signature_tolerance_seconds,
            )
        });
        let settings = AppSettings {
            id: id.clone(),
            default_environment: app.apns.as_ref().map_or(Environment::Production, |apns| apns.environment),
            max_age_ms: config.max_age_ms(app),
            origin,
            // Validated with the configuration.
            online_policy: OnlinePolicy::parse(&app.routing.online).unwrap_or_default(),
            count_muted_rooms: app.routing.count_muted_rooms,
            coalescing_window_ms: i64::from(app.coalescing.window_seconds) * 1000,
            webpush_endpoints: app.webpush.as_ref().map(WebPushConfig::endpoints).unwrap_or_default(),
            vapid_public_key: app.webpush.as_ref().map(crate::providers::configured_vapid_public_key).transpose()?,
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
            critical_alerts: app.apns.as_ref().is_some_and(|apns| apns.critical_alerts),
            channels: app
                .apns
                .as_ref()
                .map(crate::providers::apns_channels)
                .transpose()
                .with_context(|| format!("setting up the broadcast channels of app {id}"))?
                .flatten(),
            apns_auth: app
                .apns
                .as_ref()
                .map(|apns| if apns.certificate_file.is_some() { ApnsAuth::Certificate } else { ApnsAuth::Token }),
        };
        apps.settings.insert(id.clone(), Arc::new(settings));
        for key in &app.api_keys {
            apps.api_keys.push((id.clone(), pushgate_api::auth::api_key_digest(key.expose_secret())));
        }
    }
    Ok(apps)
}
