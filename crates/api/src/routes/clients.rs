//! pushgate's own per-client routes under `/v1/clients/{clientId}`.

use crate::AppState;
use crate::auth::AuthenticatedApp;
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::ApiPath;
use axum::Json;
use axum::extract::State;
use pushgate_domain::{ClientId, PushKey, mask_token};
use serde::Serialize;
use utoipa::ToSchema;

/// One registered device, with its token masked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    /// IMKIT's device type.
    #[serde(rename = "type")]
    pub device_type: String,
    /// The app-chosen device id.
    pub device_id: String,
    /// The token with all but its last 8 characters hidden (for `web`, the end of the endpoint).
    pub token: String,
    /// `production` or `sandbox` for iOS devices (the app default when the device named none); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The device's locale, if known.
    pub locale: Option<String>,
    /// The device's time zone, if known.
    pub timezone: Option<String>,
    /// The device's key for private payloads, masked (the public key's end; nothing of the auth secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub push_key: Option<serde_json::Value>,
    /// First registration, Unix milliseconds.
    #[serde(rename = "createdAtMS")]
    pub created_at_ms: i64,
    /// Last registration, Unix milliseconds.
    #[serde(rename = "updatedAtMS")]
    pub updated_at_ms: i64,
}

/// The `result` of the device listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// The client's devices, oldest registration first.
    pub devices: Vec<DeviceView>,
}

/// List a client's registered devices.
#[utoipa::path(
    get,
    path = "/v1/clients/{clientId}/devices",
    tag = "devices",
    params(("clientId" = String, Path, description = "The IMKIT client id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The devices; an unknown client has none", body = Envelope<DeviceList>),
        (status = 401, description = "`INVALID_API_KEY`", body = ErrorEnvelope),
    )
)]
pub async fn list_devices(
    State(state): State<AppState>,
    AuthenticatedApp(app): AuthenticatedApp,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<Envelope<DeviceList>>, ApiError> {
    let client_id = ClientId::parse(&client_id)?;
    let devices = state.store.client_devices(&app.id, &client_id).await?;
    let devices = devices
        .into_iter()
        .map(|device| DeviceView {
            device_type: device.device_type.as_str().to_owned(),
            device_id: device.device_id.to_string(),
            token: mask_token(device.token.as_str()),
            environment: device
                .device_type
                .is_apple()
                .then(|| device.environment.unwrap_or(app.default_environment).as_str().to_owned()),
            locale: device.locale.map(|locale| locale.as_str().to_owned()),
            timezone: device.timezone.map(|zone| zone.as_str().to_owned()),
            push_key: device.push_key.as_ref().map(PushKey::masked),
            created_at_ms: device.created_at_ms,
            updated_at_ms: device.updated_at_ms,
        })
        .collect();
    Ok(ok(DeviceList { devices }))
}
