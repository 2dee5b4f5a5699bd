//! A fake FCM HTTP v1 endpoint and the OAuth2 token endpoint in front of it,
//! over HTTPS (HTTP/1.1 and HTTP/2).

use crate::{TestServiceAccount, wait_until};
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeFcmConfig {
    /// Lifetime of the access tokens it issues (`expires_in`).
    pub access_token_lifetime: Duration,
}

impl Default for FakeFcmConfig {
    fn default() -> Self {
        Self { access_token_lifetime: Duration::from_secs(3600) }
    }
}

/// A failure to answer with, for one message to one token.
#[derive(Debug, Clone)]
pub enum FcmFailure {
    /// 404 `UNREGISTERED`.
    Unregistered,
    /// 400 `INVALID_ARGUMENT` naming `message.token`.
    InvalidToken,
    /// 403 `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// 429 `QUOTA_EXCEEDED`, with a `Retry-After` in seconds if given.
    QuotaExceeded(Option<u64>),
    /// 503 `UNAVAILABLE`, with a `Retry-After` in seconds if given.
    Unavailable(Option<u64>),
    /// 500 `INTERNAL`.
    Internal,
    /// 401 `THIRD_PARTY_AUTH_ERROR`.
    ThirdPartyAuthError,
}

/// One message the fake received, with what it answered.
#[derive(Debug, Clone)]
pub struct RecordedFcmMessage {
    /// The target token.
    pub token: String,
    /// The whole `message` object.
    pub message: Value,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub received_at: std::time::Instant,
}

struct State {
    account: TestServiceAccount,
    config: FakeFcmConfig,
    issued: Mutex<HashMap<String, SystemTime>>,
    token_fetches: AtomicU64,
    failures: Mutex<HashMap<String, VecDeque<FcmFailure>>>,
    messages: Mutex<Vec<RecordedFcmMessage>>,
    recorded: Notify,
    delivered: std::sync::atomic::AtomicUsize,
}

/// A running fake FCM. Stops when dropped.
pub struct FakeFcm {
    address: SocketAddr,
    state: Arc<State>,
    handle: axum_server::Handle<SocketAddr>,
    /// The service account whose tokens this fake accepts; its `token_uri` points here.
    pub account: TestServiceAccount,
}

impl std::fmt::Debug for FakeFcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFcm").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeFcm {
    /// Starts on a free loopback port with a certificate from `ca`, with a new
    /// service account for project `project_id`.
    pub async fn start(ca: &crate::TestCa, project_id: &str, config: FakeFcmConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake FCM");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let account = TestServiceAccount::generate(project_id, &format!("https://localhost:{}/token", address.port()));
        let state = Arc::new(State {
            account: account.clone(),
            config,
            issued: Mutex::default(),
            token_fetches: AtomicU64::new(0),
            failures: Mutex::default(),
            messages: Mutex::default(),
            recorded: Notify::new(),
            delivered: Default::default(),
        });
        let router = Router::new()
            .route("/token", post(issue_token))
            .route("/v1/projects/{project}/messages:send", post(send))
            .with_state(Arc::clone(&state));
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(ca.server_config(&[b"h2", b"http/1.1"], false));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).expect("serve the fake FCM").handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(router.into_make_service()).await;
        });
        handle.listening().await;
        Self { address, state, handle, account }
    }

    /// `https://localhost:<port>`, the FCM base URL for the client.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.address.port())
    }

    /// The next messages to `token` fail in turn with `failures`.
    pub fn fail_next(&self, token: &str, failures: impl IntoIterator<Item = FcmFailure>) {
        lock(&self.state.failures).entry(token.to_owned()).or_default().extend(failures);
    }

    /// Every access token issued so far stops working (as when Google revokes them).
    pub fn revoke_access_tokens(&self) {
        lock(&self.state.issued).clear();
    }

    /// How many access tokens were issued.
    pub fn token_fetches(&self) -> u64 {
        self.state.token_fetches.load(Ordering::Relaxed)
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<RecordedFcmMessage> {
        lock(&self.state.messages).clone()
    }

    /// Forgets the messages recorded so far (benchmarks reset between runs).
    pub fn clear_messages(&self) {
        lock(&self.state.messages).clear();
    }

    /// How many messages were answered 200 so far: a counter, cheap to poll
    /// (benchmarks), unlike [`FakeFcm::messages`].
    pub fn delivered_count(&self) -> usize {
        self.state.delivered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (at most `deadline`) until `count` messages were answered 200.
    pub async fn wait_for_delivered(&self, count: usize, deadline: Duration) {
        let what = format!("{count} delivered FCM messages");
        wait_until(&self.state.recorded, deadline, &what, || {
            lock(&self.state.messages).iter().filter(|message| message.status == 200).count() >= count
        })
        .await;
    }
}

#[derive(serde::Deserialize)]
struct TokenRequest {
    grant_type: String,
    assertion: String,
}

#[derive(serde::Deserialize)]
struct Assertion {
    iss: String,
    scope: String,
    iat: u64,
    exp: u64,
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error, "error_description": description }))).into_response()
}

async fn issue_token(Extract(state): Extract<Arc<State>>, Form(request): Form<TokenRequest>) -> Response {
    if request.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error("unsupported_grant_type", "expected the JWT bearer grant");
    }
    let Ok(key) = DecodingKey::from_rsa_pem(state.account.public_pem.as_bytes()) else {
        return oauth_error("invalid_client", "fake misconfigured");
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[state.account.token_uri.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Assertion>(&request.assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(error) => return oauth_error("invalid_grant", &format!("Invalid JWT: {error}")),
    };
    if claims.iss != state.account.client_email {
        return oauth_error("invalid_grant", "Invalid issuer");
    }
    if claims.scope.split(' ').all(|scope| scope != "https://www.googleapis.com/auth/firebase.messaging") {
        return oauth_error("invalid_scope", "the firebase.messaging scope is required");
    }
    if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return oauth_error("invalid_grant", "Invalid JWT: the token must expire within an hour of iat");
    }
    let number = state.token_fetches.fetch_add(1, Ordering::Relaxed) + 1;
    let token = format!("ya29.fake-access-token-{number}");
    let lifetime = state.config.access_token_lifetime;
    lock(&state.issued).insert(token.clone(), SystemTime::now() + lifetime);
    Json(json!({ "access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer" })).into_response()
}

fn fcm_error(status: StatusCode, canonical: &str, code: Option<&str>, message: &str, extra: Option<Value>) -> Response {
    let mut details = Vec::new();
    if let Some(code) = code {
        details.push(json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code }));
    }
    details.extend(extra);
    let body =
        json!({ "error": { "code": status.as_u16(), "message": message, "status": canonical, "details": details } });
    (status, Json(body)).into_response()
}

fn field_violation(field: &str, description: &str) -> Value {
    json!({ "@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{ "field": field, "description": description }] })
}

fn invalid_argument(field: &str, description: &str) -> Response {
    fcm_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        Some("INVALID_ARGUMENT"),
        description,
        Some(field_violation(field, description)),
    )
}

async fn send(
    Extract(state): Extract<Arc<State>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let authorized =
        bearer.is_some_and(|token| lock(&state.issued).get(token).is_some_and(|expiry| *expiry > SystemTime::now()));
    let received_at = std::time::Instant::now();
    let message = body.get("message").cloned().unwrap_or(Value::Null);
    let response = if !authorized {
        fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            None,
        )
    } else if project != state.account.project_id {
        fcm_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", None, "Permission denied on the project", None)
    } else {
        match check_message(&message) {
            Err((field, description)) => invalid_argument(&field, &description),
            Ok(token) => {
                let failure = lock(&state.failures).get_mut(&token).and_then(VecDeque::pop_front);
                failure.map_or_else(
                    || {
                        let id = lock(&state.messages).len() + 1;
                        Json(json!({ "name": format!("projects/{project}/messages/{id}") })).into_response()
                    },
                    fail,
                )
            }
        }
    };
    let token = message.get("token").and_then(Value::as_str).unwrap_or_default().to_owned();
    let status = response.status().as_u16();
    lock(&state.messages).push(RecordedFcmMessage { token, message, status, received_at });
    if status == 200 {
        state.delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    state.recorded.notify_waiters();
    response
}

fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

fn fail(failure: FcmFailure) -> Response {
    match failure {
        FcmFailure::Unregistered => {
            fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", Some("UNREGISTERED"), "Requested entity was not found.", None)
        }
        FcmFailure::InvalidToken => {
            invalid_argument("message.token", "The registration token is not a valid FCM registration token")
        }
        FcmFailure::SenderIdMismatch => {
            fcm_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), "SenderId mismatch", None)
        }
        FcmFailure::QuotaExceeded(after) => with_retry_after(
            fcm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                Some("QUOTA_EXCEEDED"),
                "Quota exceeded.",
                None,
            ),
            after,
        ),
        FcmFailure::Unavailable(after) => with_retry_after(
            fcm_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                Some("UNAVAILABLE"),
                "The service is currently unavailable.",
                None,
            ),
            after,
        ),
        FcmFailure::Internal => fcm_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            Some("INTERNAL"),
            "Internal error encountered.",
            None,
        ),
        FcmFailure::ThirdPartyAuthError => fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            Some("THIRD_PARTY_AUTH_ERROR"),
            "Auth error from APNS or Web Push Service",
            None,
        ),
    }
}

/// Checks a `message` as FCM does; answers its token when it is acceptable,
/// else the field at fault and why.
fn check_message(message: &Value) -> Result<String, (String, String)> {
    let Some(fields) = message.as_object() else {
        return Err(violation("message", "message is required"));
    };
    let targets = ["token", "topic", "condition"].iter().filter(|key| fields.contains_key(**key)).count();
    if targets != 1 {
        return Err(violation("message", "exactly one of token, topic or condition is required"));
    }
    let token = fields.get("token").and_then(Value::as_str).unwrap_or_default();
    if token.is_empty() {
        return Err(violation("message.token", "The registration token is not a valid FCM registration token"));
    }
    for (path, data) in
        [("message.data", fields.get("data")), ("message.android.data", message.pointer("/android/data"))]
    {
        let Some(data) = data else { continue };
        let Some(entries) = data.as_object() else {
            return Err(violation(path, "data must be a map of strings"));
        };
        for (key, value) in entries {
            if !value.is_string() {
                return Err(violation(format!("{path}[{key}]"), "Invalid value at data: a string is expected"));
            }
            if key == "from"
                || key == "message_type"
                || key.starts_with("google.")
                || key.starts_with("gcm.notification.")
            {
                return Err(violation(format!("{path}[{key}]"), "Invalid data key: reserved word"));
            }
        }
    }
    if let Some(ttl) = message.pointer("/android/ttl") {
        let Some(seconds) =
            ttl.as_str().and_then(|ttl| ttl.strip_suffix('s')).and_then(|seconds| seconds.parse::<f64>().ok())
        else {
            return Err(violation(
                "message.android.ttl",
                "Invalid value at message.android.ttl: a duration like \"3600s\" is expected",
            ));
        };
        // Firebase documents 0 to 2,419,200 seconds (28 days) for the TTL.
        if !(0.0..=2_419_200.0).contains(&seconds) {
            return Err(violation("message.android.ttl", "The ttl must be between 0 and 2419200 seconds (28 days)"));
        }
    }
    if let Some(priority) = message.pointer("/android/priority")
        && !matches!(priority.as_str(), Some("normal" | "high"))
    {
        return Err(violation("message.android.priority", "priority must be normal or high"));
    }
    let visible = json!([
        fields.get("notification"),
        fields.get("data"),
        message.pointer("/android/notification"),
        message.pointer("/android/data")
    ]);
    if visible.to_string().len() > 4096 {
        return Err(violation("message", "Message is too big"));
    }
    Ok(token.to_owned())
}

fn violation(field: impl Into<String>, description: impl Into<String>) -> (String, String) {
    (field.into(), description.into())
}
