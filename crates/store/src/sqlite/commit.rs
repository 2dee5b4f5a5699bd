//! Outcome batching: attempt outcomes recorded at the same time go to the
//! writer thread as one write, stored in a few statements whatever their
//! number (a send's settlements are one `UPDATE` of its row, not one each).

use super::queue::record;
use super::writer::{Durability, Writer};
use crate::{DeliveryRef, DeliveryUpdate, StoreError};
use std::sync::Arc;

/// Most outcomes stored in one write.
const MAX_GROUP: usize = 1024;

type Outcome = (DeliveryRef, DeliveryUpdate);
type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// The sending side of the batching task.
#[derive(Debug, Clone)]
pub(super) struct Outcomes {
    queue: tokio::sync::mpsc::Sender<(Outcome, Reply)>,
}

impl Outcomes {
    /// Starts the batching task; it ends when every sender is dropped.
    pub(super) fn spawn(writer: Writer) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::channel(MAX_GROUP);
        tokio::spawn(batch_outcomes(writer, receiver));
        Self { queue }
    }

    /// Queues the outcome and waits until it is committed.
    pub(super) async fn record(&self, outcome: Outcome) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable("the store is closed".into());
        self.queue.send((outcome, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Takes the first waiting outcome and every other one already waiting, and
/// stores them as one write. If that fails, each is stored alone, so one bad
/// outcome never fails another.
async fn batch_outcomes(writer: Writer, mut queue: tokio::sync::mpsc::Receiver<(Outcome, Reply)>) {
    let mut waiting = Vec::new();
    while queue.recv_many(&mut waiting, MAX_GROUP).await > 0 {
        let (outcomes, replies): (Vec<Outcome>, Vec<Reply>) = std::mem::take(&mut waiting).into_iter().unzip();
        let outcomes = Arc::new(outcomes);
        let all = Arc::clone(&outcomes);
        match writer.write(Durability::Flushed, move |connection| record(connection, &all)).await {
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
                    let _ = reply.send(
                        writer.write(Durability::Flushed, move |connection| record(connection, &[outcome])).await,
                    );
                }
            }
        }
    }
}
