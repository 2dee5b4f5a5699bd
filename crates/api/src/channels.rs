//! What the channel routes need of APNs' broadcast channels (iOS 18+): the
//! binary wires Apple's channel management API and broadcast endpoint in
//! behind [`BroadcastChannels`], so this crate never depends on the
//! providers' crate.

use pushgate_domain::Environment;

/// Why a channel request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelFailure {
    /// APNs answered with an error: its status and reason.
    Refused {
        /// The HTTP status APNs answered.
        status: u16,
        /// Apple's reason (`ChannelNotRegistered`, `BadChannelId`, …).
        reason: String,
    },
    /// APNs was not reached, or did not answer in time: why.
    Unreachable(String),
}

/// One channel, as APNs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    /// `message-storage-policy`: 0 (no message stored) or 1 (the most recent one).
    pub storage_policy: u8,
    /// `push-type` (`LiveActivity`).
    pub push_type: String,
}

/// One app's broadcast channels, per APNs environment.
#[async_trait::async_trait]
pub trait BroadcastChannels: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a channel; answers its id.
    async fn create(&self, environment: Environment, storage_policy: u8) -> Result<String, ChannelFailure>;
    /// Reads one channel.
    async fn read(&self, environment: Environment, channel_id: &str) -> Result<ChannelView, ChannelFailure>;
    /// Deletes one channel.
    async fn delete(&self, environment: Environment, channel_id: &str) -> Result<(), ChannelFailure>;
    /// Every channel of the app.
    async fn list(&self, environment: Environment) -> Result<Vec<String>, ChannelFailure>;
    /// Sends a Live Activity payload to the channel's subscribers: `priority`
    /// 10 or 5, `expiration` Unix seconds (0 for a channel that stores nothing).
    async fn broadcast(
        &self,
        environment: Environment,
        channel_id: &str,
        payload: &[u8],
        priority: u8,
        expiration: Option<u64>,
    ) -> Result<(), ChannelFailure>;
}
