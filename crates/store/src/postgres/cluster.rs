//! What the nodes sharing a PostgreSQL store agree on beyond the queue:
//! rate budgets, provider pauses and work announcements.

use super::PgStore;
use crate::{Cluster, SharedPause, StoreError};
use async_trait::async_trait;
use pushgate_domain::{AppId, ProviderKind};

/// The `LISTEN`/`NOTIFY` channel on which nodes announce accepted work.
const WORK_CHANNEL: &str = "pushgate_work";

#[async_trait]
#[async_trait]
impl Cluster for PgStore {
    async fn take_send_budget(&self, key: &str, window_s: i64, want: u32, limit: u32) -> Result<u32, StoreError> {
        // One statement, so the row lock orders the nodes: each sees what
        // the one before it took. Every SET expression reads the old row.
        let granted: i64 = sqlx::query_scalar(
            "INSERT INTO send_budgets AS b (key, window_s, used, last_grant) \
             VALUES ($1, $2, LEAST($3, $4), LEAST($3, $4)) \
             ON CONFLICT (key) DO UPDATE SET \
                window_s = GREATEST(b.window_s, excluded.window_s), \
                used = CASE WHEN excluded.window_s > b.window_s THEN LEAST($3, $4) \
                            ELSE b.used + LEAST($3, GREATEST($4 - b.used, 0)) END, \
                last_grant = CASE WHEN excluded.window_s > b.window_s THEN LEAST($3, $4) \
                                  ELSE LEAST($3, GREATEST($4 - b.used, 0)) END \
             RETURNING last_grant",
        )
        .bind(key)
        .bind(window_s)
        .bind(i64::from(want))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(granted).unwrap_or_default())
    }

    async fn pause_provider(
        &self,
        pause: &SharedPause,
        now_ms: i64,
        base_ms: i64,
        max_ms: i64,
    ) -> Result<i64, StoreError> {
        let until_ms: i64 = sqlx::query_scalar(
            "INSERT INTO provider_pauses AS p (app_id, provider, reason, until_ms, interval_ms) \
             VALUES ($1, $2, $3, $4 + $5, $5) \
             ON CONFLICT (app_id, provider) DO UPDATE SET \
                reason = CASE WHEN p.until_ms > $4 THEN p.reason ELSE excluded.reason END, \
                interval_ms = CASE WHEN p.until_ms > $4 THEN p.interval_ms ELSE LEAST(p.interval_ms * 2, $6) END, \
                until_ms = CASE WHEN p.until_ms > $4 THEN p.until_ms ELSE $4 + LEAST(p.interval_ms * 2, $6) END \
             RETURNING until_ms",
        )
        .bind(pause.app_id.as_str())
        .bind(pause.provider.as_str())
        .bind(&pause.reason)
        .bind(now_ms)
        .bind(base_ms)
        .bind(max_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(until_ms)
    }

    async fn resume_provider(&self, app_id: &AppId, provider: ProviderKind) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM provider_pauses WHERE app_id = $1 AND provider = $2")
            .bind(app_id.as_str())
            .bind(provider.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    async fn announce_work(&self) -> Result<(), StoreError> {
        // The channel is the database's; the payload names the schema, so
        // pushgates on other schemas of the same database ignore it.
        sqlx::query("SELECT pg_notify($1, current_schema())").bind(WORK_CHANNEL).execute(&self.pool).await?;
        Ok(())
    }

    async fn wait_for_work(&self, on_work: &(dyn Fn() + Send + Sync)) -> Result<(), StoreError> {
        let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&self.pool).await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        on_work();
        loop {
            let notification = listener.recv().await?;
            if notification.payload() == schema {
                on_work();
            }
        }
    }

    async fn provider_pauses(&self) -> Result<Vec<SharedPause>, StoreError> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT app_id, provider, reason, until_ms FROM provider_pauses ORDER BY app_id, provider")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(app_id, provider, reason, until_ms)| {
                Ok(SharedPause {
                    app_id: AppId::parse(&app_id).map_err(|error| StoreError::Corrupt(error.to_string()))?,
                    provider: ProviderKind::parse(&provider).map_err(|error| StoreError::Corrupt(error.0))?,
                    reason,
                    until_ms,
                })
            })
            .collect()
    }
}
