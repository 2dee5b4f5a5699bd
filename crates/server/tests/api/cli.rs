//! The `pushgate` binary itself: the zero-config first run and `check-config`.

use crate::helpers::binary::{self, BINARY, pushgate, stop};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Starts `pushgate serve` with only the listener overridden (port 0), and
/// reads its standard output up to the "listening" line.
async fn serve(working_directory: &Path) -> (Child, Vec<String>, String) {
    serve_with(working_directory, &[]).await
}

/// As [`serve`], with more environment variables.
async fn serve_with(working_directory: &Path, environment: &[(&str, &str)]) -> (Child, Vec<String>, String) {
    let mut all = vec![("PUSHGATE_SERVER__LISTEN", "127.0.0.1:0")];
    all.extend_from_slice(environment);
    let served = binary::serve(working_directory, &[], &all).await;
    (served.child, served.printed, served.base_url)
}

async fn subscribe_with(base_url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base_url}/me/subscribe"))
        .header("IM-API-KEY", key)
        .json(&json!({ "type": "android", "token": "demo-fcm-token", "deviceId": "device-1", "clientId": "user001" }))
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_first_run_without_config_generates_a_key_once_and_keeps_it() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (child, printed, base_url) = serve(directory.path()).await;
    let key = printed
        .iter()
        .map(|line| line.trim())
        .find(|line| line.starts_with("pgk_"))
        .unwrap_or_else(|| panic!("a generated key is printed: {printed:?}"))
        .to_owned();
    assert!(printed.iter().any(|line| line.contains("SampleApp")), "{printed:?}");
    let curl = printed.iter().find(|line| line.trim_start().starts_with("curl ")).expect("a curl line is printed");
    assert!(curl.contains(&format!("{base_url}/me/subscribe")) && curl.contains(&key), "{curl}");
    assert!(directory.path().join("pushgate.db").exists(), "the SQLite file is in the working directory");
    assert_eq!(subscribe_with(&base_url, &key).await, 200);
    assert_eq!(subscribe_with(&base_url, "pgk_wrong").await, 401);
    stop(child).await;

    let (child, printed, base_url) = serve(directory.path()).await;
    assert!(printed.iter().all(|line| !line.contains("pgk_")), "the key is shown only once: {printed:?}");
    assert_eq!(subscribe_with(&base_url, &key).await, 200, "the stored key still opens the app");
    stop(child).await;
}

/// The generated key among the lines a first start printed.
fn printed_key(printed: &[String]) -> String {
    printed
        .iter()
        .map(|line| line.trim())
        .find(|line| line.starts_with("pgk_"))
        .unwrap_or_else(|| panic!("a generated key is printed: {printed:?}"))
        .to_owned()
}

#[tokio::test]
async fn a_first_start_that_cannot_bind_generates_no_key_and_the_next_start_shows_one() {
    let directory = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("address").to_string();
    let output = pushgate(directory.path())
        .args(["serve"])
        .env("PUSHGATE_SERVER__LISTEN", &address)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success(), "the port is taken");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("pgk_"), "no key is shown by a start that fails: {stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("binding {address}")));

    let (child, printed, base_url) = serve(directory.path()).await;
    let key = printed_key(&printed);
    assert_eq!(subscribe_with(&base_url, &key).await, 200, "the key shown opens the app");
    stop(child).await;
}

#[tokio::test]
async fn a_generated_key_stops_working_once_keys_are_configured() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (child, printed, _) = serve(directory.path()).await;
    let generated = printed_key(&printed);
    stop(child).await;

    let configured = "configured-key-of-sample-app";
    let keys = format!(r#"["{configured}"]"#);
    let (child, printed, base_url) =
        serve_with(directory.path(), &[("PUSHGATE_APPS__SAMPLEAPP__API_KEYS", keys.as_str())]).await;
    assert!(printed.iter().all(|line| !line.contains("pgk_")), "{printed:?}");
    assert_eq!(subscribe_with(&base_url, configured).await, 200);
    assert_eq!(subscribe_with(&base_url, &generated).await, 401, "the generated key no longer opens the app");
    stop(child).await;
}

#[tokio::test]
async fn check_config_reports_every_bad_key_and_exits_2() {
    let directory = tempfile::tempdir().expect("temp dir");
    let output = pushgate(directory.path())
        .args(["check-config"])
        .env("PUSHGATE_SERVER__LISTEN", "not-an-address")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PUSHGATE_SERVER__LISTEN (server.listen): "), "{stderr}");

    let output = pushgate(directory.path()).args(["check-config"]).output().await.expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn a_config_file_is_read_from_the_config_flag() {
    let directory = tempfile::tempdir().expect("temp dir");
    std::fs::write(directory.path().join("custom.toml"), "[[apps]]\nid = \"Chat\"\napi_keys = [\"short\"]\n")
        .expect("write");
    let output =
        pushgate(directory.path()).args(["check-config", "--config", "custom.toml"]).output().await.expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("apps[0].api_keys[0]: an API key must be at least 16 characters")
    );
}

#[tokio::test]
async fn a_split_role_on_the_embedded_store_is_refused_before_anything_starts() {
    let directory = tempfile::tempdir().expect("temp dir");
    for role in ["api", "worker"] {
        let output = pushgate(directory.path())
            .args(["serve", "--role", role])
            .env("PUSHGATE_SERVER__LISTEN", "127.0.0.1:0")
            .output()
            .await
            .expect("runs");
        assert!(!output.status.success(), "--role {role} on SQLite");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("--role {role} needs a store the other roles can share")), "{stderr}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("pgk_"), "no key generated");
    }
    assert!(!directory.path().join("pushgate.db").exists(), "no store was created");
}

/// `serve --listen` wins over the configuration; the log written to a pipe
/// carries no colour codes, warns of an app without any provider, and says
/// when the server stopped; a clean stop leaves no write-ahead log behind.
#[tokio::test]
async fn listen_flag_plain_log_and_a_line_at_stop() {
    let directory = tempfile::tempdir().expect("temp dir");
    let mut command = pushgate(directory.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PUSHGATE_SERVER__LISTEN", "127.0.0.1:9")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let binary::Served { mut child, base_url, .. } = binary::launch(command).await;
    assert!(base_url.starts_with("http://127.0.0.1:") && !base_url.ends_with(":9"), "{base_url}");
    let mut stderr = child.stderr.take().expect("stderr");
    stop(child).await;
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut log).await.expect("log readable");
    assert!(!log.contains('\u{1b}'), "no ANSI codes into a pipe: {log:?}");
    assert!(log.contains("this app has no provider configured"), "{log}");
    assert!(log.lines().last().is_some_and(|line| line.contains("stopped")), "{log}");
    let wal = directory.path().join("pushgate.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
    assert_eq!(wal_bytes, 0, "a clean stop folds the write-ahead log into the database file: {log}");
    assert!(log.contains("checkpointed the write-ahead log"), "{log}");
}

/// Runs a client verb of the binary; answers (exit code, stdout, stderr).
async fn verb(arguments: &[&str]) -> (i32, String, String) {
    let output = Command::new(BINARY)
        .args(arguments)
        .env_remove("PUSHGATE_URL")
        .env_remove("PUSHGATE_KEY")
        .output()
        .await
        .expect("pushgate runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// `send`, `push show`, `devices show` and `badge show` against a running
/// instance: tables by default, JSON with `--json`, exit codes by outcome.
#[tokio::test]
async fn client_verbs_send_and_show_through_the_api() {
    use crate::helpers::{API_KEY, APNS_TOKEN, ios_device, spawn_with_providers};
    let setup = spawn_with_providers("").await;
    let url = setup.app.base_url.clone();
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
    let remote = ["--url", url.as_str(), "--key", API_KEY];

    let (code, out, err) =
        verb(&[&["send"], &remote[..], &["--clients", "user001,nobody", "--title", "Hi", "--body", "there"]].concat())
            .await;
    assert_eq!(code, 0, "{out}{err}");
    let push_id = out.trim().strip_prefix("accepted: pushId ").expect("the push id").to_owned();
    setup.app.settle().await;
    assert_eq!(setup.apns.delivered()[0].payload["aps"]["alert"], json!({ "title": "Hi", "body": "there" }));

    let (code, shown, err) = verb(&[&["push", "show", push_id.as_str()], &remote[..]].concat()).await;
    assert_eq!(code, 0, "{shown}{err}");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["client", "type", "device", "status", "attempts", "reason"]
    );
    assert!(lines.iter().any(|line| line.split_whitespace().collect::<Vec<_>>() == ["user001", "ios", "iphone-1", "delivered", "1"]), "{shown}");
    assert!(lines.iter().any(|line| line.starts_with("nobody") && line.contains("skipped")), "{shown}");

    let (code, out, _) = verb(&[&["devices", "show", "user001", "--json"], &remote[..]].concat()).await;
    assert_eq!(code, 0);
    let devices: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(devices["devices"][0]["deviceId"], "iphone-1");
    assert!(!out.contains(APNS_TOKEN), "tokens are masked");
    let (code, out, _) = verb(&[&["badge", "show", "user001"], &remote[..]].concat()).await;
    assert_eq!((code, out.lines().next()), (0, Some("badge 0")), "{out}");
    // `--url` and `--key` before the verb, as `--config` is taken.
    let (code, out, err) = verb(&[&remote[..], &["badge", "show", "user001"]].concat()).await;
    assert_eq!((code, out.lines().next()), (0, Some("badge 0")), "{out}{err}");

    let (code, _, err) = verb(&[&["push", "show", "no-such-push"], &remote[..]].concat()).await;
    assert_eq!(code, 1, "refused: {err}");
    assert!(err.contains("NOT_FOUND"), "{err}");
    let (code, _, err) = verb(&["badge", "show", "user001", "--url", url.as_str()]).await;
    assert_eq!(code, 2, "no key is a usage error: {err}");
    let (code, _, err) = verb(&["badge", "show", "user001", "--url", "http://127.0.0.1:9", "--key", API_KEY]).await;
    assert_eq!(code, 3, "unreachable: {err}");
}

/// `devices import` registers 10,000 JSON lines, names each refused line with
/// its reason, and is idempotent.
#[tokio::test]
async fn devices_import_registers_every_good_line_and_names_the_bad_ones() {
    use crate::helpers::{API_KEY, TestApp};
    let app = TestApp::spawn().await;
    let directory = tempfile::tempdir().expect("temp dir");
    let file = directory.path().join("devices.jsonl");
    let mut lines = Vec::new();
    for n in 1..=10_000 {
        lines.push(match n {
            17 => "{not json".to_owned(),
            4242 => json!({ "type": "ios", "token": "not-hex", "deviceId": "d", "clientId": "c" }).to_string(),
            9999 => json!({ "type": "pager", "token": "x", "deviceId": "d", "clientId": "c" }).to_string(),
            n => json!({ "type": "android", "token": format!("fcm-token-{n}"), "deviceId": format!("pixel-{n}"), "clientId": format!("user{}", n % 100) }).to_string(),
        });
    }
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let file = file.display().to_string();
    let arguments = ["devices", "import", file.as_str(), "--url", app.base_url.as_str(), "--key", API_KEY];
    let (code, out, err) = verb(&arguments).await;
    assert_eq!(code, 1, "some lines were refused: {out}{err}");
    let summary: Vec<&str> = out.lines().collect();
    assert_eq!(summary[0], "10000 line(s): 9997 imported, 3 refused", "{out}");
    assert!(summary[1].starts_with("  line 17: not JSON"), "{out}");
    assert!(summary[2].starts_with("  line 4242: INVALID_PARAMETER token must be an APNs device token"), "{out}");
    assert!(summary[3].starts_with("  line 9999: INVALID_PARAMETER"), "{out}");
    assert_eq!(app.devices_of("user7").await.len(), 100);
    let (code, out, _) = verb(&[&arguments[..], &["--json"]].concat()).await;
    assert_eq!(code, 1);
    let again: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((again["imported"].clone(), again["refused"][1]["line"].clone()), (json!(9997), json!(4242)));
    assert_eq!(app.devices_of("user7").await.len(), 100, "importing again changes nothing");
}

/// `check-config --probe` proves each credential against the provider: the
/// fakes accept `SampleApp`'s and refuse `BadApp`'s (a key and a service
/// account they never issued), one row per app and provider, exit 1.
#[tokio::test]
async fn check_config_probe_proves_each_credential_against_its_provider() {
    let other_key = pushgate_testkit::Es256Key::generate();
    let other_account = pushgate_testkit::TestServiceAccount::generate("imkit-demo", "https://localhost:1/token");
    let files = tempfile::tempdir().expect("temp dir");
    let p8 = files.path().join("other.p8");
    std::fs::write(&p8, &other_key.private_pem).expect("write");
    let (good, apns, fcm, _provider_files) =
        crate::helpers::providers_config(crate::helpers::Worked::ByTest, "", "", "").await;
    let ca = _provider_files.path().join("ca.pem");
    // The same fakes, a key and an account they do not know; the account's
    // token_uri is pointed at the fake FCM's, which refuses its signature.
    let account_json = other_account.json.replace("https://localhost:1/token", &format!("{}/token", fcm.endpoint()));
    let account = files.path().join("other-account.json");
    std::fs::write(&account, account_json).expect("write");
    let bad = format!(
        "[[apps]]\nid = \"BadApp\"\n{}",
        pushgate_testkit::fake_provider_tables(&apns, &p8, &fcm, &account, &ca)
    );
    let config = files.path().join("pushgate.toml");
    std::fs::write(&config, format!("{good}\n{bad}")).expect("write");
    let config = config.display().to_string();
    let output = Command::new(BINARY)
        .args(["--config", config.as_str(), "check-config", "--probe", "--json"])
        .output()
        .await
        .expect("pushgate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "a refused credential fails the probe: {stdout}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(stdout.lines().last().expect("the JSON line")).expect("JSON");
    let state = |app: &str, provider: &str| {
        rows.iter()
            .find(|row| row["app"] == app && row["provider"] == provider)
            .map(|row| row["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no row for {app} {provider}: {stdout}"))
    };
    for provider in ["apns", "apns-sandbox", "fcm"] {
        assert_eq!(state("SampleApp", provider), "ok", "{stdout}");
        assert_eq!(state("BadApp", provider), "refused", "{stdout}");
    }
    assert_eq!(apns.delivered().len(), 2, "the accepted probes reached the fake APNs");
}

/// Starts `pushgate --config <folder>/pushgate.toml serve` (one app,
/// `SampleApp`, with the key `configured-key-000001`, its store in the
/// folder); answers the process, its base URL and the config file's path.
async fn serve_config(folder: &Path) -> (Child, String, String) {
    let config = folder.join("pushgate.toml");
    std::fs::write(&config, "[[apps]]\nid = \"SampleApp\"\napi_keys = [\"configured-key-000001\"]\n").expect("write");
    let config = config.display().to_string();
    let mut command = pushgate(folder);
    command.args(["--config", config.as_str(), "serve", "--listen", "127.0.0.1:0"]).env("RUST_LOG", "warn");
    let binary::Served { child: server, base_url, .. } = binary::launch(command).await;
    (server, base_url, config)
}

/// `devices export` writes every device with its whole token (and its
/// `pushKey`) as the `/me/subscribe` bodies `devices import` takes: a round trip.
#[tokio::test]
async fn devices_export_writes_what_import_registers_again() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (server, base_url, config) = serve_config(directory.path()).await;
    let browser = crate::webpush::subscription("https://fcm.googleapis.com/fcm/send/abc");
    let mut bodies = vec![
        json!({ "type": "ios", "token": crate::helpers::APNS_TOKEN, "deviceId": "iphone-1", "clientId": "alice", "environment": "sandbox", "locale": "zh-TW", "timezone": "Asia/Taipei",
                "pushKey": pushgate_testkit::TestSubscription::generate("key", "https://unused.example").push_key() }),
        json!({ "type": "web", "token": browser, "deviceId": "chrome-1", "clientId": "alice" }),
    ];
    bodies.extend((0..1500).map(|n| json!({ "type": "fcm", "token": format!("fcm-token-{n}"), "deviceId": format!("pixel-{n}"), "clientId": format!("user{n}") })));
    let file = directory.path().join("in.jsonl");
    std::fs::write(&file, bodies.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")).expect("write");
    let file = file.display().to_string();
    let remote = ["--url", base_url.as_str(), "--key", "configured-key-000001"];
    let (code, out, err) = verb(&[&["devices", "import", file.as_str()], &remote[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");

    let output = pushgate(directory.path())
        .args(["--config", config.as_str(), "devices", "export", "--app", "SampleApp"])
        .output()
        .await
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exported = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines: Vec<serde_json::Value> =
        exported.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    assert_eq!(lines.len(), bodies.len(), "every device, across pages");
    let key = |body: &serde_json::Value| format!("{}/{}", body["type"], body["deviceId"]);
    lines.sort_by_key(key);
    bodies.sort_by_key(key);
    assert_eq!(lines, bodies, "the same bodies, whole tokens included");
    let out_file = directory.path().join("out.jsonl");
    std::fs::write(&out_file, &exported).expect("write");
    let out_file = out_file.display().to_string();
    let (code, out, _) = verb(&[&["devices", "import", out_file.as_str()], &remote[..]].concat()).await;
    assert_eq!((code, out.lines().next()), (0, Some("1502 line(s): 1502 imported, 0 refused")));
    stop(server).await;
}

/// `keys create` makes a key a running instance takes on within seconds,
/// `keys list` shows every key by id (never the key), and `keys revoke`
/// makes the instance refuse it; a configured key cannot be revoked there.
#[tokio::test]
async fn keys_created_and_revoked_in_the_store_open_and_close_a_running_instance() {
    let directory = tempfile::tempdir().expect("temp dir");
    let (server, base_url, config) = serve_config(directory.path()).await;
    let keys = |arguments: &'static [&'static str]| {
        let config = config.clone();
        let directory = directory.path().to_owned();
        async move {
            let output = pushgate(&directory)
                .arg("--config")
                .arg(config)
                .arg("keys")
                .args(arguments)
                .output()
                .await
                .expect("runs");
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (output.status.code(), text(&output.stdout), text(&output.stderr))
        }
    };
    let opens = |key: String| {
        let url = format!("{base_url}/v1/clients/alice/devices");
        async move {
            reqwest::Client::new().get(url).header("IM-API-KEY", key).send().await.expect("sent").status().as_u16()
        }
    };

    let (code, out, err) = keys(&["create", "--app", "SampleApp"]).await;
    assert_eq!(code, Some(0), "{err}");
    let key = out.trim().to_owned();
    assert!(key.starts_with("pgk_") && err.contains("Created API key"), "{out}{err}");
    crate::helpers::eventually(Duration::from_secs(20), "the created key to open the app", || {
        let key = key.clone();
        async move { (opens(key).await == 200).then_some(()) }
    })
    .await;
    assert_eq!(opens("configured-key-000001".into()).await, 200, "the configured key still opens it");

    let (code, out, _) = keys(&["list", "--json"]).await;
    assert_eq!(code, Some(0));
    assert!(!out.contains(&key) && !out.contains("configured-key-000001"), "ids only: {out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).expect("JSON");
    let kinds: Vec<&str> = rows.iter().filter_map(|row| row["kind"].as_str()).collect();
    assert_eq!(kinds, ["configured", "created"], "{out}");
    let created_id = rows[1]["id"].as_str().expect("an id").to_owned();
    let configured_id = rows[0]["id"].as_str().expect("an id").to_owned();

    let revoke = |id: String| {
        let config = config.clone();
        let directory = directory.path().to_owned();
        async move {
            let output = pushgate(&directory)
                .args(["--config", config.as_str(), "keys", "revoke", id.as_str()])
                .output()
                .await
                .expect("runs");
            (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
        }
    };
    let (code, err) = revoke(configured_id).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("is in the configuration"), "{err}");
    assert_eq!(revoke(created_id[..8].to_owned()).await.0, Some(0));
    crate::helpers::eventually(Duration::from_secs(20), "the revoked key to be refused", || {
        let key = key.clone();
        async move { (opens(key).await == 401).then_some(()) }
    })
    .await;
    stop(server).await;
}

/// `check-config` names a certificate that expires within 30 days, and fails
/// on one that has expired.
#[tokio::test]
async fn check_config_names_certificates_near_or_past_their_expiry() {
    let ca = pushgate_testkit::TestCa::generate();
    let directory = tempfile::tempdir().expect("temp dir");
    let mut config = String::new();
    for (index, days) in [(0, 10), (1, -2), (2, 400)] {
        let (chain, key) = ca.client_certificate_expiring_in("io.imkit.app", days);
        std::fs::write(directory.path().join(format!("cert{index}.pem")), chain).expect("write");
        std::fs::write(directory.path().join(format!("key{index}.pem")), key).expect("write");
        config.push_str(&format!(
            "[[apps]]\nid = \"App{index}\"\napi_keys = [\"key-of-app-{index}-000000\"]\n[apps.apns]\ncertificate_file = \"cert{index}.pem\"\ncertificate_key_file = \"key{index}.pem\"\ntopic = \"io.imkit.app\"\n"
        ));
    }
    let path = directory.path().join("pushgate.toml");
    std::fs::write(&path, config).expect("write");
    let path = path.display().to_string();
    let (code, out, err) = verb(&["--config", path.as_str(), "check-config"]).await;
    assert_eq!(code, 1, "an expired certificate fails the check: {out}{err}");
    let soon =
        out.lines().find(|line| line.starts_with("warning: apps[0].apns.certificate_file: the certificate expires in"));
    let days: i64 = soon
        .and_then(|line| line.split_whitespace().rev().nth(1))
        .and_then(|days| days.parse().ok())
        .unwrap_or_else(|| panic!("the certificate expiring soon is named: {out}"));
    assert!((9..=10).contains(&days), "{out}");
    assert!(out.contains("expired: apps[1].apns.certificate_file: the certificate expired"), "{out}");
    assert!(!out.contains("apps[2]"), "a certificate valid for a year is not named: {out}");
}

/// What a newcomer meets first says what to do: a port already taken names
/// how to pick another, and a probe with no provider says there is nothing
/// to probe.
#[tokio::test]
async fn a_taken_port_and_an_empty_probe_say_what_to_do() {
    let directory = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("its address").to_string();
    let output = pushgate(directory.path()).args(["serve", "--listen", address.as_str()]).output().await.expect("runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains(&format!("binding {address}")) && err.contains("--listen 127.0.0.1:0"), "{err}");
    let output = pushgate(directory.path()).args(["check-config", "--probe"]).output().await.expect("runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("no app has a provider configured") && out.contains("nothing to probe"), "{out}");
}

/// `channels create`, `list`, `show`, `broadcast` and `delete` against a
/// running instance and the fake APNs' channel management API.
#[tokio::test]
async fn channel_verbs_manage_an_apps_broadcast_channels() {
    use crate::helpers::{API_KEY, spawn_with_providers};
    let setup = spawn_with_providers("").await;
    let url = setup.app.base_url.clone();
    let remote = ["--url", url.as_str(), "--key", API_KEY, "--app", "SampleApp"];

    let (code, out, err) = verb(&[&["channels", "create", "--storage-policy", "0"], &remote[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    let channel = out.trim().strip_prefix("created: channel ").expect("the channel id").to_owned();
    assert_eq!(setup.apns.channel_ids(), vec![channel.clone()]);

    let (code, out, _) = verb(&[&["channels", "list", "--json"], &remote[..]].concat()).await;
    assert_eq!(
        (code, serde_json::from_str::<serde_json::Value>(&out).expect("JSON")),
        (0, json!({ "channels": [channel] }))
    );
    let (code, out, _) = verb(&[&["channels", "show", channel.as_str()], &remote[..]].concat()).await;
    assert_eq!(
        (code, out.trim()),
        (0, format!("channel {channel}: message storage policy 0, push type LiveActivity").as_str())
    );

    let payload = r#"{"event": "end", "contentState": {"home": 2, "away": 1}, "dismissalDate": 0}"#;
    let (code, out, err) =
        verb(&[&["channels", "broadcast", channel.as_str(), "--payload", payload], &remote[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    let sent = setup.apns.broadcasts().pop().expect("a broadcast");
    assert_eq!((sent.payload["aps"]["event"].as_str(), sent.headers["apns-expiration"].as_str()), (Some("end"), "0"));

    let (code, _, err) = verb(&[&["channels", "delete", channel.as_str()], &remote[..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(setup.apns.channel_ids().is_empty());
    let (code, _, err) = verb(&[&["channels", "show", channel.as_str()], &remote[..]].concat()).await;
    assert_eq!(code, 1, "a deleted channel is refused: {err}");
    assert!(err.contains("ChannelNotRegistered"), "{err}");
}
