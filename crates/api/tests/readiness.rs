//! `/readyz` when the store does not answer: a store double whose every call
//! fails as an unreachable database does.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use pushgate_api::auth::ApiKeyRing;
use pushgate_api::metrics::Metrics;
use pushgate_api::{AppState, RouterOptions, router};
use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType};
use pushgate_store::{Device, NewDevice, Store, StoreError, StoredApiKey, UpsertOutcome};
use std::sync::Arc;
use tower::ServiceExt as _;

#[derive(Debug)]
struct UnreachableStore;

fn unreachable() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolTimedOut)
}

#[async_trait]
impl Store for UnreachableStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Err(unreachable())
    }
    async fn upsert_device(&self, _: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        Err(unreachable())
    }
    async fn remove_device(&self, _: &AppId, _: DeviceType, _: &DeviceId, _: &ClientId) -> Result<u64, StoreError> {
        Err(unreachable())
    }
    async fn client_devices(&self, _: &AppId, _: &ClientId) -> Result<Vec<Device>, StoreError> {
        Err(unreachable())
    }
    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        Err(unreachable())
    }
    async fn insert_api_key(&self, _: &StoredApiKey, _: i64) -> Result<(), StoreError> {
        Err(unreachable())
    }
}

async fn get(path: &str) -> (u16, serde_json::Value) {
    let state = AppState {
        store: Arc::new(UnreachableStore),
        apps: Arc::default(),
        keys: Arc::new(ApiKeyRing::default()),
        metrics: Arc::new(Metrics::default()),
    };
    let response = router(state, &RouterOptions { max_body_bytes: 1024 })
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
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
