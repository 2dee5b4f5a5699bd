//! The single writer thread: one blocking thread owns a rusqlite connection
//! and runs the busy writes (accepts, fan-out, claims, outcomes) a whole
//! group per hand-off: it takes every write waiting, runs each in a
//! savepoint of its own inside one transaction, commits once, then answers
//! each caller. One hand-off per write, not one per statement and per row as
//! with sqlx's SQLite driver (those hand-offs were a third of the profile),
//! and one disk flush per group.

use crate::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Most writes committed in one group.
const MAX_GROUP: usize = 256;

/// Longest an unflushed commit waits for a flush: the next group is flushed
/// once it is due, and an idle thread flushes the log by itself then.
const FLUSH_WITHIN: Duration = Duration::from_millis(50);

/// How a group's commit must survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// `synchronous = FULL`: what "accepted" promises.
    Flushed,
    /// `synchronous = NORMAL`: for writes a power cut may forget (a claim's
    /// leases, released at start anyway; attempt outcomes, whose deliveries
    /// are then sent again: at-least-once). The next flushed commit carries
    /// them, at most [`FLUSH_WITHIN`] later; a process that dies without a
    /// power cut loses nothing committed.
    Unflushed,
}

/// A write queued for the thread, its output type erased.
trait Job: Send {
    fn durability(&self) -> Durability;
    /// Runs the write in the open transaction, in a savepoint of its own: a
    /// failing write rolls back alone and fails alone.
    fn run(&mut self, transaction: &mut rusqlite::Transaction<'_>);
    /// Answers the caller once the group's commit is known.
    fn answer(self: Box<Self>, commit: Result<(), &rusqlite::Error>);
}

struct Pending<T, F> {
    work: Option<F>,
    durability: Durability,
    output: Option<Result<T, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn durability(&self) -> Durability {
        self.durability
    }

    fn run(&mut self, transaction: &mut rusqlite::Transaction<'_>) {
        let Some(work) = self.work.take() else { return };
        let output = transaction.savepoint().map_err(StoreError::from).and_then(|savepoint| {
            // A write that panics (a bug) fails alone, rolled back with its
            // savepoint; the thread lives on for the others.
            let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&savepoint)))
                .map_err(|_| StoreError::Internal("a write panicked; it was rolled back".into()))??;
            savepoint.commit()?;
            Ok(output)
        });
        self.output = Some(output);
    }

    fn answer(self: Box<Self>, commit: Result<(), &rusqlite::Error>) {
        let answer = match (commit, self.output) {
            (Ok(()), Some(output)) => output,
            (Err(error), _) => Err(commit_failed(error)),
            (Ok(()), None) => Err(StoreError::Internal("a write was never run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

fn commit_failed(error: &rusqlite::Error) -> StoreError {
    // Each caller gets its own error; the cause is the same.
    let busy = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let cause = format!("the group's commit failed: {error}").into();
    if busy { StoreError::Unavailable(cause) } else { StoreError::Internal(cause) }
}

/// The sending side of the writer thread. Cloned with the store; the thread
/// ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    queue: mpsc::Sender<Box<dyn Job>>,
    /// Transactions committed so far (fewer than the writes when grouped).
    pub(super) transactions: Arc<AtomicU64>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Job")
    }
}

impl Writer {
    /// Opens the database file and starts the thread. `lock` is the lock the
    /// store's other (pool) writes hold: the thread takes it for each group,
    /// so every writer is served in order.
    pub(super) fn start(path: &Path, lock: Arc<tokio::sync::Mutex<()>>) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        let (queue, receiver) = mpsc::channel();
        let transactions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&transactions);
        std::thread::Builder::new()
            .name("pushgate-sqlite-writer".into())
            .spawn(move || run(connection, &lock, &receiver, &counter))
            .map_err(|error| StoreError::Internal(error.into()))?;
        Ok(Self { queue, transactions })
    }

    /// Runs `work` on the writer thread in the next group; answers its output
    /// once the group is committed (or the error that stopped it).
    pub(super) async fn write<T, F>(&self, durability: Durability, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(Pending { work: Some(work), durability, output: None, reply });
        let stopped = || StoreError::Unavailable("the store's writer thread has stopped".into());
        self.queue.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn run(
    mut connection: Connection,
    lock: &tokio::sync::Mutex<()>,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    transactions: &AtomicU64,
) {
    let mut synchronous = Durability::Flushed;
    // Since when commits wait unflushed, if any do.
    let mut unflushed_since: Option<std::time::Instant> = None;
    loop {
        // With commits unflushed, wait for the next write until their flush is due.
        let next = match unflushed_since {
            None => queue.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(since) => queue.recv_timeout(FLUSH_WITHIN.saturating_sub(since.elapsed())),
        };
        let first = match next {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Idle with unflushed commits: a checkpoint syncs the log
                // first, then copies it into the database file.
                if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %error, "cannot flush the write-ahead log; the next commit will");
                }
                unflushed_since = None;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        let take_waiting = |group: &mut Vec<Box<dyn Job>>| {
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
        };
        take_waiting(&mut group);
        let _serialised = lock.blocking_lock();
        // Writes that came while waiting for the lock join this group.
        take_waiting(&mut group);
        let flush_due = unflushed_since.is_some_and(|since| since.elapsed() >= FLUSH_WITHIN);
        let wanted = if flush_due || group.iter().any(|job| job.durability() == Durability::Flushed) {
            Durability::Flushed
        } else {
            Durability::Unflushed
        };
        let commit = (|| {
            if wanted != synchronous {
                let mode = if wanted == Durability::Flushed { "FULL" } else { "NORMAL" };
                connection.pragma_update(None, "synchronous", mode)?;
                synchronous = wanted;
            }
            let mut transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for job in &mut group {
                job.run(&mut transaction);
            }
            transaction.commit()
        })();
        transactions.fetch_add(1, Ordering::Relaxed);
        if commit.is_ok() {
            unflushed_since = match wanted {
                Durability::Flushed => None,
                Durability::Unflushed => unflushed_since.or_else(|| Some(std::time::Instant::now())),
            };
        }
        if let Err(error) = &commit {
            tracing::error!(error = %error, writes = group.len(), "a group of writes could not be committed");
        }
        for job in group {
            job.answer(commit.as_ref().map(|_| ()));
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Unavailable(Box::new(error))
            }
            _ => Self::Internal(Box::new(error)),
        }
    }
}
