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

use pushgate_domain::{AppId, ProviderKind};
use pushgate_store::{Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};

/// What the rest of the process shares with the worker: its wake-up, the
/// provider pauses it keeps, and whether it runs.
#[derive(Debug, Default)]
pub struct DeliveryHandle {
    wake: tokio::sync::Notify,
    /// Wakes the fan-out: a push was journaled.
    pub(crate) journaled: tokio::sync::Notify,
    running: AtomicBool,
    draining: AtomicBool,
    /// Providers paused for an app whose credentials they refused.
    pub pauses: pauses::ProviderPauses,
    /// Providers this node's recent sends could not reach, per app.
    pub reach: Reach,
}

/// Sends in a row after which a provider no send reached is reported
/// unreachable (`/readyz`).
pub const UNREACHABLE_AFTER: u32 = 5;

/// Per app and provider, the sends in a row that did not reach it, since
/// when, and why the last one did not; any answer from the provider clears it.
#[derive(Debug, Default)]
pub struct Reach(std::sync::Mutex<std::collections::HashMap<(AppId, ProviderKind), Unreached>>);

/// A provider's run of sends that did not reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreached {
    /// Sends in a row.
    pub sends: u32,
    /// The first of them, Unix ms.
    pub since_ms: i64,
    /// Why the last one did not.
    pub reason: String,
}

impl Reach {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(AppId, ProviderKind), Unreached>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a send's outcome.
    pub fn record(&self, app: &AppId, provider: ProviderKind, outcome: &pushgate_providers::Outcome, now_ms: i64) {
        let mut runs = self.lock();
        if outcome.is_unreachable() {
            let run = runs.entry((app.clone(), provider)).or_insert_with(|| Unreached {
                sends: 0,
                since_ms: now_ms,
                reason: String::new(),
            });
            run.sends += 1;
            run.reason = outcome.reason().map(ToString::to_string).unwrap_or_default();
        } else {
            runs.remove(&(app.clone(), provider));
        }
    }

    /// The providers at least [`UNREACHABLE_AFTER`] sends in a row did not reach, ordered.
    pub fn unreachable(&self) -> Vec<(AppId, ProviderKind, Unreached)> {
        let mut found: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, run)| run.sends >= UNREACHABLE_AFTER)
            .map(|((app, provider), run)| (app.clone(), *provider, run.clone()))
            .collect();
        found.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
        found
    }
}

impl DeliveryHandle {
    /// A push was accepted: fan it out, and look at the queue, now.
    pub fn wake(&self) {
        self.journaled.notify_one();
        self.wake.notify_one();
    }

    /// Deliveries became due (fanned out, a retry recorded): look at the
    /// queue now.
    pub(crate) fn wake_claims(&self) {
        self.wake.notify_one();
    }

    /// Whether the worker's loop is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// The process is stopping: the worker claims nothing more, lets the
    /// sends under way finish and record their outcomes, and returns.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether [`DeliveryHandle::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Raises or lowers the running flag: [`crate::Worker::spawn`]'s loop
    /// holds it up while it runs; the holder of a worker it drives itself
    /// (`run_pending`) raises it.
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    /// An operator ends `provider`'s pause for `app` now: here, and on a
    /// shared store for every node; the deliveries the pause held are due at
    /// once. Answers whether it was paused (here or on the shared store).
    pub async fn resume(
        &self,
        store: &dyn Store,
        app: &AppId,
        provider: ProviderKind,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut until = self.pauses.resume(app, provider).map(|pause| pause.until_ms);
        if let Some(cluster) = store.cluster() {
            let shared = cluster.provider_pauses().await?;
            if let Some(pause) = shared.iter().find(|pause| &pause.app_id == app && pause.provider == provider) {
                until = Some(until.unwrap_or_default().max(pause.until_ms));
                cluster.resume_provider(app, provider).await?;
            }
        }
        let Some(until) = until else { return Ok(false) };
        let expedited = store.expedite_retries(app, provider::device_types_of(provider), until, now_ms).await?;
        tracing::info!(app.id = %app, %provider, deliveries = expedited, "pause ended by an operator; the deliveries it held are due now");
        self.wake_claims();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_domain::{Reason, Unreachable};
    use pushgate_providers::Outcome;

    #[test]
    fn a_provider_is_unreachable_after_sends_in_a_row_and_reached_again_by_any_answer() {
        let reach = Reach::default();
        let app = AppId::parse("app").expect("an app id");
        let lost = Outcome::Retry { reason: Reason::Unreachable(Unreachable::ConnectionFailed), after: None };
        for n in 0..UNREACHABLE_AFTER {
            assert!(reach.unreachable().is_empty(), "not after {n}");
            reach.record(&app, ProviderKind::Apns, &lost, 100 + i64::from(n));
        }
        let found = reach.unreachable();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].2.sends, found[0].2.since_ms, found[0].2.reason.as_str()), (5, 100, "ConnectionFailed"));
        // A refusal is an answer: the provider was reached.
        reach.record(
            &app,
            ProviderKind::Apns,
            &Outcome::Retry { reason: Reason::provider("TooManyRequests"), after: None },
            200,
        );
        assert!(reach.unreachable().is_empty());
    }
}
