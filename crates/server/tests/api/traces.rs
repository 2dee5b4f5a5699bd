//! Following one push through the binary's JSON log: its accept, fan-out,
//! send and recorded outcome are each logged inside a span that names the
//! push (`accept`, `fan_out`, `deliver`), so `push.id` finds them all.

use crate::helpers::binary::{self, pushgate};
use crate::helpers::{API_KEY, APNS_TOKEN, Worked, ios_device, providers_config};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// The values of `push.id` a JSON log line names: in its event's fields or
/// in any of the spans it was logged in.
fn push_ids_of(line: &Value) -> Vec<String> {
    let spans = line["spans"].as_array().cloned().unwrap_or_default();
    spans
        .iter()
        .chain([&line["fields"], &line["span"]])
        .filter_map(|fields| fields["push.id"].as_str().map(str::to_owned))
        .collect()
}

/// The binary on the test providers' configuration (`sample_app` added to
/// `SampleApp`'s table), with `environment`, its log piped when asked.
async fn serve(
    sample_app: &str,
    environment: &[(&str, &str)],
    piped_log: bool,
) -> (binary::Served, pushgate_testkit::FakeApns, tempfile::TempDir) {
    let (config, apns, _fcm, files) = providers_config(Worked::ByItsLoop, "", sample_app, "").await;
    let config_file = files.path().join("pushgate.toml");
    std::fs::write(&config_file, config).expect("write the configuration");
    let mut command = pushgate(files.path());
    command
        .arg("--config")
        .arg(&config_file)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(environment.iter().copied());
    if piped_log {
        command.stderr(Stdio::piped());
    }
    (binary::launch(command).await, apns, files)
}

/// Registers alice's iPhone.
async fn subscribe_alice(http: &reqwest::Client, base_url: &str) {
    let request = http.post(format!("{base_url}/me/subscribe")).header("IM-API-KEY", API_KEY);
    let subscribed = request.json(&ios_device("iphone-1", "alice", APNS_TOKEN)).send().await.expect("sent");
    assert_eq!(subscribed.status(), 200);
}

/// A push2clients to alice; answers its push id.
async fn push_to_alice(http: &reqwest::Client, base_url: &str) -> String {
    let request = http.post(format!("{base_url}/push/push2clients")).header("IM-API-KEY", API_KEY);
    let sent = request.json(&json!({ "clients": ["alice"], "payload": { "alert": "traced" } })).send().await;
    let answer: Value = sent.expect("sent").json().await.expect("JSON");
    answer["result"]["pushId"].as_str().expect("a push id").to_owned()
}

fn span_names(line: &Value) -> Vec<String> {
    let spans = line["spans"].as_array().cloned().unwrap_or_default();
    spans.iter().filter_map(|span| span["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pushs_log_lines_share_its_push_id_from_accept_to_outcome() {
    let (binary::Served { mut child, base_url, .. }, apns, _files) = serve(
        "",
        &[
            ("PUSHGATE_LOG__FORMAT", "json"),
            ("RUST_LOG", "info,pushgate_api=debug,pushgate_store=debug,pushgate_delivery=debug"),
        ],
        true,
    )
    .await;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.expect("the log reads");
        text
    });

    let http = reqwest::Client::new();
    subscribe_alice(&http, &base_url).await;
    let push_id = push_to_alice(&http, &base_url).await;
    apns.wait_for_delivered(1, Duration::from_secs(20)).await;
    binary::stop(child).await;

    let lines: Vec<Value> = log
        .await
        .expect("the log")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("a JSON log line: {line}")))
        .collect();
    let ours: Vec<&Value> = lines.iter().filter(|line| push_ids_of(line).contains(&push_id)).collect();
    let said: Vec<&str> = ours.iter().filter_map(|line| line["fields"]["message"].as_str()).collect();
    for step in ["push accepted", "fanned out", "answered", "recorded"] {
        assert!(said.contains(&step), "{step:?} among the push's lines: {said:?}");
    }
    let spans: Vec<String> = ours.iter().flat_map(|line| span_names(line)).collect();
    for span in ["accept", "fan_out", "deliver", "settle"] {
        assert!(spans.iter().any(|name| name == span), "a {span} span: {spans:?}");
    }
    let recorded = ours.iter().find(|line| line["fields"]["message"] == "recorded").expect("recorded");
    assert_eq!(recorded["fields"]["status"], "delivered", "{recorded}");
    assert!(ours.iter().all(|line| push_ids_of(line).iter().all(|id| *id == push_id)), "a line names one push only");
}

/// Private payloads leave no key material in the log, at any level: a
/// device's `pushKey` is registered and a chat message sealed to it with
/// every target at `trace`; neither the public key nor the auth secret
/// appears in any line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_key_never_reaches_the_log_even_at_trace() {
    let sample_app = "generic_push = { secret = \"trace-callback-secret-0001\" }\nprivacy = { mode = \"encrypt\" }";
    let (binary::Served { mut child, base_url, .. }, apns, _files) =
        serve(sample_app, &[("RUST_LOG", "trace")], true).await;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.expect("the log reads");
        text
    });
    let key = pushgate_testkit::TestSubscription::generate("device", "https://unused.example");
    let mut device = ios_device("iphone-1", "alice", APNS_TOKEN);
    device["pushKey"] = key.push_key();
    let http = reqwest::Client::new();
    let subscribed =
        http.post(format!("{base_url}/me/subscribe")).header("IM-API-KEY", API_KEY).json(&device).send().await;
    assert_eq!(subscribed.expect("sent").status(), 200);
    let callback = pushgate_testkit::seed::generic_callback("traced-1", "demo-room", &["alice"]);
    let url = format!("{base_url}/imkit/push/v2?secret=trace-callback-secret-0001");
    assert_eq!(http.post(url).json(&callback).send().await.expect("sent").status(), 200);
    apns.wait_for_delivered(1, Duration::from_secs(20)).await;
    assert!(apns.delivered()[0].payload.get("encrypted").is_some(), "the push was sealed");
    binary::stop(child).await;
    let log = log.await.expect("the log");
    assert!(log.lines().count() > 100, "trace logging was on: {} lines", log.lines().count());
    for (what, secret) in [("public key", &key.p256dh), ("auth secret", &key.auth)] {
        assert!(!log.contains(secret.as_str()), "the {what} is in the log");
    }
}

/// With `[telemetry] otlp_endpoint`, a callback's trace goes on through
/// pushgate: the caller's `traceparent` is the request's parent, and the
/// accept, the fan-out and the delivery's attempt (build, send, settle) are
/// in that one trace, parent by parent, as an OTLP collector receives them.
/// A push2clients without a `traceparent` begins a trace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callbacks_traceparent_goes_on_through_accept_fan_out_and_delivery_over_otlp() {
    const SECRET: &str = "otlp-callback-secret-0001";
    let collector = pushgate_testkit::FakeOtlpCollector::start().await;
    let sample_app = format!("generic_push = {{ secret = \"{SECRET}\" }}");
    let endpoint = collector.url();
    let environment = [
        ("PUSHGATE_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("PUSHGATE_TELEMETRY__SERVICE_NAME", "pushgate-under-test"),
        ("RUST_LOG", "warn"),
    ];
    let (binary::Served { child, base_url, .. }, apns, _files) = serve(&sample_app, &environment, false).await;

    let http = reqwest::Client::new();
    subscribe_alice(&http, &base_url).await;
    // IMKIT's side of the trace: its trace id, and the span that made the call.
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let callback = pushgate_testkit::seed::generic_callback("otlp-message-1", "room-1", &["alice"]);
    let answer: Value = http
        .post(format!("{base_url}/imkit/push/v2?secret={SECRET}"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&callback)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let chat_push = answer["result"]["pushId"].as_str().expect("a push id").to_owned();
    let custom_push = push_to_alice(&http, &base_url).await;
    apns.wait_for_delivered(2, Duration::from_secs(20)).await;
    // The stop sends what is still batched: no waiting on the exporter's schedule.
    binary::stop(child).await;

    let spans = collector.spans();
    assert!(spans.iter().all(|span| span.service_name == "pushgate-under-test"), "{spans:#?}");
    let by_id = |id: &str| spans.iter().find(|span| span.span_id == id);
    let named_for = |name: &str, push: &str| -> Vec<&pushgate_testkit::ReceivedSpan> {
        spans
            .iter()
            .filter(|span| span.name == name && span.attributes.get("push.id").map(String::as_str) == Some(push))
            .collect()
    };
    // The chat push: every span in the caller's trace, each with its parent.
    let accept = named_for("accept", &chat_push);
    assert_eq!(accept.len(), 1, "{spans:#?}");
    let http_span = by_id(&accept[0].parent_span_id).expect("the accept's parent was received");
    assert_eq!(http_span.name, "http");
    assert_eq!((http_span.trace_id.as_str(), http_span.parent_span_id.as_str()), (caller_trace, caller_span));
    let fan_out = named_for("fan_out", &chat_push);
    let deliver = named_for("deliver", &chat_push);
    assert_eq!((fan_out.len(), deliver.len()), (1, 1), "{spans:#?}");
    for span in [accept[0], fan_out[0], deliver[0]] {
        assert_eq!(span.trace_id, caller_trace, "{} is in the caller's trace", span.name);
    }
    assert_eq!(fan_out[0].parent_span_id, accept[0].span_id, "the fan-out follows the accept");
    assert_eq!(deliver[0].parent_span_id, accept[0].span_id, "the attempt follows the accept");
    let steps: Vec<&str> =
        spans.iter().filter(|span| span.parent_span_id == deliver[0].span_id).map(|span| span.name.as_str()).collect();
    for step in ["build", "send", "settle"] {
        assert!(steps.contains(&step), "{step} under the attempt: {steps:?}");
    }
    // The push2clients: a trace of its own, its request the root.
    let accept = named_for("accept", &custom_push);
    let deliver = named_for("deliver", &custom_push);
    assert_eq!((accept.len(), deliver.len()), (1, 1), "{spans:#?}");
    assert_ne!(accept[0].trace_id, caller_trace);
    assert_eq!(deliver[0].trace_id, accept[0].trace_id);
    let root = by_id(&accept[0].parent_span_id).expect("the request's span");
    assert_eq!((root.name.as_str(), root.parent_span_id.as_str()), ("http", ""));
}
