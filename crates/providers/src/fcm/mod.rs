//! The FCM HTTP v1 client.

mod oauth;

pub use oauth::{FCM_SCOPE, ServiceAccount};

use crate::{Clock, Outcome, TlsError, client_tls_config, retry_after};
use http::StatusCode;
use oauth::AccessTokens;
use pushgate_domain::{Reason, Unreachable};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Google's FCM endpoint.
pub const FCM_ENDPOINT: &str = "https://fcm.googleapis.com";

/// Settings of one FCM client (one service account, one project).
#[derive(Debug, Clone)]
pub struct FcmClientConfig {
    /// The service account.
    pub service_account: ServiceAccount,
    /// The FCM base URL: [`FCM_ENDPOINT`] or a local fake.
    pub endpoint: url::Url,
    /// An extra CA (PEM) trusted for the endpoint and the `token_uri`.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
}

impl FcmClientConfig {
    /// Defaults: Google's endpoint, 30 s per answer.
    pub fn new(service_account: ServiceAccount) -> Result<Self, url::ParseError> {
        Ok(Self {
            service_account,
            endpoint: url::Url::parse(FCM_ENDPOINT)?,
            extra_ca_pem: None,
            request_timeout: Duration::from_secs(30),
        })
    }
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FcmClientError {
    /// TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Http(String),
    /// The service account is unusable.
    #[error("{0}")]
    ServiceAccount(String),
}

/// Sends FCM messages for one project.
#[derive(Debug)]
pub struct FcmClient {
    http: reqwest::Client,
    send_url: url::Url,
    tokens: AccessTokens,
}

impl FcmClient {
    /// A client; the first send fetches an access token.
    pub fn new(config: FcmClientConfig, clock: Arc<dyn Clock>) -> Result<Self, FcmClientError> {
        let tls = client_tls_config(config.extra_ca_pem.as_deref(), &[b"h2", b"http/1.1"], None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.request_timeout)
            .build()
            .map_err(|error| FcmClientError::Http(error.to_string()))?;
        let path = format!("v1/projects/{}/messages:send", config.service_account.project_id);
        let send_url = config.endpoint.join(&path).map_err(|error| FcmClientError::Http(error.to_string()))?;
        let tokens =
            AccessTokens::new(http.clone(), config.service_account, clock).map_err(FcmClientError::ServiceAccount)?;
        Ok(Self { http, send_url, tokens })
    }

    /// Access tokens fetched so far.
    pub fn access_token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    /// Sends `message` (an FCM v1 `message` object without its target) to
    /// one registration token. Never fails: every problem is an [`Outcome`].
    pub async fn send(&self, token: &str, message: &serde_json::Value) -> Outcome {
        self.post(token, message, false).await
    }

    /// As [`FcmClient::send`] with `validate_only`: FCM checks the request and
    /// the credentials and delivers nothing.
    pub async fn validate(&self, token: &str, message: &serde_json::Value) -> Outcome {
        self.post(token, message, true).await
    }

    async fn post(&self, token: &str, message: &serde_json::Value, validate_only: bool) -> Outcome {
        let mut message = message.clone();
        let Some(fields) = message.as_object_mut() else {
            return Outcome::rejected("the message must be a JSON object");
        };
        fields.insert("token".into(), token.into());
        let body = serde_json::json!({ "message": message, "validate_only": validate_only });
        let mut refreshed = false;
        loop {
            let access_token = match self.tokens.get().await {
                Ok(access_token) => access_token,
                Err(outcome) => return outcome,
            };
            let response =
                match self.http.post(self.send_url.clone()).bearer_auth(&*access_token).json(&body).send().await {
                    Ok(response) => response,
                    Err(error) => {
                        let why = if error.is_timeout() { Unreachable::Timeout } else { Unreachable::ConnectionFailed };
                        tracing::debug!(error = %error, "FCM did not answer");
                        return Outcome::unreachable(why);
                    }
                };
            let status = response.status();
            let after = retry_after(response.headers());
            let answer = response.bytes().await.unwrap_or_default();
            match map_answer(status, &answer, after) {
                FcmAnswer::Final(outcome) => return outcome,
                FcmAnswer::Unauthenticated if !refreshed => {
                    refreshed = true;
                    self.tokens.invalidate(&access_token).await;
                }
                FcmAnswer::Unauthenticated => return Outcome::app_rejected("UNAUTHENTICATED"),
            }
        }
    }
}

/// How an FCM answer maps onto what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcmAnswer {
    /// Hand this outcome to the caller.
    Final(Outcome),
    /// The access token was refused: fetch a new one and send again, once.
    Unauthenticated,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

/// Maps an FCM answer per the table in protocols.md.
pub fn map_answer(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> FcmAnswer {
    if status.is_success() {
        return FcmAnswer::Final(Outcome::Delivered);
    }
    let envelope: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let detail = envelope.error;
    let error_code = detail
        .details
        .iter()
        .find(|item| item["@type"].as_str().is_some_and(|kind| kind.ends_with("google.firebase.fcm.v1.FcmError")))
        .and_then(|item| item["errorCode"].as_str())
        .unwrap_or_default()
        .to_owned();
    let token_violation = detail.details.iter().any(|item| {
        item["fieldViolations"]
            .as_array()
            .is_some_and(|violations| violations.iter().any(|v| v["field"].as_str() == Some("message.token")))
    });
    let outcome = match error_code.as_str() {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => Outcome::invalid_token(error_code, None),
        // FCM names the token as the bad field; older answers say so only in
        // the message ("The registration token is not a valid FCM registration token").
        "INVALID_ARGUMENT" if token_violation || detail.message.contains("registration token") => {
            Outcome::invalid_token(error_code, None)
        }
        "INVALID_ARGUMENT" => Outcome::Rejected { reason: Reason::provider_with(error_code, detail.message) },
        "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" => Outcome::retry(error_code, retry_after),
        "THIRD_PARTY_AUTH_ERROR" => Outcome::app_rejected(error_code),
        _ if status == StatusCode::UNAUTHORIZED || detail.status == "UNAUTHENTICATED" => {
            return FcmAnswer::Unauthenticated;
        }
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => Outcome::retry(
            if detail.status.is_empty() { status.as_str().to_owned() } else { detail.status },
            retry_after,
        ),
        _ if status == StatusCode::FORBIDDEN => {
            Outcome::app_rejected(if detail.status.is_empty() { "PERMISSION_DENIED".to_owned() } else { detail.status })
        }
        _ => {
            tracing::warn!(fcm.status = status.as_u16(), fcm.error_code = %error_code, "unknown FCM answer; failing this delivery");
            Outcome::rejected(if error_code.is_empty() { status.as_str().to_owned() } else { error_code })
        }
    };
    FcmAnswer::Final(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fcm_error(http: u16, status: &str, code: &str) -> Vec<u8> {
        serde_json::json!({ "error": { "code": http, "message": "m", "status": status, "details": [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code }
        ]}})
        .to_string()
        .into_bytes()
    }

    fn answer(http: u16, body: &[u8]) -> FcmAnswer {
        map_answer(StatusCode::from_u16(http).unwrap(), body, None)
    }

    #[test]
    fn every_documented_error_code_maps_to_its_outcome() {
        assert_eq!(answer(200, br#"{"name":"projects/p/messages/1"}"#), FcmAnswer::Final(Outcome::Delivered));
        assert_eq!(
            answer(404, &fcm_error(404, "NOT_FOUND", "UNREGISTERED")),
            FcmAnswer::Final(Outcome::invalid_token("UNREGISTERED", None))
        );
        assert_eq!(
            answer(403, &fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")),
            FcmAnswer::Final(Outcome::invalid_token("SENDER_ID_MISMATCH", None))
        );
        assert_eq!(
            answer(429, &fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")),
            FcmAnswer::Final(Outcome::retry("QUOTA_EXCEEDED", None))
        );
        assert_eq!(
            answer(503, &fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")),
            FcmAnswer::Final(Outcome::retry("UNAVAILABLE", None))
        );
        assert_eq!(
            answer(500, &fcm_error(500, "INTERNAL", "INTERNAL")),
            FcmAnswer::Final(Outcome::retry("INTERNAL", None))
        );
        assert_eq!(
            answer(401, &fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")),
            FcmAnswer::Final(Outcome::app_rejected("THIRD_PARTY_AUTH_ERROR"))
        );
        let unauthenticated = br#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
        assert_eq!(answer(401, unauthenticated), FcmAnswer::Unauthenticated);
    }

    #[test]
    fn invalid_argument_on_the_token_is_an_invalid_token_and_otherwise_a_rejection() {
        let on_token = serde_json::json!({ "error": { "code": 400, "message": "Invalid value", "status": "INVALID_ARGUMENT", "details": [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT" },
            { "@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{ "field": "message.token", "description": "bad" }] }
        ]}});
        assert_eq!(
            answer(400, on_token.to_string().as_bytes()),
            FcmAnswer::Final(Outcome::invalid_token("INVALID_ARGUMENT", None))
        );
        let on_payload = serde_json::json!({ "error": { "code": 400, "message": "Invalid JSON payload received. Unknown name \"bogus\"", "status": "INVALID_ARGUMENT", "details": [
            { "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT" },
            { "@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{ "field": "message.data", "description": "bad" }] }
        ]}});
        assert!(matches!(
            answer(400, on_payload.to_string().as_bytes()),
            FcmAnswer::Final(Outcome::Rejected { reason }) if reason.code() == "INVALID_ARGUMENT"
        ));
    }

    #[test]
    fn retry_after_is_honoured() {
        let outcome = map_answer(
            StatusCode::TOO_MANY_REQUESTS,
            &fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
            Some(Duration::from_secs(30)),
        );
        assert_eq!(outcome, FcmAnswer::Final(Outcome::retry("QUOTA_EXCEEDED", Some(Duration::from_secs(30)))));
    }

    #[test]
    fn an_unreadable_server_error_is_still_a_retry() {
        assert_eq!(answer(502, b"<html>bad gateway</html>"), FcmAnswer::Final(Outcome::retry("502", None)));
    }
}
