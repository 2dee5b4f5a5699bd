//! IMKIT's callbacks end to end: `POST /imkit/push/v2` and `POST /imkit/push`
//! through origin verification, the durable queue and the worker, to the
//! fake APNs and fake FCM.

use crate::helpers::callbacks::{SECRET, badge, message, post_callback, send, spawn, spawn_with};
use crate::helpers::{API_KEY, APNS_TOKEN, eventually, ios_device, read, settled, spawn_with_providers_looping};
use serde_json::{Value, json};
use std::time::Duration;

/// A second APNs token.
pub const APNS_TOKEN_2: &str = "8f2c4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";
/// How long the background work a test waits for (counting, forgetting) may take.
const WAIT: Duration = Duration::from_secs(20);

/// The seed's example request, verbatim.
fn seed_request() -> Value {
    message("5dd51a4f21841443cfd3090d", "demo-room", &["aaa", "bbb"])
}

fn android(device_id: &str, client: &str, token: &str, locale: &str) -> Value {
    json!({ "type": "android", "token": token, "deviceId": device_id, "clientId": client, "locale": locale })
}

fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(pushgate_api::origin::sign(secret.as_bytes(), timestamp, body)))
}

fn now_seconds() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs())
        .expect("seconds")
}

#[tokio::test]
async fn the_seed_callback_reaches_aaa_and_bbb_with_their_own_badges() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let voip = json!({ "type": "ios-voip", "token": APNS_TOKEN_2, "deviceId": "iphone-voip", "clientId": "aaa" });
    assert_eq!(app.subscribe(voip).await.0, 200);
    assert_eq!(app.subscribe(android("pixel", "bbb", "fcm-token-bbb", "zh-TW")).await.0, 200);
    // Before the message: aaa has 2 open orders; bbb has 1 unread message in another room.
    let (status, body) = app.put_json("/v1/clients/aaa/badge/sources/orders", &json!({ "count": 2 })).await;
    assert_eq!(status, 200, "{body}");
    send(app, &message("earlier", "other-room", &["bbb"])).await;
    app.settle().await;

    let result = send(app, &seed_request()).await;
    assert_eq!(result["duplicate"], json!(false));
    let deliveries = settled(app, result["pushId"].as_str().expect("push id")).await;
    assert_eq!(deliveries.len(), 3, "one delivery per device of the recipients: {deliveries:?}");
    assert!(deliveries.iter().all(|d| d["status"] == "delivered"), "{deliveries:?}");

    let apns = setup.apns.delivered();
    let alert = apns.iter().find(|r| r.device_token == APNS_TOKEN).expect("aaa's iPhone got it");
    assert_eq!(
        alert.payload,
        json!({ "aps": {
            "alert": { "loc-key": "im_loc_text", "loc-args": ["SSS", "lala"], "title": "Demo Room", "body": "SSS: lala" },
            "badge": 3, "sound": "default", "thread-id": "demo-room" } })
    );
    assert_eq!(alert.headers["apns-push-type"], "alert");
    assert_eq!(alert.headers["apns-topic"], "io.imkit.app");
    let voip = apns.iter().find(|r| r.device_token == APNS_TOKEN_2).expect("aaa's VoIP registration got it");
    assert_eq!(voip.headers["apns-push-type"], "voip");
    assert_eq!(voip.headers["apns-topic"], "io.imkit.app.voip");
    assert_eq!((voip.payload["badge"].clone(), voip.payload["loc-key"].clone()), (json!(3), json!("im_loc_text")));
    assert_eq!(voip.payload["payload"]["_id"], "5dd51a4f21841443cfd3090d");

    let fcm = setup.fcm.messages();
    let message = &fcm.last().expect("bbb's phone got it").message;
    assert_eq!(message["token"], "fcm-token-bbb");
    assert_eq!(message["notification"], json!({ "title": "Demo Room", "body": "SSS: lala" }));
    assert_eq!(message["android"]["notification"]["notification_count"], 2);
    assert_eq!(message["android"]["notification"]["body_loc_key"], "im_loc_text");
    assert_eq!(message["data"]["badge"], "2");
    let payload: Value = serde_json::from_str(message["data"]["payload"].as_str().expect("payload")).expect("json");
    assert_eq!(
        payload["sender"]["avatarUrl"], "http://loremflickr.com/240/240/style?1574241882",
        "unknown fields kept"
    );
    assert!(payload.get("pushToClients").is_none());

    assert_eq!(badge(app, "aaa").await, json!({ "badge": 3, "rooms": { "demo-room": 1 }, "sources": { "orders": 2 } }));
    assert_eq!(
        badge(app, "bbb").await,
        json!({ "badge": 2, "rooms": { "demo-room": 1, "other-room": 1 }, "sources": {} })
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"pushgate_callbacks_total{app="SampleApp",version="v2",result="accepted"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_same_callback_twice_or_concurrently_counts_once_and_pushes_once() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let body = message("dup-1", "room", &["aaa"]);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url, body) = (app.client.clone(), app.base_url.clone(), body.to_string());
        sends.spawn(async move {
            let response = client
                .post(format!("{url}/imkit/push/v2"))
                .header("Content-Type", "application/json; charset=utf-8")
                .header("X-Pushgate-Secret", SECRET)
                .body(body)
                .send()
                .await
                .expect("sent");
            read(response).await
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = sends.join_next().await {
        let (status, answer) = answer.expect("task");
        assert_eq!(status, 200, "{answer}");
        answers.push(answer["result"].clone());
    }
    let again = send(app, &body).await;
    answers.push(again);
    let first: Vec<_> = answers.iter().filter(|a| a["duplicate"] == false).collect();
    assert_eq!(first.len(), 1, "exactly one is the first: {answers:?}");
    assert!(answers.iter().all(|a| a["pushId"] == first[0]["pushId"]), "every answer names the first push");
    settled(app, first[0]["pushId"].as_str().expect("push id")).await;
    assert_eq!(setup.apns.requests().len(), 1, "pushed once");
    assert_eq!(badge(app, "aaa").await["badge"], 1, "counted once");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"pushgate_callbacks_total{app="SampleApp",version="v2",result="duplicate"} 8"#));
}

#[tokio::test]
async fn forged_callbacks_are_refused_with_403_and_store_nothing() {
    let more_apps = r#"
[[apps]]
id = "OtherApp"
api_keys = ["other-app-api-key-0001"]
generic_push = { secret = "the-other-apps-secret-000" }

[[apps]]
id = "FarApp"
api_keys = ["far-app-api-key-000001"]
generic_push = { allow_ips = ["10.0.0.0/8"], secret = "the-far-apps-secret-00000" }

[[apps]]
id = "NoCheckApp"
api_keys = ["no-check-api-key-00001"]
"#;
    let setup = spawn_with(&format!(r#"generic_push = {{ secret = "{SECRET}" }}"#), more_apps).await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let body = message("forged", "room", &["aaa"]).to_string().into_bytes();
    let for_app = |app_id: &str| {
        let mut message = message("forged", "room", &["aaa"]);
        message["appID"] = app_id.into();
        message.to_string().into_bytes()
    };
    let now = now_seconds();
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        ("no credential", "/imkit/push/v2".into(), vec![], body.clone()),
        ("wrong query secret", "/imkit/push/v2?secret=callback-secret-0123456788".into(), vec![], body.clone()),
        ("wrong header secret", "/imkit/push/v2".into(), vec![("X-Pushgate-Secret", "nope".into())], body.clone()),
        ("another app's secret", "/imkit/push/v2?secret=the-other-apps-secret-000".into(), vec![], body.clone()),
        (
            "signed with another secret",
            "/imkit/push/v2".into(),
            vec![("X-Pushgate-Signature", signature("the-other-apps-secret-000", now, &body))],
            body.clone(),
        ),
        (
            "stale signature",
            "/imkit/push/v2".into(),
            vec![("X-Pushgate-Signature", signature(SECRET, now - 3600, &body))],
            body.clone(),
        ),
        (
            "signature of another body",
            "/imkit/push/v2".into(),
            vec![("X-Pushgate-Signature", signature(SECRET, now, b"{}"))],
            body.clone(),
        ),
        ("unknown app", format!("/imkit/push/v2?secret={SECRET}"), vec![], for_app("NobodysApp")),
        ("address not allowed", "/imkit/push/v2?secret=the-far-apps-secret-00000".into(), vec![], for_app("FarApp")),
        ("app without checks", "/imkit/push/v2".into(), vec![], for_app("NoCheckApp")),
        ("v1 without credential", "/imkit/push".into(), vec![], for_app("SampleApp")),
    ];
    for (case, path, headers, body) in cases {
        let (status, answer) = post_callback(app, &path, &headers, &body).await;
        assert_eq!(status, 403, "{case}: {answer}");
        assert_eq!(answer["error"]["code"], "FORBIDDEN", "{case}");
        assert!(answer["error"]["message"].as_str().expect("message").starts_with("origin verification failed"));
    }
    // A forged request with bad fields learns nothing about them.
    let mut bad = message("forged", "room", &["aaa"]);
    bad["pushToClients"] = "aaa".into();
    assert_eq!(post_callback(app, "/imkit/push/v2", &[], bad.to_string().as_bytes()).await.0, 403);
    assert_eq!(badge(app, "aaa").await["badge"], 0, "nothing counted");
    // The same message, properly signed, is the first of its id: nothing of the forgeries was kept.
    let signed = vec![("X-Pushgate-Signature", signature(SECRET, now, &body))];
    let (status, answer) = post_callback(app, "/imkit/push/v2", &signed, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["duplicate"], false);
    settled(app, answer["result"]["pushId"].as_str().expect("push id")).await;
    assert_eq!(setup.apns.requests().len(), 1);
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"pushgate_callbacks_total{app="SampleApp",version="v2",result="forbidden"}"#));
}

#[tokio::test]
async fn an_ip_allowlist_alone_admits_the_callers_it_lists() {
    let setup = spawn_with(r#"generic_push = { allow_ips = ["127.0.0.0/8", "::1/128"] }"#, "").await;
    let (status, answer) = post_callback(
        &setup.app,
        "/imkit/push/v2",
        &[],
        message("from-loopback", "room", &["aaa"]).to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(badge(&setup.app, "aaa").await["badge"], 1);
}

#[tokio::test]
async fn a_v1_callback_uses_the_given_badge_and_alert_once_per_recipient() {
    let setup = spawn().await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    assert_eq!(app.subscribe(android("pixel", "bbb", "fcm-token-bbb", "ja")).await.0, 200);
    let v1 = |to: &str, badge: u32| {
        let mut body = message("legacy-1", "room", &[]);
        let object = body.as_object_mut().expect("object");
        object.remove("pushToClients");
        object.remove("roomName");
        object.insert("toClient".into(), to.into());
        object.insert("badge".into(), badge.into());
        object.insert("alert".into(), "SSS: lala (IMKIT's text)".into());
        body.to_string()
    };
    let path = format!("/imkit/push?secret={SECRET}");
    let (status, first) = post_callback(app, &path, &[], v1("aaa", 9).as_bytes()).await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = post_callback(app, &path, &[], v1("aaa", 9).as_bytes()).await;
    assert_eq!(again["result"]["duplicate"], true);
    let (_, other) = post_callback(app, &path, &[], v1("bbb", 4).as_bytes()).await;
    assert_eq!(other["result"]["duplicate"], false, "v1 is one callback per recipient");
    settled(app, first["result"]["pushId"].as_str().expect("id")).await;
    settled(app, other["result"]["pushId"].as_str().expect("id")).await;
    let apns = setup.apns.delivered();
    assert_eq!(apns.len(), 1);
    assert_eq!(
        apns[0].payload,
        json!({ "aps": { "alert": "SSS: lala (IMKIT's text)", "badge": 9, "sound": "default", "thread-id": "room" } })
    );
    let fcm = setup.fcm.messages();
    assert_eq!(fcm.len(), 1);
    assert_eq!(fcm[0].message["notification"], json!({ "title": "SSS", "body": "SSS: lala (IMKIT's text)" }));
    assert_eq!(fcm[0].message["android"]["notification"]["notification_count"], 4);
    assert_eq!(badge(app, "aaa").await["badge"], 0, "v1 badges are IMKIT's, not counted here");
}

#[tokio::test]
async fn bad_callbacks_are_refused_naming_the_field_and_unknown_fields_are_tolerated() {
    let setup = spawn().await;
    let app = &setup.app;
    let path = format!("/imkit/push/v2?secret={SECRET}");
    let refused = |change: Value| {
        let mut body = message("bad", "room", &["aaa"]);
        for (key, value) in change.as_object().expect("object") {
            if value.is_null() {
                body.as_object_mut().expect("object").remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body.to_string()
    };
    let cases = [
        (json!({ "pushToClients": "aaa" }), "INVALID_PARAMETER", "pushToClients must be an array of client ids"),
        (json!({ "pushToClients": ["aaa", 5] }), "INVALID_PARAMETER", "pushToClients[1] must be a string"),
        (json!({ "pushToClients": null }), "MISSING_PARAMETER", "pushToClients is required"),
        (json!({ "room": null }), "MISSING_PARAMETER", "room is required"),
        (json!({ "_id": null, "id": null }), "MISSING_PARAMETER", "_id is required"),
        (json!({ "appID": null }), "MISSING_PARAMETER", "appID is required"),
        (json!({ "message": ["x"] }), "INVALID_PARAMETER", "message must be a string"),
    ];
    for (change, code, text) in cases {
        let (status, answer) = post_callback(app, &path, &[], refused(change.clone()).as_bytes()).await;
        assert_eq!(status, 400, "{change}: {answer}");
        assert_eq!((answer["error"]["code"].as_str(), answer["error"]["message"].as_str()), (Some(code), Some(text)));
    }
    assert_eq!(badge(app, "aaa").await["badge"], 0, "nothing partly stored");
    let tolerated = refused(json!({ "brandNewField": { "nested": [1, 2] }, "__v": 0 }));
    assert_eq!(post_callback(app, &path, &[], tolerated.as_bytes()).await.0, 200);
}

#[tokio::test]
async fn finished_pushes_and_callback_ids_past_the_retention_are_forgotten() {
    use pushgate_store::{NewPush, QueueStore as _, SqliteStore, conformance};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let three_hours_ago = (now_seconds() - 3 * 3600) * 1000;
    let old = |name: &str, message_id: &str| NewPush {
        deadline_ms: three_hours_ago + 1000,
        ..conformance::callback_push("SampleApp", name, message_id, &["nobody"], "room", three_hours_ago)
    };
    {
        let store = SqliteStore::open(&url).await.expect("open");
        // "nobody" has no device, so the push is finished (skipped) at once.
        store.accept_push(&old("old-push", "old-message")).await.expect("accepted");
    }
    // Housekeeping is the worker's loop's: it runs here.
    let setup = spawn_with_providers_looping(
        "retention_hours = 1",
        &format!(r#"generic_push = {{ secret = "{SECRET}" }}"#),
        "",
        &[("PUSHGATE_STORE__URL", &url)],
    )
    .await;
    let app = &setup.app;
    eventually(WAIT, "the old push to be forgotten", || async {
        let (status, _) = app.get(&format!("/v1/pushes/{}", conformance::push_id("old-push")), Some(API_KEY)).await;
        (status == 404).then_some(())
    })
    .await;
    let again = send(app, &message("old-message", "room", &["nobody"])).await;
    assert_eq!(again["duplicate"], false, "a callback id past the retention is forgotten too");
}

/// The value of one series in the `/metrics` text (0 when absent).
fn series(metrics: &str, name_and_labels: &str) -> u64 {
    metrics.lines().find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok()).unwrap_or_default()
}

/// Sends each body as a v2 callback on a connection of its own that the
/// caller closes without reading the answer: the `i`th after `i % 50 × 200 µs`,
/// so the hang-ups fall on every phase of the accept, the group commit among
/// them. The server then drops the request's future wherever it stands.
async fn send_and_hang_up(address: &str, bodies: &[String]) {
    use tokio::io::AsyncWriteExt as _;
    let mut callers = tokio::task::JoinSet::new();
    for (index, body) in bodies.iter().enumerate() {
        let (address, body) = (address.to_owned(), body.clone());
        callers.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connects");
            let request = format!(
                "POST /imkit/push/v2?secret={SECRET} HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.expect("written");
            // Not a wait for anything: where in the accept this caller hangs up.
            tokio::time::sleep(Duration::from_micros(200 * (index as u64 % 50))).await;
            drop(stream);
        });
    }
    while callers.join_next().await.is_some() {}
}

#[tokio::test]
async fn callbacks_whose_callers_hang_up_while_they_commit_are_still_counted() {
    const CALLBACKS_PER_ROUND: usize = 200;
    let setup = spawn().await;
    let app = &setup.app;
    let address = app.base_url.strip_prefix("http://").expect("plain HTTP").to_owned();
    let (mut sent, mut stored_by_hung_up_callers) = (0, 0);
    // Rounds until some callback whose caller hung up is known to be stored.
    for round in 0..5 {
        let bodies: Vec<String> = (0..CALLBACKS_PER_ROUND)
            .map(|i| message(&format!("hang-up-{round}-{i}"), "demo-room", &["aaa", "bbb"]).to_string())
            .collect();
        send_and_hang_up(&address, &bodies).await;
        sent += bodies.len() as u64;
        // Sending each callback again tells which ones the hung-up callers
        // stored: a stored one is a duplicate now. The resend commits after
        // anything they stored, so every id ends up accepted exactly once.
        for body in &bodies {
            let (status, answer) =
                post_callback(app, &format!("/imkit/push/v2?secret={SECRET}"), &[], body.as_bytes()).await;
            assert_eq!(status, 200, "{answer}");
            if answer["result"]["duplicate"] == json!(true) {
                stored_by_hung_up_callers += 1;
            }
        }
        if stored_by_hung_up_callers > 0 {
            break;
        }
    }
    assert!(stored_by_hung_up_callers > 0, "some callbacks whose caller hung up were stored");
    let accepted = r#"pushgate_callbacks_total{app="SampleApp",version="v2",result="accepted"}"#;
    let pushes = r#"pushgate_pushes_accepted_total{app="SampleApp"}"#;
    let duplicates = r#"pushgate_callbacks_total{app="SampleApp",version="v2",result="duplicate"}"#;
    let counted = eventually(WAIT, "every stored callback to be counted", || async {
        let metrics = app.metrics().await;
        let counted = (series(&metrics, accepted), series(&metrics, pushes), series(&metrics, duplicates));
        (counted.0 >= sent).then_some(counted)
    })
    .await;
    assert_eq!(
        counted,
        (sent, sent, stored_by_hung_up_callers),
        "every callback is counted once as accepted and as a push ({stored_by_hung_up_callers} stored for callers that hung up)"
    );
}

#[tokio::test]
async fn a_room_larger_than_a_fan_out_piece_reaches_every_device_once_with_its_badge() {
    let setup = spawn().await;
    let app = &setup.app;
    // More recipients than one fan-out transaction takes (the store fans a
    // big push out a piece at a time); the last ten have no device.
    let recipients: Vec<String> = (0..pushgate_store::FAN_OUT_PIECE + 76).map(|n| format!("member-{n:04}")).collect();
    let with_devices = recipients.len() - 10;
    let mut registrations = tokio::task::JoinSet::new();
    for (n, client) in recipients.iter().take(with_devices).enumerate() {
        let device = if n % 2 == 0 {
            ios_device(&format!("phone-{n}"), client, &format!("{n:064x}"))
        } else {
            android(&format!("phone-{n}"), client, &format!("fcm-{n}"), "en")
        };
        let (client, url) = (app.client.clone(), app.base_url.clone());
        registrations.spawn(async move {
            let response = client.post(format!("{url}/me/subscribe")).header("IM-API-KEY", API_KEY).json(&device);
            read(response.send().await.expect("sent")).await.0
        });
        while registrations.len() >= 16 {
            assert_eq!(registrations.join_next().await.expect("a registration").expect("task"), 200);
        }
    }
    while let Some(status) = registrations.join_next().await {
        assert_eq!(status.expect("task"), 200);
    }

    let members: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let result = send(app, &message("big-room-1", "big-room", &members)).await;
    let deliveries = settled(app, result["pushId"].as_str().expect("push id")).await;
    assert_eq!(deliveries.len(), recipients.len(), "one delivery per device, one for each recipient without");
    let delivered = deliveries.iter().filter(|d| d["status"] == "delivered").count();
    assert_eq!(delivered, with_devices, "{:?}", deliveries.iter().find(|d| d["status"] != "delivered"));

    let apns: Vec<String> = setup.apns.delivered().into_iter().map(|request| request.device_token).collect();
    let fcm: Vec<String> = setup.fcm.messages().into_iter().map(|sent| sent.token).collect();
    assert_eq!(apns.len() + fcm.len(), with_devices, "nothing sent twice");
    let unique = |mut tokens: Vec<String>| {
        tokens.sort();
        tokens.dedup();
        tokens.len()
    };
    assert_eq!((unique(apns), unique(fcm)), (with_devices.div_ceil(2), with_devices / 2), "each device once");
    for client in [&recipients[0], &recipients[pushgate_store::FAN_OUT_PIECE], &recipients[with_devices]] {
        assert_eq!(badge(app, client).await["rooms"], json!({ "big-room": 1 }), "{client} counted once");
    }
}
