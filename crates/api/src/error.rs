//! The one error type handlers return, rendered as IMKIT's envelope.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pushgate_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// A failed request: the status, IMKIT's `UPPER_SNAKE` code and a message
/// that is safe for the caller. The internal cause, if any, is logged here and
/// never sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// `Retry-After`, in seconds, for a refusal that passes.
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message for the caller.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), cause: None, retry_after_seconds: None }
    }

    /// 429 `RATE_LIMITED`, to be tried again after `seconds`.
    pub fn rate_limited(message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(seconds.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
    }

    /// 400 `MISSING_PARAMETER`.
    pub fn missing(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MISSING_PARAMETER", message)
    }

    /// 400 `INVALID_PARAMETER`; the message names the field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER", message)
    }

    /// 401 `INVALID_API_KEY`, worded as IMKIT words it.
    pub fn invalid_api_key() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "Invalid or missing API key")
    }

    /// 401 `INVALID_TOKEN`, worded as IMKIT words it.
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "Invalid or expired token")
    }

    /// 403 `FORBIDDEN`: a callback's origin could not be verified.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 500 `INTERNAL`; the cause is logged, the caller sees a generic message.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error").with_cause(cause)
    }

    /// Attaches an internal cause to be logged with the error.
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the store is unavailable; nothing was changed, try again",
            )
            .with_cause(error),
            StoreError::Internal(_) | StoreError::Corrupt(_) => Self::internal(error),
        }
    }
}

/// IMKIT's failure envelope: `{"RC": status, "RM": reason phrase, "error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The HTTP status again.
    #[serde(rename = "RC")]
    pub rc: u16,
    /// The status's reason phrase, such as `Bad Request`.
    #[serde(rename = "RM")]
    pub rm: String,
    /// What went wrong.
    pub error: ErrorBody,
}

/// The `error` member of the failure envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `UPPER_SNAKE` error code such as `INVALID_PARAMETER`.
    pub code: String,
    /// Human-readable text; names the field for parameter errors.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            if self.status.is_server_error() {
                tracing::error!(error.code = self.code, error.cause = %cause, "request failed");
            } else {
                tracing::info!(error.code = self.code, error.cause = %cause, "request refused");
            }
        }
        let envelope = ErrorEnvelope {
            rc: self.status.as_u16(),
            rm: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            error: ErrorBody { code: self.code.to_owned(), message: self.message },
        };
        let mut response = (self.status, Json(envelope)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// IMKIT's success envelope: `{"RC": 0, "RM": "OK", "result": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always 0 on success.
    #[serde(rename = "RC")]
    pub rc: u16,
    /// Always `OK` on success.
    #[serde(rename = "RM")]
    pub rm: &'static str,
    /// The route's result.
    pub result: T,
}

/// Wraps a result in the success envelope.
pub fn ok<T: Serialize>(result: T) -> Json<Envelope<T>> {
    Json(Envelope { rc: 0, rm: "OK", result })
}

/// A value from the request failed to parse: 400 `INVALID_PARAMETER`. Domain
/// parse errors already name the field ("clientId must not be empty").
impl From<pushgate_domain::ParseError> for ApiError {
    fn from(error: pushgate_domain::ParseError) -> Self {
        Self::invalid(error.0)
    }
}
