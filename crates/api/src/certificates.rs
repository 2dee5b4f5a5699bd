//! Certificates that expire: the server's own TLS certificate and APNs client
//! certificates. `/readyz` names each one that expires within
//! [`WARN_DAYS`] (the instance stays ready: its other apps and providers
//! work), and the binary exports the days left as a metric.

use serde::Serialize;
use utoipa::ToSchema;

/// How far ahead an expiry is reported.
pub const WARN_DAYS: i64 = 30;

const DAY_MS: i64 = 86_400_000;

/// A certificate the configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedCertificate {
    /// The app whose certificate it is; none for the server's own.
    pub app: Option<String>,
    /// `server_tls` or `apns`.
    pub certificate: &'static str,
    /// The configuration key naming its file.
    pub key: String,
    /// When it expires, Unix ms.
    pub not_after_ms: i64,
}

/// A certificate that expires soon, or has, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiringCertificate {
    /// The app; absent for the server's own certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `server_tls` or `apns`.
    pub certificate: &'static str,
    /// The configuration key naming its file.
    pub key: String,
    /// When it expires, Unix ms.
    #[serde(rename = "expiresAtMS")]
    pub expires_at_ms: i64,
    /// Whole days left (negative once expired).
    pub days_left: i64,
    /// `expiring` (within 30 days) or `expired`.
    pub state: &'static str,
}

/// Every watched certificate.
#[derive(Debug, Default)]
pub struct CertificateWatch(pub Vec<WatchedCertificate>);

impl WatchedCertificate {
    /// Whole days until it expires at `now_ms` (negative once expired).
    pub fn days_left(&self, now_ms: i64) -> i64 {
        (self.not_after_ms - now_ms).div_euclid(DAY_MS)
    }
}

impl CertificateWatch {
    /// Those that expire within [`WARN_DAYS`] of `now_ms`, or have expired.
    pub fn expiring(&self, now_ms: i64) -> Vec<ExpiringCertificate> {
        self.0
            .iter()
            .filter(|watched| watched.days_left(now_ms) < WARN_DAYS)
            .map(|watched| ExpiringCertificate {
                app: watched.app.clone(),
                certificate: watched.certificate,
                key: watched.key.clone(),
                expires_at_ms: watched.not_after_ms,
                days_left: watched.days_left(now_ms),
                state: if watched.not_after_ms <= now_ms { "expired" } else { "expiring" },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_expires_within_thirty_days_is_named() {
        let watched = |days: i64| WatchedCertificate {
            app: Some("A".into()),
            certificate: "apns",
            key: format!("in {days} days"),
            not_after_ms: days * DAY_MS + 1,
        };
        let watch = CertificateWatch(vec![watched(90), watched(29), watched(-2)]);
        let expiring = watch.expiring(0);
        let states: Vec<(i64, &str)> = expiring.iter().map(|found| (found.days_left, found.state)).collect();
        assert_eq!(states, vec![(29, "expiring"), (-2, "expired")]);
    }
}
