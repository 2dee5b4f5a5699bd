//! The badge engine end to end: unread counts from v2 callbacks, read marks
//! (with the silent sync push), cross-domain sources, `GET .../badge`.

use crate::callbacks::APNS_TOKEN_2;
use crate::helpers::callbacks::{SECRET, badge, message, send, spawn};
use crate::helpers::settled;
use crate::helpers::{API_KEY, APNS_TOKEN, TestApp, ios_device, read};
use serde_json::{Value, json};

/// Sends every callback at once, each on its own task.
async fn send_all(app: &TestApp, bodies: Vec<Value>) {
    let mut sends = tokio::task::JoinSet::new();
    for body in bodies {
        let (client, url) = (app.client.clone(), app.base_url.clone());
        sends.spawn(async move {
            let response = client
                .post(format!("{url}/imkit/push/v2?secret={SECRET}"))
                .header("Content-Type", "application/json; charset=utf-8")
                .body(body.to_string())
                .send()
                .await
                .expect("sent");
            read(response).await
        });
    }
    while let Some(answer) = sends.join_next().await {
        let (status, answer) = answer.expect("task");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["duplicate"], false);
    }
}

async fn mark_read(app: &TestApp, client: &str, room: &str, body: Option<Value>) -> Value {
    let mut request = app
        .client
        .post(format!("{}/v1/clients/{client}/rooms/{room}/read", app.base_url))
        .header("IM-API-KEY", API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, answer) = read(request.send().await.expect("sent")).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"].clone()
}

#[tokio::test]
async fn a_burst_of_callbacks_across_rooms_and_reads_gives_exact_badges() {
    let setup = spawn().await;
    let app = &setup.app;
    let burst = (0..90)
        .map(|i| {
            let recipients: &[&str] = if i % 2 == 0 { &["carol", "dave"] } else { &["carol"] };
            message(&format!("burst-{i}"), &format!("r{}", i % 3), recipients)
        })
        .collect();
    send_all(app, burst).await;
    assert_eq!(
        badge(app, "carol").await,
        json!({ "badge": 90, "rooms": { "r0": 30, "r1": 30, "r2": 30 }, "sources": {} })
    );
    assert_eq!(
        badge(app, "dave").await,
        json!({ "badge": 45, "rooms": { "r0": 15, "r1": 15, "r2": 15 }, "sources": {} })
    );
    // A read of r0 while 30 more messages arrive in r1.
    let more = (0..30).map(|i| message(&format!("more-{i}"), "r1", &["carol"])).collect();
    let (read_result, ()) = tokio::join!(mark_read(app, "carol", "r0", None), send_all(app, more));
    assert!(read_result.get("pushId").is_none(), "no sync asked, no push");
    assert_eq!(badge(app, "carol").await, json!({ "badge": 90, "rooms": { "r1": 60, "r2": 30 }, "sources": {} }));
    assert_eq!(badge(app, "dave").await["badge"], 45, "another client's read changes nothing");
}

#[tokio::test]
async fn sources_are_set_and_added_to_without_losing_a_concurrent_increment() {
    let setup = spawn().await;
    let app = &setup.app;
    let mut adds = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, url) = (app.client.clone(), app.base_url.clone());
        adds.spawn(async move {
            let response = client
                .post(format!("{url}/v1/clients/erin/badge/sources/orders"))
                .header("IM-API-KEY", API_KEY)
                .json(&json!({ "increment": 1 }))
                .send()
                .await
                .expect("sent");
            read(response).await.0
        });
    }
    while let Some(status) = adds.join_next().await {
        assert_eq!(status.expect("task"), 200);
    }
    let (status, answer) = app.put_json("/v1/clients/erin/badge/sources/events", &json!({ "count": 7 })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!({ "badge": 57, "rooms": {}, "sources": { "events": 7, "orders": 50 } }));
    let (_, answer) =
        app.post_json("/v1/clients/erin/badge/sources/orders", Some(API_KEY), &json!({ "increment": -80 })).await;
    assert_eq!(answer["result"], json!({ "badge": 7, "rooms": {}, "sources": { "events": 7 } }), "never below zero");
    let (status, answer) = app.put_json("/v1/clients/erin/badge/sources/events", &json!({})).await;
    assert_eq!((status, answer["error"]["message"].clone()), (400, json!("count is required")));
    let (status, answer) = app.put_json("/v1/clients/erin/badge/sources/events", &json!({ "count": -1 })).await;
    assert_eq!((status, answer["error"]["code"].clone()), (400, json!("INVALID_PARAMETER")));
    assert!(answer["error"]["message"].as_str().expect("message").starts_with("count: "), "{answer}");
    let (status, _) = app.get("/v1/clients/erin/badge", None).await;
    assert_eq!(status, 401, "badges need the API key");
}

#[tokio::test]
async fn a_read_mark_with_sync_sends_every_device_a_clear_push_with_the_room_and_the_new_badge() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "frank", APNS_TOKEN)).await.0, 200);
    let voip = json!({ "type": "ios-voip", "token": APNS_TOKEN_2, "deviceId": "iphone-voip", "clientId": "frank" });
    assert_eq!(app.subscribe(voip).await.0, 200);
    let pixel = json!({ "type": "fcm", "token": "fcm-token-frank", "deviceId": "pixel", "clientId": "frank" });
    assert_eq!(app.subscribe(pixel).await.0, 200);
    for (id, room) in [("m1", "r1"), ("m2", "r1"), ("m3", "r2")] {
        let result = send(app, &message(id, room, &["frank"])).await;
        settled(app, result["pushId"].as_str().expect("push id")).await;
    }
    let result = mark_read(app, "frank", "r1", Some(json!({ "sync": true }))).await;
    assert_eq!((result["badge"].clone(), result["rooms"].clone()), (json!(1), json!({ "r2": 1 })));
    let deliveries = settled(app, result["pushId"].as_str().expect("a push id")).await;
    let status_of = |device: &str| {
        let delivery = deliveries.iter().find(|d| d["deviceId"] == device).expect("a delivery");
        (delivery["status"].as_str().map(str::to_owned), delivery["reason"].as_str().map(str::to_owned))
    };
    assert_eq!(status_of("iphone").0.as_deref(), Some("delivered"));
    assert_eq!(status_of("pixel").0.as_deref(), Some("delivered"));
    assert_eq!(status_of("iphone-voip"), (Some("skipped".into()), Some("VoIP devices get no badge updates".into())));
    assert_eq!(setup.fcm.delivered_count(), 4);
    let clear = setup.apns.delivered().into_iter().last().expect("the clear push");
    assert_eq!(clear.device_token, APNS_TOKEN);
    assert_eq!(clear.payload, json!({ "aps": { "badge": 1, "content-available": 1 }, "type": "clear", "room": "r1" }));
    assert_eq!((clear.headers["apns-priority"].as_str(), clear.headers["apns-push-type"].as_str()), ("5", "alert"));
    let clear = setup.fcm.messages().into_iter().last().expect("the clear push").message;
    assert!(clear.get("notification").is_none(), "nothing shown: {clear}");
    assert_eq!(clear["data"], json!({ "type": "clear", "room": "r1", "badge": "1" }));
    assert_eq!(
        (clear["android"]["collapse_key"].as_str(), clear["android"]["priority"].as_str()),
        (Some("clear-r1"), Some("normal"))
    );
}

#[tokio::test]
async fn a_read_mark_between_messages_gives_the_badge_that_arrival_order_says() {
    let setup = spawn().await;
    let app = &setup.app;
    // Each step answers before the next is sent: that is the arrival order.
    send(app, &message("m1", "room", &["erin"])).await;
    send(app, &message("m2", "room", &["erin"])).await;
    mark_read(app, "erin", "room", None).await;
    send(app, &message("m3", "room", &["erin"])).await;
    assert_eq!(badge(app, "erin").await["badge"], 1, "the read cleared m1 and m2, not m3");
    let read = mark_read(app, "erin", "room", Some(json!({ "sync": true }))).await;
    send(app, &message("m4", "room", &["erin"])).await;
    assert_eq!(read["badge"], 0, "the sync read answers the badge after itself");
    assert_eq!(badge(app, "erin").await["badge"], 1, "m4 came after the sync read");
}

#[tokio::test]
async fn a_burst_accepted_while_delivery_is_slow_is_all_delivered_with_exact_badges() {
    const CLIENTS: usize = 10;
    const CALLBACKS: usize = 600;
    const PER_CALLBACK: usize = 5;
    let setup = spawn().await;
    let app = &setup.app;
    let token = |n: usize| format!("{:064x}", n + 1);
    for n in 0..CLIENTS {
        let device = ios_device(&format!("phone-{n}"), &format!("client-{n}"), &token(n));
        assert_eq!(app.subscribe(device).await.0, 200);
    }
    // Slow delivery: every answer of the fake APNs takes 50 ms.
    setup.apns.set_answer_delay(std::time::Duration::from_millis(50));
    let burst = (0..CALLBACKS)
        .map(|i| {
            let recipients: Vec<String> = (0..PER_CALLBACK).map(|k| format!("client-{}", (i + k) % CLIENTS)).collect();
            let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
            message(&format!("burst-{i}"), "busy-room", &recipients)
        })
        .collect();
    // The worker delivers while the burst is accepted, then whatever is left.
    tokio::join!(send_all(app, burst), app.settle());
    app.settle().await;
    assert_eq!(setup.apns.delivered_count(), CALLBACKS * PER_CALLBACK);
    let per_client = CALLBACKS * PER_CALLBACK / CLIENTS;
    for n in 0..CLIENTS {
        assert_eq!(badge(app, &format!("client-{n}")).await["badge"], per_client, "client-{n}");
        // Messages fan out in accept order, each after its own increment: the
        // device saw every badge from 1 to its total exactly once.
        let mut badges: Vec<u64> = setup
            .apns
            .delivered()
            .iter()
            .filter(|request| request.device_token == token(n))
            .filter_map(|request| request.payload["aps"]["badge"].as_u64())
            .collect();
        badges.sort_unstable();
        assert_eq!(badges, (1..=per_client as u64).collect::<Vec<_>>(), "client-{n}");
    }
}
