//! The deployment artefacts in `deploy/` checked by the tools their users
//! run: Prometheus's rules by `promtool` (syntax, and a unit test per alert),
//! the Kubernetes manifests by `kubernetes-validate` against the Kubernetes
//! schemas, and every metric the rules and the Grafana dashboard name found
//! in a running pushgate's `/metrics`.

use crate::helpers::{API_KEY, APNS_TOKEN, ios_device};
use pushgate_testkit::ApnsFailure;
use regex::Regex;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|error| panic!("{file}: {error}"))
}

/// Runs a tool; its output when it succeeds, a failure naming what it said otherwise.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?} does not run: {error}"));
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed:\n{said}");
    said
}

/// The alerts the rules define.
fn alerts() -> Vec<String> {
    let rules = read("prometheus/pushgate.rules.yml");
    let alert = Regex::new(r"(?m)^\s+- alert: (\w+)$").expect("a regex");
    alert.captures_iter(&rules).map(|found| found[1].to_owned()).collect()
}

#[test]
fn the_alerting_rules_pass_promtool_check_and_each_alert_has_a_test_with_promtool() {
    let said = run(Command::new("promtool").arg("check").arg("rules").arg(deploy("prometheus/pushgate.rules.yml")));
    let alerts = alerts();
    assert!(said.contains(&format!("SUCCESS: {} rules found", alerts.len())), "{said}");
    for wanted in ["PushgateProviderPaused", "PushgateQueueBehind", "PushgateAcceptErrors"] {
        assert!(alerts.iter().any(|alert| alert == wanted), "{wanted} in {alerts:?}");
    }
    for wanted in ["PushgateCertificateExpiring", "PushgateNotReady", "PushgateDown"] {
        assert!(alerts.iter().any(|alert| alert == wanted), "{wanted} in {alerts:?}");
    }
    let tests = read("prometheus/pushgate.rules.test.yml");
    for alert in &alerts {
        assert!(tests.contains(&format!("alertname: {alert}\n")), "{alert} has no test");
    }
    let said = run(Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg("pushgate.rules.test.yml")
        .current_dir(deploy("prometheus")));
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn the_kubernetes_manifests_validate_against_the_kubernetes_schemas_with_kubernetes_validate() {
    let manifests: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    let said = run(Command::new("kubernetes-validate").arg("--strict").args(&manifests));
    for resource in [
        "deployment/pushgate-api",
        "deployment/pushgate-worker",
        "configmap/pushgate-config",
        "secret/pushgate-credentials",
        "service/pushgate",
        "poddisruptionbudget/pushgate-api",
        "poddisruptionbudget/pushgate-worker",
    ] {
        assert!(said.contains(&format!("passed for resource {resource} ")), "{resource}: {said}");
    }
    // What the schemas cannot say: the roles, the probes and a grace that fits the drain.
    let grace = Regex::new(r"shutdown_grace_seconds = (\d+)").expect("a regex");
    let drain: u64 =
        grace.captures(&read("kubernetes/configmap.yaml")).expect("the drain's grace")[1].parse().expect("n");
    let termination = Regex::new(r"terminationGracePeriodSeconds: (\d+)").expect("a regex");
    let sleep = Regex::new(r#"command: \["sleep", "(\d+)"\]"#).expect("a regex");
    for role in ["api", "worker"] {
        let deployment = read(&format!("kubernetes/{role}-deployment.yaml"));
        assert!(deployment.contains(&format!(r#""--role", "{role}"]"#)), "{role}");
        assert!(deployment.contains("readinessProbe:\n            httpGet:\n              path: /readyz"), "{role}");
        assert!(deployment.contains("livenessProbe:\n            httpGet:\n              path: /healthz"), "{role}");
        let number = |pattern: &Regex| -> u64 {
            let found = pattern.captures(&deployment).map(|found| found[1].parse().expect("a number"));
            found.unwrap_or_else(|| panic!("{role}: {pattern}"))
        };
        let (grace, pre_stop) = (number(&termination), number(&sleep));
        // preStop, then requests and then sends under way each get the drain's grace.
        assert!(grace >= pre_stop + 2 * drain, "{role}: the grace covers the drain");
        assert!(deployment.contains("mountPath: /run/secrets/pushgate"), "{role}: credentials as files");
    }
}

/// The `pushgate_…` names a file uses (a histogram's `_bucket` series included).
fn metric_names(text: &str) -> BTreeSet<String> {
    let name = Regex::new(r"\bpushgate_[a-z_]+[a-z]").expect("a regex");
    name.find_iter(text).map(|found| found.as_str().to_owned()).collect()
}

/// The sample names of a `/metrics` text.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_name_is_in_a_running_pushgates_metrics() {
    let dashboard: Value = serde_json::from_str(&read("grafana/pushgate.json")).expect("the dashboard is JSON");
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("an expression").to_owned())
        .collect();
    assert!(queries.len() >= 15, "{queries:?}");
    let mut named = metric_names(&queries.join("\n"));
    named.extend(metric_names(&read("prometheus/pushgate.rules.yml")));
    named.extend(metric_names(&read("prometheus/pushgate.rules.test.yml")));

    // A node that delivered, retried, paused a provider, took a callback and
    // served a request of each kind, and one with an APNs certificate.
    let setup = crate::helpers::callbacks::spawn().await;
    assert_eq!(setup.app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
    setup.apns.fail_next(APNS_TOKEN, [ApnsFailure::Status(403, "InvalidProviderToken")]);
    crate::helpers::callbacks::send(&setup.app, &crate::helpers::callbacks::message("m-1", "room-1", &["user001"]))
        .await;
    setup.app.deliver().await;
    let (status, body) = setup.app.post_json("/push/push2clients", Some(API_KEY), &json!({ "clients": [] })).await;
    assert_eq!(status, 400, "{body}");
    setup.app.settle().await;
    let mut metrics = exposed(&setup.app.metrics().await);

    let ca = pushgate_testkit::TestCa::generate();
    let directory = tempfile::tempdir().expect("temp dir");
    let (chain, key) = ca.client_certificate_expiring_in("io.imkit.app", 10);
    let (cert, key_file) = (directory.path().join("push.pem"), directory.path().join("push.key"));
    std::fs::write(&cert, chain).expect("write");
    std::fs::write(&key_file, key).expect("write");
    let config = format!(
        "[[apps]]\nid = \"Certified\"\napi_keys = [\"key-of-app-certified-000000\"]\n[apps.apns]\ncertificate_file = {:?}\ncertificate_key_file = {:?}\ntopic = \"io.imkit.app\"\n",
        cert.display().to_string(),
        key_file.display().to_string()
    );
    let certified = crate::helpers::TestApp::spawn_with(Some(&config), &[]).await;
    let text = crate::helpers::eventually(std::time::Duration::from_secs(10), "the certificate's days", || async {
        let text = certified.metrics().await;
        text.contains("pushgate_certificate_expiry_days{").then_some(text)
    })
    .await;
    metrics.extend(exposed(&text));

    let missing: Vec<&String> = named.iter().filter(|name| !metrics.contains(*name)).collect();
    assert!(missing.is_empty(), "named in deploy/ but not in /metrics: {missing:?}\n/metrics has {metrics:?}");
    for expected in
        ["pushgate_provider_paused", "pushgate_ready", "pushgate_queue_overdue_seconds", "pushgate_deliveries_total"]
    {
        assert!(named.contains(expected), "{expected} is used");
    }
}

/// The ConfigMap's `pushgate.toml`, with the Secret's files where the
/// Deployments mount them, passes `pushgate check-config`: every key it
/// names exists and every credential file it points at is read as the
/// deployment would read it.
#[test]
fn the_kubernetes_configuration_passes_check_config_with_the_secrets_files() {
    let configmap = read("kubernetes/configmap.yaml");
    let toml = configmap.split("pushgate.toml: |\n").nth(1).expect("the configuration in the ConfigMap");
    let toml: Vec<&str> = toml.lines().map(|line| line.strip_prefix("    ").unwrap_or(line)).collect();
    let folder = tempfile::tempdir().expect("a folder");
    let secrets = folder.path().join("secrets");
    std::fs::create_dir(&secrets).expect("the Secret's mount");
    let toml = toml.join("\n").replace("/run/secrets/pushgate", &secrets.display().to_string());
    std::fs::write(folder.path().join("pushgate.toml"), toml).expect("written");
    // The Secret's keys (secret.example.yaml), each a file of the kind it names.
    let example = read("kubernetes/secret.example.yaml");
    let account = pushgate_testkit::TestServiceAccount::generate("your-project", "https://oauth2.googleapis.com/token");
    let files = [
        ("admin-api-keys", "an-admin-key-0123456789abcdef\n".to_owned()),
        ("sampleapp-api-keys", "an-app-key-0123456789abcdef\n".to_owned()),
        ("sampleapp-callback-secret", "a-callback-secret-0123456789".to_owned()),
        ("sampleapp-apns.p8", pushgate_testkit::Es256Key::generate().private_pem),
        ("sampleapp-fcm.json", account.json),
    ];
    for (name, content) in files {
        assert!(example.contains(&format!("  {name}: ")), "{name} is a key of the Secret");
        std::fs::write(secrets.join(name), content).expect("written");
    }
    let mut check = Command::new(crate::helpers::binary::BINARY);
    check.args(["--config", "pushgate.toml", "check-config"]).current_dir(folder.path());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("PUSHGATE_")) {
        check.env_remove(name);
    }
    let said = run(check.env("PUSHGATE_STORE__URL", "postgres://pushgate@127.0.0.1:5432/pushgate"));
    assert!(said.contains("configuration is valid: 1 app(s)"), "{said}");
}
