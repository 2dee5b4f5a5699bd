//! What a client wants: room mutes, presence, and its preferences (pushes
//! on or off, quiet hours, time zone, locale). Chat pushes from IMKIT's v2
//! callbacks are routed by them; `push2clients` ignores them.

use crate::auth::AuthenticatedApp;
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{ApiJson, ApiPath};
use crate::{AppState, now_ms};
use axum::Json;
use axum::extract::State;
use pushgate_domain::{ClientId, Locale, QuietHours, RoomId, RoomNotify, TimeZoneName};
use pushgate_store::ClientPrefs;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest presence, s: a client that vanishes is offline within a day at most.
const MAX_PRESENCE_TTL_SECONDS: u32 = 86_400;
/// Presence time to live when the request gives none, s.
const DEFAULT_PRESENCE_TTL_SECONDS: u32 = 60;

/// Body and result of `PUT .../rooms/{room}/pref`: `notify`, or `muted`
/// (its synonym: `true` is `"none"`, `false` is `"all"`), or both when they
/// agree.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomPref {
    /// Muted: the room's messages send no alert (a silent badge update at most).
    #[schema(value_type = Option<bool>)]
    pub muted: Option<bool>,
    /// `all` (every message alerts), `mentions` (only a message that mentions
    /// the client alerts; the others update the badge) or `none` (muted).
    #[schema(value_type = Option<String>, example = "mentions")]
    pub notify: Option<String>,
    /// The setting (other than `all`) ends by itself then (Unix ms); `null`
    /// until changed.
    #[serde(rename = "mutedUntilMS", default)]
    pub muted_until_ms: Option<i64>,
}

/// What a client wants from a room: every alert, only mentions, or none (muted).
#[utoipa::path(
    put,
    path = "/v1/clients/{clientId}/rooms/{room}/pref",
    tag = "routing",
    params(("clientId" = String, Path, description = "The IMKIT client id"), ("room" = String, Path, description = "The room id")),
    request_body = RoomPref,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored", body = Envelope<RoomPref>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn put_room_pref(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath((client_id, room)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RoomPref>,
) -> Result<Json<Envelope<RoomPref>>, ApiError> {
    let notify = match (body.notify.as_deref(), body.muted) {
        (None, None) => return Err(ApiError::missing("notify (or muted) is required")),
        (Some(raw), muted) => {
            let notify =
                RoomNotify::parse(raw).map_err(|_| ApiError::invalid("notify must be all, mentions or none"))?;
            if muted.is_some_and(|muted| muted != (notify == RoomNotify::None)) {
                return Err(ApiError::invalid("muted and notify disagree: muted is notify \"none\""));
            }
            notify
        }
        (None, Some(true)) => RoomNotify::None,
        (None, Some(false)) => RoomNotify::All,
    };
    let (client_id, room) = (ClientId::parse(&client_id)?, RoomId::parse(&room)?);
    let until_ms = body.muted_until_ms.filter(|_| notify != RoomNotify::All);
    state.store.set_room_pref(&app.id, &client_id, &room, notify, until_ms, now_ms()).await?;
    Ok(ok(RoomPref {
        muted: Some(notify == RoomNotify::None),
        notify: Some(notify.as_str().to_owned()),
        muted_until_ms: until_ms,
    }))
}

/// Body of `PUT .../presence`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceRequest {
    /// Online now (in the app), or not.
    #[schema(required = true, value_type = bool)]
    pub online: Option<bool>,
    /// Online for this long unless renewed, s; default 60, at most 86400.
    pub ttl_seconds: Option<u32>,
}

/// The result of `PUT .../presence`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceResult {
    /// Online now.
    pub online: bool,
    /// Online until then, unless renewed (Unix ms).
    #[serde(rename = "onlineUntilMS", skip_serializing_if = "Option::is_none")]
    pub online_until_ms: Option<i64>,
}

/// Report a client online (for a while) or offline. An online client gets
/// what the app's `[apps.routing] online` policy says: nothing, a silent
/// badge update, or the alert.
#[utoipa::path(
    put,
    path = "/v1/clients/{clientId}/presence",
    tag = "routing",
    params(("clientId" = String, Path, description = "The IMKIT client id")),
    request_body = PresenceRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored", body = Envelope<PresenceResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn put_presence(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(client_id): ApiPath<String>,
    ApiJson(body): ApiJson<PresenceRequest>,
) -> Result<Json<Envelope<PresenceResult>>, ApiError> {
    let online = body.online.ok_or_else(|| ApiError::missing("online is required"))?;
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_PRESENCE_TTL_SECONDS);
    if !(1..=MAX_PRESENCE_TTL_SECONDS).contains(&ttl) {
        return Err(ApiError::invalid(format!("ttlSeconds must be from 1 to {MAX_PRESENCE_TTL_SECONDS}")));
    }
    let client_id = ClientId::parse(&client_id)?;
    let online_until_ms = online.then(|| now_ms().saturating_add(i64::from(ttl) * 1000));
    state.store.set_presence(&app.id, &client_id, online_until_ms).await?;
    Ok(ok(PresenceResult { online, online_until_ms }))
}

/// A client's quiet hours, local time `HH:MM`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuietHoursBody {
    /// Start, e.g. `22:00`.
    pub start: String,
    /// End, e.g. `07:00` (the next morning when before the start).
    pub end: String,
}

/// A client's preferences, as `PUT` takes and `GET` answers them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrefsBody {
    /// Pushes on (default) or off.
    #[serde(default)]
    pub push_enabled: Option<bool>,
    /// During these hours pushes arrive without sound; `null` for none.
    #[serde(default)]
    pub quiet_hours: Option<QuietHoursBody>,
    /// IANA time zone of the quiet hours; else the latest device's, else UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Locale for server-rendered text (en, zh-TW, ja...); wins over the devices' own.
    #[serde(default)]
    pub locale: Option<String>,
}

impl From<ClientPrefs> for PrefsBody {
    fn from(prefs: ClientPrefs) -> Self {
        Self {
            push_enabled: Some(prefs.push_enabled),
            quiet_hours: prefs.quiet_hours.map(|quiet| QuietHoursBody { start: quiet.start(), end: quiet.end() }),
            timezone: prefs.timezone.map(|zone| zone.as_str().to_owned()),
            locale: prefs.locale.map(|locale| locale.as_str().to_owned()),
        }
    }
}

/// Replace a client's preferences (what is left out goes back to its default).
#[utoipa::path(
    put,
    path = "/v1/clients/{clientId}/prefs",
    tag = "routing",
    params(("clientId" = String, Path, description = "The IMKIT client id")),
    request_body = PrefsBody,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Stored", body = Envelope<PrefsBody>),
        (status = 400, description = "`INVALID_PARAMETER` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn put_prefs(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(client_id): ApiPath<String>,
    ApiJson(body): ApiJson<PrefsBody>,
) -> Result<Json<Envelope<PrefsBody>>, ApiError> {
    let client_id = ClientId::parse(&client_id)?;
    let prefs = ClientPrefs {
        push_enabled: body.push_enabled.unwrap_or(true),
        quiet_hours: body.quiet_hours.map(|quiet| QuietHours::parse(&quiet.start, &quiet.end)).transpose()?,
        timezone: body.timezone.map(|zone| TimeZoneName::parse(&zone)).transpose()?,
        locale: body.locale.map(|locale| Locale::parse(&locale)).transpose()?,
    };
    state.store.set_client_prefs(&app.id, &client_id, &prefs, now_ms()).await?;
    Ok(ok(prefs.into()))
}

/// A client's preferences (the defaults when it set none).
#[utoipa::path(
    get,
    path = "/v1/clients/{clientId}/prefs",
    tag = "routing",
    params(("clientId" = String, Path, description = "The IMKIT client id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The preferences", body = Envelope<PrefsBody>),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn get_prefs(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<Envelope<PrefsBody>>, ApiError> {
    let client_id = ClientId::parse(&client_id)?;
    Ok(ok(state.store.client_prefs(&app.id, &client_id).await?.into()))
}
