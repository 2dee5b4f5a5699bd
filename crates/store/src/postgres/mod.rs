//! The PostgreSQL backend: the same model as the embedded store (journal,
//! fan-out into `sends`, a row per delivery only when an outcome needs one),
//! on a database several pushgate processes can share. Claims lease with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never take the same work;
//! fan-out batches hold a transaction-scoped advisory lock, so they run one at
//! a time across every node and badges stay exact. Decisions come from
//! `plan.rs` and a claim is read back by `claim.rs`, as for SQLite.

//!
//! By job, as the SQLite store: `accept` (journal and fan-out), `queue`
//! (claims, outcomes, status, housekeeping), `devices` (registrations, API
//! keys, pruning), `clients` (badges, preferences, presence, experiments)
//! and `cluster` (what the nodes agree on: rate budgets, pauses, work
//! announcements).

mod accept;
mod clients;
mod cluster;
mod devices;
mod queue;

use crate::grouped::{Grouped, WriteGroup};
use crate::outcomes::{self, Outcome, Outcomes};
use crate::{Cluster, Store, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock every fan-out transaction holds (any constant, the same
/// on every node): journaled pushes fan out one batch at a time, in order.
const FAN_OUT_LOCK: i64 = 0x7075_7368_6761_7465; // "pushgate"

/// A [`Store`] on a PostgreSQL database, shareable by several processes.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Outcomes recorded at the same time, committed together.
    outcomes: Outcomes,
    /// What this node's fan-outs and reads did by coalescing.
    coalesced: Arc<crate::queue::CoalescingTally>,
    /// This node's accepts under way: its fan-out gives way to them.
    accepting: Arc<crate::accepting::Accepting>,
    /// Accepts asked for at the same time, committed together.
    accepts: Grouped<crate::Journal, crate::Accepted>,
    /// The transactions those took.
    accept_transactions: Arc<AtomicU64>,
}

/// Where the outcome batcher commits: one transaction per group.
struct OutcomeTarget(PgPool);

#[async_trait]
impl WriteGroup<Outcome, ()> for OutcomeTarget {
    async fn write_group(&self, outcomes: Arc<Vec<Outcome>>) -> Result<Vec<()>, StoreError> {
        let mut transaction = self.0.begin().await?;
        queue::record(&mut transaction, &outcomes).await?;
        transaction.commit().await?;
        Ok(vec![(); outcomes.len()])
    }
}

impl PgStore {
    /// The advisory lock housekeeping holds, so one node at a time forgets.
    #[doc(hidden)]
    pub const HOUSEKEEPING_LOCK: i64 = FAN_OUT_LOCK + 1;

    /// Connects to a `postgres://` URL and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with every table in `schema` (created if needed): for tests,
    /// which each take a schema of their own so they run in parallel.
    #[doc(hidden)]
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Internal(format!("not a schema name: {schema:?}").into()));
        }
        let mut connection = <PgConnection as sqlx::Connection>::connect_with(&options).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
            .execute(&mut connection)
            .await?;
        Self::connect(options.options([("search_path", schema)])).await
    }

    async fn connect(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await.map_err(|error| StoreError::Internal(error.into()))?;
        let outcomes = Outcomes::spawn(OutcomeTarget(pool.clone()), outcomes::MAX_GROUP, 1);
        let accept_transactions = Arc::new(AtomicU64::new(0));
        let accepts = accept::AcceptTarget { pool: pool.clone(), transactions: Arc::clone(&accept_transactions) };
        let accepts = Grouped::spawn(accepts, accept::MAX_ACCEPT_GROUP, accept::ACCEPT_GROUPS_IN_FLIGHT);
        let (coalesced, accepting) = (Arc::default(), Arc::default());
        Ok(Self { pool, outcomes, coalesced, accepting, accepts, accept_transactions })
    }

    /// How many transactions this node's accepts took (fewer than accepts
    /// when concurrent ones were committed together): for tests.
    #[doc(hidden)]
    pub fn accept_transactions(&self) -> u64 {
        self.accept_transactions.load(Ordering::Relaxed)
    }

    /// Fans out every push journaled before this call, in journal order, a
    /// batch per transaction; answers how many.
    pub async fn fan_out_journal(&self) -> Result<usize, StoreError> {
        let Some(up_to_seq) = self.last_journaled().await? else { return Ok(0) };
        let mut total = 0;
        loop {
            let (pushes, more) = self.fan_out_batch(up_to_seq).await?;
            total += pushes;
            if !more {
                return Ok(total);
            }
        }
    }

    async fn last_journaled(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MAX(seq) FROM journal").fetch_one(&self.pool).await?)
    }
}

#[async_trait]
impl Store for PgStore {
    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
