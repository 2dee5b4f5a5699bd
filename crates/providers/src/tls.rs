//! TLS client settings shared by the provider clients.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::sync::Arc;

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The extra CA file holds no usable certificate.
    #[error("the CA certificate is not valid PEM: {0}")]
    BadCa(String),
    /// The client certificate or key could not be used.
    #[error("the client certificate could not be used: {0}")]
    BadClientCertificate(String),
}

/// rustls client settings trusting the Mozilla roots compiled into the
/// binary (so the answer does not depend on the machine's CA store) plus an
/// optional extra CA (PEM), as tests need for a local fake. `alpn` lists the
/// protocols to offer; `client_certificate` is a PEM chain and key for APNs
/// certificate authentication.
pub fn client_tls_config(
    extra_ca_pem: Option<&[u8]>,
    alpn: &[&[u8]],
    client_certificate: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_ca_pem {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|error| TlsError::BadCa(error.to_string()))?;
        if certificates.is_empty() {
            return Err(TlsError::BadCa("no certificate found".into()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|error| TlsError::BadCa(error.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::BadCa(error.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client_certificate {
        Some((chain_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
                .collect::<Result<_, _>>()
                .map_err(|error| TlsError::BadClientCertificate(error.to_string()))?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|error| TlsError::BadClientCertificate(error.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| TlsError::BadClientCertificate(error.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}
