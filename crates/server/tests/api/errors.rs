//! The framework's own rejections, all in IMKIT's envelope.

use crate::helpers::{API_KEY, TestApp, error_envelope, read};
use serde_json::json;

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    send_raw(app, "post", path, content_type, body).await
}

/// Sends `body` with `content_type` by `method` to `path` with `SampleApp`'s key.
async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
    let response = app
        .client
        .request(method, format!("{}{path}", app.base_url))
        .header("IM-API-KEY", API_KEY)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent");
    read(response).await
}

#[tokio::test]
async fn malformed_json_is_invalid_json() {
    let app = TestApp::spawn().await;
    let (status, body) = post_raw(&app, "/me/subscribe", "application/json", r#"{"type": "ios","#).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "INVALID_JSON");
    assert_eq!(body["RC"], 400);
    let (status, body) = post_raw(&app, "/me/subscribe", "application/json", r#"{"type": "ios"} trailing"#).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("INVALID_JSON")));
}

#[tokio::test]
async fn imkits_content_type_with_charset_is_accepted() {
    let app = TestApp::spawn().await;
    let body = json!({ "type": "android", "token": "t", "deviceId": "d", "clientId": "c" }).to_string();
    let (status, _) = post_raw(&app, "/me/subscribe", "application/json; charset=utf-8", body).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn another_content_type_is_refused() {
    let app = TestApp::spawn().await;
    let (status, body) = post_raw(&app, "/me/subscribe", "text/plain", "type=ios").await;
    assert_eq!(status, 415);
    assert_eq!(
        body,
        error_envelope(
            415,
            "Unsupported Media Type",
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json"
        )
    );
}

#[tokio::test]
async fn a_body_that_is_not_an_object_names_the_body() {
    let app = TestApp::spawn().await;
    let (status, body) = post_raw(&app, "/me/subscribe", "application/json", "[1, 2]").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], json!({ "code": "INVALID_PARAMETER", "message": "body: must be a JSON object" }));
    let (status, body) = post_raw(&app, "/me/subscribe", "application/json", "").await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("INVALID_JSON")), "an empty body");
}

#[tokio::test]
async fn a_body_over_the_configured_limit_is_payload_too_large() {
    let app = TestApp::spawn_with(None, &[("PUSHGATE_SERVER__MAX_BODY_BYTES", "2048")]).await;
    let padding = "x".repeat(4096);
    let body = json!({ "type": "android", "token": "t", "deviceId": "d", "clientId": "c", "padding": padding });
    let (status, answer) = app.post_json("/me/subscribe", Some(crate::helpers::API_KEY), &body).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer, error_envelope(413, "Payload Too Large", "PAYLOAD_TOO_LARGE", "the request body is too large"));
    assert!(app.devices_of("c").await.is_empty());
}

#[tokio::test]
async fn the_default_body_limit_is_one_mebibyte() {
    let app = TestApp::spawn().await;
    let just_under = "x".repeat(1024 * 1024 - 200);
    let body = json!({ "type": "android", "token": "t", "deviceId": "d", "clientId": "c", "padding": just_under });
    assert_eq!(app.subscribe(body).await.0, 200);
    let over = "x".repeat(1024 * 1024);
    let body = json!({ "type": "android", "token": "t", "deviceId": "d", "clientId": "c", "padding": over });
    assert_eq!(app.subscribe(body).await.0, 413);
}

#[tokio::test]
async fn an_unknown_route_is_not_found() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/no/such/route", Some(API_KEY)).await;
    assert_eq!((status, body), (404, error_envelope(404, "Not Found", "NOT_FOUND", "no route for GET /no/such/route")));
}

#[tokio::test]
async fn a_wrong_method_is_method_not_allowed() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/me/subscribe", Some(API_KEY)).await;
    assert_eq!(status, 405);
    assert_eq!(
        body,
        error_envelope(405, "Method Not Allowed", "METHOD_NOT_ALLOWED", "GET is not allowed on /me/subscribe")
    );
}

#[tokio::test]
async fn auth_is_checked_before_the_body() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(format!("{}/me/subscribe", app.base_url))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let (status, body) = read(response).await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("INVALID_API_KEY")));
}

#[tokio::test]
async fn every_route_with_a_body_answers_an_oversized_body_and_a_wrong_content_type_in_the_envelope() {
    let app = TestApp::spawn_with(None, &[("PUSHGATE_SERVER__MAX_BODY_BYTES", "2048")]).await;
    let (status, document) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut checked = Vec::new();
    for (template, operations) in document["paths"].as_object().expect("paths") {
        // Every path parameter gets a valid value.
        let path = template
            .split('/')
            .map(|segment| if segment.starts_with('{') { "p1" } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in operations.as_object().expect("operations") {
            if operation.get("requestBody").is_none() {
                continue;
            }
            let oversized = json!({ "padding": "x".repeat(4096) }).to_string();
            let (status, body) = send_raw(&app, method, &path, "application/json", oversized).await;
            assert_eq!(
                (status, body),
                (413, error_envelope(413, "Payload Too Large", "PAYLOAD_TOO_LARGE", "the request body is too large")),
                "{method} {template} with an oversized body"
            );
            let (status, body) = send_raw(&app, method, &path, "text/plain", r#"{"sync":true}"#).await;
            assert_eq!(
                (status, body),
                (
                    415,
                    error_envelope(
                        415,
                        "Unsupported Media Type",
                        "UNSUPPORTED_MEDIA_TYPE",
                        "Content-Type must be application/json"
                    )
                ),
                "{method} {template} with a text/plain body"
            );
            checked.push(format!("{method} {template}"));
        }
    }
    assert!(checked.contains(&"post /v1/clients/{clientId}/rooms/{room}/read".to_owned()), "{checked:?}");
    assert!(checked.len() >= 10, "every route with a body was walked: {checked:?}");
}

#[tokio::test]
async fn a_read_mark_without_a_body_is_still_accepted() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(format!("{}/v1/clients/c1/rooms/r1/read", app.base_url))
        .header("IM-API-KEY", API_KEY)
        .send()
        .await
        .expect("sent");
    let (status, body) = read(response).await;
    assert_eq!((status, body["result"]["badge"].clone()), (200, json!(0)), "{body}");
}
