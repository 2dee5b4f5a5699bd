//! A fake Web Push service (RFC 8030) over HTTPS (HTTP/2 and HTTP/1.1):
//! issues subscriptions whose private keys it keeps, checks every request as
//! a push service does (VAPID token and key, `TTL`, `Urgency`, `Topic`,
//! `aes128gcm`, size), decrypts what it accepts (RFC 8291) and records it.
//! Failures are programmable per subscription.

use crate::{Es256Key, wait_until};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::DecodePrivateKey as _;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// The largest request body push services accept.
const MAX_BODY_BYTES: usize = 4096;

/// A subscription the fake issued, with the private half a browser keeps.
#[derive(Clone)]
pub struct TestSubscription {
    /// The subscription's id, the last segment of its endpoint.
    pub id: String,
    /// The endpoint URL.
    pub endpoint: String,
    /// The browser's public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
    secret: p256::SecretKey,
    auth_bytes: [u8; 16],
}

impl std::fmt::Debug for TestSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSubscription").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl TestSubscription {
    /// A new subscription at `endpoint` with fresh keys.
    pub fn generate(id: &str, endpoint: &str) -> Self {
        let secret = p256::SecretKey::from_pkcs8_pem(&Es256Key::generate().private_pem).expect("a P-256 key");
        let mut auth_bytes = [0u8; 16];
        getrandom::fill(&mut auth_bytes).expect("randomness");
        Self {
            id: id.to_owned(),
            endpoint: endpoint.to_owned(),
            p256dh: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth_bytes),
            secret,
            auth_bytes,
        }
    }

    /// The browser's `PushSubscription.toJSON()`.
    pub fn json(&self) -> Value {
        json!({ "endpoint": self.endpoint, "expirationTime": null, "keys": { "p256dh": self.p256dh, "auth": self.auth } })
    }

    /// The same keys as an app's `pushKey` (private payloads): what an app
    /// keeps is this subscription's private half.
    pub fn push_key(&self) -> Value {
        json!({ "p256dh": self.p256dh, "auth": self.auth })
    }

    /// The browser's private key (the 32-byte scalar), base64url.
    pub fn private_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.to_bytes())
    }

    /// Decrypts an `aes128gcm` body sent to this subscription.
    pub fn decrypt(&self, body: &[u8]) -> Option<Vec<u8>> {
        web_push_native::decrypt(body.to_vec(), &self.secret, &web_push_native::Auth::from(self.auth_bytes)).ok()
    }
}

/// One push the fake received, with what it answered.
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    /// The subscription's id.
    pub subscription: String,
    /// The status answered.
    pub status: u16,
    /// Why it was refused, when it was.
    pub refusal: Option<String>,
    /// `TTL`.
    pub ttl: Option<u64>,
    /// `Urgency`.
    pub urgency: Option<String>,
    /// `Topic`.
    pub topic: Option<String>,
    /// The decrypted payload, parsed as JSON (`Null` when refused before).
    pub payload: Value,
    /// The body as received (encrypted).
    pub body: Bytes,
    /// The HTTP version it came over.
    pub version: Version,
    /// When it arrived.
    pub received_at: std::time::Instant,
}

/// A failure to answer with, for one push to one subscription.
#[derive(Debug, Clone)]
pub struct PushServiceFailure {
    /// The status.
    pub status: u16,
    /// A `Retry-After` value, as sent (seconds or an HTTP-date).
    pub retry_after: Option<String>,
    /// The answer's body, if any.
    pub body: Option<String>,
}

impl PushServiceFailure {
    /// `status` without `Retry-After`.
    pub fn status(status: u16) -> Self {
        Self { status, retry_after: None, body: None }
    }

    /// `status` with `Retry-After: retry_after`.
    pub fn retry_after(status: u16, retry_after: impl Into<String>) -> Self {
        Self { status, retry_after: Some(retry_after.into()), body: None }
    }

    /// `status` with `body` as the answer's text.
    pub fn with_body(status: u16, body: impl Into<String>) -> Self {
        Self { status, retry_after: None, body: Some(body.into()) }
    }
}

#[derive(Default)]
struct State {
    origin: String,
    subscriptions: Mutex<HashMap<String, TestSubscription>>,
    expired: Mutex<HashSet<String>>,
    failures: Mutex<HashMap<String, VecDeque<PushServiceFailure>>>,
    received: Mutex<Vec<ReceivedPush>>,
    recorded: Notify,
}

/// A running fake push service. Stops when dropped.
pub struct FakePushService {
    address: SocketAddr,
    state: Arc<State>,
    handle: axum_server::Handle<SocketAddr>,
}

impl std::fmt::Debug for FakePushService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePushService").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for FakePushService {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakePushService {
    /// Starts on a free loopback port with a certificate from `ca` for `localhost`.
    pub async fn start(ca: &crate::TestCa) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake push service");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(State { origin: format!("https://localhost:{}", address.port()), ..State::default() });
        let router = Router::new().route("/push/{id}", post(receive)).with_state(Arc::clone(&state));
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(ca.server_config(&[b"h2", b"http/1.1"], false));
        let handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(listener, tls).expect("serve the fake push service").handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(router.into_make_service()).await;
        });
        handle.listening().await;
        Self { address, state, handle }
    }

    /// `localhost`, the host to allow in the app's `webpush.allowed_hosts`.
    pub fn host(&self) -> &'static str {
        "localhost"
    }

    /// A new subscription on this service.
    pub fn subscribe(&self) -> TestSubscription {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).expect("randomness");
        let id = URL_SAFE_NO_PAD.encode(id);
        let subscription = TestSubscription::generate(&id, &format!("{}/push/{id}", self.state.origin));
        lock(&self.state.subscriptions).insert(id, subscription.clone());
        subscription
    }

    /// From now on, pushes to `subscription` are answered 410 Gone (the user unsubscribed).
    pub fn expire(&self, subscription: &TestSubscription) {
        lock(&self.state.expired).insert(subscription.id.clone());
    }

    /// The next pushes to `subscription` fail in turn with `failures`.
    pub fn fail_next(&self, subscription: &TestSubscription, failures: impl IntoIterator<Item = PushServiceFailure>) {
        lock(&self.state.failures).entry(subscription.id.clone()).or_default().extend(failures);
    }

    /// Every push received so far.
    pub fn received(&self) -> Vec<ReceivedPush> {
        lock(&self.state.received).clone()
    }

    /// The pushes accepted (201) for `subscription`, in order.
    pub fn delivered_to(&self, subscription: &TestSubscription) -> Vec<ReceivedPush> {
        lock(&self.state.received)
            .iter()
            .filter(|push| push.subscription == subscription.id && push.status == 201)
            .cloned()
            .collect()
    }

    /// Waits (at most `deadline`) until `count` pushes were received, whatever their answer.
    pub async fn wait_for_received(&self, count: usize, deadline: Duration) {
        wait_until(&self.state.recorded, deadline, &format!("{count} Web Push requests"), || {
            lock(&self.state.received).len() >= count
        })
        .await;
    }
}

#[derive(serde::Deserialize)]
struct VapidClaims {
    aud: String,
    exp: u64,
    sub: String,
}

/// Checks the `Authorization: vapid t=…, k=…` header (RFC 8292 §3).
fn check_vapid(state: &State, headers: &HeaderMap) -> Result<(), String> {
    let value = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let rest = value.strip_prefix("vapid ").ok_or("the Authorization scheme must be vapid")?;
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => token = Some(value),
            Some(("k", value)) => key = Some(value),
            _ => return Err(format!("unknown vapid parameter {part:?}")),
        }
    }
    let (token, key) = token.zip(key).ok_or("vapid needs t and k")?;
    let point = URL_SAFE_NO_PAD.decode(key).map_err(|_| "k is not base64url")?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k must be an uncompressed P-256 point".into());
    }
    let decoding =
        DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(&point[1..33]), &URL_SAFE_NO_PAD.encode(&point[33..]))
            .map_err(|error| format!("k: {error}"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[state.origin.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<VapidClaims>(token, &decoding, &validation)
        .map_err(|error| format!("the VAPID token is refused: {error}"))?
        .claims;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    if claims.exp > now + 24 * 3600 {
        return Err("exp is more than 24 hours ahead".into());
    }
    if claims.aud != state.origin {
        return Err("aud must be the push service's origin".into());
    }
    if !(claims.sub.starts_with("mailto:") || claims.sub.starts_with("https:")) {
        return Err("sub must be a mailto: or https: contact".into());
    }
    Ok(())
}

/// Checks the RFC 8030 headers; answers the TTL.
fn check_headers(headers: &HeaderMap) -> Result<u64, String> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let ttl = header("ttl").and_then(|ttl| ttl.parse::<u64>().ok()).ok_or("TTL is required (seconds)")?;
    if header("content-encoding") != Some("aes128gcm") {
        return Err("Content-Encoding must be aes128gcm".into());
    }
    if let Some(urgency) = header("urgency")
        && !["very-low", "low", "normal", "high"].contains(&urgency)
    {
        return Err(format!("Urgency {urgency:?} is not one of very-low, low, normal, high"));
    }
    if let Some(topic) = header("topic")
        && (topic.len() > 32 || !topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(format!("Topic {topic:?} must be at most 32 base64url characters"));
    }
    Ok(ttl)
}

async fn receive(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let mut push = ReceivedPush {
        subscription: id.clone(),
        status: 201,
        refusal: None,
        ttl: None,
        urgency: header("urgency"),
        topic: header("topic"),
        payload: Value::Null,
        body: body.clone(),
        version,
        received_at: std::time::Instant::now(),
    };
    let subscription = lock(&state.subscriptions).get(&id).cloned();
    let failure = lock(&state.failures).get_mut(&id).and_then(VecDeque::pop_front);
    let answer: Result<(), (u16, String)> = (|| {
        let subscription = subscription.ok_or((404, "no such subscription".to_owned()))?;
        check_vapid(&state, &headers).map_err(|why| (401, why))?;
        push.ttl = Some(check_headers(&headers).map_err(|why| (400, why))?);
        if body.len() > MAX_BODY_BYTES {
            return Err((413, format!("{} bytes is more than {MAX_BODY_BYTES}", body.len())));
        }
        if lock(&state.expired).contains(&id) {
            return Err((410, "the subscription expired".to_owned()));
        }
        let plaintext = subscription.decrypt(&body).ok_or((400, "the body does not decrypt".to_owned()))?;
        push.payload = serde_json::from_slice(&plaintext)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&plaintext).into()));
        Ok(())
    })();
    let response = match (answer, failure) {
        (Err((status, why)), _) => {
            push.refusal = Some(why.clone());
            (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), why).into_response()
        }
        (Ok(()), Some(failure)) => {
            let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = (status, failure.body.unwrap_or_default()).into_response();
            if let Some(after) = failure.retry_after.and_then(|after| after.parse().ok()) {
                response.headers_mut().insert("retry-after", after);
            }
            response
        }
        (Ok(()), None) => {
            let mut response = StatusCode::CREATED.into_response();
            if let Ok(location) = format!("{}/message/{}", state.origin, lock(&state.received).len() + 1).parse() {
                response.headers_mut().insert("location", location);
            }
            response
        }
    };
    push.status = response.status().as_u16();
    lock(&state.received).push(push);
    state.recorded.notify_waiters();
    response
}
