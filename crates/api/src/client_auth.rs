//! IMKIT's client credentials (`IM-CLIENT-KEY` + `IM-Authorization`), so an
//! app can register its device with pushgate as it would with IMKIT.
//!
//! The client key names the app (it is public: shipped in the app); the
//! token is the user's, opaque to anyone but the app's chat server, which is
//! asked who holds it (`GET {url}/me`, [`ChatServer`]). Answers are cached
//! per token (only the token's digest is kept): a held token for
//! [`ClientAuthSettings::cache_for`], a refused one for
//! [`ClientAuthSettings::refused_for`], so an app retrying a bad token cannot
//! turn pushgate into an amplifier against its chat server. Concurrent
//! requests with the same new token make one call. A chat server that cannot
//! be asked is not cached: the request fails with 503 and nothing is stored.

use crate::AppState;
use crate::auth::{AppSettings, api_key_digest};
use crate::error::ApiError;
use axum::http::StatusCode;
use pushgate_domain::ClientId;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;

/// What the chat server says of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatAnswer {
    /// The token is this client's, of this IMKIT app.
    Client {
        /// `_id`.
        client_id: String,
        /// `appID`.
        app_id: String,
    },
    /// The token (or the client key) is refused.
    Refused,
}

/// An app's chat server, as the API sees it (the binary wires in the HTTP client).
#[async_trait::async_trait]
pub trait ChatServer: Send + Sync + std::fmt::Debug + 'static {
    /// Who holds `token`; `Err` (with why) when the server could not be asked.
    async fn me(&self, client_key: &str, token: &str) -> Result<ChatAnswer, String>;
}

/// How long answers are kept, and how many.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthSettings {
    /// A token the chat server vouched for is trusted this long.
    pub cache_for: Duration,
    /// A refused token is refused without asking for this long.
    pub refused_for: Duration,
    /// Most tokens remembered per app.
    pub capacity: u64,
}

/// A token's verdict, as cached.
#[derive(Debug, Clone)]
enum Verdict {
    Client(ClientId),
    Refused,
}

struct VerdictExpiry(ClientAuthSettings);

impl moka::Expiry<[u8; 32], Verdict> for VerdictExpiry {
    fn expire_after_create(&self, _: &[u8; 32], verdict: &Verdict, _: Instant) -> Option<Duration> {
        Some(match verdict {
            Verdict::Client(_) => self.0.cache_for,
            Verdict::Refused => self.0.refused_for,
        })
    }
}

/// An app's client credentials: its client key and its chat server.
pub struct ClientAuth {
    client_key: String,
    client_key_digest: [u8; 32],
    server: Arc<dyn ChatServer>,
    verdicts: moka::future::Cache<[u8; 32], Verdict>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client key is public, but there is no need to print it either.
        f.debug_struct("ClientAuth").field("server", &self.server).finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// The app's client key and chat server.
    pub fn new(client_key: String, server: Arc<dyn ChatServer>, settings: ClientAuthSettings) -> Self {
        let verdicts = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(VerdictExpiry(settings))
            .build();
        Self { client_key_digest: api_key_digest(&client_key), client_key, server, verdicts }
    }

    /// The client `token` belongs to, for `app`: from the cache, or asked of
    /// the chat server once however many requests ask at the same time.
    async fn client_of(&self, app: &AppSettings, token: &str) -> Result<ClientId, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let asked = self.verdicts.try_get_with(digest, async {
            let answer = self.server.me(&self.client_key, token).await?;
            Ok::<_, String>(match answer {
                ChatAnswer::Client { client_id, app_id } if app_id == app.id.as_str() => {
                    match ClientId::parse(&client_id) {
                        Ok(client_id) => Verdict::Client(client_id),
                        Err(error) => {
                            tracing::warn!(app.id = %app.id, %error, "the chat server named a client id pushgate cannot take");
                            Verdict::Refused
                        }
                    }
                }
                ChatAnswer::Client { app_id, .. } => {
                    tracing::warn!(app.id = %app.id, chat.app = %app_id, "the chat server answered for another app; refused");
                    Verdict::Refused
                }
                ChatAnswer::Refused => Verdict::Refused,
            })
        });
        match asked.await {
            Ok(Verdict::Client(client_id)) => Ok(client_id),
            Ok(Verdict::Refused) => Err(ApiError::invalid_token()),
            Err(why) => {
                tracing::warn!(app.id = %app.id, error = %why, "cannot ask the chat server who the caller is");
                Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the chat server cannot be reached"))
            }
        }
    }
}

/// The app whose client key was presented, compared in constant time with
/// every app's.
fn app_of_client_key(state: &AppState, presented: &str) -> Option<Arc<AppSettings>> {
    let presented = api_key_digest(presented);
    let mut found = None;
    for app in state.apps.values() {
        if let Some(auth) = &app.client_auth
            && bool::from(auth.client_key_digest.ct_eq(&presented))
        {
            found = Some(Arc::clone(app));
        }
    }
    found
}

/// The client that `IM-CLIENT-KEY` and `IM-Authorization` prove, and its app.
pub(crate) async fn verify(
    state: &AppState,
    client_key: &str,
    token: &str,
) -> Result<(Arc<AppSettings>, ClientId), ApiError> {
    let app = app_of_client_key(state, client_key).ok_or_else(ApiError::invalid_token)?;
    let auth = app.client_auth.as_ref().ok_or_else(ApiError::invalid_token)?;
    let client_id = auth.client_of(&app, token).await?;
    Ok((app, client_id))
}
