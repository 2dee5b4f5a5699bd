//! `/me/subscribe`, `/me/unsubscribe` and `GET /v1/clients/{clientId}/devices`.

use crate::helpers::{API_KEY, APNS_TOKEN, TestApp, error_envelope, ios_device};
use serde_json::json;

#[tokio::test]
async fn subscribe_answers_as_imkit_documents_it() {
    let app = TestApp::spawn().await;
    let (status, body) = app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "RC": 0, "RM": "OK", "result": {} }));
    let devices = app.devices_of("user001").await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["type"], "ios");
    assert_eq!(devices[0]["deviceId"], "iphone-1");
    assert_eq!(devices[0]["token"], "********61bb78ad");
    assert_eq!(devices[0]["environment"], "production", "the app's default environment");
}

#[tokio::test]
async fn subscribing_again_updates_the_token_of_the_same_device() {
    let app = TestApp::spawn().await;
    let other_token = APNS_TOKEN.replace("740f", "0000");
    assert_eq!(app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
    let first = app.devices_of("user001").await;
    let (status, body) = app.subscribe(ios_device("iphone-1", "user001", &other_token)).await;
    assert_eq!((status, &body), (200, &json!({ "RC": 0, "RM": "OK", "result": {} })));
    let devices = app.devices_of("user001").await;
    assert_eq!(devices.len(), 1, "(type, deviceId) identifies the device");
    assert_eq!(devices[0]["createdAtMS"], first[0]["createdAtMS"]);
    assert!(devices[0]["updatedAtMS"].as_i64() >= first[0]["updatedAtMS"].as_i64());
    // The same call twice changes nothing more.
    assert_eq!(app.subscribe(ios_device("iphone-1", "user001", &other_token)).await.0, 200);
    assert_eq!(app.devices_of("user001").await.len(), 1);
}

#[tokio::test]
async fn a_token_registered_by_another_client_moves_to_that_client() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe(ios_device("old-phone", "alice", APNS_TOKEN)).await.0, 200);
    assert_eq!(app.subscribe(ios_device("new-phone", "bob", APNS_TOKEN)).await.0, 200);
    assert!(app.devices_of("alice").await.is_empty(), "alice's binding is removed");
    let bobs = app.devices_of("bob").await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["deviceId"], "new-phone");
}

#[tokio::test]
async fn android_and_fcm_registrations_of_one_token_are_one_binding() {
    let app = TestApp::spawn().await;
    let android = json!({ "type": "android", "token": "fcm-token-xyz", "deviceId": "d1", "clientId": "alice" });
    let fcm = json!({ "type": "fcm", "token": "fcm-token-xyz", "deviceId": "d2", "clientId": "bob" });
    assert_eq!(app.subscribe(android).await.0, 200);
    assert_eq!(app.subscribe(fcm).await.0, 200);
    assert!(app.devices_of("alice").await.is_empty());
    assert_eq!(app.devices_of("bob").await[0]["type"], "fcm");
}

#[tokio::test]
async fn unsubscribe_answers_n_and_ok_and_may_be_repeated() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
    let request = json!({ "type": "ios", "deviceId": "iphone-1", "clientId": "user001" });
    let (status, body) = app.post_json("/me/unsubscribe", Some(API_KEY), &request).await;
    assert_eq!((status, body), (200, json!({ "RC": 0, "RM": "OK", "result": { "n": 1, "ok": 1 } })));
    let (status, body) = app.post_json("/me/unsubscribe", Some(API_KEY), &request).await;
    assert_eq!((status, body), (200, json!({ "RC": 0, "RM": "OK", "result": { "n": 0, "ok": 1 } })));
    assert!(app.devices_of("user001").await.is_empty());
}

#[tokio::test]
async fn unsubscribe_does_not_remove_another_clients_device() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe(ios_device("iphone-1", "alice", APNS_TOKEN)).await.0, 200);
    let request = json!({ "type": "ios", "deviceId": "iphone-1", "clientId": "mallory" });
    let (_, body) = app.post_json("/me/unsubscribe", Some(API_KEY), &request).await;
    assert_eq!(body["result"]["n"], 0);
    assert_eq!(app.devices_of("alice").await.len(), 1);
}

#[tokio::test]
async fn subscribe_without_its_required_fields_gives_imkits_message() {
    let app = TestApp::spawn().await;
    let expected = error_envelope(400, "Bad Request", "MISSING_PARAMETER", "type, token and deviceId are required");
    for body in [
        json!({ "token": APNS_TOKEN, "deviceId": "d", "clientId": "c" }),
        json!({ "type": "ios", "deviceId": "d", "clientId": "c" }),
        json!({ "type": "ios", "token": APNS_TOKEN, "clientId": "c" }),
        json!({ "type": "ios", "token": "", "deviceId": "d", "clientId": "c" }),
        json!({ "type": "ios", "token": null, "deviceId": "d", "clientId": "c" }),
    ] {
        let (status, answer) = app.subscribe(body.clone()).await;
        assert_eq!((status, &answer), (400, &expected), "for {body}");
    }
}

#[tokio::test]
async fn unsubscribe_without_its_required_fields_gives_imkits_message() {
    let app = TestApp::spawn().await;
    let (status, body) =
        app.post_json("/me/unsubscribe", Some(API_KEY), &json!({ "type": "ios", "clientId": "c" })).await;
    assert_eq!(status, 400);
    assert_eq!(body, error_envelope(400, "Bad Request", "MISSING_PARAMETER", "type and deviceId are required"));
}

#[tokio::test]
async fn a_missing_client_id_with_an_api_key_is_a_missing_parameter() {
    let app = TestApp::spawn().await;
    let (status, body) = app.subscribe(json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "d" })).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        json!({ "code": "MISSING_PARAMETER", "message": "clientId is required with IM-API-KEY" })
    );
}

#[tokio::test]
async fn a_missing_or_unknown_api_key_gives_imkits_401() {
    let app = TestApp::spawn().await;
    let expected = error_envelope(401, "Unauthorized", "INVALID_API_KEY", "Invalid or missing API key");
    let body = ios_device("d", "c", APNS_TOKEN);
    assert_eq!(app.post_json("/me/subscribe", None, &body).await, (401, expected.clone()));
    assert_eq!(app.post_json("/me/subscribe", Some("not-the-key-at-all"), &body).await, (401, expected.clone()));
    assert_eq!(app.get("/v1/clients/c/devices", None).await, (401, expected));
}

#[tokio::test]
async fn a_client_token_is_refused_as_imkit_refuses_a_bad_one() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(format!("{}/me/subscribe", app.base_url))
        .header("IM-CLIENT-KEY", "client-key")
        .header("IM-Authorization", "some-client-token")
        .json(&ios_device("d", "c", APNS_TOKEN))
        .send()
        .await
        .expect("sent");
    let (status, body) = crate::helpers::read(response).await;
    assert_eq!((status, body), (401, error_envelope(401, "Unauthorized", "INVALID_TOKEN", "Invalid or expired token")));
}

#[tokio::test]
async fn each_bad_field_is_named_in_the_error() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({ "type": "windows", "token": "t", "deviceId": "d", "clientId": "c" }),
            "type must be one of ios, ios-voip, android, fcm, web, unifiedpush, ios-liveactivity, ios-pushtostart, \
             ios-widgets, ios-location, ios-complication, ios-fileprovider, ios-pushtotalk",
        ),
        (
            json!({ "type": "ios", "token": "zz", "deviceId": "d", "clientId": "c" }),
            "token must be an APNs device token: 64 to 200 hexadecimal characters",
        ),
        (
            json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": 5, "clientId": "c" }),
            "deviceId: invalid type: integer `5`, expected a string",
        ),
        (
            json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "d", "clientId": ["c"] }),
            "clientId: invalid type: sequence, expected a string",
        ),
        (
            json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "d", "clientId": "c", "environment": "staging" }),
            "environment must be production or sandbox",
        ),
        (
            json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "d", "clientId": "c", "locale": "english!" }),
            "locale must be a BCP 47 language tag such as en, zh-TW or ja",
        ),
        (
            json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "d", "clientId": "c", "timezone": "Mars/Base" }),
            "timezone must be an IANA time zone name such as Asia/Taipei",
        ),
        (
            json!({ "type": "ios", "token": { "endpoint": "x" }, "deviceId": "d", "clientId": "c" }),
            "token must be a string (an object is accepted only for types web and unifiedpush)",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = app.subscribe(body.clone()).await;
        assert_eq!(status, 400, "for {body}");
        assert_eq!(answer["error"], json!({ "code": "INVALID_PARAMETER", "message": message }), "for {body}");
    }
    assert!(app.devices_of("c").await.is_empty(), "nothing was written by a refused request");
}

#[tokio::test]
async fn a_refused_subscribe_writes_nothing_even_when_the_token_is_valid() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe(ios_device("iphone-1", "alice", APNS_TOKEN)).await.0, 200);
    // Bob's subscribe would move alice's token, but its locale is invalid.
    let mut body = ios_device("iphone-2", "bob", APNS_TOKEN);
    body["locale"] = json!("not a locale");
    assert_eq!(app.subscribe(body).await.0, 400);
    assert_eq!(app.devices_of("alice").await.len(), 1, "the token did not move");
    assert!(app.devices_of("bob").await.is_empty());
}

#[tokio::test]
async fn optional_fields_are_kept_and_shown() {
    let app = TestApp::spawn().await;
    let mut body = ios_device("iphone-1", "user001", APNS_TOKEN);
    body["environment"] = json!("sandbox");
    body["locale"] = json!("zh_tw");
    body["timezone"] = json!("Asia/Taipei");
    body["someFutureField"] = json!({ "ignored": true });
    assert_eq!(app.subscribe(body).await.0, 200);
    let device = &app.devices_of("user001").await[0];
    assert_eq!(device["environment"], "sandbox");
    assert_eq!(device["locale"], "zh-TW");
    assert_eq!(device["timezone"], "Asia/Taipei");
}

#[tokio::test]
async fn a_web_subscription_is_accepted_as_an_object_or_a_string() {
    let app = TestApp::spawn().await;
    let subscription =
        crate::webpush::subscription("https://updates.push.services.mozilla.com/wpush/v2/abcdefgh12345678");
    let as_object = json!({ "type": "web", "token": subscription, "deviceId": "browser-1", "clientId": "user001" });
    let as_string =
        json!({ "type": "web", "token": subscription.to_string(), "deviceId": "browser-2", "clientId": "user002" });
    assert_eq!(app.subscribe(as_object).await.0, 200);
    assert_eq!(app.subscribe(as_string).await.0, 200, "the same subscription again");
    assert!(app.devices_of("user001").await.is_empty(), "the subscription moved to user002");
    let device = &app.devices_of("user002").await[0];
    assert_eq!(device["token"], "********12345678");
    assert!(device.get("environment").is_none(), "environments are an APNs notion");
}

#[tokio::test]
async fn one_apps_key_does_not_reach_another_apps_devices() {
    let config = r#"
        [[apps]]
        id = "ChatOne"
        api_keys = ["key-of-chat-one-0001"]
        [[apps]]
        id = "ChatTwo"
        api_keys = ["key-of-chat-two-0001"]
    "#;
    let app = TestApp::spawn_with(Some(config), &[]).await;
    let body = ios_device("iphone-1", "alice", APNS_TOKEN);
    assert_eq!(app.post_json("/me/subscribe", Some("key-of-chat-one-0001"), &body).await.0, 200);
    let (_, one) = app.get("/v1/clients/alice/devices", Some("key-of-chat-one-0001")).await;
    let (_, two) = app.get("/v1/clients/alice/devices", Some("key-of-chat-two-0001")).await;
    assert_eq!(one["result"]["devices"].as_array().map(Vec::len), Some(1));
    assert_eq!(two["result"]["devices"], json!([]));
}

/// A `pushKey` (private payloads) is checked like a browser's keys, kept with
/// the device, shown masked (nothing of the auth secret), exported whole,
/// and dropped by a registration without one.
#[tokio::test]
async fn a_push_key_is_validated_kept_masked_and_replaced() {
    let app = TestApp::spawn().await;
    let key = pushgate_testkit::TestSubscription::generate("key", "https://unused.example").push_key();
    let with_key = |key: serde_json::Value| {
        let mut body = ios_device("iphone", "alice", APNS_TOKEN);
        body["pushKey"] = key;
        body
    };
    let mut short_auth = key.clone();
    short_auth["auth"] = json!("AAAA");
    for (body, message) in [
        (
            with_key(json!({ "p256dh": "not-a-point", "auth": key["auth"] })),
            "pushKey.p256dh must be an uncompressed P-256 public key (65 bytes, base64url, on the curve)",
        ),
        (with_key(short_auth), "pushKey.auth must be a 16-byte secret (base64url)"),
        (
            json!({ "type": "ios-voip", "token": APNS_TOKEN, "deviceId": "voip", "clientId": "alice", "pushKey": key }),
            "pushKey is for types ios, android and fcm (a Web Push subscription carries its own keys)",
        ),
    ] {
        let (status, answer) = app.subscribe(body).await;
        assert_eq!((status, answer["error"]["message"].clone()), (400, json!(message)));
    }
    assert!(app.devices_of("alice").await.is_empty(), "a refused registration stores nothing");
    assert_eq!(app.subscribe(with_key(key.clone())).await.0, 200);
    let shown = app.devices_of("alice").await[0]["pushKey"].clone();
    let p256dh = key["p256dh"].as_str().expect("a key");
    assert_eq!(shown, json!({ "p256dh": format!("********{}", &p256dh[p256dh.len() - 8..]), "auth": "********" }));
    // Registered again without a key (a reinstall): the device gets no ciphertext it cannot read.
    assert_eq!(app.subscribe(ios_device("iphone", "alice", APNS_TOKEN)).await.0, 200);
    assert!(app.devices_of("alice").await[0].get("pushKey").is_none());
}
