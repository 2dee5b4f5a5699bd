//! The FCM HTTP v1 client.

mod oauth;

pub use oauth::{FCM_SCOPE, ServiceAccount};

use crate::h2pool::{Pool, Trip};
use crate::{Clock, Outcome, TlsError, client_tls_config, retry_after};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use oauth::AccessTokens;
use pushgate_domain::{Reason, Unreachable};
use serde::{Deserialize, Serialize};
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
    /// HTTP/2 connections kept open to the endpoint (FCM allows 100 streams
    /// on each).
    pub connections: usize,
}

impl FcmClientConfig {
    /// Defaults: Google's endpoint, 30 s per answer, 4 connections.
    pub fn new(service_account: ServiceAccount) -> Result<Self, url::ParseError> {
        Ok(Self {
            service_account,
            endpoint: url::Url::parse(FCM_ENDPOINT)?,
            extra_ca_pem: None,
            request_timeout: Duration::from_secs(30),
            connections: 4,
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

/// Sends FCM messages for one project: HTTP/2 through a pool of its own
/// (see `h2pool`), the access tokens fetched with reqwest.
#[derive(Debug)]
pub struct FcmClient {
    pool: Pool,
    send_uri: http::Uri,
    tokens: AccessTokens,
    request_timeout: Duration,
}

impl FcmClient {
    /// A client; the first send fetches an access token.
    pub fn new(config: FcmClientConfig, clock: Arc<dyn Clock>) -> Result<Self, FcmClientError> {
        let endpoint = &config.endpoint;
        let bad = || FcmClientError::Http(format!("the FCM endpoint must be https://host[:port], got {endpoint}"));
        let host = endpoint.host_str().filter(|_| endpoint.scheme() == "https").ok_or_else(bad)?;
        let port = endpoint.port_or_known_default().ok_or_else(bad)?;
        let tls = client_tls_config(config.extra_ca_pem.as_deref(), &[b"h2"], None)?;
        let pool = Pool::new(
            "FCM",
            host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port,
            Arc::new(tls),
            config.connections,
            PING_INTERVAL,
        )
        .map_err(|_| bad())?;
        let path = format!("v1/projects/{}/messages:send", config.service_account.project_id);
        let send_url = endpoint.join(&path).map_err(|error| FcmClientError::Http(error.to_string()))?;
        let send_uri = send_url
            .as_str()
            .parse()
            .map_err(|error: http::uri::InvalidUri| FcmClientError::Http(error.to_string()))?;
        let token_tls = client_tls_config(config.extra_ca_pem.as_deref(), &[b"h2", b"http/1.1"], None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(token_tls)
            .timeout(config.request_timeout)
            .build()
            .map_err(|error| FcmClientError::Http(error.to_string()))?;
        let tokens = AccessTokens::new(http, config.service_account, clock).map_err(FcmClientError::ServiceAccount)?;
        Ok(Self { pool, send_uri, tokens, request_timeout: config.request_timeout })
    }

    /// Access tokens fetched so far.
    pub fn access_token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    /// HTTP/2 connections to the endpoint opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.pool.connects()
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
        let Some(fields) = message.as_object() else {
            return Outcome::rejected("the message must be a JSON object");
        };
        let body = match serde_json::to_vec(&SendBody { message: Targeted { token, fields }, validate_only }) {
            Ok(body) => Bytes::from(body),
            Err(error) => return Outcome::rejected(format!("the message cannot be serialised: {error}")),
        };
        let (mut refreshed, mut refused_streams, mut attempt) = (false, 0, 0);
        let mut last_problem = Unreachable::ConnectionFailed;
        while attempt < TRANSPORT_ATTEMPTS {
            attempt += 1;
            let access_token = match self.tokens.get().await {
                Ok(access_token) => access_token,
                Err(outcome) => return outcome,
            };
            let request = http::Request::post(self.send_uri.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::AUTHORIZATION, format!("Bearer {access_token}"))
                .body(Full::new(body.clone()));
            let Ok(request) = request else {
                return Outcome::app_rejected("the access token is not a valid header value");
            };
            let (head, answer) = match self.pool.send(request, self.request_timeout, MAX_ANSWER_BYTES).await {
                Trip::TimedOut => return Outcome::unreachable(Unreachable::Timeout),
                Trip::Refused if refused_streams < REFUSED_STREAM_ATTEMPTS => {
                    // Not processed (the server's stream limit); the connection is good.
                    refused_streams += 1;
                    attempt -= 1;
                    continue;
                }
                Trip::Refused => {
                    last_problem = Unreachable::ConnectionLost;
                    continue;
                }
                // Sent again on a fresh connection, as for APNs.
                Trip::CutOff(why) => {
                    last_problem = why;
                    continue;
                }
                Trip::Answered { head, body, .. } => (head, body),
            };
            let answer = answer.unwrap_or_default();
            match map_answer(head.status, &answer, retry_after(&head.headers)) {
                FcmAnswer::Final(outcome) => return outcome,
                FcmAnswer::Unauthenticated if !refreshed => {
                    refreshed = true;
                    // A token refresh is not a transport failure.
                    attempt -= 1;
                    self.tokens.invalidate(&access_token).await;
                }
                FcmAnswer::Unauthenticated => return Outcome::app_rejected("UNAUTHENTICATED"),
            }
        }
        Outcome::unreachable(last_problem)
    }
}

/// Sends before a connection problem is a retry for the worker.
const TRANSPORT_ATTEMPTS: usize = 3;
/// `REFUSED_STREAM` resets (never processed) sent again at once.
const REFUSED_STREAM_ATTEMPTS: usize = 8;
/// FCM's answers are small; a longer one is cut here.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// PINGs on an idle connection, as for APNs.
const PING_INTERVAL: Duration = Duration::from_secs(60);

/// `{"message": {"token": …, …the message's fields}, "validate_only": …}`,
/// serialised straight from the caller's message (no copy of it).
#[derive(Serialize)]
struct SendBody<'a> {
    message: Targeted<'a>,
    validate_only: bool,
}

/// The message with its target first; a `token` the message carries itself
/// is replaced.
struct Targeted<'a> {
    token: &'a str,
    fields: &'a serde_json::Map<String, serde_json::Value>,
}

impl Serialize for Targeted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("token", self.token)?;
        for (key, value) in self.fields.iter().filter(|(key, _)| *key != "token") {
            map.serialize_entry(key, value)?;
        }
        map.end()
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
