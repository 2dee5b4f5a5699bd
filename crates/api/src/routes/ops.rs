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
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(ok(Health {
            status: "ok",
            paused_providers: state.delivery.paused_providers(),
            unreachable_providers: state.delivery.unreachable_providers(),
            expiring_certificates: state.certificates.expiring(crate::now_ms()),
        })),
        Ok(Err(error)) => Err(unavailable().with_cause(error)),
        Err(elapsed) => Err(unavailable().with_cause(elapsed)),
    }
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
