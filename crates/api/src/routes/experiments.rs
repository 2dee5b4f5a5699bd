//! A/B copy experiments on chat pushes: `PUT`/`GET /v1/experiments/{id}` and
//! `GET /v1/experiments/{id}/stats`. While an experiment applies to a
//! message (type and time window), each recipient gets the variant a stable
//! hash of (experiment, client) picks; the variant is recorded with each
//! delivery and opens are recorded by `POST /v1/pushes/{pushId}/opened`.

use crate::auth::AuthenticatedApp;
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{ApiJson, ApiPath};
use crate::{AppState, now_ms};
use axum::Json;
use axum::extract::State;
use pushgate_domain::{Experiment, ExperimentId, two_proportion_p_value};
use serde::Serialize;
use utoipa::ToSchema;

/// A p-value under this marks a variant as different from the control.
const SIGNIFICANCE: f64 = 0.05;

/// Create or replace an experiment.
#[utoipa::path(
    put,
    path = "/v1/experiments/{id}",
    tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    request_body(content = Object, description = "`variants` [{name, weight, title?, body?}] (templates may use {sender}, {message}, {roomName}), `messageTypes?`, `startMS?`, `endMS?`"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored", body = Envelope<Object>),
        (status = 400, description = "`INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn put_experiment(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(id): ApiPath<String>,
    ApiJson(experiment): ApiJson<Experiment>,
) -> Result<Json<Envelope<Experiment>>, ApiError> {
    let id = ExperimentId::parse(&id)?;
    experiment.validate()?;
    state.store.put_experiment(&app.id, &id, &experiment, now_ms()).await?;
    Ok(ok(experiment))
}

async fn find(
    state: &AppState,
    app: &pushgate_domain::AppId,
    id: &str,
) -> Result<(ExperimentId, Experiment), ApiError> {
    let not_found = || ApiError::not_found(format!("no experiment {id:?} for this app"));
    let id = ExperimentId::parse(id).map_err(|_| not_found())?;
    let experiments = state.store.experiments(app).await?;
    experiments.into_iter().find(|(stored, _)| *stored == id).ok_or_else(not_found)
}

/// An experiment as it was put.
#[utoipa::path(
    get,
    path = "/v1/experiments/{id}",
    tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The experiment", body = Envelope<Object>),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
    )
)]
pub async fn get_experiment(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<Experiment>>, ApiError> {
    Ok(ok(find(&state, &app.id, &id).await?.1))
}

/// One variant's figures.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariantStats {
    /// The variant.
    pub name: String,
    /// Recipients (per message) given the variant and not skipped by routing.
    pub targeted: u64,
    /// Of those, reached on at least one device.
    pub delivered: u64,
    /// Of those, reached on none (every device failed or was pruned).
    pub failed: u64,
    /// Of those, who opened the push.
    pub opened: u64,
    /// `opened / delivered`; absent before any delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_rate: Option<f64>,
    /// Two-sided p-value of a two-proportion z-test of this variant's open rate against the first variant's
    /// (the control); absent for the control and when there is nothing to test yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// `pValue < 0.05`.
    pub significant: bool,
}

/// The `result` of the stats route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStats {
    /// The experiment.
    pub experiment_id: String,
    /// Every variant, in the experiment's order: the first is the control.
    pub variants: Vec<VariantStats>,
}

/// Per variant: targeted, delivered, failed, opened, open rate, and whether it differs from the control.
#[utoipa::path(
    get,
    path = "/v1/experiments/{id}/stats",
    tag = "experiments",
    params(("id" = String, Path, description = "The experiment's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The figures", body = Envelope<ExperimentStats>),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
    )
)]
pub async fn experiment_stats(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<ExperimentStats>>, ApiError> {
    let (experiment_id, experiment) = find(&state, &app.id, &id).await?;
    let counts = state.store.experiment_stats(&app.id, &experiment_id).await?;
    let mut variants: Vec<VariantStats> = experiment
        .variants
        .iter()
        .map(|variant| {
            let figures = counts.iter().find(|counts| counts.variant == variant.name).cloned().unwrap_or_default();
            VariantStats {
                name: variant.name.clone(),
                targeted: figures.targeted,
                delivered: figures.delivered,
                failed: figures.failed,
                opened: figures.opened,
                open_rate: (figures.delivered > 0).then(|| figures.opened as f64 / figures.delivered as f64),
                p_value: None,
                significant: false,
            }
        })
        .collect();
    if let Some((control, others)) = variants.split_first_mut() {
        for variant in others {
            variant.p_value =
                two_proportion_p_value(control.opened, control.delivered, variant.opened, variant.delivered);
            variant.significant = variant.p_value.is_some_and(|p| p < SIGNIFICANCE);
        }
    }
    Ok(ok(ExperimentStats { experiment_id: id, variants }))
}
