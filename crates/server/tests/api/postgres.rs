//! pushgate on PostgreSQL (`store.url = "postgres://…"`), end to end through
//! the public API to the fakes: the same callbacks, badges, status and
//! retries as on the embedded store. Each test gets a schema of its own on
//! `PUSHGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`);
//! an unreachable server fails the test (`cargo xtask test` leaves these
//! tests out when it does not answer, and says so).

use crate::helpers::callbacks::{SECRET, badge, message, send};
use crate::helpers::settled;
use crate::helpers::{
    API_KEY, APNS_TOKEN, TestApp, WithProviders, Worked, eventually, ios_device, providers_config,
    spawn_with_providers_config,
};
use pushgate::startup::Role;
use pushgate_testkit::ApnsFailure;
use serde_json::json;

/// How long the tests of the worker's own loop wait for it.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A URL pushgate can be given, on a fresh schema with pushgate's tables.
pub async fn postgres_url(name: &str) -> String {
    let server = pushgate_testkit::postgres_server();
    let schema = pushgate_testkit::unique_schema(name);
    match pushgate_store::PgStore::open_in_schema(&server, &schema).await {
        Ok(_) => {
            let separator = if server.contains('?') { '&' } else { '?' };
            format!("{server}{separator}options=-c%20search_path%3D{schema}")
        }
        Err(error) => pushgate_testkit::postgres_absent(&error),
    }
}

async fn spawn(name: &str) -> WithProviders {
    let url = postgres_url(name).await;
    let sample_app = format!(r#"generic_push = {{ secret = "{SECRET}" }}"#);
    spawn_with_providers_config("", &sample_app, "", &[("PUSHGATE_STORE__URL", &url)]).await
}

#[tokio::test]
async fn callbacks_on_postgres_reach_each_device_with_exact_badges_and_count_once() {
    let setup = spawn("callbacks").await;
    let app = &setup.app;
    assert_eq!(app.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let android = json!({ "type": "android", "token": "fcm-token-bbb", "deviceId": "pixel", "clientId": "bbb" });
    assert_eq!(app.subscribe(android).await.0, 200);
    send(app, &message("earlier", "other-room", &["bbb"])).await;
    let result = send(app, &message("m1", "demo-room", &["aaa", "bbb", "nobody"])).await;
    assert_eq!(send(app, &message("m1", "demo-room", &["aaa", "bbb", "nobody"])).await["duplicate"], json!(true));
    let deliveries = settled(app, result["pushId"].as_str().expect("push id")).await;
    let statuses: Vec<_> = deliveries.iter().map(|d| (d["clientId"].as_str(), d["status"].as_str())).collect();
    assert_eq!(statuses.len(), 3, "{deliveries:?}");
    for expected in
        [(Some("aaa"), Some("delivered")), (Some("bbb"), Some("delivered")), (Some("nobody"), Some("skipped"))]
    {
        assert!(statuses.contains(&expected), "{expected:?} in {statuses:?}");
    }
    assert_eq!(setup.fcm.delivered_count(), 2, "both of bbb's messages");
    let apns = setup.apns.delivered();
    assert_eq!(apns.len(), 1, "the repeat was not pushed again");
    assert_eq!(apns[0].payload["aps"]["badge"], 1);
    // The two may reach FCM in either order (sent concurrently, on any of the
    // client's connections): m1's is found by its message id.
    let m1 = setup
        .fcm
        .messages()
        .into_iter()
        .find(|sent| sent.message["data"]["payload"].as_str().is_some_and(|payload| payload.contains(r#""_id":"m1""#)))
        .expect("bbb's phone got m1")
        .message;
    assert_eq!(m1["data"]["badge"], "2", "bbb: one unread in each room");
    assert_eq!(
        badge(app, "bbb").await,
        json!({ "badge": 2, "rooms": { "demo-room": 1, "other-room": 1 }, "sources": {} })
    );
}

/// A split deployment on one database: an API node (`--role api`) takes the
/// callback and stores it; a worker node (`--role worker`), which serves no
/// API, delivers it. Both are ready; the API node runs no worker. The worker
/// node polls only once a minute here: the API node's announcement through
/// the database is what wakes it for the second message (the worker's own
/// loop is what this tests, so it runs).
#[tokio::test]
async fn an_api_node_accepts_and_a_worker_node_delivers() {
    let url = postgres_url("roles").await;
    let sample_app = format!(r#"generic_push = {{ secret = "{SECRET}" }}"#);
    let (config, apns, _fcm, _files) = providers_config(Worked::ByItsLoop, "", &sample_app, "").await;
    let overrides = [("PUSHGATE_STORE__URL", url.as_str())];
    let api = TestApp::spawn_as(Some(&config), &overrides, Role::Api).await;
    let slow_poll = [("PUSHGATE_STORE__URL", url.as_str()), ("PUSHGATE_DELIVERY__POLL_INTERVAL_MS", "60000")];
    let worker = TestApp::spawn_looping_as(Some(&config), &slow_poll, Role::Worker).await;
    assert_eq!(api.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let result = send(&api, &message("m1", "demo-room", &["aaa"])).await;
    apns.wait_for_delivered(1, WAIT).await;
    assert_eq!(apns.delivered()[0].payload["aps"]["badge"], 1);
    let status = crate::helpers::settled_by_its_loop(&api, result["pushId"].as_str().expect("push id")).await;
    assert_eq!(status["deliveries"][0]["status"], "delivered", "the API node shows what the worker node did");
    // The worker node has found nothing more to claim and sleeps until its
    // next poll, a minute away: only the announcement can wake it in time.
    send(&api, &message("m2", "demo-room", &["aaa"])).await;
    apns.wait_for_delivered(2, WAIT).await;
    assert_eq!(apns.delivered()[1].payload["aps"]["badge"], 2);
    for node in [&api, &worker] {
        assert_eq!(node.get("/readyz", None).await.0, 200);
    }
    let (status, body) = worker.post_json("/push/push2clients", Some(API_KEY), &json!({})).await;
    assert_eq!((status, body["RC"].clone()), (404, json!(404)), "a worker node serves no API: {body}");
}

/// Two pushgate nodes (`--role all`) on one fresh schema, sending to the
/// same fakes; `extra_delivery` goes into their `[delivery]`, `extra_app`
/// into `SampleApp`'s table. Their workers' loops run when `looping`; else
/// the test drives them.
struct TwoNodes {
    one: TestApp,
    two: TestApp,
    apns: pushgate_testkit::FakeApns,
    _files: tempfile::TempDir,
}

async fn two_nodes(name: &str, extra_delivery: &str, extra_app: &str, looping: bool) -> TwoNodes {
    let url = postgres_url(name).await;
    let sample_app = format!("generic_push = {{ secret = \"{SECRET}\" }}\n{extra_app}");
    let worked = if looping { Worked::ByItsLoop } else { Worked::ByTest };
    let (config, apns, _fcm, _files) = providers_config(worked, extra_delivery, &sample_app, "").await;
    let overrides = [("PUSHGATE_STORE__URL", url.as_str())];
    let spawn = |config, overrides| async move {
        if looping {
            TestApp::spawn_looping_as(config, overrides, Role::All).await
        } else {
            TestApp::spawn_as(config, overrides, Role::All).await
        }
    };
    let (one, two) = (spawn(Some(&config), &overrides).await, spawn(Some(&config), &overrides).await);
    TwoNodes { one, two, apns, _files }
}

/// A refused credential pauses the app's provider on every node: whichever
/// node was refused, both show the pause, and a message accepted by the
/// other one is held, not sent into the same refusal. The nodes' loops,
/// which take on each other's pauses, are what this tests: they run.
#[tokio::test]
async fn a_refused_credential_pauses_the_provider_on_every_node() {
    let TwoNodes { one, two, apns, _files } = two_nodes("pauses", "pause_base_ms = 60000", "", true).await;
    assert_eq!(one.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    apns.fail_next(APNS_TOKEN, [ApnsFailure::Status(403, "InvalidProviderToken")]);
    send(&one, &message("m1", "demo-room", &["aaa"])).await;
    for node in [&one, &two] {
        let paused = eventually(WAIT, "the pause to show on every node", || async {
            let (_, body) = node.get("/readyz", None).await;
            body["result"]["pausedProviders"].as_array().filter(|pauses| !pauses.is_empty()).cloned()
        })
        .await;
        assert_eq!(
            (paused[0]["provider"].clone(), paused[0]["reason"].clone()),
            (json!("apns"), json!("InvalidProviderToken"))
        );
        assert!(node.metrics().await.contains(r#"pushgate_provider_paused{app="SampleApp",provider="apns"} 1"#));
    }
    let held = send(&two, &message("m2", "demo-room", &["aaa"])).await;
    let held = held["pushId"].as_str().expect("push id");
    let delivery = eventually(WAIT, "the second message to be held", || async {
        let (_, body) = one.get(&format!("/v1/pushes/{held}"), Some(API_KEY)).await;
        let delivery = body["result"]["deliveries"][0].clone();
        (delivery["reason"] == "paused: InvalidProviderToken").then_some(delivery)
    })
    .await;
    assert_eq!((delivery["status"].clone(), delivery["attempts"].clone()), (json!("retrying"), json!(0)));
    assert_eq!(apns.received_count(), 1, "only the first message met the refusal");

    // An operator resumes it on one node (the console's "Resume now"): every
    // node resumes, and what the pause held goes now, not in a minute.
    let (status, body) = two.post_json("/admin/api/providers/apns/resume", Some(API_KEY), &json!({})).await;
    assert_eq!((status, body["result"].clone()), (200, json!({ "resumed": true })), "{body}");
    apns.wait_for_delivered(2, WAIT).await;
    for node in [&one, &two] {
        eventually(WAIT, "the resume to reach every node", || async {
            let (_, body) = node.get("/readyz", None).await;
            body["result"].get("pausedProviders").is_none().then_some(())
        })
        .await;
    }
}

/// IMKIT retrying a callback against another node while the first is still
/// answering: each message sent to two nodes at once is counted and pushed
/// once, and both nodes answer with the same push id.
#[tokio::test]
async fn a_callback_sent_to_two_nodes_at_once_is_one_push() {
    const MESSAGES: usize = 10;
    let TwoNodes { one, two, apns, _files } = two_nodes("twice", "", "", false).await;
    assert_eq!(one.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    for n in 0..MESSAGES {
        let body = message(&format!("twice-{n}"), "demo-room", &["aaa"]);
        let (first, second) = tokio::join!(send(&one, &body), send(&two, &body));
        assert_eq!(first["pushId"], second["pushId"], "{first} {second}");
        assert_ne!(
            first["duplicate"] == json!(true),
            second["duplicate"] == json!(true),
            "one of the two is the repeat"
        );
    }
    one.settle().await;
    assert_eq!(apns.delivered_count(), MESSAGES);
    assert_eq!(badge(&two, "aaa").await["badge"], MESSAGES, "each message counted once");
    let mut badges: Vec<u64> = apns.delivered().iter().filter_map(|r| r.payload["aps"]["badge"].as_u64()).collect();
    badges.sort_unstable();
    assert_eq!(badges, (1..=MESSAGES as u64).collect::<Vec<_>>(), "each pushed once, with its own badge");
}

/// A busy room's messages taken by two nodes at once, and delivered by both:
/// the recipient gets one alert at once and one when the window ends, not
/// one per node (the nodes share the windows, and end each once).
#[tokio::test]
async fn two_nodes_taking_one_rooms_messages_coalesce_as_one() {
    const MESSAGES: usize = 10;
    let TwoNodes { one, two, apns, _files } =
        two_nodes("coalescing", "", "coalescing = { window_seconds = 10 }", false).await;
    assert_eq!(one.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    for n in (0..MESSAGES).step_by(2) {
        let (first, second) = (
            message(&format!("busy-{n}"), "demo-room", &["aaa"]),
            message(&format!("busy-{}", n + 1), "demo-room", &["aaa"]),
        );
        tokio::join!(send(&one, &first), send(&two, &second));
    }
    let (by_one, by_two) = tokio::join!(one.deliver(), two.deliver());
    assert_eq!((by_one + by_two, apns.delivered_count()), (1, 1), "the room's first message alerts, once");
    // Both nodes' clocks past the window's end (as one: each test node has
    // a clock of its own), and both deliver at once.
    let end = one.clock_ms().max(two.clock_ms()) + 10_000;
    one.clock.advance_to_ms(end);
    two.clock.advance_to_ms(end);
    let (by_one, by_two) = tokio::join!(one.deliver(), two.deliver());
    assert_eq!(by_one + by_two, 1, "the window ends once");
    one.settle().await;
    let alerts = apns.delivered();
    assert_eq!(alerts.len(), 2, "then one alert for the window, from one node");
    assert_eq!(alerts[1].payload["aps"]["alert"]["body"], "SSS: 10 new messages in Demo Room");
    assert_eq!(alerts[1].payload["aps"]["badge"], MESSAGES);
}
