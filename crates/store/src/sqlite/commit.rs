//! Group commit: concurrent writes of one kind share a transaction, so
//! durability costs one disk flush per group rather than per write.

use super::accept::journal_push;
use super::devices::upsert_device_in;
use super::queue::record;
use crate::{Accepted, DeliveryRef, DeliveryUpdate, NewDevice, NewPush, StoreError, UpsertOutcome};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most writes committed in one group.
const MAX_GROUP: usize = 256;

/// What a group of writes answers, once stored: each write's output.
type GroupOutputs<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<Vec<T>, StoreError>> + Send + 'a>>;

/// A write that can share a transaction with others of its kind.
pub(super) trait GroupWrite: std::fmt::Debug + Send + Sync + 'static {
    type Output: Send + 'static;
    /// Stores a group of writes in the open transaction, answering each
    /// one's output in order.
    fn write_group<'a>(writes: &'a [&'a Self], connection: &'a mut SqliteConnection) -> GroupOutputs<'a, Self::Output>;
}

impl GroupWrite for NewPush {
    type Output = Accepted;
    fn write_group<'a>(writes: &'a [&'a Self], connection: &'a mut SqliteConnection) -> GroupOutputs<'a, Accepted> {
        Box::pin(async move {
            let mut accepted = Vec::with_capacity(writes.len());
            for push in writes {
                accepted.push(journal_push(connection, push).await?);
            }
            Ok(accepted)
        })
    }
}

impl GroupWrite for (DeliveryRef, DeliveryUpdate) {
    type Output = ();
    fn write_group<'a>(writes: &'a [&'a Self], connection: &'a mut SqliteConnection) -> GroupOutputs<'a, ()> {
        Box::pin(async move {
            record(connection, writes).await?;
            Ok(vec![(); writes.len()])
        })
    }
}

impl GroupWrite for NewDevice {
    type Output = UpsertOutcome;
    fn write_group<'a>(
        writes: &'a [&'a Self],
        connection: &'a mut SqliteConnection,
    ) -> GroupOutputs<'a, UpsertOutcome> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(writes.len());
            for device in writes {
                outcomes.push(upsert_device_in(connection, device).await?);
            }
            Ok(outcomes)
        })
    }
}

type Reply<W> = tokio::sync::oneshot::Sender<Result<<W as GroupWrite>::Output, StoreError>>;

/// The sending side of a group-committing writer task.
#[derive(Debug)]
pub(super) struct Committer<W: GroupWrite> {
    queue: tokio::sync::mpsc::Sender<(W, Reply<W>)>,
    pub(super) transactions: Arc<AtomicU64>,
}

impl<W: GroupWrite> Clone for Committer<W> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone(), transactions: Arc::clone(&self.transactions) }
    }
}

impl<W: GroupWrite> Committer<W> {
    /// Starts the writer task; it ends when every sender is dropped.
    pub(super) fn spawn(pool: SqlitePool, writer: Arc<tokio::sync::Mutex<()>>) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        let transactions = Arc::new(AtomicU64::new(0));
        tokio::spawn(group_committer(pool, writer, receiver, Arc::clone(&transactions)));
        Self { queue, transactions }
    }

    /// Queues the write and waits until its group is committed.
    pub(super) async fn write(&self, write: W) -> Result<W::Output, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable(Box::new(sqlx::Error::PoolClosed));
        self.queue.send((write, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// A single writer: takes the first waiting write, adds every other one
/// already waiting, and stores them in one transaction. If the group fails,
/// each write is tried alone, so one bad write never fails another.
async fn group_committer<W: GroupWrite>(
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    mut queue: tokio::sync::mpsc::Receiver<(W, Reply<W>)>,
    transactions: Arc<AtomicU64>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let _writer = writer.lock().await;
        // Writes that came while waiting for the writer join this group.
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        transactions.fetch_add(1, Ordering::Relaxed);
        let writes: Vec<&W> = group.iter().map(|(write, _)| write).collect();
        match commit_group(&pool, &writes).await {
            Ok(results) => {
                for ((_, reply), output) in group.into_iter().zip(results) {
                    let _ = reply.send(Ok(output));
                }
            }
            Err(error) if group.len() == 1 => {
                let _ = group.pop().map(|(_, reply)| reply.send(Err(error)));
            }
            Err(error) => {
                tracing::warn!(error = %error, writes = group.len(), "a group commit failed; storing its writes one by one");
                for (write, reply) in group {
                    transactions.fetch_add(1, Ordering::Relaxed);
                    let result = commit_group(&pool, &[&write]).await.map(|mut one| one.remove(0));
                    let _ = reply.send(result);
                }
            }
        }
    }
}

async fn commit_group<W: GroupWrite>(pool: &SqlitePool, writes: &[&W]) -> Result<Vec<W::Output>, StoreError> {
    let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
    let results = W::write_group(writes, &mut transaction).await?;
    transaction.commit().await?;
    Ok(results)
}
