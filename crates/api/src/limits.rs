//! Per-app limits on the routes that accept pushes (push2clients and the
//! callbacks), so one misbehaving caller cannot starve the other apps: a
//! request rate (GCRA, with a burst) and a number of requests under way.
//! Past either, the answer is 429 `RATE_LIMITED` with `Retry-After`, and
//! nothing is stored.

use crate::error::ApiError;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An app's inbound limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundSettings {
    /// Accept requests per second, sustained.
    pub requests_per_second: u32,
    /// Accept requests at once above the rate (the bucket's size).
    pub burst: u32,
    /// Accept requests under way at the same time.
    pub in_flight: u32,
}

impl Default for InboundSettings {
    /// Generous: 5,000 a second, bursts of 10,000, 1,024 under way.
    fn default() -> Self {
        Self { requests_per_second: 5_000, burst: 10_000, in_flight: 1_024 }
    }
}

/// An app's limiter.
#[derive(Debug)]
pub struct InboundLimits {
    rate: DefaultDirectRateLimiter,
    clock: DefaultClock,
    in_flight: Arc<Semaphore>,
}

impl Default for InboundLimits {
    fn default() -> Self {
        Self::new(InboundSettings::default())
    }
}

impl InboundLimits {
    /// Limits with these settings (zeros are taken as one).
    pub fn new(settings: InboundSettings) -> Self {
        let at_least_one = |value: u32| NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN);
        let quota =
            Quota::per_second(at_least_one(settings.requests_per_second)).allow_burst(at_least_one(settings.burst));
        Self {
            rate: DefaultDirectRateLimiter::direct(quota),
            clock: DefaultClock::default(),
            in_flight: Arc::new(Semaphore::new(usize::try_from(settings.in_flight.max(1)).unwrap_or(usize::MAX))),
        }
    }

    /// Lets one accept request in, or refuses it with `Retry-After`; the
    /// permit counts it as under way until dropped.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| ApiError::rate_limited("too many requests of this app under way; try again shortly", 1))?;
        if let Err(not_until) = self.rate.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ApiError::rate_limited(
                "this app's request rate is over its limit; try again after Retry-After",
                wait.as_secs_f64().ceil() as u64,
            ));
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_then_the_rate_holds_and_in_flight_requests_are_bounded() {
        let limits = InboundLimits::new(InboundSettings { requests_per_second: 1, burst: 3, in_flight: 10 });
        let admitted: Vec<_> = (0..3).map(|_| limits.admit().expect("within the burst")).collect();
        let refused = limits.admit().expect_err("past the burst");
        let response = axum::response::IntoResponse::into_response(refused);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        drop(admitted);

        let limits = InboundLimits::new(InboundSettings { requests_per_second: 1000, burst: 1000, in_flight: 2 });
        let (first, _second) = (limits.admit().expect("one"), limits.admit().expect("two"));
        assert!(limits.admit().is_err(), "two under way at most");
        drop(first);
        assert!(limits.admit().is_ok(), "a finished request frees its place");
    }
}
