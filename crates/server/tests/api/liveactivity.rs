//! Live Activities end to end: ActivityKit tokens registered through
//! `/me/subscribe`, `POST /push/liveactivity` (start, update, end), the
//! worker, and the fake APNs, which holds each push to Apple's rules for its
//! type (topic suffix, priority, token-based authentication).

use crate::helpers::{API_KEY, APNS_TOKEN, WithProviders, ios_device, send_push, settled_status, spawn_with_providers};
use pushgate_testkit::ApnsFailure;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const PUSH_TO_START: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90aa";
const ORDER_1: &str = "b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90bb";
const ORDER_2: &str = "c1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90cc";

/// user001: an iPhone, its push-to-start token and two running activities.
async fn register(setup: &WithProviders) {
    for device in [
        ios_device("iphone-1", "user001", APNS_TOKEN),
        json!({ "type": "ios-pushtostart", "token": PUSH_TO_START, "deviceId": "iphone-1", "clientId": "user001" }),
        json!({ "type": "ios-liveactivity", "token": ORDER_1, "deviceId": "order-1", "clientId": "user001" }),
        json!({ "type": "ios-liveactivity", "token": ORDER_2, "deviceId": "order-2", "clientId": "user001" }),
    ] {
        let (status, body) = setup.app.subscribe(device).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn send(setup: &WithProviders, clients: &[&str], payload: Value) -> (u16, Value) {
    setup.app.post_json("/push/liveactivity", Some(API_KEY), &json!({ "clients": clients, "payload": payload })).await
}

/// Sends, delivers, and answers the status and the tokens the fake APNs
/// received it on (with what it received).
async fn delivered(setup: &WithProviders, clients: &[&str], payload: Value) -> (Value, Vec<(String, Value, Value)>) {
    let before = setup.apns.delivered_count();
    let (status, body) = send(setup, clients, payload).await;
    assert_eq!(status, 200, "{body}");
    let status = settled_status(&setup.app, body["result"]["pushId"].as_str().expect("a push id")).await;
    let received = setup.apns.delivered()[before..]
        .iter()
        .map(|push| (push.device_token.clone(), json!(push.headers), push.payload.clone()))
        .collect();
    (status, received)
}

fn tokens(received: &[(String, Value, Value)]) -> BTreeSet<&str> {
    received.iter().map(|(token, _, _)| token.as_str()).collect()
}

#[tokio::test]
async fn a_start_update_and_end_reach_only_the_activitykit_tokens_they_are_for() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;

    let before = pushgate_api::now_ms() / 1000;
    let (status, received) = delivered(
        &setup,
        &["user001", "user002"],
        json!({ "event": "start", "attributesType": "DeliveryAttributes", "attributes": { "order": "A-17" },
                "contentState": { "etaMinutes": 20 }, "alert": { "title": "Order A-17", "body": "Accepted" },
                "inputPushToken": true }),
    )
    .await;
    assert_eq!(tokens(&received), BTreeSet::from([PUSH_TO_START]), "a start goes to the push-to-start token only");
    let (_, headers, payload) = &received[0];
    assert_eq!(headers["apns-push-type"], "liveactivity");
    assert_eq!(headers["apns-topic"], "io.imkit.app.push-type.liveactivity");
    assert_eq!(headers["apns-priority"], "10");
    let aps = &payload["aps"];
    let timestamp = aps["timestamp"].as_i64().expect("a timestamp in seconds");
    assert!((before..=before + 5).contains(&timestamp), "the accept's time: {timestamp}");
    assert_eq!(
        (&aps["event"], &aps["attributes-type"], &aps["attributes"], &aps["content-state"], &aps["input-push-token"]),
        (
            &json!("start"),
            &json!("DeliveryAttributes"),
            &json!({ "order": "A-17" }),
            &json!({ "etaMinutes": 20 }),
            &json!(1)
        )
    );
    assert_eq!(status["summary"], json!({ "delivered": 1, "skipped": 1 }), "user002 has no push-to-start token");

    let (_, received) = delivered(
        &setup,
        &["user001"],
        json!({ "event": "update", "activityId": "order-1", "contentState": { "etaMinutes": 12 }, "timestamp": 1_900_000_000 }),
    )
    .await;
    assert_eq!(tokens(&received), BTreeSet::from([ORDER_1]), "an update with an activityId reaches that activity");
    assert_eq!(
        received[0].2["aps"],
        json!({ "timestamp": 1_900_000_000, "event": "update", "content-state": { "etaMinutes": 12 } })
    );

    let (_, received) = delivered(
        &setup,
        &["user001"],
        json!({ "event": "update", "contentState": { "etaMinutes": 8 }, "priority": 5 }),
    )
    .await;
    assert_eq!(tokens(&received), BTreeSet::from([ORDER_1, ORDER_2]), "without one, every activity of the client");
    assert!(received.iter().all(|(_, headers, _)| headers["apns-priority"] == "5"));

    let before = setup.apns.delivered_count();
    let push_id = send_push(&setup.app, &["user001"], json!({ "alert": "hello" })).await;
    let status = settled_status(&setup.app, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 1 }), "no delivery is even planned to ActivityKit tokens");
    let others: Vec<String> = setup.apns.delivered()[before..].iter().map(|push| push.device_token.clone()).collect();
    assert_eq!(others, vec![APNS_TOKEN.to_owned()], "a notification reaches no ActivityKit token");

    let (_, received) = delivered(
        &setup,
        &["user001"],
        json!({ "event": "end", "activityId": "order-2", "dismissalDate": 0, "contentState": { "etaMinutes": 0 } }),
    )
    .await;
    assert_eq!(tokens(&received), BTreeSet::from([ORDER_2]));
    assert_eq!(received[0].2["aps"]["dismissal-date"], 0);
    let left: BTreeSet<String> = setup
        .app
        .devices_of("user001")
        .await
        .iter()
        .map(|device| {
            format!(
                "{}/{}",
                device["type"].as_str().unwrap_or_default(),
                device["deviceId"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        left,
        BTreeSet::from(["ios/iphone-1".into(), "ios-pushtostart/iphone-1".into(), "ios-liveactivity/order-1".into()]),
        "an ended activity's token is forgotten"
    );
}

#[tokio::test]
async fn an_activity_token_apns_calls_unregistered_is_pruned() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    setup.apns.fail_next(ORDER_1, [ApnsFailure::Unregistered(pushgate_api::now_ms() + 60_000)]);
    let (status, _) =
        delivered(&setup, &["user001"], json!({ "event": "update", "contentState": { "etaMinutes": 3 } })).await;
    assert_eq!(status["summary"], json!({ "delivered": 1, "pruned": 1 }));
    let activities: Vec<Value> = setup
        .app
        .devices_of("user001")
        .await
        .into_iter()
        .filter(|device| device["type"] == "ios-liveactivity")
        .map(|device| device["deviceId"].clone())
        .collect();
    assert_eq!(activities, vec![json!("order-2")]);
}

#[tokio::test]
async fn a_push_apple_would_refuse_is_a_400_naming_the_rule_and_nothing_is_stored() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    for (payload, named) in [
        (
            json!({ "event": "start", "attributes": {}, "contentState": {} }),
            "payload.attributesType: a start must name",
        ),
        (json!({ "event": "update" }), "payload.contentState: a update must give"),
        (
            json!({ "event": "update", "contentState": {}, "priority": 1 }),
            "payload.priority: a Live Activity push is sent at 10 or 5",
        ),
        (json!({ "event": "end", "dismissalDate": "soon" }), "payload.dismissalDate: invalid type"),
        (json!({ "event": "pause" }), "payload.event: unknown variant `pause`"),
    ] {
        let (status, body) = send(&setup, &["user001"], payload).await;
        assert_eq!((status, &body["error"]["code"]), (400, &json!("INVALID_PARAMETER")), "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(named), "{named} in {message}");
    }
    assert_eq!(setup.app.settle().await, 0, "nothing was stored");
    assert_eq!(setup.apns.delivered_count(), 0);
}

#[tokio::test]
async fn an_app_that_authenticates_to_apns_with_a_certificate_is_told_live_activities_need_a_token() {
    let ca = pushgate_testkit::TestCa::generate();
    let directory = tempfile::tempdir().expect("temp dir");
    let (chain, key) = ca.client_certificate("io.imkit.app");
    let (cert_file, key_file) = (directory.path().join("cert.pem"), directory.path().join("cert.key"));
    std::fs::write(&cert_file, chain).expect("write");
    std::fs::write(&key_file, key).expect("write");
    let config = format!(
        "[[apps]]\nid = \"SampleApp\"\napi_keys = [\"{API_KEY}\"]\n[apps.apns]\ncertificate_file = {:?}\n\
         certificate_key_file = {:?}\ntopic = \"io.imkit.app\"\n",
        cert_file.display().to_string(),
        key_file.display().to_string()
    );
    let app = crate::helpers::TestApp::spawn_with(Some(&config), &[]).await;
    let (status, body) = app
        .post_json(
            "/push/liveactivity",
            Some(API_KEY),
            &json!({ "clients": ["user001"], "payload": { "event": "end" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("token-based authentication only") && message.contains("key_file"), "{message}");
}

/// `@parse/node-apn` (an independent APNs library) builds the same request
/// from the same fields: payload, push type and priority compared field by
/// field for a start, an update and an end.
#[tokio::test]
async fn npm_each_event_is_the_request_node_apn_builds_from_the_same_fields() {
    let peers = pushgate_testkit::node_peers();
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let alert = json!({ "title": "Order A-17", "body": "Accepted", "sound": "default" });
    for (payload, fields) in [
        (
            json!({ "event": "start", "attributesType": "DeliveryAttributes", "attributes": { "order": "A-17" },
                    "contentState": { "etaMinutes": 20 }, "alert": alert, "timestamp": 1_900_000_000,
                    "staleDate": 1_900_003_600, "relevanceScore": 50, "inputPushToken": true }),
            json!({ "event": "start", "attributesType": "DeliveryAttributes", "attributes": { "order": "A-17" },
                    "contentState": { "etaMinutes": 20 }, "alert": alert, "timestamp": 1_900_000_000,
                    "staleDate": 1_900_003_600, "relevanceScore": 50, "inputPushToken": 1 }),
        ),
        (
            json!({ "event": "update", "activityId": "order-1", "contentState": { "etaMinutes": 12 },
                    "timestamp": 1_900_000_060, "priority": 5 }),
            json!({ "event": "update", "contentState": { "etaMinutes": 12 }, "timestamp": 1_900_000_060, "priority": 5 }),
        ),
        (
            json!({ "event": "end", "activityId": "order-1", "contentState": { "etaMinutes": 0 },
                    "timestamp": 1_900_000_120, "dismissalDate": 1_900_000_300 }),
            json!({ "event": "end", "contentState": { "etaMinutes": 0 }, "timestamp": 1_900_000_120,
                    "dismissalDate": 1_900_000_300 }),
        ),
    ] {
        let (_, received) = delivered(&setup, &["user001"], payload).await;
        let (_, headers, sent) = &received[0];
        let mut fields = fields;
        fields["pushType"] = json!("liveactivity");
        fields["topic"] = json!("io.imkit.app.push-type.liveactivity");
        let theirs = peers.run("apn", &json!({ "fields": fields }), None).await;
        assert_eq!(sent, &theirs["payload"], "the payload node-apn builds");
        for header in ["apns-push-type", "apns-topic", "apns-priority"] {
            let their_value = match &theirs["headers"][header] {
                Value::Number(number) => number.to_string(),
                other => other.as_str().unwrap_or_default().to_owned(),
            };
            assert_eq!(headers[header].as_str(), Some(their_value.as_str()), "{header}");
        }
    }
}
