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
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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

/// The instance's metrics and the registry that renders them: the API's
/// own, and whatever else was registered in it before (the delivery side's).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pushes_accepted: Family<AppLabels, Counter>,
    callbacks: Family<CallbackLabels, Counter>,
    ready: Gauge,
    queue_overdue: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    /// The API's metrics alone, in a registry of their own.
    fn default() -> Self {
        Self::new(Registry::with_prefix("pushgate"))
    }
}

impl Metrics {
    /// Registers the API's metrics in `registry`, which `/metrics` renders.
    pub fn new(mut registry: Registry) -> Self {
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
        registry.register("pushes_accepted", "Pushes accepted (durably stored)", pushes_accepted.clone());
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register("callbacks", "IMKIT callbacks by version and result", callbacks.clone());
        let ready = Gauge::default();
        registry.register("ready", "1 when this node answers /readyz with ok (set at each scrape)", ready.clone());
        let queue_overdue = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "queue_overdue",
            "How long the most overdue queued or retrying delivery (every node's) has waited past its due time; 0 when none is overdue (set at each scrape)",
            Unit::Seconds,
            queue_overdue.clone(),
        );
        Self { registry, requests, latency, pushes_accepted, callbacks, ready, queue_overdue }
    }

    /// Counts an accepted push.
    pub fn push_accepted(&self, app: &str) {
        self.pushes_accepted.get_or_create(&AppLabels { app: app.to_owned() }).inc();
    }

    /// Counts one IMKIT callback: `accepted`, `duplicate` or `forbidden`.
    pub fn callback(&self, app: &str, version: &str, result: &str) {
        let labels = CallbackLabels { app: app.into(), version: version.into(), result: result.into() };
        self.callbacks.get_or_create(&labels).inc();
    }

    /// Whether this node is ready (what `/readyz` says).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// How late the queue's most overdue delivery is.
    pub fn set_queue_overdue(&self, late: std::time::Duration) {
        self.queue_overdue.set(late.as_secs_f64());
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
