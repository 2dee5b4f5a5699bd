//! Credentials read again without a restart (`POST /admin/api/reload`, the
//! console's action; SIGHUP does the same in the binary): an APNs key rotated
//! under load, a bad new file refused with the old credentials kept.

use crate::helpers::{
    API_KEY, APNS_TOKEN, WithProviders, eventually, ios_device, send_push, spawn_with_providers_config,
    spawn_with_providers_looping,
};
use pushgate_testkit::Es256Key;
use serde_json::json;
use std::time::Duration;

const ADMIN_KEY: &str = "reload-admin-key-000001";
const WAIT: Duration = Duration::from_secs(20);

async fn spawn() -> WithProviders {
    let admin = format!("[admin]\napi_keys = [\"{ADMIN_KEY}\"]\n");
    spawn_with_providers_config("", "", &admin, &[]).await
}

/// As [`spawn`], with the worker's own loop sending in the background while
/// the credentials change under it.
async fn spawn_looping() -> WithProviders {
    let admin = format!("[admin]\napi_keys = [\"{ADMIN_KEY}\"]\n");
    spawn_with_providers_looping("", "", &admin, &[]).await
}

async fn reload(setup: &WithProviders, key: &str) -> (u16, serde_json::Value) {
    setup.app.post_json("/admin/api/reload", Some(key), &json!({})).await
}

/// The key id (`kid`) of the provider token a recorded request carried.
fn key_id_of(request: &pushgate_testkit::RecordedApnsRequest) -> String {
    request.key_id().expect("a provider token with a key id")
}

async fn send(setup: &WithProviders, n: usize) -> String {
    send_push(&setup.app, &["alice"], json!({ "alert": format!("message {n}") })).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apns_key_rotated_under_load_is_taken_on_without_a_restart_or_a_lost_push() {
    let setup = spawn_looping().await;
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "alice", APNS_TOKEN)).await.0, 200);
    send(&setup, 0).await;
    setup.apns.wait_for_delivered(1, WAIT).await;
    assert_eq!(key_id_of(&setup.apns.delivered()[0]), "ABC123DEFG");

    // Apple accepts the new key beside the old one; the configuration names it.
    let new_key = Es256Key::generate();
    setup.apns.accept_token_key("NEWKEY1234", &new_key.public_pem);
    let config_file = setup.app.config_file();
    let new_key_file = config_file.with_file_name("AuthKey_NEWKEY1234.p8");
    std::fs::write(&new_key_file, &new_key.private_pem).expect("write the new key");
    let text = std::fs::read_to_string(&config_file).expect("read the configuration");
    let key_file_line = text.lines().find(|line| line.starts_with("key_file = ")).expect("an APNs key file").to_owned();
    let rotated = text
        .replace(&key_file_line, &format!("key_file = {:?}", new_key_file.display().to_string()))
        .replace("key_id = \"ABC123DEFG\"", "key_id = \"NEWKEY1234\"");
    std::fs::write(&config_file, rotated).expect("write the configuration");

    // Pushes go on while the key changes.
    let sending = {
        let app_url = setup.app.base_url.clone();
        let client = setup.app.client.clone();
        tokio::spawn(async move {
            for n in 1..=40 {
                let body = json!({ "clients": ["alice"], "payload": { "alert": format!("message {n}") } });
                let response = client
                    .post(format!("{app_url}/push/push2clients"))
                    .header("IM-API-KEY", API_KEY)
                    .json(&body)
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(response.status(), 200);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = reload(&setup, ADMIN_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["reloaded"].to_string().contains("providers of app SampleApp"), "{body}");
    sending.await.expect("the load went through");

    let delivered = eventually(WAIT, "all 41 pushes to arrive", || async {
        let delivered = setup.apns.delivered();
        (delivered.len() == 41).then_some(delivered)
    })
    .await;
    assert!(setup.apns.requests().iter().all(|request| request.status == 200), "no push refused along the way");
    assert_eq!(key_id_of(delivered.last().expect("one")), "NEWKEY1234", "signed with the new key after the reload");
    assert!(delivered.iter().any(|request| key_id_of(request) == "ABC123DEFG"), "the old key signed what went before");
    let (_, ready) = setup.app.get("/readyz", None).await;
    assert!(ready["result"].get("pausedProviders").is_none(), "{ready}");
}

#[tokio::test]
async fn a_bad_new_credential_is_refused_by_name_and_the_old_ones_stay() {
    let setup = spawn().await;
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "alice", APNS_TOKEN)).await.0, 200);
    let config_file = setup.app.config_file();
    let text = std::fs::read_to_string(&config_file).expect("read the configuration");
    let key_file = text
        .lines()
        .find_map(|line| line.strip_prefix("key_file = "))
        .map(|quoted| quoted.trim_matches('"').to_owned())
        .expect("an APNs key file");
    let good_key = std::fs::read_to_string(&key_file).expect("the key");
    std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n").expect("write");

    let (status, body) = reload(&setup, API_KEY).await;
    assert_eq!((status, body["error"]["code"].clone()), (403, json!("FORBIDDEN")), "an app's key cannot reload");
    let (status, body) = reload(&setup, ADMIN_KEY).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("RELOAD_REFUSED")), "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.contains("apps[0].apns.key_file") && message.contains("not a P-256 private key"), "{message}");

    // The old key still signs (it was loaded at start; the file on disk no longer matters).
    send(&setup, 1).await;
    setup.app.settle().await;
    assert_eq!(setup.apns.delivered_count(), 1);
    std::fs::write(&key_file, good_key).expect("restore");
    let (status, _) = reload(&setup, ADMIN_KEY).await;
    assert_eq!(status, 200, "a good file reloads");
}
