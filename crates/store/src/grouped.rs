//! Group commit, for every backend: writes asked for at the same time go to
//! the store as one transaction ([`WriteGroup`]), each caller waiting for
//! that commit. Outcomes of attempts are written so on every backend, and
//! accepts on PostgreSQL (where each transaction is round trips and a WAL
//! flush; SQLite's writer thread groups its accepts itself).

use crate::StoreError;
use async_trait::async_trait;
use std::sync::Arc;

/// How a backend stores a group of items in one transaction.
#[async_trait]
pub(crate) trait WriteGroup<Item, Answer>: Send + Sync + 'static {
    /// Stores every item of the group, or none; answers for each, in order.
    async fn write_group(&self, items: Arc<Vec<Item>>) -> Result<Vec<Answer>, StoreError>;
}

type Reply<Answer> = tokio::sync::oneshot::Sender<Result<Answer, StoreError>>;

/// The sending side of a grouping task.
#[derive(Debug)]
pub(crate) struct Grouped<Item, Answer> {
    queue: tokio::sync::mpsc::Sender<(Item, Reply<Answer>)>,
}

impl<Item, Answer> Clone for Grouped<Item, Answer> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<Item: Clone + Send + Sync + 'static, Answer: Send + 'static> Grouped<Item, Answer> {
    /// Starts the grouping task: at most `max_group` items a transaction,
    /// and at most `in_flight` transactions at once (while they all are
    /// under way, what is asked for waits and joins the next group). It ends
    /// when every sender is dropped.
    pub(crate) fn spawn(target: impl WriteGroup<Item, Answer>, max_group: usize, in_flight: usize) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::channel(max_group);
        tokio::spawn(write_groups(Arc::new(target), receiver, max_group, in_flight));
        Self { queue }
    }

    /// Queues the item and waits until it is committed.
    pub(crate) async fn write(&self, item: Item) -> Result<Answer, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable("the store is closed".into());
        self.queue.send((item, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Takes the first waiting item and every other one already waiting, as
/// soon as a transaction may start, and stores them as one write.
async fn write_groups<Item: Clone + Send + Sync + 'static, Answer: Send + 'static>(
    target: Arc<impl WriteGroup<Item, Answer>>,
    mut queue: tokio::sync::mpsc::Receiver<(Item, Reply<Answer>)>,
    max_group: usize,
    in_flight: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let mut waiting = Vec::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        if queue.recv_many(&mut waiting, max_group).await == 0 {
            return;
        }
        let group = std::mem::take(&mut waiting);
        let target = Arc::clone(&target);
        tokio::spawn(async move {
            write_group(&*target, group).await;
            drop(slot);
        });
    }
}

/// Stores a group as one write. If that fails, each is stored alone, so one
/// bad item never fails another.
async fn write_group<Item: Clone + Send + Sync + 'static, Answer: Send + 'static>(
    target: &impl WriteGroup<Item, Answer>,
    group: Vec<(Item, Reply<Answer>)>,
) {
    let (items, replies): (Vec<Item>, Vec<Reply<Answer>>) = group.into_iter().unzip();
    let items = Arc::new(items);
    match target.write_group(Arc::clone(&items)).await {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Ok(answers) => {
            let error = format!("a group of {} writes answered {}", replies.len(), answers.len());
            for reply in replies {
                let _ = reply.send(Err(StoreError::Internal(error.clone().into())));
            }
        }
        Err(error) if replies.len() == 1 => {
            let _ = replies.into_iter().next().map(|reply| reply.send(Err(error)));
        }
        Err(error) => {
            tracing::warn!(error = %error, writes = replies.len(), "a group of writes failed; storing them one by one");
            for (item, reply) in items.iter().cloned().zip(replies) {
                let alone = target.write_group(Arc::new(vec![item])).await;
                let _ = reply.send(alone.and_then(|mut answers| {
                    answers.pop().ok_or_else(|| StoreError::Internal("a write answered nothing".into()))
                }));
            }
        }
    }
}
