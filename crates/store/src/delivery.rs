//! Types of the delivery queue: accepted pushes and their deliveries.

use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, Environment, PushToken};

/// A push to accept: stored with one delivery per device of its clients, in
/// one transaction, before the caller is told it was accepted.
#[derive(Debug, Clone)]
pub struct NewPush {
    /// Unique id, returned to the caller.
    pub push_id: String,
    /// The app.
    pub app_id: AppId,
    /// What kind of push (`custom` for push2clients).
    pub kind: String,
    /// The request payload, JSON, from which provider payloads are built.
    pub request: String,
    /// The clients to reach.
    pub clients: Vec<ClientId>,
    /// Acceptance time, Unix ms.
    pub now_ms: i64,
    /// No attempt after this, Unix ms.
    pub deadline_ms: i64,
    /// `Some(reason)`: store every delivery as skipped (for example an expired push).
    pub skip_all: Option<String>,
}

/// What accepting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Deliveries queued, one per device.
    pub queued: u64,
    /// Clients with no registered device.
    pub clients_without_devices: u64,
}

/// A delivery handed to a worker.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery's row id.
    pub id: i64,
    /// The push it belongs to.
    pub push_id: String,
    /// The app.
    pub app_id: AppId,
    /// The client.
    pub client_id: ClientId,
    /// The device's type.
    pub device_type: DeviceType,
    /// The device's id.
    pub device_id: DeviceId,
    /// The token as it was when the push was accepted.
    pub token: PushToken,
    /// The device's APNs environment, if it named one.
    pub environment: Option<Environment>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The push's kind.
    pub kind: String,
    /// The push's request payload, JSON.
    pub request: String,
    /// No attempt after this, Unix ms.
    pub deadline_ms: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt.
    Queued,
    /// Failed for a passing reason; due again at `next_attempt_at_ms`.
    Retrying,
    /// The provider accepted it.
    Delivered,
    /// Given up: the reason says why.
    Failed,
    /// The token was invalid and the device was removed.
    Pruned,
    /// Never attempted: the reason says why (no device, expired, no provider).
    Skipped,
}

impl DeliveryStatus {
    /// The stored (and shown) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Pruned => "pruned",
            Self::Skipped => "skipped",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Queued, Self::Retrying, Self::Delivered, Self::Failed, Self::Pruned, Self::Skipped]
            .into_iter()
            .find(|status| status.as_str() == raw)
    }
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    /// The new status.
    pub status: DeliveryStatus,
    /// Why (provider reason), if not delivered.
    pub reason: Option<String>,
    /// When to try again, for `Retrying`.
    pub next_attempt_at_ms: Option<i64>,
    /// Whether the provider was asked (counts as an attempt); false for a
    /// skip or for a delivery held back while its provider is paused.
    pub attempted: bool,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// One delivery as the status route shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    /// The client.
    pub client_id: String,
    /// The device type, absent for a client without devices.
    pub device_type: Option<String>,
    /// The device id.
    pub device_id: Option<String>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Why, when not delivered.
    pub reason: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When it is due again, for queued and retrying.
    pub next_attempt_at_ms: Option<i64>,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
}

/// An accepted push with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushView {
    /// The push id.
    pub push_id: String,
    /// Acceptance time, Unix ms.
    pub created_at_ms: i64,
    /// Every delivery.
    pub deliveries: Vec<DeliveryView>,
}
