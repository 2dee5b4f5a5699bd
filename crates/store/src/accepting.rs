//! Accepts first: a fan-out step gives way to the accepts under way, for a
//! bounded time. Both run on the same store (on SQLite, the same writer
//! thread) and the same cores; IMKIT waits on each accept, while the
//! fan-out's backlog only drains later. The bound keeps a burst of accepts
//! from stopping the fan-out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Longest a fan-out step waits for the accepts under way to be answered.
const ACCEPTS_FIRST_FOR: Duration = Duration::from_millis(20);

/// How many of this process's accepts are under way in the store, and a
/// wake-up when none is.
#[derive(Debug, Default)]
pub(crate) struct Accepting {
    waiting: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Accepting {
    /// Counts an accept until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> AcceptingGuard {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        AcceptingGuard(Arc::clone(self))
    }

    /// Returns once no accept is under way, or after [`ACCEPTS_FIRST_FOR`]:
    /// what a fan-out step waits for first.
    pub(crate) async fn give_way(&self) {
        self.wait_idle(ACCEPTS_FIRST_FOR).await;
    }

    /// Returns once no accept is under way, or after `longest`.
    async fn wait_idle(&self, longest: Duration) {
        let idle = async {
            loop {
                let notified = self.idle.notified();
                if self.waiting.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(longest, idle).await;
    }
}

pub(crate) struct AcceptingGuard(Arc<Accepting>);

impl Drop for AcceptingGuard {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Accepting;
    use std::sync::Arc;
    use std::time::Duration;

    /// Far longer than any of these waits should take: a deadline, not a pace.
    const DEADLINE: Duration = Duration::from_secs(10);
    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn the_fan_out_gives_way_to_accepts_until_none_waits_or_for_a_bounded_time() {
        let accepting = Arc::new(Accepting::default());
        // No accept under way: no wait.
        tokio::time::timeout(DEADLINE, accepting.wait_idle(NEVER)).await.expect("goes at once");
        // An accept under way: the step waits until it is answered.
        let accept = accepting.enter();
        let waiter = tokio::spawn({
            let accepting = Arc::clone(&accepting);
            async move { accepting.wait_idle(NEVER).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the accept is under way");
        drop(accept);
        tokio::time::timeout(DEADLINE, waiter).await.expect("goes once it is answered").expect("task");
        // Accepts that never stop hold it for the bound only.
        let _endless = accepting.enter();
        tokio::time::timeout(DEADLINE, accepting.wait_idle(Duration::from_millis(10))).await.expect("bounded");
        assert_eq!(accepting.waiting.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
