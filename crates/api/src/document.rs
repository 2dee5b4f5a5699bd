//! What every operation of the OpenAPI document shares, added in one place
//! rather than repeated on each handler: the error answers any route can give
//! (the extractors' and the store's), and a request example for every body,
//! taken from IMKIT's seed and the README (a test sends each one and expects
//! it accepted).

use serde_json::{Value, json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::Ref;
use utoipa::openapi::{Content, OpenApi, RefOr, Response};

/// An example request body for the operation, if it takes one.
fn example(method: &str, path: &str) -> Option<Value> {
    let callback = json!({
        "_id": "5dd3b2b7c8e0ae3a4d28e7d9", "message": "lala", "room": "demo-room", "roomName": "Demo Room",
        "sender": { "_id": "sss", "nickname": "SSS", "avatarUrl": "http://loremflickr.com/240/240/style?1574241882",
                    "isRobot": false, "id": "sss", "lastLoginTimeMS": 1_568_192_470_942_u64 },
        "messageType": "text", "appID": "SampleApp", "id": "5dd3b2b7c8e0ae3a4d28e7d9",
        "messageTimeMS": 1_574_246_991_222_u64, "updatedAtMS": 1_574_246_991_223_u64,
        "createdAtMS": 1_574_246_991_223_u64, "pushToClients": ["user001", "user002"]
    });
    Some(match (method, path) {
        ("post", "/me/subscribe") => json!({
            "type": "ios", "token": "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad",
            "deviceId": "iphone-1", "clientId": "user001", "environment": "sandbox", "locale": "zh-TW",
            "timezone": "Asia/Taipei"
        }),
        ("post", "/me/unsubscribe") => json!({ "type": "ios", "deviceId": "iphone-1", "clientId": "user001" }),
        ("post", "/push/push2clients") => json!({ "clients": ["user001", "user002"], "payload": {
            "type": "marketing", "alert": "您有一則新的優惠活動,立即查看!", "badge": 1, "sound": "default",
            "topic": "io.imkit.app", "title": "限時優惠", "body": "您有一則新的優惠活動,立即查看!",
            "icon": "https://example.com/icon.png", "collapseKey": "promo_2026",
            "apns": { "headers": { "apns-priority": "5" }, "payload": { "aps": { "interruption-level": "passive" } } },
            "fcm": { "android": { "notification": { "channel_id": "promos" } }, "fcm_options": { "analytics_label": "promo" } },
            "webpush": { "headers": { "Urgency": "low" }, "notification": { "navigate": "https://chat.example.com/promo" } } } }),
        ("post", "/push/liveactivity") => json!({ "clients": ["user001"], "payload": {
            "event": "update", "activityId": "order-A17", "contentState": { "status": "on the way", "etaMinutes": 12 },
            "staleDate": 1_893_456_000, "alert": { "title": "Order A-17", "body": "Your rider is 12 minutes away" } } }),
        ("post", "/v1/apps/{appId}/channels") => json!({ "messageStoragePolicy": 1 }),
        ("post", "/v1/apps/{appId}/channels/{channelId}/broadcast") => json!({ "payload": {
            "event": "update", "contentState": { "home": 2, "away": 1, "minute": 67 }, "staleDate": 1_893_456_000,
            "alert": { "title": "Goal!", "body": "2-1 in the 67th minute" } } }),
        ("post", "/imkit/push/v2") => callback,
        ("post", "/imkit/push") => {
            let mut legacy = callback;
            let object = legacy.as_object_mut()?;
            object.remove("pushToClients");
            object.remove("roomName");
            object.insert("_id".into(), "5dd3b2b7c8e0ae3a4d28e7da".into());
            object.insert("id".into(), "5dd3b2b7c8e0ae3a4d28e7da".into());
            object.insert("toClient".into(), "user001".into());
            object.insert("badge".into(), 3.into());
            object.insert("alert".into(), "SSS: lala".into());
            legacy
        }
        ("put", "/v1/clients/{clientId}/badge/sources/{source}") => json!({ "count": 2 }),
        ("post", "/v1/clients/{clientId}/badge/sources/{source}") => json!({ "increment": 1 }),
        ("post", "/v1/clients/{clientId}/rooms/{room}/read") => json!({ "sync": true, "deviceId": "iphone-1" }),
        ("put", "/v1/clients/{clientId}/rooms/{room}/pref") => json!({ "notify": "mentions" }),
        ("put", "/v1/clients/{clientId}/presence") => json!({ "online": true, "ttlSeconds": 120 }),
        ("put", "/v1/clients/{clientId}/prefs") => json!({
            "pushEnabled": true, "quietHours": { "start": "22:00", "end": "07:00" }, "timezone": "Asia/Taipei",
            "locale": "zh-TW"
        }),
        ("put", "/v1/experiments/{id}") => json!({ "variants": [
            { "name": "control", "weight": 1.0 },
            { "name": "short", "weight": 1.0, "title": "{roomName}", "body": "{sender}: {message}" }
        ], "messageTypes": ["text"] }),
        ("post", "/v1/pushes/{pushId}/opened") => json!({ "clientId": "user001" }),
        _ => return None,
    })
}

fn error(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    let content = Content::new(Some(Ref::from_schema_name("ErrorEnvelope")));
    response.content.insert("application/json".into(), RefOr::T(content));
    RefOr::T(response)
}

fn answer(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description));
}

/// Adds the shared answers and the examples to every operation.
pub(crate) fn complete(openapi: &mut OpenApi) {
    for (path, item) in &mut openapi.paths.paths {
        let operations =
            [("get", &mut item.get), ("put", &mut item.put), ("post", &mut item.post), ("delete", &mut item.delete)];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            if let Some(RefOr::T(body)) = &mut operation.request_body {
                if let Some(example) = example(method, path) {
                    for content in body.content.values_mut() {
                        if let RefOr::T(content) = content {
                            content.example = Some(example.clone());
                        }
                    }
                }
                answer(operation, "400", "`INVALID_JSON`, `MISSING_PARAMETER` or `INVALID_PARAMETER` naming the field");
                answer(operation, "413", "`PAYLOAD_TOO_LARGE`: the body is larger than `server.max_body_bytes`");
                answer(operation, "415", "`UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`");
            }
            if operation.security.is_some() {
                answer(operation, "401", "`INVALID_API_KEY`: no key, or one that opens no app");
                answer(
                    operation,
                    "400",
                    "`MISSING_PARAMETER` or `INVALID_PARAMETER`: an admin key without `IM-APP-ID`, or naming no configured app",
                );
            }
            if path.starts_with("/v1/apps/{appId}/channels") {
                // One request to APNs while the caller waits: its answers are the caller's.
                answer(
                    operation,
                    "404",
                    "`NOT_FOUND`: the key opens another app than `appId`, or APNs does not know the channel",
                );
                answer(operation, "429", "`RATE_LIMITED`: APNs answered TooManyRequests; send again later");
                answer(operation, "502", "`PROVIDER_REFUSED`: APNs refused the app's credentials");
                answer(operation, "503", "`UNAVAILABLE`: APNs was not reached, or is unavailable");
            }
            if matches!(path.as_str(), "/push/push2clients" | "/push/liveactivity" | "/imkit/push/v2" | "/imkit/push") {
                answer(
                    operation,
                    "429",
                    "`RATE_LIMITED`: the app is over its `[apps.limits]`; nothing was stored; see `Retry-After`",
                );
            }
            if !matches!(path.as_str(), "/healthz" | "/metrics") {
                answer(operation, "503", "`UNAVAILABLE`: the store did not answer; nothing was changed");
            }
            answer(
                operation,
                "500",
                "`INTERNAL`: an unexpected failure (logged with the request id); nothing was changed",
            );
        }
    }
}
