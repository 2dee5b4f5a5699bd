//! Extractors that turn every framework rejection into the IMKIT envelope.

use crate::AppState;
use crate::auth::{Access, AppSettings, AuthenticatedApp};
use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use pushgate_domain::{AppId, ClientId};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The header a request made with an admin key names its app in.
pub const APP_ID_HEADER: &str = "IM-APP-ID";

/// A JSON body parsed into `T`.
///
/// Differs from `axum::Json` in what it answers when the body is wrong: the
/// IMKIT envelope, with `INVALID_JSON` for bad syntax, `INVALID_PARAMETER`
/// naming the field for a wrong type, `PAYLOAD_TOO_LARGE` past the body limit
/// and `UNSUPPORTED_MEDIA_TYPE` for another content type.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The raw bytes of a JSON body, for a handler that needs them as they came
/// (to check a signature) before parsing them with [`parse_json`]. The same
/// content-type and size checks as [`ApiJson`].
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json_content_type(request.headers())?;
        read_body(request, state).await.map(JsonBytes)
    }
}

/// An optional JSON body parsed into `T`: an empty body is `None`, whatever
/// its content type; any other body gets the same checks as [`ApiJson`].
#[derive(Debug)]
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let bytes = read_body(request, state).await?;
        if bytes.trim_ascii().is_empty() {
            return Ok(Self(None));
        }
        require_json_content_type(&headers)?;
        parse_json(&bytes).map(|value| Self(Some(value)))
    }
}

/// 415 `UNSUPPORTED_MEDIA_TYPE` unless the content type is JSON
/// (`application/json` or `*/*+json`, any parameters).
fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            let essence = essence.trim();
            essence.eq_ignore_ascii_case("application/json")
                || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
        });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        ))
    }
}

/// The whole body, within the router's body limit: past it 413
/// `PAYLOAD_TOO_LARGE`, in the envelope.
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "the request body is too large")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", "the request body could not be read")
        }
    })
}

/// Parses a JSON object body, naming the offending field on a type error.
///
/// Every body of our API is an object; anything else is refused up front,
/// because serde would otherwise read an array positionally into a struct.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::invalid("body: must be a JSON object"),
            Err(error) => invalid_json(&error),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::invalid(format!("{field}: {}", strip_position(&inner.to_string())))
        } else {
            invalid_json(&inner)
        }
    })?;
    // Anything but white space after the value is a syntax error too.
    deserializer.end().map_err(|error| invalid_json(&error))?;
    Ok(value)
}

fn invalid_json(error: &serde_json::Error) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", format!("the body is not valid JSON: {error}"))
}

/// serde_json appends " at line L column C" to data errors; for a named field
/// the position adds nothing.
fn strip_position(message: &str) -> &str {
    message.rsplit_once(" at line ").map_or(message, |(head, _)| head)
}

impl FromRequestParts<AppState> for AuthenticatedApp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
        if let Some(key) = header("IM-API-KEY") {
            return match state.keys.access(key, &state.apps).ok_or_else(ApiError::invalid_api_key)? {
                Access::App(app) => Ok(AuthenticatedApp(app)),
                // An admin key opens every app: the request names the one it acts on.
                Access::Admin => {
                    let named = header(APP_ID_HEADER).ok_or_else(|| {
                        ApiError::missing("IM-APP-ID: an admin key acts on the app this header names")
                    })?;
                    let app = AppId::parse(named)
                        .ok()
                        .and_then(|id| state.apps.get(&id).cloned())
                        .ok_or_else(|| ApiError::invalid(format!("IM-APP-ID: no app {named:?} is configured")))?;
                    Ok(AuthenticatedApp(app))
                }
            };
        }
        // IMKIT's client credentials (IM-CLIENT-KEY + IM-Authorization) carry a
        // token only the chat platform can check; pushgate cannot, so it
        // refuses them with the error IMKIT gives for a bad token.
        if header("IM-Authorization").is_some() {
            return Err(ApiError::invalid_token());
        }
        Err(ApiError::invalid_api_key())
    }
}

/// Who calls a route a client may call (`/me/subscribe`, `/me/unsubscribe`):
/// the app's server, with an API key (the body names the client), or the
/// client itself, with IMKIT's client credentials (`IM-CLIENT-KEY` and
/// `IM-Authorization`, vouched for by the app's chat server).
#[derive(Debug, Clone)]
pub enum Caller {
    /// An API key of the app.
    Server(Arc<AppSettings>),
    /// A client of the app, as its chat server says.
    Client(Arc<AppSettings>, ClientId),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
        if parts.headers.contains_key("IM-API-KEY") {
            let AuthenticatedApp(app) = AuthenticatedApp::from_request_parts(parts, state).await?;
            return Ok(Caller::Server(app));
        }
        match (header("IM-CLIENT-KEY"), header("IM-Authorization")) {
            (Some(client_key), Some(token)) if !token.is_empty() => {
                let (app, client_id) = crate::client_auth::verify(state, &client_key, &token).await?;
                Ok(Caller::Client(app, client_id))
            }
            (_, Some(_)) => Err(ApiError::invalid_token()),
            _ => Err(ApiError::invalid_api_key()),
        }
    }
}

impl Caller {
    /// The app, and the client the device is bound to: the body's
    /// `clientId` for a server; the credentials' client for a client (a
    /// `clientId` in the body must then be that one).
    pub fn app_and_client(self, body_client_id: Option<&str>) -> Result<(Arc<AppSettings>, ClientId), ApiError> {
        let named = body_client_id.filter(|value| !value.is_empty());
        match self {
            Caller::Server(app) => {
                let named = named.ok_or_else(|| ApiError::missing("clientId is required with IM-API-KEY"))?;
                Ok((app, ClientId::parse(named)?))
            }
            Caller::Client(app, client_id) => match named {
                Some(named) if named != client_id.as_str() => Err(ApiError::invalid(
                    "clientId: not the client the credentials belong to (leave it out with IM-Authorization)",
                )),
                _ => Ok((app, client_id)),
            },
        }
    }
}

/// A path parameter; a bad one (for example invalid percent-encoding) is a
/// 400 `INVALID_PARAMETER` envelope rather than axum's plain-text answer.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::invalid(format!("path: {}", rejection.body_text())))
    }
}

/// The connection's peer address, when the server recorded it (it does for
/// every real connection; in-process test requests may have none).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Self(peer.map(|axum::extract::ConnectInfo(address)| address.ip())))
    }
}
