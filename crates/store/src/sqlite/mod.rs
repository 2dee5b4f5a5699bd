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

use crate::outcomes::{self, Outcomes};
use crate::queue::CoalescingTally;
use writer::{Durability, Writer};

use crate::plan::{FAN_OUT_PUSHES, FAN_OUT_RECIPIENTS};
use crate::{Store, StoreError};
use async_trait::async_trait;
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
    coalesced: Arc<CoalescingTally>,
    /// This process's accepts under way: its fan-out gives way to them.
    accepting: Arc<crate::accepting::Accepting>,
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
        let outcomes = Outcomes::spawn(writer.clone(), outcomes::MAX_GROUP, 1);
        Ok(Self { pool, write_lock, writer, outcomes, coalesced: Arc::default(), accepting: Arc::default() })
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
        let done = self
            .writer
            .write(Durability::Flushed, move |connection| {
                accept::fan_out(connection, FAN_OUT_PUSHES, FAN_OUT_RECIPIENTS, up_to_seq)
            })
            .await?;
        self.coalesced.add(done.coalesced);
        Ok(done)
    }
}

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
}
