//! The delivery queue: accepted pushes and their deliveries, and
//! [`QueueStore`], what a backend does with them.

use crate::{StoreError, plan};
use async_trait::async_trait;
use pushgate_domain::{
    AppId, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Experiment, ExperimentId, Locale, OnlinePolicy,
    PushId, PushKey, PushRequest, PushToken, Reason, RoomId, Summary, TraceParent, Variant,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A push to accept: journaled in one transaction before the caller is
/// told it was accepted; its recipients' work ([`FanOut`]) follows, in
/// accept order. Build one with [`NewPush::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct NewPush {
    /// Unique id, returned to the caller.
    pub push_id: PushId,
    /// The app.
    pub app_id: AppId,
    /// What it delivers; every attempt's payloads are built from it.
    pub request: PushRequest,
    /// Acceptance time, Unix ms.
    pub now_ms: i64,
    /// No attempt after this, Unix ms.
    pub deadline_ms: i64,
    /// `Some`: the callback this push answers; if it was accepted before,
    /// nothing is stored or counted and the earlier push is answered.
    pub callback: Option<CallbackKey>,
    /// `Some`: the definition of the experiment the push takes part in, as
    /// it is now, kept with the push for its attempts (each client's variant
    /// is in [`FanOut::experiment`]).
    pub experiment: Option<Experiment>,
    /// What happens for each recipient, after the accept.
    pub fan_out: FanOut,
    /// The accept's place in a trace, kept so its fan-out and attempts
    /// continue it (`None` when nothing exports traces).
    pub trace_parent: Option<TraceParent>,
}

impl NewPush {
    /// A push of `request` to `clients`, accepted at `now_ms`: no callback,
    /// no badge change, unrouted, in no experiment, muted rooms counted.
    pub fn new(
        push_id: PushId,
        app_id: AppId,
        request: PushRequest,
        clients: Vec<ClientId>,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Self {
        Self {
            push_id,
            app_id,
            request,
            now_ms,
            deadline_ms,
            callback: None,
            experiment: None,
            fan_out: FanOut {
                clients,
                skip_all: None,
                badge: BadgePlan::None,
                count_muted_rooms: true,
                routing: None,
                experiment: None,
                mentions: Vec::new(),
                coalescing: None,
                except_device: None,
                target: DeviceTarget::Notifications,
            },
            trace_parent: None,
        }
    }

    /// Coalesces the recipients' alerts in busy rooms (a routed push).
    pub fn with_coalescing(mut self, coalescing: Coalescing) -> Self {
        self.fan_out.coalescing = Some(coalescing);
        self
    }

    /// Leaves out the clients' device `device` (the one a read was made on).
    pub fn except_device(mut self, device: DeviceId) -> Self {
        self.fan_out.except_device = Some(device);
        self
    }

    /// Goes to these of the clients' devices (a Live Activity push).
    pub fn to_devices(mut self, target: DeviceTarget) -> Self {
        self.fan_out.target = target;
        self
    }

    /// Answers `callback`: a repeat of it is answered with this push.
    pub fn with_callback(mut self, callback: CallbackKey) -> Self {
        self.callback = Some(callback);
        self
    }

    /// Changes each recipient's counters as `badge` says; a muted room's
    /// unreads count in the badge when `count_muted_rooms`.
    pub fn with_badge(mut self, badge: BadgePlan, count_muted_rooms: bool) -> Self {
        self.fan_out.badge = badge;
        self.fan_out.count_muted_rooms = count_muted_rooms;
        self
    }

    /// Routes each recipient (push off, muted room, presence, quiet hours).
    pub fn with_routing(mut self, routing: RoutingPlan) -> Self {
        self.fan_out.routing = Some(routing);
        self
    }

    /// Mentions these clients.
    pub fn with_mentions(mut self, mentions: Vec<ClientId>) -> Self {
        self.fan_out.mentions = mentions;
        self
    }

    /// Takes part in `experiment` (its definition as it is now).
    pub fn with_experiment(mut self, plan: ExperimentPlan, experiment: Experiment) -> Self {
        self.fan_out.experiment = Some(plan);
        self.experiment = Some(experiment);
        self
    }

    /// Stores every delivery as skipped for `reason` (an expired push).
    pub fn with_all_skipped(mut self, reason: Reason) -> Self {
        self.fan_out.skip_all = Some(reason);
        self
    }
}

/// What the fan-out does for a push's recipients, journaled with it: their
/// counters, their routes, their variants and one delivery per device.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOut {
    /// The clients to reach (a client listed twice is reached once).
    pub clients: Vec<ClientId>,
    /// `Some(reason)`: store every delivery as skipped (an expired push).
    pub skip_all: Option<Reason>,
    /// What happens to each client's unread counts, and so its badge.
    pub badge: BadgePlan,
    /// Whether a muted room's unreads count in the badge (an app setting).
    pub count_muted_rooms: bool,
    /// `Some`: each client is routed (push off, muted room, presence, quiet
    /// hours) in the fan-out transaction; `None`: every client gets the push.
    pub routing: Option<RoutingPlan>,
    /// `Some`: each client's variant of the push's experiment.
    pub experiment: Option<ExperimentPlan>,
    /// The clients the message mentions (a mention alerts in a room set to
    /// mentions only, and is never held by coalescing).
    pub mentions: Vec<ClientId>,
    /// `Some`: the app coalesces a busy room's alerts (a routed chat push).
    pub coalescing: Option<Coalescing>,
    /// A device of the clients that gets nothing (the one a read was made on).
    pub except_device: Option<DeviceId>,
    /// Which of the clients' devices get the push.
    pub target: DeviceTarget,
}

/// Which of a client's devices a push goes to: the notification devices, or
/// the tokens of one APNs push type (`DeviceType::is_dedicated`), which get
/// nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeviceTarget {
    /// Every device but the dedicated tokens.
    #[default]
    Notifications,
    /// The clients' devices of this dedicated type (push-to-start tokens for a
    /// Live Activity's start, widget tokens, …), or only the one with this id
    /// (an activity's token: its id is the activity's).
    Dedicated(DeviceType, Option<DeviceId>),
}

impl DeviceTarget {
    /// The fan-out's filter: the one device type it takes (`None`: every
    /// type but the dedicated tokens) and the one device id.
    pub(crate) fn filter(&self) -> (Option<&'static str>, Option<&str>) {
        match self {
            Self::Notifications => (None, None),
            Self::Dedicated(device_type, device) => (Some(device_type.as_str()), device.as_ref().map(DeviceId::as_str)),
        }
    }
}

/// How a chat push's alerts are coalesced: for each recipient, a message in
/// the window its room's last alert opened is held, and the window's end
/// sends one alert for the held ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coalescing {
    /// The app's window, ms.
    pub window_ms: i64,
    /// The message's sender, for the window's alert ("Alice and 2 others").
    pub sender: Option<String>,
}

/// How to route the clients of a chat push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingPlan {
    /// The message's room, for mutes.
    pub room: RoomId,
    /// What an online client gets.
    pub online: OnlinePolicy,
}

/// The experiment a push takes part in, and each client's variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentPlan {
    /// The experiment's id.
    pub id: ExperimentId,
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

/// What accepting did. How many deliveries a push makes is known once it is
/// fanned out: `push_view` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The callback was accepted before, as this push: nothing was stored.
    pub duplicate_of: Option<PushId>,
}

/// A push as its accept stores it, on either backend: the columns of its
/// `pushes`, `callbacks` and `journal` rows, encoded before the write (on the
/// caller's task, not SQLite's writer thread or a group's transaction).
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    pub(crate) push_id: String,
    pub(crate) app_id: AppId,
    pub(crate) kind: &'static str,
    pub(crate) request: String,
    pub(crate) now_ms: i64,
    pub(crate) deadline_ms: i64,
    pub(crate) experiment: Option<String>,
    /// The callback's message id and recipient (`""` for a v2 callback).
    pub(crate) callback: Option<(String, String)>,
    pub(crate) plan: String,
    pub(crate) trace_parent: Option<String>,
}

impl Journal {
    pub(crate) fn of(push: &NewPush) -> Result<Self, StoreError> {
        let experiment = push
            .experiment
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| StoreError::Internal(error.into()))?;
        Ok(Self {
            push_id: push.push_id.to_string(),
            app_id: push.app_id.clone(),
            kind: push.request.kind().as_str(),
            request: push.request.encode(),
            now_ms: push.now_ms,
            deadline_ms: push.deadline_ms,
            experiment,
            callback: push.callback.as_ref().map(|callback| {
                let to_client = callback.to_client.as_ref().map_or("", ClientId::as_str);
                (callback.message_id.clone(), to_client.to_owned())
            }),
            plan: plan::journal_entry(&push.fan_out),
            trace_parent: push.trace_parent.map(|parent| parent.to_string()),
        })
    }
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
    /// Deliveries held until their room's coalescing window ends.
    pub held: u64,
}

/// What coalescing did since the store opened (this node's fan-outs and
/// reads): deliveries held for a window's end, merged into a newer
/// message's alert, and cancelled by a read before their window ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalescingCounts {
    /// Deliveries held.
    pub held: u64,
    /// Held deliveries merged into a newer message's.
    pub merged: u64,
    /// Held deliveries cancelled by a read of the room.
    pub cancelled: u64,
}

impl CoalescingCounts {
    pub(crate) fn add(&mut self, other: Self) {
        self.held += other.held;
        self.merged += other.merged;
        self.cancelled += other.cancelled;
    }
}

/// [`CoalescingCounts`] kept by a store, added to once a write commits.
#[derive(Debug, Default)]
pub(crate) struct CoalescingTally {
    held: std::sync::atomic::AtomicU64,
    merged: std::sync::atomic::AtomicU64,
    cancelled: std::sync::atomic::AtomicU64,
}

impl CoalescingTally {
    pub(crate) fn add(&self, counts: CoalescingCounts) {
        use std::sync::atomic::Ordering::Relaxed;
        self.held.fetch_add(counts.held, Relaxed);
        self.merged.fetch_add(counts.merged, Relaxed);
        self.cancelled.fetch_add(counts.cancelled, Relaxed);
    }

    pub(crate) fn read(&self) -> CoalescingCounts {
        use std::sync::atomic::Ordering::Relaxed;
        CoalescingCounts {
            held: self.held.load(Relaxed),
            merged: self.merged.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
        }
    }
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
    /// The push it belongs to, read back once per claim and shared by the
    /// push's deliveries in it.
    pub push: Arc<ClaimedPush>,
    /// The app.
    pub app_id: AppId,
    /// The client.
    pub client_id: ClientId,
    /// The device's type.
    pub device_type: DeviceType,
    /// The device's id.
    pub device_id: DeviceId,
    /// The token as it was when the push was fanned out.
    pub token: PushToken,
    /// The device's APNs environment, if it named one.
    pub environment: Option<Environment>,
    /// The device's locale, if it gave one.
    pub locale: Option<Locale>,
    /// The client's badge when the push was fanned out, for callbacks and badge updates.
    pub badge: Option<u32>,
    /// How the client is reached; `None` when not routed.
    pub mode: Option<DeliveryMode>,
    /// The client's variant of the push's experiment, if any.
    pub variant: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// `Some`: the alert that ends a busy room's window, standing for the
    /// messages held in it.
    pub summary: Option<Summary>,
    /// The device's key for private payloads, if it registered one.
    pub push_key: Option<PushKey>,
}

/// A claimed push, as its deliveries need it.
#[derive(Debug, Clone)]
pub struct ClaimedPush {
    /// Its id.
    pub push_id: PushId,
    /// What it delivers; `None` when the stored request (or its experiment)
    /// cannot be read back: its deliveries then fail, the queue goes on.
    pub request: Option<PushRequest>,
    /// The definition of its experiment, if any.
    pub experiment: Option<Experiment>,
    /// No attempt after this, Unix ms.
    pub deadline_ms: i64,
    /// The accept's place in a trace, which every attempt continues.
    pub trace_parent: Option<TraceParent>,
}

impl ClaimedDelivery {
    /// The push's id.
    pub fn push_id(&self) -> PushId {
        self.push.push_id
    }

    /// Whether this delivery shows a chat message's alert (not a silent
    /// badge update, a clear or a server's custom push).
    pub fn is_chat_alert(&self) -> bool {
        let chat = matches!(self.push.request, Some(PushRequest::Chat(_) | PushRequest::LegacyChat { .. }));
        chat && self.mode != Some(DeliveryMode::Silent)
    }

    /// The client's variant of the push's experiment, if both are known.
    pub fn variant(&self) -> Option<&Variant> {
        let name = self.variant.as_deref()?;
        self.push.experiment.as_ref()?.variants.iter().find(|variant| variant.name == name)
    }
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
    /// Held until its room's coalescing window ends (a newer message of the
    /// room may take its place).
    Held,
    /// Merged into a newer message's alert (`carried_by`).
    Coalesced,
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
            Self::Held => "held",
            Self::Coalesced => "coalesced",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Retrying,
            Self::Delivered,
            Self::Failed,
            Self::Pruned,
            Self::Skipped,
            Self::Held,
            Self::Coalesced,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    /// The new status.
    pub status: DeliveryStatus,
    /// Why, if not delivered.
    pub reason: Option<Reason>,
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
    pub reason: Option<Reason>,
    /// For a coalesced delivery, the push whose alert carried it.
    pub carried_by: Option<PushId>,
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
    pub push_id: PushId,
    /// Acceptance time, Unix ms.
    pub created_at_ms: i64,
    /// Every delivery.
    pub deliveries: Vec<DeliveryView>,
}

/// The delivery queue: accepting pushes, handing out their deliveries with a
/// lease, recording outcomes, and what operators and housekeeping ask of it.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Stores a push durably (journaled); its recipients (counters, routing,
    /// one delivery per device, a skipped one per client without devices)
    /// are handled after, in accept order. When this returns, the push
    /// survives a crash.
    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError>;

    /// Fans out one bounded batch of the journal, oldest first (a big push a
    /// piece at a time): its recipients' counters and routes, and their
    /// planned deliveries, which a claim then finds. Answers whether more of
    /// the journal waits. The worker calls it on a task of its own, so
    /// claims never wait for the fan-out and the fan-out never waits for sends.
    async fn fan_out_step(&self) -> Result<bool, StoreError>;

    /// Leases about `limit` due deliveries until `now_ms + lease_ms` (what
    /// the fan-out has planned so far; see [`QueueStore::fan_out_step`]): a
    /// push's first attempts are leased a whole send at a time (256 at most),
    /// so the last one may take the claim past `limit`. A delivery whose
    /// lease ran out (its worker died) is due again, unless its outcome was
    /// recorded meanwhile.
    async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records the result of an attempt and ends its lease (a send's lease
    /// ends with its last entry's outcome).
    async fn record_attempt(&self, delivery: DeliveryRef, update: &DeliveryUpdate) -> Result<(), StoreError>;

    /// Extends the leases of deliveries still being sent to `until_ms` (a
    /// send's lease for its entries): a send waiting on a rate limiter or a
    /// slow provider keeps its work. A delivery whose outcome is recorded
    /// meanwhile is left as it is.
    async fn renew_leases(&self, deliveries: &[DeliveryRef], until_ms: i64) -> Result<(), StoreError>;

    /// Gives up the leases of claimed deliveries that were not recorded (a
    /// stop that could not wait for them): due again at once, anywhere.
    async fn release_leases(&self, deliveries: &[DeliveryRef]) -> Result<(), StoreError>;

    /// Ends every lease. Only for a store one process owns, at its start: the
    /// deliveries a killed process held are due at once.
    async fn release_all_leases(&self) -> Result<u64, StoreError>;

    /// How much work waits: pushes journaled but not fanned out, deliveries
    /// queued and retrying.
    async fn queue_depth(&self) -> Result<QueueDepth, StoreError>;

    /// What coalescing did since this store opened (a store that does not
    /// coalesce, a test's, answers zeros).
    fn coalescing_counts(&self) -> CoalescingCounts {
        CoalescingCounts::default()
    }

    /// When the earliest queued or retrying delivery is due, if any.
    async fn next_due_at(&self) -> Result<Option<i64>, StoreError>;

    /// Makes `app_id`'s deliveries to `device_types` that wait for another
    /// attempt due at `now_ms`, if they were due after it and by `until_ms`
    /// (those a provider's pause held until then); answers how many.
    async fn expedite_retries(
        &self,
        app_id: &AppId,
        device_types: &[DeviceType],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// An accepted push of this app with every delivery, if it exists.
    async fn push_view(&self, app_id: &AppId, push_id: &PushId) -> Result<Option<PushView>, StoreError>;

    /// Housekeeping: forgets at most `limit` finished pushes (none of their
    /// deliveries queued or retrying) accepted before `before_ms`, with their
    /// deliveries, and at most `limit` callback ids first seen before it.
    /// Answers how many pushes and callback ids went; call again while either
    /// equals `limit`.
    async fn forget_before(&self, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError>;
}
