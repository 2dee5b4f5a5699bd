//! The APNs client against the fake APNs: real HTTP/2, TLS and ES256 JWTs.
#![expect(clippy::unwrap_used, reason = "test helpers: a broken fixture should panic at once")]

use pushgate_domain::Reason;
use pushgate_providers::apns::{ApnsAuth, ApnsClient, ApnsClientConfig, Notification, PushType, TokenSigner, apns_id};
use pushgate_providers::{Clock, Outcome};
use pushgate_testkit::{ApnsFailure, Es256Key, FakeApns, FakeApnsConfig, TestCa};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "io.imkit.app";
const WAIT: Duration = Duration::from_secs(20);

/// A clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    fn starting_minutes_ago(minutes: u64) -> Arc<Self> {
        Arc::new(Self(Mutex::new(SystemTime::now() - Duration::from_secs(minutes * 60))))
    }
    fn advance_minutes(&self, minutes: u64) {
        *self.0.lock().unwrap() += Duration::from_secs(minutes * 60);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

struct Setup {
    fake: FakeApns,
    ca: TestCa,
    key: Es256Key,
}

async fn setup(max_concurrent_streams: u32) -> Setup {
    let ca = TestCa::generate();
    let key = Es256Key::generate();
    let config = FakeApnsConfig {
        topic: TOPIC.to_owned(),
        token_auth: Some((KEY_ID.to_owned(), TEAM_ID.to_owned(), key.public_pem.clone())),
        max_concurrent_streams,
    };
    let fake = FakeApns::start(&ca, config).await;
    Setup { fake, ca, key }
}

impl Setup {
    fn client_with(&self, clock: Arc<dyn Clock>, adjust: impl FnOnce(&mut ApnsClientConfig)) -> ApnsClient {
        let signer = TokenSigner::new(self.key.private_pem.as_bytes(), KEY_ID, TEAM_ID, clock).expect("signer");
        let mut config =
            ApnsClientConfig::new(self.fake.endpoint().parse().unwrap(), ApnsAuth::Token(Arc::new(signer)));
        config.extra_ca_pem = Some(self.ca.ca_pem().into_bytes());
        adjust(&mut config);
        ApnsClient::new(config).expect("client")
    }

    fn client(&self) -> ApnsClient {
        self.client_with(Arc::new(pushgate_providers::SystemClock), |_| {})
    }
}

fn token(n: u32) -> String {
    format!("{n:064x}")
}

/// Sends to every device at once and answers the outcomes in order.
async fn send_all(client: &Arc<ApnsClient>, devices: Vec<String>) -> Vec<Outcome> {
    let sends: Vec<_> = devices
        .into_iter()
        .map(|device| {
            let client = Arc::clone(client);
            tokio::spawn(async move { client.send(&alert(&device)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for send in sends {
        outcomes.push(send.await.unwrap());
    }
    outcomes
}

const PAYLOAD: &[u8] =
    br#"{"aps":{"alert":{"loc-key":"im_loc_text","loc-args":["Alice","Hello"]},"badge":3,"sound":"default"}}"#;

fn alert(device_token: &str) -> Notification<'_> {
    Notification {
        device_token,
        push_type: PushType::Alert,
        topic: TOPIC,
        apns_id: apns_id("push-1", device_token),
        expiration: Some(1_900_000_000),
        priority: None,
        collapse_id: Some("room-1"),
        payload: PAYLOAD,
    }
}

#[tokio::test]
async fn a_notification_reaches_apns_with_every_header_and_a_valid_token() {
    let setup = setup(100).await;
    let client = setup.client();
    let device = token(1);
    assert_eq!(client.send(&alert(&device)).await, Outcome::Delivered);
    let recorded = setup.fake.delivered();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.device_token, device);
    assert_eq!(request.headers["apns-push-type"], "alert");
    assert_eq!(request.headers["apns-topic"], TOPIC);
    assert_eq!(request.headers["apns-priority"], "10");
    assert_eq!(request.headers["apns-expiration"], "1900000000");
    assert_eq!(request.headers["apns-collapse-id"], "room-1");
    assert_eq!(request.headers["apns-id"], apns_id("push-1", &device).to_string());
    assert!(request.headers["authorization"].starts_with("bearer "));
    assert_eq!(request.payload["aps"]["badge"], 3);
    assert!(request.jwt_iat.is_some(), "the fake verified the ES256 signature");
}

#[tokio::test]
async fn a_voip_push_goes_to_the_voip_topic() {
    let setup = setup(100).await;
    let client = setup.client();
    let device = token(2);
    let mut voip = alert(&device);
    voip.push_type = PushType::Voip;
    voip.collapse_id = None;
    assert_eq!(client.send(&voip).await, Outcome::Delivered);
    assert_eq!(setup.fake.delivered()[0].headers["apns-topic"], "io.imkit.app.voip");
}

#[tokio::test]
async fn each_answer_class_of_apns_becomes_its_outcome() {
    let setup = setup(100).await;
    let client = setup.client();
    let cases: Vec<(ApnsFailure, Outcome)> = vec![
        (
            ApnsFailure::Status(400, "BadDeviceToken"),
            Outcome::InvalidToken { reason: Reason::provider("BadDeviceToken"), invalid_since_ms: None },
        ),
        (
            ApnsFailure::Unregistered(1_700_000_000_123),
            Outcome::InvalidToken {
                reason: Reason::provider("Unregistered"),
                invalid_since_ms: Some(1_700_000_000_123),
            },
        ),
        (
            ApnsFailure::Status(400, "TopicDisallowed"),
            Outcome::AppRejected { reason: Reason::provider("TopicDisallowed") },
        ),
        (
            ApnsFailure::Status(403, "InvalidProviderToken"),
            Outcome::AppRejected { reason: Reason::provider("InvalidProviderToken") },
        ),
        (
            ApnsFailure::Status(400, "BadExpirationDate"),
            Outcome::Rejected { reason: Reason::provider("BadExpirationDate") },
        ),
        (
            ApnsFailure::Status(413, "PayloadTooLarge"),
            Outcome::Rejected { reason: Reason::provider("PayloadTooLarge") },
        ),
        (
            ApnsFailure::TooManyRequests(Some(9)),
            Outcome::Retry { reason: Reason::provider("TooManyRequests"), after: Some(Duration::from_secs(9)) },
        ),
        (
            ApnsFailure::Status(500, "InternalServerError"),
            Outcome::Retry { reason: Reason::provider("InternalServerError"), after: None },
        ),
        (
            ApnsFailure::Status(503, "ServiceUnavailable"),
            Outcome::Retry { reason: Reason::provider("ServiceUnavailable"), after: None },
        ),
    ];
    for (index, (failure, expected)) in cases.into_iter().enumerate() {
        let device = token(100 + u32::try_from(index).unwrap());
        setup.fake.fail_next(&device, [failure.clone()]);
        assert_eq!(client.send(&alert(&device)).await, expected, "for {failure:?}");
    }
}

#[tokio::test]
async fn a_payload_over_the_limit_is_refused_without_being_sent() {
    let setup = setup(100).await;
    let client = setup.client();
    let device = token(3);
    let big = format!(r#"{{"aps":{{"alert":"{}"}}}}"#, "x".repeat(4100));
    let mut notification = alert(&device);
    notification.payload = big.as_bytes();
    assert_eq!(client.send(&notification).await, Outcome::Rejected { reason: Reason::provider("PayloadTooLarge") });
    assert!(setup.fake.requests().is_empty());
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused_as_a_credential_error() {
    let setup = setup(100).await;
    let other_key = Es256Key::generate();
    let signer =
        TokenSigner::new(other_key.private_pem.as_bytes(), KEY_ID, TEAM_ID, Arc::new(pushgate_providers::SystemClock))
            .unwrap();
    let mut config = ApnsClientConfig::new(setup.fake.endpoint().parse().unwrap(), ApnsAuth::Token(Arc::new(signer)));
    config.extra_ca_pem = Some(setup.ca.ca_pem().into_bytes());
    let client = ApnsClient::new(config).unwrap();
    assert_eq!(
        client.send(&alert(&token(4))).await,
        Outcome::AppRejected { reason: Reason::provider("InvalidProviderToken") }
    );
}

#[tokio::test]
async fn the_provider_token_is_reused_then_renewed_after_fifty_minutes() {
    let setup = setup(100).await;
    let clock = ManualClock::starting_minutes_ago(55);
    let client = setup.client_with(clock.clone(), |_| {});
    for n in 0..3 {
        assert_eq!(client.send(&alert(&token(10 + n))).await, Outcome::Delivered);
    }
    clock.advance_minutes(51);
    assert_eq!(client.send(&alert(&token(20))).await, Outcome::Delivered);
    let tokens: Vec<_> = setup.fake.delivered().into_iter().map(|r| (r.jwt.unwrap(), r.jwt_iat.unwrap())).collect();
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[1], tokens[2]);
    assert_ne!(tokens[2].0, tokens[3].0, "a new token after 50 minutes");
    assert_eq!(tokens[3].1 - tokens[2].1, 51 * 60);
}

#[tokio::test]
async fn an_expired_provider_token_is_replaced_and_the_push_resent() {
    let setup = setup(100).await;
    let clock = ManualClock::starting_minutes_ago(30);
    let client = setup.client_with(clock.clone(), |_| {});
    assert_eq!(client.send(&alert(&token(30))).await, Outcome::Delivered);
    let first_iat = setup.fake.delivered()[0].jwt_iat.unwrap();
    clock.advance_minutes(25);
    setup.fake.reject_tokens_issued_before(first_iat + 1);
    assert_eq!(client.send(&alert(&token(31))).await, Outcome::Delivered);
    let requests = setup.fake.requests();
    assert_eq!(requests.len(), 3, "the refused send and its resend");
    assert_eq!(requests[1].reason.as_deref(), Some("ExpiredProviderToken"));
    assert_eq!(requests[2].jwt_iat, Some(first_iat + 25 * 60));
}

#[tokio::test]
async fn an_expired_provider_token_younger_than_twenty_minutes_is_not_replaced() {
    let setup = setup(100).await;
    let clock = ManualClock::starting_minutes_ago(30);
    let client = setup.client_with(clock.clone(), |_| {});
    assert_eq!(client.send(&alert(&token(40))).await, Outcome::Delivered);
    let first_iat = setup.fake.delivered()[0].jwt_iat.unwrap();
    clock.advance_minutes(5);
    setup.fake.reject_tokens_issued_before(first_iat + 1);
    let outcome = client.send(&alert(&token(41))).await;
    assert_eq!(
        outcome,
        Outcome::Retry { reason: Reason::provider("ExpiredProviderToken"), after: Some(Duration::from_secs(15 * 60)) }
    );
    assert!(setup.fake.requests().iter().all(|r| r.jwt_iat == Some(first_iat) || r.jwt_iat.is_none()));
    assert!(setup.fake.requests().iter().all(|r| r.reason.as_deref() != Some("TooManyProviderTokenUpdates")));
}

#[tokio::test]
async fn a_request_refused_by_goaway_is_resent_not_failed() {
    let setup = setup(100).await;
    let client = setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| config.connections = 1);
    let device = token(50);
    assert_eq!(client.send(&alert(&token(49))).await, Outcome::Delivered);
    setup.fake.fail_next(&device, [ApnsFailure::GoAway]);
    assert_eq!(client.send(&alert(&device)).await, Outcome::Delivered);
    // Whether the resend rides the old connection (h2's graceful GOAWAY first
    // announces the highest stream id, so a quick resend is still accepted)
    // or a new one is a race of the protocol; that it is delivered once, with
    // the same apns-id, is not.
    let for_device: Vec<_> = setup.fake.delivered().into_iter().filter(|r| r.device_token == device).collect();
    assert_eq!(for_device.len(), 1);
    assert_eq!(for_device[0].headers["apns-id"], apns_id("push-1", &device).to_string());
    assert!(setup.fake.connections() <= 2);
    // And the client goes on sending once the old connection has gone.
    assert_eq!(client.send(&alert(&token(51))).await, Outcome::Delivered);
}

#[tokio::test]
async fn requests_caught_on_a_lost_connection_are_resent_not_failed() {
    let setup = setup(100).await;
    let client =
        Arc::new(setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| config.connections = 1));
    // Slow answers keep several requests in flight when the connection drops.
    let devices: Vec<String> = (60..80).map(token).collect();
    for device in &devices[1..] {
        setup.fake.fail_next(device, [ApnsFailure::Delay(Duration::from_millis(200))]);
    }
    setup.fake.fail_next(&devices[0], [ApnsFailure::DropConnection]);
    assert!(send_all(&client, devices.clone()).await.iter().all(|outcome| *outcome == Outcome::Delivered));
    let mut delivered: Vec<_> = setup.fake.delivered().into_iter().map(|r| r.device_token).collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), devices.len(), "every device reached");
    assert_eq!(setup.fake.connections(), 2, "the cut-off requests went out again on a new connection");
    assert_eq!(client.connections_opened(), 2);
}

#[tokio::test]
async fn an_idle_timeout_answer_reconnects_and_resends() {
    let setup = setup(100).await;
    let client = setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| config.connections = 1);
    let device = token(90);
    setup.fake.fail_next(&device, [ApnsFailure::Status(400, "IdleTimeout")]);
    assert_eq!(client.send(&alert(&device)).await, Outcome::Delivered);
    assert_eq!(setup.fake.connections(), 2);
}

#[tokio::test]
async fn after_a_503_the_next_send_uses_a_new_connection() {
    let setup = setup(100).await;
    let client = setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| config.connections = 1);
    let device = token(91);
    setup.fake.fail_next(&device, [ApnsFailure::Status(503, "Shutdown"), ApnsFailure::Status(503, "Shutdown")]);
    assert!(matches!(client.send(&alert(&device)).await, Outcome::Retry { .. }));
    assert!(matches!(client.send(&alert(&device)).await, Outcome::Retry { .. }));
    assert_eq!(client.send(&alert(&device)).await, Outcome::Delivered, "delivered once the outage ends");
    assert_eq!(setup.fake.connections(), 3);
}

#[tokio::test]
async fn the_server_stream_limit_queues_requests_instead_of_failing_them() {
    let setup = setup(2).await;
    let client =
        Arc::new(setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| config.connections = 1));
    let devices: Vec<String> = (200..220).map(token).collect();
    for device in &devices {
        setup.fake.fail_next(device, [ApnsFailure::Delay(Duration::from_millis(30))]);
    }
    assert!(send_all(&client, devices.clone()).await.iter().all(|outcome| *outcome == Outcome::Delivered));
    assert_eq!(setup.fake.delivered().len(), 20);
    assert_eq!(setup.fake.connections(), 1);
    assert!(setup.fake.peak_concurrent_streams() <= 2, "peak {}", setup.fake.peak_concurrent_streams());
    assert_eq!(setup.fake.peak_concurrent_streams(), 2, "both streams were used");
}

#[tokio::test]
async fn several_connections_share_the_load() {
    let setup = setup(100).await;
    let client =
        Arc::new(setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| config.connections = 3));
    assert!(
        send_all(&client, (300..330).map(token).collect()).await.iter().all(|outcome| *outcome == Outcome::Delivered)
    );
    setup.fake.wait_for_delivered(30, WAIT).await;
    assert_eq!(setup.fake.connections(), 3);
    let mut used: Vec<u64> = setup.fake.delivered().iter().map(|r| r.connection).collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_slow_answer_becomes_a_retry_after_the_request_timeout() {
    let setup = setup(100).await;
    let client = setup.client_with(Arc::new(pushgate_providers::SystemClock), |config| {
        config.request_timeout = Duration::from_millis(300);
    });
    let device = token(92);
    setup.fake.fail_next(&device, [ApnsFailure::Delay(Duration::from_secs(5))]);
    assert_eq!(
        client.send(&alert(&device)).await,
        Outcome::Retry { reason: Reason::Unreachable(pushgate_domain::Unreachable::Timeout), after: None }
    );
}

#[tokio::test]
async fn certificate_authentication_sends_no_bearer_token() {
    let ca = TestCa::generate();
    let fake =
        FakeApns::start(&ca, FakeApnsConfig { topic: TOPIC.into(), token_auth: None, max_concurrent_streams: 100 })
            .await;
    let (chain_pem, key_pem) = ca.client_certificate("io.imkit.app push certificate");
    let mut config = ApnsClientConfig::new(
        fake.endpoint().parse().unwrap(),
        ApnsAuth::Certificate { chain_pem: chain_pem.into_bytes(), key_pem: key_pem.into_bytes() },
    );
    config.extra_ca_pem = Some(ca.ca_pem().into_bytes());
    let client = ApnsClient::new(config).unwrap();
    assert_eq!(client.send(&alert(&token(93))).await, Outcome::Delivered);
    assert!(!fake.delivered()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn without_the_client_certificate_the_connection_fails_and_the_send_is_a_retry() {
    let ca = TestCa::generate();
    let fake =
        FakeApns::start(&ca, FakeApnsConfig { topic: TOPIC.into(), token_auth: None, max_concurrent_streams: 100 })
            .await;
    let key = Es256Key::generate();
    let signer =
        TokenSigner::new(key.private_pem.as_bytes(), KEY_ID, TEAM_ID, Arc::new(pushgate_providers::SystemClock))
            .unwrap();
    let mut config = ApnsClientConfig::new(fake.endpoint().parse().unwrap(), ApnsAuth::Token(Arc::new(signer)));
    config.extra_ca_pem = Some(ca.ca_pem().into_bytes());
    let client = ApnsClient::new(config).unwrap();
    assert!(matches!(client.send(&alert(&token(94))).await, Outcome::Retry { .. }));
    assert!(fake.requests().is_empty());
}
