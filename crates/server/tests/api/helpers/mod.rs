//! What the API tests share. `TestApp`: a real pushgate on port 0 with a
//! temporary SQLite file, whose delivery worker the test drives
//! (`TestApp::settle`: deliver what is due, move the worker's clock to the
//! next retry, until nothing waits), as crates.io's job tests do; a few tests
//! run the worker's own loop instead (`TestApp::spawn_looping_with`), where
//! the loop is what they test. `callbacks`: IMKIT's callbacks; `binary`: the
//! `pushgate` binary in a child process.

pub mod binary;
pub mod callbacks;

use pushgate::config::Config;
use pushgate::reload::ConfigSource;
use pushgate::startup::{Application, Build, Role};
use pushgate_delivery::Worker;
use pushgate_providers::ManualClock;
use pushgate_store::Store;
use serde_json::{Value, json};
use std::sync::Arc;

/// Rounds of attempts `settle` allows: a delivery retries at most
/// `max_attempts` times (10 by default), each round moving to the next.
const SETTLE_ROUNDS: usize = 100;

/// The API key of `SampleApp` in every test app.
pub const API_KEY: &str = "test-api-key-sample-app";
/// An APNs token in the form Apple hands out (32 bytes, hex).
pub const APNS_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    /// The worker the test drives; `None` when its own loop runs (or on an
    /// API-only node).
    worker: Option<Arc<Worker>>,
    /// The driven worker's clock: the system's, moved ahead by `settle` and
    /// `advance`.
    pub clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    /// Holds the SQLite file; removed when the app is dropped.
    _directory: tempfile::TempDir,
    /// Dropping it (with the app) asks the server to shut down.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Whether the test drives the worker or its own loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worked {
    ByTest,
    ByItsLoop,
}

impl TestApp {
    /// A server with the default configuration but a known API key.
    pub async fn spawn() -> Self {
        Self::spawn_with(None, &[]).await
    }

    /// A server from an optional TOML text plus environment overrides. The
    /// listener (port 0), the store (a temp file) and `SampleApp`'s key are
    /// set unless the text or overrides set them.
    pub async fn spawn_with(config_text: Option<&str>, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_as(config_text, overrides, Role::All).await
    }

    /// As [`TestApp::spawn_with`], running only `role`'s side.
    pub async fn spawn_as(config_text: Option<&str>, overrides: &[(&str, &str)], role: Role) -> Self {
        Self::launch(config_text, overrides, role, Worked::ByTest).await
    }

    /// As [`TestApp::spawn_as`], with the worker's own loop delivering in the
    /// background (claims, wake-ups, housekeeping, shared pauses): for the
    /// tests of the loop itself.
    pub async fn spawn_looping_as(config_text: Option<&str>, overrides: &[(&str, &str)], role: Role) -> Self {
        Self::launch(config_text, overrides, role, Worked::ByItsLoop).await
    }

    async fn launch(config_text: Option<&str>, overrides: &[(&str, &str)], role: Role, worked: Worked) -> Self {
        let directory = tempfile::tempdir().expect("temp dir");
        let config_path = config_text.map(|text| {
            let path = directory.path().join("pushgate.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let mut environment = vec![
            ("PUSHGATE_SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            ("PUSHGATE_STORE__URL".to_owned(), format!("sqlite://{}", directory.path().join("pushgate.db").display())),
        ];
        if config_text.is_none() {
            environment.push(("PUSHGATE_APPS__SAMPLEAPP__API_KEYS".to_owned(), format!(r#"["{API_KEY}"]"#)));
        }
        for (name, value) in overrides {
            environment.retain(|(existing, _)| existing != name);
            environment.push(((*name).to_owned(), (*value).to_owned()));
        }
        let config = Config::load(config_path.as_deref(), environment.clone()).expect("test configuration is valid");
        let source = ConfigSource { file: config_path, environment };
        Self::start_as(config, directory, reqwest::Client::new(), role, worked, Some(source)).await
    }

    pub async fn start(config: Config, directory: tempfile::TempDir, client: reqwest::Client) -> Self {
        Self::start_as(config, directory, client, Role::All, Worked::ByTest, None).await
    }

    async fn start_as(
        config: Config,
        directory: tempfile::TempDir,
        client: reqwest::Client,
        role: Role,
        worked: Worked,
        source: Option<ConfigSource>,
    ) -> Self {
        let clock = Arc::new(ManualClock::default());
        let build = match worked {
            Worked::ByTest => Build::new(role).driven(Arc::clone(&clock) as _),
            Worked::ByItsLoop => Build::new(role),
        };
        let application = Application::build_with(&config, build).await.expect("application builds");
        if let Some(source) = source {
            application.reload_from(source);
        }
        let base_url = application.base_url();
        let worker = application.worker().filter(|_| worked == Worked::ByTest);
        let store = application.store();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(application.run_until_stopped(async {
            // Either a send or the sender's drop means stop.
            let _ = stopped.await;
        }));
        Self { base_url, client, worker, clock, store, _directory: directory, _stop: stop }
    }

    fn driven_worker(&self) -> &Arc<Worker> {
        self.worker.as_ref().expect("a worker the test drives (not its loop, not an API-only node)")
    }

    /// Delivers what is due now on the worker's clock (retries due later
    /// wait); answers how many deliveries were attempted or settled.
    pub async fn deliver(&self) -> usize {
        self.driven_worker().run_pending().await
    }

    /// The worker's clock, Unix ms.
    pub fn clock_ms(&self) -> i64 {
        pushgate_providers::Clock::unix_ms(self.clock.as_ref())
    }

    /// Delivers everything: what is due now, then, while anything waits for
    /// a later attempt (a retry, a delivery a paused provider holds), moves
    /// the worker's clock to when it is due and delivers again, until every
    /// delivery has its final state. Answers how many were handled.
    pub async fn settle(&self) -> usize {
        let mut handled = 0;
        for _ in 0..SETTLE_ROUNDS {
            handled += self.deliver().await;
            match self.store.next_due_at().await.expect("the store answers") {
                Some(due) => self.clock.advance_to_ms(due),
                None => return handled,
            }
        }
        panic!("the queue did not settle in {SETTLE_ROUNDS} rounds of attempts");
    }

    /// The configuration file the app was started from (when it was given a text).
    pub fn config_file(&self) -> std::path::PathBuf {
        self._directory.path().join("pushgate.toml")
    }

    pub async fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base_url)).json(body);
        if let Some(key) = key {
            request = request.header("IM-API-KEY", key);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// PUT with `SampleApp`'s API key.
    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = self.client.put(format!("{}{path}", self.base_url)).header("IM-API-KEY", API_KEY).json(body);
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base_url));
        if let Some(key) = key {
            request = request.header("IM-API-KEY", key);
        }
        read(request.send().await.expect("request sent")).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.base_url)).send().await.expect("sent");
        assert_eq!(response.status(), 200);
        response.text().await.expect("text")
    }

    pub async fn subscribe(&self, body: Value) -> (u16, Value) {
        self.post_json("/me/subscribe", Some(API_KEY), &body).await
    }

    pub async fn devices_of(&self, client_id: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/clients/{client_id}/devices"), Some(API_KEY)).await;
        assert_eq!(status, 200, "{body}");
        body["result"]["devices"].as_array().expect("devices array").clone()
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("the answer is not JSON: {text:?}"));
    (status, body)
}

/// The IMKIT failure envelope.
pub fn error_envelope(status: u16, reason: &str, code: &str, message: &str) -> Value {
    json!({ "RC": status, "RM": reason, "error": { "code": code, "message": message } })
}

pub fn ios_device(device_id: &str, client_id: &str, token: &str) -> Value {
    json!({ "type": "ios", "token": token, "deviceId": device_id, "clientId": client_id })
}

/// A pushgate whose `SampleApp` sends to a fake APNs and a fake FCM.
pub struct WithProviders {
    pub app: TestApp,
    pub apns: pushgate_testkit::FakeApns,
    pub fcm: pushgate_testkit::FakeFcm,
    _files: tempfile::TempDir,
}

/// Starts the fakes and a pushgate configured to use them, with `extra`
/// appended to the `[delivery]` section.
pub async fn spawn_with_providers(extra_delivery: &str) -> WithProviders {
    spawn_with_providers_and(extra_delivery, &[]).await
}

/// As [`spawn_with_providers`], with environment overrides on top.
pub async fn spawn_with_providers_and(extra_delivery: &str, overrides: &[(&str, &str)]) -> WithProviders {
    spawn_with_providers_config(extra_delivery, "", "", overrides).await
}

/// As [`spawn_with_providers_and`], with `extra_app` added to `SampleApp`'s
/// table (keys such as `generic_push = {...}`) and `more_apps` (further
/// `[[apps]]`) at the end.
pub async fn spawn_with_providers_config(
    extra_delivery: &str,
    extra_app: &str,
    more_apps: &str,
    overrides: &[(&str, &str)],
) -> WithProviders {
    let (config, apns, fcm, files) = providers_config(Worked::ByTest, extra_delivery, extra_app, more_apps).await;
    let app = TestApp::spawn_with(Some(&config), overrides).await;
    WithProviders { app, apns, fcm, _files: files }
}

/// As [`spawn_with_providers_config`], with the worker's own loop delivering
/// in the background: for the tests of the loop itself.
pub async fn spawn_with_providers_looping(
    extra_delivery: &str,
    extra_app: &str,
    more_apps: &str,
    overrides: &[(&str, &str)],
) -> WithProviders {
    let (config, apns, fcm, files) = providers_config(Worked::ByItsLoop, extra_delivery, extra_app, more_apps).await;
    let app = TestApp::spawn_looping_as(Some(&config), overrides, Role::All).await;
    WithProviders { app, apns, fcm, _files: files }
}

/// The fakes, and the configuration text of a pushgate that uses them (see
/// [`spawn_with_providers_config`]), with the files it names. Retries are a
/// minute apart for a worker the test drives (nothing is due again before
/// `settle` moves the clock), 20 ms for one whose loop runs in real time.
pub async fn providers_config(
    worked: Worked,
    extra_delivery: &str,
    extra_app: &str,
    more_apps: &str,
) -> (String, pushgate_testkit::FakeApns, pushgate_testkit::FakeFcm, tempfile::TempDir) {
    let ca = pushgate_testkit::TestCa::generate();
    let key = pushgate_testkit::Es256Key::generate();
    let apns = pushgate_testkit::FakeApns::start(&ca, pushgate_testkit::FakeApnsConfig::token(&key)).await;
    let fcm = pushgate_testkit::FakeFcm::start(&ca, "imkit-demo", pushgate_testkit::FakeFcmConfig::default()).await;
    let files = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, content: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    };
    let p8 = write("AuthKey_ABC123DEFG.p8", &key.private_pem);
    let account = write("service-account.json", &fcm.account.json);
    let ca_file = write("ca.pem", &ca.ca_pem());
    let tables = pushgate_testkit::fake_provider_tables(&apns, &p8, &fcm, &account, &ca_file);
    let timing = match worked {
        Worked::ByTest => "retry_base_ms = 60000\nretry_max_ms = 600000",
        Worked::ByItsLoop => "retry_base_ms = 20\nretry_max_ms = 200\npoll_interval_ms = 50",
    };
    let config = format!(
        r#"
[delivery]
{timing}
{extra_delivery}

[[apps]]
id = "SampleApp"
api_keys = ["{API_KEY}"]
{extra_app}
{tables}
{more_apps}
"#
    );
    (config, apns, fcm, files)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `deadline`:
/// the wait for work done in the background, with a deadline instead of a sleep.
pub async fn eventually<T, F, Fut>(deadline: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Sends `POST /push/push2clients` with `SampleApp`'s key; answers the pushId.
pub async fn send_push(app: &TestApp, clients: &[&str], payload: Value) -> String {
    let (status, body) =
        app.post_json("/push/push2clients", Some(API_KEY), &json!({ "clients": clients, "payload": payload })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["RC"], &body["RM"]), (&json!(0), &json!("OK")));
    body["result"]["pushId"].as_str().expect("a push id").to_owned()
}

/// Delivers everything ([`TestApp::settle`]), then answers the push's status
/// (`GET /v1/pushes/{pushId}`'s `result`), every delivery in its final state.
pub async fn settled_status(app: &TestApp, push_id: &str) -> Value {
    app.settle().await;
    let (status, body) = app.get(&format!("/v1/pushes/{push_id}"), Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let deliveries = body["result"]["deliveries"].as_array().expect("deliveries");
    assert!(
        deliveries.iter().all(|d| d["status"] != "queued" && d["status"] != "retrying"),
        "every delivery has its final state: {deliveries:?}"
    );
    body["result"].clone()
}

/// For an app whose worker's own loop delivers: waits (at most 20 s) until
/// every delivery of the push has its final state; answers the status.
pub async fn settled_by_its_loop(app: &TestApp, push_id: &str) -> Value {
    eventually(std::time::Duration::from_secs(20), "the push to settle", || async {
        let (status, body) = app.get(&format!("/v1/pushes/{push_id}"), Some(API_KEY)).await;
        assert_eq!(status, 200, "{body}");
        let deliveries = body["result"]["deliveries"].as_array().expect("deliveries");
        deliveries.iter().all(|d| d["status"] != "queued" && d["status"] != "retrying").then(|| body["result"].clone())
    })
    .await
}

/// As [`settled_status`]: the push's deliveries.
pub async fn settled(app: &TestApp, push_id: &str) -> Vec<Value> {
    settled_status(app, push_id).await["deliveries"].as_array().expect("deliveries").clone()
}
