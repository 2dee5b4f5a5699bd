//! Outcome batching, for every backend: attempt outcomes recorded at the
//! same time are stored as one write ([`RecordGroup`]: one transaction, a few
//! statements whatever their number: a send's settlements are one `UPDATE`
//! of its row, not one each).

use crate::queue::DeliveryKey;
use crate::{DeliveryRef, DeliveryStatus, DeliveryUpdate, StoreError};
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

/// A group of attempt outcomes sorted for storing, the same for every
/// backend (each writes each part in one statement, as JSON arrays).
#[derive(Debug)]
pub(crate) struct OutcomeGroup {
    /// Outcomes of deliveries with a row of their own, a JSON array (`id`
    /// and the outcome each); `None` when there are none.
    pub(crate) rows: Option<String>,
    /// First-attempt outcomes that need a row of their own (all but a
    /// success), a JSON array (`send`, `index` and the outcome each).
    pub(crate) own_rows: Option<String>,
    /// Per send, the entries now settled and the latest outcome's time.
    pub(crate) settled: std::collections::BTreeMap<i64, (Vec<u32>, i64)>,
}

impl OutcomeGroup {
    /// Sorts `updates`; each outcome is `{status, reason, next, attempted, now}`.
    pub(crate) fn of(updates: &[(DeliveryRef, DeliveryUpdate)]) -> Self {
        let (mut rows, mut own_rows, mut settled) = (Vec::new(), Vec::new(), std::collections::BTreeMap::new());
        for (delivery, update) in updates {
            let mut fields = serde_json::json!({
                "status": update.status.as_str(),
                "reason": update.reason.as_ref().map(ToString::to_string),
                "next": update.next_attempt_at_ms,
                "attempted": i32::from(update.attempted),
                "now": update.now_ms,
            });
            match delivery.0 {
                DeliveryKey::Row(id) => {
                    fields["id"] = id.into();
                    rows.push(fields);
                }
                DeliveryKey::Planned { send, index } => {
                    let (indexes, now): &mut (Vec<u32>, i64) = settled.entry(send).or_default();
                    indexes.push(index);
                    *now = (*now).max(update.now_ms);
                    if update.status != DeliveryStatus::Delivered {
                        fields["send"] = send.into();
                        fields["index"] = index.into();
                        own_rows.push(fields);
                    }
                }
            }
        }
        let array =
            |values: Vec<serde_json::Value>| (!values.is_empty()).then(|| serde_json::Value::from(values).to_string());
        Self { rows: array(rows), own_rows: array(own_rows), settled }
    }

    /// The settlements as one JSON array: `{send, indexes, now}` each.
    pub(crate) fn settled_json(&self) -> String {
        serde_json::Value::from_iter(
            self.settled
                .iter()
                .map(|(send, (indexes, now))| serde_json::json!({"send": send, "indexes": indexes, "now": now})),
        )
        .to_string()
    }
}
