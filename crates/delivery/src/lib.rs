//! pushgate's delivery worker: between the store (the durable queue) and the
//! providers (how to send), and below the binary, which wires it in. It never
//! depends on the HTTP API: the API sees it through its own `DeliveryStatus`
//! trait, which the binary implements over [`DeliveryHandle`].
//!
//! A delivery is claimed with a lease, its provider payload is built from the
//! stored push by pure domain functions ([`payload`]), it is sent through the
//! provider of its device type, and its outcome is settled ([`Worker`]):
//! delivered, retrying ([`retry`]: backoff with jitter, `Retry-After`
//! honoured), failed, pruned (an invalid token), skipped, or held while the
//! app's provider is paused ([`pauses`]: the circuit breaker). Sends wait
//! their turn under the app's rate limit ([`SendRate`]). On a store several
//! nodes share, pauses and rate limits hold for all of them.

mod metrics;
pub mod pauses;
mod payload;
mod provider;
mod rate;
pub mod retry;
mod settings;
mod worker;

pub use metrics::DeliveryMetrics;
pub use provider::{ApnsProviders, FcmProvider, WebPushProvider};
pub use rate::SendRate;
pub use settings::DeliveryConfig;
pub use worker::{AppProviders, Worker};

use std::sync::atomic::{AtomicBool, Ordering};

/// What the rest of the process shares with the worker: its wake-up, the
/// provider pauses it keeps, and whether it runs.
#[derive(Debug, Default)]
pub struct DeliveryHandle {
    wake: tokio::sync::Notify,
    running: AtomicBool,
    /// Providers paused for an app whose credentials they refused.
    pub pauses: pauses::ProviderPauses,
}

impl DeliveryHandle {
    /// A push was accepted (or a retry recorded): look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether the worker's loop is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }
}
