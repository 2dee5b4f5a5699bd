//! `pushgate-demo`: pushgate as it runs in production (the same
//! `Application`, on a temporary embedded store), sending to local stand-ins
//! for APNs, FCM and a Web Push service (the test kit's fakes, which speak
//! the real protocols), so a newcomer sees deliveries without an Apple or
//! Google account.
//!
//!     cargo run -p pushgate-demo                 # then keeps serving on 127.0.0.1:8080
//!     cargo run -p pushgate-demo -- --once       # prints what was received and exits
//!
//! It is a binary of its own so that the `pushgate` binary never links a
//! fake: the production wiring cannot reach them.

use anyhow::Context as _;
use clap::Parser;
use pushgate::config::Config;
use pushgate::startup::{Application, init_logging, shutdown_signal};
use pushgate_testkit::{Es256Key, FakeApns, FakeApnsConfig, FakeFcm, FakeFcmConfig, FakePushService, TestCa};
use serde_json::{Value, json};
use std::net::SocketAddr;

const API_KEY: &str = "demo-api-key-0123456789abcdef";
const SECRET: &str = "demo-callback-secret-0123456789";
const APNS_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

/// pushgate against local stand-ins for APNs, FCM and a Web Push service.
#[derive(Debug, Parser)]
#[command(name = "pushgate-demo", version)]
struct Cli {
    /// Where pushgate listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Print what each device received, then stop (instead of serving on).
    #[arg(long, conflicts_with = "empty")]
    once: bool,
    /// Register no device and send nothing: pushgate and the stand-ins only (the README's tour starts this way).
    #[arg(long)]
    empty: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pushgate::startup::install_crypto_provider();
    let ca = TestCa::generate();
    let key = Es256Key::generate();
    let apns = FakeApns::start(&ca, FakeApnsConfig::token(&key)).await;
    let fcm = FakeFcm::start(&ca, "imkit-demo", FakeFcmConfig::default()).await;
    let web = FakePushService::start(&ca).await;
    let files = tempfile::tempdir().context("a temporary folder")?;
    let write = |name: &str, content: &str| -> anyhow::Result<String> {
        let path = files.path().join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.display().to_string())
    };
    let ca_file = write("demo-ca.pem", &ca.ca_pem())?;
    let tables = pushgate_testkit::fake_provider_tables(
        &apns,
        std::path::Path::new(&write("AuthKey_ABC123DEFG.p8", &key.private_pem)?),
        &fcm,
        std::path::Path::new(&write("service-account.json", &fcm.account.json)?),
        std::path::Path::new(&ca_file),
    );
    let config_text = format!(
        r#"
[server]
listen = "{listen}"

[store]
url = "sqlite://{store}"

[delivery]
poll_interval_ms = 100

[log]
level = "warn"

[[apps]]
id = "SampleApp"
api_keys = ["{API_KEY}"]
generic_push = {{ secret = "{SECRET}" }}
privacy = {{ mode = "encrypt", fallback = "clear" }}
{tables}
[apps.webpush]
vapid_private_key_file = {vapid:?}
subject = "mailto:demo@example.com"
allowed_hosts = ["{web_host}"]
navigate = "https://chat.example.com/rooms/{{room}}"
ca_file = {ca:?}
"#,
        listen = cli.listen,
        store = files.path().join("pushgate.db").display(),
        vapid = write("vapid.pem", &Es256Key::generate().private_pem)?,
        ca = ca_file,
        web_host = web.host(),
    );
    let config_path = write("pushgate.toml", &config_text)?;
    let config = Config::load(Some(std::path::Path::new(&config_path)), std::iter::empty())?;
    let _telemetry = init_logging(&config);
    let application = Application::build(&config).await?;
    let base_url = application.base_url();
    let stop = shutdown_signal();
    let (stop_now, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        tokio::select! {
            () = stop => {}
            _ = stopped => {}
        }
    }));

    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client.request(method, format!("{base_url}{path}")).header("IM-API-KEY", API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.context("pushgate answers")?;
            let status = response.status();
            let answer: Value = response.json().await.context("pushgate answers JSON")?;
            anyhow::ensure!(status.is_success() && answer["RC"] == 0, "{status}: {answer}");
            Ok::<Value, anyhow::Error>(answer)
        }
    };
    let post = |path: &str, body: Value| call(reqwest::Method::POST, path.to_owned(), Some(body));
    // Until each of the push's deliveries is final: what a device got is then known to come from it.
    let settled = |push_id: Value| {
        let path = format!("/v1/pushes/{}?waitSeconds=30", push_id.as_str().unwrap_or_default());
        call(reqwest::Method::GET, path, None)
    };
    println!("pushgate demo: pushgate on {base_url}, with local stand-ins for APNs, FCM and a Web Push service");
    println!("  API key (IM-API-KEY): {API_KEY}");
    println!("  PUSH_GENERIC secret:  {SECRET}   ({base_url}/imkit/push/v2?secret={SECRET})");
    println!("  Any APNs or FCM token is delivered; logs at warn (RUST_LOG=info for more).\n");
    if cli.empty {
        println!("No device registered and nothing sent: the README's tour starts here. Ctrl-C stops it.");
        server.await.context("the server task")??;
        return Ok(());
    }
    let browser = web.subscribe();
    // user001's app registers a key: its chat alerts travel sealed (private payloads).
    let iphone_key = pushgate_testkit::TestSubscription::generate("iphone-1", "https://unused.example");
    let devices = [
        json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "iphone-1", "clientId": "user001",
                "pushKey": iphone_key.push_key() }),
        json!({ "type": "android", "token": "fcm-token-of-user002", "deviceId": "pixel-1", "clientId": "user002" }),
        json!({ "type": "web", "token": browser.json(), "deviceId": "chrome-1", "clientId": "user003" }),
        json!({ "type": "fcm", "token": "fcm-token-of-user003", "deviceId": "pixel-3", "clientId": "user003" }),
    ];
    for device in devices {
        post("/me/subscribe", device.clone()).await?;
        println!("registered {} device {} of {}", device["type"], device["deviceId"], device["clientId"]);
    }
    // Each send, then what the stand-ins received for it: the sends one after
    // the other, so every device's list is in send order, labelled.
    let mut received = Received::default();
    for (number, (clients, payload)) in seed_pushes().into_iter().enumerate() {
        let label = format!("push2clients #{}", number + 1);
        let answer = post("/push/push2clients", json!({ "clients": clients, "payload": payload })).await?;
        println!("{label} to {}: pushId {}", clients.join(", "), answer["result"]["pushId"]);
        settled(answer["result"]["pushId"].clone()).await?;
        received.take(&label, &apns, &fcm, &web, &browser);
    }
    let callback = pushgate_testkit::seed::generic_callback(
        "5dd51a4f21841443cfd3090d",
        "demo-room",
        &["user001", "user002", "user003"],
    );
    let path = format!("/imkit/push/v2?secret={SECRET}");
    let answer = client.post(format!("{base_url}{path}")).json(&callback).send().await?.json::<Value>().await?;
    anyhow::ensure!(answer["RC"] == 0, "the v2 callback was refused: {answer}");
    println!("PUSH_GENERIC v2 callback, message {} in demo-room, to user001, user002, user003", callback["_id"]);
    settled(answer["result"]["pushId"].clone()).await?;
    received.take("v2 callback", &apns, &fcm, &web, &browser);
    // user003 reads the room in the browser: their phone is told to clear it.
    let read = json!({ "sync": true, "deviceId": "chrome-1" });
    let answer = post("/v1/clients/user003/rooms/demo-room/read", read.clone()).await?;
    println!("user003 read demo-room in the browser: POST /v1/clients/user003/rooms/demo-room/read {read}\n");
    settled(answer["result"]["pushId"].clone()).await?;
    received.take("read", &apns, &fcm, &web, &browser);

    println!("What each device received, in the order sent:\n");
    println!("user001 iphone-1 (APNs; the app registered a pushKey, so chat alerts travel sealed)");
    for (label, payload) in &received.apns {
        let (shown, badge) = apns_alert(payload);
        show(label, &shown, &badge, payload);
        let sealed = payload["encrypted"].as_str().and_then(|sealed| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()
        });
        if let Some(clear) = sealed.and_then(|sealed| iphone_key.decrypt(&sealed)) {
            let clear: Value = serde_json::from_slice(&clear).context("the opened push is JSON")?;
            let (shown, badge) = apns_alert(&clear);
            println!("      opened with iphone-1's key: {shown}  badge {}", badge_text(&badge));
            println!("        {clear}");
        }
    }
    for (device, token) in [("user002 pixel-1", "fcm-token-of-user002"), ("user003 pixel-3", "fcm-token-of-user003")] {
        println!("{device} (FCM; push2clients' badge is an iOS field: a count comes with chat pushes and reads)");
        for (label, message) in received.fcm.iter().filter(|(_, message)| message["token"] == token) {
            // A notification's count, or a data-only push's badge.
            let badge = message.pointer("/android/notification/notification_count").cloned().or_else(|| {
                let badge = message.pointer("/data/badge")?.as_str()?;
                badge.parse::<u64>().ok().map(Value::from)
            });
            let notification = &message["notification"];
            let shown = if notification.is_null() {
                format!("no notification, data only (type {})", message["data"]["type"])
            } else {
                format!("title {:?}  body {:?}", text(&notification["title"]), text(&notification["body"]))
            };
            show(label, &shown, &badge.unwrap_or_default(), message);
        }
    }
    println!("  (the read's clear push: the app removes the notifications tagged with the room)");
    println!("user003 chrome-1 (Web Push, decrypted by the push service)");
    for (label, payload) in &received.web {
        let notification = &payload["notification"];
        let shown = format!(
            "title {:?}  body {:?}  opens {}",
            text(&notification["title"]),
            text(&notification["body"]),
            text(&notification["navigate"])
        );
        show(label, &shown, &payload["app_badge"], payload);
    }
    println!();
    if cli.once {
        let _ = stop_now.send(());
    } else {
        println!("pushgate keeps serving on {base_url} (API key {API_KEY}); Ctrl-C stops it.");
        println!("    curl -s {base_url}/v1/clients/user001/badge -H 'IM-API-KEY: {API_KEY}'");
    }
    server.await.context("the server task")??;
    Ok(())
}

/// What the stand-ins received, each item labelled with the send it came from.
#[derive(Default)]
struct Received {
    apns: Vec<(String, Value)>,
    fcm: Vec<(String, Value)>,
    web: Vec<(String, Value)>,
}

impl Received {
    /// Labels what arrived since the last call with `label`.
    fn take(
        &mut self,
        label: &str,
        apns: &FakeApns,
        fcm: &FakeFcm,
        web: &FakePushService,
        browser: &pushgate_testkit::TestSubscription,
    ) {
        let label = label.to_owned();
        let new = |seen: usize, all: Vec<Value>| {
            all.into_iter().skip(seen).map(|item| (label.clone(), item)).collect::<Vec<_>>()
        };
        let apns = new(self.apns.len(), apns.delivered().into_iter().map(|request| request.payload).collect());
        let fcm = new(self.fcm.len(), fcm.messages().into_iter().map(|message| message.message).collect());
        let web = new(self.web.len(), web.delivered_to(browser).into_iter().map(|push| push.payload).collect());
        self.apns.extend(apns);
        self.fcm.extend(fcm);
        self.web.extend(web);
    }
}

/// What an APNs alert shows (IMKIT's `alert` string is shown as it is; its
/// title and body are Android's fields) and its badge.
fn apns_alert(payload: &Value) -> (String, Value) {
    let alert = &payload["aps"]["alert"];
    let shown = match alert {
        Value::String(text) => format!("alert {text:?} (IMKIT's alert string, shown as it is)"),
        Value::Null => "no alert, silent".to_owned(),
        _ if alert["title"].is_null() => format!("body {:?}", text(&alert["body"])),
        _ => format!("title {:?}  body {:?}", text(&alert["title"]), text(&alert["body"])),
    };
    (shown, payload["aps"]["badge"].clone())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn badge_text(badge: &Value) -> String {
    if badge.is_null() { "none".to_owned() } else { badge.to_string() }
}

/// One received push: the send it came from, what it shows, the badge, and the payload as sent.
fn show(label: &str, shown: &str, badge: &Value, payload: &Value) {
    println!("  [{label}] {shown}  badge {}", badge_text(badge));
    println!("      {payload}");
}

/// The push2clients examples of IMKIT's documentation, with their clients.
fn seed_pushes() -> Vec<(Vec<&'static str>, Value)> {
    vec![
        (
            vec!["user001", "user002", "user003"],
            json!({ "type": "marketing", "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default",
                    "topic": "io.imkit.app", "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!",
                    "icon": "https://example.com/icon.png", "collapseKey": "promo_2026" }),
        ),
        (
            vec!["user001"],
            json!({ "alert": { "loc-key": "NEW_MESSAGE_NOTIFICATION", "loc-args": ["張小明", "您好,請問有空嗎?"] },
                    "badge": 3, "sound": "default", "title": "新訊息", "body": "張小明:您好,請問有空嗎?" }),
        ),
        (
            vec!["user001", "user002"],
            json!({ "type": "alert", "alert": "系統維護通知:今晚 23:00 將進行例行維護", "badge": 1, "sound": "default",
                    "title": "系統公告", "body": "系統維護通知:今晚 23:00 將進行例行維護", "icon": "https://example.com/icon.png" }),
        ),
    ]
}
