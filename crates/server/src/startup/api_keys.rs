//! The API keys a node checks: the configured ones, those an operator
//! created with `pushgate keys`, and the one generated for an app that has
//! none; the ring is rebuilt from the configuration and the store every
//! [`KEY_REFRESH_INTERVAL`], on every node.

use anyhow::Context as _;
use base64::Engine as _;
use pushgate_api::auth::{ApiKeyRing, Apps, api_key_digest};
use pushgate_api::now_ms;
use pushgate_domain::AppId;
use pushgate_store::{ApiKeyKind, Store, StoredApiKey};
use secrecy::SecretString;
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

/// How long a key created or revoked with `pushgate keys` (in the store)
/// takes at most to open, or stop opening, its app on a running node.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// The configured keys, and the ring the API checks keys against: the ring
/// is rebuilt from them and the store's keys every [`KEY_REFRESH_INTERVAL`].
#[derive(Debug, Default)]
pub(super) struct KeyRefresh {
    pub(super) configured: Vec<(AppId, [u8; 32])>,
    pub(super) ring: Arc<ApiKeyRing>,
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

    pub(super) async fn run(self, store: Arc<dyn Store>) {
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

/// Loads the keys that open each app into `keyring`'s ring (the configured
/// ones are in it already), and generates a key for every app that has none:
/// kept only if no other node sharing the store made one first. Answers the
/// keys generated here, to be shown once.
pub(super) async fn load(keyring: &KeyRefresh, apps: &Apps, store: &dyn Store) -> anyhow::Result<Vec<GeneratedKey>> {
    let keys = &keyring.ring;
    let stored = store.api_keys().await.context("loading API keys")?;
    for key in stored.iter().filter(|key| key.kind == ApiKeyKind::Generated) {
        if keyring.configured.iter().any(|(app, _)| *app == key.app_id) {
            tracing::info!(app.id = %key.app_id, "the app has configured API keys; its generated key no longer opens it");
        }
    }
    keys.replace_all(keyring.keys(&stored));
    let mut generated_keys = Vec::new();
    for id in apps.keys() {
        if keys.has_key_for(id) {
            continue;
        }
        let key = generate_api_key()?;
        let digest = api_key_digest(secrecy::ExposeSecret::expose_secret(&key));
        let generated =
            StoredApiKey { app_id: id.clone(), digest, kind: ApiKeyKind::Generated, created_at_ms: now_ms() };
        if store.insert_api_key(&generated).await.context("storing a generated API key")? {
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
    Ok(generated_keys)
}

/// 32 random bytes from the operating system, base64url: 256 bits of key.
pub fn generate_api_key() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness from the OS: {error}"))?;
    Ok(SecretString::from(format!("pgk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))))
}
