//! Per-recipient routing and A/B copy experiments end to end: room mutes,
//! presence, quiet hours and client prefs decide what each recipient of a v2
//! callback gets; experiments change the copy and are counted per variant.

use crate::helpers::callbacks::{SECRET, badge, message, post_callback, send, spawn, spawn_with};
use crate::helpers::settled;
use crate::helpers::{API_KEY, APNS_TOKEN, TestApp, ios_device};
use serde_json::{Value, json};

fn with_secret(routing: &str) -> String {
    format!("generic_push = {{ secret = \"{SECRET}\" }}\nrouting = {{ {routing} }}")
}

async fn put(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, answer) = app.put_json(path, &body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer["result"].clone()
}

/// The one delivery of `client` in a settled push.
async fn delivery_of(app: &TestApp, push: &Value, client: &str) -> Value {
    let deliveries = settled(app, push["pushId"].as_str().expect("push id")).await;
    deliveries.into_iter().find(|d| d["clientId"] == client).expect("a delivery for the client")
}

#[tokio::test]
async fn a_muted_room_sends_only_a_silent_badge_update_and_counts_as_the_app_says() {
    let setup = spawn_with(&with_secret("count_muted_rooms = false"), "").await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    send(app, &message("before", "other", &["aaa"])).await;
    app.settle().await;
    let muted = put(app, "/v1/clients/aaa/rooms/noisy/pref", json!({ "muted": true, "mutedUntilMS": null })).await;
    assert_eq!(muted, json!({ "muted": true, "notify": "none", "mutedUntilMS": null }));
    let push = send(app, &message("in-muted", "noisy", &["aaa"])).await;
    let delivery = delivery_of(app, &push, "aaa").await;
    assert_eq!(
        (&delivery["status"], &delivery["mode"], &delivery["routing"]),
        (&json!("delivered"), &json!("silent"), &json!("room muted"))
    );
    let update = setup.apns.delivered().into_iter().last().expect("the badge update");
    assert_eq!(update.payload, json!({ "aps": { "badge": 1 }, "type": "badge" }), "the muted room does not count");
    assert_eq!(update.headers["apns-priority"], "5");
    assert_eq!(badge(app, "aaa").await, json!({ "badge": 1, "rooms": { "noisy": 1, "other": 1 }, "sources": {} }));
    // A mute that has run out is no mute.
    put(app, "/v1/clients/aaa/rooms/noisy/pref", json!({ "muted": true, "mutedUntilMS": 1000 })).await;
    let push = send(app, &message("after-mute", "noisy", &["aaa"])).await;
    assert_eq!(delivery_of(app, &push, "aaa").await["mode"], "alert");
    assert_eq!(setup.apns.delivered().into_iter().last().expect("alert").payload["aps"]["badge"], 3);
    let (status, answer) = app.put_json("/v1/clients/aaa/rooms/noisy/pref", &json!({})).await;
    assert_eq!((status, answer["error"]["message"].clone()), (400, json!("notify (or muted) is required")));
}

/// A room set to mentions only: its messages update the badge silently, and
/// one that mentions the client (the v2 callback's `mentions`) alerts.
#[tokio::test]
async fn a_room_set_to_mentions_only_alerts_only_when_the_client_is_mentioned() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let pref = put(app, "/v1/clients/aaa/rooms/busy/pref", json!({ "notify": "mentions" })).await;
    assert_eq!(pref, json!({ "muted": false, "notify": "mentions", "mutedUntilMS": null }));
    let plain = send(app, &message("plain", "busy", &["aaa"])).await;
    let delivery = delivery_of(app, &plain, "aaa").await;
    assert_eq!((&delivery["mode"], &delivery["routing"]), (&json!("silent"), &json!("mentions only")));
    assert_eq!(setup.apns.delivered().last().expect("a badge update").payload["aps"], json!({ "badge": 1 }));
    let mut mention = message("mention", "busy", &["aaa"]);
    mention["mentions"] = json!(["aaa"]);
    let mentioned = send(app, &mention).await;
    let delivery = delivery_of(app, &mentioned, "aaa").await;
    assert_eq!((&delivery["mode"], delivery.get("routing")), (&json!("alert"), None));
    let alert = setup.apns.delivered().last().expect("the alert").payload.clone();
    assert_eq!(alert["aps"]["badge"], 2, "both messages count: {alert}");
    assert!(alert.get("mentions").is_none(), "pushgate's extension stays out of IMKIT's payload: {alert}");
    assert_eq!(badge(app, "aaa").await["badge"], 2);
    for (body, message) in [
        (json!({ "notify": "loud" }), "notify must be all, mentions or none"),
        (json!({ "notify": "all", "muted": true }), "muted and notify disagree: muted is notify \"none\""),
    ] {
        let (status, answer) = app.put_json("/v1/clients/aaa/rooms/busy/pref", &body).await;
        assert_eq!((status, answer["error"]["message"].clone()), (400, json!(message)), "{body}");
    }
    let mut bad = message("bad-mention", "busy", &["aaa"]);
    bad["mentions"] = json!([42]);
    let (status, answer) =
        post_callback(app, &format!("/imkit/push/v2?secret={SECRET}"), &[], bad.to_string().as_bytes()).await;
    assert_eq!((status, answer["error"]["message"].clone()), (400, json!("mentions[0] must be a string")));
}

#[tokio::test]
async fn an_online_recipient_is_skipped_under_the_skip_policy_until_offline() {
    let setup = spawn_with(&with_secret(r#"online = "skip""#), "").await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let online = put(app, "/v1/clients/aaa/presence", json!({ "online": true, "ttlSeconds": 300 })).await;
    assert_eq!(online["online"], true);
    assert!(online["onlineUntilMS"].as_i64().is_some());
    let push = send(app, &message("while-online", "r", &["aaa"])).await;
    let delivery = delivery_of(app, &push, "aaa").await;
    assert_eq!((&delivery["status"], &delivery["reason"]), (&json!("skipped"), &json!("client online")));
    assert_eq!(badge(app, "aaa").await["badge"], 1, "the unread still counts");
    put(app, "/v1/clients/aaa/presence", json!({ "online": false })).await;
    let push = send(app, &message("after", "r", &["aaa"])).await;
    assert_eq!(delivery_of(app, &push, "aaa").await["mode"], "alert");
    assert_eq!(setup.apns.delivered().len(), 1, "only the message after going offline was pushed");
    let (status, answer) = app.put_json("/v1/clients/aaa/presence", &json!({ "online": true, "ttlSeconds": 0 })).await;
    assert_eq!((status, answer["error"]["message"].clone()), (400, json!("ttlSeconds must be from 1 to 86400")));
}

#[tokio::test]
async fn by_default_an_online_recipient_gets_a_silent_badge_update() {
    let setup = spawn().await;
    let app = &setup.app;
    let pixel = json!({ "type": "fcm", "token": "fcm-token-aaa", "deviceId": "pixel", "clientId": "aaa" });
    assert_eq!(app.subscribe(pixel).await.0, 200);
    put(app, "/v1/clients/aaa/presence", json!({ "online": true })).await;
    let push = send(app, &message("m", "r", &["aaa"])).await;
    let delivery = delivery_of(app, &push, "aaa").await;
    assert_eq!((&delivery["mode"], &delivery["routing"]), (&json!("silent"), &json!("client online")));
    let sent = setup.fcm.messages().into_iter().last().expect("sent").message;
    assert!(sent.get("notification").is_none(), "{sent}");
    assert_eq!(sent["data"], json!({ "type": "badge", "badge": "1" }));
}

/// `HH:MM` of now plus `minutes`, in UTC.
fn utc_clock(minutes: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let minute_of_day = (now / 60 + minutes).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

#[tokio::test]
async fn quiet_hours_deliver_quietly_and_push2clients_ignores_routing() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let prefs =
        json!({ "quietHours": { "start": utc_clock(-60), "end": utc_clock(60) }, "timezone": "UTC", "locale": "ja" });
    let stored = put(app, "/v1/clients/aaa/prefs", prefs.clone()).await;
    assert_eq!(
        stored,
        json!({ "pushEnabled": true, "quietHours": prefs["quietHours"], "timezone": "UTC", "locale": "ja" })
    );
    let push = send(app, &message("at-night", "r", &["aaa"])).await;
    let delivery = delivery_of(app, &push, "aaa").await;
    assert_eq!((&delivery["mode"], &delivery["routing"]), (&json!("quiet"), &json!("quiet hours")));
    let quiet = setup.apns.delivered().into_iter().last().expect("sent").payload;
    assert_eq!(quiet["aps"]["interruption-level"], "passive");
    assert!(quiet["aps"].get("sound").is_none());
    // Pushes off: v2 callbacks skip the client, push2clients (an explicit send) does not.
    put(app, "/v1/clients/aaa/prefs", json!({ "pushEnabled": false })).await;
    let push = send(app, &message("off", "r", &["aaa"])).await;
    assert_eq!(delivery_of(app, &push, "aaa").await["reason"], "push turned off by the client");
    let (status, answer) = app
        .post_json(
            "/push/push2clients",
            Some(API_KEY),
            &json!({ "clients": ["aaa"], "payload": { "alert": "explicit" } }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(delivery_of(app, &answer["result"], "aaa").await["status"], "delivered");
    assert_eq!(setup.apns.delivered().len(), 2);
    let (_, prefs) = app.get("/v1/clients/aaa/prefs", Some(API_KEY)).await;
    assert_eq!(prefs["result"], json!({ "pushEnabled": false, "quietHours": null, "timezone": null, "locale": null }));
    for (body, message) in [
        (json!({ "timezone": "Mars/Olympus" }), "timezone must be an IANA time zone name such as Asia/Taipei"),
        (
            json!({ "quietHours": { "start": "25:00", "end": "07:00" } }),
            "quietHours.start must be a time such as 22:00",
        ),
        (json!({ "locale": "not a locale" }), "locale must be a BCP 47 language tag such as en, zh-TW or ja"),
    ] {
        let (status, answer) = app.put_json("/v1/clients/aaa/prefs", &body).await;
        assert_eq!((status, answer["error"]["message"].clone()), (400, json!(message)), "{body}");
    }
}

#[tokio::test]
async fn an_experiment_splits_copy_by_client_keeps_each_clients_variant_and_reports_stats() {
    let setup = spawn().await;
    let app = &setup.app;
    let experiment = json!({ "variants": [
        { "name": "control", "weight": 1.0 },
        { "name": "short", "weight": 1.0, "title": "{roomName}", "body": "{sender} wrote {message}" }
    ], "messageTypes": ["text"] });
    assert_eq!(put(app, "/v1/experiments/copy-1", experiment.clone()).await, experiment);
    let (_, stored) = app.get("/v1/experiments/copy-1", Some(API_KEY)).await;
    assert_eq!(stored["result"], experiment);
    let clients: Vec<String> = (0..24).map(|n| format!("user{n:02}")).collect();
    for client in &clients {
        let device = json!({ "type": "fcm", "token": format!("fcm-{client}"), "deviceId": format!("phone-{client}"), "clientId": client });
        assert_eq!(app.subscribe(device).await.0, 200);
    }
    let recipients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let variant_of = |deliveries: &[Value]| -> std::collections::BTreeMap<String, String> {
        deliveries
            .iter()
            .map(|d| {
                (
                    d["clientId"].as_str().expect("id").to_owned(),
                    d["variant"].as_str().unwrap_or_else(|| panic!("no variant: {d}")).to_owned(),
                )
            })
            .collect()
    };
    let first = send(app, &message("exp-1", "r", &recipients)).await;
    let first = variant_of(&settled(app, first["pushId"].as_str().expect("id")).await);
    let second = send(app, &message("exp-2", "r", &recipients)).await;
    let second_id = second["pushId"].as_str().expect("id").to_owned();
    let second = variant_of(&settled(app, &second_id).await);
    assert_eq!(first, second, "a client keeps its variant");
    let shorts = first.values().filter(|variant| *variant == "short").count();
    assert!((1..24).contains(&shorts), "both variants are used: {first:?}");
    for sent in setup.fcm.messages() {
        let client = sent.message["token"].as_str().expect("token").trim_start_matches("fcm-").to_owned();
        let body = sent.message["notification"]["body"].as_str().expect("body").to_owned();
        let expected = if first[&client] == "short" { "SSS wrote lala" } else { "SSS: lala" };
        assert_eq!(body, expected, "{client}");
    }
    // An image is outside the experiment's message types.
    let mut image = message("exp-3", "r", &["user00"]);
    image["messageType"] = "image".into();
    let image = send(app, &image).await;
    assert!(settled(app, image["pushId"].as_str().expect("id")).await[0].get("variant").is_none());
    // Opens: every "short" client opens the second message, no control client does.
    let opener = first.iter().find(|(_, variant)| *variant == "short").map(|(client, _)| client.clone()).expect("one");
    for (client, variant) in &first {
        if variant == "short" {
            let path = format!("/v1/pushes/{second_id}/opened");
            let (status, answer) = app.post_json(&path, Some(API_KEY), &json!({ "clientId": client })).await;
            assert_eq!(status, 200, "{answer}");
        }
    }
    let (status, _) =
        app.post_json(&format!("/v1/pushes/{second_id}/opened"), Some(API_KEY), &json!({ "clientId": opener })).await;
    assert_eq!(status, 200, "an open recorded twice counts once");
    let (status, _) = app.post_json("/v1/pushes/nope/opened", Some(API_KEY), &json!({ "clientId": opener })).await;
    assert_eq!(status, 404);
    let (status, stats) = app.get("/v1/experiments/copy-1/stats", Some(API_KEY)).await;
    assert_eq!(status, 200, "{stats}");
    let variants = stats["result"]["variants"].as_array().expect("variants");
    let controls = (24 - shorts) as u64;
    assert_eq!(variants[0]["name"], "control");
    assert_eq!(
        (&variants[0]["targeted"], &variants[0]["delivered"], &variants[0]["opened"], &variants[0]["openRate"]),
        (&json!(2 * controls), &json!(2 * controls), &json!(0), &json!(0.0))
    );
    assert_eq!((&variants[1]["targeted"], &variants[1]["opened"]), (&json!(2 * shorts), &json!(shorts)));
    assert_eq!(variants[1]["openRate"], 0.5);
    let p_value = variants[1]["pValue"].as_f64().expect("a p-value against the control");
    assert!(p_value < 0.05 && variants[1]["significant"] == true, "{p_value}");
    assert!(variants[0].get("pValue").is_none(), "the control is not tested against itself");
}

#[tokio::test]
async fn bad_experiments_are_refused_naming_the_field() {
    let setup = spawn().await;
    let app = &setup.app;
    let cases = [
        (
            json!({ "variants": [{ "name": "a", "weight": 1, "body": "{who}" }] }),
            "variants[0].body: unknown placeholder {who}; use {sender}, {message} or {roomName}",
        ),
        (json!({ "variants": [{ "name": "a", "weight": 0 }] }), "variants: the weights must sum to a positive number"),
    ];
    for (body, text) in cases {
        let (status, answer) = app.put_json("/v1/experiments/bad", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].clone(), answer["error"]["message"].clone()),
            (400, json!("INVALID_PARAMETER"), json!(text))
        );
    }
    let (status, answer) =
        app.put_json("/v1/experiments/bad", &json!({ "variants": [{ "name": "a", "weight": "x" }] })).await;
    assert_eq!(status, 400);
    assert!(answer["error"]["message"].as_str().expect("message").starts_with("variants[0].weight: "), "{answer}");
    let (status, _) = app.get("/v1/experiments/bad", Some(API_KEY)).await;
    assert_eq!(status, 404, "nothing was stored");
}
