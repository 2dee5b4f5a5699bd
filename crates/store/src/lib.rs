//! pushgate's durable state.
//!
//! Everything above this crate talks to a [`Store`] held as `Arc<dyn Store>`;
//! which database sits behind it is decided once, at start-up, by the store
//! URL. Every implementation must pass the shared [`conformance`] suite.

mod claim;
mod cluster;
pub mod conformance;
mod delivery;
mod outcomes;
mod plan;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use pushgate_domain::{
    AppId, BadgeSource, ClientId, DeviceId, DeviceType, Environment, Locale, PushToken, RoomId, TimeZoneName,
};

pub use cluster::{Cluster, SharedPause};
pub use delivery::{
    Accepted, BadgePlan, BadgeView, CallbackKey, ClaimedDelivery, ClientPrefs, DeliveryRef, DeliveryStatus,
    DeliveryUpdate, DeliveryView, ExperimentPlan, NewPush, PushView, QueueDepth, RoutingPlan, VariantCounts,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A device registration as `/me/subscribe` hands it over, already parsed.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// The app the device belongs to.
    pub app_id: AppId,
    /// IMKIT's device type.
    pub device_type: DeviceType,
    /// The app-chosen device id; with the app and type it is the key.
    pub device_id: DeviceId,
    /// The client (user) the device is bound to.
    pub client_id: ClientId,
    /// The provider token.
    pub token: PushToken,
    /// The APNs environment, if the caller said; `None` keeps what was stored (or the app default).
    pub environment: Option<Environment>,
    /// Locale for server-rendered text; `None` keeps what was stored.
    pub locale: Option<Locale>,
    /// Time zone for quiet hours; `None` keeps what was stored.
    pub timezone: Option<TimeZoneName>,
    /// When the registration happened, in Unix milliseconds.
    pub now_ms: i64,
}

/// A registered device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// IMKIT's device type.
    pub device_type: DeviceType,
    /// The app-chosen device id.
    pub device_id: DeviceId,
    /// The client the device is bound to.
    pub client_id: ClientId,
    /// The provider token.
    pub token: PushToken,
    /// The APNs environment the device asked for, `None` for the app's default.
    pub environment: Option<Environment>,
    /// The device's locale, if it gave one.
    pub locale: Option<Locale>,
    /// The device's time zone, if it gave one.
    pub timezone: Option<TimeZoneName>,
    /// First registration, Unix milliseconds.
    pub created_at_ms: i64,
    /// Last registration, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// What a subscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Other devices that held the same token and lost it (the token moved here).
    pub token_moved_from: u64,
}

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

/// A database driver's error, kept as the cause without naming the driver:
/// callers decide by [`StoreError`]'s variant, and only log the cause.
pub type StoreCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, busy past its timeout, or out of
    /// connections: nothing was written, and trying again later may work.
    #[error("the store is unavailable")]
    Unavailable(#[source] StoreCause),
    /// Anything else: a bug or a corrupt database.
    #[error("the store failed")]
    Internal(#[source] StoreCause),
    /// A stored row could not be read back into domain types.
    #[error("a stored row is invalid: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let transient = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with or without extended code bits.
            sqlx::Error::Database(db) => {
                db.code().and_then(|code| code.parse::<i64>().ok()).is_some_and(|code| matches!(code & 0xff, 5 | 6))
            }
            _ => false,
        };
        if transient { Self::Unavailable(Box::new(error)) } else { Self::Internal(Box::new(error)) }
    }
}

/// pushgate's durable state. Implementations are shared as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers a device, or updates it when (app, type, device id) is known.
    /// The token is unbound from any other device of the same app and token
    /// space first, all in one transaction.
    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError>;

    /// Removes the client's device; answers how many rows went (0 or 1).
    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError>;

    /// Every device of one client, oldest registration first.
    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError>;

    /// A page of the app's devices in (type, device id) order, those after
    /// `after`: export reads them all this way without holding one long query.
    async fn app_devices(
        &self,
        app_id: &AppId,
        after: Option<(DeviceType, DeviceId)>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError>;

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

    /// Stores a push durably (journaled); its recipients (counters, routing,
    /// one delivery per device, a skipped one per client without devices)
    /// are handled after, in accept order. When this returns, the push
    /// survives a crash.
    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError>;

    /// Leases about `limit` due deliveries until `now_ms + lease_ms`: a
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

    /// Whether several processes may work on this store at once
    /// (PostgreSQL): then no process may end another's leases at its start;
    /// a dead process's leases run out instead.
    fn is_shared(&self) -> bool {
        self.cluster().is_some()
    }

    /// What the nodes sharing this store agree on (rate budgets, provider
    /// pauses); `None` for a store one process owns.
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }

    /// Called once when the process stops cleanly, after the server and the
    /// worker: the embedded store folds its write-ahead log into the
    /// database file. Failures are logged, never fatal.
    async fn close(&self) {}

    /// Ends every lease. Only for a store one process owns, at its start: the
    /// deliveries a killed process held are due at once.
    async fn release_all_leases(&self) -> Result<u64, StoreError>;

    /// How much work waits: pushes journaled but not fanned out, deliveries
    /// queued and retrying.
    async fn queue_depth(&self) -> Result<QueueDepth, StoreError>;

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

    /// Removes a device whose token the provider declared invalid, unless the
    /// device changed token or registered again after `invalid_since_ms`.
    /// Answers whether it was removed.
    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// An accepted push of this app with every delivery, if it exists.
    async fn push_view(&self, app_id: &AppId, push_id: &str) -> Result<Option<PushView>, StoreError>;

    /// Housekeeping: forgets at most `limit` finished pushes (none of their
    /// deliveries queued or retrying) accepted before `before_ms`, with their
    /// deliveries, and at most `limit` callback ids first seen before it.
    /// Answers how many pushes and callback ids went; call again while either
    /// equals `limit`.
    async fn forget_before(&self, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError>;

    /// A client's badge: its room unreads and source counts; the total
    /// leaves out rooms muted at `now_ms` unless `count_muted_rooms`.
    async fn badge(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        count_muted_rooms: bool,
        now_ms: i64,
    ) -> Result<BadgeView, StoreError>;

    /// Mutes or unmutes a room for a client; a mute may end by itself at `muted_until_ms`.
    async fn set_room_pref(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        muted: bool,
        muted_until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Records a client online until `online_until_ms`, or offline (`None`).
    async fn set_presence(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        online_until_ms: Option<i64>,
    ) -> Result<(), StoreError>;

    /// A client's preferences (the defaults when it set none).
    async fn client_prefs(&self, app_id: &AppId, client_id: &ClientId) -> Result<ClientPrefs, StoreError>;

    /// Replaces a client's preferences.
    async fn set_client_prefs(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        prefs: &ClientPrefs,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Creates or replaces an experiment (its definition as JSON).
    async fn put_experiment(&self, app_id: &AppId, id: &str, definition: &str, now_ms: i64) -> Result<(), StoreError>;

    /// Every experiment of an app: (id, definition JSON), by id.
    async fn experiments(&self, app_id: &AppId) -> Result<Vec<(String, String)>, StoreError>;

    /// Records that a client opened a push; answers false when the push is unknown.
    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &str,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Per variant of an experiment: targeted, delivered, failed, opened.
    async fn experiment_stats(&self, app_id: &AppId, id: &str) -> Result<Vec<VariantCounts>, StoreError>;

    /// Marks a room read for a client: its unread count goes to zero.
    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Changes a client's count for a badge source: `Set(n)` replaces it,
    /// `Add(n)` adds `n` (which may be negative; the count stays at or above 0).
    async fn change_badge_source(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        source: &BadgeSource,
        change: SourceChange,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}

/// How `change_badge_source` changes a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChange {
    /// Replace the count.
    Set(u32),
    /// Add to the count (negative subtracts, never below 0).
    Add(i64),
}
