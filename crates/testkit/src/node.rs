//! Web Push implementations nobody here wrote, run with Node: the npm
//! packages `web-push-testing` (a mock push service that decrypts what it
//! receives and verifies the VAPID token against the subscription's
//! `applicationServerKey`) and `web-push` (the reference library), pinned by
//! `crates/testkit/node/package-lock.json`. The first test to need them
//! installs them (`npm ci`, once, under a lock: tests run in processes of
//! their own); without Node.js and npm the test fails, and `cargo xtask
//! test` leaves such tests out and says so.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// The installed packages, and how to run them.
#[derive(Debug, Clone)]
pub struct NodePeers {
    directory: PathBuf,
}

/// The installed peers, installed first if they are not. Fails the test
/// when Node.js or npm is missing, or the install fails.
pub fn node_peers() -> NodePeers {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node");
    let runs = |program: &str| {
        std::process::Command::new(program).arg("--version").output().is_ok_and(|output| output.status.success())
    };
    assert!(
        runs("node") && runs("npm"),
        "Node.js and npm are not installed (apt-get install nodejs npm): this test needs them. `cargo xtask test` \
         leaves out the tests that need them when they are missing, and says so"
    );
    // Written once `npm ci` has finished: the packages' folders appear one by
    // one while it runs, so a test that saw them could start before the rest
    // (`http_ece`) was there (found on a fresh machine).
    let done = directory.join("node_modules/.pushgate-installed");
    let installed = || done.is_file();
    if !installed() {
        // Tests run in processes of their own: one installs, the others wait.
        let lock = std::fs::File::create(directory.join(".install.lock")).expect("the install lock file");
        lock.lock().expect("the install lock");
        if !installed() {
            let output = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&directory)
                .output()
                .expect("npm runs");
            assert!(
                output.status.success(),
                "npm ci --prefix {} failed: {}",
                directory.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            std::fs::write(&done, b"").expect("the install marker");
        }
    }
    NodePeers { directory }
}

impl NodePeers {
    /// Runs a verb of `peers.js` (see that file) with `input`; answers its output.
    /// `extra_ca` is trusted for HTTPS (`NODE_EXTRA_CA_CERTS`).
    pub async fn run(&self, verb: &str, input: &Value, extra_ca: Option<&std::path::Path>) -> Value {
        let mut command = tokio::process::Command::new("node");
        command
            .arg(self.directory.join("peers.js"))
            .arg(verb)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(ca) = extra_ca {
            command.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let mut child = command.spawn().expect("node runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.to_string().as_bytes()).await.expect("write to node");
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("node answers within 30 s")
            .expect("node ran");
        assert!(output.status.success(), "peers.js {verb} failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("peers.js answers JSON")
    }

    /// Starts `web-push-testing` on a free loopback port and waits until it answers.
    pub async fn start_web_push_testing(&self) -> WebPushTesting {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
        let server = self.directory.join("node_modules/web-push-testing/src/bin/server.js");
        let child = tokio::process::Command::new("node")
            .arg(server)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("web-push-testing starts");
        let service = WebPushTesting { port, client: reqwest::Client::new(), _child: child };
        let started = std::time::Instant::now();
        while service.post("/status", &json!({})).await.is_none() {
            assert!(started.elapsed() < Duration::from_secs(20), "web-push-testing did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }
}

/// A running `web-push-testing`; stopped when dropped.
#[derive(Debug)]
pub struct WebPushTesting {
    port: u16,
    client: reqwest::Client,
    _child: tokio::process::Child,
}

impl WebPushTesting {
    /// `localhost`, the host its endpoints name.
    pub fn host(&self) -> &'static str {
        "localhost"
    }

    async fn post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        let url = format!("http://localhost:{}{path}", self.port);
        let response = self.client.post(url).json(body).send().await.ok()?;
        let status = response.status().as_u16();
        let text = response.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A subscription for a page whose `applicationServerKey` is `vapid_public_key`:
    /// `PushSubscriptionJSON` plus its `clientHash`.
    pub async fn subscribe(&self, vapid_public_key: &str) -> Value {
        let options = json!({ "userVisibleOnly": "true", "applicationServerKey": vapid_public_key });
        let (status, body) = self.post("/subscribe", &options).await.expect("web-push-testing answers");
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }

    /// The decrypted messages its endpoint accepted for `client_hash`.
    pub async fn notifications(&self, client_hash: &str) -> Vec<String> {
        let (status, body) =
            self.post("/get-notifications", &json!({ "clientHash": client_hash })).await.expect("answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body["data"]["messages"].clone()).expect("messages")
    }

    /// From now on its endpoint answers 410 for `client_hash`.
    pub async fn expire(&self, client_hash: &str) {
        let (status, body) =
            self.post(&format!("/expire-subscription/{client_hash}"), &json!({})).await.expect("answers");
        assert_eq!(status, 200, "{body}");
    }
}
