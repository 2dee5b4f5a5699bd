//! The SQLite store against the shared conformance suite, on a real file.

use pushgate_store::{SqliteStore, Store, conformance};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("open"));
    conformance::run_all(store).await;
}

#[tokio::test]
async fn reopening_a_database_keeps_its_devices_and_skips_applied_migrations() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let key = pushgate_store::StoredApiKey {
        app_id: pushgate_domain::AppId::parse("SampleApp").expect("app id"),
        digest: [1u8; 32],
    };
    SqliteStore::open(&url).await.expect("first open").insert_api_key(&key, 5).await.expect("insert");
    let reopened = SqliteStore::open(&url).await.expect("second open");
    assert_eq!(reopened.api_keys().await.expect("keys"), vec![key]);
}
