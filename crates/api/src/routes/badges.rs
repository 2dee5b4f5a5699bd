//! Badges: what the app icon shows for a client. The badge is the client's
//! unread messages over every room (counted from v2 callbacks) plus the
//! counts of cross-domain sources the app sets (orders, events...).

use crate::accept::{PushSource, accept_push};
use crate::auth::{AppSettings, AuthenticatedApp};
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{ApiJson, ApiPath, OptionalApiJson};
use crate::{AppState, new_push_id, now_ms};
use axum::Json;
use axum::extract::State;
use pushgate_domain::{BadgeSource, ClientId, DeviceId, PushRequest, RoomId};
use pushgate_store::{BadgePlan, BadgeView, NewPush, SourceChange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A badge update is worth sending for an hour at most: a later one replaces it.
const BADGE_UPDATE_MAX_AGE_MS: i64 = 3_600_000;

/// A client's badge.
#[derive(Debug, Serialize, ToSchema)]
pub struct BadgeResult {
    /// The total: room unreads plus sources.
    pub badge: u64,
    /// Unread messages per room (rooms with none left out).
    pub rooms: BTreeMap<String, u64>,
    /// Counts per source (sources at zero left out).
    pub sources: BTreeMap<String, u64>,
}

impl From<BadgeView> for BadgeResult {
    fn from(view: BadgeView) -> Self {
        Self { badge: view.total, rooms: view.rooms, sources: view.sources }
    }
}

/// The client's badge, per room and per source.
#[utoipa::path(
    get,
    path = "/v1/clients/{clientId}/badge",
    tag = "badges",
    params(("clientId" = String, Path, description = "The IMKIT client id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The badge; an unknown client has 0", body = Envelope<BadgeResult>),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn get_badge(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<Envelope<BadgeResult>>, ApiError> {
    let client_id = ClientId::parse(&client_id)?;
    Ok(ok(state.store.badge(&app.id, &client_id, app.count_muted_rooms, now_ms()).await?.into()))
}

/// Body of `PUT .../badge/sources/{source}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetSourceRequest {
    /// The source's new count.
    #[schema(required = true, value_type = u32, format = Int64, maximum = 4_294_967_295_u64)]
    pub count: Option<u32>,
}

/// Body of `POST .../badge/sources/{source}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddToSourceRequest {
    /// Added to the source's count; negative subtracts (the count stays at or above 0).
    #[schema(required = true, value_type = i32)]
    pub increment: Option<i32>,
}

/// Set a cross-domain badge count (orders, events...) for the client.
#[utoipa::path(
    put,
    path = "/v1/clients/{clientId}/badge/sources/{source}",
    tag = "badges",
    params(
        ("clientId" = String, Path, description = "The IMKIT client id"),
        ("source" = String, Path, description = "The source's name"),
    ),
    request_body = SetSourceRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The client's badge after the change", body = Envelope<BadgeResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn set_source(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath((client_id, source)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetSourceRequest>,
) -> Result<Json<Envelope<BadgeResult>>, ApiError> {
    let count = body.count.ok_or_else(|| ApiError::missing("count is required"))?;
    change_source(&state, &app, &client_id, &source, SourceChange::Set(count)).await
}

/// Add to a cross-domain badge count for the client.
#[utoipa::path(
    post,
    path = "/v1/clients/{clientId}/badge/sources/{source}",
    tag = "badges",
    params(
        ("clientId" = String, Path, description = "The IMKIT client id"),
        ("source" = String, Path, description = "The source's name"),
    ),
    request_body = AddToSourceRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The client's badge after the change", body = Envelope<BadgeResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn add_to_source(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath((client_id, source)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<AddToSourceRequest>,
) -> Result<Json<Envelope<BadgeResult>>, ApiError> {
    let increment = body.increment.ok_or_else(|| ApiError::missing("increment is required"))?;
    change_source(&state, &app, &client_id, &source, SourceChange::Add(i64::from(increment))).await
}

async fn change_source(
    state: &AppState,
    app: &AppSettings,
    client_id: &str,
    source: &str,
    change: SourceChange,
) -> Result<Json<Envelope<BadgeResult>>, ApiError> {
    let client_id = ClientId::parse(client_id)?;
    let source = BadgeSource::parse(source)?;
    let now = now_ms();
    state.store.change_badge_source(&app.id, &client_id, &source, change, now).await?;
    Ok(ok(state.store.badge(&app.id, &client_id, app.count_muted_rooms, now).await?.into()))
}

/// Body of `POST .../rooms/{room}/read` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadRequest {
    /// `true`: send the client's devices a clear push (`type` `clear`): the room, for the app to remove its
    /// delivered notifications, and the new badge (see the README's "Clear pushes").
    #[serde(default)]
    pub sync: bool,
    /// The device the room was read on: it gets no clear push.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// The `result` of a read mark.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadResult {
    /// The client's badge after the read.
    #[serde(flatten)]
    pub badge: BadgeResult,
    /// The clear push, when `sync` was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_id: Option<String>,
}

/// Mark a room read for the client: its unread count goes to zero, and an
/// alert held for the room by coalescing is cancelled. With `{"sync": true}`
/// the read and a clear push to the client's devices (but `deviceId`, the
/// one it was read on) are stored in one transaction: each device removes
/// the room's notifications and takes the new badge.
#[utoipa::path(
    post,
    path = "/v1/clients/{clientId}/rooms/{room}/read",
    tag = "badges",
    params(
        ("clientId" = String, Path, description = "The IMKIT client id"),
        ("room" = String, Path, description = "The room id"),
    ),
    request_body(content = Option<ReadRequest>, description = "Optional"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The client's badge after the read", body = Envelope<ReadResult>),
        (status = 400, description = "`INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: nothing was changed", body = ErrorEnvelope),
    )
)]
pub async fn mark_read(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath((client_id, room)): ApiPath<(String, String)>,
    OptionalApiJson(request): OptionalApiJson<ReadRequest>,
) -> Result<Json<Envelope<ReadResult>>, ApiError> {
    let request = request.unwrap_or_default();
    let client_id = ClientId::parse(&client_id)?;
    let room = RoomId::parse(&room)?;
    let except = request.device_id.as_deref().map(DeviceId::parse).transpose()?;
    let now = now_ms();
    let push_id = if request.sync {
        let deadline_ms = now.saturating_add(app.max_age_ms.min(BADGE_UPDATE_MAX_AGE_MS));
        let mut push = NewPush::new(
            new_push_id(),
            app.id.clone(),
            PushRequest::Clear { room: room.clone() },
            vec![client_id.clone()],
            now,
            deadline_ms,
        )
        .with_badge(BadgePlan::ClearRoom(room), app.count_muted_rooms);
        if let Some(device) = except {
            push = push.except_device(device);
        }
        let push_id = push.push_id;
        accept_push(&state, push, PushSource::ReadSync).await?;
        Some(push_id.to_string())
    } else {
        state.store.mark_room_read(&app.id, &client_id, &room, now).await?;
        None
    };
    let badge = state.store.badge(&app.id, &client_id, app.count_muted_rooms, now).await?.into();
    Ok(ok(ReadResult { badge, push_id }))
}
