//! Web Push registration and keys (`web` and `unifiedpush` devices):
//! subscriptions are held to the known push
//! services and the app's own hosts (a guard against request forgery), the
//! browser's key must be a P-256 point, and the app's VAPID public key is
//! served to web clients without an API key.

use crate::helpers::{API_KEY, TestApp};
use base64::Engine as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{Value, json};

const TEST_PUSH_KEY: &str = "key-of-test-push-0001";

/// A browser's PushSubscription for `endpoint`, with a real P-256 key.
pub fn subscription(endpoint: &str) -> Value {
    let browser = p256::SecretKey::from_slice(&[9u8; 32]).expect("a scalar");
    let p256dh = browser.public_key().to_encoded_point(false);
    let base64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    json!({ "endpoint": endpoint, "keys": { "p256dh": base64url.encode(p256dh.as_bytes()), "auth": base64url.encode([7u8; 16]) } })
}

/// `SampleApp` without Web Push settings, and `TestPush` with a VAPID key,
/// a distributor's hosts and plain HTTP allowed.
async fn spawn(vapid_private_pem: &str) -> (TestApp, tempfile::TempDir) {
    let files = tempfile::tempdir().expect("temp dir");
    let vapid = files.path().join("vapid.pem");
    std::fs::write(&vapid, vapid_private_pem).expect("write");
    let config = format!(
        r#"
[[apps]]
id = "SampleApp"
api_keys = ["{API_KEY}"]

[[apps]]
id = "TestPush"
api_keys = ["{TEST_PUSH_KEY}"]
[apps.webpush]
vapid_private_key_file = {vapid:?}
subject = "mailto:ops@example.com"
allowed_hosts = ["*.example.net"]
allow_plain_http = true
"#
    );
    (TestApp::spawn_with(Some(&config), &[]).await, files)
}

fn web(endpoint: &str, device: &str) -> Value {
    json!({ "type": "web", "token": subscription(endpoint), "deviceId": device, "clientId": "alice" })
}

#[tokio::test]
async fn subscriptions_are_held_to_known_push_services_and_the_apps_own_hosts() {
    let (app, _files) = spawn(&pushgate_testkit::Es256Key::generate().private_pem).await;
    let subscribe = |key: &'static str, body: Value| {
        let app = &app;
        async move { app.post_json("/me/subscribe", Some(key), &body).await }
    };
    assert_eq!(subscribe(API_KEY, web("https://fcm.googleapis.com/fcm/send/abc", "chrome")).await.0, 200);
    let (status, body) = subscribe(API_KEY, web("https://push.example.net/up/abc", "firefox")).await;
    assert_eq!(
        (status, body["RC"].clone(), body["error"]["code"].clone()),
        (400, json!(400), json!("INVALID_PARAMETER"))
    );
    assert_eq!(
        body["error"]["message"],
        "token.endpoint: push.example.net is not a known push service nor one of this app's webpush.allowed_hosts"
    );
    let (status, body) = subscribe(API_KEY, web("http://fcm.googleapis.com/fcm/send/abc", "plain")).await;
    assert_eq!((status, body["error"]["message"].clone()), (400, json!("token.endpoint must be an https URL")));
    assert_eq!(app.devices_of("alice").await.len(), 1, "nothing stored for a refused subscription");

    for (endpoint, device) in
        [("https://push.example.net/up/abc", "distributor"), ("http://push.example.net/x", "plain")]
    {
        assert_eq!(subscribe(TEST_PUSH_KEY, web(endpoint, device)).await.0, 200, "{endpoint}");
    }
    let (status, body) = subscribe(TEST_PUSH_KEY, web("http://127.0.0.1:8080/admin", "internal")).await;
    assert_eq!(status, 400, "{body}");
    // A UnifiedPush distributor's endpoint: the same subscription shape, held
    // to the same hosts.
    let mut unified = web("https://up.example.net/up/xyz", "phone");
    unified["type"] = json!("unifiedpush");
    assert_eq!(subscribe(API_KEY, unified.clone()).await.0, 400, "not a host SampleApp allows");
    assert_eq!(subscribe(TEST_PUSH_KEY, unified).await.0, 200);
    let (_, listed) = app.get("/v1/clients/alice/devices", Some(TEST_PUSH_KEY)).await;
    let types: Vec<&str> =
        listed["result"]["devices"].as_array().expect("devices").iter().filter_map(|d| d["type"].as_str()).collect();
    assert_eq!(types, ["web", "web", "unifiedpush"], "{listed}");

    let mut not_a_point = web("https://fcm.googleapis.com/fcm/send/def", "bad-key");
    not_a_point["token"]["keys"]["p256dh"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([4u8; 65]));
    let (status, body) = subscribe(API_KEY, not_a_point).await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("token.keys.p256dh"), "{body}");
}

#[tokio::test]
async fn the_apps_vapid_public_key_is_served_without_an_api_key() {
    let key = pushgate_testkit::Es256Key::generate();
    let (app, _files) = spawn(&key.private_pem).await;
    let (status, body) = app.get("/webpush/TestPush/vapid-public-key", None).await;
    assert_eq!(status, 200, "{body}");
    use p256::pkcs8::DecodePublicKey as _;
    let public = p256::PublicKey::from_public_key_pem(&key.public_pem).expect("SPKI PEM");
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.to_encoded_point(false).as_bytes());
    assert_eq!(body["result"]["publicKey"], expected, "the uncompressed point of the configured key, base64url");
    for other in ["/webpush/SampleApp/vapid-public-key", "/webpush/NoSuchApp/vapid-public-key"] {
        let (status, body) = app.get(other, None).await;
        assert_eq!((status, body["error"]["code"].clone()), (404, json!("NOT_FOUND")), "{other}: {body}");
    }
}

/// `pushgate keys vapid` prints a private key pushgate takes as
/// `vapid_private_key_file`, and the public key it then serves.
#[tokio::test]
async fn keys_vapid_prints_a_key_pair_pushgate_serves() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["keys", "vapid"])
        .output()
        .await
        .expect("pushgate runs");
    assert!(output.status.success(), "{output:?}");
    let private_pem = String::from_utf8(output.stdout).expect("utf-8");
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{private_pem}");
    let printed = String::from_utf8(output.stderr).expect("utf-8");
    let public_key = printed.trim().rsplit(' ').next().expect("a key").to_owned();
    let (app, _files) = spawn(&private_pem).await;
    let (_, body) = app.get("/webpush/TestPush/vapid-public-key", None).await;
    assert_eq!(body["result"]["publicKey"], public_key);
    let point = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&public_key).expect("base64url");
    assert!(point.len() == 65 && point[0] == 4 && p256::PublicKey::from_sec1_bytes(&point).is_ok());
}
