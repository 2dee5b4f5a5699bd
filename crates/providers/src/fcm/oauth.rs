//! Google OAuth2 for service accounts (the JWT-bearer grant, RFC 7523).
//!
//! About sixty lines of our own rather than `gcp_auth`, so FCM and the token
//! endpoint share one HTTP stack and one TLS setting (the extra CA of a test
//! fake), and the file's `token_uri` is honoured as it is.

use crate::{Clock, Outcome};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pushgate_domain::{Reason, Unreachable};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The one scope FCM needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a service-account JSON file that pushgate uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The Firebase project.
    pub project_id: String,
    /// The account's e-mail, the assertion's issuer.
    pub client_email: String,
    /// The RSA private key, PEM.
    pub private_key: String,
    /// Id of that key, sent as the assertion's `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where to exchange the assertion for an access token.
    pub token_uri: String,
}

impl ServiceAccount {
    /// Checks what the JSON shape does not: non-empty fields, an https (or
    /// loopback) `token_uri`, and a private key that is RSA in PEM.
    pub fn check(&self) -> Result<(), String> {
        for (field, value) in [("project_id", &self.project_id), ("client_email", &self.client_email)] {
            if value.trim().is_empty() {
                return Err(format!("the service account's {field} is empty"));
            }
        }
        let token_uri =
            url::Url::parse(&self.token_uri).map_err(|_| "the service account's token_uri is not a URL".to_owned())?;
        if token_uri.scheme() != "https" {
            return Err("the service account's token_uri must be https".into());
        }
        EncodingKey::from_rsa_pem(self.private_key.as_bytes())
            .map(|_| ())
            .map_err(|error| format!("the service account's private_key is not an RSA key in PEM: {error}"))
    }
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct AccessToken {
    value: Arc<str>,
    refresh_at: SystemTime,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// Access tokens for one service account: fetched once, shared by every
/// concurrent send, and fetched again shortly before they expire.
pub(crate) struct AccessTokens {
    http: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    clock: Arc<dyn Clock>,
    current: tokio::sync::Mutex<Option<AccessToken>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("account", &self.account).finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub(crate) fn new(http: reqwest::Client, account: ServiceAccount, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|error| format!("the service account's private_key is not an RSA key in PEM: {error}"))?;
        Ok(Self { http, account, key, clock, current: tokio::sync::Mutex::new(None), fetches: AtomicU64::new(0) })
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A valid access token. Concurrent callers wait on one fetch.
    pub(crate) async fn get(&self) -> Result<Arc<str>, Outcome> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && self.clock.now() < token.refresh_at
        {
            return Ok(Arc::clone(&token.value));
        }
        let fetched = self.fetch().await?;
        let value = Arc::clone(&fetched.value);
        *current = Some(fetched);
        Ok(value)
    }

    /// FCM refused `stale` as unauthenticated: forget it (unless a newer one
    /// already replaced it), so the next [`AccessTokens::get`] fetches anew.
    pub(crate) async fn invalidate(&self, stale: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|token| &*token.value == stale) {
            *current = None;
        }
    }

    async fn fetch(&self) -> Result<AccessToken, Outcome> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.unix_seconds();
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.account.private_key_id);
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": FCM_SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|error| Outcome::AppRejected {
            reason: Reason::Credentials(format!("OAuth: cannot sign the assertion: {error}")),
        })?;
        let response = self
            .http
            .post(&self.account.token_uri)
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "the OAuth token endpoint did not answer");
                Outcome::unreachable(Unreachable::OAuthUnavailable)
            })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Outcome::Retry {
                reason: Reason::Unreachable(Unreachable::OAuthUnavailable),
                after: crate::retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let error = body.get("error").and_then(serde_json::Value::as_str).unwrap_or("unknown");
            tracing::error!(
                oauth.status = status.as_u16(),
                oauth.error = error,
                "the OAuth token endpoint refused the service account"
            );
            return Err(Outcome::AppRejected { reason: Reason::provider_with("OAuth", error) });
        }
        let answer: TokenAnswer = response.json().await.map_err(|_| Outcome::retry("OAuthBadAnswer", None))?;
        // Refresh a minute before expiry, or halfway for very short-lived tokens.
        let margin = Duration::from_secs(60.min(answer.expires_in / 2));
        let refresh_at = self.clock.now() + Duration::from_secs(answer.expires_in) - margin;
        Ok(AccessToken { value: answer.access_token.into(), refresh_at })
    }
}
