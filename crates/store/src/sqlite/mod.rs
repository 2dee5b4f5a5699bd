//! The embedded default: one SQLite file in WAL mode. By job: `writer` (the
//! single writer thread the busy writes go through, a group per commit;
//! outcomes are batched into one write by `crate::outcomes`), `accept` (journal and
//! fan-out, on the shared accept plan), `queue` (claims, outcomes, status,
//! housekeeping), `devices` (registrations, API keys, pruning) and `clients`
//! (badges, preferences, presence, experiments).

mod accept;
mod clients;
mod devices;
mod queue;
mod writer;

use crate::outcomes::Outcomes;
use writer::{Durability, Writer};

use crate::{
    Accepted, BadgeView, ClaimedDelivery, ClientPrefs, DeliveryRef, DeliveryUpdate, Device, NewDevice, NewPush,
    PushView, QueueDepth, SourceChange, Store, StoreError, StoredApiKey, UpsertOutcome, VariantCounts,
};
use async_trait::async_trait;
use pushgate_domain::{AppId, BadgeSource, ClientId, DeviceId, DeviceType, PushToken, RoomId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A [`Store`] on one SQLite file.
///
/// WAL mode lets readers run beside the single writer; `synchronous = FULL`
/// makes every commit survive a power cut, which is what "accepted" promises
/// (all but a claim's leases, which need not: see [`SqliteStore::open`]).
///
/// The busiest writes (accepts, fan-out, claims, outcomes, registrations)
/// run on one writer thread that owns its connection (`writer.rs`) and
/// commits every write waiting as one group, so durability costs one disk
/// flush per group rather than per request. Reads and the rare writes
/// (preferences, read marks, housekeeping) use a small sqlx pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Held by every write while it writes, the writer thread's groups
    /// included: writers queue here in order rather than in SQLite's busy
    /// handler (which polls, unfairly, and would hold pool connections while
    /// it waits).
    write_lock: Arc<tokio::sync::Mutex<()>>,
    writer: Writer,
    outcomes: Outcomes,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://` URL, such as
    /// `sqlite://pushgate.db` (relative to the working directory) or
    /// `sqlite:///var/lib/pushgate/pushgate.db`, and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&pool).await.map_err(|error| StoreError::Internal(error.into()))?;
        let write_lock = Arc::new(tokio::sync::Mutex::new(()));
        let writer = Writer::start(options.get_filename(), Arc::clone(&write_lock))?;
        let outcomes = Outcomes::spawn(writer.clone());
        Ok(Self { pool, write_lock, writer, outcomes })
    }

    /// How many transactions the writer thread committed so far (fewer than
    /// its writes when they were grouped).
    pub fn writer_transactions(&self) -> u64 {
        self.writer.transactions.load(Ordering::Relaxed)
    }

    /// Fans out every push journaled before this call, in accept order, a
    /// batch per transaction; answers how many. Pushes accepted meanwhile
    /// wait for the next call, so a steady stream of accepts cannot hold it.
    pub async fn fan_out_journal(&self) -> Result<usize, StoreError> {
        let Some(up_to_seq) = self.last_journaled().await? else { return Ok(0) };
        let mut total = 0;
        loop {
            let done = self.fan_out_batch(up_to_seq).await?;
            total += done.pushes;
            if !done.more {
                return Ok(total);
            }
        }
    }

    /// One batch of the fan-out and no more, as a crash right after it would
    /// leave the journal: for tests of crash safety.
    #[doc(hidden)]
    pub async fn fan_out_journal_batch_for_tests(&self) -> Result<usize, StoreError> {
        match self.last_journaled().await? {
            Some(up_to_seq) => Ok(self.fan_out_batch(up_to_seq).await?.pushes),
            None => Ok(0),
        }
    }

    /// The newest journal entry, if any push waits for its fan-out.
    async fn last_journaled(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MAX(seq) FROM journal").fetch_one(&self.pool).await?)
    }

    /// One batch of the fan-out, one write on the writer thread.
    async fn fan_out_batch(&self, up_to_seq: i64) -> Result<accept::FannedOut, StoreError> {
        self.writer
            .write(Durability::Flushed, move |connection| {
                accept::fan_out(connection, FAN_OUT_PUSHES, FAN_OUT_RECIPIENTS, up_to_seq)
            })
            .await
    }
}

/// Most journaled pushes fanned out per transaction.
const FAN_OUT_PUSHES: u32 = 64;
/// Recipients after which a fan-out write takes no further push: it bounds
/// how long the writer thread's group (and the accepts in it) waits for it.
const FAN_OUT_RECIPIENTS: usize = 256;
/// Batches of the journal a claim fans out before it claims.
const FAN_OUT_BATCHES_PER_CLAIM: usize = 4;

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        // TRUNCATE: the WAL's pages go into the database file and the WAL is
        // emptied, so a copied `.db` file alone holds everything.
        match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
            Ok(_) => tracing::info!("checkpointed the write-ahead log into the database file"),
            Err(error) => {
                tracing::warn!(error = %error, "cannot checkpoint the write-ahead log; it is replayed at the next start")
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        // The writer thread must answer too: a store that reads but cannot
        // write is not ready.
        self.writer
            .write(Durability::Unflushed, |connection| Ok(connection.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        devices::upsert_device(self, device).await
    }

    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError> {
        devices::remove_device(self, app_id, device_type, device_id, client_id).await
    }

    async fn app_devices(
        &self,
        app_id: &AppId,
        after: Option<(DeviceType, DeviceId)>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError> {
        devices::app_devices(self, app_id, after, limit).await
    }

    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError> {
        devices::client_devices(self, app_id, client_id).await
    }

    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        devices::api_keys(self).await
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        devices::insert_api_key(self, key).await
    }

    async fn create_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        devices::create_api_key(self, key).await
    }

    async fn revoke_api_key(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        devices::revoke_api_key(self, digest).await
    }

    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError> {
        let push = push.clone();
        self.writer.write(Durability::Flushed, move |connection| accept::journal_push(connection, &push)).await
    }

    async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        // A bounded part of the journal first, so the claim finds its
        // deliveries without waiting for a whole backlog to fan out.
        if let Some(up_to_seq) = self.last_journaled().await? {
            for _ in 0..FAN_OUT_BATCHES_PER_CLAIM {
                if !self.fan_out_batch(up_to_seq).await?.more {
                    break;
                }
            }
        }
        queue::claim_due_deliveries(self, now_ms, limit, lease_ms).await
    }

    async fn record_attempt(&self, delivery: DeliveryRef, update: &DeliveryUpdate) -> Result<(), StoreError> {
        queue::record_attempt(self, delivery, update).await
    }

    async fn renew_leases(&self, deliveries: &[DeliveryRef], until_ms: i64) -> Result<(), StoreError> {
        let (rows, sends) = DeliveryRef::split(deliveries);
        let (rows, sends) = (serde_json::Value::from(rows).to_string(), serde_json::Value::from(sends).to_string());
        // Leases need no flush (see `Durability::Unflushed`).
        self.writer
            .write(Durability::Unflushed, move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE deliveries SET leased_until_ms = ?1 \
                         WHERE id IN (SELECT value FROM json_each(?2)) AND leased_until_ms IS NOT NULL \
                           AND status IN ('queued', 'retrying')",
                    )?
                    .execute(rusqlite::params![until_ms, rows])?;
                connection
                    .prepare_cached(
                        "UPDATE sends SET leased_until_ms = ?1 \
                         WHERE id IN (SELECT value FROM json_each(?2)) AND leased_until_ms IS NOT NULL AND pending > 0",
                    )?
                    .execute(rusqlite::params![until_ms, sends])?;
                Ok(())
            })
            .await
    }

    async fn release_all_leases(&self) -> Result<u64, StoreError> {
        queue::release_all_leases(self).await
    }

    async fn release_leases(&self, deliveries: &[DeliveryRef]) -> Result<(), StoreError> {
        let (rows, sends) = DeliveryRef::split(deliveries);
        let (rows, sends) = (serde_json::Value::from(rows).to_string(), serde_json::Value::from(sends).to_string());
        self.writer
            .write(Durability::Flushed, move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE deliveries SET leased_until_ms = NULL WHERE id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute(rusqlite::params![rows])?;
                connection
                    .prepare_cached(
                        "UPDATE sends SET leased_until_ms = NULL WHERE id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute(rusqlite::params![sends])?;
                Ok(())
            })
            .await
    }

    async fn expedite_retries(
        &self,
        app_id: &AppId,
        device_types: &[DeviceType],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let app = app_id.as_str().to_owned();
        let types =
            serde_json::Value::from(device_types.iter().map(|kind| kind.as_str()).collect::<Vec<_>>()).to_string();
        self.writer
            .write(Durability::Flushed, move |connection| {
                let changed = connection
                    .prepare_cached(
                        "UPDATE deliveries SET next_attempt_at_ms = ?1 \
                         WHERE status = 'retrying' AND next_attempt_at_ms > ?1 AND next_attempt_at_ms <= ?2 \
                           AND app_id = ?3 AND device_type IN (SELECT value FROM json_each(?4))",
                    )?
                    .execute(rusqlite::params![now_ms, until_ms, app, types])?;
                Ok(u64::try_from(changed).unwrap_or_default())
            })
            .await
    }

    async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        queue::queue_depth(self).await
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        // Journaled pushes are due at once: a claim fans them out.
        if self.last_journaled().await?.is_some() {
            return Ok(Some(0));
        }
        queue::next_due_at(self).await
    }

    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        devices::prune_device(self, app_id, device_type, device_id, token, invalid_since_ms).await
    }

    async fn push_view(&self, app_id: &AppId, push_id: &str) -> Result<Option<PushView>, StoreError> {
        self.fan_out_journal().await?;
        queue::push_view(self, app_id, push_id).await
    }

    async fn forget_before(&self, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError> {
        // A journaled push has no deliveries yet, so it would look finished;
        // fanning out first lets housekeeping judge it by its deliveries.
        self.fan_out_journal().await?;
        queue::forget_before(self, before_ms, limit).await
    }

    async fn badge(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        count_muted_rooms: bool,
        now_ms: i64,
    ) -> Result<BadgeView, StoreError> {
        self.fan_out_journal().await?;
        clients::badge(self, app_id, client_id, count_muted_rooms, now_ms).await
    }

    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        clients::mark_room_read(self, app_id, client_id, room, _now_ms).await
    }

    async fn change_badge_source(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        source: &BadgeSource,
        change: SourceChange,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        clients::change_badge_source(self, app_id, client_id, source, change, now_ms).await
    }

    async fn set_room_pref(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        muted: bool,
        muted_until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        clients::set_room_pref(self, app_id, client_id, room, muted, muted_until_ms, now_ms).await
    }

    async fn set_presence(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        online_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        clients::set_presence(self, app_id, client_id, online_until_ms).await
    }

    async fn client_prefs(&self, app_id: &AppId, client_id: &ClientId) -> Result<ClientPrefs, StoreError> {
        clients::client_prefs(self, app_id, client_id).await
    }

    async fn set_client_prefs(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        prefs: &ClientPrefs,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        clients::set_client_prefs(self, app_id, client_id, prefs, now_ms).await
    }

    async fn put_experiment(&self, app_id: &AppId, id: &str, definition: &str, now_ms: i64) -> Result<(), StoreError> {
        clients::put_experiment(self, app_id, id, definition, now_ms).await
    }

    async fn experiments(&self, app_id: &AppId) -> Result<Vec<(String, String)>, StoreError> {
        clients::experiments(self, app_id).await
    }

    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &str,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        clients::record_open(self, app_id, push_id, client_id, now_ms).await
    }

    async fn experiment_stats(&self, app_id: &AppId, id: &str) -> Result<Vec<VariantCounts>, StoreError> {
        self.fan_out_journal().await?;
        clients::experiment_stats(self, app_id, id).await
    }
}
