//! `/me/subscribe` and `/me/unsubscribe` with IMKIT's client credentials
//! (`IM-CLIENT-KEY` + `IM-Authorization`), vouched for by the app's chat
//! server: a fake IMKIT `GET /me` over TLS.

use crate::helpers::{API_KEY, APNS_TOKEN, WithProviders, error_envelope, read, spawn_with_providers_config};
use pushgate_testkit::{FakeImkit, TestCa};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CLIENT_KEY: &str = "sample-app-client-key-jwt";
const OTHER_CLIENT_KEY: &str = "other-app-client-key-jwt";

struct Setup {
    providers: WithProviders,
    imkit: FakeImkit,
    /// OtherApp's chat server, which wrongly answers for SampleApp.
    other: FakeImkit,
    _files: tempfile::TempDir,
}

async fn spawn(cache_seconds: u64) -> Setup {
    let ca = TestCa::generate();
    let imkit = FakeImkit::start(&ca, "SampleApp", CLIENT_KEY).await;
    let other = FakeImkit::start(&ca, "SampleApp", OTHER_CLIENT_KEY).await;
    let files = tempfile::tempdir().expect("temp dir");
    let ca_file = files.path().join("imkit-ca.pem");
    std::fs::write(&ca_file, ca.ca_pem()).expect("write");
    let table = |server: &FakeImkit, key: &str| {
        format!(
            "imkit = {{ url = \"{}\", client_key = \"{key}\", ca_file = {:?}, cache_seconds = {cache_seconds}, timeout_ms = 500 }}",
            server.url(),
            ca_file.display().to_string()
        )
    };
    let more = format!(
        "[[apps]]\nid = \"OtherApp\"\napi_keys = [\"other-app-key-000001\"]\n{}\n",
        table(&other, OTHER_CLIENT_KEY)
    );
    let providers = spawn_with_providers_config("", &table(&imkit, CLIENT_KEY), &more, &[]).await;
    Setup { providers, imkit, other, _files: files }
}

async fn as_client(setup: &Setup, path: &str, client_key: &str, token: &str, body: &Value) -> (u16, Value) {
    let app = &setup.providers.app;
    let request = app
        .client
        .post(format!("{}{path}", app.base_url))
        .header("IM-CLIENT-KEY", client_key)
        .header("IM-Authorization", token)
        .json(body);
    read(request.send().await.expect("sent")).await
}

fn iphone() -> Value {
    json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "iphone-1" })
}

fn invalid_token() -> Value {
    error_envelope(401, "Unauthorized", "INVALID_TOKEN", "Invalid or expired token")
}

#[tokio::test]
async fn an_app_registers_with_client_credentials_and_its_client_gets_pushes() {
    let setup = spawn(300).await;
    setup.imkit.issue("alice-token", "alice");
    let (status, body) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "alice-token", &iphone()).await;
    assert_eq!((status, body), (200, json!({ "RC": 0, "RM": "OK", "result": {} })));
    let app = &setup.providers.app;
    assert_eq!(app.devices_of("alice").await.len(), 1, "bound to the client the chat server named");

    let (status, _) = app
        .post_json("/push/push2clients", Some(API_KEY), &json!({ "clients": ["alice"], "payload": { "alert": "hi" } }))
        .await;
    assert_eq!(status, 200);
    app.settle().await;
    assert_eq!(setup.providers.apns.delivered()[0].device_token, APNS_TOKEN);

    // A clientId in the body must be the caller's own.
    let mut claimed = iphone();
    claimed["clientId"] = "mallory".into();
    let (status, body) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "alice-token", &claimed).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("INVALID_PARAMETER")), "{body}");
    assert!(app.devices_of("mallory").await.is_empty());
    claimed["clientId"] = "alice".into();
    assert_eq!(as_client(&setup, "/me/subscribe", CLIENT_KEY, "alice-token", &claimed).await.0, 200);

    let unsubscribe = json!({ "type": "ios", "deviceId": "iphone-1" });
    let (status, body) = as_client(&setup, "/me/unsubscribe", CLIENT_KEY, "alice-token", &unsubscribe).await;
    assert_eq!((status, body["result"].clone()), (200, json!({ "n": 1, "ok": 1 })));
    assert!(app.devices_of("alice").await.is_empty());
    assert_eq!(setup.imkit.calls(), 1, "one call for the token, then its cached answer");
}

#[tokio::test]
async fn refused_credentials_are_401_and_an_unreachable_chat_server_503_storing_nothing() {
    let setup = spawn(300).await;
    let app = &setup.providers.app;
    setup.imkit.issue("alice-token", "alice");
    let mut with_client = iphone();
    with_client["clientId"] = "alice".into();

    let (status, body) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "expired-token", &iphone()).await;
    assert_eq!((status, body), (401, invalid_token()));
    let (status, _) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "expired-token", &iphone()).await;
    assert_eq!(status, 401);
    assert_eq!(setup.imkit.calls(), 1, "a refused token is refused from the cache for a while");

    // A client key no app has, another app's key with this app's token, and a
    // chat server answering for an app other than its own: all refused.
    let (status, body) = as_client(&setup, "/me/subscribe", "nobodys-client-key", "alice-token", &iphone()).await;
    assert_eq!((status, body), (401, invalid_token()));
    setup.other.issue("bob-token", "bob");
    let (status, body) = as_client(&setup, "/me/subscribe", OTHER_CLIENT_KEY, "alice-token", &iphone()).await;
    assert_eq!((status, body), (401, invalid_token()), "OtherApp's server does not know SampleApp's token");
    let (status, body) = as_client(&setup, "/me/subscribe", OTHER_CLIENT_KEY, "bob-token", &iphone()).await;
    assert_eq!((status, body), (401, invalid_token()), "its server answered for SampleApp, not OtherApp");
    let request = app.client.post(format!("{}/me/subscribe", app.base_url)).header("IM-Authorization", "alice-token");
    let (status, body) = read(request.json(&with_client).send().await.expect("sent")).await;
    assert_eq!((status, body), (401, invalid_token()), "a token without a client key");
    assert!(app.devices_of("alice").await.is_empty() && app.devices_of("bob").await.is_empty());

    // A chat server slower than the timeout, then one that is gone: 503, nothing stored, nothing cached.
    setup.imkit.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    let (status, body) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "alice-token", &iphone()).await;
    assert_eq!((status, body["error"]["code"].clone()), (503, json!("UNAVAILABLE")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(2), "gave up at the 500 ms timeout");
    setup.imkit.stop();
    let (status, body) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "alice-token", &iphone()).await;
    assert_eq!((status, body["error"]["code"].clone()), (503, json!("UNAVAILABLE")), "{body}");
    assert!(app.devices_of("alice").await.is_empty());
}

#[tokio::test]
async fn concurrent_requests_with_a_new_token_make_one_call_and_a_revoked_token_stops_after_the_cache_time() {
    let setup = spawn(1).await;
    setup.imkit.issue("alice-token", "alice");
    setup.imkit.set_delay(Duration::from_millis(200));
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..10 {
        let mut body = iphone();
        body["deviceId"] = format!("iphone-{n}").into();
        let request = setup
            .providers
            .app
            .client
            .post(format!("{}/me/subscribe", setup.providers.app.base_url))
            .header("IM-CLIENT-KEY", CLIENT_KEY)
            .header("IM-Authorization", "alice-token")
            .json(&body);
        requests.spawn(async move { request.send().await.expect("sent").status().as_u16() });
    }
    let statuses = requests.join_all().await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(setup.imkit.calls(), 1, "ten requests, one call");
    setup.imkit.set_delay(Duration::ZERO);

    setup.imkit.revoke("alice-token");
    let revoked_at = Instant::now();
    loop {
        let (status, _) = as_client(&setup, "/me/subscribe", CLIENT_KEY, "alice-token", &iphone()).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(revoked_at.elapsed() < Duration::from_secs(10), "the revoked token still works after the cache time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(3), "within the one-second cache time (and a little)");
    assert_eq!(setup.imkit.calls(), 2, "asked again once the answer ran out");
}
