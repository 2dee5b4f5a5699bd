//! `/readyz` when the store does not answer: a store double whose every call
//! fails as an unreachable database does.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use pushgate_api::auth::ApiKeyRing;
use pushgate_api::metrics::Metrics;
use pushgate_api::{AppState, RouterOptions, router};
use pushgate_domain::PushToken;
use pushgate_domain::{AppId, BadgeSource, ClientId, DeviceId, DeviceType, Experiment, ExperimentId, PushId, RoomId};
use pushgate_store::{
    Accepted, BadgeView, ClaimedDelivery, ClientPrefs, ClientStore, DeliveryRef, DeliveryUpdate, Device, DeviceStore,
    ExperimentStore, KeyStore, NewDevice, NewPush, PushView, QueueStore, SourceChange, Store, StoreError, StoredApiKey,
    UpsertOutcome, VariantCounts,
};
use std::sync::Arc;
use tower::ServiceExt as _;

#[derive(Debug)]
struct UnreachableStore;

fn unreachable() -> StoreError {
    StoreError::Unavailable(std::io::Error::new(std::io::ErrorKind::TimedOut, "the pool timed out").into())
}

#[async_trait]
impl Store for UnreachableStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Err(unreachable())
    }
}

#[async_trait]
impl DeviceStore for UnreachableStore {
    async fn upsert_device(&self, _: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        Err(unreachable())
    }

    async fn remove_device(&self, _: &AppId, _: DeviceType, _: &DeviceId, _: &ClientId) -> Result<u64, StoreError> {
        Err(unreachable())
    }

    async fn app_devices(
        &self,
        _: &AppId,
        _: Option<(pushgate_domain::DeviceType, pushgate_domain::DeviceId)>,
        _: u32,
    ) -> Result<Vec<Device>, StoreError> {
        Err(unreachable())
    }

    async fn client_devices(&self, _: &AppId, _: &ClientId) -> Result<Vec<Device>, StoreError> {
        Err(unreachable())
    }

    async fn prune_device(
        &self,
        _: &AppId,
        _: DeviceType,
        _: &DeviceId,
        _: &PushToken,
        _: Option<i64>,
    ) -> Result<bool, StoreError> {
        Err(unreachable())
    }
}

#[async_trait]
impl KeyStore for UnreachableStore {
    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        Err(unreachable())
    }

    async fn insert_api_key(&self, _: &StoredApiKey) -> Result<bool, StoreError> {
        Err(unreachable())
    }

    async fn create_api_key(&self, _: &StoredApiKey) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn revoke_api_key(&self, _: &[u8; 32]) -> Result<bool, StoreError> {
        Err(unreachable())
    }
}

#[async_trait]
impl QueueStore for UnreachableStore {
    async fn accept_push(&self, _: &NewPush) -> Result<Accepted, StoreError> {
        Err(unreachable())
    }

    async fn fan_out_step(&self) -> Result<bool, StoreError> {
        Err(unreachable())
    }

    async fn claim_due_deliveries(&self, _: i64, _: u32, _: i64) -> Result<Vec<ClaimedDelivery>, StoreError> {
        Err(unreachable())
    }

    async fn record_attempt(&self, _: DeliveryRef, _: &DeliveryUpdate) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn renew_leases(&self, _: &[DeliveryRef], _: i64) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn release_all_leases(&self) -> Result<u64, StoreError> {
        Err(unreachable())
    }

    async fn release_leases(&self, _: &[pushgate_store::DeliveryRef]) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn expedite_retries(
        &self,
        _: &AppId,
        _: &[pushgate_domain::DeviceType],
        _: i64,
        _: i64,
    ) -> Result<u64, StoreError> {
        Err(unreachable())
    }

    async fn queue_depth(&self) -> Result<pushgate_store::QueueDepth, StoreError> {
        Err(unreachable())
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        Err(unreachable())
    }

    async fn push_view(&self, _: &AppId, _: &PushId) -> Result<Option<PushView>, StoreError> {
        Err(unreachable())
    }

    async fn forget_before(&self, _: i64, _: u32) -> Result<(u64, u64), StoreError> {
        Err(unreachable())
    }
}

#[async_trait]
impl ClientStore for UnreachableStore {
    async fn badge(&self, _: &AppId, _: &ClientId, _: bool, _: i64) -> Result<BadgeView, StoreError> {
        Err(unreachable())
    }

    async fn mark_room_read(&self, _: &AppId, _: &ClientId, _: &RoomId, _: i64) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn change_badge_source(
        &self,
        _: &AppId,
        _: &ClientId,
        _: &BadgeSource,
        _: SourceChange,
        _: i64,
    ) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn set_room_pref(
        &self,
        _: &AppId,
        _: &ClientId,
        _: &RoomId,
        _: pushgate_domain::RoomNotify,
        _: Option<i64>,
        _: i64,
    ) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn set_presence(&self, _: &AppId, _: &ClientId, _: Option<i64>) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn client_prefs(&self, _: &AppId, _: &ClientId) -> Result<ClientPrefs, StoreError> {
        Err(unreachable())
    }

    async fn set_client_prefs(&self, _: &AppId, _: &ClientId, _: &ClientPrefs, _: i64) -> Result<(), StoreError> {
        Err(unreachable())
    }
}

#[async_trait]
impl ExperimentStore for UnreachableStore {
    async fn put_experiment(&self, _: &AppId, _: &ExperimentId, _: &Experiment, _: i64) -> Result<(), StoreError> {
        Err(unreachable())
    }

    async fn experiments(&self, _: &AppId) -> Result<Vec<(ExperimentId, Experiment)>, StoreError> {
        Err(unreachable())
    }

    async fn record_open(&self, _: &AppId, _: &PushId, _: &ClientId, _: i64) -> Result<bool, StoreError> {
        Err(unreachable())
    }

    async fn experiment_stats(&self, _: &AppId, _: &ExperimentId) -> Result<Vec<VariantCounts>, StoreError> {
        Err(unreachable())
    }
}

const KEY: &str = "a-key-for-the-sample-app";
const CALLBACK_SECRET: &str = "a-callback-secret-for-the-app";

/// A delivery side that is running (or not) and has nothing paused.
#[derive(Debug)]
struct Worker {
    running: bool,
}

#[async_trait::async_trait]
impl pushgate_api::DeliveryStatus for Worker {
    fn wake(&self) {}

    fn is_running(&self) -> bool {
        self.running
    }

    fn paused_providers(&self) -> Vec<pushgate_api::PausedProvider> {
        Vec::new()
    }

    async fn resume(&self, _: &AppId, _: pushgate_domain::ProviderKind) -> Result<bool, StoreError> {
        Ok(false)
    }
}

fn state() -> AppState {
    // The worker is taken to run, so these tests see the store's answer.
    state_with_worker(true)
}

fn state_with_worker(running: bool) -> AppState {
    let app_id = AppId::parse("SampleApp").expect("app id");
    let keys = ApiKeyRing::default();
    keys.insert(app_id.clone(), pushgate_api::auth::api_key_digest(KEY));
    let settings = pushgate_api::auth::AppSettings {
        id: app_id.clone(),
        default_environment: pushgate_domain::Environment::Production,
        max_age_ms: 86_400_000,
        origin: pushgate_api::origin::OriginCheck::new(Some(CALLBACK_SECRET.as_bytes().to_vec()), Vec::new(), 300),
        online_policy: Default::default(),
        count_muted_rooms: true,
        coalescing_window_ms: 0,
        webpush_endpoints: Default::default(),
        vapid_public_key: None,
        client_auth: None,
        inbound: Default::default(),
        critical_alerts: false,
        apns_auth: None,
        channels: None,
    };
    AppState {
        store: Arc::new(UnreachableStore),
        apps: Arc::new([(app_id, Arc::new(settings))].into_iter().collect()),
        keys: Arc::new(keys),
        metrics: Arc::new(Metrics::default()),
        delivery: Arc::new(Worker { running }),
        console: Arc::default(),
        certificates: Arc::default(),
        reload: None,
    }
}

async fn read(response: axum::response::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

async fn get(path: &str) -> (u16, serde_json::Value) {
    let response = router(state(), &RouterOptions { max_body_bytes: 1024, operations_only: false })
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    read(response).await
}

#[tokio::test]
async fn readiness_is_503_unavailable_when_the_store_does_not_answer() {
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        serde_json::json!({ "RC": 503, "RM": "Service Unavailable", "error": { "code": "UNAVAILABLE", "message": "the store does not answer" } })
    );
}

#[tokio::test]
async fn health_does_not_depend_on_the_store() {
    assert_eq!(get("/healthz").await.0, 200);
}

#[tokio::test]
async fn a_push_the_store_cannot_take_is_503_unavailable_not_accepted() {
    let body = serde_json::json!({ "clients": ["user001"], "payload": { "alert": "hi" } }).to_string();
    let request = Request::post("/push/push2clients")
        .header("IM-API-KEY", KEY)
        .header("Content-Type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = router(state(), &RouterOptions { max_body_bytes: 4096, operations_only: false })
        .oneshot(request)
        .await
        .expect("infallible");
    let (status, body) = read(response).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "UNAVAILABLE");
    assert!(body.get("result").is_none());
}

#[tokio::test]
async fn a_callback_the_store_cannot_take_is_503_unavailable_so_imkit_can_tell() {
    let body = serde_json::json!({
        "_id": "m1", "appID": "SampleApp", "room": "r", "message": "hi", "pushToClients": ["aaa"]
    });
    let request = Request::post(format!("/imkit/push/v2?secret={CALLBACK_SECRET}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router(state(), &RouterOptions { max_body_bytes: 4096, operations_only: false })
        .oneshot(request)
        .await
        .expect("infallible");
    let (status, body) = read(response).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("UNAVAILABLE")));
}

#[tokio::test]
async fn readiness_is_503_when_the_delivery_worker_is_not_running() {
    let response = router(state_with_worker(false), &RouterOptions { max_body_bytes: 1024, operations_only: false })
        .oneshot(Request::get("/readyz").body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let (status, body) = read(response).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["message"], "the delivery worker is not running");
}
