//! A provider's send rate limit for an app: a token bucket in the process
//! ([`governor`]) and, on a store several nodes share, one budget for all of
//! them, so an FCM project's quota is one quota whatever the number of nodes.
//!
//! The shared budget is counted in one-second windows in the store: a node
//! takes a slice of the window's budget at a time (a tenth of the limit, at
//! least one send) and spends it locally, so the store sees about ten
//! requests per second per busy node, not one per send. The nodes together
//! never start more than `limit` sends in a window; what a node took and did
//! not spend before the window ended is lost, never carried over.

use pushgate_store::Store;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slices of a window's budget a node takes one at a time.
const SLICES_PER_WINDOW: u32 = 10;

/// Sends wait here for their turn.
#[derive(Debug)]
pub struct SendRate {
    local: governor::DefaultDirectRateLimiter,
    per_second: NonZeroU32,
    shared: Option<SharedBudget>,
}

#[derive(Debug)]
struct SharedBudget {
    store: Arc<dyn Store>,
    key: String,
    /// The window (Unix seconds) this node holds sends of, and how many.
    held: tokio::sync::Mutex<(i64, u32)>,
}

impl SendRate {
    /// A limit of `per_second` sends, or none for 0.
    pub fn new(per_second: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let local = governor::RateLimiter::direct(governor::Quota::per_second(per_second));
        Some(Self { local, per_second, shared: None })
    }

    /// On a store several nodes share, makes the limit one budget (named
    /// `key`) for all of them; on any other store, the limit stays this
    /// process's alone.
    #[must_use]
    pub fn shared_on(mut self, store: &Arc<dyn Store>, key: String) -> Self {
        if store.is_shared() {
            self.shared = Some(SharedBudget { store: Arc::clone(store), key, held: tokio::sync::Mutex::new((0, 0)) });
        }
        self
    }

    /// Waits until one send may start.
    pub async fn until_ready(&self) {
        self.local.until_ready().await;
        if let Some(shared) = &self.shared {
            shared.take_one(self.per_second.get()).await;
        }
    }
}

impl SharedBudget {
    /// Takes one send of the current window's budget: from what this node
    /// holds, else a new slice from the store, else waits for the next
    /// window. A store that cannot be reached grants nothing: the quota is
    /// kept, the sends wait (their leases are renewed meanwhile).
    async fn take_one(&self, limit: u32) {
        let mut held = self.held.lock().await;
        loop {
            let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis())
                .unwrap_or(i64::MAX);
            let window = now_ms / 1000;
            if held.0 == window && held.1 > 0 {
                held.1 -= 1;
                return;
            }
            let Some(cluster) = self.store.cluster() else { return };
            let slice = (limit / SLICES_PER_WINDOW).max(1);
            match cluster.take_send_budget(&self.key, window, slice, limit).await {
                Ok(granted) if granted > 0 => {
                    *held = (window, granted - 1);
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, budget = %self.key, "cannot take from the shared rate budget; waiting for the next window");
                }
            }
            let next_window_ms = (window + 1) * 1000 - now_ms;
            tokio::time::sleep(Duration::from_millis(u64::try_from(next_window_ms).unwrap_or(1000))).await;
        }
    }
}
