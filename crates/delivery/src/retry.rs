//! The retry policy: when a delivery that failed for a passing reason is
//! tried again, and when it is given up.

use crate::DeliveryConfig;
use pushgate_domain::Reason;
use pushgate_store::{ClaimedDelivery, DeliveryStatus, DeliveryUpdate};
use std::hash::BuildHasher as _;
use std::time::Duration;

/// Due again at `next`, or failed for good when that is past the push's deadline.
pub fn retry_at(delivery: &ClaimedDelivery, reason: Reason, next: i64, attempted: bool, now: i64) -> DeliveryUpdate {
    let (status, reason, next_attempt_at_ms) = if next > delivery.push.deadline_ms {
        (DeliveryStatus::Failed, Reason::GaveUpAtDeadline(Box::new(reason)), None)
    } else {
        (DeliveryStatus::Retrying, reason, Some(next))
    };
    DeliveryUpdate { status, reason: Some(reason), next_attempt_at_ms, attempted, now_ms: now }
}

/// Exponential backoff with jitter: between half and all of
/// `base × 2^(attempts−1)`, capped at the maximum.
pub fn backoff(settings: &DeliveryConfig, delivery: impl std::hash::Hash, attempts: u32) -> Duration {
    let exponential = settings.retry_base_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let ceiling = exponential.min(settings.retry_max_ms).max(1);
    // A per-process random hasher gives jitter without a random-number crate.
    let noise = std::collections::hash_map::RandomState::new().hash_one((delivery, attempts));
    Duration::from_millis(ceiling / 2 + noise % (ceiling / 2 + 1))
}

/// The next state of a delivery the provider asked to retry (`after`: its
/// `Retry-After`), counted from `now`, the time of the provider's answer:
/// the later of the backoff and `after`, or failed once the attempts are
/// spent or the time is past the push's deadline.
pub fn schedule_retry(
    settings: &DeliveryConfig,
    max_attempts: u32,
    delivery: &ClaimedDelivery,
    reason: &Reason,
    after: Option<Duration>,
    now: i64,
) -> DeliveryUpdate {
    let attempts = delivery.attempts + 1;
    if attempts >= max_attempts {
        return DeliveryUpdate {
            status: DeliveryStatus::Failed,
            reason: Some(Reason::GaveUpAfter { reason: Box::new(reason.clone()), attempts }),
            next_attempt_at_ms: None,
            attempted: true,
            now_ms: now,
        };
    }
    let delay = backoff(settings, delivery.id, attempts).max(after.unwrap_or_default());
    let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    retry_at(delivery, reason.clone(), next, true, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DeliveryConfig {
        DeliveryConfig { retry_base_ms: 1000, retry_max_ms: 60_000, ..DeliveryConfig::default() }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        for attempts in 1..=10u32 {
            let ceiling = (1000u64 << (attempts - 1)).min(60_000);
            let delay = backoff(&settings(), 7, attempts).as_millis() as u64;
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "attempt {attempts}: {delay} ms not in [{}, {ceiling}]",
                ceiling / 2
            );
        }
    }
}
