//! Micro-benchmark: the Web Push client alone against the fake push service.
//!
//!     cargo bench -p pushgate-providers --bench webpush_client [-- REQUESTS [CONCURRENCY]]
//!
//! First the raw capacity of the fake on this machine: a bare HTTP/2 sender
//! (`pushgate_testkit::load`) posting pre-built requests (each body encrypted
//! beforehand, one pre-signed VAPID header). Then `WebPushClient`, which
//! encrypts every push (a fresh P-256 key pair, ECDH, HKDF, AES-GCM) and
//! takes its VAPID header from its cache. The ratio of the two, measured in
//! the same run, is the client's cost; absolute figures vary by machine. The
//! fake (which decrypts and checks every request) runs on its own runtime.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use pushgate_domain::{DeviceType, PushToken, Urgency, WebPushMessage};
use pushgate_providers::webpush::{WebPushClient, WebPushClientConfig, seal};
use pushgate_providers::{Outcome, SystemClock};
use pushgate_testkit::load::{drive, h2_connections, send};
use pushgate_testkit::{Es256Key, FakePushService, TestCa};
use std::sync::Arc;
use std::time::Duration;

const PAYLOAD: &str = r#"{"web_push":8030,"notification":{"title":"Demo Room","body":"Alice: Hello there","tag":"demo-room","navigate":"https://chat.example.com/rooms/demo-room"},"app_badge":3,"type":"chat","loc-key":"im_loc_text","loc-args":["Alice","Hello there"],"messageType":"text","room":"demo-room"}"#;

fn main() {
    let arguments: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let requests = arguments.first().copied().unwrap_or(10_000);
    let concurrency = arguments.get(1).copied().unwrap_or(128);

    let fake_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let ca = TestCa::generate();
    let service = fake_runtime.block_on(FakePushService::start(&ca));
    let browser = service.subscribe();
    let subscription = PushToken::parse(DeviceType::Web, &browser.json().to_string())
        .expect("a subscription")
        .web_subscription()
        .expect("web");
    let vapid = Es256Key::generate();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");

    // Raw capacity: bodies encrypted beforehand, one VAPID header, bare HTTP/2.
    let raw = runtime.block_on(async {
        let origin = subscription.endpoint.origin().ascii_serialization();
        let header = vapid_header(&vapid, &origin);
        let prebuilt: Arc<Vec<http::Request<Bytes>>> = Arc::new(
            (0..requests)
                .map(|_| {
                    let body = seal(PAYLOAD.as_bytes(), &subscription.p256dh, &subscription.auth).expect("encrypted");
                    http::Request::post(subscription.endpoint.as_str())
                        .header("ttl", "3600")
                        .header("urgency", "high")
                        .header("topic", "demo-room")
                        .header("content-encoding", "aes128gcm")
                        .header("content-type", "application/octet-stream")
                        .header("authorization", header.as_str())
                        .body(Bytes::from(body))
                        .expect("request")
                })
                .collect(),
        );
        let endpoint = origin.clone();
        let senders = Arc::new(h2_connections(&endpoint, &ca, 1).await);
        drive(requests, concurrency, move |n| {
            let senders = Arc::clone(&senders);
            let request = prebuilt[n].clone();
            async move { send(&senders[0], request).await == Some(201) }
        })
        .await
    });

    let mut config = WebPushClientConfig::new(vapid.private_pem.clone().into_bytes(), "mailto:ops@example.com");
    config.extra_ca_pem = Some(ca.ca_pem().into_bytes());
    let client = Arc::new(WebPushClient::new(config, Arc::new(SystemClock)).expect("client"));
    let subscription = Arc::new(subscription);
    let message = Arc::new(WebPushMessage {
        payload: PAYLOAD.as_bytes().to_vec(),
        ttl_seconds: 3600,
        urgency: Urgency::High,
        topic: Some("demo-room".into()),
    });
    let measured = runtime.block_on(drive(requests, concurrency, move |_| {
        let (client, subscription, message) = (Arc::clone(&client), Arc::clone(&subscription), Arc::clone(&message));
        async move { client.send(&subscription, &message).await == Outcome::Delivered }
    }));
    // The encryption alone, on this thread: what each push costs the client's CPU before it is sent.
    let encryptions = 2_000;
    let started = std::time::Instant::now();
    for _ in 0..encryptions {
        std::hint::black_box(seal(PAYLOAD.as_bytes(), &browser.p256dh, &browser.auth).expect("encrypted"));
    }
    let encrypt_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(encryptions);
    let delivered = service.received().iter().filter(|push| push.status == 201).count();
    assert_eq!(delivered, 2 * requests, "every push of both runs was accepted");

    println!();
    println!(
        "Web Push client vs the raw capacity of the fake push service ({requests} requests, {concurrency} in flight)"
    );
    println!("{:>16} {:>22} {:>8}", "raw (req/s)", "WebPushClient (req/s)", "ratio");
    println!("{raw:>16.0} {measured:>22.0} {:>8.2}", measured / raw);
    println!("encryption alone (RFC 8291, one thread): {encrypt_us:.0} µs per push");
    println!(
        "{}",
        serde_json::json!({ "benchmark": "webpush_client", "requests": requests, "concurrency": concurrency,
            "raw_rps": raw.round(), "client_rps": measured.round(), "ratio": (measured / raw * 100.0).round() / 100.0,
            "encrypt_us": encrypt_us.round() })
    );
    drop(service);
    fake_runtime.shutdown_timeout(Duration::from_secs(1));
}

/// `vapid t=<JWT>, k=<key>` for `origin`, signed once.
fn vapid_header(key: &Es256Key, origin: &str) -> String {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    use p256::pkcs8::DecodePrivateKey as _;
    let secret = p256::SecretKey::from_pkcs8_pem(&key.private_pem).expect("a key");
    let exp = pushgate_providers::Clock::unix_seconds(&SystemClock) + 3600;
    let claims = serde_json::json!({ "aud": origin, "exp": exp, "sub": "mailto:ops@example.com" });
    let signing = jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()).expect("PKCS#8");
    let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), &claims, &signing)
        .expect("signed");
    let public = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
    format!("vapid t={jwt}, k={public}")
}
