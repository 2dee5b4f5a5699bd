//! `POST /push/push2clients` end to end: HTTP in, durable queue, worker, the
//! fake APNs and fake FCM out, and `GET /v1/pushes/{pushId}`.

use crate::helpers::{
    API_KEY, APNS_TOKEN, WithProviders, error_envelope, ios_device, send_push, settled_status, spawn_with_providers,
    spawn_with_providers_and,
};
use pushgate_testkit::{ApnsFailure, FcmFailure};
use serde_json::{Value, json};
use std::time::Duration;

fn seed_marketing_payload() -> Value {
    json!({
        "type": "marketing", "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default",
        "topic": "io.imkit.app", "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!",
        "icon": "https://example.com/icon.png", "collapseKey": "promo_2026"
    })
}

async fn register(setup: &WithProviders) {
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
    let android =
        json!({ "type": "android", "token": "fcm-token-user002", "deviceId": "pixel-1", "clientId": "user002" });
    assert_eq!(setup.app.subscribe(android).await.0, 200);
}

async fn push(setup: &WithProviders, clients: &[&str], payload: Value) -> String {
    send_push(&setup.app, clients, payload).await
}

/// Delivers everything, and answers the push's status.
async fn settled(setup: &WithProviders, push_id: &str) -> Value {
    settled_status(&setup.app, push_id).await
}

#[tokio::test]
async fn the_seeds_first_example_reaches_apns_and_fcm_with_the_mapped_fields() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let (status, body) = setup
        .app
        .post_json(
            "/push/push2clients",
            Some(API_KEY),
            &json!({ "clients": ["user001", "user002", "user003"], "payload": seed_marketing_payload() }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"].as_object().map(|result| result.len()), Some(1), "the pushId alone: {body}");
    let push_id = body["result"]["pushId"].as_str().expect("push id").to_owned();

    setup.app.settle().await;

    assert!(setup.apns.delivered_count() >= 1, "1 delivered");
    assert!(setup.fcm.delivered_count() >= 1, "1 delivered");
    let apns = &setup.apns.delivered()[0];
    assert_eq!(apns.device_token, APNS_TOKEN);
    assert_eq!(apns.headers["apns-push-type"], "alert");
    assert_eq!(apns.headers["apns-topic"], "io.imkit.app");
    assert_eq!(apns.headers["apns-collapse-id"], "promo_2026");
    assert_eq!(
        apns.payload,
        json!({ "aps": { "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default" }, "type": "marketing" })
    );
    let fcm = &setup.fcm.messages()[0];
    assert_eq!(fcm.token, "fcm-token-user002");
    assert_eq!(fcm.message["notification"], json!({ "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!" }));
    assert_eq!(fcm.message["android"]["collapse_key"], "promo_2026");
    assert_eq!(fcm.message["android"]["notification"]["icon"], "https://example.com/icon.png");
    assert_eq!(fcm.message["data"], json!({ "type": "marketing" }));

    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 2, "skipped": 1 }));
    let skipped: Vec<_> =
        status["deliveries"].as_array().expect("deliveries").iter().filter(|d| d["status"] == "skipped").collect();
    assert_eq!(skipped[0]["clientId"], "user003");
    assert_eq!(skipped[0]["reason"], "no registered device");
}

#[tokio::test]
async fn the_seeds_localized_example_carries_loc_key_and_args_to_both_providers() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let payload = json!({
        "alert": { "loc-key": "NEW_MESSAGE_NOTIFICATION", "loc-args": ["張小明", "您好,請問有空嗎?"] },
        "badge": 3, "sound": "default", "title": "新訊息", "body": "張小明:您好,請問有空嗎?"
    });
    push(&setup, &["user001", "user002"], payload).await;
    setup.app.settle().await;
    assert!(setup.apns.delivered_count() >= 1, "1 delivered");
    assert!(setup.fcm.delivered_count() >= 1, "1 delivered");
    assert_eq!(
        setup.apns.delivered()[0].payload["aps"]["alert"],
        json!({ "loc-key": "NEW_MESSAGE_NOTIFICATION", "loc-args": ["張小明", "您好,請問有空嗎?"], "title": "新訊息", "body": "張小明:您好,請問有空嗎?" })
    );
    let fcm = &setup.fcm.messages()[0].message;
    assert_eq!(fcm["android"]["notification"]["body_loc_key"], "NEW_MESSAGE_NOTIFICATION");
    assert_eq!(fcm["data"]["loc-args"], r#"["張小明","您好,請問有空嗎?"]"#);
}

#[tokio::test]
async fn no_alert_title_or_body_sends_a_silent_push() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    push(&setup, &["user001", "user002"], json!({ "type": "badge-sync", "badge": 7 })).await;
    setup.app.settle().await;
    assert!(setup.apns.delivered_count() >= 1, "1 delivered");
    assert!(setup.fcm.delivered_count() >= 1, "1 delivered");
    let apns = &setup.apns.delivered()[0];
    assert_eq!(apns.headers["apns-push-type"], "background");
    assert_eq!(apns.headers["apns-priority"], "5");
    assert_eq!(apns.payload, json!({ "aps": { "badge": 7, "content-available": 1 }, "type": "badge-sync" }));
    let fcm = &setup.fcm.messages()[0].message;
    assert!(fcm.get("notification").is_none());
    assert_eq!(fcm["data"], json!({ "type": "badge-sync" }));
}

#[tokio::test]
async fn an_expiry_34_days_ahead_reaches_android_with_fcms_longest_ttl() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let expiry = pushgate_api::now_ms() / 1000 + 34 * 24 * 3600;
    let push_id = push(&setup, &["user001", "user002"], json!({ "title": "T", "body": "B", "expiry": expiry })).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 2 }), "{status}");
    assert_eq!(setup.fcm.messages()[0].message["android"]["ttl"], "2419200s");
    assert_eq!(setup.apns.delivered()[0].headers["apns-expiration"], expiry.to_string());
}

#[tokio::test]
async fn an_outage_of_the_provider_ends_with_the_push_delivered() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    setup.apns.fail_next(APNS_TOKEN, std::iter::repeat_n(ApnsFailure::Status(503, "ServiceUnavailable"), 3));
    setup.fcm.fail_next("fcm-token-user002", [FcmFailure::Unavailable(None), FcmFailure::QuotaExceeded(None)]);
    let push_id = push(&setup, &["user001", "user002"], seed_marketing_payload()).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 2 }));
    let attempts: Vec<_> =
        status["deliveries"].as_array().expect("deliveries").iter().map(|d| d["attempts"].clone()).collect();
    assert_eq!(attempts, vec![json!(4), json!(3)]);
    let ids: Vec<_> = setup.apns.requests().iter().map(|r| r.headers["apns-id"].clone()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries the same apns-id");
}

#[tokio::test]
async fn retry_after_counts_from_the_providers_answer_not_from_the_start_of_the_attempt() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    // A slow provider: every answer comes 800 ms after the request arrived.
    let answer_delay = Duration::from_millis(800);
    setup.apns.set_answer_delay(answer_delay);
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::TooManyRequests(Some(1))]);
    let push_id = push(&setup, &["user001"], seed_marketing_payload()).await;
    let attempt_started_ms = setup.app.clock_ms();
    assert_eq!(setup.app.deliver().await, 1);
    let (_, retrying) = setup.app.get(&format!("/v1/pushes/{push_id}"), Some(API_KEY)).await;
    let delivery = &retrying["result"]["deliveries"][0];
    assert_eq!(delivery["status"], "retrying", "{retrying}");
    let due_ms = delivery["nextAttemptAtMS"].as_i64().expect("a due time");
    let earliest_ms =
        attempt_started_ms + i64::try_from((answer_delay + Duration::from_secs(1)).as_millis()).expect("ms");
    assert!(
        due_ms >= earliest_ms,
        "due {} ms after the attempt started, before the 429's Retry-After of 1 s had passed since the answer",
        due_ms - attempt_started_ms
    );
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 1 }));
    let requests = setup.apns.requests();
    assert_eq!(requests.iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 200]);
}

#[tokio::test]
async fn an_unregistered_token_prunes_the_device() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let later = pushgate_api::now_ms() + 60_000;
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::Unregistered(later)]);
    setup.fcm.fail_next("fcm-token-user002", [FcmFailure::Unregistered]);
    let push_id = push(&setup, &["user001", "user002"], seed_marketing_payload()).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "pruned": 2 }));
    let reasons: Vec<_> =
        status["deliveries"].as_array().expect("deliveries").iter().map(|d| d["reason"].clone()).collect();
    assert_eq!(reasons, vec![json!("Unregistered"), json!("UNREGISTERED")]);
    assert!(setup.app.devices_of("user001").await.is_empty());
    assert!(setup.app.devices_of("user002").await.is_empty());
}

#[tokio::test]
async fn a_device_that_registered_after_the_token_died_is_kept() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::Unregistered(1_000)]);
    let push_id = push(&setup, &["user001"], seed_marketing_payload()).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["deliveries"][0]["status"], "failed");
    assert_eq!(status["deliveries"][0]["reason"], "Unregistered; the device registered again since, so it was kept");
    assert_eq!(setup.app.devices_of("user001").await.len(), 1);
}

#[tokio::test]
async fn a_payload_error_fails_the_delivery_and_keeps_the_token() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::Status(400, "BadExpirationDate")]);
    let push_id = push(&setup, &["user001"], seed_marketing_payload()).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(
        (status["deliveries"][0]["status"].clone(), status["deliveries"][0]["reason"].clone()),
        (json!("failed"), json!("BadExpirationDate"))
    );
    assert_eq!(status["deliveries"][0]["attempts"], 1, "not retried unchanged");
    assert_eq!(setup.app.devices_of("user001").await.len(), 1);
}

#[tokio::test]
async fn retries_stop_at_the_maximum_number_of_attempts() {
    let setup = spawn_with_providers("max_attempts = 3").await;
    register(&setup).await;
    setup.apns.fail_next(APNS_TOKEN, std::iter::repeat_n(ApnsFailure::Status(500, "InternalServerError"), 10));
    let push_id = push(&setup, &["user001"], seed_marketing_payload()).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["deliveries"][0]["status"], "failed");
    assert_eq!(status["deliveries"][0]["reason"], "InternalServerError (gave up after 3 attempts)");
    assert_eq!(setup.apns.requests().len(), 3);
}

#[tokio::test]
async fn an_already_expired_push_is_accepted_and_skipped() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let push_id = push(&setup, &["user001"], json!({ "alert": "too late", "expiry": 1_000_000 })).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["deliveries"][0]["status"], "skipped");
    assert_eq!(status["deliveries"][0]["reason"], "expired before it was accepted");
    assert!(setup.apns.requests().is_empty());
}

#[tokio::test]
async fn expiry_becomes_apns_expiration_and_the_fcm_ttl() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let expiry = pushgate_api::now_ms() / 1000 + 600;
    push(&setup, &["user001", "user002"], json!({ "alert": "soon", "body": "soon", "expiry": expiry })).await;
    setup.app.settle().await;
    assert!(setup.apns.delivered_count() >= 1, "1 delivered");
    assert!(setup.fcm.delivered_count() >= 1, "1 delivered");
    assert_eq!(setup.apns.delivered()[0].headers["apns-expiration"], expiry.to_string());
    let ttl = setup.fcm.messages()[0].message["android"]["ttl"].as_str().expect("ttl").to_owned();
    let seconds: i64 = ttl.trim_end_matches('s').parse().expect("seconds");
    assert!((595..=600).contains(&seconds), "{ttl}");
}

#[tokio::test]
async fn push2clients_answers_the_seeds_errors() {
    let setup = spawn_with_providers("").await;
    let missing = error_envelope(400, "Bad Request", "MISSING_PARAMETER", "clients and payload are required");
    for body in [json!({ "clients": ["a"] }), json!({ "payload": {} }), json!({})] {
        assert_eq!(setup.app.post_json("/push/push2clients", Some(API_KEY), &body).await, (400, missing.clone()));
    }
    let unauthorized = error_envelope(401, "Unauthorized", "INVALID_API_KEY", "Invalid or missing API key");
    let valid = json!({ "clients": ["a"], "payload": { "alert": "x" } });
    assert_eq!(setup.app.post_json("/push/push2clients", None, &valid).await, (401, unauthorized));
    let cases = [
        (
            json!({ "clients": "user001", "payload": {} }),
            "clients: invalid type: string \"user001\", expected a sequence",
        ),
        (json!({ "clients": ["a", 5], "payload": {} }), "clients[1]: invalid type: integer `5`, expected a string"),
        (json!({ "clients": ["a", ""], "payload": {} }), "clients[1]: clientId must not be empty"),
        (json!({ "clients": ["a"], "payload": [] }), "payload: must be a JSON object"),
        (
            json!({ "clients": ["a"], "payload": { "badge": "one" } }),
            "payload.badge: invalid type: string \"one\", expected u32",
        ),
        (
            json!({ "clients": ["a"], "payload": { "alert": 5 } }),
            "payload.alert: data did not match any variant of untagged enum Alert",
        ),
        (
            json!({ "clients": ["a"], "payload": { "collapseKey": "k".repeat(65) } }),
            "payload.collapseKey must be at most 64 bytes",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = setup.app.post_json("/push/push2clients", Some(API_KEY), &body).await;
        assert_eq!(status, 400, "for {body}");
        assert_eq!(answer["error"], json!({ "code": "INVALID_PARAMETER", "message": message }), "for {body}");
    }
    let (status, answer) = setup.app.get("/v1/pushes/no-such-push", Some(API_KEY)).await;
    assert_eq!((status, answer["error"]["code"].clone()), (404, json!("NOT_FOUND")));
}

#[tokio::test]
async fn delivery_outcomes_show_in_the_metrics() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let push_id = push(&setup, &["user001", "user002"], seed_marketing_payload()).await;
    settled(&setup, &push_id).await;
    let text = setup.app.metrics().await;
    assert!(text.contains(r#"pushgate_pushes_accepted_total{app="SampleApp"} 1"#), "{text}");
    assert!(
        text.contains(r#"pushgate_deliveries_total{app="SampleApp",provider="apns",result="delivered",reason=""} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"pushgate_deliveries_total{app="SampleApp",provider="fcm",result="delivered",reason=""} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"pushgate_delivery_latency_seconds_count{app="SampleApp"} 2"#), "{text}");
    // A refusal's label is the provider's short code, not its free text.
    setup.fcm.fail_next("fcm-token-user002", [FcmFailure::InvalidToken]);
    let push_id = push(&setup, &["user002"], seed_marketing_payload()).await;
    settled(&setup, &push_id).await;
    let text = setup.app.metrics().await;
    assert!(
        text.contains(
            r#"pushgate_deliveries_total{app="SampleApp",provider="fcm",result="pruned",reason="INVALID_ARGUMENT"} 1"#
        ),
        "{text}"
    );
    let depth = setup.app.metrics().await;
    assert!(depth.contains(r#"pushgate_queue_depth{status="queued"} 0"#), "{depth}");
    assert!(depth.contains(r#"pushgate_queue_depth{status="retrying"} 0"#), "{depth}");
    assert!(depth.contains(r#"pushgate_queue_depth{status="journaled"} 0"#), "every push fanned out: {depth}");
}

#[tokio::test]
async fn refused_credentials_pause_the_apps_provider_until_a_probe_succeeds() {
    let setup = spawn_with_providers("pause_base_ms = 1500").await;
    register(&setup).await;
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::Status(403, "InvalidProviderToken")]);
    let push_id = push(&setup, &["user001", "user002"], seed_marketing_payload()).await;
    assert_eq!(setup.app.deliver().await, 2);
    let (status, body) = setup.app.get("/readyz", None).await;
    assert_eq!(status, 200, "the instance stays ready: {body}");
    let paused = body["result"]["pausedProviders"].as_array().cloned().unwrap_or_default();
    assert_eq!(paused.len(), 1, "{body}");
    assert_eq!((paused[0]["app"].clone(), paused[0]["provider"].clone()), (json!("SampleApp"), json!("apns")));
    assert_eq!(paused[0]["reason"], "InvalidProviderToken");
    let metrics = || setup.app.metrics();
    assert!(metrics().await.contains(r#"pushgate_provider_paused{app="SampleApp",provider="apns"} 1"#));

    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 2 }), "FCM went on; APNs resumed after the probe");
    assert_eq!(status["deliveries"][0]["attempts"], 2);
    let (_, ready) = setup.app.get("/readyz", None).await;
    assert!(ready["result"].get("pausedProviders").is_none(), "{ready}");
    assert!(metrics().await.contains(r#"pushgate_provider_paused{app="SampleApp",provider="apns"} 0"#));
    assert_eq!(setup.app.devices_of("user001").await.len(), 1, "a credential error never touches a token");
}

#[tokio::test]
async fn a_large_send_is_paced_by_the_apps_rate_limit() {
    let setup =
        crate::helpers::spawn_with_providers_and("", &[("PUSHGATE_APPS__SAMPLEAPP__FCM__RATE_PER_SECOND", "10")]).await;
    let clients: Vec<String> = (0..25).map(|n| format!("user{n}")).collect();
    for (n, client) in clients.iter().enumerate() {
        let body = json!({ "type": "android", "token": format!("fcm-token-{n}"), "deviceId": format!("pixel-{n}"), "clientId": client });
        assert_eq!(setup.app.subscribe(body).await.0, 200);
    }
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let push_id = push(&setup, &clients, json!({ "title": "t", "body": "b" })).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 25 }));
    let arrivals: Vec<_> = setup.fcm.messages().iter().map(|m| m.received_at).collect();
    let first = arrivals.iter().min().expect("messages");
    let last = arrivals.iter().max().expect("messages");
    // A bucket of 10 refilling at 10/s needs 1.5 s for the other 15; allow for timer slack.
    assert!(
        last.duration_since(*first) >= Duration::from_millis(1300),
        "25 sends in {:?}",
        last.duration_since(*first)
    );
}

#[tokio::test]
async fn an_apps_own_attempt_limit_overrides_the_instances() {
    let setup = crate::helpers::spawn_with_providers_and(
        "max_attempts = 5",
        &[("PUSHGATE_APPS__SAMPLEAPP__DELIVERY__MAX_ATTEMPTS", "2")],
    )
    .await;
    register(&setup).await;
    setup.apns.fail_next(APNS_TOKEN, std::iter::repeat_n(ApnsFailure::Status(500, "InternalServerError"), 10));
    let push_id = push(&setup, &["user001"], seed_marketing_payload()).await;
    let status = settled(&setup, &push_id).await;
    assert_eq!(status["deliveries"][0]["reason"], "InternalServerError (gave up after 2 attempts)");
}

#[tokio::test]
async fn the_seeds_curl_example_reaches_both_providers() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let payload = json!({
        "type": "alert", "alert": "系統維護通知:今晚 23:00 將進行例行維護", "badge": 1, "sound": "default",
        "title": "系統公告", "body": "系統維護通知:今晚 23:00 將進行例行維護", "icon": "https://example.com/icon.png"
    });
    let push_id = push(&setup, &["user001", "user002"], payload).await;
    assert_eq!(settled(&setup, &push_id).await["summary"], json!({ "delivered": 2 }));
    let apns = &setup.apns.delivered()[0];
    assert_eq!(
        apns.payload,
        json!({ "aps": { "alert": "系統維護通知:今晚 23:00 將進行例行維護", "badge": 1, "sound": "default" }, "type": "alert" })
    );
    assert!(!apns.headers.contains_key("apns-collapse-id"), "no collapseKey, no collapse id");
    assert_eq!(apns.headers["apns-topic"], "io.imkit.app", "the app's topic when the payload names none");
    assert_eq!(
        setup.fcm.messages()[0].message,
        json!({
            "token": "fcm-token-user002",
            "notification": { "title": "系統公告", "body": "系統維護通知:今晚 23:00 將進行例行維護" },
            "android": { "ttl": "3600s", "priority": "high", "notification": { "icon": "https://example.com/icon.png" } },
            "data": { "type": "alert" }
        })
    );
}

/// A send that waits longer than its lease (a slow provider here) keeps its
/// work: the worker renews the lease while the answer is on its way, so the
/// delivery is not claimed and sent a second time.
#[tokio::test]
async fn a_send_slower_than_its_lease_is_not_sent_twice() {
    // The lease renewal is the worker's loop's: it runs here.
    let setup = crate::helpers::spawn_with_providers_looping("lease_ms = 2000", "", "", &[]).await;
    register(&setup).await;
    // Every answer comes 5 s after its request: two and a half leases (the
    // renewal, every third of a lease, has 1.3 s of slack on a busy machine).
    setup.apns.set_answer_delay(Duration::from_millis(5000));
    let push_id = push(&setup, &["user001"], seed_marketing_payload()).await;
    let status = crate::helpers::settled_by_its_loop(&setup.app, &push_id).await;
    assert_eq!(status["summary"], json!({ "delivered": 1 }));
    // A second send would have arrived a lease (2 s) after the first, long
    // before the first answer (5 s) settled the push.
    assert_eq!(setup.apns.received_count(), 1, "the slow send was not taken up again when its first lease ended");
}

/// A provider no recent send could reach (here: nothing listens where APNs
/// is configured) shows in `/readyz`, which stays ready, with the reason.
#[tokio::test]
async fn a_provider_no_send_reaches_is_named_in_readyz() {
    let setup = crate::helpers::spawn_with_providers_and(
        "",
        &[("PUSHGATE_APPS__SAMPLEAPP__APNS__ENDPOINT", "https://127.0.0.1:9")],
    )
    .await;
    for n in 0..6 {
        let token = format!("{n:064x}");
        assert_eq!(setup.app.subscribe(ios_device(&format!("iphone-{n}"), &format!("user{n}"), &token)).await.0, 200);
    }
    let clients: Vec<String> = (0..6).map(|n| format!("user{n}")).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    push(&setup, &clients, json!({ "title": "t", "body": "b" })).await;
    assert_eq!(setup.app.deliver().await, 6, "six sends, none reaching APNs");
    let (status, body) = setup.app.get("/readyz", None).await;
    assert_eq!(status, 200, "still ready: {body}");
    let unreachable = body["result"]["unreachableProviders"].as_array().cloned().unwrap_or_default();
    assert_eq!(unreachable.len(), 1, "{body}");
    assert_eq!(
        (unreachable[0]["app"].clone(), unreachable[0]["provider"].clone()),
        (json!("SampleApp"), json!("apns"))
    );
    assert_eq!(unreachable[0]["reason"], "ConnectionFailed");
    assert!(unreachable[0]["sends"].as_u64().expect("a count") >= 5);
}

/// One app over its accept limits gets 429 `RATE_LIMITED` with `Retry-After`
/// and nothing stored, on push2clients and on the callbacks alike; another
/// app is not slowed by it.
#[tokio::test]
async fn an_app_over_its_inbound_limits_is_refused_and_the_others_are_not() {
    let config = format!(
        "[[apps]]\nid = \"SampleApp\"\napi_keys = [\"{API_KEY}\"]\ngeneric_push = {{ secret = \"limits-secret-0001\" }}\n\
         limits = {{ requests_per_second = 1, burst = 2 }}\n\
         [[apps]]\nid = \"OtherApp\"\napi_keys = [\"other-app-key-000001\"]\n"
    );
    let app = crate::helpers::TestApp::spawn_with(Some(&config), &[]).await;
    let send = |key: &'static str| {
        let body = json!({ "clients": ["user001"], "payload": { "alert": "hi" } });
        let request =
            app.client.post(format!("{}/push/push2clients", app.base_url)).header("IM-API-KEY", key).json(&body);
        async move { request.send().await.expect("sent") }
    };
    assert_eq!(send(API_KEY).await.status(), 200);
    assert_eq!(send(API_KEY).await.status(), 200);
    let refused = send(API_KEY).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let (_, body) = crate::helpers::read(refused).await;
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let callback = pushgate_testkit::seed::generic_callback("limited-1", "room", &["user001"]);
    let response = app
        .client
        .post(format!("{}/imkit/push/v2?secret=limits-secret-0001", app.base_url))
        .json(&callback)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 429, "the callbacks share the app's limit");
    assert!(
        app.metrics().await.contains(r#"pushgate_pushes_accepted_total{app="SampleApp"} 2"#),
        "nothing more stored"
    );
    for _ in 0..5 {
        assert_eq!(send("other-app-key-000001").await.status(), 200, "OtherApp has limits of its own");
    }
}

#[tokio::test]
async fn a_status_request_with_wait_seconds_answers_once_every_delivery_is_final() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let push_id = push(&setup, &["user001", "user002"], seed_marketing_payload()).await;
    let (status, body) = setup.app.get(&format!("/v1/pushes/{push_id}"), Some(API_KEY)).await;
    assert_eq!((status, &body["result"]["summary"]), (200, &json!({ "queued": 2 })), "nothing delivered yet: {body}");

    // Asked to wait, it answers when the worker has settled both, not before.
    let request = setup.app.client.get(format!("{}/v1/pushes/{push_id}?waitSeconds=30", setup.app.base_url));
    let waiting = tokio::spawn(request.header("IM-API-KEY", API_KEY).send());
    setup.app.settle().await;
    let (status, body) = crate::helpers::read(waiting.await.expect("the task").expect("an answer")).await;
    assert_eq!((status, &body["result"]["summary"]), (200, &json!({ "delivered": 2 })), "{body}");

    for bad in ["31", "-1", "soon", "null&waitSeconds=null", "1&waitSeconds=2"] {
        let (status, body) = setup.app.get(&format!("/v1/pushes/{push_id}?waitSeconds={bad}"), Some(API_KEY)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "INVALID_PARAMETER");
        assert!(body["error"]["message"].as_str().is_some_and(|message| message.starts_with("waitSeconds ")), "{body}");
    }
}

#[tokio::test]
async fn provider_override_blocks_reach_apns_and_fcm_merged_over_the_built_request() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let mut payload = seed_marketing_payload();
    payload["apns"] = json!({
        "headers": { "apns-priority": "5", "apns-collapse-id": "promo-apns" },
        "payload": { "aps": { "sound": null, "interruption-level": "passive" }, "deepLink": "app://promo" }
    });
    payload["fcm"] = json!({
        "android": { "priority": "normal", "notification": { "channel_id": "promos" } },
        "data": { "deepLink": "app://promo" },
        "fcm_options": { "analytics_label": "promo" }
    });
    let push_id = push(&setup, &["user001", "user002"], payload).await;
    assert_eq!(settled(&setup, &push_id).await["summary"], json!({ "delivered": 2 }));

    let apns = &setup.apns.delivered()[0];
    assert_eq!(
        (apns.headers["apns-priority"].as_str(), apns.headers["apns-collapse-id"].as_str()),
        ("5", "promo-apns")
    );
    assert_eq!(apns.headers["apns-push-type"], "alert");
    assert_eq!(
        apns.payload,
        json!({ "aps": { "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "interruption-level": "passive" },
                "type": "marketing", "deepLink": "app://promo" })
    );
    let fcm = &setup.fcm.messages()[0].message;
    assert_eq!(fcm["android"]["priority"], "normal");
    assert_eq!(fcm["android"]["collapse_key"], "promo_2026", "what the block leaves alone stays");
    assert_eq!(fcm["android"]["notification"]["channel_id"], "promos");
    assert_eq!(fcm["data"], json!({ "type": "marketing", "deepLink": "app://promo" }));
    assert_eq!(fcm["fcm_options"]["analytics_label"], "promo");
}

#[tokio::test]
async fn an_override_block_a_provider_would_refuse_is_a_400_naming_it_and_nothing_is_stored() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    for (block, named) in [
        (
            json!({ "apns": { "headers": { "apns-push-type": "pager" } } }),
            "payload.apns.headers.apns-push-type: \"pager\" is not an apns-push-type Apple documents",
        ),
        (
            json!({ "apns": { "headers": { "apns-push-type": "liveactivity" } } }),
            "payload.apns.headers.apns-push-type: a liveactivity push goes to an ActivityKit token: send it with \
             POST /push/liveactivity",
        ),
        (
            json!({ "apns": { "headers": { "apns-push-type": "voip", "apns-priority": "5" } } }),
            "payload.apns.headers.apns-priority: a voip push goes at priority 10",
        ),
        (json!({ "apns": { "headers": { "apns-push-type": "background" } } }), "payload.apns: a background push needs"),
        (json!({ "apns": { "payload": { "pad": "x".repeat(4_100) } } }), "payload.apns.payload: the APNs payload"),
        (json!({ "fcm": { "token": "someone-else" } }), "payload.fcm.token: pushgate sets the target"),
        (json!({ "fcm": { "data": { "count": 3 } } }), "payload.fcm.data.count: FCM data values must be strings"),
        (json!({ "webpush": { "headers": { "Urgency": "asap" } } }), "payload.webpush.headers.Urgency: "),
        (json!({ "webpush": { "notifications": {} } }), "payload.webpush.notifications: unknown field `notifications`"),
    ] {
        let mut payload = seed_marketing_payload();
        payload.as_object_mut().expect("object").extend(block.as_object().expect("object").clone());
        let (status, body) = setup
            .app
            .post_json("/push/push2clients", Some(API_KEY), &json!({ "clients": ["user001"], "payload": payload }))
            .await;
        assert_eq!((status, &body["error"]["code"]), (400, &json!("INVALID_PARAMETER")), "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(named), "{named} in {message}");
    }
    assert_eq!(setup.app.settle().await, 0, "nothing was stored, so nothing is delivered");
    assert_eq!(setup.apns.delivered_count() + setup.fcm.delivered_count(), 0);
}

#[tokio::test]
async fn a_critical_alert_needs_the_apps_entitlement() {
    let critical = || {
        let mut payload = seed_marketing_payload();
        payload["apns"] = json!({ "payload": { "aps": {
            "interruption-level": "critical", "relevance-score": 0.9,
            "sound": { "critical": 1, "name": "default", "volume": 1.0 } } } });
        json!({ "clients": ["user001"], "payload": payload })
    };
    let without = spawn_with_providers("").await;
    let (status, body) = without.app.post_json("/push/push2clients", Some(API_KEY), &critical()).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("payload.apns.payload.aps.interruption-level: critical needs"), "{message}");

    let entitled = spawn_with_providers_and("", &[("PUSHGATE_APPS__SAMPLEAPP__APNS__CRITICAL_ALERTS", "true")]).await;
    register(&entitled).await;
    let (status, body) = entitled.app.post_json("/push/push2clients", Some(API_KEY), &critical()).await;
    assert_eq!(status, 200, "{body}");
    entitled.app.settle().await;
    let aps = &entitled.apns.delivered()[0].payload["aps"];
    assert_eq!((&aps["interruption-level"], &aps["relevance-score"]), (&json!("critical"), &json!(0.9)));
    assert_eq!(aps["sound"]["critical"], 1);
}

/// A VoIP device takes only a VoIP push (it must report a call, or iOS ends
/// the app), and a push2clients is one only when its block says so.
#[tokio::test]
async fn a_voip_push_reaches_only_voip_devices_and_nothing_else_does() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let voip = json!({ "type": "ios-voip", "token": crate::callbacks::APNS_TOKEN_2, "deviceId": "iphone-voip",
                       "clientId": "user001" });
    assert_eq!(setup.app.subscribe(voip).await.0, 200);
    let status = settled(&setup, &push(&setup, &["user001"], seed_marketing_payload()).await).await;
    let outcome = |status: &Value, device: &str| {
        let delivery =
            status["deliveries"].as_array().expect("deliveries").iter().find(|d| d["deviceId"] == device).cloned();
        delivery.map(|d| (d["status"].clone(), d["reason"].clone())).expect("a delivery")
    };
    assert_eq!(outcome(&status, "iphone-1"), (json!("delivered"), Value::Null));
    assert_eq!(outcome(&status, "iphone-voip"), (json!("skipped"), json!("not a push this device type takes")));

    let call = json!({ "apns": { "headers": { "apns-push-type": "voip" },
                                 "payload": { "aps": {}, "call": { "id": "c-1", "caller": "Alice" } } } });
    let status = settled(&setup, &push(&setup, &["user001"], call).await).await;
    assert_eq!(outcome(&status, "iphone-voip"), (json!("delivered"), Value::Null));
    assert_eq!(outcome(&status, "iphone-1"), (json!("skipped"), json!("not a push this device type takes")));
    let sent = setup.apns.delivered().pop().expect("the VoIP push");
    assert_eq!(sent.device_token, crate::callbacks::APNS_TOKEN_2);
    assert_eq!(
        (
            sent.headers["apns-push-type"].as_str(),
            sent.headers["apns-topic"].as_str(),
            sent.headers["apns-priority"].as_str()
        ),
        ("voip", "io.imkit.app.voip", "10")
    );
    assert_eq!(sent.payload, json!({ "aps": {}, "call": { "id": "c-1", "caller": "Alice" } }));
}

/// Every member of `theirs` is in `ours` with the same value (objects member
/// by member): what the SDK sends, pushgate sends too.
fn contains(ours: &Value, theirs: &Value, at: &str) {
    match theirs {
        Value::Object(members) => {
            for (name, value) in members {
                contains(&ours[name], value, &format!("{at}.{name}"));
            }
        }
        _ => assert_eq!(ours, theirs, "{at}"),
    }
}

/// The FCM options a push2clients' `fcm` block takes are the wire forms
/// `firebase-admin` (Google's SDK) makes of the same options written as its
/// users write them: compared member by member.
#[tokio::test]
async fn npm_an_fcm_block_reaches_fcm_as_firebase_admin_sends_the_same_options() {
    let peers = pushgate_testkit::node_peers();
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let mut payload = seed_marketing_payload();
    payload["fcm"] = json!({
        "android": { "priority": "normal", "ttl": "600s", "collapse_key": "promo_2026",
                     "notification": { "channel_id": "promos", "color": "#ff6600", "sticky": true, "visibility": "PRIVATE",
                                       "notification_count": 3, "image": "https://example.com/promo.png", "tag": "promo" } },
        "apns": { "headers": { "apns-priority": "5" }, "payload": { "aps": { "category": "PROMO" } } },
        "fcm_options": { "analytics_label": "promo" },
        "data": { "deepLink": "app://promo" }
    });
    let push_id = push(&setup, &["user002"], payload).await;
    assert_eq!(settled(&setup, &push_id).await["summary"], json!({ "delivered": 1 }));
    let ours = &setup.fcm.messages()[0].message;

    let sdk = json!({
        "token": "fcm-token-user002",
        "android": { "priority": "normal", "ttl": 600_000, "collapseKey": "promo_2026",
                     "notification": { "channelId": "promos", "color": "#ff6600", "sticky": true, "visibility": "private",
                                       "notificationCount": 3, "imageUrl": "https://example.com/promo.png", "tag": "promo" } },
        "apns": { "headers": { "apns-priority": "5" }, "payload": { "aps": { "category": "PROMO" } } },
        "data": { "deepLink": "app://promo" }
    });
    let theirs = peers.run("fcm", &json!({ "message": sdk }), None).await["message"].clone();
    for part in ["android", "apns", "data"] {
        contains(&ours[part], &theirs[part], part);
    }
    assert_eq!(ours["fcm_options"]["analytics_label"], "promo");
}

/// Each APNs push type that goes to a token of its own reaches that token
/// only, with the topic suffix and headers Apple asks for; the fake APNs
/// refuses a wrong suffix as APNs does.
#[tokio::test]
async fn each_dedicated_push_type_reaches_its_own_tokens_with_apples_topic() {
    let setup = spawn_with_providers("").await;
    register(&setup).await;
    let kinds = [
        ("widgets", "ios-widgets", "io.imkit.app.push-type.widgets", json!({ "aps": { "content-changed": true } })),
        ("location", "ios-location", "io.imkit.app.location-query", json!({ "aps": {} })),
        ("complication", "ios-complication", "io.imkit.app.complication", json!({ "aps": {}, "score": "2-1" })),
        (
            "fileprovider",
            "ios-fileprovider",
            "io.imkit.app.pushkit.fileprovider",
            json!({ "aps": {}, "container-identifier": "NSFileProviderRootContainerItemIdentifier" }),
        ),
        ("pushtotalk", "ios-pushtotalk", "io.imkit.app.voip-ptt", json!({ "aps": {}, "activeSpeaker": "Alice" })),
    ];
    for (index, (kind, device_type, _, _)) in kinds.iter().enumerate() {
        let token = format!("{:02x}", 0xa0 + index).repeat(32);
        let device =
            json!({ "type": device_type, "token": token, "deviceId": format!("{kind}-1"), "clientId": "user001" });
        assert_eq!(setup.app.subscribe(device).await.0, 200);
    }
    for (index, (kind, device_type, topic, expected)) in kinds.into_iter().enumerate() {
        let mut block = json!({ "headers": { "apns-push-type": kind } });
        if kind == "pushtotalk" {
            block["headers"]["apns-expiration"] = json!("0");
        }
        if let Some(extra) = expected.as_object().filter(|members| members.len() > 1) {
            block["payload"] = json!(extra);
        }
        let push_id = push(&setup, &["user001", "user002"], json!({ "type": "sync", "apns": block })).await;
        let status = settled(&setup, &push_id).await;
        let reached: Vec<(Value, Value)> = status["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| (d["type"].clone(), d["status"].clone()))
            .collect();
        assert_eq!(
            reached,
            vec![(json!(device_type), json!("delivered")), (Value::Null, json!("skipped"))],
            "{kind}: its token only (user002 has none)"
        );
        let sent = setup.apns.delivered().pop().expect("sent");
        assert_eq!(sent.device_token, format!("{:02x}", 0xa0 + index).repeat(32));
        assert_eq!((sent.headers["apns-push-type"].as_str(), sent.headers["apns-topic"].as_str()), (kind, topic));
        let mut expected = expected;
        expected["type"] = json!("sync");
        assert_eq!(sent.payload, expected, "{kind}");
    }

    for (payload, named) in [
        (
            json!({ "title": "Hi", "apns": { "headers": { "apns-push-type": "widgets" } } }),
            "payload.title: a widgets push goes to ios-widgets tokens only",
        ),
        (
            json!({ "apns": { "headers": { "apns-push-type": "widgets" }, "payload": { "aps": { "content-changed": null } } } }),
            "payload.apns.payload.aps.content-changed: ",
        ),
        (
            json!({ "apns": { "headers": { "apns-push-type": "pushtotalk" } } }),
            "payload.apns.headers.apns-expiration: a pushtotalk push must say 0",
        ),
        (
            json!({ "apns": { "headers": { "apns-push-type": "pushtotalk", "apns-expiration": 0, "apns-priority": "5" } } }),
            "payload.apns.headers.apns-priority: a pushtotalk push goes at priority 10",
        ),
        (
            json!({ "fcm": { "data": {} }, "apns": { "headers": { "apns-push-type": "location" } } }),
            "payload.fcm: a location push goes to ios-location tokens only",
        ),
        (
            json!({ "apns": { "headers": { "apns-push-type": "mdm" } } }),
            "payload.apns.headers.apns-push-type: a mdm push goes to an MDM",
        ),
    ] {
        let (status, body) = setup
            .app
            .post_json("/push/push2clients", Some(API_KEY), &json!({ "clients": ["user001"], "payload": payload }))
            .await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(named), "{named} in {message}");
    }
}
