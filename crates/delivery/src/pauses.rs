//! Providers paused for an app: the circuit breaker the worker opens and
//! closes, and `/readyz` shows (through the API's `DeliveryStatus`).
//!
//! When a provider refuses an app itself (credentials, topic), sending the
//! app's other deliveries would only be refused too, and a burst of refused
//! credentials can get a key throttled. So the app's provider is paused: no
//! tokens are touched, no attempts are spent, and after a while exactly one
//! delivery is let through as a probe. Any answer but another refusal of the
//! app resumes it; a refusal doubles the pause, up to a ceiling.
//!
//! On a store several nodes share, the store's pause is the truth: a node
//! that is refused pauses the provider there ([`ProviderPauses::hold`]
//! takes the store's answer), and every node adopts the store's pauses
//! every second ([`ProviderPauses::adopt`]). Each node then probes once per
//! pause, so a pause costs at most one request per node per interval.

use pushgate_domain::{AppId, ProviderKind};
use pushgate_store::SharedPause;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// One paused provider of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// The app.
    pub app: AppId,
    /// The provider that refused it.
    pub provider: ProviderKind,
    /// What the provider answered.
    pub reason: String,
    /// When the next probe may go, Unix ms.
    pub until_ms: i64,
    interval_ms: i64,
    probing: bool,
    /// When this node set or adopted it: a pause newer than a read of the
    /// store is not undone by that read.
    since_ms: i64,
}

/// What adopting the store's pauses changed on this node.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Paused by another node, with its reason.
    pub paused: Vec<(AppId, ProviderKind, String)>,
    /// Resumed by another node.
    pub resumed: Vec<(AppId, ProviderKind)>,
}

impl Pause {
    fn new(app: &AppId, provider: ProviderKind, reason: &str, until_ms: i64, interval_ms: i64, since_ms: i64) -> Self {
        Self { app: app.clone(), provider, reason: reason.to_owned(), until_ms, interval_ms, probing: false, since_ms }
    }
}

/// Whether a delivery may go to its provider now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// The provider is not paused.
    Open,
    /// This delivery is the probe: send it and report the answer.
    Probe,
    /// Hold the delivery until then; the provider refused the app for `reason`.
    Held {
        /// When to look again, Unix ms.
        until_ms: i64,
        /// Why the provider is paused.
        reason: String,
    },
}

/// Every paused (app, provider).
#[derive(Debug, Default)]
pub struct ProviderPauses {
    paused: Mutex<HashMap<(AppId, ProviderKind), Pause>>,
}

/// While a probe is out, other deliveries look again after this long.
const PROBE_WAIT_MS: i64 = 1000;

impl ProviderPauses {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(AppId, ProviderKind), Pause>> {
        self.paused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May a delivery of `app` go to `provider` at `now_ms`?
    pub fn gate(&self, app: &AppId, provider: ProviderKind, now_ms: i64) -> Gate {
        let mut paused = self.lock();
        let Some(pause) = paused.get_mut(&(app.clone(), provider)) else {
            return Gate::Open;
        };
        if now_ms < pause.until_ms {
            return Gate::Held { until_ms: pause.until_ms, reason: pause.reason.clone() };
        }
        if pause.probing {
            return Gate::Held { until_ms: now_ms + PROBE_WAIT_MS, reason: pause.reason.clone() };
        }
        pause.probing = true;
        Gate::Probe
    }

    /// Is `provider` paused for `app` on this node?
    pub fn is_paused(&self, app: &AppId, provider: ProviderKind) -> bool {
        self.lock().contains_key(&(app.clone(), provider))
    }

    /// The provider refused the app: pause it (or, after a failed probe,
    /// pause it twice as long, up to `max_ms`). Answers when it may be probed.
    pub fn refused(
        &self,
        app: &AppId,
        provider: ProviderKind,
        reason: &str,
        now_ms: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> i64 {
        let mut paused = self.lock();
        let key = (app.clone(), provider);
        let interval_ms = paused.get(&key).map_or(base_ms, |pause| (pause.interval_ms * 2).min(max_ms));
        let until_ms = now_ms + interval_ms;
        paused.insert(key, Pause::new(app, provider, reason, until_ms, interval_ms, now_ms));
        until_ms
    }

    /// The provider refused the app and the store shared by every node
    /// paused it until `until_ms`: hold it here until then too.
    pub fn hold(&self, app: &AppId, provider: ProviderKind, reason: &str, until_ms: i64, now_ms: i64) {
        let pause = Pause::new(app, provider, reason, until_ms, until_ms - now_ms, now_ms);
        self.lock().insert((app.clone(), provider), pause);
    }

    /// Takes on the pauses of the store every node shares, as read at
    /// `read_at_ms`: a pause there and not here is adopted (or lengthened:
    /// another node's probe failed); one here and not there was resumed by
    /// another node, unless it was set here after the read.
    pub fn adopt(&self, shared: &[SharedPause], read_at_ms: i64) -> Adopted {
        let mut paused = self.lock();
        let mut adopted = Adopted::default();
        for pause in shared {
            let key = (pause.app_id.clone(), pause.provider);
            match paused.get_mut(&key) {
                Some(ours) if ours.until_ms >= pause.until_ms => {}
                Some(ours) => {
                    ours.until_ms = pause.until_ms;
                    ours.reason.clone_from(&pause.reason);
                    ours.probing = false;
                }
                None => {
                    let interval_ms = pause.until_ms - read_at_ms;
                    let ours = Pause::new(
                        &pause.app_id,
                        pause.provider,
                        &pause.reason,
                        pause.until_ms,
                        interval_ms,
                        read_at_ms,
                    );
                    paused.insert(key, ours);
                    adopted.paused.push((pause.app_id.clone(), pause.provider, pause.reason.clone()));
                }
            }
        }
        paused.retain(|(app, provider), ours| {
            let kept = ours.since_ms >= read_at_ms
                || shared.iter().any(|pause| &pause.app_id == app && pause.provider == *provider);
            if !kept {
                adopted.resumed.push((app.clone(), *provider));
            }
            kept
        });
        adopted.resumed.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        adopted
    }

    /// The provider answered something other than a refusal of the app:
    /// resume it. Answers whether it had been paused.
    pub fn answered(&self, app: &AppId, provider: ProviderKind) -> bool {
        self.lock().remove(&(app.clone(), provider)).is_some()
    }

    /// An operator ended the pause: answers it, if there was one.
    pub fn resume(&self, app: &AppId, provider: ProviderKind) -> Option<Pause> {
        self.lock().remove(&(app.clone(), provider))
    }

    /// Every pause, ordered by app and provider.
    pub fn snapshot(&self) -> Vec<Pause> {
        let mut pauses: Vec<Pause> = self.lock().values().cloned().collect();
        pauses.sort_by(|a, b| (a.app.as_str(), a.provider).cmp(&(b.app.as_str(), b.provider)));
        pauses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProviderKind::{Apns, Fcm};

    fn app(name: &str) -> AppId {
        AppId::parse(name).expect("an app id")
    }

    #[test]
    fn a_refused_app_is_held_then_probed_by_exactly_one_delivery() {
        let pauses = ProviderPauses::default();
        assert_eq!(pauses.gate(&app("A"), Apns, 0), Gate::Open);
        assert_eq!(pauses.refused(&app("A"), Apns, "InvalidProviderToken", 0, 100, 1000), 100);
        assert_eq!(
            pauses.gate(&app("A"), Apns, 50),
            Gate::Held { until_ms: 100, reason: "InvalidProviderToken".into() }
        );
        assert_eq!(pauses.gate(&app("A"), Fcm, 50), Gate::Open, "other providers go on");
        assert_eq!(pauses.gate(&app("B"), Apns, 50), Gate::Open, "other apps go on");
        assert_eq!(pauses.gate(&app("A"), Apns, 100), Gate::Probe);
        assert!(matches!(pauses.gate(&app("A"), Apns, 101), Gate::Held { .. }), "one probe at a time");
    }

    #[test]
    fn a_failed_probe_doubles_the_pause_up_to_the_ceiling() {
        let pauses = ProviderPauses::default();
        assert_eq!(pauses.refused(&app("A"), Apns, "r", 0, 100, 300), 100);
        assert_eq!(pauses.refused(&app("A"), Apns, "r", 100, 100, 300), 300);
        assert_eq!(pauses.refused(&app("A"), Apns, "r", 300, 100, 300), 600);
    }

    fn shared(app_id: &str, until_ms: i64) -> SharedPause {
        SharedPause { app_id: app(app_id), provider: Apns, reason: "InvalidProviderToken".into(), until_ms }
    }

    #[test]
    fn another_nodes_pause_is_adopted_and_its_resume_followed() {
        let pauses = ProviderPauses::default();
        let adopted = pauses.adopt(&[shared("A", 500)], 100);
        assert_eq!(adopted.paused, vec![(app("A"), Apns, "InvalidProviderToken".to_owned())]);
        assert_eq!(
            pauses.gate(&app("A"), Apns, 200),
            Gate::Held { until_ms: 500, reason: "InvalidProviderToken".into() }
        );
        assert_eq!(pauses.adopt(&[shared("A", 500)], 300), Adopted::default(), "nothing new");
        assert_eq!(pauses.gate(&app("A"), Apns, 500), Gate::Probe, "this node probes once the pause runs out");
        let lengthened = pauses.adopt(&[shared("A", 900)], 600);
        assert!(lengthened.paused.is_empty(), "still the same pause: {lengthened:?}");
        assert!(matches!(pauses.gate(&app("A"), Apns, 700), Gate::Held { until_ms: 900, .. }), "another probe failed");
        let resumed = pauses.adopt(&[], 800);
        assert_eq!(resumed.resumed, vec![(app("A"), Apns)]);
        assert_eq!(pauses.gate(&app("A"), Apns, 801), Gate::Open);
    }

    #[test]
    fn a_pause_set_after_a_read_of_the_store_is_not_undone_by_it() {
        let pauses = ProviderPauses::default();
        pauses.hold(&app("A"), Apns, "InvalidProviderToken", 1_000, 200);
        assert_eq!(pauses.adopt(&[], 150), Adopted::default(), "the read began before the pause");
        assert!(matches!(pauses.gate(&app("A"), Apns, 300), Gate::Held { until_ms: 1_000, .. }));
        assert_eq!(pauses.adopt(&[], 250).resumed, vec![(app("A"), Apns)], "a later read without it resumes");
    }

    #[test]
    fn an_answer_resumes_the_provider() {
        let pauses = ProviderPauses::default();
        pauses.refused(&app("A"), Apns, "r", 0, 100, 300);
        assert_eq!(pauses.snapshot().len(), 1);
        assert!(pauses.answered(&app("A"), Apns));
        assert_eq!(pauses.gate(&app("A"), Apns, 1), Gate::Open);
        assert!(pauses.snapshot().is_empty());
        assert!(!pauses.answered(&app("A"), Apns));
    }
}
