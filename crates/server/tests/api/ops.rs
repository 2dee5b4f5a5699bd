//! Health, readiness, metrics and the OpenAPI document.

use crate::helpers::{API_KEY, APNS_TOKEN, TestApp, ios_device};
use serde_json::json;

#[tokio::test]
async fn health_and_readiness_answer_without_a_key() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await, (200, json!({ "RC": 0, "RM": "OK", "result": { "status": "ok" } })));
    assert_eq!(app.get("/readyz", None).await, (200, json!({ "RC": 0, "RM": "OK", "result": { "status": "ok" } })));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::spawn().await;
    assert_eq!(app.subscribe(ios_device("iphone-1", "user001", APNS_TOKEN)).await.0, 200);
    assert_eq!(app.get("/v1/clients/user001/devices", Some(API_KEY)).await.0, 200);
    assert_eq!(app.get("/v1/clients/user002/devices", Some(API_KEY)).await.0, 200);
    let text = app.metrics().await;
    assert!(
        text.contains(r#"pushgate_http_requests_total{method="POST",route="/me/subscribe",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"pushgate_http_requests_total{method="GET",route="/v1/clients/{clientId}/devices",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"pushgate_http_request_duration_seconds_count{method="POST",route="/me/subscribe"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let (status, document) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", document["openapi"]);
    for (path, method) in [
        ("/me/subscribe", "post"),
        ("/me/unsubscribe", "post"),
        ("/v1/clients/{clientId}/devices", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(document["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    assert_eq!(document["components"]["securitySchemes"]["api_key"]["name"], "IM-API-KEY");
    assert!(document["components"]["schemas"]["SubscribeRequest"]["properties"]["deviceId"].is_object());
}

/// Every answer, an error or an unknown route included, carries a request
/// id: the caller's own, or a new one per request.
#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let id_of = |response: &reqwest::Response| {
        response.headers().get("x-request-id").and_then(|id| id.to_str().ok()).map(str::to_owned)
    };
    let first = app.client.get(format!("{}/healthz", app.base_url)).send().await.expect("sent");
    let second = app.client.get(format!("{}/no/such/route", app.base_url)).send().await.expect("sent");
    assert_eq!(second.status(), 404);
    let (first, second) = (id_of(&first).expect("an id"), id_of(&second).expect("an id on an error"));
    assert_ne!(first, second);
    assert_eq!(first.len(), 36, "a UUID: {first}");
    let given = app
        .client
        .post(format!("{}/push/push2clients", app.base_url))
        .header("x-request-id", "from-the-caller-1")
        .send()
        .await
        .expect("sent");
    assert_eq!((given.status().as_u16(), id_of(&given).as_deref()), (401, Some("from-the-caller-1")));
}

/// `/docs` serves the API reference from the binary itself: the page, its
/// assets, and the initializer pointing at `/openapi.json`, nothing from a CDN.
#[tokio::test]
async fn the_api_reference_is_served_offline_at_docs() {
    let app = TestApp::spawn().await;
    let fetch = |path: &'static str| {
        let request = app.client.get(format!("{}{path}", app.base_url));
        async move {
            let response = request.send().await.expect("sent");
            (response.status().as_u16(), response.text().await.expect("text"))
        }
    };
    let (status, page) = fetch("/docs/").await;
    assert_eq!(status, 200);
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(!page.contains("https://"), "no remote asset: {page}");
    let (status, initializer) = fetch("/docs/swagger-initializer.js").await;
    assert_eq!(status, 200);
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert_eq!(fetch("/docs/swagger-ui-bundle.js").await.0, 200);
}

/// A served instance watches the certificates it was configured with: the
/// days left of each as a metric, and `/readyz` (still 200) naming those
/// that expire within 30 days or have expired.
#[tokio::test]
async fn expiring_certificates_show_in_readyz_and_as_days_left_in_the_metrics() {
    let ca = pushgate_testkit::TestCa::generate();
    let directory = tempfile::tempdir().expect("temp dir");
    let mut config = String::new();
    for (name, days) in [("Soon", 10), ("Gone", -2), ("Later", 400)] {
        let (chain, key) = ca.client_certificate_expiring_in("io.imkit.app", days);
        let cert = directory.path().join(format!("{name}.pem"));
        let key_file = directory.path().join(format!("{name}.key"));
        std::fs::write(&cert, chain).expect("write");
        std::fs::write(&key_file, key).expect("write");
        config.push_str(&format!(
            "[[apps]]\nid = \"{name}\"\napi_keys = [\"key-of-app-{name}-000000\"]\n[apps.apns]\ncertificate_file = {:?}\ncertificate_key_file = {:?}\ntopic = \"io.imkit.app\"\n",
            cert.display().to_string(),
            key_file.display().to_string()
        ));
    }
    let app = crate::helpers::TestApp::spawn_with(Some(&config), &[]).await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "still ready: {body}");
    let found = body["result"]["expiringCertificates"].as_array().expect("named").clone();
    let named: Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> = found
        .iter()
        .map(|found| (found["app"].clone(), found["certificate"].clone(), found["state"].clone()))
        .collect();
    assert_eq!(
        named,
        vec![(json!("Soon"), json!("apns"), json!("expiring")), (json!("Gone"), json!("apns"), json!("expired"))]
    );
    assert!((9..=10).contains(&found[0]["daysLeft"].as_i64().expect("days")), "{body}");
    let metrics = crate::helpers::eventually(std::time::Duration::from_secs(10), "the days in the metrics", || async {
        let text = app.metrics().await;
        text.contains(r#"pushgate_certificate_expiry_days{app="Later",certificate="apns"}"#).then_some(text)
    })
    .await;
    let days = |app: &str| -> f64 {
        let prefix = format!(r#"pushgate_certificate_expiry_days{{app="{app}",certificate="apns"}} "#);
        let line = metrics.lines().find(|line| line.starts_with(&prefix)).unwrap_or_else(|| panic!("{app}: {metrics}"));
        line[prefix.len()..].parse().expect("a number")
    };
    assert!((9.0..=10.01).contains(&days("Soon")), "{}", days("Soon"));
    assert!(days("Gone") < -1.0 && days("Later") > 399.0);
}
