//! Asks an app's IMKIT chat server who a client is: `GET {url}/me` with the
//! client's own `IM-CLIENT-KEY` and `IM-Authorization`, as IMKIT's apps do.
//! The token is opaque to anyone but the chat server, so asking it is the
//! only way to know whose it is.
//!
//! Written here on reqwest rather than with an IMKIT SDK: there is no Rust
//! one, and this is one GET.

use crate::tls::{TlsError, client_tls_config};
use std::time::Duration;

/// Who the chat server says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatClient {
    /// The client id (`_id`).
    pub client_id: String,
    /// The IMKIT app it belongs to (`appID`).
    pub app_id: String,
}

/// Why the chat server did not say who the caller is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeError {
    /// It refused the credentials (invalid or expired token, wrong client key).
    #[error("the chat server refused the credentials")]
    Refused,
    /// It could not be asked, or did not answer as IMKIT does.
    #[error("the chat server could not be asked: {0}")]
    Unreachable(String),
}

/// A client of one app's chat server.
#[derive(Debug)]
pub struct ImkitClient {
    http: reqwest::Client,
    me: reqwest::Url,
}

impl ImkitClient {
    /// A client of the chat server at `url`, trusting `extra_ca_pem` beside
    /// the public roots, giving up on a call after `timeout`.
    pub fn new(url: &reqwest::Url, extra_ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, TlsError> {
        let tls = client_tls_config(extra_ca_pem, &[b"h2", b"http/1.1"], None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            // The answer is about the caller; a redirect could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| TlsError::BadCa(error.to_string()))?;
        let me = url.join("me").map_err(|error| TlsError::BadCa(error.to_string()))?;
        Ok(Self { http, me })
    }

    /// Asks who holds `token`.
    pub async fn me(&self, client_key: &str, token: &str) -> Result<ChatClient, MeError> {
        let response = self
            .http
            .get(self.me.clone())
            .header("IM-CLIENT-KEY", client_key)
            .header("IM-Authorization", token)
            .send()
            .await
            .map_err(|error| {
                MeError::Unreachable(if error.is_timeout() { "timeout".into() } else { error.to_string() })
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(MeError::Refused);
        }
        if !status.is_success() {
            return Err(MeError::Unreachable(format!("answered {status}")));
        }
        let body: serde_json::Value =
            response.json().await.map_err(|error| MeError::Unreachable(format!("an unreadable answer: {error}")))?;
        let result = &body["result"];
        match (body["RC"].as_i64(), result["_id"].as_str(), result["appID"].as_str()) {
            (Some(0), Some(client_id), Some(app_id)) if !client_id.is_empty() => {
                Ok(ChatClient { client_id: client_id.to_owned(), app_id: app_id.to_owned() })
            }
            (Some(401 | 403), _, _) => Err(MeError::Refused),
            _ => Err(MeError::Unreachable("an answer without result._id and result.appID".into())),
        }
    }
}
