//! `/openapi.json` against what the handlers really take: every request body
//! below (the seed's and the README's examples among them) is valid against
//! its documented schema and accepted, and a field the schema calls required
//! is exactly one whose absence the handler refuses.

use crate::helpers::{API_KEY, APNS_TOKEN, TestApp, read};
use serde_json::{Value, json};

/// The schema of a route's JSON body, with the document's components beside
/// it so its `$ref`s resolve, and the names of its required fields.
fn request_schema(document: &Value, template: &str, method: &str) -> (jsonschema::Validator, Vec<String>) {
    let schema = &document["paths"][template][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {template} documents a JSON body");
    let resolved = match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().expect("a named component");
            &document["components"]["schemas"][name]
        }
        None => schema,
    };
    let required = resolved["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let mut rooted = schema.clone();
    rooted["components"] = document["components"].clone();
    let validator = jsonschema::draft202012::new(&rooted)
        .unwrap_or_else(|error| panic!("{method} {template}: the schema compiles: {error}"));
    (validator, required)
}

async fn send(app: &TestApp, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
    let request = app.client.request(method, format!("{}{path}", app.base_url)).header("IM-API-KEY", API_KEY);
    read(request.json(body).send().await.expect("sent")).await
}

#[tokio::test]
async fn request_schemas_match_what_the_handlers_accept_and_require() {
    let app = TestApp::spawn().await;
    let (status, document) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let (status, accepted) = app
        .post_json("/push/push2clients", Some(API_KEY), &json!({ "clients": ["user001"], "payload": { "body": "b" } }))
        .await;
    assert_eq!(status, 200, "{accepted}");
    let push_id = accepted["result"]["pushId"].as_str().expect("a push id").to_owned();

    let cases: Vec<(&str, &str, String, Value)> = vec![
        (
            "post",
            "/me/subscribe",
            "/me/subscribe".into(),
            json!({ "type": "ios", "token": APNS_TOKEN, "deviceId": "iphone-1", "clientId": "user001",
                    "environment": "sandbox", "locale": "zh-TW", "timezone": "Asia/Taipei" }),
        ),
        (
            "post",
            "/me/subscribe",
            "/me/subscribe".into(),
            json!({ "type": "android", "token": "fcm-registration-token", "deviceId": "pixel-1", "clientId": "user001" }),
        ),
        (
            "post",
            "/me/unsubscribe",
            "/me/unsubscribe".into(),
            json!({ "type": "ios", "deviceId": "iphone-1", "clientId": "user001" }),
        ),
        (
            "post",
            "/push/push2clients",
            "/push/push2clients".into(),
            json!({ "clients": ["user001", "user002"], "payload": {
                "type": "marketing", "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default",
                "topic": "io.imkit.app", "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!",
                "icon": "https://example.com/icon.png", "collapseKey": "promo_2026" } }),
        ),
        (
            "post",
            "/push/push2clients",
            "/push/push2clients".into(),
            json!({ "clients": ["user001"], "payload": {
                "alert": { "loc-key": "NEW_MESSAGE_NOTIFICATION", "loc-args": ["張小明", "您好,請問有空嗎?"] },
                "badge": 3, "sound": "default", "title": "新訊息", "body": "張小明:您好,請問有空嗎?" } }),
        ),
        (
            "put",
            "/v1/clients/{clientId}/badge/sources/{source}",
            "/v1/clients/user001/badge/sources/orders".into(),
            json!({ "count": 3 }),
        ),
        (
            "post",
            "/v1/clients/{clientId}/badge/sources/{source}",
            "/v1/clients/user001/badge/sources/orders".into(),
            json!({ "increment": -1 }),
        ),
        (
            "post",
            "/v1/clients/{clientId}/rooms/{room}/read",
            "/v1/clients/user001/rooms/demo-room/read".into(),
            json!({ "sync": true }),
        ),
        (
            "put",
            "/v1/clients/{clientId}/rooms/{room}/pref",
            "/v1/clients/user001/rooms/demo-room/pref".into(),
            json!({ "notify": "none", "muted": true, "mutedUntilMS": 4_102_444_800_000_i64 }),
        ),
        (
            "put",
            "/v1/clients/{clientId}/presence",
            "/v1/clients/user001/presence".into(),
            json!({ "online": true, "ttlSeconds": 120 }),
        ),
        (
            "put",
            "/v1/clients/{clientId}/prefs",
            "/v1/clients/user001/prefs".into(),
            json!({ "pushEnabled": true, "quietHours": { "start": "22:00", "end": "07:00" },
                    "timezone": "Asia/Taipei", "locale": "ja" }),
        ),
        (
            "post",
            "/v1/pushes/{pushId}/opened",
            format!("/v1/pushes/{push_id}/opened"),
            json!({ "clientId": "user001" }),
        ),
    ];
    for (method, template, path, body) in &cases {
        let (validator, required) = request_schema(&document, template, method);
        let errors: Vec<String> = validator.iter_errors(body).map(|error| error.to_string()).collect();
        assert!(errors.is_empty(), "{method} {template}: {body} is valid against the schema: {errors:?}");
        let (status, answer) = send(&app, method, path, body).await;
        assert_eq!(status, 200, "{method} {template} accepts {body}: {answer}");
        for field in body.as_object().expect("an object").keys() {
            let mut without = body.clone();
            without.as_object_mut().expect("an object").remove(field);
            let documented_required = required.contains(field);
            assert_eq!(
                validator.is_valid(&without),
                !documented_required,
                "{method} {template} without {field}: the schema and its required list disagree"
            );
            let (status, answer) = send(&app, method, path, &without).await;
            assert_eq!(
                status == 400,
                documented_required,
                "{method} {template} without {field}: the handler answered {status} {answer}, the schema says required = {documented_required}"
            );
        }
    }
}

#[tokio::test]
async fn the_subscribe_schema_types_token_as_a_string_or_a_push_subscription() {
    let app = TestApp::spawn().await;
    let (_, document) = app.get("/openapi.json", None).await;
    let (validator, required) = request_schema(&document, "/me/subscribe", "post");
    for field in ["type", "token", "deviceId", "clientId"] {
        assert!(required.iter().any(|name| name == field), "{field} is required: {required:?}");
    }
    let web = json!({ "type": "web", "deviceId": "browser-1", "clientId": "user001", "token": {
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
        "keys": { "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", "auth": "tBHItJI5svbpez7KI4CCXg" } } });
    assert!(validator.is_valid(&web), "a PushSubscription object is a documented token");
    assert!(!validator.is_valid(&json!({ "type": "ios", "token": 42, "deviceId": "d", "clientId": "c" })));
    assert!(!validator.is_valid(&json!({ "type": "pager", "token": "t", "deviceId": "d", "clientId": "c" })));
}

/// Every operation documents the errors any route can give, every request
/// body has an example, and each example is valid against its schema and
/// accepted by the route, sent as the document shows it.
#[tokio::test]
async fn every_operation_documents_its_errors_and_every_example_is_accepted() {
    const SECRET: &str = "openapi-callback-secret-0001";
    // The fake APNs answers the channel routes.
    let setup = crate::helpers::spawn_with_providers_config(
        "",
        &format!("generic_push = {{ secret = \"{SECRET}\" }}"),
        "",
        &[],
    )
    .await;
    let app = &setup.app;
    let (status, document) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut examples = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let at = format!("{method} {template}");
            let responses = operation["responses"].as_object().expect("responses");
            let mut wanted = vec!["200", "500"];
            if operation.get("security").is_some() {
                wanted.push("401");
            }
            if let Some(body) = operation.get("requestBody") {
                wanted.extend(["400", "413", "415"]);
                let example = body["content"]["application/json"]["example"].clone();
                assert!(example.is_object(), "{at} shows an example body");
                let (validator, _) = request_schema(&document, template, method);
                let errors: Vec<String> = validator.iter_errors(&example).map(|error| error.to_string()).collect();
                assert!(errors.is_empty(), "{at}: its example is valid against its schema: {errors:?}");
                examples.push((method.clone(), template.clone(), example));
            }
            for status in wanted {
                assert!(responses.contains_key(status), "{at} documents {status}");
            }
            for (status, response) in responses.iter().filter(|(status, _)| status.starts_with(['4', '5'])) {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorEnvelope", "{at} {status} is IMKIT's envelope");
            }
        }
    }
    assert_eq!(examples.len(), 16, "every body route has its example");

    // In an order where each finds what it needs: devices before pushes, a push before its open.
    let rank = |template: &str| match template {
        "/me/subscribe" => 0,
        "/me/unsubscribe" => 3,
        "/v1/pushes/{pushId}/opened" | "/v1/apps/{appId}/channels/{channelId}/broadcast" => 2,
        _ => 1,
    };
    examples.sort_by_key(|(_, template, _)| rank(template));
    let (mut push_id, mut channel_id) = (String::new(), String::new());
    for (method, template, example) in examples {
        let path = template
            .replace("{appId}", "SampleApp")
            .replace("{channelId}", &url::form_urlencoded::byte_serialize(channel_id.as_bytes()).collect::<String>())
            .replace("{clientId}", "user001")
            .replace("{source}", "orders")
            .replace("{room}", "demo-room")
            .replace("{id}", "copy-1")
            .replace("{pushId}", &push_id);
        let path = if path.starts_with("/imkit/") { format!("{path}?secret={SECRET}") } else { path };
        let (status, answer) = send(app, &method, &path, &example).await;
        assert_eq!(status, 200, "{method} {template} accepts its own example: {answer}");
        if template == "/push/push2clients" {
            push_id = answer["result"]["pushId"].as_str().expect("a push id").to_owned();
        }
        if template == "/v1/apps/{appId}/channels" {
            channel_id = answer["result"]["channelId"].as_str().expect("a channel id").to_owned();
        }
    }
}
