//! A certificate authority made at test time, and the certificates it signs.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A throw-away CA and a server certificate for `localhost` and `127.0.0.1`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA with a server certificate signed by it.
    pub fn generate() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "pushgate test CA");
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server parameters");
        let server_key = KeyPair::generate().expect("server key");
        let server = server_params.signed_by(&server_key, &issuer).expect("server certificate");
        Self {
            server_chain: vec![server.der().clone(), issuer.der().clone()],
            server_key_der: server_key.serialize_der(),
            issuer,
        }
    }

    /// The CA certificate, PEM: what a client's `ca_file` holds.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `directory/ca.pem` and returns the path.
    pub fn write_ca_pem(&self, directory: &Path) -> PathBuf {
        let path = directory.join("ca.pem");
        std::fs::write(&path, self.ca_pem()).expect("write the CA certificate");
        path
    }

    /// A client certificate signed by this CA, as (chain PEM, key PEM), for
    /// APNs certificate authentication.
    pub fn client_certificate(&self, common_name: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("client key");
        let certificate = params.signed_by(&key, &self.issuer).expect("client certificate");
        (certificate.pem(), key.serialize_pem())
    }

    /// As [`TestCa::client_certificate`], valid until `days` from today (00:00 UTC of that day).
    pub fn client_certificate_expiring_in(&self, common_name: &str, days: i64) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        let today =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() / 86_400;
        let (year, month, day) = civil_from_days(i64::try_from(today).expect("days") + days);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = KeyPair::generate().expect("client key");
        let certificate = params.signed_by(&key, &self.issuer).expect("client certificate");
        (certificate.pem(), key.serialize_pem())
    }

    /// rustls server settings with the server certificate, offering `alpn`;
    /// with `require_client_certificate`, clients must present one this CA signed.
    pub fn server_config(&self, alpn: &[&[u8]], require_client_certificate: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_certificate {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.issuer.der().clone()).expect("CA as a root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut config = builder.with_single_cert(self.server_chain.clone(), key).expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }

    /// rustls client settings trusting only this CA, offering `alpn`: for a
    /// bare load generator talking to a fake.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("CA as a root");
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

/// The calendar date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), for certificates valid until a given day.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (i32::try_from(year).expect("a year"), u8::try_from(month).expect("a month"), u8::try_from(day).expect("a day"))
}
