//! IMKIT's callbacks as a test sends them, and the pushes they make.

use super::{API_KEY, TestApp, WithProviders, read, spawn_with_providers_config};
use serde_json::{Value, json};

/// `SampleApp`'s callback secret in these tests.
pub const SECRET: &str = "callback-secret-0123456789";

/// A pushgate whose `SampleApp` takes callbacks with [`SECRET`].
pub async fn spawn() -> WithProviders {
    spawn_with(&format!(r#"generic_push = {{ secret = "{SECRET}" }}"#), "").await
}

/// A pushgate with `sample_app` added to `SampleApp`'s table and `more_apps`
/// (further `[[apps]]`) after it.
pub async fn spawn_with(sample_app: &str, more_apps: &str) -> WithProviders {
    spawn_with_providers_config("", sample_app, more_apps, &[]).await
}

/// The seed's example callback, with another id, room and recipients.
pub fn message(id: &str, room: &str, recipients: &[&str]) -> Value {
    pushgate_testkit::seed::generic_callback(id, room, recipients)
}

/// POSTs raw bytes to a callback route with extra headers, as IMKIT does
/// (`Content-Type: application/json; charset=utf-8`).
pub async fn post_callback(app: &TestApp, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}{path}", app.base_url))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    read(request.send().await.expect("request sent")).await
}

/// Sends a v2 callback with the secret in the query; answers the `result`.
pub async fn send(app: &TestApp, body: &Value) -> Value {
    let (status, answer) =
        post_callback(app, &format!("/imkit/push/v2?secret={SECRET}"), &[], body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((&answer["RC"], &answer["RM"]), (&json!(0), &json!("OK")));
    answer["result"].clone()
}

/// A client's badge (`GET /v1/clients/{client}/badge`'s `result`).
pub async fn badge(app: &TestApp, client: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/clients/{client}/badge"), Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    body["result"].clone()
}
