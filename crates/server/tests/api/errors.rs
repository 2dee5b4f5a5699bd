//! The framework's own rejections, all in IMKIT's envelope.

use crate::helpers::{API_KEY, TestApp, error_envelope, read};
use serde_json::json;

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let response = app
        .client
        .post(format!("{}{path}", app.base_url))
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
