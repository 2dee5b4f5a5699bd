//! Web Push end to end (`web` and `unifiedpush` devices): subscriptions are
//! held to the known push services and the app's own hosts (a guard against
//! request forgery), the browser's key must be a P-256 point, the app's VAPID
//! public key is served to web clients without an API key; pushes reach a
//! push service encrypted and signed, and its answers are acted on.

use crate::helpers::callbacks::{SECRET, message, send};
use crate::helpers::settled;
use crate::helpers::{API_KEY, TestApp};
use base64::Engine as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::{Value, json};

/// How long a peer in another process may take to show what it received.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

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
    let directory = tempfile::tempdir().expect("temp dir");
    let output = crate::helpers::binary::pushgate(directory.path())
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

/// A pushgate whose `SampleApp` also sends Web Push, to a fake push service
/// (trusted through the test CA, allowed as `localhost`).
struct WithPushService {
    setup: crate::helpers::WithProviders,
    service: pushgate_testkit::FakePushService,
    _vapid: tempfile::TempDir,
}

async fn spawn_with_push_service(extra_delivery: &str) -> WithPushService {
    let ca = pushgate_testkit::TestCa::generate();
    let service = pushgate_testkit::FakePushService::start(&ca).await;
    let files = tempfile::tempdir().expect("temp dir");
    let vapid = files.path().join("vapid.pem");
    std::fs::write(&vapid, pushgate_testkit::Es256Key::generate().private_pem).expect("write");
    let ca_file = ca.write_ca_pem(files.path());
    let webpush = format!(
        r#"
[apps.webpush]
vapid_private_key_file = {vapid:?}
subject = "mailto:ops@example.com"
allowed_hosts = ["{host}"]
navigate = "https://chat.example.com/rooms/{{room}}"
ca_file = {ca_file:?}
"#,
        host = service.host()
    );
    let sample_app = format!(r#"generic_push = {{ secret = "{SECRET}" }}"#);
    let setup = crate::helpers::spawn_with_providers_config(extra_delivery, &sample_app, &webpush, &[]).await;
    WithPushService { setup, service, _vapid: files }
}

async fn register(app: &TestApp, subscription: &pushgate_testkit::TestSubscription, device: &str, client: &str) {
    let body =
        json!({ "type": "web", "token": subscription.json(), "deviceId": device, "clientId": client, "locale": "en" });
    let (status, answer) = app.subscribe(body).await;
    assert_eq!(status, 200, "{answer}");
}

async fn push2clients(app: &TestApp, clients: &[&str], payload: Value) -> String {
    crate::helpers::send_push(app, clients, payload).await
}

/// A chat message, a custom push and a read mark reach a browser through a
/// push service: encrypted for its keys, signed with the app's VAPID key,
/// with IMKIT's fields in a Declarative Web Push payload and the headers
/// each kind calls for, over HTTP/2.
#[tokio::test]
async fn chat_custom_and_badge_pushes_reach_a_browser_encrypted_and_declarative() {
    let WithPushService { setup, service, .. } = spawn_with_push_service("").await;
    let app = &setup.app;
    let browser = service.subscribe();
    register(app, &browser, "chrome", "alice").await;
    // An Android app behind a UnifiedPush distributor: the same protocol.
    let distributor = service.subscribe();
    let unified = json!({ "type": "unifiedpush", "token": distributor.json(), "deviceId": "phone", "clientId": "bob" });
    assert_eq!(app.subscribe(unified).await.0, 200);

    send(app, &message("m-1", "demo-room", &["alice", "bob"])).await;
    app.settle().await;
    assert_eq!(service.received().len(), 2);
    assert_eq!(service.delivered_to(&distributor)[0].payload["notification"]["title"], "Demo Room");
    let chat = &service.delivered_to(&browser)[0];
    assert_eq!(
        chat.payload,
        json!({
            "web_push": 8030,
            "notification": { "title": "Demo Room", "body": "SSS: lala", "tag": "demo-room", "lang": "en",
                              "navigate": "https://chat.example.com/rooms/demo-room" },
            "app_badge": 1, "type": "chat", "loc-key": "im_loc_text", "loc-args": ["SSS", "lala"],
            "messageType": "text", "room": "demo-room",
            "payload": chat.payload["payload"].clone(),
        })
    );
    assert_eq!(chat.payload["payload"]["_id"], "m-1", "the message rides along for a service worker");
    assert_eq!(
        (chat.ttl, chat.urgency.as_deref(), chat.topic.as_deref()),
        (Some(3600), Some("high"), Some("demo-room"))
    );
    assert_eq!(chat.version, http::Version::HTTP_2);

    // With a Web Push override block: its headers and notification members win.
    let marketing = json!({ "type": "marketing", "title": "限時優惠", "body": "立即查看!", "badge": 5, "collapseKey": "promo_2026",
                            "webpush": { "headers": { "Urgency": "low", "TTL": "120" },
                                         "notification": { "navigate": "https://chat.example.com/promo", "silent": true } } });
    let push_id = push2clients(app, &["alice"], marketing).await;
    let deliveries = settled(app, &push_id).await;
    assert_eq!(deliveries[0]["status"], "delivered", "{deliveries:?}");
    let custom = &service.delivered_to(&browser)[1];
    assert_eq!(
        custom.payload,
        json!({ "web_push": 8030, "app_badge": 5, "type": "marketing",
                "notification": { "title": "限時優惠", "body": "立即查看!", "tag": "promo_2026",
                                  "navigate": "https://chat.example.com/promo", "silent": true } })
    );
    assert_eq!(
        (custom.urgency.as_deref(), custom.topic.as_deref(), custom.ttl),
        (Some("low"), Some("promo_2026"), Some(120))
    );

    let (status, read) =
        app.post_json("/v1/clients/alice/rooms/demo-room/read", Some(API_KEY), &json!({ "sync": true })).await;
    assert_eq!(status, 200, "{read}");
    app.settle().await;
    assert_eq!(service.received().len(), 4);
    let clear = &service.delivered_to(&browser)[2];
    assert_eq!(
        clear.payload,
        json!({ "app_badge": 0, "type": "clear", "room": "demo-room" }),
        "the service worker closes the room's notifications (their tag) and sets the badge"
    );
    assert_eq!((clear.urgency.as_deref(), clear.topic.as_deref()), (Some("normal"), Some("clear-demo-room")));
    assert!(service.received().iter().all(|push| push.status == 201), "{:?}", service.received());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"pushgate_deliveries_total{app="SampleApp",provider="webpush",result="delivered",reason=""} 4"#
        ),
        "{metrics}"
    );
}

/// What a push service answers decides what becomes of the delivery: 404 and
/// 410 prune the subscription, 413 fails the push and keeps it, 429 and 5xx
/// are tried again after `Retry-After` (seconds or an HTTP-date).
#[tokio::test]
async fn push_service_answers_prune_fail_or_retry_as_the_protocol_says() {
    use pushgate_testkit::PushServiceFailure as Failure;
    let WithPushService { setup, service, .. } = spawn_with_push_service("").await;
    let app = &setup.app;
    let in_two_seconds = httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(2));
    let cases = [
        ("gone", Some(Failure::status(410)), "pruned"),
        ("not-found", Some(Failure::status(404)), "pruned"),
        ("too-large", Some(Failure::status(413)), "failed"),
        ("busy", Some(Failure::retry_after(429, "1")), "delivered"),
        ("busy-until", Some(Failure::retry_after(429, in_two_seconds)), "delivered"),
        ("down", Some(Failure::status(503)), "delivered"),
    ];
    let mut subscriptions = Vec::new();
    for (client, failure, _) in &cases {
        let subscription = service.subscribe();
        if let Some(failure) = failure {
            service.fail_next(&subscription, [failure.clone()]);
        }
        register(app, &subscription, &format!("browser-of-{client}"), client).await;
        subscriptions.push(subscription);
    }
    let clients: Vec<&str> = cases.iter().map(|(client, ..)| *client).collect();
    let push_id = push2clients(app, &clients, json!({ "title": "t", "body": "b" })).await;
    // The first attempts: the busy ones are due again no sooner than their
    // Retry-After (1 s, or a date two seconds ahead) says.
    let attempted_ms = app.clock_ms();
    assert_eq!(app.deliver().await, cases.len());
    let (_, first) = app.get(&format!("/v1/pushes/{push_id}"), Some(API_KEY)).await;
    for busy in ["busy", "busy-until"] {
        let delivery = first["result"]["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d["clientId"] == busy)
            .expect("a delivery")
            .clone();
        assert_eq!(delivery["status"], "retrying", "{delivery}");
        let due_ms = delivery["nextAttemptAtMS"].as_i64().expect("a due time");
        assert!(due_ms >= attempted_ms + 1000, "{busy}: Retry-After honoured, due {} ms after", due_ms - attempted_ms);
    }
    let deliveries = settled(app, &push_id).await;
    for ((client, _, expected), subscription) in cases.iter().zip(&subscriptions) {
        let delivery = deliveries.iter().find(|d| d["clientId"] == *client).expect("a delivery per client");
        assert_eq!(delivery["status"], *expected, "{client}: {delivery}");
        if *client == "gone" {
            let explanation = delivery["explanation"].as_str().unwrap_or_default();
            assert!(explanation.contains("unsubscribed"), "a person reads what Gone means: {delivery}");
        }
        let kept = !app.devices_of(client).await.is_empty();
        assert_eq!(kept, *expected != "pruned", "{client}: a gone subscription is deleted, any other kept");
        let tries: Vec<_> =
            service.received().into_iter().filter(|push| push.subscription == subscription.id).collect();
        if *expected == "delivered" {
            assert_eq!(tries.len(), 2, "{client}");
        }
    }
}

/// A push service refusing the VAPID credentials (401/403) pauses the app's
/// Web Push, keeps every subscription, and a probe resumes it.
#[tokio::test]
async fn a_refused_vapid_token_pauses_web_push_and_keeps_the_subscription() {
    let WithPushService { setup, service, .. } = spawn_with_push_service("pause_base_ms = 1500").await;
    let app = &setup.app;
    let browser = service.subscribe();
    service.fail_next(&browser, [pushgate_testkit::PushServiceFailure::status(403)]);
    register(app, &browser, "firefox", "alice").await;
    let push_id = push2clients(app, &["alice"], json!({ "title": "t", "body": "b" })).await;
    assert_eq!(app.deliver().await, 1);
    let (_, body) = app.get("/readyz", None).await;
    let paused = body["result"]["pausedProviders"].as_array().cloned().unwrap_or_default();
    assert_eq!(paused.len(), 1, "{body}");
    assert_eq!((paused[0]["provider"].clone(), paused[0]["reason"].clone()), (json!("webpush"), json!("Forbidden")));
    let deliveries = settled(app, &push_id).await;
    assert_eq!((deliveries[0]["status"].clone(), deliveries[0]["attempts"].clone()), (json!("delivered"), json!(2)));
    assert_eq!(app.devices_of("alice").await.len(), 1, "a credential refusal never touches a subscription");
}

/// Through `web-push-testing`, a push service nobody here wrote: a web client
/// subscribes with the app's VAPID public key (from pushgate's route), the
/// service verifies pushgate's VAPID token against it and decrypts; the
/// payload it reads is IMKIT's. A subscription it then expires is pruned.
#[tokio::test]
async fn pushes_reach_npm_web_push_testing_verified_and_decrypted() {
    let node = pushgate_testkit::node_peers();
    let service = node.start_web_push_testing().await;
    let files = tempfile::tempdir().expect("temp dir");
    let vapid = files.path().join("vapid.pem");
    std::fs::write(&vapid, pushgate_testkit::Es256Key::generate().private_pem).expect("write");
    let config = format!(
        r#"
[delivery]
retry_base_ms = 20
poll_interval_ms = 50

[[apps]]
id = "SampleApp"
api_keys = ["{API_KEY}"]
generic_push = {{ secret = "{SECRET}" }}
[apps.webpush]
vapid_private_key_file = {vapid:?}
subject = "mailto:ops@example.com"
allowed_hosts = ["{host}"]
allow_plain_http = true
navigate = "https://chat.example.com/rooms/{{room}}"
"#,
        host = service.host()
    );
    let app = TestApp::spawn_with(Some(&config), &[]).await;
    let (_, key) = app.get("/webpush/SampleApp/vapid-public-key", None).await;
    let subscription = service.subscribe(key["result"]["publicKey"].as_str().expect("a key")).await;
    let client_hash = subscription["clientHash"].as_str().expect("a client hash").to_owned();
    let token = json!({ "endpoint": subscription["endpoint"], "keys": subscription["keys"] });
    let (status, body) =
        app.subscribe(json!({ "type": "web", "token": token, "deviceId": "chrome", "clientId": "alice" })).await;
    assert_eq!(status, 200, "{body}");

    send(&app, &message("m-1", "demo-room", &["alice"])).await;
    let push_id = push2clients(&app, &["alice"], json!({ "title": "限時優惠", "body": "立即查看!", "badge": 2 })).await;
    settled(&app, &push_id).await;
    // web-push-testing accepted both (they are delivered); its own list of
    // them is read from another process.
    let messages = crate::helpers::eventually(WAIT, "two messages at web-push-testing", || async {
        let messages = service.notifications(&client_hash).await;
        (messages.len() >= 2).then_some(messages)
    })
    .await;
    let mut payloads: Vec<Value> =
        messages.iter().map(|message| serde_json::from_str(message).expect("a JSON payload")).collect();
    payloads.sort_by_key(|payload| payload["type"] != "chat");
    assert_eq!(payloads[0]["notification"]["title"], "Demo Room", "{payloads:?}");
    assert_eq!((payloads[0]["web_push"].clone(), payloads[0]["app_badge"].clone()), (json!(8030), json!(1)));
    assert_eq!(payloads[0]["loc-key"], "im_loc_text");
    assert_eq!(
        payloads[1]["notification"],
        json!({ "title": "限時優惠", "body": "立即查看!", "navigate": "https://chat.example.com/" })
    );

    service.expire(&client_hash).await;
    let push_id = push2clients(&app, &["alice"], json!({ "body": "gone?" })).await;
    let deliveries = settled(&app, &push_id).await;
    assert_eq!(deliveries[0]["status"], "pruned", "{deliveries:?}");
    assert!(app.devices_of("alice").await.is_empty(), "an expired subscription is deleted");
}

/// The README's service-worker snippet for clear pushes, run by Node.js on
/// what pushgate sent a browser: the room's notification (shown from the
/// chat push pushgate sent before, its `tag`) closes, another room's stays,
/// and the app badge takes the new count; a chat push closes nothing.
#[tokio::test]
async fn npm_the_readmes_service_worker_snippet_closes_the_rooms_notifications() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let snippet = readme
        .split_once("<!-- clear-service-worker -->\n```js\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(snippet, _)| snippet.to_owned())
        .expect("the README's service-worker snippet");
    let WithPushService { setup, service, .. } = spawn_with_push_service("").await;
    let app = &setup.app;
    let browser = service.subscribe();
    register(app, &browser, "chrome", "alice").await;
    send(app, &message("m-1", "demo-room", &["alice"])).await;
    app.settle().await;
    let (status, read) =
        app.post_json("/v1/clients/alice/rooms/demo-room/read", Some(API_KEY), &json!({ "sync": true })).await;
    assert_eq!(status, 200, "{read}");
    app.settle().await;
    let received = service.delivered_to(&browser);
    let (chat, clear) = (&received[0].payload, &received[1].payload);
    let run = async |payload: &Value| -> Value {
        let harness = format!(
            r#"
const closed = [], listeners = {{}};
let badge = null;
const shown = [{{ tag: {room}, close() {{ closed.push(this.tag); }} }}, {{ tag: "other-room", close() {{ closed.push(this.tag); }} }}];
globalThis.self = {{
  addEventListener: (type, listener) => {{ listeners[type] = listener; }},
  registration: {{ getNotifications: async ({{ tag }} = {{}}) => shown.filter((n) => tag === undefined || n.tag === tag) }},
}};
Object.defineProperty(globalThis, "navigator", {{ value: {{ setAppBadge: async (n) => {{ badge = n; }} }}, configurable: true }});
{snippet}
const pending = [];
listeners.push({{ data: {{ json: () => ({payload}) }}, waitUntil: (promise) => pending.push(promise) }});
Promise.all(pending).then(() => console.log(JSON.stringify({{ closed, badge }})));
"#,
            room = chat["notification"]["tag"],
        );
        let output = tokio::process::Command::new("node")
            .args(["--input-type=commonjs", "-e", &harness])
            .output()
            .await
            .expect("Node.js runs (cargo xtask test leaves this test out without it)");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("the harness prints JSON")
    };
    assert_eq!(run(clear).await, json!({ "closed": ["demo-room"], "badge": 0 }), "{clear}");
    assert_eq!(run(chat).await, json!({ "closed": [], "badge": null }), "a chat push closes nothing");
}
