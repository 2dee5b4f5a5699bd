//! Prometheus metrics, one registry per running instance (no global state, so
//! several instances in one test process do not share counters).

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route template (`/v1/clients/{clientId}/devices`), never the raw
    /// path, so the number of series stays bounded.
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    app: String,
    provider: String,
    /// delivered, retried, failed, pruned, skipped
    result: String,
    /// The provider's reason for anything but a delivery; empty otherwise.
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    app: String,
    /// v1 or v2
    version: String,
    /// accepted, duplicate, forbidden
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The instance's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pushes_accepted: Family<AppLabels, Counter>,
    deliveries_queued: Family<AppLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_latency: Family<AppLabels, Histogram>,
    provider_paused: Family<ProviderLabels, Gauge>,
    queue_depth: Family<StatusLabels, Gauge>,
    callbacks: Family<CallbackLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    app: String,
    provider: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pushgate");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms to about 16 s.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response head, by route",
            latency.clone(),
        );
        let pushes_accepted = Family::<AppLabels, Counter>::default();
        let deliveries_queued = Family::<AppLabels, Counter>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let delivery_latency = Family::<AppLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        });
        registry.register("pushes_accepted", "Pushes accepted (durably stored)", pushes_accepted.clone());
        registry.register("deliveries_queued", "Deliveries queued by accepted pushes", deliveries_queued.clone());
        registry.register("deliveries", "Delivery attempts by provider, result and reason", deliveries.clone());
        registry.register(
            "delivery_latency_seconds",
            "From a push's acceptance to the provider's final answer for one device",
            delivery_latency.clone(),
        );
        let provider_paused = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "provider_paused",
            "1 while a provider is paused for an app because it refused the app's credentials",
            provider_paused.clone(),
        );
        let queue_depth = Family::<StatusLabels, Gauge>::default();
        registry.register("queue_depth", "Deliveries waiting, queued or retrying", queue_depth.clone());
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register("callbacks", "IMKIT callbacks by version and result", callbacks.clone());
        Self {
            registry,
            requests,
            latency,
            pushes_accepted,
            deliveries_queued,
            deliveries,
            delivery_latency,
            provider_paused,
            queue_depth,
            callbacks,
        }
    }
}

impl Metrics {
    /// Counts an accepted push and the deliveries it queued.
    pub fn push_accepted(&self, app: &str, deliveries: u64) {
        let labels = AppLabels { app: app.to_owned() };
        self.pushes_accepted.get_or_create(&labels).inc();
        self.deliveries_queued.get_or_create(&labels).inc_by(deliveries);
    }

    /// Counts one IMKIT callback: `accepted`, `duplicate` or `forbidden`.
    pub fn callback(&self, app: &str, version: &str, result: &str) {
        let labels = CallbackLabels { app: app.into(), version: version.into(), result: result.into() };
        self.callbacks.get_or_create(&labels).inc();
    }

    /// Counts one attempt's result; `reason` is empty for a delivery.
    pub fn delivery(&self, app: &str, provider: &str, result: &str, reason: &str) {
        let labels =
            DeliveryLabels { app: app.into(), provider: provider.into(), result: result.into(), reason: reason.into() };
        self.deliveries.get_or_create(&labels).inc();
    }

    /// Records the time from acceptance to a final provider answer.
    pub fn delivery_latency(&self, app: &str, seconds: f64) {
        self.delivery_latency.get_or_create(&AppLabels { app: app.to_owned() }).observe(seconds);
    }

    /// Marks a provider paused (or resumed) for an app.
    pub fn provider_paused(&self, app: &str, provider: &str, paused: bool) {
        self.provider_paused
            .get_or_create(&ProviderLabels { app: app.to_owned(), provider: provider.to_owned() })
            .set(i64::from(paused));
    }

    /// Sets the number of deliveries waiting.
    pub fn queue_depth(&self, queued: u64, retrying: u64) {
        for (status, count) in [("queued", queued), ("retrying", retrying)] {
            self.queue_depth
                .get_or_create(&StatusLabels { status: status.to_owned() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in the OpenMetrics text format, which Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        text
    }
}

/// Middleware that counts and times every request by route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .latency
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    response
}
