//! IMKIT's push callbacks: `POST /imkit/push/v2` (PUSH_GENERIC, one message
//! for many recipients, badges computed here) and `POST /imkit/push` (the
//! legacy PUSH, one recipient per request, badge and alert given).
//!
//! The app is the one the body's `appID` names, and the request must pass
//! that app's origin verification ([`crate::origin`]) before anything else
//! is looked at: a forged callback learns nothing and stores nothing.
//! Accepting stores the push, its deliveries and every recipient's unread
//! count in one transaction, keyed by the message's `_id` (and, for v1, the
//! recipient), so a callback sent again is answered with the first push and
//! counted once.

use crate::accept::{PushSource, accept_push};
use crate::auth::AppSettings;
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{JsonBytes, PeerAddr, parse_json};
use crate::origin::Presented;
use crate::{AppState, new_push_id, now_ms};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use pushgate_domain::{AppId, ChatMessage, ClientId, Experiment, GenericCallback, LegacyCallback, PushRequest};
use pushgate_store::{BadgePlan, CallbackKey, Coalescing, ExperimentPlan, NewPush, RoutingPlan};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// The `result` of an accepted callback.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackResult {
    /// Track it with `GET /v1/pushes/{pushId}` (its deliveries, one per
    /// registered device of the recipients); for a duplicate, the first push.
    pub push_id: String,
    /// `true` when this message was accepted before: nothing was counted or sent again.
    pub duplicate: bool,
}

/// PUSH_GENERIC (v2): one chat message and every recipient in `pushToClients`.
/// Each recipient's unread count for the room goes up by one, and each of its
/// devices gets IMKIT's push payload with the recipient's own badge.
#[utoipa::path(
    post,
    path = "/imkit/push/v2",
    tag = "callbacks",
    params(("secret" = Option<String>, Query, description = "The app's shared secret (or use `X-Pushgate-Secret`)")),
    request_body(content = Object, description = "The flattened message, `roomName`, `pushToClients` and optionally `mentions` (the client ids the message mentions: pushgate's extension; a mention alerts in a room set to mentions only)"),
    responses(
        (status = 200, description = "Accepted (or already accepted): stored, to be delivered", body = Envelope<CallbackResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 403, description = "`FORBIDDEN`: origin verification failed; nothing stored", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: nothing was accepted", body = ErrorEnvelope),
    )
)]
pub async fn push_generic(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Json<Envelope<CallbackResult>>, ApiError> {
    let (app, object) = verified_app(&state, "v2", peer, query.as_deref(), &headers, &body)?;
    let _admitted = app.inbound.admit()?;
    require(&object, &["pushToClients", "room"])?;
    let callback = GenericCallback::parse(&object)?;
    let message = callback.message;
    let room = message.room.clone().ok_or_else(|| ApiError::missing("room is required"))?;
    let sender = message.sender.clone();
    let now = now_ms();
    let experiment = active_experiment(&state, &app.id, &message, &callback.recipients, now).await?;
    let callback_key = CallbackKey { message_id: message.id.to_string(), to_client: None };
    let deadline_ms = now.saturating_add(app.max_age_ms);
    let mut push =
        NewPush::new(new_push_id(), app.id.clone(), PushRequest::Chat(message), callback.recipients, now, deadline_ms)
            .with_mentions(callback.mentions)
            .with_callback(callback_key)
            .with_badge(BadgePlan::CountUnread(room.clone()), app.count_muted_rooms)
            .with_routing(RoutingPlan { room, online: app.online_policy });
    if app.coalescing_window_ms > 0 {
        push = push.with_coalescing(Coalescing { window_ms: app.coalescing_window_ms, sender });
    }
    if let Some((plan, experiment)) = experiment {
        push = push.with_experiment(plan, experiment);
    }
    accept(&state, "v2", push).await
}

/// The legacy PUSH (v1): one recipient (`toClient`) per request, with the
/// badge and alert IMKIT computed, used as they are.
#[utoipa::path(
    post,
    path = "/imkit/push",
    tag = "callbacks",
    params(("secret" = Option<String>, Query, description = "The app's shared secret (or use `X-Pushgate-Secret`)")),
    request_body(content = Object, description = "The flattened message, `toClient`, `badge` and `alert`"),
    responses(
        (status = 200, description = "Accepted (or already accepted): stored, to be delivered", body = Envelope<CallbackResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 403, description = "`FORBIDDEN`: origin verification failed; nothing stored", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: nothing was accepted", body = ErrorEnvelope),
    )
)]
pub async fn push_legacy(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Json<Envelope<CallbackResult>>, ApiError> {
    let (app, object) = verified_app(&state, "v1", peer, query.as_deref(), &headers, &body)?;
    let _admitted = app.inbound.admit()?;
    require(&object, &["toClient"])?;
    let callback = LegacyCallback::parse(&object)?;
    let now = now_ms();
    let callback_key =
        CallbackKey { message_id: callback.message.id.to_string(), to_client: Some(callback.to_client.clone()) };
    let badge = callback.badge.map_or(BadgePlan::None, BadgePlan::Given);
    let request = PushRequest::LegacyChat { message: callback.message, alert: callback.alert };
    let deadline_ms = now.saturating_add(app.max_age_ms);
    // v1 is IMKIT's own pipeline: its badge and alert are used as they are, unrouted.
    let push = NewPush::new(new_push_id(), app.id.clone(), request, vec![callback.to_client], now, deadline_ms)
        .with_callback(callback_key)
        .with_badge(badge, app.count_muted_rooms);
    accept(&state, "v1", push).await
}

/// The first (by id) of the app's experiments that applies to this message
/// now, with every recipient's variant.
async fn active_experiment(
    state: &AppState,
    app: &AppId,
    message: &ChatMessage,
    recipients: &[ClientId],
    now: i64,
) -> Result<Option<(ExperimentPlan, Experiment)>, ApiError> {
    for (id, experiment) in state.store.experiments(app).await? {
        if experiment.applies(&message.message_type, now) {
            let variants = recipients
                .iter()
                .map(|client| (client.clone(), experiment.assign(id.as_str(), client).name.clone()))
                .collect();
            return Ok(Some((ExperimentPlan { id, variants }, experiment)));
        }
    }
    Ok(None)
}

/// Parses the body, finds the app its `appID` names and verifies the
/// request's origin for it. Only a body that is not a JSON object, or has no
/// usable `appID`, is answered before the origin is verified.
fn verified_app(
    state: &AppState,
    version: &str,
    peer: Option<std::net::IpAddr>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<AppSettings>, Map<String, Value>), ApiError> {
    let object: Map<String, Value> = parse_json(body)?;
    let app_id = match object.get("appID") {
        None | Some(Value::Null) => return Err(ApiError::missing("appID is required")),
        Some(Value::String(app_id)) => app_id,
        Some(_) => return Err(ApiError::invalid("appID must be a string")),
    };
    let Some(app) = AppId::parse(app_id).ok().and_then(|id| state.apps.get(&id)) else {
        tracing::warn!(callback.version = version, "refused a callback for an app that is not configured");
        return Err(ApiError::forbidden("origin verification failed: the appID is not configured here"));
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let query_secret = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "secret").map(|(_, value)| value)
    });
    let presented = Presented {
        peer,
        query_secret: query_secret.as_deref(),
        header_secret: header("X-Pushgate-Secret"),
        signature: header("X-Pushgate-Signature"),
        body,
        now_seconds: now_ms() / 1000,
    };
    if let Err(reason) = app.origin.verify(&presented) {
        state.metrics.callback(app.id.as_str(), version, "forbidden");
        tracing::warn!(app.id = %app.id, callback.version = version, peer = ?peer, reason = %reason, "refused a callback");
        return Err(ApiError::forbidden(format!("origin verification failed: {reason}")));
    }
    Ok((Arc::clone(app), object))
}

/// 400 `MISSING_PARAMETER` naming the first required field that is absent.
fn require(object: &Map<String, Value>, fields: &[&str]) -> Result<(), ApiError> {
    if !object.contains_key("_id") && !object.contains_key("id") {
        return Err(ApiError::missing("_id is required"));
    }
    match fields.iter().find(|field| object.get(**field).is_none_or(Value::is_null)) {
        Some(field) => Err(ApiError::missing(format!("{field} is required"))),
        None => Ok(()),
    }
}

async fn accept(
    state: &AppState,
    version: &'static str,
    push: NewPush,
) -> Result<Json<Envelope<CallbackResult>>, ApiError> {
    let push_id = push.push_id;
    let accepted = accept_push(state, push, PushSource::Callback(version)).await?;
    let result = match accepted.duplicate_of {
        Some(first) => CallbackResult { push_id: first.to_string(), duplicate: true },
        None => CallbackResult { push_id: push_id.to_string(), duplicate: false },
    };
    Ok(ok(result))
}
