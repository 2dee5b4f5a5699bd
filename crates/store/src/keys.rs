//! API keys pushgate generated or an operator created, kept as SHA-256
//! digests, and [`KeyStore`]. Configured keys are never stored.

use crate::StoreError;
use async_trait::async_trait;
use pushgate_domain::AppId;

/// An API key pushgate generated, kept as a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// The app the key opens.
    pub app_id: AppId,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// Who made it.
    pub kind: ApiKeyKind,
    /// When it was made (Unix ms).
    pub created_at_ms: i64,
}

/// Who made a stored API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKeyKind {
    /// pushgate, for an app that had none (shown once at start); it stops
    /// opening the app once keys are configured for it.
    Generated,
    /// An operator (`pushgate keys create`); it opens the app until revoked.
    Created,
}

impl ApiKeyKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Created => "created",
        }
    }

    /// From its stored form.
    pub fn parse(stored: &str) -> Result<Self, StoreError> {
        match stored {
            "generated" => Ok(Self::Generated),
            "created" => Ok(Self::Created),
            other => Err(StoreError::Corrupt(format!("api_keys.kind {other:?}"))),
        }
    }
}

/// Stored API keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every stored API key (generated and created), for every app, oldest first.
    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError>;

    /// Keeps a generated key's digest, unless the app has a generated key
    /// already (another process sharing the store made one first): answers
    /// whether this one was kept. One app, one generated key.
    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError>;

    /// Keeps an operator's new key (its digest).
    async fn create_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError>;

    /// Forgets a stored key; answers whether there was one.
    async fn revoke_api_key(&self, digest: &[u8; 32]) -> Result<bool, StoreError>;
}
