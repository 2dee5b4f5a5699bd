//! How pushgate sends: provider clients with typed outcomes.
//!
//! Each client turns one notification for one device into an [`Outcome`]
//! that says what to do next (done, delete the token, retry, give up, pause
//! the app). Clients never touch the store: acting on an outcome is the
//! delivery worker's job.

pub mod apns;
pub mod clock;
pub mod fcm;
mod tls;

use std::time::Duration;

pub use clock::{Clock, SystemClock};
pub use tls::{TlsError, client_tls_config};

/// What became of one send, and so what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the notification.
    Delivered,
    /// The token is dead: delete the device, unless it registered again after
    /// `invalid_since_ms` (APNs gives that time with a 410).
    InvalidToken {
        /// The provider's reason, such as `Unregistered` or `UNREGISTERED`.
        reason: String,
        /// Unix milliseconds from which the provider knows the token is invalid.
        invalid_since_ms: Option<i64>,
    },
    /// A passing failure: send again later, not before `after` when the provider said.
    Retry {
        /// The provider's reason, or what went wrong on the way.
        reason: String,
        /// The provider's own delay (`Retry-After`), if it gave one.
        after: Option<Duration>,
    },
    /// This notification will never be accepted as it is (payload, headers):
    /// fail it, keep the token.
    Rejected {
        /// The provider's reason.
        reason: String,
    },
    /// The provider refuses the app itself (credentials, topic, project):
    /// stop sending for this app until it is fixed, keep every token.
    AppRejected {
        /// The provider's reason.
        reason: String,
    },
}

impl Outcome {
    /// The provider's reason, or `Delivered`.
    pub fn reason(&self) -> &str {
        match self {
            Self::Delivered => "Delivered",
            Self::InvalidToken { reason, .. }
            | Self::Retry { reason, .. }
            | Self::Rejected { reason }
            | Self::AppRejected { reason } => reason,
        }
    }

    pub(crate) fn retry(reason: impl Into<String>, after: Option<Duration>) -> Self {
        Self::Retry { reason: reason.into(), after }
    }

    pub(crate) fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected { reason: reason.into() }
    }

    pub(crate) fn app_rejected(reason: impl Into<String>) -> Self {
        Self::AppRejected { reason: reason.into() }
    }

    pub(crate) fn invalid_token(reason: impl Into<String>, invalid_since_ms: Option<i64>) -> Self {
        Self::InvalidToken { reason: reason.into(), invalid_since_ms }
    }
}

/// Reads a `Retry-After` header given in seconds. (The HTTP-date form is not
/// used by APNs or FCM; it is treated as absent.)
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}
