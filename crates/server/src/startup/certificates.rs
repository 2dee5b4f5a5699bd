//! The expiry watch of the configured certificates: their days left as a
//! metric, and a warning in the log within 30 days of an expiry.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use pushgate_api::certificates::CertificateWatch;
use pushgate_api::now_ms;
use std::sync::Arc;
use std::time::Duration;

/// `pushgate_certificate_expiry_days`, one series per certificate.
pub(super) type CertificateDays = Family<CertificateLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// The labels of `pushgate_certificate_expiry_days`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(super) struct CertificateLabels {
    /// The app; empty for the server's own certificate.
    app: String,
    /// `server_tls` or `apns`.
    certificate: String,
}

/// How often the certificates' days are counted again (and logged when near).
const CERTIFICATE_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Sets each certificate's days left, every [`CERTIFICATE_CHECK_INTERVAL`]
/// from the start, with a warning in the log within 30 days of its expiry
/// and an error once it has expired.
pub(super) async fn watch_certificates(watch: Arc<CertificateWatch>, days: CertificateDays) {
    let mut ticks = tokio::time::interval(CERTIFICATE_CHECK_INTERVAL);
    loop {
        ticks.tick().await;
        let now = now_ms();
        for watched in &watch.0 {
            let labels = CertificateLabels {
                app: watched.app.clone().unwrap_or_default(),
                certificate: watched.certificate.to_owned(),
            };
            days.get_or_create(&labels).set((watched.not_after_ms - now) as f64 / 86_400_000.0);
        }
        for found in watch.expiring(now) {
            if found.state == "expired" {
                tracing::error!(
                    certificate = found.key,
                    days = -found.days_left,
                    "the certificate has expired: replace it"
                );
            } else {
                tracing::warn!(
                    certificate = found.key,
                    days = found.days_left,
                    "the certificate expires soon: replace it"
                );
            }
        }
    }
}
