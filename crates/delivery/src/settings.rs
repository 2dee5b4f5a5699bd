//! `[delivery]`: the worker's settings, read by the binary's configuration.

use serde::Deserialize;

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Sends in flight at once; default 512 (larger groups of outcomes per commit: see BENCHMARKS.md).
    pub concurrency: usize,
    /// Deliveries claimed at a time; default 1024.
    pub batch: u32,
    /// How long a claimed delivery is held before another worker may take it, ms; default 60000.
    pub lease_ms: u64,
    /// First retry delay, ms; it doubles with each attempt (with jitter); default 1000.
    pub retry_base_ms: u64,
    /// Longest retry delay, ms; default 300000 (5 minutes).
    pub retry_max_ms: u64,
    /// Attempts before a delivery fails for good; default 10.
    pub max_attempts: u32,
    /// No attempt later than this after acceptance, s; default 86400 (a day). A push's `expiry` can make it sooner.
    pub max_age_seconds: u64,
    /// Longest sleep between looks at the queue, ms; default 1000 (a new push wakes the worker at once).
    pub poll_interval_ms: u64,
    /// How long a provider that refused an app's credentials is paused before a probe, ms; default 30000.
    /// Each failed probe doubles it.
    pub pause_base_ms: u64,
    /// Longest pause between probes, ms; default 600000 (10 minutes).
    pub pause_max_ms: u64,
    /// Finished pushes (`GET /v1/pushes/{pushId}`) and callback ids (duplicate
    /// detection) are kept this long, h; default 168 (a week).
    pub retention_hours: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            concurrency: 512,
            batch: 1024,
            lease_ms: 60_000,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
            max_attempts: 10,
            max_age_seconds: 86_400,
            poll_interval_ms: 1000,
            pause_base_ms: 30_000,
            pause_max_ms: 600_000,
            retention_hours: 168,
        }
    }
}
