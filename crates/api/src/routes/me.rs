//! IMKIT's device subscription: `POST /me/subscribe` and `POST /me/unsubscribe`.

use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::{ApiJson, Caller};
use crate::{AppState, now_ms};
use axum::Json;
use axum::extract::State;
use pushgate_domain::{DeviceId, DeviceType, Environment, Locale, PushKey, PushToken, TimeZoneName, TokenKind};
use pushgate_store::NewDevice;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /me/subscribe`. Unknown fields are ignored.
///
/// The required fields are `Option`s so that a missing one is answered with
/// IMKIT's `MISSING_PARAMETER`; the schema says they are required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeRequest {
    /// IMKIT's device type.
    #[serde(rename = "type")]
    #[schema(required = true, value_type = DeviceTypeName)]
    pub device_type: Option<String>,
    /// The push token: APNs hex token, FCM registration token, or for `web`
    /// and `unifiedpush` the PushSubscription (`{"endpoint", "keys": {"p256dh", "auth"}}`,
    /// as an object or as a JSON string).
    #[schema(required = true, value_type = SubscribeToken)]
    pub token: Option<serde_json::Value>,
    /// Stable per-installation id chosen by the app.
    #[schema(required = true, value_type = String)]
    pub device_id: Option<String>,
    /// The client to bind the device to (required with `IM-API-KEY`).
    #[schema(required = true, value_type = String)]
    pub client_id: Option<String>,
    /// `production` or `sandbox` (iOS only); the app's default when absent.
    pub environment: Option<String>,
    /// BCP 47 locale for server-rendered text, such as `zh-TW`.
    pub locale: Option<String>,
    /// IANA time zone, for quiet hours.
    pub timezone: Option<String>,
    /// For `ios`, `android` and `fcm`: the app's key for private payloads (RFC 8291, as a browser's
    /// PushSubscription keys). A registration without it removes a stored one.
    #[schema(value_type = Option<PushSubscriptionKeys>)]
    pub push_key: Option<serde_json::Value>,
}

/// Body of `POST /me/unsubscribe`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsubscribeRequest {
    /// The device type the device was subscribed with.
    #[serde(rename = "type")]
    #[schema(required = true, value_type = DeviceTypeName)]
    pub device_type: Option<String>,
    /// The device id it was subscribed with.
    #[schema(required = true, value_type = String)]
    pub device_id: Option<String>,
    /// The client the device is bound to (required with `IM-API-KEY`).
    #[schema(required = true, value_type = String)]
    pub client_id: Option<String>,
}

/// IMKIT's device types (the schema of `type`; the handler parses the text
/// so that an unknown type is answered with IMKIT's error).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "kebab-case")]
#[expect(dead_code, reason = "documents the accepted values in the OpenAPI schema only")]
enum DeviceTypeName {
    Ios,
    IosVoip,
    Android,
    Fcm,
    Web,
    #[schema(rename = "unifiedpush")]
    UnifiedPush,
    /// A Live Activity's update token; `deviceId` is the activity's id.
    #[schema(rename = "ios-liveactivity")]
    IosLiveActivity,
    /// An install's push-to-start token (iOS 17.2+).
    #[schema(rename = "ios-pushtostart")]
    IosPushToStart,
    /// A WidgetKit push token (iOS 26).
    #[schema(rename = "ios-widgets")]
    IosWidgets,
    /// A Location Push Service Extension's token.
    #[schema(rename = "ios-location")]
    IosLocation,
    /// A PushKit complication token (watchOS).
    #[schema(rename = "ios-complication")]
    IosComplication,
    /// A PushKit File Provider token.
    #[schema(rename = "ios-fileprovider")]
    IosFileProvider,
    /// A Push to Talk channel's token.
    #[schema(rename = "ios-pushtotalk")]
    IosPushToTalk,
}

/// A push token: a string for every type; for `web` also the browser's
/// PushSubscription object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "documents the accepted shapes in the OpenAPI schema only")]
enum SubscribeToken {
    /// The APNs hex token, the FCM registration token, or a PushSubscription as a JSON string.
    Text(String),
    /// The browser's PushSubscription (`type: web` only).
    Subscription(PushSubscriptionBody),
}

/// The browser's `PushSubscription.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[expect(dead_code, reason = "documents the accepted shape in the OpenAPI schema only")]
struct PushSubscriptionBody {
    /// The push service URL.
    endpoint: String,
    /// The subscription's keys.
    keys: PushSubscriptionKeys,
    /// When the subscription ends (Unix ms), if the browser says.
    expiration_time: Option<i64>,
}

/// The keys of a PushSubscription (and of a `pushKey`), base64url.
#[derive(Debug, Deserialize, ToSchema)]
#[expect(dead_code, reason = "documents the accepted shape in the OpenAPI schema only")]
struct PushSubscriptionKeys {
    /// The client's P-256 public key.
    p256dh: String,
    /// The 16-byte authentication secret.
    auth: String,
}

/// The empty `result` of a subscribe: `{}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmptyResult {}

/// The `result` of an unsubscribe, as IMKIT answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnsubscribeResult {
    /// How many devices were removed: 1, or 0 when nothing matched.
    pub n: u64,
    /// Always 1.
    pub ok: u8,
}

/// IMKIT treats empty strings like absent fields.
fn present(field: Option<&str>) -> Option<&str> {
    field.filter(|value| !value.is_empty())
}

fn parse_optional<T>(
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, pushgate_domain::ParseError>,
) -> Result<Option<T>, ApiError> {
    Ok(present(raw).map(parse).transpose()?)
}

/// Register a device for push, or update its token.
#[utoipa::path(
    post,
    path = "/me/subscribe",
    tag = "devices",
    request_body = SubscribeRequest,
    security(("api_key" = []), ("client_key" = [], "client_token" = [])),
    responses(
        (status = 200, description = "Registered", body = Envelope<EmptyResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER`", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`; with client credentials, `INVALID_TOKEN` (the chat server refused them)", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: the store, or with client credentials the app's chat server, did not answer; nothing was stored", body = ErrorEnvelope),
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SubscribeRequest>,
) -> Result<Json<Envelope<EmptyResult>>, ApiError> {
    let token_present = match &body.token {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(text)) => !text.is_empty(),
        Some(_) => true,
    };
    let (Some(raw_type), Some(raw_device_id), true) =
        (present(body.device_type.as_deref()), present(body.device_id.as_deref()), token_present)
    else {
        return Err(ApiError::missing("type, token and deviceId are required"));
    };
    let (app, client_id) = caller.app_and_client(body.client_id.as_deref())?;
    let device_type = DeviceType::parse(raw_type)?;
    let device_id = DeviceId::parse(raw_device_id)?;
    let token = match (&body.token, device_type) {
        (Some(serde_json::Value::String(text)), _) => PushToken::parse(device_type, text),
        (Some(object @ serde_json::Value::Object(_)), _) if device_type.token_kind() == TokenKind::WebPush => {
            PushToken::from_web_subscription(object)
        }
        (Some(serde_json::Value::Object(_)), _) => {
            return Err(ApiError::invalid(
                "token must be a string (an object is accepted only for types web and unifiedpush)",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "token must be a string, or a PushSubscription object for types web and unifiedpush",
            ));
        }
    }?;
    if let Some(subscription) = token.web_subscription() {
        app.webpush_endpoints.check(&subscription.endpoint)?;
    }
    let push_key = match &body.push_key {
        None | Some(serde_json::Value::Null) => None,
        Some(_) if !matches!(device_type, DeviceType::Ios | DeviceType::Android | DeviceType::Fcm) => {
            return Err(ApiError::invalid(
                "pushKey is for types ios, android and fcm (a Web Push subscription carries its own keys)",
            ));
        }
        Some(value) => Some(PushKey::parse(value)?),
    };
    let environment = parse_optional(body.environment.as_deref(), Environment::parse)?
        // Only APNs has environments; a value sent for another type is ignored.
        .filter(|_| device_type.is_apple());
    let device = NewDevice {
        app_id: app.id.clone(),
        device_type,
        device_id,
        client_id,
        token,
        environment,
        locale: parse_optional(body.locale.as_deref(), Locale::parse)?,
        timezone: parse_optional(body.timezone.as_deref(), TimeZoneName::parse)?,
        push_key,
        now_ms: now_ms(),
    };
    let outcome = state.store.upsert_device(&device).await?;
    tracing::info!(
        app.id = %device.app_id,
        client.id = %device.client_id,
        device.type = %device.device_type,
        device.token = ?device.token,
        device.push_key = device.push_key.is_some(),
        token.moved_from = outcome.token_moved_from,
        "device subscribed"
    );
    Ok(ok(EmptyResult {}))
}

/// Remove a client's device; repeating it is not an error.
#[utoipa::path(
    post,
    path = "/me/unsubscribe",
    tag = "devices",
    request_body = UnsubscribeRequest,
    security(("api_key" = []), ("client_key" = [], "client_token" = [])),
    responses(
        (status = 200, description = "`n` is how many devices were removed", body = Envelope<UnsubscribeResult>),
        (status = 400, description = "`MISSING_PARAMETER` or `INVALID_PARAMETER`", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_API_KEY`; with client credentials, `INVALID_TOKEN` (the chat server refused them)", body = ErrorEnvelope),
        (status = 503, description = "`UNAVAILABLE`: the store, or with client credentials the app's chat server, did not answer; nothing was removed", body = ErrorEnvelope),
    )
)]
pub async fn unsubscribe(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<UnsubscribeRequest>,
) -> Result<Json<Envelope<UnsubscribeResult>>, ApiError> {
    let (Some(raw_type), Some(raw_device_id)) =
        (present(body.device_type.as_deref()), present(body.device_id.as_deref()))
    else {
        return Err(ApiError::missing("type and deviceId are required"));
    };
    let (app, client_id) = caller.app_and_client(body.client_id.as_deref())?;
    let device_type = DeviceType::parse(raw_type)?;
    let device_id = DeviceId::parse(raw_device_id)?;
    let removed = state.store.remove_device(&app.id, device_type, &device_id, &client_id).await?;
    tracing::info!(app.id = %app.id, client.id = %client_id, device.type = %device_type, removed, "device unsubscribed");
    Ok(ok(UnsubscribeResult { n: removed, ok: 1 }))
}
