//! A fake IMKIT chat server: `GET /me` over TLS, answering who the caller
//! is from `IM-CLIENT-KEY` and `IM-Authorization` as IMKIT does, with tokens
//! the test issues and revokes, and a count of the calls.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

struct FakeState {
    client_key: String,
    app_id: String,
    /// Token → client id.
    tokens: Mutex<HashMap<String, String>>,
    calls: AtomicU64,
    delay: Mutex<Duration>,
}

/// A running fake chat server. Stops when dropped.
pub struct FakeImkit {
    address: SocketAddr,
    state: Arc<FakeState>,
    handle: axum_server::Handle<SocketAddr>,
}

impl std::fmt::Debug for FakeImkit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeImkit").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for FakeImkit {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl FakeImkit {
    /// Starts on a free loopback port with a certificate from `ca`, as the
    /// chat server of `app_id`, whose apps present `client_key`.
    pub async fn start(ca: &crate::TestCa, app_id: &str, client_key: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake IMKIT");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(FakeState {
            client_key: client_key.to_owned(),
            app_id: app_id.to_owned(),
            tokens: Mutex::default(),
            calls: AtomicU64::new(0),
            delay: Mutex::new(Duration::ZERO),
        });
        let router = Router::new().route("/me", get(me)).with_state(Arc::clone(&state));
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(ca.server_config(&[b"h2", b"http/1.1"], false));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).expect("serve the fake IMKIT").handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(router.into_make_service()).await;
        });
        handle.listening().await;
        Self { address, state, handle }
    }

    /// `https://localhost:<port>`, the chat server's URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.address.port())
    }

    /// Issues `token` to `client_id` (IMKIT's "Issue Token").
    pub fn issue(&self, token: &str, client_id: &str) {
        self.state.tokens.lock().unwrap_or_else(PoisonError::into_inner).insert(token.into(), client_id.into());
    }

    /// Revokes `token`: `GET /me` with it is refused from now on.
    pub fn revoke(&self, token: &str) {
        self.state.tokens.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    /// Answers every call after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Stops answering: the chat server is down.
    pub fn stop(&self) {
        self.handle.shutdown();
    }

    /// `GET /me` calls received.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }
}

fn refused() -> Response {
    let body = json!({ "RC": 401, "RM": "Unauthorized", "error": { "code": "INVALID_TOKEN", "message": "Invalid or expired token" } });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

async fn me(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::time::sleep(delay).await;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if header("IM-CLIENT-KEY") != state.client_key {
        let body = json!({ "RC": 401, "RM": "Unauthorized", "error": { "code": "INVALID_CLIENT_KEY", "message": "Invalid client key" } });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let client = state.tokens.lock().unwrap_or_else(PoisonError::into_inner).get(header("IM-Authorization")).cloned();
    let Some(client) = client else { return refused() };
    let result = json!({
        "_id": client, "appID": state.app_id, "nickname": format!("{client}'s name"), "email": "",
        "avatarUrl": "", "lastLoginTimeMS": 1_574_246_991_222_u64, "notificationEnabled": true
    });
    axum::Json(json!({ "RC": 0, "RM": "OK", "result": result })).into_response()
}
