//! The worker driven deterministically: a real SQLite store, the fake APNs
//! over HTTP/2 and TLS, a clock the test moves, and `run_pending` instead of
//! a background loop.
#![expect(clippy::unwrap_used, reason = "test fixtures: a broken one should panic at once")]

use pushgate_delivery::{ApnsProviders, AppProviders, DeliveryConfig, DeliveryHandle, DeliveryMetrics, Worker};
use pushgate_domain::{
    AppId, ChatStyle, ClientId, CustomPush, DeviceId, DeviceType, Environment, ProviderKind, PushId, PushRequest,
    PushToken,
};
use pushgate_providers::apns::{ApnsAuth, ApnsClient, ApnsClientConfig, TokenSigner};
use pushgate_providers::{Clock, ManualClock, SystemClock};
use pushgate_store::{DeliveryStatus, NewDevice, NewPush, SqliteStore, Store};
use pushgate_testkit::{ApnsFailure, Es256Key, FakeApns, FakeApnsConfig, TestCa};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

struct Setup {
    apns: FakeApns,
    store: Arc<dyn Store>,
    worker: Arc<Worker>,
    handle: Arc<DeliveryHandle>,
    clock: Arc<ManualClock>,
    app: AppId,
    _directory: tempfile::TempDir,
}

async fn setup() -> Setup {
    let ca = TestCa::generate();
    let key = Es256Key::generate();
    let apns = FakeApns::start(&ca, FakeApnsConfig::token(&key)).await;
    // Provider tokens are signed on real time: APNs checks their age.
    let signer = Arc::new(
        TokenSigner::new(key.private_pem.as_bytes(), "ABC123DEFG", "DEF123GHIJ", Arc::new(SystemClock)).unwrap(),
    );
    let client = || {
        let mut config = ApnsClientConfig::new(apns.endpoint().parse().unwrap(), ApnsAuth::Token(Arc::clone(&signer)));
        config.extra_ca_pem = Some(ca.ca_pem().into_bytes());
        Arc::new(ApnsClient::new(config).unwrap())
    };
    let app = AppId::parse("SampleApp").unwrap();
    let providers = AppProviders::new(10, ChatStyle::default()).with_apns(ApnsProviders {
        production: client(),
        sandbox: client(),
        topic: "io.imkit.app".into(),
        default_environment: Environment::Production,
        rate: None,
    });
    let directory = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&format!("sqlite://{}", directory.path().join("pushgate.db").display())).await.unwrap(),
    );
    let clock = Arc::new(ManualClock::default());
    let handle = Arc::new(DeliveryHandle::default());
    let settings =
        DeliveryConfig { retry_base_ms: 1000, retry_max_ms: 1000, pause_base_ms: 30_000, ..Default::default() };
    let worker = Arc::new(Worker::new(
        Arc::clone(&store),
        HashMap::from([(app.clone(), providers)]),
        settings,
        Arc::clone(&handle),
        DeliveryMetrics::register(&mut prometheus_client::registry::Registry::default()),
        Arc::clone(&clock) as Arc<dyn Clock>,
    ));
    store
        .upsert_device(&NewDevice {
            app_id: app.clone(),
            device_type: DeviceType::Ios,
            device_id: DeviceId::parse("iphone-1").unwrap(),
            client_id: ClientId::parse("user001").unwrap(),
            token: PushToken::parse(DeviceType::Ios, TOKEN).unwrap(),
            environment: None,
            locale: None,
            timezone: None,
            push_key: None,
            now_ms: clock.unix_ms(),
        })
        .await
        .unwrap();
    Setup { apns, store, worker, handle, clock, app, _directory: directory }
}

impl Setup {
    async fn push(&self) -> PushId {
        let now = self.clock.unix_ms();
        let request = PushRequest::Custom(CustomPush {
            title: Some("T".into()),
            body: Some("B".into()),
            ..CustomPush::default()
        });
        let clients = vec![ClientId::parse("user001").unwrap()];
        let push = NewPush::new(
            PushId::from_uuid(uuid::Uuid::now_v7()),
            self.app.clone(),
            request,
            clients,
            now,
            now + 3_600_000,
        );
        self.store.accept_push(&push).await.unwrap();
        push.push_id
    }

    async fn status(&self, push_id: &PushId) -> DeliveryStatus {
        self.store.push_view(&self.app, push_id).await.unwrap().unwrap().deliveries[0].status
    }
}

#[tokio::test]
async fn a_retry_waits_for_its_time_on_the_workers_clock_then_delivers() {
    let setup = setup().await;
    setup.apns.fail_next(TOKEN, [ApnsFailure::Status(503, "ServiceUnavailable")]);
    let push_id = setup.push().await;

    assert_eq!(setup.worker.run_pending().await, 1);
    assert_eq!(setup.apns.requests().len(), 1);
    assert_eq!(setup.status(&push_id).await, DeliveryStatus::Retrying);

    assert_eq!(setup.worker.run_pending().await, 0, "the retry is not due on the worker's clock yet");
    assert_eq!(setup.apns.requests().len(), 1);

    setup.clock.advance(Duration::from_millis(1001));
    assert_eq!(setup.worker.run_pending().await, 1);
    assert_eq!(setup.apns.requests().iter().map(|r| r.status).collect::<Vec<_>>(), vec![503, 200]);
    assert_eq!(setup.status(&push_id).await, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn a_refused_credential_pauses_the_apps_provider_until_a_probe_gets_through() {
    let setup = setup().await;
    setup.apns.fail_next(TOKEN, [ApnsFailure::Status(403, "InvalidProviderToken")]);
    let first = setup.push().await;
    assert_eq!(setup.worker.run_pending().await, 1);
    assert_eq!(setup.status(&first).await, DeliveryStatus::Retrying);
    let paused = setup.handle.pauses.snapshot();
    assert_eq!(paused.len(), 1);
    assert_eq!((paused[0].provider, paused[0].reason.as_str()), (ProviderKind::Apns, "InvalidProviderToken"));

    // While paused, nothing more reaches APNs, and no attempt is spent.
    let second = setup.push().await;
    assert_eq!(setup.worker.run_pending().await, 1);
    assert_eq!(setup.apns.requests().len(), 1);
    let held = setup.store.push_view(&setup.app, &second).await.unwrap().unwrap().deliveries[0].clone();
    assert_eq!((held.status, held.attempts), (DeliveryStatus::Retrying, 0));

    // After the pause exactly one probe goes (the other delivery waits for
    // its answer); the probe's answer resumes the provider, the other follows.
    setup.clock.advance(Duration::from_secs(31));
    assert_eq!(setup.worker.run_pending().await, 2);
    assert_eq!(setup.apns.requests().len(), 2, "one probe");
    assert!(setup.handle.pauses.snapshot().is_empty(), "the probe's answer resumed APNs for the app");
    let mut statuses = vec![setup.status(&first).await, setup.status(&second).await];
    statuses.sort_by_key(|status| status.as_str());
    assert_eq!(statuses, vec![DeliveryStatus::Delivered, DeliveryStatus::Retrying]);
    setup.clock.advance(Duration::from_secs(1));
    assert_eq!(setup.worker.run_pending().await, 1);
    assert_eq!(setup.status(&first).await, DeliveryStatus::Delivered);
    assert_eq!(setup.status(&second).await, DeliveryStatus::Delivered);
}
