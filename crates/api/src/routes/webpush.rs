//! Web Push: what a web client needs before it can subscribe.

use crate::AppState;
use crate::error::{ApiError, Envelope, ErrorEnvelope, ok};
use crate::extract::ApiPath;
use axum::Json;
use axum::extract::State;
use pushgate_domain::AppId;
use serde::Serialize;
use utoipa::ToSchema;

/// The `result` of `GET /webpush/{appId}/vapid-public-key`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidPublicKey {
    /// The app's VAPID public key: an uncompressed P-256 point, base64url
    /// without padding, as `pushManager.subscribe` takes it for
    /// `applicationServerKey`.
    #[schema(example = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM")]
    pub public_key: String,
}

/// The app's VAPID public key, open without a key: a web client fetches it
/// to subscribe. A public key is public; it changes nothing.
#[utoipa::path(
    get,
    path = "/webpush/{appId}/vapid-public-key",
    tag = "devices",
    params(("appId" = String, Path, description = "The IMKIT app id")),
    responses(
        (status = 200, body = Envelope<VapidPublicKey>),
        (status = 404, description = "`NOT_FOUND`: no such app, or Web Push is not configured for it", body = ErrorEnvelope),
    )
)]
pub async fn vapid_public_key(
    State(state): State<AppState>,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<Envelope<VapidPublicKey>>, ApiError> {
    let not_found = || ApiError::not_found("no app with Web Push configured has this id");
    let app_id = AppId::parse(&app_id).map_err(|_| not_found())?;
    let key = state.apps.get(&app_id).and_then(|app| app.vapid_public_key.clone()).ok_or_else(not_found)?;
    Ok(ok(VapidPublicKey { public_key: key }))
}
