//! What the API knows of the delivery worker ([`WorkerStatus`], its
//! `DeliveryStatus`), and the announcements of accepted work to the other
//! nodes on a shared store.

use pushgate_api::{DeliveryStatus, PausedProvider, UnreachableProvider, now_ms};
use pushgate_delivery::{DeliveryHandle, DeliveryMetrics};
use pushgate_domain::{AppId, ProviderKind};
use pushgate_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// The API's view of the worker.
#[derive(Debug)]
pub(super) struct WorkerStatus {
    pub(super) handle: Arc<DeliveryHandle>,
    /// The store an operator's resume expedites held deliveries in.
    pub(super) store: Arc<dyn Store>,
    /// The worker's metrics, whose pause gauge a resume lowers.
    pub(super) metrics: DeliveryMetrics,
    /// Whether this process runs a worker (an API-only node has none of
    /// its own to wait for).
    pub(super) local: bool,
    /// Asks [`announce_work`] to tell the other nodes, on a shared store.
    pub(super) announce: Option<Arc<tokio::sync::Notify>>,
}

/// The shortest time between two announcements of work to the other nodes:
/// accepts in between share the next one.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(10);

/// Announces work to the nodes sharing the store each time `wanted` is
/// notified, at most once per [`ANNOUNCE_INTERVAL`] (a `NOTIFY` per accept
/// would serialise the database's commits on its notification queue).
pub(super) async fn announce_work(store: Arc<dyn Store>, wanted: Arc<tokio::sync::Notify>) {
    let Some(cluster) = store.cluster() else { return };
    loop {
        wanted.notified().await;
        if let Err(error) = cluster.announce_work().await {
            tracing::warn!(error = %error, "cannot tell the other nodes of new work; they find it at their next poll");
        }
        tokio::time::sleep(ANNOUNCE_INTERVAL).await;
    }
}

#[async_trait::async_trait]
impl DeliveryStatus for WorkerStatus {
    fn wake(&self) {
        self.handle.wake();
        if let Some(announce) = &self.announce {
            announce.notify_one();
        }
    }

    fn is_running(&self) -> bool {
        !self.local || self.handle.is_running()
    }

    fn is_draining(&self) -> bool {
        self.handle.is_draining()
    }

    fn paused_providers(&self) -> Vec<PausedProvider> {
        self.handle
            .pauses
            .snapshot()
            .into_iter()
            .map(|pause| PausedProvider {
                app: pause.app.to_string(),
                provider: pause.provider.to_string(),
                reason: pause.reason,
                until_ms: pause.until_ms,
            })
            .collect()
    }

    fn unreachable_providers(&self) -> Vec<UnreachableProvider> {
        self.handle
            .reach
            .unreachable()
            .into_iter()
            .map(|(app, provider, run)| UnreachableProvider {
                app: app.to_string(),
                provider: provider.to_string(),
                sends: run.sends,
                since_ms: run.since_ms,
                reason: run.reason,
            })
            .collect()
    }

    async fn resume(&self, app: &AppId, provider: ProviderKind) -> Result<bool, StoreError> {
        let resumed = self.handle.resume(self.store.as_ref(), app, provider, now_ms()).await?;
        if resumed {
            self.metrics.provider_paused(app, provider, false);
        }
        Ok(resumed)
    }
}
