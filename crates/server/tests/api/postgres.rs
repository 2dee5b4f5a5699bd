//! pushgate on PostgreSQL (`store.url = "postgres://…"`), end to end through
//! the public API to the fakes: the same callbacks, badges, status and
//! retries as on the embedded store. Each test gets a schema of its own on
//! `PUSHGATE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`);
//! with `CI=true` an unreachable server fails the test, elsewhere it is
//! reported and the test passes without running.

use crate::callbacks::{SECRET, WAIT, badge, message, send, settled};
use crate::helpers::{
    API_KEY, APNS_TOKEN, TestApp, WithProviders, ios_device, providers_config, spawn_with_providers_config,
};
use pushgate::startup::Role;
use serde_json::json;

/// A URL pushgate can be given, on a fresh schema with pushgate's tables.
pub async fn postgres_url(name: &str) -> Option<String> {
    let server = std::env::var("PUSHGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let schema = format!("pushgate_e2e_{name}_{}_{nanos}", std::process::id());
    match pushgate_store::PgStore::open_in_schema(&server, &schema).await {
        Ok(_) => {
            let separator = if server.contains('?') { '&' } else { '?' };
            Some(format!("{server}{separator}options=-c%20search_path%3D{schema}"))
        }
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("PostgreSQL at {server} does not answer ({error:?}); this test did not run");
            None
        }
        Err(error) => panic!("PostgreSQL at {server} does not answer, and CI needs it: {error:?}"),
    }
}

async fn spawn(name: &str) -> Option<WithProviders> {
    let url = postgres_url(name).await?;
    let sample_app = format!(r#"generic_push = {{ secret = "{SECRET}" }}"#);
    Some(spawn_with_providers_config("", &sample_app, "", &[("PUSHGATE_STORE__URL", &url)]).await)
}

#[tokio::test]
async fn callbacks_on_postgres_reach_each_device_with_exact_badges_and_count_once() {
    let Some(setup) = spawn("callbacks").await else { return };
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
    setup.fcm.wait_for_delivered(2, WAIT).await;
    let apns = setup.apns.delivered();
    assert_eq!(apns.len(), 1, "the repeat was not pushed again");
    assert_eq!(apns[0].payload["aps"]["badge"], 1);
    let last = setup.fcm.messages().last().expect("bbb's phone got it").message.clone();
    assert_eq!(last["data"]["badge"], "2", "bbb: one unread in each room");
    assert_eq!(
        badge(app, "bbb").await,
        json!({ "badge": 2, "rooms": { "demo-room": 1, "other-room": 1 }, "sources": {} })
    );
}

/// A split deployment on one database: an API node (`--role api`) takes the
/// callback and stores it; a worker node (`--role worker`), which serves no
/// API, delivers it. Both are ready; the API node runs no worker.
#[tokio::test]
async fn an_api_node_accepts_and_a_worker_node_delivers() {
    let Some(url) = postgres_url("roles").await else { return };
    let sample_app = format!(r#"generic_push = {{ secret = "{SECRET}" }}"#);
    let (config, apns, _fcm, _files) = providers_config("", &sample_app, "").await;
    let overrides = [("PUSHGATE_STORE__URL", url.as_str())];
    let api = TestApp::spawn_as(Some(&config), &overrides, Role::Api).await;
    let worker = TestApp::spawn_as(Some(&config), &overrides, Role::Worker).await;
    assert_eq!(api.subscribe(ios_device("iphone", "aaa", APNS_TOKEN)).await.0, 200);
    let result = send(&api, &message("m1", "demo-room", &["aaa"])).await;
    apns.wait_for_delivered(1, WAIT).await;
    assert_eq!(apns.delivered()[0].payload["aps"]["badge"], 1);
    let deliveries = settled(&api, result["pushId"].as_str().expect("push id")).await;
    assert_eq!(deliveries[0]["status"], "delivered", "the API node shows what the worker node did");
    for node in [&api, &worker] {
        assert_eq!(node.get("/readyz", None).await.0, 200);
    }
    let (status, body) = worker.post_json("/push/push2clients", Some(API_KEY), &json!({})).await;
    assert_eq!((status, body["RC"].clone()), (404, json!(404)), "a worker node serves no API: {body}");
}
