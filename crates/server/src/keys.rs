//! `pushgate keys create|list|revoke`: API keys kept in the store, beside
//! the configured ones. Only a key's SHA-256 digest is stored; a new key is
//! printed once. A key is named by its id, the first 12 hex digits of its
//! digest (which says nothing of the key). Running nodes take changes on
//! within `startup::KEY_REFRESH_INTERVAL`.

use crate::config::Config;
use crate::startup::{generate_api_key, open_store};
use anyhow::Context as _;
use pushgate_api::auth::api_key_digest;
use pushgate_domain::AppId;
use pushgate_store::{ApiKeyKind, StoredApiKey};
use secrecy::{ExposeSecret as _, SecretString};

/// One key, as `keys list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRow {
    /// The app it opens.
    pub app: String,
    /// Its id: the first 12 hex digits of its digest.
    pub id: String,
    /// `configured` (in the configuration), `created` (`keys create`) or
    /// `generated` (by pushgate for an app that had none).
    pub kind: &'static str,
    /// When it was stored (Unix ms); none for a configured key.
    pub created_at_ms: Option<i64>,
    /// Whether it opens its app now (a generated key stops once keys are configured).
    pub active: bool,
}

/// A key's id.
pub fn key_id(digest: &[u8; 32]) -> String {
    digest[..6].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Makes and stores a key for `app`; answers it (shown once) and its id.
pub async fn create(config: &Config, app: &str) -> anyhow::Result<(SecretString, String)> {
    let (app_id, _) = config.app(app)?;
    let store = open_store(&config.store.url).await.context("opening the store")?;
    let key = generate_api_key()?;
    let digest = api_key_digest(key.expose_secret());
    let created_at_ms = pushgate_api::now_ms();
    store.create_api_key(&StoredApiKey { app_id, digest, kind: ApiKeyKind::Created, created_at_ms }).await?;
    store.close().await;
    Ok((key, key_id(&digest)))
}

/// Every key: configured, created and generated.
pub async fn list(config: &Config) -> anyhow::Result<Vec<KeyRow>> {
    let store = open_store(&config.store.url).await.context("opening the store")?;
    let stored = store.api_keys().await?;
    store.close().await;
    let configured: Vec<(AppId, [u8; 32])> = config
        .app_ids()
        .flat_map(|(id, app)| app.api_keys.iter().map(move |key| (id.clone(), api_key_digest(key.expose_secret()))))
        .collect();
    let has_configured = |app: &AppId| configured.iter().any(|(owner, _)| owner == app);
    let mut rows: Vec<KeyRow> = configured
        .iter()
        .map(|(app, digest)| KeyRow {
            app: app.to_string(),
            id: key_id(digest),
            kind: "configured",
            created_at_ms: None,
            active: true,
        })
        .collect();
    rows.extend(stored.iter().map(|key| KeyRow {
        app: key.app_id.to_string(),
        id: key_id(&key.digest),
        kind: key.kind.as_str(),
        created_at_ms: Some(key.created_at_ms),
        active: key.kind == ApiKeyKind::Created || !has_configured(&key.app_id),
    }));
    Ok(rows)
}

/// Deletes the stored key whose id starts with `id` (at least 8 digits, one
/// key only); answers the revoked key's app and id. A configured key is
/// removed from the configuration instead.
pub async fn revoke(config: &Config, id: &str) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(id.len() >= 8, "give at least 8 digits of the key's id (pushgate keys list)");
    let store = open_store(&config.store.url).await.context("opening the store")?;
    let matching: Vec<StoredApiKey> =
        store.api_keys().await?.into_iter().filter(|key| key_id(&key.digest).starts_with(id)).collect();
    let key = match matching.as_slice() {
        [key] => key.clone(),
        [] => {
            let configured = list_configured_ids(config).any(|configured| configured.starts_with(id));
            anyhow::ensure!(
                !configured,
                "key {id} is in the configuration: remove it there (api_keys or api_keys_file)"
            );
            anyhow::bail!("no stored key has an id starting with {id}")
        }
        _ => anyhow::bail!("{} stored keys have an id starting with {id}: give more digits", matching.len()),
    };
    store.revoke_api_key(&key.digest).await?;
    store.close().await;
    Ok((key.app_id.to_string(), key_id(&key.digest)))
}

fn list_configured_ids(config: &Config) -> impl Iterator<Item = String> + '_ {
    config.apps.iter().flat_map(|app| app.api_keys.iter().map(|key| key_id(&api_key_digest(key.expose_secret()))))
}
