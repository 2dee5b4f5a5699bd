//! A fake APNs: HTTP/2 over TLS on a raw `h2` server, so the test can shape
//! the connection itself (stream limit, GOAWAY, abrupt loss).
//!
//! Limitation: h2's server cannot send a new `SETTINGS_MAX_CONCURRENT_STREAMS`
//! mid-connection, so the fake's stream limit is fixed per connection (set
//! with [`FakeApns::set_max_concurrent_streams`] for the connections that
//! follow). It therefore does not model APNs' one-stream-until-first-success
//! start either.

use crate::wait_until;
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeApnsConfig {
    /// The bundle id it accepts as `apns-topic` (and its `.voip` form for VoIP).
    pub topic: String,
    /// Token auth: the key id, the team id and the public key (SPKI PEM) that
    /// provider tokens must verify against. `None`: certificate auth, the TLS
    /// client must present a certificate the test CA signed.
    pub token_auth: Option<(String, String, String)>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` of new connections.
    pub max_concurrent_streams: u32,
}

impl FakeApnsConfig {
    /// Token authentication with `key` as the `.p8` of key id `ABC123DEFG`,
    /// team `DEF123GHIJ`, topic `io.imkit.app` (what [`crate::fake_provider_tables`]
    /// configures), 100 concurrent streams.
    pub fn token(key: &crate::Es256Key) -> Self {
        Self {
            topic: "io.imkit.app".into(),
            token_auth: Some(("ABC123DEFG".into(), "DEF123GHIJ".into(), key.public_pem.clone())),
            max_concurrent_streams: 100,
        }
    }
}

impl RecordedApnsRequest {
    /// The key id (`kid`) of the provider token the request carried, if any.
    pub fn key_id(&self) -> Option<String> {
        use base64::Engine as _;
        let token = bearer(self.headers.get("authorization")?)?;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
        let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
        header["kid"].as_str().map(str::to_owned)
    }
}

/// A failure to answer with instead of the normal answer, for one request to one token.
#[derive(Debug, Clone)]
pub enum ApnsFailure {
    /// Answer this status and reason.
    Status(u16, &'static str),
    /// 410 `Unregistered` with this timestamp (Unix ms).
    Unregistered(i64),
    /// 429 `TooManyRequests`, with a `Retry-After` in seconds if given.
    TooManyRequests(Option<u64>),
    /// Send GOAWAY on the connection and refuse this stream (`REFUSED_STREAM`).
    GoAway,
    /// Drop the TCP connection while the request is in flight.
    DropConnection,
    /// Wait this long, then answer normally.
    Delay(Duration),
}

/// One request the fake received, with what it answered.
#[derive(Debug, Clone)]
pub struct RecordedApnsRequest {
    /// The device token from the path.
    pub device_token: String,
    /// Every header, lower-case name to value.
    pub headers: HashMap<String, String>,
    /// The payload, parsed.
    pub payload: serde_json::Value,
    /// The size of the payload in bytes.
    pub payload_bytes: usize,
    /// The provider token's `iat`, when one was sent and valid.
    pub jwt_iat: Option<u64>,
    /// The provider token itself.
    pub jwt: Option<String>,
    /// Which connection carried it (1, 2, …).
    pub connection: u64,
    /// When its body had arrived.
    pub received_at: std::time::Instant,
    /// The status the fake answered.
    pub status: u16,
    /// The reason the fake answered, if not 200.
    pub reason: Option<String>,
}

/// A channel management or broadcast request the fake received, with its answer.
#[derive(Debug, Clone)]
pub struct RecordedChannelRequest {
    /// `POST`, `GET`, `DELETE`.
    pub method: String,
    /// The path (`/1/apps/<bundle>/channels`, `/4/broadcasts/apps/<bundle>`).
    pub path: String,
    /// Every header, lower-case name to value.
    pub headers: HashMap<String, String>,
    /// The body, parsed (`Null` without one).
    pub payload: serde_json::Value,
    /// The status the fake answered.
    pub status: u16,
    /// The reason the fake answered, if an error.
    pub reason: Option<String>,
}

struct State {
    config: Mutex<FakeApnsConfig>,
    failures: Mutex<HashMap<String, VecDeque<ApnsFailure>>>,
    requests: Mutex<Vec<RecordedApnsRequest>>,
    recorded: Notify,
    reject_tokens_issued_before: AtomicU64,
    /// Signing keys accepted beside the configured one (key id, SPKI PEM): a rotation.
    more_token_keys: Mutex<Vec<(String, String)>>,
    /// The last accepted provider token of each connection.
    last_token: Mutex<HashMap<u64, (String, u64)>>,
    connections: AtomicU64,
    peak_streams: AtomicUsize,
    answer_delay_ms: AtomicU64,
    delivered: AtomicUsize,
    /// Requests received, answered or not yet.
    received: AtomicUsize,
    /// The broadcast channels made through the management API: id → storage policy.
    channels: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Channel management and broadcast requests, with their answers.
    channel_requests: Mutex<Vec<RecordedChannelRequest>>,
    channels_made: AtomicU64,
}

/// A running fake APNs. Stops when dropped.
pub struct FakeApns {
    address: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeApns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApns").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for FakeApns {
    fn drop(&mut self) {
        self.server.abort();
    }
}

enum Control {
    GoAway,
    Drop,
}

impl FakeApns {
    /// Starts on a free loopback port with a certificate from `ca`.
    pub async fn start(ca: &crate::TestCa, config: FakeApnsConfig) -> Self {
        let tls = ca.server_config(&[b"h2"], config.token_auth.is_none());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake APNs");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            config: Mutex::new(config),
            failures: Mutex::default(),
            requests: Mutex::default(),
            recorded: Notify::new(),
            reject_tokens_issued_before: AtomicU64::new(0),
            more_token_keys: Mutex::default(),
            last_token: Mutex::default(),
            connections: AtomicU64::new(0),
            peak_streams: AtomicUsize::new(0),
            answer_delay_ms: AtomicU64::new(0),
            received: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
            channels: Mutex::default(),
            channel_requests: Mutex::default(),
            channels_made: AtomicU64::new(0),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let accepting = Arc::clone(&state);
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = Arc::clone(&accepting);
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_connection(tls, state).await;
                    }
                });
            }
        });
        Self { address, state, server }
    }

    /// `https://localhost:<port>`, for the client's endpoint.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.address.port())
    }

    /// The next requests to `device_token` fail in turn with `failures`.
    pub fn fail_next(&self, device_token: &str, failures: impl IntoIterator<Item = ApnsFailure>) {
        lock(&self.state.failures).entry(device_token.to_owned()).or_default().extend(failures);
    }

    /// Also accepts provider tokens signed by this key (a key rotation: Apple
    /// accepts a new key while the old one is still valid).
    pub fn accept_token_key(&self, key_id: &str, public_pem: &str) {
        lock(&self.state.more_token_keys).push((key_id.to_owned(), public_pem.to_owned()));
    }

    /// Provider tokens issued before `iat` (Unix seconds) are answered `ExpiredProviderToken`.
    pub fn reject_tokens_issued_before(&self, iat: u64) {
        self.state.reject_tokens_issued_before.store(iat, Ordering::Relaxed);
    }

    /// Every answer waits this long first (a slow APNs, so requests are in flight).
    pub fn set_answer_delay(&self, delay: Duration) {
        self.state.answer_delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// New connections get this `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub fn set_max_concurrent_streams(&self, streams: u32) {
        lock(&self.state.config).max_concurrent_streams = streams;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedApnsRequest> {
        lock(&self.state.requests).clone()
    }

    /// Forgets the requests recorded so far (benchmarks reset between runs).
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Requests answered 200 so far.
    pub fn delivered(&self) -> Vec<RecordedApnsRequest> {
        lock(&self.state.requests).iter().filter(|request| request.status == 200).cloned().collect()
    }

    /// How many requests were answered 200 so far: a counter, cheap to poll
    /// (benchmarks), unlike [`FakeApns::delivered`].
    pub fn delivered_count(&self) -> usize {
        self.state.delivered.load(Ordering::Relaxed)
    }

    /// Requests received so far, including those not answered yet (see
    /// [`FakeApns::set_answer_delay`]); [`FakeApns::requests`] has the answered ones.
    pub fn received_count(&self) -> usize {
        self.state.received.load(Ordering::Relaxed)
    }

    /// The channel management and broadcast requests so far.
    pub fn channel_requests(&self) -> Vec<RecordedChannelRequest> {
        lock(&self.state.channel_requests).clone()
    }

    /// The broadcasts APNs accepted so far.
    pub fn broadcasts(&self) -> Vec<RecordedChannelRequest> {
        self.channel_requests()
            .into_iter()
            .filter(|request| request.path.starts_with("/4/") && request.status == 200)
            .collect()
    }

    /// The ids of the channels that exist now.
    pub fn channel_ids(&self) -> Vec<String> {
        lock(&self.state.channels).keys().cloned().collect()
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// The most streams ever open at once on one connection.
    pub fn peak_concurrent_streams(&self) -> usize {
        self.state.peak_streams.load(Ordering::Relaxed)
    }

    /// Waits (at most `deadline`) until `count` requests were answered 200.
    pub async fn wait_for_delivered(&self, count: usize, deadline: Duration) {
        let what = format!("{count} delivered APNs requests");
        wait_until(&self.state.recorded, deadline, &what, || {
            lock(&self.state.requests).iter().filter(|request| request.status == 200).count() >= count
        })
        .await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn serve_connection(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, state: Arc<State>) {
    let max_streams = lock(&state.config).max_concurrent_streams;
    let Ok(mut connection) =
        h2::server::Builder::new().max_concurrent_streams(max_streams).handshake::<_, Bytes>(tls).await
    else {
        return;
    };
    let connection_id = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let open_streams = Arc::new(AtomicUsize::new(0));
    let (control, mut controls) = mpsc::unbounded_channel();
    loop {
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    let open = open_streams.fetch_add(1, Ordering::SeqCst) + 1;
                    state.peak_streams.fetch_max(open, Ordering::SeqCst);
                    let state = Arc::clone(&state);
                    let control = control.clone();
                    let open_streams = Arc::clone(&open_streams);
                    tokio::spawn(async move {
                        handle_stream(request, respond, &state, &control, connection_id).await;
                        open_streams.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Some(Err(_)) | None => return,
            },
            Some(command) = controls.recv() => match command {
                Control::GoAway => connection.graceful_shutdown(),
                // Returning drops the connection and its socket mid-flight.
                Control::Drop => return,
            },
        }
    }
}

async fn handle_stream(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    state: &State,
    control: &mpsc::UnboundedSender<Control>,
    connection: u64,
) {
    let (parts, mut body) = request.into_parts();
    let mut payload = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        payload.extend_from_slice(&chunk);
    }
    let received_at = std::time::Instant::now();
    state.received.fetch_add(1, Ordering::Relaxed);
    let delay = state.answer_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let device_token = parts.uri.path().strip_prefix("/3/device/").unwrap_or_default().to_owned();
    let failure = lock(&state.failures).get_mut(&device_token).and_then(VecDeque::pop_front);
    match failure {
        Some(ApnsFailure::GoAway) => {
            let _ = control.send(Control::GoAway);
            respond.send_reset(Reason::REFUSED_STREAM);
            return;
        }
        Some(ApnsFailure::DropConnection) => {
            let _ = control.send(Control::Drop);
            return;
        }
        Some(ApnsFailure::Delay(delay)) => tokio::time::sleep(delay).await,
        _ => {}
    }
    let mut headers = HashMap::new();
    let mut duplicate_header = false;
    for name in parts.headers.keys() {
        let values: Vec<_> = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        duplicate_header |= values.len() > 1;
        headers.insert(name.as_str().to_owned(), values.join(","));
    }
    let apns_id = headers.get("apns-id").cloned().unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".to_owned());
    let mut jwt_iat = None;
    let jwt = headers.get("authorization").and_then(|value| bearer(value)).map(str::to_owned);
    let path = parts.uri.path();
    if path.starts_with("/1/apps/") || path.starts_with("/4/broadcasts/apps/") {
        let request = RecordedChannelRequest {
            method: parts.method.to_string(),
            path: path.to_owned(),
            headers,
            payload: serde_json::from_slice(&payload).unwrap_or(serde_json::Value::Null),
            status: 0,
            reason: None,
        };
        let failure = lock(&state.failures).get_mut("channels").and_then(VecDeque::pop_front);
        serve_channel_request(request, failure, jwt.as_deref(), respond, state, connection);
        return;
    }
    let verdict = (|| {
        if parts.method != http::Method::POST {
            return Err((405, "MethodNotAllowed", None));
        }
        if !parts.uri.path().starts_with("/3/device/") {
            return Err((404, "BadPath", None));
        }
        if duplicate_header {
            return Err((400, "DuplicateHeaders", None));
        }
        let config = lock(&state.config).clone();
        if let Some((key_id, team_id, public_pem)) = &config.token_auth {
            let mut keys = vec![(key_id.clone(), public_pem.clone())];
            keys.extend(lock(&state.more_token_keys).iter().cloned());
            jwt_iat = Some(check_provider_token(jwt.as_deref(), &keys, team_id, state, connection)?);
        }
        check_headers(&headers, &device_token, &config.topic, payload.len(), config.token_auth.is_some())?;
        match failure {
            Some(ApnsFailure::Status(status, reason)) => Err((status, reason, None)),
            Some(ApnsFailure::Unregistered(timestamp)) => Err((410, "Unregistered", Some(timestamp))),
            Some(ApnsFailure::TooManyRequests(_)) => Err((429, "TooManyRequests", None)),
            _ => Ok(()),
        }
    })();
    let (status, reason, timestamp) = match verdict {
        Ok(()) => (200, None, None),
        Err((status, reason, timestamp)) => (status, Some(reason), timestamp),
    };
    let mut response =
        Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK)).header("apns-id", apns_id);
    if let Some(ApnsFailure::TooManyRequests(Some(seconds))) = failure {
        response = response.header("retry-after", seconds.to_string());
    }
    let error_body = reason.map(|reason| {
        let mut body = serde_json::json!({ "reason": reason });
        if let Some(timestamp) = timestamp {
            body["timestamp"] = timestamp.into();
        }
        Bytes::from(body.to_string())
    });
    lock(&state.requests).push(RecordedApnsRequest {
        device_token,
        headers,
        payload: serde_json::from_slice(&payload).unwrap_or(serde_json::Value::Null),
        payload_bytes: payload.len(),
        jwt_iat,
        jwt,
        connection,
        received_at,
        status,
        reason: reason.map(str::to_owned),
    });
    if status == 200 {
        state.delivered.fetch_add(1, Ordering::Relaxed);
    }
    state.recorded.notify_waiters();
    let Ok(response) = response.body(()) else { return };
    match error_body {
        None => {
            let _ = respond.send_response(response, true);
        }
        Some(body) => {
            if let Ok(mut stream) = respond.send_response(response, false) {
                let _ = stream.send_data(body, true);
            }
        }
    }
}

type Rejection = (u16, &'static str, Option<i64>);

/// Apple's channel management API and broadcast endpoint, as *Sending
/// channel management requests to APNs* and *Sending broadcast push
/// notification requests to APNs* describe them (answers in
/// [`channel_answer`]). A failure queued for `"channels"` answers the next one.
fn serve_channel_request(
    mut request: RecordedChannelRequest,
    failure: Option<ApnsFailure>,
    jwt: Option<&str>,
    mut respond: SendResponse<Bytes>,
    state: &State,
    connection: u64,
) {
    let answer = (|| {
        let config = lock(&state.config).clone();
        let Some((key_id, team_id, public_pem)) = &config.token_auth else {
            // Broadcasts and channels take token-based connections only.
            return Err((403, "InvalidProviderToken"));
        };
        let mut keys = vec![(key_id.clone(), public_pem.clone())];
        keys.extend(lock(&state.more_token_keys).iter().cloned());
        check_provider_token(jwt, &keys, team_id, state, connection).map_err(|(status, reason, _)| (status, reason))?;
        if let Some(ApnsFailure::Status(status, reason)) = failure {
            return Err((status, reason));
        }
        channel_answer(&request, &config.topic, state)
    })();
    let (status, headers, body) = match answer {
        Ok((status, headers, body)) => (status, headers, body),
        Err((status, reason)) => {
            request.reason = Some(reason.to_owned());
            (status, Vec::new(), Some(serde_json::json!({ "reason": reason })))
        }
    };
    request.status = status;
    lock(&state.channel_requests).push(request);
    state.recorded.notify_waiters();
    let mut response = Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    for (name, value) in headers {
        response = response.header(name, value);
    }
    let Ok(response) = response.body(()) else { return };
    match body {
        None => {
            let _ = respond.send_response(response, true);
        }
        Some(body) => {
            if let Ok(mut stream) = respond.send_response(response, false) {
                let _ = stream.send_data(Bytes::from(body.to_string()), true);
            }
        }
    }
}

/// A channel answer: status, headers and body, or Apple's status and reason.
type ChannelAnswer = Result<(u16, Vec<(&'static str, String)>, Option<serde_json::Value>), (u16, &'static str)>;

fn channel_answer(request: &RecordedChannelRequest, topic: &str, state: &State) -> ChannelAnswer {
    use base64::Engine as _;
    let channels_path = format!("/1/apps/{topic}/channels");
    let all_path = format!("/1/apps/{topic}/all-channels");
    let broadcast_path = format!("/4/broadcasts/apps/{topic}");
    let path = request.path.as_str();
    if ![channels_path.as_str(), all_path.as_str(), broadcast_path.as_str()].contains(&path) {
        return Err((400, "BadPath"));
    }
    let channel_id = || -> Result<String, (u16, &'static str)> {
        let id = request.headers.get("apns-channel-id").ok_or((400, "MissingChannelId"))?;
        base64::engine::general_purpose::STANDARD.decode(id).map_err(|_| (400, "BadChannelId"))?;
        if !lock(&state.channels).contains_key(id) {
            return Err((404, "ChannelNotRegistered"));
        }
        Ok(id.clone())
    };
    match (request.method.as_str(), path == all_path, path == broadcast_path) {
        ("POST", false, false) => {
            let policy = request.payload["message-storage-policy"].as_u64().filter(|policy| *policy <= 1);
            let Some(policy) = policy else { return Err((400, "BadMessageStoragePolicy")) };
            let push_type = request.payload["push-type"].as_str().unwrap_or_default();
            if !push_type.eq_ignore_ascii_case("liveactivity") {
                return Err((400, "InvalidPushType"));
            }
            let made = state.channels_made.fetch_add(1, Ordering::Relaxed) + 1;
            let id = base64::engine::general_purpose::STANDARD.encode(format!("fake-channel-{made:06}"));
            lock(&state.channels).insert(id.clone(), policy);
            Ok((201, vec![("apns-channel-id", id)], None))
        }
        ("GET", false, false) => {
            let id = channel_id()?;
            let policy = lock(&state.channels).get(&id).copied().unwrap_or_default();
            Ok((
                200,
                Vec::new(),
                Some(serde_json::json!({ "message-storage-policy": policy, "push-type": "LiveActivity" })),
            ))
        }
        ("DELETE", false, false) => {
            let id = channel_id()?;
            lock(&state.channels).remove(&id);
            Ok((204, Vec::new(), None))
        }
        ("GET", true, false) => Ok((
            200,
            Vec::new(),
            Some(serde_json::json!({ "channels": lock(&state.channels).keys().collect::<Vec<_>>() })),
        )),
        ("POST", false, true) => {
            let id = channel_id()?;
            if request.headers.get("apns-push-type").map(String::as_str) != Some("liveactivity") {
                return Err((400, "InvalidPushType"));
            }
            if !matches!(request.headers.get("apns-priority").map(String::as_str), None | Some("5" | "10")) {
                return Err((400, "BadPriority"));
            }
            let stores_nothing = lock(&state.channels).get(&id) == Some(&0);
            if stores_nothing && request.headers.get("apns-expiration").map(String::as_str) != Some("0") {
                // "No message stored": a broadcast must say so with apns-expiration 0.
                return Err((400, "BadExpirationDate"));
            }
            // The fake's own check, beyond Apple's answers: a broadcast pushgate
            // makes is always a Live Activity payload.
            if !request.payload["aps"]["event"].is_string() || !request.payload["aps"]["timestamp"].is_u64() {
                return Err((400, "BadPayload"));
            }
            Ok((200, vec![("apns-unique-id", format!("broadcast-{}", lock(&state.channel_requests).len()))], None))
        }
        _ => Err((405, "MethodNotAllowed")),
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

#[derive(serde::Deserialize)]
struct ProviderClaims {
    iss: String,
    iat: u64,
}

fn check_provider_token(
    jwt: Option<&str>,
    keys: &[(String, String)],
    team_id: &str,
    state: &State,
    connection: u64,
) -> Result<u64, Rejection> {
    let invalid = (403, "InvalidProviderToken", None);
    let jwt = jwt.ok_or((403, "MissingProviderToken", None))?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // The token this connection last had accepted is not verified again (as a
    // server caches a verified token); its age still counts.
    let known_iat =
        lock(&state.last_token).get(&connection).filter(|(previous, _)| previous == jwt).map(|(_, iat)| *iat);
    if let Some(iat) = known_iat {
        if now - iat > 3600 || iat < state.reject_tokens_issued_before.load(Ordering::Relaxed) {
            return Err((403, "ExpiredProviderToken", None));
        }
        return Ok(iat);
    }
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| invalid)?;
    let public_pem = match keys.iter().find(|(key_id, _)| header.kid.as_deref() == Some(key_id.as_str())) {
        Some((_, public_pem)) if header.alg == Algorithm::ES256 => public_pem,
        _ => return Err(invalid),
    };
    let key = DecodingKey::from_ec_pem(public_pem.as_bytes()).map_err(|_| invalid)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<ProviderClaims>(jwt, &key, &validation).map_err(|_| invalid)?.claims;
    if claims.iss != team_id {
        return Err(invalid);
    }
    if claims.iat > now + 60 {
        return Err(invalid);
    }
    if now - claims.iat > 3600 || claims.iat < state.reject_tokens_issued_before.load(Ordering::Relaxed) {
        return Err((403, "ExpiredProviderToken", None));
    }
    // Apple refuses a provider token that replaces the previous one on the
    // same connection sooner than 20 minutes after it. (A new connection, as
    // after a restart, may start with a new token.)
    let mut last = lock(&state.last_token);
    match last.get(&connection) {
        Some((previous, previous_iat)) if previous != jwt && claims.iat < previous_iat + 20 * 60 => {
            return Err((429, "TooManyProviderTokenUpdates", None));
        }
        _ => {
            last.insert(connection, (jwt.to_owned(), claims.iat));
        }
    }
    Ok(claims.iat)
}

/// Every `apns-push-type` Apple documents, with the suffix its `apns-topic`
/// must add to the bundle id (*Sending notification requests to APNs*).
const PUSH_TYPES: &[(&str, &str)] = &[
    ("alert", ""),
    ("background", ""),
    ("voip", ".voip"),
    ("location", ".location-query"),
    ("complication", ".complication"),
    ("fileprovider", ".pushkit.fileprovider"),
    ("mdm", ""),
    ("liveactivity", ".push-type.liveactivity"),
    ("pushtotalk", ".voip-ptt"),
    ("widgets", ".push-type.widgets"),
];

fn check_headers(
    headers: &HashMap<String, String>,
    device_token: &str,
    topic: &str,
    payload_bytes: usize,
    token_auth: bool,
) -> Result<(), Rejection> {
    let reject = |reason| Err((400, reason, None));
    if device_token.is_empty() {
        return reject("MissingDeviceToken");
    }
    if !device_token.bytes().all(|b| b.is_ascii_hexdigit()) || !device_token.len().is_multiple_of(2) {
        return reject("BadDeviceToken");
    }
    let Some(push_type) = headers.get("apns-push-type") else {
        // APNs tolerates its absence; pushgate must always send it, so the fake does not.
        return reject("InvalidPushType");
    };
    let Some((_, suffix)) = PUSH_TYPES.iter().find(|(name, _)| name == push_type) else {
        return reject("InvalidPushType");
    };
    let Some(sent_topic) = headers.get("apns-topic") else { return reject("MissingTopic") };
    if *sent_topic != format!("{topic}{suffix}") {
        return reject(if suffix.is_empty() { "TopicDisallowed" } else { "BadTopic" });
    }
    // Certificates do not authenticate Live Activity pushes (token-based connections only).
    if push_type == "liveactivity" && !token_auth {
        return Err((403, "InvalidProviderToken", None));
    }
    match (push_type.as_str(), headers.get("apns-priority").map(String::as_str)) {
        // A background push at 10 "is an error"; a Live Activity's is 10 or 5.
        ("background", None | Some("1" | "5")) | ("liveactivity", None | Some("5" | "10")) => {}
        ("background" | "liveactivity", _) => return reject("BadPriority"),
        (_, None | Some("1" | "5" | "10")) => {}
        (_, Some(_)) => return reject("BadPriority"),
    }
    if let Some(id) = headers.get("apns-id") {
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        if groups != [8, 4, 4, 4, 12] || !id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return reject("BadMessageId");
        }
    }
    if headers.get("apns-expiration").is_some_and(|value| value.parse::<u64>().is_err()) {
        return reject("BadExpirationDate");
    }
    if headers.get("apns-collapse-id").is_some_and(|value| value.len() > 64) {
        return reject("BadCollapseId");
    }
    if payload_bytes == 0 {
        return reject("PayloadEmpty");
    }
    let limit = if push_type == "voip" { 5120 } else { 4096 };
    if payload_bytes > limit {
        return Err((413, "PayloadTooLarge", None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn each_push_type_is_held_to_apples_topic_priority_and_authentication() {
        let check = |pairs: &[(&str, &str)], token_auth: bool| {
            check_headers(&headers(pairs), TOKEN, "io.imkit.app", 10, token_auth)
                .map_err(|(status, reason, _)| (status, reason))
        };
        let accepted = [
            [("apns-push-type", "alert"), ("apns-topic", "io.imkit.app"), ("apns-priority", "10")],
            [("apns-push-type", "background"), ("apns-topic", "io.imkit.app"), ("apns-priority", "5")],
            [("apns-push-type", "voip"), ("apns-topic", "io.imkit.app.voip"), ("apns-priority", "10")],
            [
                ("apns-push-type", "liveactivity"),
                ("apns-topic", "io.imkit.app.push-type.liveactivity"),
                ("apns-priority", "5"),
            ],
            [("apns-push-type", "widgets"), ("apns-topic", "io.imkit.app.push-type.widgets"), ("apns-priority", "10")],
            [("apns-push-type", "pushtotalk"), ("apns-topic", "io.imkit.app.voip-ptt"), ("apns-priority", "10")],
        ];
        for pairs in accepted {
            assert_eq!(check(&pairs, true), Ok(()), "{pairs:?}");
        }
        let refused = [
            (
                [("apns-push-type", "background"), ("apns-topic", "io.imkit.app"), ("apns-priority", "10")],
                (400, "BadPriority"),
            ),
            (
                [("apns-push-type", "liveactivity"), ("apns-topic", "io.imkit.app"), ("apns-priority", "10")],
                (400, "BadTopic"),
            ),
            (
                [
                    ("apns-push-type", "liveactivity"),
                    ("apns-topic", "io.imkit.app.push-type.liveactivity"),
                    ("apns-priority", "1"),
                ],
                (400, "BadPriority"),
            ),
            (
                [("apns-push-type", "alert"), ("apns-topic", "io.imkit.app.voip"), ("apns-priority", "10")],
                (400, "TopicDisallowed"),
            ),
            (
                [("apns-push-type", "pager"), ("apns-topic", "io.imkit.app"), ("apns-priority", "10")],
                (400, "InvalidPushType"),
            ),
        ];
        for (pairs, answer) in refused {
            assert_eq!(check(&pairs, true), Err(answer), "{pairs:?}");
        }
        let live_activity = [
            ("apns-push-type", "liveactivity"),
            ("apns-topic", "io.imkit.app.push-type.liveactivity"),
            ("apns-priority", "10"),
        ];
        assert_eq!(
            check(&live_activity, false),
            Err((403, "InvalidProviderToken")),
            "no certificate for Live Activities"
        );
    }

    #[tokio::test]
    async fn the_channel_apis_answer_as_apple_documents() {
        let ca = crate::TestCa::generate();
        let key = crate::Es256Key::generate();
        let fake = FakeApns::start(&ca, FakeApnsConfig::token(&key)).await;
        let request =
            |method: &str, path: &str, pairs: &[(&str, &str)], payload: serde_json::Value| RecordedChannelRequest {
                method: method.to_owned(),
                path: path.to_owned(),
                headers: headers(pairs),
                payload,
                status: 0,
                reason: None,
            };
        let answer = |request: &RecordedChannelRequest| {
            channel_answer(request, "io.imkit.app", &fake.state).map(|(status, headers, _)| (status, headers))
        };
        let channels = "/1/apps/io.imkit.app/channels";
        let created = answer(&request(
            "POST",
            channels,
            &[],
            serde_json::json!({ "message-storage-policy": 0, "push-type": "LiveActivity" }),
        ));
        let (status, headers) = created.expect("created");
        assert_eq!((status, headers[0].0), (201, "apns-channel-id"));
        let id = headers[0].1.clone();
        let bad_policy = request(
            "POST",
            channels,
            &[],
            serde_json::json!({ "message-storage-policy": 2, "push-type": "LiveActivity" }),
        );
        assert_eq!(answer(&bad_policy), Err((400, "BadMessageStoragePolicy")));
        let broadcasts = "/4/broadcasts/apps/io.imkit.app";
        let update = serde_json::json!({ "aps": { "event": "update", "timestamp": 1, "content-state": {} } });
        let no_channel = request("POST", broadcasts, &[("apns-push-type", "liveactivity")], update.clone());
        assert_eq!(answer(&no_channel), Err((400, "MissingChannelId")), "a broadcast without a channel");
        let stored_nothing = request(
            "POST",
            broadcasts,
            &[("apns-push-type", "liveactivity"), ("apns-channel-id", &id)],
            update.clone(),
        );
        assert_eq!(
            answer(&stored_nothing),
            Err((400, "BadExpirationDate")),
            "a channel that stores nothing takes 0 only"
        );
        let sent = request(
            "POST",
            broadcasts,
            &[("apns-push-type", "liveactivity"), ("apns-channel-id", &id), ("apns-expiration", "0")],
            update,
        );
        assert_eq!(answer(&sent).map(|(status, _)| status), Ok(200));
        let gone = request("DELETE", channels, &[("apns-channel-id", &id)], serde_json::Value::Null);
        assert_eq!(answer(&gone).map(|(status, _)| status), Ok(204));
        assert_eq!(answer(&gone), Err((404, "ChannelNotRegistered")));
    }
}
