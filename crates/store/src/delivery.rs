//! Types of the delivery queue: accepted pushes and their deliveries.

use pushgate_domain::{
    AppId, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Locale, OnlinePolicy, PushKind, PushToken, RoomId,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A push to accept: stored with one delivery per device of its clients, in
/// one transaction, before the caller is told it was accepted.
#[derive(Debug, Clone)]
pub struct NewPush {
    /// Unique id, returned to the caller.
    pub push_id: String,
    /// The app.
    pub app_id: AppId,
    /// What kind of push.
    pub kind: PushKind,
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
    /// `Some`: the callback this push answers; if it was accepted before,
    /// nothing is stored or counted and the earlier push is answered.
    pub callback: Option<CallbackKey>,
    /// What happens to each client's unread counts, and so its badge.
    pub badge: BadgePlan,
    /// Whether a muted room's unreads count in the badge (an app setting).
    pub count_muted_rooms: bool,
    /// `Some`: each client is routed (push off, muted room, presence, quiet
    /// hours) in the accept transaction; `None`: every client gets the push.
    pub routing: Option<RoutingPlan>,
    /// `Some`: the push takes part in an experiment.
    pub experiment: Option<ExperimentPlan>,
}

/// How to route the clients of a chat push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingPlan {
    /// The message's room, for mutes.
    pub room: RoomId,
    /// What an online client gets.
    pub online: OnlinePolicy,
}

/// The experiment a push takes part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentPlan {
    /// The experiment's id.
    pub id: String,
    /// The experiment as it is now, JSON, kept with the push for its attempts.
    pub snapshot: String,
    /// The variant of each client.
    pub variants: HashMap<ClientId, String>,
}

/// Identifies one IMKIT callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackKey {
    /// The message's `_id`.
    pub message_id: String,
    /// v1 only: the recipient (v1 sends one callback per recipient).
    pub to_client: Option<ClientId>,
}

/// What a push does to its clients' badges, in the transaction that accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadgePlan {
    /// Nothing: the push carries its own badge, if any (push2clients).
    None,
    /// Every delivery gets this badge, as given (v1 callbacks).
    Given(u32),
    /// One more unread in the room for every client, then each delivery
    /// gets its client's total (v2 callbacks).
    CountUnread(RoomId),
    /// The room read for every client, then each delivery gets its client's
    /// total (a read mark with sync).
    ClearRoom(RoomId),
}

/// A client's badge: room unreads plus cross-domain sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadgeView {
    /// The total shown on the app icon.
    pub total: u64,
    /// Unread messages per room (rooms with none left out).
    pub rooms: BTreeMap<String, u64>,
    /// Counts per source (sources at zero left out).
    pub sources: BTreeMap<String, u64>,
}

/// What accepting did. How many deliveries a push makes is known once it is
/// fanned out: `push_view` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The callback was accepted before, as this push: nothing was stored.
    pub duplicate_of: Option<String>,
}

/// How much work waits, for the queue-depth gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Pushes accepted and journaled, not fanned out yet.
    pub journaled: u64,
    /// Deliveries waiting for their first attempt.
    pub queued: u64,
    /// Deliveries waiting for another attempt.
    pub retrying: u64,
}

/// Which delivery a claim handed out, to record its outcome against. Opaque
/// to callers; ordered as the deliveries were planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryRef(pub(crate) DeliveryKey);

impl DeliveryRef {
    /// The delivery rows and the sends (each once) these deliveries are kept in.
    pub(crate) fn split(deliveries: &[DeliveryRef]) -> (Vec<i64>, Vec<i64>) {
        let mut rows = std::collections::BTreeSet::new();
        let mut sends = std::collections::BTreeSet::new();
        for delivery in deliveries {
            match delivery.0 {
                DeliveryKey::Row(id) => rows.insert(id),
                DeliveryKey::Planned { send, .. } => sends.insert(send),
            };
        }
        (rows.into_iter().collect(), sends.into_iter().collect())
    }
}

/// A group of attempt outcomes sorted for storing, the same for every
/// backend (each writes each part in one statement, as JSON arrays).
#[derive(Debug)]
pub(crate) struct OutcomeGroup {
    /// Outcomes of deliveries with a row of their own, a JSON array (`id`
    /// and the outcome each); `None` when there are none.
    pub(crate) rows: Option<String>,
    /// First-attempt outcomes that need a row of their own (all but a
    /// success), a JSON array (`send`, `index` and the outcome each).
    pub(crate) own_rows: Option<String>,
    /// Per send, the entries now settled and the latest outcome's time.
    pub(crate) settled: std::collections::BTreeMap<i64, (Vec<u32>, i64)>,
}

impl OutcomeGroup {
    /// Sorts `updates`; each outcome is `{status, reason, next, attempted, now}`.
    pub(crate) fn of(updates: &[(DeliveryRef, DeliveryUpdate)]) -> Self {
        let (mut rows, mut own_rows, mut settled) = (Vec::new(), Vec::new(), std::collections::BTreeMap::new());
        for (delivery, update) in updates {
            let mut fields = serde_json::json!({
                "status": update.status.as_str(),
                "reason": update.reason,
                "next": update.next_attempt_at_ms,
                "attempted": i32::from(update.attempted),
                "now": update.now_ms,
            });
            match delivery.0 {
                DeliveryKey::Row(id) => {
                    fields["id"] = id.into();
                    rows.push(fields);
                }
                DeliveryKey::Planned { send, index } => {
                    let (indexes, now): &mut (Vec<u32>, i64) = settled.entry(send).or_default();
                    indexes.push(index);
                    *now = (*now).max(update.now_ms);
                    if update.status != DeliveryStatus::Delivered {
                        fields["send"] = send.into();
                        fields["index"] = index.into();
                        own_rows.push(fields);
                    }
                }
            }
        }
        let array =
            |values: Vec<serde_json::Value>| (!values.is_empty()).then(|| serde_json::Value::from(values).to_string());
        Self { rows: array(rows), own_rows: array(own_rows), settled }
    }

    /// The settlements as one JSON array: `{send, indexes, now}` each.
    pub(crate) fn settled_json(&self) -> String {
        serde_json::Value::from_iter(
            self.settled
                .iter()
                .map(|(send, (indexes, now))| serde_json::json!({"send": send, "indexes": indexes, "now": now})),
        )
        .to_string()
    }
}

/// Where a delivery is kept: a planned entry of a push's send (its first
/// attempt, no row of its own), or a row of its own (a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DeliveryKey {
    /// Entry `index` of send `send`.
    Planned { send: i64, index: u32 },
    /// A delivery row.
    Row(i64),
}

/// A delivery handed to a worker.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery, to record its outcome against.
    pub id: DeliveryRef,
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
    /// The device's locale, if it gave one.
    pub locale: Option<Locale>,
    /// The client's badge when the push was accepted, for callbacks and badge updates.
    pub badge: Option<u32>,
    /// How the client is reached; `None` when not routed.
    pub mode: Option<DeliveryMode>,
    /// The push's experiment snapshot (JSON, shared by the push's
    /// deliveries) and the client's variant, if any.
    pub experiment: Option<(Arc<str>, String)>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The push's kind.
    pub kind: PushKind,
    /// The push's request payload, JSON, shared by the push's deliveries in
    /// one claim.
    pub request: Arc<str>,
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
    /// How the client is reached, for routed pushes.
    pub mode: Option<DeliveryMode>,
    /// Why the client is not alerted as usual (routing), if so.
    pub route_reason: Option<String>,
    /// The experiment variant the client got, if any.
    pub variant: Option<String>,
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

/// A client's preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrefs {
    /// Pushes on (the default) or off.
    pub push_enabled: bool,
    /// Quiet hours.
    pub quiet_hours: Option<pushgate_domain::QuietHours>,
    /// Time zone of the quiet hours; else the latest device's, else UTC.
    pub timezone: Option<pushgate_domain::TimeZoneName>,
    /// Locale for server-rendered text; wins over the devices' own.
    pub locale: Option<Locale>,
}

impl Default for ClientPrefs {
    fn default() -> Self {
        Self { push_enabled: true, quiet_hours: None, timezone: None, locale: None }
    }
}

/// One variant's figures in an experiment, per (push, client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantCounts {
    /// The variant.
    pub variant: String,
    /// Recipients given the variant and not skipped.
    pub targeted: u64,
    /// Of those, reached on at least one device.
    pub delivered: u64,
    /// Of those, given up on every device (none delivered).
    pub failed: u64,
    /// Of those, who opened the push.
    pub opened: u64,
}
