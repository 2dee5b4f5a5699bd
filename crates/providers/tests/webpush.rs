//! The Web Push client against the fake push service (real HTTPS, HTTP/2,
//! RFC 8291 encryption, RFC 8292 VAPID), and the encryption cross-checked in
//! both directions against npm `web-push` and its `http_ece`, code nobody
//! here wrote: what we encrypt, they decrypt; what they encrypt, we decrypt;
//! what the reference library sends, our fake accepts.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::DecodePrivateKey as _;
use pushgate_domain::{Reason, Urgency, WebPushMessage, WebPushSubscription};
use pushgate_providers::webpush::{WebPushClient, WebPushClientConfig};
use pushgate_providers::{Outcome, SystemClock};
use pushgate_testkit::{Es256Key, FakePushService, TestCa, TestSubscription, node_peers};
use serde_json::json;
use std::sync::Arc;

/// The subscription as pushgate stores it, parsed from the browser's JSON.
fn parsed(subscription: &TestSubscription) -> WebPushSubscription {
    pushgate_domain::PushToken::parse(pushgate_domain::DeviceType::Web, &subscription.json().to_string())
        .expect("a subscription")
        .web_subscription()
        .expect("web")
}

fn client(ca: &TestCa, key: &Es256Key) -> WebPushClient {
    let mut config = WebPushClientConfig::new(key.private_pem.clone().into_bytes(), "mailto:ops@example.com");
    config.extra_ca_pem = Some(ca.ca_pem().into_bytes());
    WebPushClient::new(config, Arc::new(SystemClock)).expect("a client")
}

fn message(payload: &str) -> WebPushMessage {
    WebPushMessage {
        payload: payload.as_bytes().to_vec(),
        ttl_seconds: 60,
        urgency: Urgency::High,
        topic: Some("room-1".into()),
    }
}

#[tokio::test]
async fn a_push_is_encrypted_signed_and_accepted_by_the_fake_push_service() {
    let ca = TestCa::generate();
    let service = FakePushService::start(&ca).await;
    let browser = service.subscribe();
    let client = client(&ca, &Es256Key::generate());
    let payload = r#"{"web_push":8030,"notification":{"title":"Demo Room","body":"SSS: lala"}}"#;
    assert_eq!(client.send(&parsed(&browser), &message(payload)).await, Outcome::Delivered);
    let received = &service.delivered_to(&browser)[0];
    assert_eq!(received.payload, serde_json::from_str::<serde_json::Value>(payload).expect("JSON"));
    assert_eq!(
        (received.ttl, received.urgency.as_deref(), received.topic.as_deref()),
        (Some(60), Some("high"), Some("room-1"))
    );
    assert_eq!(received.version, http::Version::HTTP_2);
    assert_eq!(received.body.len(), 86 + payload.len() + 17, "one aes128gcm record: header, text, delimiter, tag");

    service.fail_next(&browser, [pushgate_testkit::PushServiceFailure::with_body(400, "Invalid\nTopic header")]);
    assert_eq!(
        client.send(&parsed(&browser), &message(payload)).await,
        Outcome::Rejected { reason: Reason::provider_with("BadRequest", "400 InvalidTopic header") },
        "the service's own words, without control characters"
    );
    let too_big = "x".repeat(pushgate_domain::MAX_WEBPUSH_BYTES + 1);
    assert_eq!(
        client.send(&parsed(&browser), &message(&too_big)).await,
        Outcome::Rejected { reason: Reason::provider("PayloadTooLarge") }
    );
    assert_eq!(service.received().len(), 2, "a payload too big is refused before it is sent");
}

/// What we encrypt, `http_ece` (web-push's decrypter) decrypts with the
/// browser's private key.
#[tokio::test]
async fn http_ece_from_npm_decrypts_what_we_encrypt() {
    let node = node_peers();
    let ca = TestCa::generate();
    let service = FakePushService::start(&ca).await;
    let browser = service.subscribe();
    let payload = r#"{"app_badge":3,"text":"長いメッセージ ✓"}"#;
    assert_eq!(client(&ca, &Es256Key::generate()).send(&parsed(&browser), &message(payload)).await, Outcome::Delivered);
    let body = service.delivered_to(&browser)[0].body.clone();
    let input = json!({ "privateKey": browser.private_key(), "publicKey": browser.p256dh, "auth": browser.auth, "body": STANDARD.encode(&body) });
    let decrypted = node.run("decrypt", &input, None).await;
    assert_eq!(decrypted["payload"], payload);
}

/// What npm `web-push` encrypts, we decrypt (the same `aes128gcm` code the
/// client encrypts with).
#[tokio::test]
async fn we_decrypt_what_npm_web_push_encrypts() {
    let node = node_peers();
    let browser = TestSubscription::generate("x", "https://push.example.net/x");
    let payload = r#"{"notification":{"title":"héllo"}}"#;
    let encrypted =
        node.run("encrypt", &json!({ "p256dh": browser.p256dh, "auth": browser.auth, "payload": payload }), None).await;
    let body = STANDARD.decode(encrypted["body"].as_str().expect("base64")).expect("base64");
    assert_eq!(browser.decrypt(&body).expect("decrypts"), payload.as_bytes());
}

/// Our fake push service accepts what the reference library sends (VAPID,
/// headers, encryption): the fake the other tests rely on speaks the protocol.
#[tokio::test]
async fn the_fake_push_service_accepts_what_npm_web_push_sends() {
    let node = node_peers();
    let ca = TestCa::generate();
    let ca_file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(ca_file.path(), ca.ca_pem()).expect("write");
    let service = FakePushService::start(&ca).await;
    let browser = service.subscribe();
    let vapid = p256::SecretKey::from_pkcs8_pem(&Es256Key::generate().private_pem).expect("a key");
    let input = json!({
        "subscription": browser.json(),
        "payload": r#"{"app_badge":1}"#,
        "vapid": {
            "subject": "mailto:ops@example.com",
            "publicKey": URL_SAFE_NO_PAD.encode(vapid.public_key().to_encoded_point(false).as_bytes()),
            "privateKey": URL_SAFE_NO_PAD.encode(vapid.to_bytes()),
        },
        "options": { "TTL": 120, "urgency": "low", "topic": "badge" },
    });
    assert_eq!(node.run("send", &input, Some(ca_file.path())).await["statusCode"], 201);
    let received = &service.delivered_to(&browser)[0];
    assert_eq!(received.payload, json!({ "app_badge": 1 }));
    assert_eq!(
        (received.ttl, received.urgency.as_deref(), received.topic.as_deref()),
        (Some(120), Some("low"), Some("badge"))
    );
}
