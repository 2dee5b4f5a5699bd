//! The admin console at `/admin`: a page built into the binary (no asset
//! from anywhere else) and the few routes only it needs. Everything else it
//! shows comes from the public API's own routes, called with the same key.
//!
//! The console authenticates every request with the `IM-API-KEY` header
//! (an app's key, or an admin key plus `IM-APP-ID`), never a cookie: the
//! browser attaches nothing by itself, so another site cannot make it act
//! (no CSRF), and the page keeps the key in the tab's session storage only.

pub mod history;
pub mod recent;

use crate::auth::{Access, AuthenticatedApp};
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::ApiPath;
use crate::metrics::Metrics;
use crate::{AppState, PausedProvider, UnreachableProvider, now_ms};
use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;
use history::{Charts, History, Sample};
use pushgate_domain::{AppId, ClientId, ProviderKind};
use recent::{RecentPush, RecentPushes};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// What the console keeps in memory: the charts' history and the recent accepts.
#[derive(Debug, Default)]
pub struct Console {
    /// The last hour of `/metrics` samples.
    pub history: History,
    /// The pushes this node accepted lately.
    pub recent: RecentPushes,
}

impl Console {
    /// Samples `/metrics` into the history every [`history::STEP`], for as
    /// long as the task runs (the first sample at once).
    pub async fn record_history(self: Arc<Self>, metrics: Arc<Metrics>) {
        let mut ticks = tokio::time::interval(history::STEP);
        loop {
            ticks.tick().await;
            self.history.push(Sample::parse(&metrics.render(), now_ms()));
        }
    }
}

/// The page and its assets, compiled in.
const INDEX_HTML: &str = include_str!("../../admin/index.html");
const APP_JS: &str = include_str!("../../admin/app.js");
const APP_CSS: &str = include_str!("../../admin/app.css");

/// Headers of every console asset: only this origin's scripts and styles,
/// never in a frame (clickjacking), no referrer, no sniffing, always fresh.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 6] = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ),
        (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
        (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
    ];
    (headers, body)
}

/// `GET /admin`: the console's page.
pub async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /admin/app.js`.
pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /admin/app.css`.
pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Whoever presented a key the console's own routes accept.
#[derive(Debug, Clone)]
pub struct Operator(pub Access);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts.headers.get("IM-API-KEY").and_then(|value| value.to_str().ok());
        key.and_then(|key| state.keys.access(key, &state.apps)).map(Operator).ok_or_else(ApiError::invalid_api_key)
    }
}

impl Operator {
    /// The app a request acts on: an app key's own; for an admin key, the
    /// one named (or every app, `None`, when none is).
    fn scope(&self, state: &AppState, named: Option<&str>) -> Result<Option<AppId>, ApiError> {
        match (&self.0, named) {
            (Access::App(app), None) => Ok(Some(app.id.clone())),
            (Access::App(app), Some(named)) if named == app.id.as_str() => Ok(Some(app.id.clone())),
            (Access::App(_), Some(named)) => Err(ApiError::invalid(format!("app: this key does not open {named:?}"))),
            (Access::Admin, None) => Ok(None),
            (Access::Admin, Some(named)) => AppId::parse(named)
                .ok()
                .filter(|id| state.apps.contains_key(id))
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("app: no app {named:?} is configured"))),
        }
    }
}

/// The `result` of the session route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// Whether the key is an admin key (every app) rather than an app's.
    pub admin: bool,
    /// The apps the key opens, sorted.
    pub apps: Vec<String>,
}

/// What the presented key opens: the console's login.
#[utoipa::path(
    get,
    path = "/admin/api/session",
    tag = "console",
    security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<Session>),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn session(State(state): State<AppState>, operator: Operator) -> Json<Envelope<Session>> {
    let (admin, mut apps) = match operator.0 {
        Access::App(app) => (false, vec![app.id.to_string()]),
        Access::Admin => (true, state.apps.keys().map(ToString::to_string).collect()),
    };
    apps.sort();
    ok(Session { admin, apps })
}

/// Query of the overview route.
#[derive(Debug, Deserialize, IntoParams)]
pub struct OverviewQuery {
    /// One app (an admin key sees every app without it).
    pub app: Option<String>,
}

/// Work waiting in the store (every app's, every node's).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// Pushes accepted, not fanned out yet.
    pub journaled: u64,
    /// Deliveries waiting for their first attempt.
    pub queued: u64,
    /// Deliveries waiting for another attempt.
    pub retrying: u64,
    /// Deliveries held until their room's coalescing window ends.
    pub held: u64,
    /// When the earliest waiting work is due, Unix ms (in the past: overdue).
    #[serde(rename = "nextDueAtMS")]
    pub next_due_at_ms: Option<i64>,
}

/// Coalescing since this node started: chat alerts it delivered, and what
/// its fan-outs held, merged and cancelled (every app's: the store counts
/// them per node, not per app).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoalescingView {
    /// A message's own alerts delivered (of the app in scope).
    pub alerts: u64,
    /// Alerts ending a busy room's window delivered (of the app in scope).
    pub summaries: u64,
    /// Deliveries held for a window's end.
    pub held: u64,
    /// Held deliveries merged into a newer message's alert.
    pub merged: u64,
    /// Held deliveries cancelled by a read.
    pub cancelled: u64,
}

/// The `result` of the overview route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// The app the figures are of; absent: every app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// This node's time, Unix ms.
    #[serde(rename = "nowMS")]
    pub now_ms: i64,
    /// Seconds between two samples.
    pub step_seconds: u64,
    /// This node's figures over the last hour, from its `/metrics`.
    pub charts: Charts,
    /// The store's queue.
    pub queue: QueueView,
    /// Alerts sent and saved by coalescing.
    pub coalescing: CoalescingView,
    /// Paused providers, with their reason and next probe.
    pub paused_providers: Vec<PausedProvider>,
    /// Providers this node's recent sends could not reach.
    pub unreachable_providers: Vec<UnreachableProvider>,
}

/// The live overview: this node's delivery and accept figures over the last
/// hour, the queue, and the providers paused or out of reach.
#[utoipa::path(
    get,
    path = "/admin/api/overview",
    tag = "console",
    params(OverviewQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<Overview>),
        (status = 400, description = "`INVALID_PARAMETER`: an app the key does not open", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn overview(
    State(state): State<AppState>,
    operator: Operator,
    Query(query): Query<OverviewQuery>,
) -> Result<Json<Envelope<Overview>>, ApiError> {
    let app = operator.scope(&state, query.app.as_deref())?;
    let in_scope = |of: &str| app.as_ref().is_none_or(|app| app.as_str() == of);
    let now = now_ms();
    let current = Sample::parse(&state.metrics.render(), now);
    let alerts_of = |kind: &str| {
        let alerts = current.chat_alerts.iter().filter(|((of, of_kind), _)| of_kind == kind && in_scope(of));
        alerts.map(|(_, count)| *count as u64).sum()
    };
    let counts = state.store.coalescing_counts();
    let coalescing = CoalescingView {
        alerts: alerts_of("message"),
        summaries: alerts_of("summary"),
        held: counts.held,
        merged: counts.merged,
        cancelled: counts.cancelled,
    };
    let samples = state.console.history.with_now(current);
    let charts = Charts::from_samples(&samples, app.as_ref().map(AppId::as_str));
    let depth = state.store.queue_depth().await?;
    let next_due_at_ms = state.store.next_due_at().await?;
    Ok(ok(Overview {
        app: app.as_ref().map(ToString::to_string),
        now_ms: now,
        step_seconds: history::STEP.as_secs(),
        charts,
        queue: QueueView {
            journaled: depth.journaled,
            queued: depth.queued,
            retrying: depth.retrying,
            held: depth.held,
            next_due_at_ms,
        },
        coalescing,
        paused_providers: state.delivery.paused_providers().into_iter().filter(|pause| in_scope(&pause.app)).collect(),
        unreachable_providers: state
            .delivery
            .unreachable_providers()
            .into_iter()
            .filter(|unreached| in_scope(&unreached.app))
            .collect(),
    }))
}

/// The `result` of the recent pushes route.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentPushList {
    /// Newest first.
    pub pushes: Vec<RecentPush>,
}

/// The pushes for a client this node accepted lately (its last
/// 2,000 accepts, the first 1,000 clients of each), newest first.
#[utoipa::path(
    get,
    path = "/admin/api/clients/{clientId}/recent",
    tag = "console",
    params(("clientId" = String, Path, description = "The IMKIT client id")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<RecentPushList>),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn recent_pushes(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<Envelope<RecentPushList>>, ApiError> {
    let client_id = ClientId::parse(&client_id)?;
    Ok(ok(RecentPushList { pushes: state.console.recent.of_client(app.id.as_str(), client_id.as_str(), 20) }))
}

/// The `result` of the resume route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resumed {
    /// Whether the provider was paused (for this app) until now.
    pub resumed: bool,
}

/// End a provider's pause for the app now, on every node: the deliveries it
/// held become due at once. Should the provider still refuse the app, the
/// first refusal pauses it again.
#[utoipa::path(
    post,
    path = "/admin/api/providers/{provider}/resume",
    tag = "console",
    params(("provider" = String, Path, description = "`apns`, `fcm` or `webpush`")),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<Resumed>),
        (status = 400, description = "`INVALID_PARAMETER`: no such provider", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(provider): ApiPath<String>,
) -> Result<Json<Envelope<Resumed>>, ApiError> {
    let provider =
        ProviderKind::parse(&provider).map_err(|error| ApiError::invalid(format!("provider: {}", error.0)))?;
    let resumed = state.delivery.resume(&app.id, provider).await?;
    if resumed {
        tracing::info!(app.id = %app.id, %provider, "resumed from the console");
    }
    Ok(ok(Resumed { resumed }))
}

/// The `result` of the reload route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// What was read again and swapped in.
    pub reloaded: Vec<String>,
}

/// Re-read the configuration's credential files (APNs keys and certificates,
/// FCM service accounts, Web Push keys, the server's TLS certificate) and swap
/// them in without dropping work under way; a bad file changes nothing. An
/// admin key only; SIGHUP does the same.
#[utoipa::path(
    post,
    path = "/admin/api/reload",
    tag = "console",
    security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<Reloaded>),
        (status = 400, description = "`RELOAD_REFUSED` naming the file or key at fault; the old credentials stay", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
        (status = 403, description = "`FORBIDDEN`: an app's key cannot reload the instance", body = ErrorEnvelope),
    )
)]
pub async fn reload(State(state): State<AppState>, operator: Operator) -> Result<Json<Envelope<Reloaded>>, ApiError> {
    if !matches!(operator.0, Access::Admin) {
        return Err(ApiError::forbidden("reloading the instance needs an admin key"));
    }
    let reloader = state.reload.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "RELOAD_REFUSED",
            "this instance was started without a configuration file to read again",
        )
    })?;
    match reloader.reload().await {
        Ok(reloaded) => Ok(ok(Reloaded { reloaded })),
        Err(why) => Err(ApiError::new(axum::http::StatusCode::BAD_REQUEST, "RELOAD_REFUSED", why)),
    }
}
