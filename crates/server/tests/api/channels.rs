//! Broadcast channels end to end: `/v1/apps/{appId}/channels` through
//! pushgate to the fake APNs' channel management API and broadcast endpoint,
//! which answer as Apple documents (201 with `apns-channel-id`, 404
//! `ChannelNotRegistered`, a broadcast to a channel that stores nothing
//! without `apns-expiration: 0` refused).

use crate::helpers::{API_KEY, read, spawn_with_providers};
use pushgate_testkit::ApnsFailure;
use serde_json::{Value, json};

/// A channel id in a path: base64 has `/`, `+` and `=`.
fn in_path(channel_id: &str) -> String {
    url::form_urlencoded::byte_serialize(channel_id.as_bytes()).collect()
}

async fn delete(app: &crate::helpers::TestApp, path: &str) -> (u16, Value) {
    read(app.client.delete(format!("{}{path}", app.base_url)).header("IM-API-KEY", API_KEY).send().await.expect("sent"))
        .await
}

#[tokio::test]
async fn a_channel_is_created_listed_read_broadcast_to_and_deleted_through_apns() {
    let setup = spawn_with_providers("").await;
    let app = &setup.app;
    let (status, body) =
        app.post_json("/v1/apps/SampleApp/channels", Some(API_KEY), &json!({ "messageStoragePolicy": 1 })).await;
    assert_eq!(status, 200, "{body}");
    let kept = body["result"]["channelId"].as_str().expect("a channel id").to_owned();
    let (_, body) =
        app.post_json("/v1/apps/SampleApp/channels", Some(API_KEY), &json!({ "messageStoragePolicy": 0 })).await;
    let fleeting = body["result"]["channelId"].as_str().expect("a channel id").to_owned();
    assert_eq!(setup.apns.channel_ids(), {
        let mut ids = vec![kept.clone(), fleeting.clone()];
        ids.sort();
        ids
    });
    let create = &setup.apns.channel_requests()[0];
    assert_eq!((create.method.as_str(), create.path.as_str()), ("POST", "/1/apps/io.imkit.app/channels"));
    assert_eq!(create.payload, json!({ "message-storage-policy": 1, "push-type": "LiveActivity" }));

    let (status, body) = app.get("/v1/apps/SampleApp/channels", Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    let mut listed: Vec<String> = body["result"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|id| id.as_str().unwrap_or_default().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, setup.apns.channel_ids());

    let (status, body) = app.get(&format!("/v1/apps/SampleApp/channels/{}", in_path(&fleeting)), Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({ "channelId": fleeting, "messageStoragePolicy": 0, "pushType": "LiveActivity" }));

    for (channel, expiration) in [(&kept, None), (&fleeting, Some("0"))] {
        let (status, body) = app
            .post_json(
                &format!("/v1/apps/SampleApp/channels/{}/broadcast", in_path(channel)),
                Some(API_KEY),
                &json!({ "payload": { "event": "update", "contentState": { "score": "2-1" }, "timestamp": 1_900_000_000 } }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let sent = setup.apns.broadcasts().pop().expect("a broadcast");
        assert_eq!(sent.path, "/4/broadcasts/apps/io.imkit.app");
        assert_eq!(sent.headers["apns-channel-id"], *channel);
        assert_eq!(
            (sent.headers["apns-push-type"].as_str(), sent.headers["apns-priority"].as_str()),
            ("liveactivity", "10")
        );
        assert_eq!(
            sent.headers.get("apns-expiration").map(String::as_str),
            expiration,
            "a channel that stores nothing: 0"
        );
        assert_eq!(
            sent.payload,
            json!({ "aps": { "timestamp": 1_900_000_000, "event": "update", "content-state": { "score": "2-1" } } })
        );
    }

    let (status, body) = delete(app, &format!("/v1/apps/SampleApp/channels/{}", in_path(&fleeting))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(setup.apns.channel_ids(), vec![kept.clone()]);
    let (status, body) = app.get(&format!("/v1/apps/SampleApp/channels/{}", in_path(&fleeting)), Some(API_KEY)).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("ChannelNotRegistered"), "{body}");
}

#[tokio::test]
async fn apns_answers_and_bad_requests_are_named_in_imkits_envelope() {
    let setup = spawn_with_providers("").await;
    let app = &setup.app;
    let (status, body) =
        app.post_json("/v1/apps/SampleApp/channels", Some(API_KEY), &json!({ "messageStoragePolicy": 2 })).await;
    assert_eq!(
        (status, body["error"]["message"].as_str().unwrap_or_default()),
        (400, "messageStoragePolicy: 0 (no message stored) or 1 (the most recent one), not 2")
    );
    let (status, body) = app.get("/v1/apps/OtherApp/channels", Some(API_KEY)).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")), "{body}");
    let (status, body) = app.get("/v1/apps/SampleApp/channels?environment=staging", Some(API_KEY)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.get("/v1/apps/SampleApp/channels", None).await;
    assert_eq!(status, 401, "no key, no channels");

    setup.apns.fail_next("channels", [ApnsFailure::Status(429, "TooManyRequests")]);
    let (status, body) =
        app.post_json("/v1/apps/SampleApp/channels", Some(API_KEY), &json!({ "messageStoragePolicy": 1 })).await;
    assert_eq!((status, &body["error"]["code"]), (429, &json!("RATE_LIMITED")), "{body}");
    setup.apns.fail_next("channels", [ApnsFailure::Status(500, "InternalServerError")]);
    let (status, body) = app.get("/v1/apps/SampleApp/channels", Some(API_KEY)).await;
    assert_eq!((status, &body["error"]["code"]), (503, &json!("UNAVAILABLE")), "{body}");

    let (status, body) = app
        .post_json(
            "/v1/apps/SampleApp/channels/bm90LWEtY2hhbm5lbA%3D%3D/broadcast",
            Some(API_KEY),
            &json!({ "payload": { "event": "update", "contentState": {} } }),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")), "an unknown channel: {body}");
    let (status, body) = app
        .post_json(
            "/v1/apps/SampleApp/channels/bm90LWEtY2hhbm5lbA%3D%3D/broadcast",
            Some(API_KEY),
            &json!({ "payload": { "event": "start", "attributesType": "Score", "attributes": {}, "contentState": {} } }),
        )
        .await;
    assert_eq!(status, 400, "a start is not broadcast: {body}");
    assert!(setup.apns.broadcasts().is_empty());
}
