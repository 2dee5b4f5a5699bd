//! APNs provider tokens: ES256 JWTs signed with the team's `.p8` key.
//!
//! Apple wants one token reused for a long time: refreshed no more often
//! than every 20 minutes (more often is answered `TooManyProviderTokenUpdates`)
//! and before it is 60 minutes old (older is `ExpiredProviderToken`).

use crate::Clock;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A token is refreshed by itself once it is this old.
pub const REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);
/// Apple refuses a new token sooner than this after the previous one.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);

/// Why a signer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The key is not a PKCS#8 P-256 key in PEM (what Apple's `.p8` is).
    #[error("the APNs key is not a P-256 private key in PEM (.p8): {0}")]
    BadKey(String),
    /// Signing failed.
    #[error("signing the APNs provider token failed: {0}")]
    Signing(String),
}

#[derive(Debug, Clone)]
struct IssuedToken {
    jwt: Arc<str>,
    issued_at: u64,
}

/// Signs and caches provider tokens for one key. Share one per key (one
/// `Arc`) across every client that uses it.
pub struct TokenSigner {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    clock: Arc<dyn Clock>,
    current: Mutex<Option<IssuedToken>>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and the token are credentials: neither is printed.
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .finish_non_exhaustive()
    }
}

/// What to do after APNs answered `ExpiredProviderToken` to a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredTokenAction {
    /// A new token will be signed on the next call: send again now.
    Resend,
    /// The token is too young to be replaced without breaking Apple's rate
    /// rule; send again after this long.
    WaitFor(Duration),
}

impl TokenSigner {
    /// A signer from the `.p8` key's PEM, the key's id and the team id.
    pub fn new(key_pem: &[u8], key_id: &str, team_id: &str, clock: Arc<dyn Clock>) -> Result<Self, JwtError> {
        let key = EncodingKey::from_ec_pem(key_pem).map_err(|error| JwtError::BadKey(error.to_string()))?;
        Ok(Self { key, key_id: key_id.to_owned(), team_id: team_id.to_owned(), clock, current: Mutex::new(None) })
    }

    /// The token to send now: the cached one while it is younger than
    /// [`REFRESH_AFTER`], else a newly signed one.
    pub fn token(&self) -> Result<Arc<str>, JwtError> {
        let now = self.clock.unix_seconds();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(issued) = current.as_ref()
            && now.saturating_sub(issued.issued_at) < REFRESH_AFTER.as_secs()
            && issued.issued_at <= now
        {
            return Ok(Arc::clone(&issued.jwt));
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = serde_json::json!({ "iss": self.team_id, "iat": now });
        let jwt: Arc<str> = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|error| JwtError::Signing(error.to_string()))?
            .into();
        *current = Some(IssuedToken { jwt: Arc::clone(&jwt), issued_at: now });
        tracing::debug!(apns.key_id = %self.key_id, "signed a new APNs provider token");
        Ok(jwt)
    }

    /// APNs answered `ExpiredProviderToken` to `rejected`. Drops it so the
    /// next [`TokenSigner::token`] signs anew, unless that would be sooner
    /// than Apple allows.
    pub fn expired(&self, rejected: &str) -> ExpiredTokenAction {
        let now = self.clock.unix_seconds();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            // Another request already replaced it.
            Some(issued) if &*issued.jwt != rejected => ExpiredTokenAction::Resend,
            Some(issued) => {
                let age = now.saturating_sub(issued.issued_at);
                if age >= MIN_REFRESH_INTERVAL.as_secs() {
                    *current = None;
                    ExpiredTokenAction::Resend
                } else {
                    ExpiredTokenAction::WaitFor(Duration::from_secs(MIN_REFRESH_INTERVAL.as_secs() - age))
                }
            }
            None => ExpiredTokenAction::Resend,
        }
    }
}
