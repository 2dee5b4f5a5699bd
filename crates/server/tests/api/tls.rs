//! HTTPS with a certificate generated at test time; HTTP/2 and HTTP/1.1.

use crate::helpers::{APNS_TOKEN, TestApp, ios_device};
use pushgate::config::Config;
use std::sync::Arc;

fn client_trusting(ca_der: &[u8], alpn: &[&[u8]]) -> reqwest::Client {
    pushgate::startup::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).expect("test CA is a valid certificate");
    let mut tls =
        rustls::ClientConfig::builder().with_root_certificates(Arc::new(roots).as_ref().clone()).with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("client")
}

async fn spawn_https() -> (TestApp, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificate");
    let directory = tempfile::tempdir().expect("temp dir");
    let cert_path = directory.path().join("cert.pem");
    let key_path = directory.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let environment = vec![
        ("PUSHGATE_SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("PUSHGATE_SERVER__TLS_CERT".to_owned(), cert_path.display().to_string()),
        ("PUSHGATE_SERVER__TLS_KEY".to_owned(), key_path.display().to_string()),
        ("PUSHGATE_STORE__URL".to_owned(), format!("sqlite://{}", directory.path().join("pushgate.db").display())),
        ("PUSHGATE_APPS__SAMPLEAPP__API_KEYS".to_owned(), format!(r#"["{}"]"#, crate::helpers::API_KEY)),
    ];
    let config = Config::load(None, environment).expect("valid");
    let ca = certified.cert.der().to_vec();
    let app = TestApp::start(config, directory, client_trusting(&ca, &[b"h2", b"http/1.1"])).await;
    (app, ca)
}

#[tokio::test]
async fn https_serves_http2_when_the_client_offers_it() {
    let (app, _) = spawn_https().await;
    assert!(app.base_url.starts_with("https://"));
    let response = app.client.get(format!("{}/healthz", app.base_url)).send().await.expect("sent");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
}

#[tokio::test]
async fn https_serves_http1_to_a_client_that_offers_only_http1() {
    let (app, ca) = spawn_https().await;
    let client = client_trusting(&ca, &[b"http/1.1"]);
    let response = client.get(format!("{}/healthz", app.base_url)).send().await.expect("sent");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn plain_http_also_serves_http2_with_prior_knowledge() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let response = client.get(format!("{}/healthz", app.base_url)).send().await.expect("sent");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}
