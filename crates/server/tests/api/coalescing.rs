//! Storm control end to end: with `[apps.coalescing]` a busy room alerts a
//! recipient once per window ("5 new messages"), the first message is never
//! delayed, a mention always gets through, and a read cancels what is held
//! and clears the client's other devices. The worker is driven: the window's
//! end is the store's next due time, which `settle` moves the clock to.

use crate::callbacks::APNS_TOKEN_2;
use crate::helpers::callbacks::{SECRET, message, send, spawn, spawn_with};
use crate::helpers::{API_KEY, APNS_TOKEN, TestApp, WithProviders, ios_device};
use serde_json::{Value, json};

async fn coalescing() -> WithProviders {
    let setup =
        spawn_with(&format!("generic_push = {{ secret = \"{SECRET}\" }}\ncoalescing = {{ window_seconds = 10 }}"), "")
            .await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "alice", APNS_TOKEN)).await.0, 200);
    let pixel = json!({ "type": "fcm", "token": "fcm-token-alice", "deviceId": "pixel", "clientId": "alice" });
    assert_eq!(app.subscribe(pixel).await.0, 200);
    let bob = json!({ "type": "fcm", "token": "fcm-token-bob", "deviceId": "pixel-b", "clientId": "bob" });
    assert_eq!(app.subscribe(bob).await.0, 200);
    setup
}

/// A message in `room` to alice and bob, sent by `sender`.
fn from(id: &str, sender: &str) -> Value {
    let mut message = message(id, "demo-room", &["alice", "bob"]);
    message["sender"]["nickname"] = json!(sender);
    message
}

async fn status(app: &TestApp, push: &Value) -> Value {
    let (status, body) =
        app.get(&format!("/v1/pushes/{}", push["pushId"].as_str().expect("a push id")), Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

fn delivery<'a>(status: &'a Value, device: &str) -> &'a Value {
    status["deliveries"].as_array().expect("deliveries").iter().find(|d| d["deviceId"] == device).expect("a delivery")
}

#[tokio::test]
async fn a_busy_room_alerts_once_per_window_with_the_count_the_latest_text_and_the_badge() {
    let setup = coalescing().await;
    let app = &setup.app;
    let first = send(app, &from("m1", "Alice")).await;
    // Never delayed: delivered by the first round (`deliver` never moves the clock).
    let clock = app.clock_ms();
    assert_eq!(app.deliver().await, 3);
    assert_eq!(delivery(&status(app, &first).await, "iphone")["status"], "delivered");
    let alert = setup.apns.delivered().pop().expect("the first alert");
    assert_eq!(alert.headers.get("apns-collapse-id").map(String::as_str), Some("demo-room"), "it replaces the room's");
    assert_eq!(alert.payload["aps"]["alert"]["body"], "Alice: lala");
    let fcm = setup.fcm.messages().pop().expect("an FCM alert").message;
    assert_eq!(fcm["android"]["notification"]["tag"], "demo-room", "it replaces the room's notification");
    assert!(fcm["android"].get("collapse_key").is_none(), "non-collapsible: FCM keeps only 4 collapse keys");
    // Four more within the window: held, each merging the one before.
    let mut pushes = Vec::new();
    for (id, sender) in [("m2", "Bob"), ("m3", "Carol"), ("m4", "Bob"), ("m5", "Dave")] {
        pushes.push(send(app, &from(id, sender)).await);
    }
    assert_eq!(app.deliver().await, 0, "nothing goes before the window ends");
    let last = &pushes[3];
    let merged = status(app, &pushes[0]).await;
    assert_eq!(delivery(&merged, "iphone")["status"], "coalesced");
    assert_eq!(delivery(&merged, "iphone")["carriedBy"], last["pushId"], "the last of the window carries it");
    let held = status(app, last).await;
    assert_eq!(delivery(&held, "pixel")["status"], "held");
    assert!(delivery(&held, "pixel")["nextAttemptAtMS"].as_i64().is_some_and(|end| end > clock), "{held}");
    // The window ends: one alert per device with the count, the latest text and badge.
    app.settle().await;
    assert_eq!(setup.apns.delivered_count(), 2, "alice's iPhone: two alerts for five messages");
    assert_eq!(setup.fcm.delivered_count(), 4, "two per Android device");
    let summary = setup.apns.delivered().pop().expect("the window's alert");
    assert_eq!(summary.payload["aps"]["alert"]["body"], "Dave and 3 others: 5 new messages in Demo Room");
    assert_eq!(summary.payload["aps"]["badge"], 5);
    assert_eq!(summary.payload["aps"]["thread-id"], "demo-room", "the app opens the room");
    assert_eq!(summary.headers.get("apns-collapse-id").map(String::as_str), Some("demo-room"));
    let bob = setup.fcm.messages().into_iter().rfind(|m| m.token == "fcm-token-bob").expect("bob's").message;
    assert_eq!(bob["notification"]["body"], "Dave and 3 others: 5 new messages in Demo Room");
    let payload: Value = serde_json::from_str(bob["data"]["payload"].as_str().expect("the payload")).expect("JSON");
    assert_eq!(payload["_id"], "m5", "the latest message's IMKIT fields");
    assert_eq!(delivery(&status(app, last).await, "pixel-b")["status"], "delivered");
    let metrics = app.metrics().await;
    for line in [
        r#"pushgate_chat_alerts_total{app="SampleApp",kind="message"} 3"#,
        r#"pushgate_chat_alerts_total{app="SampleApp",kind="summary"} 3"#,
        r#"pushgate_coalesced_deliveries_total{result="held"} 12"#,
        r#"pushgate_coalesced_deliveries_total{result="merged"} 9"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let (code, overview) = app.get("/admin/api/overview", Some(API_KEY)).await;
    assert_eq!(code, 200, "{overview}");
    assert_eq!(
        overview["result"]["coalescing"],
        json!({ "alerts": 3, "summaries": 3, "held": 12, "merged": 9, "cancelled": 0 }),
        "what the console shows as saved"
    );
    // The window's end opened the next one: the room stays coalesced.
    let next = send(app, &from("m6", "Eve")).await;
    app.deliver().await;
    assert_eq!(delivery(&status(app, &next).await, "iphone")["status"], "held");
}

#[tokio::test]
async fn a_mention_inside_a_burst_alerts_at_once() {
    let setup = coalescing().await;
    let app = &setup.app;
    send(app, &from("m1", "Alice")).await;
    app.deliver().await;
    send(app, &from("m2", "Bob")).await;
    let mut mention = from("m3", "Carol");
    mention["mentions"] = json!(["bob"]);
    let mentioned = send(app, &mention).await;
    assert_eq!(app.deliver().await, 1, "bob's mention goes now; alice's copy waits");
    let status = status(app, &mentioned).await;
    assert_eq!(
        (&delivery(&status, "pixel-b")["status"], &delivery(&status, "iphone")["status"]),
        (&json!("delivered"), &json!("held"))
    );
    let bob = setup.fcm.messages().pop().expect("the mention").message;
    assert_eq!(bob["notification"]["body"], "Carol: lala");
}

#[tokio::test]
async fn a_read_during_a_window_cancels_the_held_alert_and_clears_the_other_devices() {
    let setup = coalescing().await;
    let app = &setup.app;
    let voip = json!({ "type": "ios-voip", "token": APNS_TOKEN_2, "deviceId": "iphone-voip", "clientId": "alice" });
    assert_eq!(app.subscribe(voip).await.0, 200);
    send(app, &from("m1", "Alice")).await;
    app.deliver().await;
    let held = send(app, &from("m2", "Bob")).await;
    app.deliver().await;
    let alerts = setup.apns.delivered_count();
    let (code, read) = app
        .post_json(
            "/v1/clients/alice/rooms/demo-room/read",
            Some(API_KEY),
            &json!({ "sync": true, "deviceId": "pixel" }),
        )
        .await;
    assert_eq!(code, 200, "{read}");
    assert_eq!(read["result"]["badge"], 0);
    app.settle().await;
    let cancelled = status(app, &held).await;
    assert_eq!(
        (&delivery(&cancelled, "iphone")["status"], &delivery(&cancelled, "iphone")["reason"]),
        (&json!("skipped"), &json!("the room was read before the held alert went out"))
    );
    assert_eq!(delivery(&cancelled, "pixel-b")["status"], "delivered", "bob has not read the room");
    let clear = status(app, &read["result"]).await;
    let devices: Vec<_> =
        clear["deliveries"].as_array().expect("deliveries").iter().map(|d| d["deviceId"].clone()).collect();
    assert_eq!(devices, [json!("iphone"), json!("iphone-voip")], "the device it was read on gets none");
    let pushes = setup.apns.delivered();
    assert_eq!(pushes.len(), alerts + 1, "one clear push, and no window alert");
    let clear = pushes.last().expect("the clear push");
    assert_eq!(
        clear.payload,
        json!({ "aps": { "badge": 0, "content-available": 1 }, "type": "clear", "room": "demo-room" })
    );
    // After the read the room is quiet again: its next message alerts at once.
    let after = send(app, &from("m3", "Carol")).await;
    app.deliver().await;
    assert_eq!(delivery(&status(app, &after).await, "iphone")["status"], "delivered");
    let (code, answer) =
        app.post_json("/v1/clients/alice/rooms/demo-room/read", Some(API_KEY), &json!({ "deviceId": "" })).await;
    assert_eq!((code, &answer["error"]["code"]), (400, &json!("INVALID_PARAMETER")), "{answer}");
}

#[tokio::test]
async fn without_coalescing_every_message_alerts_and_replaces_nothing() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "alice", APNS_TOKEN)).await.0, 200);
    for id in ["m1", "m2", "m3"] {
        send(app, &message(id, "demo-room", &["alice"])).await;
    }
    assert_eq!(app.deliver().await, 3);
    let alerts = setup.apns.delivered();
    assert_eq!(alerts.len(), 3);
    assert!(alerts.iter().all(|alert| !alert.headers.contains_key("apns-collapse-id")));
}

/// The issue's storm, in a test: 50 members, one room, 50 messages within a
/// 10 s window. Each device gets 2 alerts (not 50): the first message at
/// once, then one for the window with all 50 counted and the badge of 50.
#[tokio::test]
async fn a_storm_of_50_messages_to_50_members_gives_each_device_two_alerts() {
    let setup = coalescing().await;
    let app = &setup.app;
    let members: Vec<String> = (0..50).map(|n| format!("member{n}")).collect();
    for member in &members {
        let device = json!({ "type": "fcm", "token": format!("fcm-{member}"), "deviceId": format!("phone-{member}"), "clientId": member });
        assert_eq!(app.subscribe(device).await.0, 200);
    }
    let recipients: Vec<&str> = members.iter().map(String::as_str).collect();
    for n in 0..50 {
        send(app, &message(&format!("storm-{n}"), "storm-room", &recipients)).await;
        app.deliver().await;
    }
    app.settle().await;
    let messages = setup.fcm.messages();
    for member in &members {
        let alerts: Vec<_> =
            messages.iter().filter(|m| m.token == format!("fcm-{member}")).map(|m| m.message.clone()).collect();
        assert_eq!(alerts.len(), 2, "{member}");
        assert_eq!(alerts[0]["notification"]["body"], "SSS: lala");
        assert_eq!(alerts[1]["notification"]["body"], "SSS: 50 new messages in Demo Room");
        assert_eq!(alerts[1]["data"]["badge"], "50");
    }
}
