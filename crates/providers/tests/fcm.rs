//! The FCM client against the fake FCM and its OAuth2 token endpoint.
#![expect(clippy::unwrap_used, reason = "test helpers: a broken fixture should panic at once")]

use pushgate_domain::Reason;
use pushgate_providers::fcm::{FcmClient, FcmClientConfig, ServiceAccount};
use pushgate_providers::{Clock, Outcome, SystemClock};
use pushgate_testkit::{FakeFcm, FakeFcmConfig, FcmFailure, TestCa, TestServiceAccount};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Debug)]
struct ManualClock(Mutex<SystemTime>);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

struct Setup {
    fake: FakeFcm,
    ca: TestCa,
}

async fn setup(config: FakeFcmConfig) -> Setup {
    let ca = TestCa::generate();
    let fake = FakeFcm::start(&ca, "imkit-demo", config).await;
    Setup { fake, ca }
}

impl Setup {
    fn client_for(&self, account_json: &str, clock: Arc<dyn Clock>) -> FcmClient {
        let account: ServiceAccount = serde_json::from_str(account_json).expect("service account JSON");
        let mut config = FcmClientConfig::new(account).unwrap();
        config.endpoint = self.fake.endpoint().parse().unwrap();
        config.extra_ca_pem = Some(self.ca.ca_pem().into_bytes());
        FcmClient::new(config, clock).expect("client")
    }

    fn client(&self) -> FcmClient {
        self.client_for(&self.fake.account.json, Arc::new(SystemClock))
    }
}

fn chat_message() -> serde_json::Value {
    json!({
        "notification": { "title": "Demo Room", "body": "SSS: lala" },
        "android": {
            "collapse_key": "demo-room",
            "ttl": "3600s",
            "notification": { "body_loc_key": "im_loc_text", "body_loc_args": ["SSS", "lala"], "notification_count": 3, "click_action": "push_chatroom" }
        },
        "data": { "loc-key": "im_loc_text", "loc-args": "[\"SSS\",\"lala\"]", "type": "text" }
    })
}

#[tokio::test]
async fn a_message_reaches_fcm_with_its_token_and_a_fetched_access_token() {
    let setup = setup(FakeFcmConfig::default()).await;
    let client = setup.client();
    assert_eq!(client.send("fcm-token-1", &chat_message()).await, Outcome::Delivered);
    let messages = setup.fake.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].token, "fcm-token-1");
    assert_eq!(messages[0].message["android"]["notification"]["notification_count"], 3);
    assert_eq!(messages[0].message["data"]["type"], "text");
    assert_eq!(setup.fake.token_fetches(), 1, "the token_uri of the service account was used");
}

#[tokio::test]
async fn concurrent_sends_share_one_access_token_fetch() {
    let setup = setup(FakeFcmConfig::default()).await;
    let client = Arc::new(setup.client());
    let sends: Vec<_> = (0..40)
        .map(|n| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.send(&format!("fcm-token-{n}"), &chat_message()).await })
        })
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), Outcome::Delivered);
    }
    assert_eq!(setup.fake.token_fetches(), 1);
    assert_eq!(client.access_token_fetches(), 1);
    let connections = client.connections_opened();
    assert!((1..=4).contains(&connections), "40 sends share the pool's HTTP/2 connections, opened {connections}");
}

#[tokio::test]
async fn the_target_token_replaces_one_the_message_carries_and_the_endpoint_must_be_https() {
    let setup = setup(FakeFcmConfig::default()).await;
    let mut message = chat_message();
    message["token"] = json!("stale-token");
    assert_eq!(setup.client().send("fcm-token-7", &message).await, Outcome::Delivered);
    assert_eq!(setup.fake.messages()[0].token, "fcm-token-7");
    assert_eq!(setup.fake.messages()[0].message["data"]["type"], "text", "the other fields travel as they are");

    let account: ServiceAccount = serde_json::from_str(&setup.fake.account.json).unwrap();
    let mut config = FcmClientConfig::new(account).unwrap();
    config.endpoint = setup.fake.endpoint().replace("https://", "http://").parse().unwrap();
    let refused = FcmClient::new(config, Arc::new(SystemClock)).expect_err("plain HTTP is refused");
    assert!(refused.to_string().contains("https://"), "{refused}");
}

#[tokio::test]
async fn the_access_token_is_fetched_again_shortly_before_it_expires() {
    let setup = setup(FakeFcmConfig::default()).await;
    let clock = Arc::new(ManualClock(Mutex::new(SystemTime::now())));
    let client = setup.client_for(&setup.fake.account.json, clock.clone());
    assert_eq!(client.send("t", &chat_message()).await, Outcome::Delivered);
    *clock.0.lock().unwrap() += Duration::from_secs(58 * 60);
    assert_eq!(client.send("t", &chat_message()).await, Outcome::Delivered);
    assert_eq!(setup.fake.token_fetches(), 1, "still valid at 58 minutes");
    *clock.0.lock().unwrap() += Duration::from_secs(90);
    assert_eq!(client.send("t", &chat_message()).await, Outcome::Delivered);
    assert_eq!(setup.fake.token_fetches(), 2, "renewed within the last minute of its hour");
}

#[tokio::test]
async fn an_unauthenticated_answer_renews_the_access_token_once_and_resends() {
    let setup = setup(FakeFcmConfig::default()).await;
    let client = setup.client();
    assert_eq!(client.send("t", &chat_message()).await, Outcome::Delivered);
    setup.fake.revoke_access_tokens();
    assert_eq!(client.send("t", &chat_message()).await, Outcome::Delivered);
    assert_eq!(setup.fake.token_fetches(), 2);
    let statuses: Vec<u16> = setup.fake.messages().iter().map(|m| m.status).collect();
    assert_eq!(statuses, vec![200, 401, 200]);
}

#[tokio::test]
async fn a_service_account_the_token_endpoint_refuses_is_a_credential_error() {
    let setup = setup(FakeFcmConfig::default()).await;
    let impostor = TestServiceAccount::generate("imkit-demo", &setup.fake.account.token_uri);
    let client = setup.client_for(&impostor.json, Arc::new(SystemClock));
    assert_eq!(
        client.send("t", &chat_message()).await,
        Outcome::AppRejected { reason: Reason::provider_with("OAuth", "invalid_grant") }
    );
    assert!(setup.fake.messages().is_empty());
}

#[tokio::test]
async fn each_error_code_of_fcm_becomes_its_outcome() {
    let setup = setup(FakeFcmConfig::default()).await;
    let client = setup.client();
    let cases = [
        (
            FcmFailure::Unregistered,
            Outcome::InvalidToken { reason: Reason::provider("UNREGISTERED"), invalid_since_ms: None },
        ),
        (
            FcmFailure::InvalidToken,
            Outcome::InvalidToken { reason: Reason::provider("INVALID_ARGUMENT"), invalid_since_ms: None },
        ),
        (
            FcmFailure::SenderIdMismatch,
            Outcome::InvalidToken { reason: Reason::provider("SENDER_ID_MISMATCH"), invalid_since_ms: None },
        ),
        (
            FcmFailure::QuotaExceeded(Some(30)),
            Outcome::Retry { reason: Reason::provider("QUOTA_EXCEEDED"), after: Some(Duration::from_secs(30)) },
        ),
        (
            FcmFailure::Unavailable(Some(5)),
            Outcome::Retry { reason: Reason::provider("UNAVAILABLE"), after: Some(Duration::from_secs(5)) },
        ),
        (FcmFailure::Internal, Outcome::Retry { reason: Reason::provider("INTERNAL"), after: None }),
        (FcmFailure::ThirdPartyAuthError, Outcome::AppRejected { reason: Reason::provider("THIRD_PARTY_AUTH_ERROR") }),
    ];
    for (index, (failure, expected)) in cases.into_iter().enumerate() {
        let token = format!("failing-token-{index}");
        setup.fake.fail_next(&token, [failure.clone()]);
        assert_eq!(client.send(&token, &chat_message()).await, expected, "for {failure:?}");
    }
}

#[tokio::test]
async fn a_payload_fcm_refuses_is_a_rejection_and_the_token_is_kept() {
    let setup = setup(FakeFcmConfig::default()).await;
    let client = setup.client();
    let mut message = chat_message();
    message["data"]["badge"] = json!(3);
    let outcome = client.send("t", &message).await;
    assert!(
        matches!(&outcome, Outcome::Rejected { reason } if reason.code() == "INVALID_ARGUMENT"),
        "data values must be strings: {outcome:?}"
    );
}

#[tokio::test]
async fn an_outage_ends_in_delivery_when_the_caller_retries() {
    let setup = setup(FakeFcmConfig::default()).await;
    let client = setup.client();
    setup.fake.fail_next("t", [FcmFailure::Unavailable(None), FcmFailure::Unavailable(None)]);
    assert!(matches!(client.send("t", &chat_message()).await, Outcome::Retry { .. }));
    assert!(matches!(client.send("t", &chat_message()).await, Outcome::Retry { .. }));
    assert_eq!(client.send("t", &chat_message()).await, Outcome::Delivered);
}
