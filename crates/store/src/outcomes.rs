//! Outcome batching, for every backend: attempt outcomes recorded at the
//! same time are stored as one write ([`RecordGroup`]: one transaction, a few
//! statements whatever their number: a send's settlements are one `UPDATE`
//! of its row, not one each).

use crate::{DeliveryRef, DeliveryUpdate, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

/// Most outcomes stored in one write.
const MAX_GROUP: usize = 1024;

pub(crate) type Outcome = (DeliveryRef, DeliveryUpdate);
type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// How a backend stores a group of outcomes in one transaction.
#[async_trait]
pub(crate) trait RecordGroup: Send + Sync + 'static {
    /// Stores every outcome of the group, or none.
    async fn record_group(&self, outcomes: Arc<Vec<Outcome>>) -> Result<(), StoreError>;
}

/// The sending side of the batching task.
#[derive(Debug, Clone)]
pub(crate) struct Outcomes {
    queue: tokio::sync::mpsc::Sender<(Outcome, Reply)>,
}

impl Outcomes {
    /// Starts the batching task; it ends when every sender is dropped.
    pub(crate) fn spawn(target: impl RecordGroup) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::channel(MAX_GROUP);
        tokio::spawn(batch_outcomes(target, receiver));
        Self { queue }
    }

    /// Queues the outcome and waits until it is committed.
    pub(crate) async fn record(&self, outcome: Outcome) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable("the store is closed".into());
        self.queue.send((outcome, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Takes the first waiting outcome and every other one already waiting, and
/// stores them as one write. If that fails, each is stored alone, so one bad
/// outcome never fails another.
async fn batch_outcomes(target: impl RecordGroup, mut queue: tokio::sync::mpsc::Receiver<(Outcome, Reply)>) {
    let mut waiting = Vec::new();
    while queue.recv_many(&mut waiting, MAX_GROUP).await > 0 {
        let (outcomes, replies): (Vec<Outcome>, Vec<Reply>) = std::mem::take(&mut waiting).into_iter().unzip();
        let outcomes = Arc::new(outcomes);
        match target.record_group(Arc::clone(&outcomes)).await {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) if replies.len() == 1 => {
                let _ = replies.into_iter().next().map(|reply| reply.send(Err(error)));
            }
            Err(error) => {
                tracing::warn!(error = %error, outcomes = replies.len(), "a group of outcomes failed; storing them one by one");
                for (outcome, reply) in outcomes.iter().cloned().zip(replies) {
                    let _ = reply.send(target.record_group(Arc::new(vec![outcome])).await);
                }
            }
        }
    }
}
