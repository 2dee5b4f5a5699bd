//! Broadcast push notifications (iOS 18+): Apple's channel management API
//! and its broadcast endpoint, on the same HTTP/2 client as notifications.
//!
//! From Apple's *Sending channel management requests to APNs* and *Sending
//! broadcast push notification requests to APNs* (checked against
//! `@parse/node-apn`'s client, which speaks both):
//! - the management API has hosts of its own: `api-manage-broadcast.push.apple.com:2196` (production) and
//!   `api-manage-broadcast.sandbox.push.apple.com:2195` (development);
//! - `POST /1/apps/<bundle id>/channels` with `{"message-storage-policy": 0|1, "push-type": "LiveActivity"}`
//!   creates a channel: `201`, its id in the `apns-channel-id` header;
//! - `GET /1/apps/<bundle id>/channels` with `apns-channel-id` reads one (`200`, the same two members),
//!   `DELETE` the same deletes it (`204`), `GET /1/apps/<bundle id>/all-channels` lists them
//!   (`200`, `{"channels": [...]}`);
//! - a broadcast is `POST /4/broadcasts/apps/<bundle id>` on the notification host, with `apns-channel-id`,
//!   `apns-push-type: liveactivity` and a Live Activity payload; a channel that stores no message takes only
//!   `apns-expiration: 0`.
//!
//! Token-based authentication only, as for every Live Activity push.

use super::ApnsClient;
use bytes::Bytes;
use http::{Method, StatusCode};
use pushgate_domain::Reason;

/// Apple's production channel management endpoint.
pub const PRODUCTION_CHANNELS_ENDPOINT: &str = "https://api-manage-broadcast.push.apple.com:2196";
/// Apple's development channel management endpoint.
pub const SANDBOX_CHANNELS_ENDPOINT: &str = "https://api-manage-broadcast.sandbox.push.apple.com:2195";

/// `message-storage-policy`: whether APNs keeps a channel's latest message
/// for a device that was offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoragePolicy {
    /// 0: no message is stored (broadcasts take `apns-expiration: 0` only).
    NoMessageStored,
    /// 1: the most recent message is stored.
    MostRecentMessageStored,
}

impl StoragePolicy {
    /// Apple's number.
    pub fn number(self) -> u8 {
        match self {
            Self::NoMessageStored => 0,
            Self::MostRecentMessageStored => 1,
        }
    }

    /// The policy of Apple's number.
    pub fn from_number(number: u64) -> Option<Self> {
        match number {
            0 => Some(Self::NoMessageStored),
            1 => Some(Self::MostRecentMessageStored),
            _ => None,
        }
    }
}

/// A channel as APNs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Its id (`apns-channel-id`).
    pub id: String,
    /// Its storage policy.
    pub storage_policy: StoragePolicy,
    /// `push-type`, as APNs names it (`LiveActivity`).
    pub push_type: String,
}

/// Why a channel request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// APNs answered with an error: its status and reason.
    #[error("APNs answered {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Apple's reason (`BadChannelId`, `ChannelNotRegistered`, …).
        reason: String,
    },
    /// APNs was not reached, or did not answer in time.
    #[error("APNs was not reached: {0}")]
    Unreachable(Reason),
    /// The answer was not what Apple documents.
    #[error("APNs answered what Apple does not document: {0}")]
    Unexpected(String),
}

/// What the broadcast request's header says of a message's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastHeaders<'a> {
    /// `apns-channel-id`.
    pub channel_id: &'a str,
    /// `apns-priority`: 10 or 5.
    pub priority: u8,
    /// `apns-expiration`, Unix seconds; 0 for a channel that stores nothing.
    pub expiration: Option<u64>,
}

/// The channel management API of one app (its bundle id) in one environment.
#[derive(Debug)]
pub struct ChannelManager {
    client: ApnsClient,
    bundle_id: String,
}

impl ChannelManager {
    /// `client` talks to the management endpoint.
    pub fn new(client: ApnsClient, bundle_id: impl Into<String>) -> Self {
        Self { client, bundle_id: bundle_id.into() }
    }

    fn path(&self, all: bool) -> String {
        format!("/1/apps/{}/{}", self.bundle_id, if all { "all-channels" } else { "channels" })
    }

    /// Creates a channel for Live Activities; answers its id.
    pub async fn create(&self, policy: StoragePolicy) -> Result<String, ChannelError> {
        let body = serde_json::json!({ "message-storage-policy": policy.number(), "push-type": "LiveActivity" });
        let (parts, _) = self
            .client
            .exchange(Method::POST, &self.path(false), &[], Bytes::from(body.to_string()), StatusCode::CREATED)
            .await?;
        parts
            .headers
            .get("apns-channel-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ChannelError::Unexpected("a created channel without apns-channel-id".into()))
    }

    /// Reads one channel.
    pub async fn read(&self, channel_id: &str) -> Result<ChannelInfo, ChannelError> {
        let headers = [("apns-channel-id", channel_id.to_owned())];
        let (_, body) =
            self.client.exchange(Method::GET, &self.path(false), &headers, Bytes::new(), StatusCode::OK).await?;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let storage_policy = value["message-storage-policy"]
            .as_u64()
            .and_then(StoragePolicy::from_number)
            .ok_or_else(|| ChannelError::Unexpected(format!("a channel without its storage policy: {value}")))?;
        Ok(ChannelInfo {
            id: channel_id.to_owned(),
            storage_policy,
            push_type: value["push-type"].as_str().unwrap_or("LiveActivity").to_owned(),
        })
    }

    /// Deletes one channel.
    pub async fn delete(&self, channel_id: &str) -> Result<(), ChannelError> {
        let headers = [("apns-channel-id", channel_id.to_owned())];
        self.client
            .exchange(Method::DELETE, &self.path(false), &headers, Bytes::new(), StatusCode::NO_CONTENT)
            .await
            .map(|_| ())
    }

    /// Every channel of the app, by id.
    pub async fn list(&self) -> Result<Vec<String>, ChannelError> {
        let (_, body) = self.client.exchange(Method::GET, &self.path(true), &[], Bytes::new(), StatusCode::OK).await?;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let channels = value["channels"]
            .as_array()
            .ok_or_else(|| ChannelError::Unexpected(format!("a channel list without channels: {value}")))?;
        Ok(channels.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect())
    }
}

impl ApnsClient {
    /// Sends a Live Activity payload to every device subscribed to a
    /// channel (`client` talks to the notification endpoint).
    pub async fn broadcast(
        &self,
        bundle_id: &str,
        headers: BroadcastHeaders<'_>,
        payload: &[u8],
    ) -> Result<(), ChannelError> {
        let mut sent = vec![
            ("apns-channel-id", headers.channel_id.to_owned()),
            ("apns-push-type", "liveactivity".to_owned()),
            ("apns-priority", headers.priority.to_string()),
        ];
        if let Some(expiration) = headers.expiration {
            sent.push(("apns-expiration", expiration.to_string()));
        }
        let path = format!("/4/broadcasts/apps/{bundle_id}");
        self.exchange(Method::POST, &path, &sent, Bytes::copy_from_slice(payload), StatusCode::OK).await.map(|_| ())
    }
}
