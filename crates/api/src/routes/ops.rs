//! Operations routes, open without an API key: they change nothing.

use crate::AppState;
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// The `result` of the health routes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// Providers paused for an app because they refused its credentials or
    /// configuration (the instance itself is ready; those apps need fixing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paused_providers: Vec<crate::PausedProvider>,
    /// Providers this node's recent sends could not reach (no connection or
    /// no answer, several sends in a row); the instance stays ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable_providers: Vec<crate::UnreachableProvider>,
    /// Certificates (the server's TLS one, APNs client ones) that expire
    /// within 30 days or have expired; the instance stays ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expiring_certificates: Vec<crate::certificates::ExpiringCertificate>,
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Envelope<Health>)))]
pub async fn healthz() -> Json<Envelope<Health>> {
    ok(Health {
        status: "ok",
        paused_providers: Vec::new(),
        unreachable_providers: Vec::new(),
        expiring_certificates: Vec::new(),
    })
}

/// The store answers and the delivery worker runs; until both hold, a load
/// balancer should send no traffic here.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, body = Envelope<Health>),
        (status = 503, description = "`UNAVAILABLE`: the store does not answer, or the worker is not running", body = ErrorEnvelope),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Envelope<Health>>, ApiError> {
    readiness(&state).await.map(ok)
}

/// What `/readyz` answers: ready, or why not.
async fn readiness(state: &AppState) -> Result<Health, ApiError> {
    if state.delivery.is_draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "stopping: this instance is draining",
        ));
    }
    if !state.delivery.is_running() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the delivery worker is not running",
        ));
    }
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the store does not answer");
    match tokio::time::timeout(STORE_WAIT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Health {
            status: "ok",
            paused_providers: state.delivery.paused_providers(),
            unreachable_providers: state.delivery.unreachable_providers(),
            expiring_certificates: state.certificates.expiring(crate::now_ms()),
        }),
        Ok(Err(error)) => Err(unavailable().with_cause(error)),
        Err(elapsed) => Err(unavailable().with_cause(elapsed)),
    }
}

/// How long readiness and the queue's lateness wait for the store.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // What a scrape asks of this node at the moment it asks: is it ready, and how late is the queue's most overdue
    // delivery (every node's; an alert on it needs no store access of its own).
    state.metrics.set_ready(readiness(&state).await.is_ok());
    if let Ok(Ok(next_due)) = tokio::time::timeout(STORE_WAIT, state.store.next_due_at()).await {
        let overdue_ms = next_due.map_or(0, |due| (crate::now_ms() - due).max(0));
        state.metrics.set_queue_overdue(Duration::from_millis(overdue_ms.unsigned_abs()));
    }
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
