//! The APNs HTTP/2 provider API client.

mod channels;
mod jwt;
mod request;

pub use channels::{
    BroadcastHeaders, ChannelError, ChannelInfo, ChannelManager, PRODUCTION_CHANNELS_ENDPOINT,
    SANDBOX_CHANNELS_ENDPOINT, StoragePolicy,
};
pub use jwt::{ExpiredTokenAction, JwtError, MIN_REFRESH_INTERVAL, REFRESH_AFTER, TokenSigner};
pub use request::{
    Answer, MAX_COLLAPSE_ID_BYTES, MAX_PAYLOAD_BYTES, MAX_VOIP_PAYLOAD_BYTES, Notification, Priority, PushType,
    apns_id, build_request, map_answer,
};

use crate::h2pool::{Pool, Trip};
use crate::{Outcome, TlsError, client_tls_config, retry_after};
use http_body_util::Full;
use pushgate_domain::{Reason, Unreachable};
use std::sync::Arc;
use std::time::Duration;

/// Apple's production endpoint.
pub const PRODUCTION_ENDPOINT: &str = "https://api.push.apple.com";
/// Apple's sandbox (development) endpoint.
pub const SANDBOX_ENDPOINT: &str = "https://api.sandbox.push.apple.com";

/// How many times one send may be cut off by a dying connection before it is
/// reported as a retry for later.
const TRANSPORT_ATTEMPTS: usize = 3;
/// How many times one send may be refused a stream (`REFUSED_STREAM`: not
/// processed, the connection itself is fine) before it is reported as a retry.
const REFUSED_STREAM_ATTEMPTS: usize = 8;
/// APNs error bodies are tiny; anything larger is not APNs.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum ApnsAuth {
    /// A provider token (JWT) from a `.p8` key; one signer serves every client of the key.
    Token(Arc<TokenSigner>),
    /// A TLS client certificate (PEM chain and PEM private key).
    Certificate {
        /// The certificate chain, PEM.
        chain_pem: Vec<u8>,
        /// The private key, PEM.
        key_pem: Vec<u8>,
    },
}

/// Settings of one client, which talks to one endpoint.
#[derive(Debug, Clone)]
pub struct ApnsClientConfig {
    /// `https://host[:port]`: [`PRODUCTION_ENDPOINT`], [`SANDBOX_ENDPOINT`] or a local fake.
    pub endpoint: url::Url,
    /// Token or certificate authentication.
    pub auth: ApnsAuth,
    /// An extra CA certificate to trust (PEM), for a fake.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// HTTP/2 connections kept open (at least 1).
    pub connections: usize,
    /// Longest wait for one answer before the send is reported as a retry.
    pub request_timeout: Duration,
    /// PING interval on idle connections.
    pub ping_interval: Duration,
}

impl ApnsClientConfig {
    /// Defaults: 2 connections, 30 s per answer, PING every 60 s.
    pub fn new(endpoint: url::Url, auth: ApnsAuth) -> Self {
        Self {
            endpoint,
            auth,
            extra_ca_pem: None,
            connections: 2,
            request_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(60),
        }
    }
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ApnsClientError {
    /// The endpoint is not `https://host[:port]`.
    #[error("the APNs endpoint must be https://host[:port], got {0}")]
    BadEndpoint(String),
    /// TLS settings (CA, client certificate) are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Sends notifications to one APNs endpoint over a pool of HTTP/2 connections.
#[derive(Debug)]
pub struct ApnsClient {
    pool: Pool,
    authority: String,
    signer: Option<Arc<TokenSigner>>,
    request_timeout: Duration,
}

impl ApnsClient {
    /// A client; no connection is opened until the first send.
    pub fn new(config: ApnsClientConfig) -> Result<Self, ApnsClientError> {
        let endpoint = &config.endpoint;
        let bad = || ApnsClientError::BadEndpoint(endpoint.to_string());
        if endpoint.scheme() != "https" {
            return Err(bad());
        }
        let host = endpoint.host_str().ok_or_else(bad)?.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = endpoint.port_or_known_default().ok_or_else(bad)?;
        let (signer, client_certificate) = match &config.auth {
            ApnsAuth::Token(signer) => (Some(Arc::clone(signer)), None),
            ApnsAuth::Certificate { chain_pem, key_pem } => (None, Some((chain_pem.as_slice(), key_pem.as_slice()))),
        };
        let tls = client_tls_config(config.extra_ca_pem.as_deref(), &[b"h2"], client_certificate)?;
        let authority = match endpoint.port() {
            Some(port) => format!("{}:{port}", endpoint.host_str().ok_or_else(bad)?),
            None => endpoint.host_str().ok_or_else(bad)?.to_owned(),
        };
        let pool = Pool::new("APNs", host, port, Arc::new(tls), config.connections, config.ping_interval)
            .map_err(|_| bad())?;
        Ok(Self { pool, authority, signer, request_timeout: config.request_timeout })
    }

    /// Connections opened so far, replacements included.
    pub fn connections_opened(&self) -> u64 {
        self.pool.connects()
    }

    /// Sends one notification and says what became of it. Never fails: every
    /// problem is an [`Outcome`]. A request cut off by a dying connection
    /// is sent again on a new one; if that keeps happening the outcome is a
    /// retry, never a failure.
    pub async fn send(&self, notification: &Notification<'_>) -> Outcome {
        let mut renewed_token = false;
        let mut refused_streams = 0;
        let mut last_problem = Reason::Unreachable(Unreachable::ConnectionFailed);
        let mut attempt = 0;
        while attempt < TRANSPORT_ATTEMPTS {
            attempt += 1;
            let bearer = match &self.signer {
                Some(signer) => match signer.token() {
                    Ok(jwt) => Some(jwt),
                    Err(error) => return Outcome::AppRejected { reason: Reason::Credentials(error.to_string()) },
                },
                None => None,
            };
            let request = match build_request(notification, &self.authority, bearer.as_deref()) {
                Ok(request) => request.map(Full::new),
                Err(outcome) => return outcome,
            };
            let (lease, parts, body) = match self.pool.send(request, self.request_timeout, MAX_ANSWER_BYTES).await {
                Trip::TimedOut => return Outcome::unreachable(Unreachable::Timeout),
                Trip::Refused if refused_streams < REFUSED_STREAM_ATTEMPTS => {
                    // The request was not processed and the connection is still good.
                    refused_streams += 1;
                    attempt -= 1;
                    continue;
                }
                Trip::Refused => {
                    last_problem = Reason::Unreachable(Unreachable::ConnectionLost);
                    continue;
                }
                // Sent again on a fresh connection.
                Trip::CutOff(why) => {
                    last_problem = Reason::Unreachable(why);
                    continue;
                }
                Trip::Answered { lease, head, body } => (lease, head, body),
            };
            let Ok(body) = body else {
                self.pool.retire(&lease).await;
                last_problem = Reason::Unreachable(Unreachable::ConnectionLost);
                continue;
            };
            match map_answer(parts.status, &body, retry_after(&parts.headers)) {
                Answer::Final(outcome) => return outcome,
                Answer::Reconnect => {
                    self.pool.retire(&lease).await;
                    last_problem = Reason::provider("IdleTimeout");
                }
                Answer::RetryOnNewConnection(outcome) => {
                    self.pool.retire(&lease).await;
                    return outcome;
                }
                Answer::ExpiredProviderToken => {
                    let (Some(signer), Some(jwt)) = (&self.signer, bearer.as_deref()) else {
                        return Outcome::app_rejected("ExpiredProviderToken");
                    };
                    match signer.expired(jwt) {
                        ExpiredTokenAction::Resend if !renewed_token => {
                            renewed_token = true;
                            // A token refresh is not a transport failure.
                            attempt -= 1;
                        }
                        ExpiredTokenAction::Resend => return Outcome::retry("ExpiredProviderToken", None),
                        ExpiredTokenAction::WaitFor(delay) => {
                            return Outcome::retry("ExpiredProviderToken", Some(delay));
                        }
                    }
                }
            }
        }
        Outcome::Retry { reason: last_problem, after: None }
    }
}

impl ApnsClient {
    /// One request of Apple's channel APIs (management, broadcasts): the
    /// answer's head and body when its status is `expected`, else Apple's
    /// reason. A request cut off by a dying connection is sent again on a new
    /// one, and an expired provider token is signed again once, as [`Self::send`] does.
    pub(crate) async fn exchange(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: bytes::Bytes,
        expected: http::StatusCode,
    ) -> Result<(http::response::Parts, bytes::Bytes), ChannelError> {
        let mut renewed_token = false;
        let mut last_problem = Reason::Unreachable(Unreachable::ConnectionFailed);
        for _ in 0..TRANSPORT_ATTEMPTS {
            let bearer = match &self.signer {
                Some(signer) => Some(
                    signer
                        .token()
                        .map_err(|error| ChannelError::Unreachable(Reason::Credentials(error.to_string())))?,
                ),
                None => None,
            };
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(format!("https://{}{path}", self.authority))
                .header(http::header::CONTENT_TYPE, "application/json");
            for (name, value) in headers {
                builder = builder.header(*name, value.as_str());
            }
            if let Some(jwt) = &bearer {
                builder = builder.header(http::header::AUTHORIZATION, format!("bearer {jwt}"));
            }
            let request = builder
                .body(Full::new(body.clone()))
                .map_err(|error| ChannelError::Unexpected(format!("a request that cannot be made: {error}")))?;
            let (parts, body) = match self.pool.send(request, self.request_timeout, MAX_ANSWER_BYTES).await {
                Trip::TimedOut => return Err(ChannelError::Unreachable(Reason::Unreachable(Unreachable::Timeout))),
                Trip::Refused => {
                    last_problem = Reason::Unreachable(Unreachable::ConnectionLost);
                    continue;
                }
                Trip::CutOff(why) => {
                    last_problem = Reason::Unreachable(why);
                    continue;
                }
                Trip::Answered { lease, body: Err(_), .. } => {
                    self.pool.retire(&lease).await;
                    last_problem = Reason::Unreachable(Unreachable::ConnectionLost);
                    continue;
                }
                Trip::Answered { head, body: Ok(body), .. } => (head, body),
            };
            if parts.status == expected {
                return Ok((parts, body));
            }
            let reason =
                serde_json::from_slice::<request::ErrorBody>(&body).map(|error| error.reason).unwrap_or_default();
            if reason == "ExpiredProviderToken"
                && !renewed_token
                && let (Some(signer), Some(jwt)) = (&self.signer, bearer.as_deref())
                && signer.expired(jwt) == ExpiredTokenAction::Resend
            {
                renewed_token = true;
                continue;
            }
            return Err(ChannelError::Refused { status: parts.status.as_u16(), reason });
        }
        Err(ChannelError::Unreachable(last_problem))
    }
}
