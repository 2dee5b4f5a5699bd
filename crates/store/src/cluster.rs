//! What the nodes sharing one store agree on besides the queue: the budget of
//! a provider's rate limit and the pauses of an app's providers. A store one
//! process owns (SQLite) has no [`Cluster`]: the worker's in-process limiter
//! and pauses are the whole truth there.

use crate::StoreError;
use async_trait::async_trait;
use pushgate_domain::{AppId, ProviderKind};

/// An app's provider paused for every node, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPause {
    /// The app.
    pub app_id: AppId,
    /// The provider that refused it.
    pub provider: ProviderKind,
    /// What the provider answered.
    pub reason: String,
    /// When the next probe may go, Unix ms.
    pub until_ms: i64,
}

/// Shared state of the nodes on one store (PostgreSQL).
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Takes up to `want` sends from the budget `key` (an app's provider)
    /// allows in the one-second window `window_s` (Unix seconds), where the
    /// nodes together may make `limit`; answers how many were granted (0
    /// when the window's budget is spent). A node whose clock runs behind
    /// takes from the latest window any node has opened.
    async fn take_send_budget(&self, key: &str, window_s: i64, want: u32, limit: u32) -> Result<u32, StoreError>;

    /// The provider refused the app: pauses it for every node and answers
    /// until when. A pause still running (another node refused first, or
    /// re-paused after its probe) is kept as it is; one that has run out
    /// (a failed probe) is renewed for twice its last length, at most
    /// `max_ms`; a new one lasts `base_ms`.
    async fn pause_provider(
        &self,
        pause: &SharedPause,
        now_ms: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> Result<i64, StoreError>;

    /// The provider accepted the app again: resumes it for every node.
    /// Answers whether it was paused.
    async fn resume_provider(&self, app_id: &AppId, provider: ProviderKind) -> Result<bool, StoreError>;

    /// Every paused provider.
    async fn provider_pauses(&self) -> Result<Vec<SharedPause>, StoreError>;

    /// Tells every node waiting in [`Cluster::wait_for_work`] that work
    /// arrived (a push accepted on a node whose worker may not be the one
    /// to deliver it).
    async fn announce_work(&self) -> Result<(), StoreError>;

    /// Calls `on_work` once when listening starts (something may have been
    /// announced before) and after every announcement, until the connection
    /// fails (answered as the error; call again to listen again).
    async fn wait_for_work(&self, on_work: &(dyn Fn() + Send + Sync)) -> Result<(), StoreError>;
}
