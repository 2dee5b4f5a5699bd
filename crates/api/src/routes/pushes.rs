//! `POST /push/push2clients` (IMKIT's server-side custom push) and
//! `GET /v1/pushes/{pushId}` (where each of its deliveries stands).

use crate::accept::{PushSource, accept_push};
use crate::auth::{ApnsAuth, AuthenticatedApp};
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{ApiJson, ApiPath};
use crate::{AppState, new_push_id, now_ms};
use axum::Json;
use axum::extract::{RawQuery, State};
use pushgate_domain::{ClientId, CustomPush, LiveActivityPush, PushId, PushRequest, Reason};
use pushgate_store::{BadgePlan, DeliveryStatus, DeviceTarget, NewPush};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// Most clients one request may name.
pub const MAX_CLIENTS_PER_PUSH: usize = 10_000;

/// Body of `POST /push/push2clients`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Push2ClientsRequest {
    /// Client ids to push to.
    #[schema(required = true, value_type = Vec<String>)]
    pub clients: Option<Vec<String>>,
    /// The notification: `type`, `expiry`, `alert` (string or `{loc-key, loc-args}`), `badge`, `sound`,
    /// `topic` (iOS); `title`, `body`, `icon`, `collapseKey` (Android). Optional provider override blocks, merged
    /// over what pushgate builds (objects key by key, `null` removes a key: JSON Merge Patch, RFC 7396):
    /// `apns` `{"headers": {apns-push-type (alert, background; voip, widgets, location, complication, fileprovider,
    /// pushtotalk: to the clients' devices of that kind only), apns-priority (10|5|1), apns-expiration,
    /// apns-collapse-id, apns-topic}, "payload": {...}}`; `fcm` (merged into the FCM v1 `message`: `data` (string
    /// values), `notification`, `android`, `webpush`, `apns`, `fcm_options`; never the target); `webpush`
    /// `{"headers": {TTL, Urgency, Topic}, "notification": {...}}`. A block that would make a request its provider
    /// refuses (an unknown header, a background push at priority 10 or with an alert, a merged payload over the
    /// provider's size limit) is a 400 naming it, and nothing is stored.
    #[schema(required = true, value_type = Object)]
    pub payload: Option<serde_json::Value>,
}

/// The `result` of an accepted push. Its deliveries (one per registered
/// device; a client without one is counted as skipped) are made after the
/// answer: `GET /v1/pushes/{pushId}` shows them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Push2ClientsResult {
    /// Track it with `GET /v1/pushes/{pushId}`.
    pub push_id: String,
}

/// Send a custom push to every registered device of the listed clients.
/// Answered once the push is durably stored; delivery follows.
#[utoipa::path(
    post,
    path = "/push/push2clients",
    tag = "pushes",
    request_body = Push2ClientsRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Accepted: stored, to be delivered", body = Envelope<Push2ClientsResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: nothing was accepted", body = ErrorEnvelope),
    )
)]
pub async fn push2clients(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiJson(body): ApiJson<Push2ClientsRequest>,
) -> Result<Json<Envelope<Push2ClientsResult>>, ApiError> {
    let _admitted = app.inbound.admit()?;
    let (Some(clients), Some(payload)) = (body.clients, body.payload) else {
        return Err(ApiError::missing("clients and payload are required"));
    };
    let clients = parse_clients(&clients)?;
    let push: CustomPush = parse_payload(&payload)?;
    push.validate()?;
    if push.is_critical() && !app.critical_alerts {
        return Err(ApiError::invalid(
            "payload.apns.payload.aps.interruption-level: critical needs Apple's Critical Alerts entitlement; set \
             [apps.apns] critical_alerts = true for an app that holds it",
        ));
    }
    let now = now_ms();
    let now_seconds = u64::try_from(now / 1000).unwrap_or_default();
    let max_age_deadline = now.saturating_add(app.max_age_ms);
    let deadline_ms = push.expiry.map_or(max_age_deadline, |expiry| {
        i64::try_from(expiry.saturating_mul(1000)).unwrap_or(i64::MAX).min(max_age_deadline)
    });
    let expired = push.is_expired(now_seconds);
    let target = match push.dedicated_device() {
        Some(device_type) => DeviceTarget::Dedicated(device_type, None),
        None => DeviceTarget::Notifications,
    };
    // An explicit server-side send: no mute, presence or quiet hours.
    let mut new_push =
        NewPush::new(new_push_id(), app.id.clone(), PushRequest::Custom(push), clients, now, deadline_ms)
            .with_badge(BadgePlan::None, app.count_muted_rooms)
            .to_devices(target);
    if expired {
        new_push = new_push.with_all_skipped(Reason::ExpiredAtAccept);
    }
    let push_id = new_push.push_id;
    accept_push(&state, new_push, PushSource::Send).await?;
    Ok(ok(Push2ClientsResult { push_id: push_id.to_string() }))
}

/// The clients of a send, each checked (an error names its index).
fn parse_clients(clients: &[String]) -> Result<Vec<ClientId>, ApiError> {
    if clients.len() > MAX_CLIENTS_PER_PUSH {
        return Err(ApiError::invalid(format!("clients: at most {MAX_CLIENTS_PER_PUSH} clients per request")));
    }
    clients
        .iter()
        .enumerate()
        .map(|(index, client)| {
            ClientId::parse(client).map_err(|error| ApiError::invalid(format!("clients[{index}]: {error}")))
        })
        .collect()
}

/// A send's `payload`, read into its type (an error names the field).
pub(crate) fn parse_payload<T: serde::de::DeserializeOwned>(payload: &serde_json::Value) -> Result<T, ApiError> {
    if !payload.is_object() {
        return Err(ApiError::invalid("payload: must be a JSON object"));
    }
    serde_path_to_error::deserialize(payload).map_err(|error| {
        let path = error.path().to_string();
        ApiError::invalid(format!("payload.{path}: {}", error.into_inner()))
    })
}

/// Body of `POST /push/liveactivity`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LiveActivityRequest {
    /// Client ids whose activities (or, for a start, push-to-start tokens) to push to.
    #[schema(required = true, value_type = Vec<String>)]
    pub clients: Option<Vec<String>>,
    /// The ActivityKit push: `event` (`start`, `update`, `end`); `activityId` (update or end only this
    /// activity, the `deviceId` its `ios-liveactivity` token was registered with; absent: every activity of the
    /// clients); `contentState` (required to start and update); `attributesType` and `attributes` (start only,
    /// required); `staleDate`, `dismissalDate` (end only), `timestamp` (Unix seconds; the accept's time when
    /// absent); `alert` (`title`, `body`, `sound`); `relevanceScore`; `priority` (10, the default, or 5);
    /// `inputPushToken` (start only: ask iOS 18+ for the new activity's update token).
    #[schema(required = true, value_type = Object)]
    pub payload: Option<serde_json::Value>,
}

/// Start, update or end Live Activities: a start goes to the clients'
/// push-to-start tokens (`ios-pushtostart` devices), an update or end to
/// their activities' tokens (`ios-liveactivity` devices), through APNs with
/// token-based authentication (Apple takes no certificate for them).
/// Answered once the push is durably stored; delivery follows.
#[utoipa::path(
    post,
    path = "/push/liveactivity",
    tag = "pushes",
    request_body = LiveActivityRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Accepted: stored, to be delivered", body = Envelope<Push2ClientsResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field (Apple's rules for the event; an app without token-based APNs authentication)", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: nothing was accepted", body = ErrorEnvelope),
    )
)]
pub async fn push_liveactivity(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiJson(body): ApiJson<LiveActivityRequest>,
) -> Result<Json<Envelope<Push2ClientsResult>>, ApiError> {
    let _admitted = app.inbound.admit()?;
    let (Some(clients), Some(payload)) = (body.clients, body.payload) else {
        return Err(ApiError::missing("clients and payload are required"));
    };
    let clients = parse_clients(&clients)?;
    let mut push: LiveActivityPush = parse_payload(&payload)?;
    push.validate()?;
    // Without `[apps.apns]` it is accepted like any push, its deliveries
    // skipped as "apns is not configured".
    if app.apns_auth == Some(ApnsAuth::Certificate) {
        return Err(ApiError::invalid(
            "payload: APNs takes Live Activity pushes with token-based authentication only, and this app's \
             [apps.apns] has a certificate: give it key_file, key_id and team_id",
        ));
    }
    let now = now_ms();
    push.timestamp.get_or_insert(u64::try_from(now / 1000).unwrap_or_default());
    let target = DeviceTarget::Dedicated(push.device_type(), push.activity());
    let new_push = NewPush::new(
        new_push_id(),
        app.id.clone(),
        PushRequest::LiveActivity(push),
        clients,
        now,
        now.saturating_add(app.max_age_ms),
    )
    .to_devices(target);
    let push_id = new_push.push_id;
    accept_push(&state, new_push, PushSource::Send).await?;
    Ok(ok(Push2ClientsResult { push_id: push_id.to_string() }))
}

/// One delivery of a push.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatusView {
    /// The client.
    pub client_id: String,
    /// The device type; absent when the client had no device.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// The device id; absent when the client had no device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `queued`, `retrying`, `delivered`, `failed`, `pruned`, `skipped`, `held` (coalescing: waits for its
    /// room's window to end) or `coalesced` (merged into a newer message's alert: `carriedBy`).
    pub status: String,
    /// For a coalesced delivery: the push whose alert carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried_by: Option<String>,
    /// Why it failed, was skipped or pruned, or is retrying (the provider's reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the reason's code means, for a person (absent for reasons in words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<&'static str>,
    /// For chat pushes: `alert`, `quiet` (quiet hours: no sound) or `silent` (badge only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Why the client was silenced or skipped by routing (`room muted`, `client online`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
    /// The experiment variant the client got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When a queued or retrying delivery is due, Unix ms.
    #[serde(rename = "nextAttemptAtMS", skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<i64>,
    /// Last change, Unix ms.
    #[serde(rename = "updatedAtMS")]
    pub updated_at_ms: i64,
}

/// The `result` of the push status route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushStatusResult {
    /// The push id.
    pub push_id: String,
    /// Acceptance time, Unix ms.
    #[serde(rename = "createdAtMS")]
    pub created_at_ms: i64,
    /// How many deliveries are in each status.
    pub summary: BTreeMap<String, usize>,
    /// Every delivery, in the order they were queued.
    pub deliveries: Vec<DeliveryStatusView>,
}

/// The longest `waitSeconds` a caller may ask for.
const MAX_WAIT_SECONDS: u64 = 30;
/// How often a waiting status request looks again.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// Query of the push status route (for the OpenAPI document; the route reads
/// its raw query itself, so that no form of it is refused outside IMKIT's
/// envelope: a repeated key, bad percent-encoding).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PushStatusQuery {
    /// Wait up to this many seconds (0 to 30) for every delivery to be final (not `queued`, `retrying` or `held`)
    /// before answering; the answer then shows where each stands, final or not. Without it, the answer is at once.
    #[param(rename = "waitSeconds", minimum = 0, maximum = 30)]
    pub wait_seconds: Option<u32>,
}

/// How long the request asks to wait (`waitSeconds`), or what is wrong with it.
fn wait_of(query: Option<&str>) -> Result<Duration, ApiError> {
    let given: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "waitSeconds")
        .map(|(_, value)| value.into_owned())
        .collect();
    let raw = match given.as_slice() {
        [] => return Ok(Duration::ZERO),
        [raw] => raw,
        _ => return Err(ApiError::invalid("waitSeconds must be given once")),
    };
    match raw.parse::<u64>() {
        Ok(seconds) if seconds <= MAX_WAIT_SECONDS => Ok(Duration::from_secs(seconds)),
        _ => Err(ApiError::invalid(format!(
            "waitSeconds must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}, not {raw:?}"
        ))),
    }
}

/// Where each delivery of an accepted push stands; with `waitSeconds`, once each is final (or the wait ends).
#[utoipa::path(
    get,
    path = "/v1/pushes/{pushId}",
    tag = "pushes",
    params(("pushId" = String, Path, description = "The id push2clients answered"), PushStatusQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<PushStatusResult>),
        (status = 404, description = "`NOT_FOUND`: no such push for this app", body = ErrorEnvelope),
    )
)]
pub async fn push_status(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(push_id): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Envelope<PushStatusResult>>, ApiError> {
    let not_found = || ApiError::not_found(format!("no push {push_id:?} for this app"));
    let wait = wait_of(query.as_deref())?;
    let id = PushId::parse(&push_id).map_err(|_| not_found())?;
    let deadline = tokio::time::Instant::now() + wait;
    let view = loop {
        let view = state.store.push_view(&app.id, &id).await?.ok_or_else(not_found)?;
        let open = view.deliveries.iter().any(|delivery| {
            matches!(delivery.status, DeliveryStatus::Queued | DeliveryStatus::Retrying | DeliveryStatus::Held)
        });
        // A short poll of the store: the wait is bounded and only asked for by people and scripts.
        if !open || tokio::time::Instant::now() + WAIT_POLL > deadline {
            break view;
        }
        tokio::time::sleep(WAIT_POLL).await;
    };
    let mut summary = BTreeMap::new();
    for delivery in &view.deliveries {
        *summary.entry(delivery.status.as_str().to_owned()).or_insert(0) += 1;
    }
    let deliveries = view
        .deliveries
        .into_iter()
        .map(|delivery| DeliveryStatusView {
            client_id: delivery.client_id,
            device_type: delivery.device_type,
            device_id: delivery.device_id,
            status: delivery.status.as_str().to_owned(),
            carried_by: delivery.carried_by.map(|push| push.to_string()),
            explanation: delivery.reason.as_ref().and_then(Reason::explanation),
            reason: delivery.reason.as_ref().map(ToString::to_string),
            mode: delivery.mode.map(|mode| mode.as_str().to_owned()),
            routing: delivery.route_reason,
            variant: delivery.variant,
            attempts: delivery.attempts,
            // A held delivery's is its window's end.
            next_attempt_at_ms: delivery.next_attempt_at_ms.filter(|_| {
                matches!(delivery.status, DeliveryStatus::Queued | DeliveryStatus::Retrying | DeliveryStatus::Held)
            }),
            updated_at_ms: delivery.updated_at_ms,
        })
        .collect();
    Ok(ok(PushStatusResult {
        push_id: view.push_id.to_string(),
        created_at_ms: view.created_at_ms,
        summary,
        deliveries,
    }))
}

/// Body of `POST /v1/pushes/{pushId}/opened`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenedRequest {
    /// The client that opened the push.
    #[schema(required = true, value_type = String)]
    pub client_id: Option<String>,
}

/// Record that a client opened a push (an experiment's conversion). Repeating it counts once.
#[utoipa::path(
    post,
    path = "/v1/pushes/{pushId}/opened",
    tag = "pushes",
    params(("pushId" = String, Path, description = "The push's id")),
    request_body = OpenedRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Recorded", body = Envelope<serde_json::Value>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such push for this app", body = ErrorEnvelope),
    )
)]
pub async fn push_opened(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(push_id): ApiPath<String>,
    ApiJson(body): ApiJson<OpenedRequest>,
) -> Result<Json<Envelope<serde_json::Value>>, ApiError> {
    let client_id = body.client_id.ok_or_else(|| ApiError::missing("clientId is required"))?;
    let client_id = ClientId::parse(&client_id)?;
    let not_found = || ApiError::not_found(format!("no push {push_id:?} for this app"));
    let id = PushId::parse(&push_id).map_err(|_| not_found())?;
    if !state.store.record_open(&app.id, &id, &client_id, now_ms()).await? {
        return Err(not_found());
    }
    Ok(ok(serde_json::json!({})))
}
