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
use std::time::Duration;

const API_KEY: &str = "demo-api-key-0123456789abcdef";
const SECRET: &str = "demo-callback-secret-0123456789";
const APNS_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";
const WAIT: Duration = Duration::from_secs(30);

/// pushgate against local stand-ins for APNs, FCM and a Web Push service.
#[derive(Debug, Parser)]
#[command(name = "pushgate-demo", version)]
struct Cli {
    /// Where pushgate listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Print what each device received, then stop (instead of serving on).
    #[arg(long)]
    once: bool,
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
    init_logging(&config);
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
    let call = |path: &str, body: Value| {
        let request = client.post(format!("{base_url}{path}")).header("IM-API-KEY", API_KEY).json(&body);
        async move {
            let response = request.send().await.context("pushgate answers")?;
            let status = response.status();
            let answer: Value = response.json().await.context("pushgate answers JSON")?;
            anyhow::ensure!(status.is_success(), "{status}: {answer}");
            Ok::<Value, anyhow::Error>(answer)
        }
    };
    println!("pushgate demo: pushgate on {base_url}, with local stand-ins for APNs, FCM and a Web Push service\n");
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
        call("/me/subscribe", device.clone()).await?;
        println!("registered {} device {} of {}", device["type"], device["deviceId"], device["clientId"]);
    }
    for (clients, payload) in seed_pushes() {
        let answer = call("/push/push2clients", json!({ "clients": clients, "payload": payload })).await?;
        println!("push2clients to {clients:?}: pushId {}", answer["result"]["pushId"]);
    }
    let callback = pushgate_testkit::seed::generic_callback(
        "5dd51a4f21841443cfd3090d",
        "demo-room",
        &["user001", "user002", "user003"],
    );
    let path = format!("/imkit/push/v2?secret={SECRET}");
    let answer = client.post(format!("{base_url}{path}")).json(&callback).send().await?.json::<Value>().await?;
    anyhow::ensure!(answer["RC"] == 0, "the v2 callback was refused: {answer}");
    println!("PUSH_GENERIC v2 callback for message {} to user001, user002, user003\n", callback["_id"]);

    // Four pushes reach user001's iPhone, three user002's Android, two
    // user003's browser and two their Android.
    tokio::time::timeout(WAIT, async {
        apns.wait_for_delivered(4, WAIT).await;
        fcm.wait_for_delivered(5, WAIT).await;
        web.wait_for_received(2, WAIT).await;
    })
    .await
    .context("the deliveries did not all arrive")?;
    // user003 reads the room in the browser: their phone is told to clear it.
    let read = json!({ "sync": true, "deviceId": "chrome-1" });
    call("/v1/clients/user003/rooms/demo-room/read", read.clone()).await?;
    println!("user003 read demo-room in the browser: POST /v1/clients/user003/rooms/demo-room/read {read}\n");
    tokio::time::timeout(WAIT, fcm.wait_for_delivered(6, WAIT)).await.context("the clear push did not arrive")?;
    println!("What each device received:\n");
    println!("user001 iphone-1 (APNs; the app has a pushKey: chat alerts are sealed)");
    let apns_alert = |payload: &Value| {
        let alert = &payload["aps"]["alert"];
        let (title, body) = match alert {
            Value::String(text) => (String::new(), text.clone()),
            _ => (text(&alert["title"]), text(&alert["body"])),
        };
        (title, body, payload["aps"]["badge"].clone())
    };
    for request in apns.delivered() {
        let (title, body, badge) = apns_alert(&request.payload);
        show(&title, &body, &badge, &request.payload);
        let sealed = request.payload["encrypted"].as_str().and_then(|sealed| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).ok()
        });
        if let Some(clear) = sealed.and_then(|sealed| iphone_key.decrypt(&sealed)) {
            let clear: Value = serde_json::from_slice(&clear).context("the opened push is JSON")?;
            let (title, body, badge) = apns_alert(&clear);
            println!("    opened with iphone-1's key: title {title:?}  body {body:?}  badge {badge}");
            println!("      {clear}");
        }
    }
    for (device, token) in [("user002 pixel-1", "fcm-token-of-user002"), ("user003 pixel-3", "fcm-token-of-user003")] {
        println!("{device} (FCM)");
        for message in fcm.messages().into_iter().filter(|message| message.token == token) {
            // A notification's count, or a data-only push's badge.
            let badge = message.message.pointer("/android/notification/notification_count").cloned().or_else(|| {
                let badge = message.message.pointer("/data/badge")?.as_str()?;
                badge.parse::<u64>().ok().map(Value::from)
            });
            let badge = badge.unwrap_or_default();
            let notification = &message.message["notification"];
            show(&text(&notification["title"]), &text(&notification["body"]), &badge, &message.message);
        }
    }
    println!("  (the last: the read's clear push; the app cancels the notifications tagged with the room)");
    println!("user003 chrome-1 (Web Push, decrypted by the push service)");
    for push in web.delivered_to(&browser) {
        let notification = &push.payload["notification"];
        show(&text(&notification["title"]), &text(&notification["body"]), &push.payload["app_badge"], &push.payload);
    }
    if cli.once {
        let _ = stop_now.send(());
    } else {
        println!("pushgate keeps serving on {base_url} (API key {API_KEY}); Ctrl-C stops it.");
        println!("    curl -s {base_url}/v1/clients/user001/badge -H 'IM-API-KEY: {API_KEY}'");
    }
    server.await.context("the server task")??;
    Ok(())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// One received push: the text shown, the badge, and the payload as sent.
fn show(title: &str, body: &str, badge: &Value, payload: &Value) {
    let badge = if badge.is_null() { "-".to_owned() } else { badge.to_string() };
    println!("  title {title:?}  body {body:?}  badge {badge}");
    println!("    {payload}");
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
