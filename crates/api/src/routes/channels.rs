//! Broadcast channels (iOS 18+): `/v1/apps/{appId}/channels`, Apple's
//! channel management API per app, and broadcasts to a channel's
//! subscribers.
//!
//! Each call is one request to APNs while the caller waits, answered with
//! what APNs answered: nothing is stored on pushgate's side (Apple keeps the
//! channels), so a broadcast APNs did not take is the caller's to send again,
//! as a 429 or 503 says.

use crate::auth::{AppSettings, AuthenticatedApp};
use crate::channels::{BroadcastChannels, ChannelFailure};
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{ApiJson, ApiPath};
use crate::now_ms;
use axum::Json;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use pushgate_domain::{Environment, LiveActivityEvent, LiveActivityPush};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// `?environment=`: which APNs environment's channels (for the OpenAPI
/// document; the routes read their raw query, as the push status route does).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentQuery {
    /// `production` or `sandbox`; the app's `[apps.apns] environment` when absent.
    pub environment: Option<String>,
}

/// The path of one channel.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ChannelPath {
    /// The app (the key's own).
    pub app_id: String,
    /// The channel id, percent-encoded (`/` as `%2F`).
    pub channel_id: String,
}

/// Body of `POST /v1/apps/{appId}/channels`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateChannelRequest {
    /// Apple's `message-storage-policy`: 0 (no message stored: a device that was offline gets nothing) or 1 (the
    /// most recent message is stored).
    #[schema(required = true, value_type = u8, minimum = 0, maximum = 1)]
    pub message_storage_policy: Option<u8>,
}

/// A channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelResult {
    /// Its id, base64 (`apns-channel-id`): the app subscribes its Live Activity with it; in a path, percent-encoded.
    pub channel_id: String,
    /// 0 or 1, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_storage_policy: Option<u8>,
    /// `LiveActivity`, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_type: Option<String>,
}

/// The app's channels.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    /// Every channel id, as APNs lists them.
    pub channels: Vec<String>,
}

/// The empty `result`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {}

/// The app the key opened, if it is the one the path names, its channels and the environment asked for.
fn channels_of(
    app: &AppSettings,
    app_id: &str,
    query: Option<&str>,
) -> Result<(Arc<dyn BroadcastChannels>, Environment), ApiError> {
    if app.id.as_str() != app_id {
        return Err(ApiError::not_found(format!("appId: the key opens app {}, not {app_id}", app.id)));
    }
    let given: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "environment")
        .map(|(_, value)| value.into_owned())
        .collect();
    let environment = match given.as_slice() {
        [] => app.default_environment,
        [raw] => Environment::parse(raw).map_err(|error| ApiError::invalid(format!("environment: {error}")))?,
        _ => return Err(ApiError::invalid("environment must be given once")),
    };
    let channels = app.channels.clone().ok_or_else(|| {
        ApiError::invalid(
            "appId: broadcast channels go through APNs with token-based authentication (key_file, key_id, team_id), \
             and this app's [apps.apns] has none",
        )
    })?;
    Ok((channels, environment))
}

/// APNs' answer as the caller's: its reason named, its status kept where it
/// tells the caller what to do (a channel that is not there, too many
/// requests, APNs unavailable).
fn failed(failure: ChannelFailure) -> ApiError {
    match failure {
        ChannelFailure::Refused { status: 404, reason } => {
            ApiError::not_found(format!("channelId: APNs does not know this channel ({reason})"))
        }
        ChannelFailure::Refused { status: 429, reason } => {
            ApiError::rate_limited(format!("APNs answered {reason}: too many channel requests"), 1)
        }
        ChannelFailure::Refused { status, reason } if status >= 500 => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", format!("APNs answered {status} {reason}"))
        }
        ChannelFailure::Refused { status: 403, reason } => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "PROVIDER_REFUSED",
            format!("APNs refused the app's credentials ({reason})"),
        ),
        ChannelFailure::Refused { status, reason } => {
            ApiError::invalid(format!("APNs refused the request: {status} {reason}"))
        }
        ChannelFailure::Unreachable(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", format!("APNs was not reached: {why}"))
        }
    }
}

/// Create a broadcast channel for Live Activities (Apple keeps up to 10,000 per app and environment).
#[utoipa::path(
    post,
    path = "/v1/apps/{appId}/channels",
    tag = "channels",
    params(("appId" = String, Path, description = "The app (the key's own)"), EnvironmentQuery),
    request_body = CreateChannelRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Created by APNs", body = Envelope<ChannelResult>),
        (status = 400, description = "`INVALID_PARAMETER`: the policy, an app without token-based APNs authentication, or APNs' refusal named", body = ErrorEnvelope),
    )
)]
pub async fn create_channel(
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(app_id): ApiPath<String>,
    RawQuery(query): RawQuery,
    ApiJson(body): ApiJson<CreateChannelRequest>,
) -> Result<Json<Envelope<ChannelResult>>, ApiError> {
    let policy = body.message_storage_policy.ok_or_else(|| ApiError::missing("messageStoragePolicy is required"))?;
    if policy > 1 {
        return Err(ApiError::invalid(format!(
            "messageStoragePolicy: 0 (no message stored) or 1 (the most recent one), not {policy}"
        )));
    }
    let (channels, environment) = channels_of(&app, &app_id, query.as_deref())?;
    let channel_id = channels.create(environment, policy).await.map_err(failed)?;
    tracing::info!(app.id = %app.id, channel.id = %channel_id, environment = environment.as_str(), "created a broadcast channel");
    Ok(ok(ChannelResult { channel_id, message_storage_policy: Some(policy), push_type: None }))
}

/// List the app's broadcast channels, as APNs lists them.
#[utoipa::path(
    get,
    path = "/v1/apps/{appId}/channels",
    tag = "channels",
    params(("appId" = String, Path, description = "The app (the key's own)"), EnvironmentQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every channel id", body = Envelope<ChannelList>),
        (status = 400, description = "`INVALID_PARAMETER`", body = ErrorEnvelope),
    )
)]
pub async fn list_channels(
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(app_id): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Envelope<ChannelList>>, ApiError> {
    let (channels, environment) = channels_of(&app, &app_id, query.as_deref())?;
    Ok(ok(ChannelList { channels: channels.list(environment).await.map_err(failed)? }))
}

/// Read one broadcast channel.
#[utoipa::path(
    get,
    path = "/v1/apps/{appId}/channels/{channelId}",
    tag = "channels",
    params(ChannelPath, EnvironmentQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The channel", body = Envelope<ChannelResult>),
    )
)]
pub async fn read_channel(
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(ChannelPath { app_id, channel_id }): ApiPath<ChannelPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<Envelope<ChannelResult>>, ApiError> {
    let (channels, environment) = channels_of(&app, &app_id, query.as_deref())?;
    let channel = channels.read(environment, &channel_id).await.map_err(failed)?;
    Ok(ok(ChannelResult {
        channel_id,
        message_storage_policy: Some(channel.storage_policy),
        push_type: Some(channel.push_type),
    }))
}

/// Delete a broadcast channel (its subscribers get nothing more through it).
#[utoipa::path(
    delete,
    path = "/v1/apps/{appId}/channels/{channelId}",
    tag = "channels",
    params(ChannelPath, EnvironmentQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted by APNs", body = Envelope<Done>),
    )
)]
pub async fn delete_channel(
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(ChannelPath { app_id, channel_id }): ApiPath<ChannelPath>,
    RawQuery(query): RawQuery,
) -> Result<Json<Envelope<Done>>, ApiError> {
    let (channels, environment) = channels_of(&app, &app_id, query.as_deref())?;
    channels.delete(environment, &channel_id).await.map_err(failed)?;
    tracing::info!(app.id = %app.id, channel.id = %channel_id, environment = environment.as_str(), "deleted a broadcast channel");
    Ok(ok(Done {}))
}

/// Body of a broadcast: the Live Activity push of `POST /push/liveactivity`, an update or an end.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BroadcastRequest {
    /// `event` (`update` or `end`), `contentState`, `staleDate`, `dismissalDate`, `timestamp`, `alert`,
    /// `relevanceScore`, `priority` as for `POST /push/liveactivity`; `expiration` (Unix seconds; a channel that
    /// stores no message takes 0 only, which is also the default for it).
    #[schema(required = true, value_type = Object)]
    pub payload: Option<serde_json::Value>,
    /// `apns-expiration`, Unix seconds.
    pub expiration: Option<u64>,
}

/// Send a Live Activity update or end to every device subscribed to the channel, through APNs' broadcast
/// endpoint. Answered with APNs' own answer: nothing is stored here, so one APNs did not take (429, 503) is
/// to be sent again.
#[utoipa::path(
    post,
    path = "/v1/apps/{appId}/channels/{channelId}/broadcast",
    tag = "channels",
    params(ChannelPath, EnvironmentQuery),
    request_body = BroadcastRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Taken by APNs", body = Envelope<Done>),
        (status = 400, description = "`INVALID_PARAMETER`: the push (Apple's rules) or APNs' refusal named", body = ErrorEnvelope),
    )
)]
pub async fn broadcast(
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(ChannelPath { app_id, channel_id }): ApiPath<ChannelPath>,
    RawQuery(query): RawQuery,
    ApiJson(body): ApiJson<BroadcastRequest>,
) -> Result<Json<Envelope<Done>>, ApiError> {
    let payload = body.payload.ok_or_else(|| ApiError::missing("payload is required"))?;
    let mut push: LiveActivityPush = super::pushes::parse_payload(&payload)?;
    push.validate()?;
    if push.event == LiveActivityEvent::Start || push.activity_id.is_some() {
        return Err(ApiError::invalid(
            "payload: a channel's subscribers get updates and ends of the activities that subscribed (no \
             activityId); a start goes to push-to-start tokens through POST /push/liveactivity",
        ));
    }
    let (channels, environment) = channels_of(&app, &app_id, query.as_deref())?;
    push.timestamp.get_or_insert(u64::try_from(now_ms() / 1000).unwrap_or_default());
    let apns = push.to_apns();
    let priority = if apns.priority == Some(pushgate_domain::ApnsPriority::PowerAware) { 5 } else { 10 };
    channels.broadcast(environment, &channel_id, &apns.payload, priority, body.expiration).await.map_err(failed)?;
    tracing::info!(app.id = %app.id, channel.id = %channel_id, event = push.event.as_str(), "broadcast to a channel");
    Ok(ok(Done {}))
}
