//! The delivery side's Prometheus metrics, registered into the instance's
//! registry (the API renders it at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use pushgate_domain::{AppId, ProviderKind};
use pushgate_store::{CoalescingCounts, QueueDepth};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    app: String,
    provider: String,
    /// delivered, retried, paused, failed, pruned, skipped
    result: String,
    /// The provider's short reason for anything but a delivery; empty otherwise.
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    app: String,
    provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    app: String,
    /// `message`: a chat message's own alert; `summary`: the alert that ends
    /// a busy room's coalescing window.
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoalescedLabels {
    /// held, merged, cancelled
    result: String,
}

/// What the worker counts.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    deliveries: Family<AttemptLabels, Counter>,
    delivery_latency: Family<AppLabels, Histogram>,
    provider_paused: Family<ProviderLabels, Gauge>,
    queue_depth: Family<StatusLabels, Gauge>,
    chat_alerts: Family<AlertLabels, Counter>,
    coalesced: Family<CoalescedLabels, Counter>,
}

impl DeliveryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            deliveries: Family::default(),
            // 1 ms to about 9 minutes.
            delivery_latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 20))),
            provider_paused: Family::default(),
            queue_depth: Family::default(),
            chat_alerts: Family::default(),
            coalesced: Family::default(),
        };
        registry.register("deliveries", "Delivery attempts by provider, result and reason", metrics.deliveries.clone());
        registry.register(
            "delivery_latency_seconds",
            "From a push's acceptance to the provider's final answer for one device",
            metrics.delivery_latency.clone(),
        );
        registry.register(
            "provider_paused",
            "1 while a provider is paused for an app because it refused the app's credentials",
            metrics.provider_paused.clone(),
        );
        registry.register(
            "queue_depth",
            "Work waiting: pushes journaled (not fanned out yet), deliveries queued, retrying or held (coalescing)",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "chat_alerts",
            "Chat alerts delivered: a message's own, or a summary ending a busy room's coalescing window",
            metrics.chat_alerts.clone(),
        );
        registry.register(
            "coalesced_deliveries",
            "Coalescing on this node: deliveries held for a window's end, merged into a newer alert, cancelled by a read",
            metrics.coalesced.clone(),
        );
        metrics
    }

    /// Counts one attempt's result; `reason` is empty for a delivery.
    pub fn attempt(&self, app: &AppId, provider: Option<ProviderKind>, result: &str, reason: &str) {
        let labels = AttemptLabels {
            app: app.as_str().to_owned(),
            provider: provider.map_or("none", ProviderKind::as_str).to_owned(),
            result: result.to_owned(),
            reason: reason.to_owned(),
        };
        self.deliveries.get_or_create(&labels).inc();
    }

    /// Records the time from acceptance to a final provider answer.
    pub fn latency(&self, app: &AppId, seconds: f64) {
        self.delivery_latency.get_or_create(&AppLabels { app: app.as_str().to_owned() }).observe(seconds);
    }

    /// Marks a provider paused (or resumed) for an app.
    pub fn provider_paused(&self, app: &AppId, provider: ProviderKind, paused: bool) {
        let labels = ProviderLabels { app: app.as_str().to_owned(), provider: provider.as_str().to_owned() };
        self.provider_paused.get_or_create(&labels).set(i64::from(paused));
    }

    /// Counts a chat alert delivered: a summary (coalescing) or a message's own.
    pub fn chat_alert(&self, app: &AppId, summary: bool) {
        let kind = if summary { "summary" } else { "message" };
        self.chat_alerts.get_or_create(&AlertLabels { app: app.as_str().to_owned(), kind: kind.to_owned() }).inc();
    }

    /// Brings the coalescing counters up to the store's totals.
    pub fn coalesced(&self, counts: CoalescingCounts) {
        for (result, total) in [("held", counts.held), ("merged", counts.merged), ("cancelled", counts.cancelled)] {
            let counter = self.coalesced.get_or_create(&CoalescedLabels { result: result.to_owned() });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Sets how much work waits.
    pub fn queue_depth(&self, depth: QueueDepth) {
        for (status, count) in [
            ("journaled", depth.journaled),
            ("queued", depth.queued),
            ("retrying", depth.retrying),
            ("held", depth.held),
        ] {
            self.queue_depth
                .get_or_create(&StatusLabels { status: status.to_owned() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}
