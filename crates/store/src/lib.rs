//! pushgate's durable state.
//!
//! Everything above this crate talks to a [`Store`] held as `Arc<dyn Store>`;
//! which database sits behind it is decided once, at start-up, by the store
//! URL. The contract is split by aggregate, one trait each: [`DeviceStore`]
//! (registrations, pruning), [`KeyStore`] (generated and created API keys),
//! [`QueueStore`] (accept, fan-out, claims, outcomes, status), [`ClientStore`]
//! (badge counters, preferences, mutes, presence) and [`ExperimentStore`];
//! [`Store`] is their sum with the store's lifecycle. Every implementation
//! must pass the shared conformance suite (`conformance`, with the `test-support` feature).

mod accepting;
mod claim;
mod clients;
mod cluster;
#[cfg(feature = "test-support")]
pub mod conformance;
mod devices;
mod experiments;
mod grouped;
mod keys;
mod outcomes;
mod plan;
mod postgres;
mod queue;
mod sqlite;

use async_trait::async_trait;

pub use clients::{BadgeView, ClientPrefs, ClientStore, SourceChange};
pub use cluster::{Cluster, SharedPause};
pub use devices::{Device, DeviceStore, NewDevice, UpsertOutcome};
pub use experiments::{ExperimentStore, VariantCounts};
pub use keys::{ApiKeyKind, KeyStore, StoredApiKey};
pub use plan::FAN_OUT_PIECE;
pub use postgres::PgStore;
pub(crate) use queue::Journal;
pub use queue::{
    Accepted, BadgePlan, CallbackKey, ClaimedDelivery, ClaimedPush, Coalescing, CoalescingCounts, DeliveryRef,
    DeliveryStatus, DeliveryUpdate, DeliveryView, DeviceTarget, ExperimentPlan, FanOut, NewPush, PushView, QueueDepth,
    QueueStore, RoutingPlan,
};
pub use sqlite::SqliteStore;

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

/// pushgate's durable state: every aggregate's store, and the store's
/// lifecycle. Implementations are shared as `Arc<dyn Store>`.
#[async_trait]
pub trait Store:
    DeviceStore + KeyStore + QueueStore + ClientStore + ExperimentStore + Send + Sync + std::fmt::Debug + 'static
{
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;

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
}
