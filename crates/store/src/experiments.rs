//! A/B copy experiments: their definitions, opens, per-variant figures, and
//! [`ExperimentStore`]. Each delivery carries its client's variant (planned
//! at the fan-out); the figures are counted from the deliveries and opens.

use crate::StoreError;
use async_trait::async_trait;
use pushgate_domain::{AppId, ClientId, Experiment, ExperimentId, PushId};

/// One variant's figures in an experiment, per (push, client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantCounts {
    /// The variant.
    pub variant: String,
    /// Recipients given the variant and not skipped.
    pub targeted: u64,
    /// Of those, reached on at least one device.
    pub delivered: u64,
    /// Of those, given up on every device (none delivered).
    pub failed: u64,
    /// Of those, who opened the push.
    pub opened: u64,
}

/// Experiments, opens and their figures.
#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Creates or replaces an experiment.
    async fn put_experiment(
        &self,
        app_id: &AppId,
        id: &ExperimentId,
        experiment: &Experiment,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Every experiment of an app, by id. One whose stored definition cannot
    /// be read back is logged and left out.
    async fn experiments(&self, app_id: &AppId) -> Result<Vec<(ExperimentId, Experiment)>, StoreError>;

    /// Records that a client opened a push; answers false when the push is unknown.
    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &PushId,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Per variant of an experiment: targeted, delivered, failed, opened.
    async fn experiment_stats(&self, app_id: &AppId, id: &ExperimentId) -> Result<Vec<VariantCounts>, StoreError>;
}

/// The experiments among stored (id, definition) rows that read back; the
/// others are logged and left out (one bad row must not hide the rest).
pub(crate) fn read_experiments(app_id: &AppId, rows: Vec<(String, String)>) -> Vec<(ExperimentId, Experiment)> {
    rows.into_iter()
        .filter_map(|(id, definition)| {
            let read = ExperimentId::parse(&id)
                .map_err(|error| error.to_string())
                .and_then(|parsed| Ok((parsed, serde_json::from_str(&definition).map_err(|error| error.to_string())?)));
            read.inspect_err(|error| {
                tracing::error!(app.id = %app_id, experiment.id = %id, error = %error, "a stored experiment is unreadable; left out");
            })
            .ok()
        })
        .collect()
}
