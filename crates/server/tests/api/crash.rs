//! Crash safety: `kill -9` of the real binary during a load loses no accepted push.

use crate::helpers::{binary, eventually};
use pushgate_testkit::{Es256Key, FakeApns, FakeApnsConfig, TestCa};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::process::Child;

/// How long a restarted process may take to deliver what the last one left.
const RECOVERY: Duration = Duration::from_secs(60);

const KEY: &str = "crash-test-api-key-000001";
const DEVICES: usize = 20;

async fn start(config: &Path) -> (Child, String) {
    start_with(config, &[]).await
}

/// As [`start`], with more environment variables.
async fn start_with(config: &Path, environment: &[(&str, &str)]) -> (Child, String) {
    let folder = config.parent().expect("the configuration's folder");
    let served = binary::serve(folder, &["--config".as_ref(), config.as_os_str()], environment).await;
    (served.child, served.base_url)
}

fn device_token(n: usize) -> String {
    format!("{:064x}", n + 1)
}

/// A slow fake APNs (deliveries stay in flight when the process dies) and a
/// pushgate configuration for it, with `SampleApp`'s callback secret.
struct Setup {
    fake: FakeApns,
    config: std::path::PathBuf,
    _directory: tempfile::TempDir,
}

const SECRET: &str = "crash-test-callback-secret";

async fn setup() -> Setup {
    setup_on(None, "").await
}

/// As [`setup`], on the store `store_url` names (the default: a SQLite file
/// in the setup's directory), with `extra_app` in `SampleApp`'s table.
async fn setup_on(store_url: Option<String>, extra_app: &str) -> Setup {
    let ca = TestCa::generate();
    let key = Es256Key::generate();
    let fake = FakeApns::start(&ca, FakeApnsConfig::token(&key)).await;
    fake.set_answer_delay(Duration::from_millis(25));
    let directory = tempfile::tempdir().expect("temp dir");
    let p8 = directory.path().join("AuthKey.p8");
    std::fs::write(&p8, &key.private_pem).expect("key");
    let ca_file = ca.write_ca_pem(directory.path());
    let config = directory.path().join("pushgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[delivery]
lease_ms = 3000
retry_base_ms = 20
retry_max_ms = 200
poll_interval_ms = 50
concurrency = 8
[[apps]]
id = "SampleApp"
api_keys = ["{KEY}"]
generic_push = {{ secret = "{SECRET}" }}
{extra_app}
[apps.apns]
key_file = {p8:?}
key_id = "ABC123DEFG"
team_id = "DEF123GHIJ"
topic = "io.imkit.app"
endpoint = "{endpoint}"
ca_file = {ca_file:?}
"#,
            store_url =
                store_url.unwrap_or_else(|| format!("sqlite://{}", directory.path().join("pushgate.db").display())),
            endpoint = fake.endpoint(),
        ),
    )
    .expect("config");
    Setup { fake, config, _directory: directory }
}

/// Registers one iPhone for each of `user0`… `user{DEVICES-1}`.
async fn register(http: &reqwest::Client, url: &str) {
    for n in 0..DEVICES {
        let body = json!({ "type": "ios", "token": device_token(n), "deviceId": format!("iphone-{n}"), "clientId": format!("user{n}") });
        let response =
            http.post(format!("{url}/me/subscribe")).header("IM-API-KEY", KEY).json(&body).send().await.expect("sent");
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_load_loses_no_accepted_push() {
    let Setup { fake, config, _directory } = setup().await;
    let (mut first, url) = start(&config).await;
    let http = reqwest::Client::new();
    register(&http, &url).await;
    let clients: Vec<String> = (0..DEVICES).map(|n| format!("user{n}")).collect();
    let mut accepted = Vec::new();
    for n in 0..40 {
        let body = json!({ "clients": clients, "payload": { "alert": format!("message {n}") } });
        let response = http
            .post(format!("{url}/push/push2clients"))
            .header("IM-API-KEY", KEY)
            .json(&body)
            .send()
            .await
            .expect("sent");
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer["RC"], 0, "{answer}");
        accepted.push(answer["result"]["pushId"].as_str().expect("push id").to_owned());
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    let delivered_before_restart = fake.delivered().len();
    assert!(
        delivered_before_restart < accepted.len() * DEVICES,
        "the kill must come while deliveries are outstanding ({delivered_before_restart} delivered)"
    );

    fake.set_answer_delay(Duration::ZERO);
    let (_second, _) = start(&config).await;
    let expected: HashSet<String> = accepted
        .iter()
        .flat_map(|push_id| {
            (0..DEVICES)
                .map(move |n| pushgate_providers::apns::apns_id(push_id, &format!("ios:iphone-{n}")).to_string())
        })
        .collect();
    eventually(RECOVERY, "every accepted delivery to reach APNs", || async {
        let seen: HashSet<String> = fake.delivered().into_iter().map(|r| r.headers["apns-id"].clone()).collect();
        expected.is_subset(&seen).then_some(())
    })
    .await;
}

/// Waits until device `n` has seen every badge from 1 to `messages` (each
/// message with the badge its arrival gave it).
async fn every_badge_seen(fake: &FakeApns, n: usize, messages: usize) {
    let all: HashSet<u64> = (1..=messages as u64).collect();
    eventually(RECOVERY, &format!("user{n} to see every badge"), || async {
        let seen: HashSet<u64> = fake
            .delivered()
            .iter()
            .filter(|request| request.device_token == device_token(n))
            .filter_map(|request| request.payload["aps"]["badge"].as_u64())
            .collect();
        (seen == all).then_some(())
    })
    .await;
}

/// The leases a stopped process left in the setup's SQLite file (releasing them).
async fn leases_left(directory: &Path) -> u64 {
    let url = format!("sqlite://{}", directory.join("pushgate.db").display());
    let store = pushgate::startup::open_store(&url).await.expect("the store opens");
    let left = store.release_all_leases().await.expect("leases");
    store.close().await;
    left
}

/// A SIGTERM while sends are under way: the process stops cleanly, having
/// let them finish and recorded their outcomes, so it leaves no lease behind;
/// after a restart every accepted delivery arrives, and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_during_a_load_drains_leaving_nothing_leased_and_sending_nothing_twice() {
    const PUSHES: usize = 10;
    let Setup { fake, config, _directory } = setup().await;
    fake.set_answer_delay(Duration::from_millis(100));
    let (first, url) = start(&config).await;
    let http = reqwest::Client::new();
    register(&http, &url).await;
    let clients: Vec<String> = (0..DEVICES).map(|n| format!("user{n}")).collect();
    for n in 0..PUSHES {
        let body = json!({ "clients": clients, "payload": { "alert": format!("message {n}") } });
        let response = http.post(format!("{url}/push/push2clients")).header("IM-API-KEY", KEY).json(&body).send().await;
        assert_eq!(response.expect("sent").status(), 200);
    }
    // Sends are under way (8 at a time, 100 ms each) when the stop comes.
    eventually(Duration::from_secs(30), "sends to go out", || async { (fake.received_count() >= 8).then_some(()) })
        .await;
    binary::stop(first).await;
    let received_at_stop = fake.received_count();
    assert!(received_at_stop < PUSHES * DEVICES, "the stop must come while deliveries are outstanding");

    assert_eq!(leases_left(_directory.path()).await, 0, "every send under way was recorded");

    fake.set_answer_delay(Duration::ZERO);
    let (_second, _) = start(&config).await;
    fake.wait_for_delivered(PUSHES * DEVICES, RECOVERY).await;
    let ids: Vec<String> = fake.delivered().into_iter().map(|request| request.headers["apns-id"].clone()).collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (PUSHES * DEVICES, PUSHES * DEVICES), "each delivery sent once");
}

/// A SIGTERM while sends wait on a provider slower than the grace time: the
/// process still stops within it, releasing what it could not finish, so
/// nothing stays leased; it is delivered after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_wait_for_its_sends_releases_them_within_the_grace_time() {
    let Setup { fake, config, _directory } = setup().await;
    fake.set_answer_delay(Duration::from_secs(30));
    let (first, url) = start_with(&config, &[("PUSHGATE_SERVER__SHUTDOWN_GRACE_SECONDS", "1")]).await;
    let http = reqwest::Client::new();
    register(&http, &url).await;
    let clients: Vec<String> = (0..DEVICES).map(|n| format!("user{n}")).collect();
    let body = json!({ "clients": clients, "payload": { "alert": "slow" } });
    let response = http.post(format!("{url}/push/push2clients")).header("IM-API-KEY", KEY).json(&body).send().await;
    assert_eq!(response.expect("sent").status(), 200);
    eventually(Duration::from_secs(30), "a send to go out", || async { (fake.received_count() > 0).then_some(()) })
        .await;
    let stopping = std::time::Instant::now();
    binary::stop(first).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopped after about the grace time, not the provider's 30 s"
    );

    assert_eq!(leases_left(_directory.path()).await, 0, "released at the stop");
    fake.set_answer_delay(Duration::ZERO);
    let (_second, _) = start(&config).await;
    fake.wait_for_delivered(DEVICES, RECOVERY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_callback_burst_loses_no_message_and_counts_each_once() {
    const MESSAGES: usize = 60;
    let Setup { fake, config, _directory } = setup().await;
    let (mut first, url) = start(&config).await;
    let http = reqwest::Client::new();
    register(&http, &url).await;
    let clients: Vec<String> = (0..DEVICES).map(|n| format!("user{n}")).collect();
    for n in 0..MESSAGES {
        let body = json!({ "_id": format!("crash-{n}"), "appID": "SampleApp", "room": "crash-room", "roomName": "Crash",
                           "message": format!("message {n}"), "messageType": "text",
                           "sender": { "nickname": "S" }, "pushToClients": clients });
        let response =
            http.post(format!("{url}/imkit/push/v2?secret={SECRET}")).json(&body).send().await.expect("sent");
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer["RC"], 0, "{answer}");
    }
    // Killed with messages journaled, fanned out in part, and in flight.
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    assert!(fake.delivered().len() < MESSAGES * DEVICES, "the kill must come while deliveries are outstanding");

    fake.set_answer_delay(Duration::ZERO);
    let (_second, url) = start(&config).await;
    for n in 0..DEVICES {
        // Each message is counted once, whatever the kill interrupted.
        let answer: serde_json::Value = http
            .get(format!("{url}/v1/clients/user{n}/badge"))
            .header("IM-API-KEY", KEY)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["result"]["badge"], MESSAGES, "user{n}: {answer}");
        // Every message reached the device, each with the badge its arrival
        // gave it (a delivery in flight at the kill may come twice).
        every_badge_seen(&fake, n, MESSAGES).await;
    }
}

/// A SIGKILL while a busy room's alerts are held loses none of them: after a
/// restart each device gets the window's one alert, counting every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_coalescing_window_loses_nothing_held() {
    const MESSAGES: usize = 10;
    let Setup { fake, config, _directory } = setup_on(None, "coalescing = { window_seconds = 5 }").await;
    let (mut first, url) = start(&config).await;
    let http = reqwest::Client::new();
    register(&http, &url).await;
    let clients: Vec<String> = (0..DEVICES).map(|n| format!("user{n}")).collect();
    let send = async |url: &str, n: usize| {
        let body = json!({ "_id": format!("held-{n}"), "appID": "SampleApp", "room": "busy", "roomName": "Busy",
                           "message": format!("message {n}"), "messageType": "text",
                           "sender": { "nickname": "S" }, "pushToClients": clients });
        let response =
            http.post(format!("{url}/imkit/push/v2?secret={SECRET}")).json(&body).send().await.expect("sent");
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer["RC"], 0, "{answer}");
        answer["result"]["pushId"].as_str().expect("a push id").to_owned()
    };
    let first_message = send(&url, 0).await;
    // Its outcomes recorded (not only sent), so the kill cannot make it come twice.
    eventually(RECOVERY, "the first message to be recorded delivered", || async {
        let answer: serde_json::Value = http
            .get(format!("{url}/v1/pushes/{first_message}"))
            .header("IM-API-KEY", KEY)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        (answer["result"]["summary"] == json!({ "delivered": DEVICES })).then_some(())
    })
    .await;
    for n in 1..MESSAGES {
        send(&url, n).await;
    }
    // Killed within the window (5 s), with the burst held.
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    assert_eq!(fake.delivered().len(), DEVICES, "the burst is held, not sent, when the process dies");
    let (_second, _) = start(&config).await;
    fake.wait_for_delivered(2 * DEVICES, RECOVERY).await;
    for n in 0..DEVICES {
        let alerts: Vec<_> =
            fake.delivered().into_iter().filter(|request| request.device_token == device_token(n)).collect();
        assert_eq!(alerts.len(), 2, "user{n}: the first message's alert, then the window's");
        let aps = &alerts[1].payload["aps"];
        assert_eq!((&aps["alert"]["body"], &aps["badge"]), (&json!("S: 10 new messages in Busy"), &json!(MESSAGES)));
        assert_eq!(alerts[1].headers.get("apns-collapse-id").map(String::as_str), Some("busy"));
    }
}

/// Two pushgate processes on one PostgreSQL database take a callback load
/// through both; one is SIGKILLed with work in flight and restarted. Its
/// leased work runs out and is taken up (by either): every message reaches
/// every device with the badge its arrival gave it, and each is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_one_sigkilled_mid_load_lose_no_message_and_count_each_once() {
    const MESSAGES: usize = 40;
    let store_url = crate::postgres::postgres_url("crash").await;
    let Setup { fake, config, _directory } = setup_on(Some(store_url), "").await;
    let (mut first, first_url) = start(&config).await;
    let (_second, second_url) = start(&config).await;
    let http = reqwest::Client::new();
    register(&http, &first_url).await;
    let clients: Vec<String> = (0..DEVICES).map(|n| format!("user{n}")).collect();
    for n in 0..MESSAGES {
        let url = if n % 2 == 0 { &first_url } else { &second_url };
        let body = json!({ "_id": format!("crash-{n}"), "appID": "SampleApp", "room": "crash-room", "roomName": "Crash",
                           "message": format!("message {n}"), "messageType": "text",
                           "sender": { "nickname": "S" }, "pushToClients": clients });
        let response =
            http.post(format!("{url}/imkit/push/v2?secret={SECRET}")).json(&body).send().await.expect("sent");
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer["RC"], 0, "{answer}");
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("killed");
    assert!(fake.delivered().len() < MESSAGES * DEVICES, "the kill must come while deliveries are outstanding");
    let (_first_again, _) = start(&config).await;
    fake.set_answer_delay(Duration::ZERO);
    for n in 0..DEVICES {
        let answer: serde_json::Value = http
            .get(format!("{second_url}/v1/clients/user{n}/badge"))
            .header("IM-API-KEY", KEY)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(answer["result"]["badge"], MESSAGES, "user{n}: {answer}");
        every_badge_seen(&fake, n, MESSAGES).await;
    }
    // Duplicates only within the window: a delivery sent or answered whose
    // outcome was not committed at the kill. The worker bounds those at four
    // times `concurrency` (its `SendSlots`: a send slot is freed at the
    // answer, the outcome's own at the commit), 32 here.
    let delivered = fake.delivered().len();
    assert!(delivered <= MESSAGES * DEVICES + 4 * 8, "{delivered} deliveries for {} expected", MESSAGES * DEVICES);
}

/// SIGHUP reads the credentials again: after an APNs key rotation in the
/// configuration, the running binary signs with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_reads_the_credentials_again() {
    let Setup { fake, config, _directory } = setup().await;
    fake.set_answer_delay(Duration::ZERO);
    let (mut child, url) = start(&config).await;
    let http = reqwest::Client::new();
    register(&http, &url).await;

    let new_key = Es256Key::generate();
    fake.accept_token_key("NEWKEY1234", &new_key.public_pem);
    std::fs::write(_directory.path().join("AuthKey2.p8"), &new_key.private_pem).expect("the new key");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    let rotated = text.replace("AuthKey.p8", "AuthKey2.p8").replace("\"ABC123DEFG\"", "\"NEWKEY1234\"");
    assert_ne!(text, rotated);
    std::fs::write(&config, rotated).expect("the rotated configuration");
    binary::signal(&child, "HUP");

    // The reload is asynchronous to the signal: pushes go until one is signed
    // with the new key.
    eventually(Duration::from_secs(20), "a push signed with the new key", || async {
        let delivered = fake.delivered_count();
        let body = json!({ "clients": ["user0"], "payload": { "alert": "after the hangup" } });
        let response = http.post(format!("{url}/push/push2clients")).header("IM-API-KEY", KEY).json(&body).send().await;
        assert_eq!(response.expect("sent").status(), 200, "the hangup did not stop the server");
        fake.wait_for_delivered(delivered + 1, Duration::from_secs(10)).await;
        fake.delivered().last().is_some_and(|request| request.key_id().as_deref() == Some("NEWKEY1234")).then_some(())
    })
    .await;
    child.start_kill().expect("stop");
}
