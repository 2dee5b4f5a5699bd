//! Private payloads end to end (`[apps.privacy]`): a device registered with a
//! `pushKey` gets its chat alerts sealed to it (RFC 8291), so what reaches
//! the fake APNs and FCM holds no text, sender or room name; the device's
//! private key opens it to exactly the push the device would have got in
//! clear. Checked with pushgate's test kit and with npm `http_ece`, an
//! implementation nobody on the project wrote.

use crate::callbacks::APNS_TOKEN_2;
use crate::helpers::callbacks::{SECRET, message, send, spawn_with};
use crate::helpers::{APNS_TOKEN, WithProviders, ios_device};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pushgate_testkit::TestSubscription;
use serde_json::{Value, json};

/// A pushgate with `privacy` as `SampleApp`'s `[apps.privacy]`; alice's
/// iPhone and Android phone registered with keys, bob's without.
async fn spawn_private(privacy: &str) -> (WithProviders, TestSubscription, TestSubscription) {
    let setup = spawn_with(&format!("generic_push = {{ secret = \"{SECRET}\" }}\nprivacy = {{ {privacy} }}"), "").await;
    let app = &setup.app;
    let (iphone_key, pixel_key) = (key(), key());
    let mut iphone = ios_device("iphone-a", "alice", APNS_TOKEN);
    iphone["pushKey"] = iphone_key.push_key();
    let pixel = json!({ "type": "fcm", "token": "fcm-alice", "deviceId": "pixel-a", "clientId": "alice", "pushKey": pixel_key.push_key() });
    for device in [
        iphone,
        pixel,
        ios_device("iphone-b", "bob", APNS_TOKEN_2),
        json!({ "type": "fcm", "token": "fcm-bob", "deviceId": "pixel-b", "clientId": "bob" }),
    ] {
        let (status, answer) = app.subscribe(device).await;
        assert_eq!(status, 200, "{answer}");
    }
    (setup, iphone_key, pixel_key)
}

/// An app's key pair (its private half stays in the app).
fn key() -> TestSubscription {
    TestSubscription::generate("device", "https://unused.example")
}

/// The APNs payloads and FCM messages (without the token) each device got.
fn received(setup: &WithProviders) -> (Value, Value, Value, Value) {
    let apns = setup.apns.delivered();
    let apns_of = |token: &str| apns.iter().find(|r| r.device_token == token).expect("an APNs push").payload.clone();
    let fcm = setup.fcm.messages();
    let fcm_of = |token: &str| {
        let mut message = fcm.iter().find(|m| m.token == token).expect("an FCM message").message.clone();
        message.as_object_mut().expect("a message").remove("token");
        message
    };
    (apns_of(APNS_TOKEN), fcm_of("fcm-alice"), apns_of(APNS_TOKEN_2), fcm_of("fcm-bob"))
}

fn sealed(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value.as_str().expect("a sealed push")).expect("base64url")
}

fn assert_nothing_readable(what: &str, text: &str) {
    for clear in ["lala", "SSS", "Demo Room"] {
        assert!(!text.contains(clear), "{what} carries {clear:?}: {text}");
    }
}

#[tokio::test]
async fn a_device_with_a_key_gets_only_ciphertext_that_opens_to_the_push_it_would_have_got() {
    let (setup, iphone_key, pixel_key) = spawn_private(r#"mode = "encrypt", fallback = "clear""#).await;
    let app = &setup.app;
    send(app, &message("m1", "demo-room", &["alice", "bob"])).await;
    app.settle().await;
    let (alice_apns, alice_fcm, bob_apns, bob_fcm) = received(&setup);
    // On the wire: a neutral alert and the ciphertext, nothing else readable.
    assert_eq!(
        alice_apns["aps"],
        json!({ "alert": { "loc-key": "im_loc_private", "body": "New message" }, "mutable-content": 1, "badge": 1,
                "sound": "default", "thread-id": "demo-room" })
    );
    assert_nothing_readable("alice's APNs push", &alice_apns.to_string());
    assert!(alice_fcm.get("notification").is_none(), "data only: {alice_fcm}");
    assert_eq!((&alice_fcm["data"]["type"], &alice_fcm["data"]["room"]), (&json!("chat"), &json!("demo-room")));
    assert_eq!(alice_fcm["android"]["priority"], "high");
    assert_nothing_readable("alice's FCM message", &alice_fcm.to_string());
    // bob has no key, and the fallback is clear: the message as always.
    assert_eq!(bob_apns["aps"]["alert"]["body"], "SSS: lala");
    // Opened with the device's private key: exactly what bob got in clear.
    let opened = iphone_key.decrypt(&sealed(&alice_apns["encrypted"])).expect("the iPhone's key opens it");
    assert_eq!(serde_json::from_slice::<Value>(&opened).expect("JSON"), bob_apns);
    let opened = pixel_key.decrypt(&sealed(&alice_fcm["data"]["encrypted"])).expect("the phone's key opens it");
    assert_eq!(serde_json::from_slice::<Value>(&opened).expect("JSON"), bob_fcm);
}

#[tokio::test]
async fn id_only_and_a_device_without_a_key_get_the_message_id_and_room_only() {
    // encrypt, with the default fallback (id_only): bob has no key.
    let (setup, _, _) = spawn_private(r#"mode = "encrypt""#).await;
    send(&setup.app, &message("m1", "demo-room", &["alice", "bob"])).await;
    setup.app.settle().await;
    let (alice_apns, _, bob_apns, bob_fcm) = received(&setup);
    assert!(alice_apns.get("encrypted").is_some());
    assert_eq!((&bob_apns["messageId"], &bob_apns["room"]), (&json!("m1"), &json!("demo-room")));
    assert!(bob_apns.get("encrypted").is_none());
    assert_eq!(bob_fcm["data"], json!({ "type": "chat", "room": "demo-room", "messageId": "m1", "badge": "1" }));
    for (what, text) in [("bob's APNs push", bob_apns.to_string()), ("bob's FCM message", bob_fcm.to_string())] {
        assert_nothing_readable(what, &text);
    }
    // id_only: every device, key or not.
    let (setup, _, _) = spawn_private(r#"mode = "id_only""#).await;
    send(&setup.app, &message("m2", "demo-room", &["alice", "bob"])).await;
    setup.app.settle().await;
    let (alice_apns, alice_fcm, _, _) = received(&setup);
    assert_eq!((&alice_apns["messageId"], alice_apns.get("encrypted")), (&json!("m2"), None));
    assert_eq!(alice_fcm["data"]["messageId"], "m2");
    assert_nothing_readable("alice's APNs push", &alice_apns.to_string());
}

/// npm `http_ece` (what the `web-push` library decrypts with) opens what
/// pushgate sealed, to the same clear push.
#[tokio::test]
async fn npm_http_ece_opens_a_private_payload_to_the_clear_push() {
    let node = pushgate_testkit::node_peers();
    let (setup, iphone_key, pixel_key) = spawn_private(r#"mode = "encrypt", fallback = "clear""#).await;
    send(&setup.app, &message("m1", "demo-room", &["alice", "bob"])).await;
    setup.app.settle().await;
    let (alice_apns, alice_fcm, bob_apns, bob_fcm) = received(&setup);
    for (key, sealed_push, clear) in
        [(&iphone_key, &alice_apns["encrypted"], bob_apns), (&pixel_key, &alice_fcm["data"]["encrypted"], bob_fcm)]
    {
        let input =
            json!({ "privateKey": key.private_key(), "auth": key.auth, "body": STANDARD.encode(sealed(sealed_push)) });
        let opened = node.run("decrypt", &input, None).await;
        let opened: Value = serde_json::from_str(opened["payload"].as_str().expect("the plaintext")).expect("JSON");
        assert_eq!(opened, clear);
    }
}

/// The README's JavaScript snippet, run by Node.js (with npm `http_ece`) on
/// what pushgate sealed to an iPhone: it opens to the clear push.
#[tokio::test]
async fn npm_the_readmes_javascript_snippet_opens_a_private_payload() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let snippet = readme
        .split_once("<!-- private-payload-js -->\n```js\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(snippet, _)| snippet.to_owned())
        .expect("the README's JavaScript snippet");
    pushgate_testkit::node_peers(); // installs http_ece
    let modules = concat!(env!("CARGO_MANIFEST_DIR"), "/../testkit/node/node_modules");
    let (setup, iphone_key, _) = spawn_private(r#"mode = "encrypt", fallback = "clear""#).await;
    send(&setup.app, &message("m1", "demo-room", &["alice", "bob"])).await;
    setup.app.settle().await;
    let (alice_apns, _, bob_apns, _) = received(&setup);
    let harness = format!(
        "{snippet}\nconsole.log(JSON.stringify(openPrivatePush({encrypted}, {private}, {auth})));",
        encrypted = alice_apns["encrypted"],
        private = json!(iphone_key.private_key()),
        auth = json!(iphone_key.auth),
    );
    let output = tokio::process::Command::new("node")
        .args(["-e", &harness])
        .env("NODE_PATH", modules)
        .output()
        .await
        .expect("Node.js runs (cargo xtask test leaves this test out without it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let opened: Value = serde_json::from_slice(&output.stdout).expect("the snippet prints JSON");
    assert_eq!(opened, bob_apns, "the clear push");
}
