//! How pushgate sends: provider clients (APNs, FCM, Web Push) with typed outcomes.
//!
//! Each client turns one notification for one device into an [`Outcome`]
//! that says what to do next (done, delete the token, retry, give up, pause
//! the app). Clients never touch the store: acting on an outcome is the
//! delivery worker's job.

pub mod apns;
pub mod clock;
mod ece;
pub mod fcm;
mod h2pool;
pub mod imkit;
mod tls;
pub mod webpush;

use pushgate_domain::{Reason, Unreachable};
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
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
        reason: Reason,
        /// Unix milliseconds from which the provider knows the token is invalid.
        invalid_since_ms: Option<i64>,
    },
    /// A passing failure: send again later, not before `after` when the provider said.
    Retry {
        /// The provider's reason, or what went wrong on the way.
        reason: Reason,
        /// The provider's own delay (`Retry-After`), if it gave one.
        after: Option<Duration>,
    },
    /// This notification will never be accepted as it is (payload, headers):
    /// fail it, keep the token.
    Rejected {
        /// The provider's reason.
        reason: Reason,
    },
    /// The provider refuses the app itself (credentials, topic, project):
    /// stop sending for this app until it is fixed, keep every token.
    AppRejected {
        /// The provider's reason.
        reason: Reason,
    },
}

impl Outcome {
    /// Why it was not delivered; `None` when it was.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Self::Delivered => None,
            Self::InvalidToken { reason, .. }
            | Self::Retry { reason, .. }
            | Self::Rejected { reason }
            | Self::AppRejected { reason } => Some(reason),
        }
    }

    /// Whether the provider was not reached at all (no connection, no answer
    /// in time, the connection lost before an answer), as opposed to any answer.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Retry { reason, .. } if reason.is_unreachable())
    }

    /// A passing failure the provider answered with `code`.
    pub(crate) fn retry(code: impl Into<String>, after: Option<Duration>) -> Self {
        Self::Retry { reason: Reason::provider(code), after }
    }

    /// A passing failure on the way: the provider gave no answer.
    pub(crate) fn unreachable(why: Unreachable) -> Self {
        Self::Retry { reason: Reason::Unreachable(why), after: None }
    }

    pub(crate) fn rejected(code: impl Into<String>) -> Self {
        Self::Rejected { reason: Reason::provider(code) }
    }

    pub(crate) fn app_rejected(code: impl Into<String>) -> Self {
        Self::AppRejected { reason: Reason::provider(code) }
    }

    pub(crate) fn invalid_token(code: impl Into<String>, invalid_since_ms: Option<i64>) -> Self {
        Self::InvalidToken { reason: Reason::provider(code), invalid_since_ms }
    }
}

/// Reads a `Retry-After` header, in seconds or as an HTTP-date (RFC 9110
/// §10.2.3), counted from now.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

/// Reads a `Retry-After` header, in seconds or as an HTTP-date counted from
/// `now` (a date already past is no delay).
pub(crate) fn retry_after_at(headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn after(value: &str, now: SystemTime) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, value.parse().expect("a header value"));
        retry_after_at(&headers, now)
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("a date");
        assert_eq!(after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(after("Sun, 06 Nov 1994 08:51:37 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO), "a date past is no delay");
        assert_eq!(after("soon", now), None);
    }
}
