//! The Web Push client (RFC 8030), for browsers and UnifiedPush distributors.
//!
//! - Encryption: RFC 8291 `aes128gcm` with `web-push-native`'s `encrypt`
//!   (pure Rust on RustCrypto's P-256, HKDF and AES-GCM; a fresh key pair and
//!   salt per message, one record). The `web-push` crate was the other
//!   candidate: it needs OpenSSL and an old hyper.
//! - VAPID (RFC 8292) is signed here with jsonwebtoken (the ES256 signer the
//!   APNs tokens use), not with `web-push-native`'s builder: that builder
//!   signs a new token for every message, ties the token's lifetime to the
//!   push's `TTL`, and drops a non-default port from the audience (the origin
//!   must keep it). Tokens are cached per push-service origin.
//! - One `reqwest` client per app: it keeps connections per origin and speaks
//!   HTTP/2 where the push service offers it (ALPN), HTTP/1.1 otherwise.

use crate::{Clock, Outcome, TlsError, client_tls_config, retry_after_at};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pushgate_domain::{MAX_WEBPUSH_BYTES, Reason, Unreachable, WebPushMessage, WebPushSubscription};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The code of an answer the push service refused as a bad request (the
/// status and its words follow it).
const BAD_REQUEST: &str = "BadRequest";

/// How long a VAPID token is valid (RFC 8292 allows at most 24 hours).
const VAPID_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A cached VAPID token is replaced once it has less than this left.
const VAPID_RENEW_BEFORE: Duration = Duration::from_secs(3600);
/// Origins whose token is cached; past this the cache starts over (a bound
/// for apps whose `allowed_hosts` match many hosts).
const VAPID_CACHE_ORIGINS: usize = 1024;

/// Settings of one app's Web Push client.
#[derive(Clone)]
pub struct WebPushClientConfig {
    /// The app's VAPID private key: P-256, PEM (SEC1 or PKCS#8).
    pub vapid_key_pem: Vec<u8>,
    /// The VAPID `sub`: a `mailto:` or `https:` contact.
    pub subject: String,
    /// An extra CA (PEM) trusted for push services (a test push service).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for WebPushClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a credential: never printed.
        f.debug_struct("WebPushClientConfig").field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl WebPushClientConfig {
    /// Defaults: 30 s per answer, no extra CA.
    pub fn new(vapid_key_pem: Vec<u8>, subject: impl Into<String>) -> Self {
        Self { vapid_key_pem, subject: subject.into(), extra_ca_pem: None, request_timeout: Duration::from_secs(30) }
    }
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebPushClientError {
    /// TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("the HTTP client could not be built: {0}")]
    Http(String),
    /// The VAPID key is unusable.
    #[error("the VAPID key is not a P-256 private key in PEM (SEC1 or PKCS#8)")]
    BadKey,
}

/// Sends Web Push messages for one app.
#[derive(Debug)]
pub struct WebPushClient {
    http: reqwest::Client,
    vapid: VapidSigner,
    clock: Arc<dyn Clock>,
}

impl WebPushClient {
    /// A client; nothing is connected until the first send.
    pub fn new(config: WebPushClientConfig, clock: Arc<dyn Clock>) -> Result<Self, WebPushClientError> {
        let tls = client_tls_config(config.extra_ca_pem.as_deref(), &[b"h2", b"http/1.1"], None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.request_timeout)
            // A push service answers; it never sends us elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| WebPushClientError::Http(error.to_string()))?;
        let vapid = VapidSigner::new(&config.vapid_key_pem, config.subject, Arc::clone(&clock))?;
        Ok(Self { http, vapid, clock })
    }

    /// The VAPID public key: the uncompressed point, base64url (`applicationServerKey`).
    pub fn public_key(&self) -> &str {
        &self.vapid.public_key
    }

    /// Encrypts `message` for `subscription` and posts it to its endpoint.
    /// Never fails: every problem is an [`Outcome`].
    pub async fn send(&self, subscription: &WebPushSubscription, message: &WebPushMessage) -> Outcome {
        if message.payload.len() > MAX_WEBPUSH_BYTES {
            return Outcome::rejected("PayloadTooLarge");
        }
        let Some(body) = encrypt(subscription, &message.payload) else {
            return Outcome::invalid_token("BadSubscriptionKeys", None);
        };
        let authorization = match self.vapid.authorization(&subscription.endpoint) {
            Ok(authorization) => authorization,
            Err(words) => return Outcome::AppRejected { reason: Reason::Credentials(words) },
        };
        let mut request = self
            .http
            .post(subscription.endpoint.clone())
            .header("TTL", message.ttl_seconds)
            .header("Urgency", message.urgency.as_str())
            .header(http::header::CONTENT_ENCODING, "aes128gcm")
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(http::header::AUTHORIZATION, authorization)
            .body(body);
        if let Some(topic) = &message.topic {
            request = request.header("Topic", topic);
        }
        let sent_at = self.clock.now();
        let sent_at_ms = sent_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let why = if error.is_timeout() { Unreachable::Timeout } else { Unreachable::ConnectionFailed };
                tracing::debug!(error = %error, "the push service did not answer");
                return Outcome::unreachable(why);
            }
        };
        let status = response.status();
        let after = retry_after_at(response.headers(), self.clock.now());
        // Read to its end (an HTTP/1.1 connection is reused only then); a
        // refusal's text, cut short, says why to whoever reads the status.
        let answer = response.bytes().await.unwrap_or_default();
        match map_answer(status, after, sent_at_ms) {
            Outcome::Rejected { reason: Reason::Provider { code, detail: Some(status) } }
                if code == BAD_REQUEST && !answer.is_empty() =>
            {
                let text: String =
                    String::from_utf8_lossy(&answer).chars().filter(|c| !c.is_control()).take(200).collect();
                Outcome::Rejected { reason: Reason::provider_with(code, format!("{status} {text}")) }
            }
            outcome => outcome,
        }
    }
}

/// The `aes128gcm` body for `subscription`; `None` when its keys are unusable.
fn encrypt(subscription: &WebPushSubscription, payload: &[u8]) -> Option<Vec<u8>> {
    seal(payload, &subscription.p256dh, &subscription.auth)
}

/// `plaintext` sealed with RFC 8291 (`aes128gcm`, one record) to the
/// receiver's P-256 public key and auth secret (base64url): Web Push's
/// encryption, and a private payload's for an app's `pushKey`. `None` when
/// the keys are unusable.
pub fn seal(plaintext: &[u8], p256dh: &str, auth: &str) -> Option<Vec<u8>> {
    let p256dh = URL_SAFE_NO_PAD.decode(p256dh).ok()?;
    let auth: [u8; 16] = URL_SAFE_NO_PAD.decode(auth).ok()?.try_into().ok()?;
    crate::ece::seal(plaintext, &p256dh, &auth)
}

/// Maps a push service's answer (RFC 8030 §5, and what Google, Mozilla and
/// Apple document): 2xx delivered; 404/410 the subscription is gone; 413 the
/// payload; 429 and 5xx passing; 401/403 the VAPID credentials (pause the
/// app's Web Push, keep every subscription); any other 4xx the request.
/// A gone subscription is known gone from `sent_at_ms`, the time of the send:
/// one registered again after it is kept (the guard APNs' 410 timestamp gives).
pub fn map_answer(status: StatusCode, retry_after: Option<Duration>, sent_at_ms: i64) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Delivered,
        404 => Outcome::invalid_token("NotFound", Some(sent_at_ms)),
        410 => Outcome::invalid_token("Gone", Some(sent_at_ms)),
        413 => Outcome::rejected("PayloadTooLarge"),
        429 => Outcome::retry("TooManyRequests", retry_after),
        401 => Outcome::app_rejected("Unauthorized"),
        403 => Outcome::app_rejected("Forbidden"),
        500..=599 => {
            let reason = match status {
                StatusCode::INTERNAL_SERVER_ERROR => "InternalServerError".to_owned(),
                StatusCode::BAD_GATEWAY => "BadGateway".to_owned(),
                StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable".to_owned(),
                StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout".to_owned(),
                other => format!("ServerError: {}", other.as_u16()),
            };
            Outcome::retry(reason, retry_after)
        }
        other => Outcome::Rejected { reason: Reason::provider_with(BAD_REQUEST, other.to_string()) },
    }
}

#[derive(Debug, Clone)]
struct IssuedToken {
    header: http::HeaderValue,
    expires_at: u64,
}

/// Signs VAPID tokens for one key and keeps one per push-service origin
/// until it is close to its expiry.
struct VapidSigner {
    key: EncodingKey,
    /// `k`: the public key, base64url.
    public_key: String,
    subject: String,
    clock: Arc<dyn Clock>,
    issued: Mutex<HashMap<String, IssuedToken>>,
}

impl std::fmt::Debug for VapidSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the tokens are credentials: neither is printed.
        f.debug_struct("VapidSigner").field("public_key", &self.public_key).finish_non_exhaustive()
    }
}

impl VapidSigner {
    fn new(pem: &[u8], subject: String, clock: Arc<dyn Clock>) -> Result<Self, WebPushClientError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
        let pem = std::str::from_utf8(pem).map_err(|_| WebPushClientError::BadKey)?;
        let secret = p256::SecretKey::from_sec1_pem(pem)
            .or_else(|_| p256::SecretKey::from_pkcs8_pem(pem))
            .map_err(|_| WebPushClientError::BadKey)?;
        // jsonwebtoken signs ES256 from PKCS#8 only: a SEC1 key is converted.
        let der = secret.to_pkcs8_der().map_err(|_| WebPushClientError::BadKey)?;
        let key = EncodingKey::from_ec_der(der.as_bytes());
        let public_key = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(Self { key, public_key, subject, clock, issued: Mutex::default() })
    }

    /// The `Authorization` header for `endpoint`: `vapid t=<JWT>, k=<key>`,
    /// the JWT's audience the endpoint's origin (with its port, if any).
    fn authorization(&self, endpoint: &url::Url) -> Result<http::HeaderValue, String> {
        let origin = endpoint.origin().ascii_serialization();
        let now = self.clock.unix_seconds();
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = issued.get(&origin)
            && token.expires_at > now + VAPID_RENEW_BEFORE.as_secs()
            && token.expires_at <= now + VAPID_LIFETIME.as_secs()
        {
            return Ok(token.header.clone());
        }
        let expires_at = now + VAPID_LIFETIME.as_secs();
        let claims = serde_json::json!({ "aud": origin, "exp": expires_at, "sub": self.subject });
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)
            .map_err(|error| format!("VapidSigning: {error}"))?;
        let mut header = http::HeaderValue::try_from(format!("vapid t={jwt}, k={}", self.public_key))
            .map_err(|_| "VapidSigning: not a header value".to_owned())?;
        header.set_sensitive(true);
        if issued.len() >= VAPID_CACHE_ORIGINS {
            issued.clear();
        }
        issued.insert(origin, IssuedToken { header: header.clone(), expires_at });
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemClock;

    /// A private payload's size is known before sealing (the domain sizes
    /// the clear push by it): one `aes128gcm` record adds exactly
    /// `SEAL_OVERHEAD` bytes, and the receiver's key opens it.
    #[test]
    fn sealing_adds_the_fixed_overhead_and_the_keys_private_half_opens_it() {
        let device = pushgate_testkit::TestSubscription::generate("key", "https://unused.example");
        for length in [0, 1, 2_000, 3_900] {
            let plaintext = vec![b'x'; length];
            let sealed = seal(&plaintext, &device.p256dh, &device.auth).expect("the keys are usable");
            assert_eq!(sealed.len(), length + pushgate_domain::SEAL_OVERHEAD);
            assert_eq!(device.decrypt(&sealed), Some(plaintext));
        }
        assert_eq!(seal(b"x", "not-a-key", &device.auth), None);
    }

    #[test]
    fn answers_map_onto_outcomes() {
        let after = Some(Duration::from_secs(7));
        for (status, outcome) in [
            (201, Outcome::Delivered),
            (202, Outcome::Delivered),
            (404, Outcome::invalid_token("NotFound", Some(5))),
            (410, Outcome::invalid_token("Gone", Some(5))),
            (413, Outcome::rejected("PayloadTooLarge")),
            (429, Outcome::retry("TooManyRequests", after)),
            (503, Outcome::retry("ServiceUnavailable", after)),
            (500, Outcome::retry("InternalServerError", after)),
            (507, Outcome::retry("ServerError: 507", after)),
            (401, Outcome::app_rejected("Unauthorized")),
            (403, Outcome::app_rejected("Forbidden")),
            (400, Outcome::Rejected { reason: Reason::provider_with("BadRequest", "400") }),
        ] {
            assert_eq!(map_answer(StatusCode::from_u16(status).expect("a status"), after, 5), outcome, "{status}");
        }
    }

    fn signer() -> VapidSigner {
        use p256::pkcs8::DecodePrivateKey as _;
        // A SEC1 key (`EC PRIVATE KEY`), the form jsonwebtoken cannot sign with by itself.
        let pkcs8 = pushgate_testkit::Es256Key::generate().private_pem;
        let sec1 =
            p256::SecretKey::from_pkcs8_pem(&pkcs8).expect("a key").to_sec1_pem(Default::default()).expect("SEC1");
        VapidSigner::new(sec1.as_bytes(), "mailto:ops@example.com".into(), Arc::new(SystemClock)).expect("a SEC1 key")
    }

    #[test]
    fn a_vapid_token_names_the_origin_with_its_port_and_is_reused_per_origin() {
        let signer = signer();
        let endpoint = |url: &str| url::Url::parse(url).expect("a URL");
        let local = signer.authorization(&endpoint("http://localhost:8090/notify/abc")).expect("signed");
        let local = local.to_str().expect("ASCII").to_owned();
        let (token, key) = local.strip_prefix("vapid t=").and_then(|rest| rest.split_once(", k=")).expect("t and k");
        assert_eq!(key, signer.public_key);
        let claims = token.split('.').nth(1).and_then(|claims| URL_SAFE_NO_PAD.decode(claims).ok()).expect("claims");
        let claims: serde_json::Value = serde_json::from_slice(&claims).expect("JSON claims");
        assert_eq!(claims["aud"], "http://localhost:8090");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let lifetime = claims["exp"].as_u64().expect("exp") - SystemClock.unix_seconds();
        assert!((11 * 3600..=12 * 3600).contains(&lifetime), "{lifetime}");
        assert_eq!(
            signer.authorization(&endpoint("http://localhost:8090/notify/other")).expect("signed"),
            local.as_str()
        );
        assert_ne!(
            signer.authorization(&endpoint("https://fcm.googleapis.com/fcm/send/x")).expect("signed"),
            local.as_str()
        );
    }
}
