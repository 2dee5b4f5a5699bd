//! The admin console at `/admin`: in headless Chromium (Debian's, through
//! ChromeDriver) against a real pushgate and the fake providers; and its
//! routes' keys and headers over plain HTTP.

use crate::helpers::{
    API_KEY, APNS_TOKEN, WithProviders, eventually, ios_device, send_push, spawn_with_providers_looping,
};
use pushgate_testkit::{ApnsFailure, Browser};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const ADMIN_KEY: &str = "console-admin-key-0001";
const WAIT: Duration = Duration::from_secs(20);

/// `SampleApp` on the fakes, a second app, and an admin key; a pause long
/// enough that only an operator's resume ends it within a test. The console
/// shows a live node (a test push followed until delivered, "Resume now"
/// delivering at once), so the worker's own loop runs.
async fn spawn() -> WithProviders {
    let more = format!(
        "[[apps]]\nid = \"OtherApp\"\napi_keys = [\"other-app-key-000001\"]\n\n[admin]\napi_keys = [\"{ADMIN_KEY}\"]\n"
    );
    spawn_with_providers_looping("pause_base_ms = 600000\npause_max_ms = 600000", "", &more, &[]).await
}

async fn send(setup: &WithProviders, clients: &[&str], alert: &str) -> String {
    send_push(&setup.app, clients, json!({ "alert": alert, "title": "T", "body": alert })).await
}

async fn push_status(setup: &WithProviders, push_id: &str) -> Value {
    let (status, body) = setup.app.get(&format!("/v1/pushes/{push_id}"), Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

#[tokio::test]
async fn the_console_charts_looks_up_sends_and_resumes_in_a_real_browser() {
    let setup = spawn().await;
    let browser = Browser::start(1280, 900).await;
    let folder = screenshots();
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "alice", APNS_TOKEN)).await.0, 200);
    let android = json!({ "type": "android", "token": "fcm-token-bob-0001", "deviceId": "pixel-1", "clientId": "bob" });
    assert_eq!(setup.app.subscribe(android).await.0, 200);
    let first = send(&setup, &["alice", "bob"], "first").await;
    setup.apns.wait_for_delivered(1, WAIT).await;
    setup.fcm.wait_for_delivered(1, WAIT).await;

    // A wrong key is refused on the login page; the admin key logs in.
    browser.client.goto(&format!("{}/admin", setup.app.base_url)).await.expect("the console opens");
    browser.fill("#key", "not-a-key-of-anything").await;
    browser.click("#login-form button").await;
    browser.wait_for_text("#login-error", "INVALID_API_KEY").await;
    browser.fill("#key", ADMIN_KEY).await;
    browser.click("#login-form button").await;

    // The overview charts the deliveries just made, from this node's /metrics.
    browser.wait_for_text("#legend-deliveries", "apns delivered").await;
    browser.wait_for_text("#legend-deliveries", "fcm delivered").await;
    assert!(browser.count("#chart-deliveries polyline").await >= 2, "a line per provider and result");
    browser.wait_for_text("#queue", "0 queued").await;
    browser.wait_for_text("#queue", "0 held").await;
    // push2clients sends are no chat alerts: nothing for coalescing to count.
    browser.wait_for_text("#coalescing", "no chat alerts yet").await;
    browser.wait_for_text("#paused", "None").await;
    browser.screenshot(&folder, "overview").await;

    // APNs refuses the app's credentials: the provider pauses, for ten minutes.
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::Status(403, "InvalidProviderToken")]);
    let held = send(&setup, &["alice"], "held").await;
    browser.wait_for_text("#paused", "InvalidProviderToken").await;
    browser.wait_for_text("#failures", "InvalidProviderToken").await;
    browser.screenshot(&folder, "paused").await;
    assert_eq!(push_status(&setup, &held).await["deliveries"][0]["status"], "retrying");

    // "Resume now": the held delivery goes at once, the pause is gone.
    browser.click("#paused button.resume[data-provider='apns']").await;
    let delivered = eventually(WAIT, "the held delivery to go after the resume", || async {
        let status = push_status(&setup, &held).await;
        (status["deliveries"][0]["status"] == "delivered").then_some(status)
    })
    .await;
    assert_eq!(delivered["deliveries"][0]["attempts"], 2, "refused once, then sent on the resume");
    browser.wait_for_text("#paused", "None").await;
    let (_, ready) = setup.app.get("/readyz", None).await;
    assert!(ready["result"].get("pausedProviders").is_none(), "{ready}");

    // An admin reloads the credentials from the console.
    browser.click("#reload").await;
    browser.wait_for_text("#reload-result", "Reloaded: providers of app OtherApp, providers of app SampleApp").await;

    // Lookup: a client's devices (masked), badge, prefs and recent pushes; then a push.
    browser.click("#nav-lookup").await;
    browser.select("#app", "SampleApp").await;
    browser.fill("#lookup-id", "alice").await;
    browser.click("#lookup-form button").await;
    let devices = browser.wait_for_text("#client-devices", "iphone-1").await;
    assert!(devices.contains(&APNS_TOKEN[APNS_TOKEN.len() - 8..]), "the token's end: {devices}");
    assert!(!devices.contains(APNS_TOKEN), "never the whole token: {devices}");
    browser.wait_for_text("#client-badge", "Total").await;
    browser.wait_for_text("#client-prefs", "Pushes").await;
    let recent = browser.wait_for_text("#client-recent", &held).await;
    assert!(recent.contains(&first), "both pushes named alice: {recent}");
    browser.screenshot(&folder, "lookup-client").await;
    browser.click(&format!("#client-recent a[data-push='{first}']")).await;
    browser.wait_for_text("#push", &format!("Push {first}")).await;
    let deliveries = browser.wait_for_text("#push-deliveries", "delivered").await;
    assert!(deliveries.contains("alice") && deliveries.contains("bob"), "{deliveries}");
    browser.screenshot(&folder, "lookup-push").await;

    // A test push to one client, followed until delivered.
    setup.fcm.clear_messages();
    browser.click("#nav-send").await;
    browser.fill("#send-client", "bob").await;
    browser.fill("#send-body", "hello from the console").await;
    browser.click("#send-form button").await;
    browser.wait_for_text("#sent-deliveries", "delivered").await;
    setup.fcm.wait_for_delivered(1, WAIT).await;
    let messages = setup.fcm.messages();
    assert_eq!(messages[0].token, "fcm-token-bob-0001");
    assert_eq!(messages[0].message["notification"]["body"], "hello from the console");
    browser.screenshot(&folder, "send").await;

    // Broadcast channels: one made, listed from APNs, and deleted.
    browser.click("#nav-channels").await;
    browser.wait_for_text("#channel-list", "No channel").await;
    browser.click("#channel-form button").await;
    let listed = browser.wait_for_text("#channel-list", "the most recent one").await;
    let made = setup.apns.channel_ids();
    assert_eq!(made.len(), 1, "one channel at APNs");
    assert!(listed.contains(&made[0]) && listed.contains("LiveActivity"), "{listed}");
    browser.screenshot(&folder, "channels").await;
    browser.click(&format!("#channel-list button[data-channel='{}']", made[0])).await;
    browser.client.accept_alert().await.expect("the confirmation is accepted");
    browser.wait_for_text("#channel-list", "No channel").await;
    assert!(setup.apns.channel_ids().is_empty(), "deleted at APNs");

    // At 360 px the overview fits the width.
    browser.client.set_window_size(360, 800).await.expect("resize");
    browser.click("#nav-overview").await;
    browser.wait_for_text("#legend-deliveries", "apns delivered").await;
    let overflow = browser
        .client
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .expect("script runs");
    assert_eq!(overflow, json!(0), "no sideways scrolling at 360 px");
    browser.screenshot(&folder, "overview-360px").await;
    browser.client.close().await.expect("the session closes");
}

#[tokio::test]
async fn an_app_key_opens_the_console_for_its_own_app_only() {
    let setup = spawn().await;
    let get = |path: &'static str, key: &'static str, app: Option<&'static str>| {
        let mut request = setup.app.client.get(format!("{}{path}", setup.app.base_url)).header("IM-API-KEY", key);
        if let Some(app) = app {
            request = request.header("IM-APP-ID", app);
        }
        async move { crate::helpers::read(request.send().await.expect("sent")).await }
    };
    let (status, session) = get("/admin/api/session", API_KEY, None).await;
    assert_eq!((status, session["result"].clone()), (200, json!({ "admin": false, "apps": ["SampleApp"] })));
    let (status, session) = get("/admin/api/session", ADMIN_KEY, None).await;
    assert_eq!((status, session["result"].clone()), (200, json!({ "admin": true, "apps": ["OtherApp", "SampleApp"] })));

    let (status, body) = get("/admin/api/overview?app=OtherApp", API_KEY, None).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("INVALID_PARAMETER")), "{body}");
    let (status, body) = get("/admin/api/overview?app=OtherApp", ADMIN_KEY, None).await;
    assert_eq!((status, body["result"]["app"].clone()), (200, json!("OtherApp")), "{body}");

    // An admin key acts on the app IM-APP-ID names, on any route.
    let (status, body) = get("/v1/clients/alice/devices", ADMIN_KEY, None).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("MISSING_PARAMETER")), "{body}");
    let (status, body) = get("/v1/clients/alice/devices", ADMIN_KEY, Some("NoSuchApp")).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("INVALID_PARAMETER")), "{body}");
    let (status, _) = get("/v1/clients/alice/devices", ADMIN_KEY, Some("OtherApp")).await;
    assert_eq!(status, 200);
    // An app's key ignores IM-APP-ID: it opens its own app only.
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "alice", APNS_TOKEN)).await.0, 200);
    let (_, body) = get("/v1/clients/alice/devices", "other-app-key-000001", Some("SampleApp")).await;
    assert_eq!(body["result"]["devices"], json!([]), "OtherApp has no alice");

    // Nothing changes without a key; no cookie is ever set.
    let resume = format!("{}/admin/api/providers/apns/resume", setup.app.base_url);
    let response = setup.app.client.post(&resume).send().await.expect("sent");
    assert_eq!(response.status(), 401);
    let response = setup.app.client.post(&resume).header("IM-API-KEY", API_KEY).send().await.expect("sent");
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(crate::helpers::read(response).await.1["result"], json!({ "resumed": false }));

    // The page: only this origin's scripts, never in a frame.
    let page = setup.app.client.get(format!("{}/admin", setup.app.base_url)).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = page.text().await.expect("text");
    assert!(!html.contains("http://") && !html.contains("https://"), "no asset from elsewhere");
    for asset in ["/admin/app.js", "/admin/app.css"] {
        let response = setup.app.client.get(format!("{}{asset}", setup.app.base_url)).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{asset}");
    }
}
