//! Badges, preferences, mutes, presence and experiments on PostgreSQL.

use super::PgStore;
use super::accept::badge_totals;
use crate::experiments::read_experiments;
use crate::{BadgeView, ClientPrefs, ClientStore, ExperimentStore, SourceChange, StoreError, VariantCounts};
use async_trait::async_trait;
use pushgate_domain::{
    AppId, BadgeSource, ClientId, Experiment, ExperimentId, Locale, PushId, QuietHours, RoomId, RoomNotify,
    TimeZoneName,
};
use std::collections::BTreeMap;

#[async_trait]
impl ClientStore for PgStore {
    async fn badge(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        count_muted_rooms: bool,
        now_ms: i64,
    ) -> Result<BadgeView, StoreError> {
        self.fan_out_journal().await?;
        let counts = |sql| {
            sqlx::query_as::<_, (String, i64)>(sql).bind(app_id.as_str()).bind(client_id.as_str()).fetch_all(&self.pool)
        };
        let rooms = counts(
            "SELECT room, unread FROM room_unreads WHERE app_id = $1 AND client_id = $2 AND unread > 0 ORDER BY room",
        )
        .await?;
        let sources = counts(
            "SELECT source, count FROM badge_sources WHERE app_id = $1 AND client_id = $2 AND count > 0 \
             ORDER BY source",
        )
        .await?;
        let to_map = |rows: Vec<(String, i64)>| -> BTreeMap<String, u64> {
            rows.into_iter().map(|(name, count)| (name, u64::try_from(count).unwrap_or_default())).collect()
        };
        let mut connection = self.pool.acquire().await?;
        let clients = serde_json::Value::from([client_id.as_str()]).to_string();
        let totals = badge_totals(&mut connection, app_id.as_str(), &clients, count_muted_rooms, now_ms).await?;
        Ok(BadgeView {
            total: totals.first().and_then(|total| u64::try_from(*total).ok()).unwrap_or_default(),
            rooms: to_map(rooms),
            sources: to_map(sources),
        })
    }

    async fn set_room_pref(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        notify: RoomNotify,
        until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        sqlx::query(
            "INSERT INTO room_prefs (app_id, client_id, room, muted, muted_until_ms, updated_at_ms, notify) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (app_id, client_id, room) DO UPDATE SET muted = excluded.muted, \
                 muted_until_ms = excluded.muted_until_ms, updated_at_ms = excluded.updated_at_ms, \
                 notify = excluded.notify",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .bind(room.as_str())
        .bind(notify == RoomNotify::None)
        .bind(until_ms.filter(|_| notify != RoomNotify::All))
        .bind(now_ms)
        .bind(notify.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_presence(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        online_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        let query = match online_until_ms {
            Some(until) => sqlx::query(
                "INSERT INTO presence (app_id, client_id, online_until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (app_id, client_id) DO UPDATE SET online_until_ms = excluded.online_until_ms",
            )
            .bind(app_id.as_str())
            .bind(client_id.as_str())
            .bind(until),
            None => sqlx::query("DELETE FROM presence WHERE app_id = $1 AND client_id = $2")
                .bind(app_id.as_str())
                .bind(client_id.as_str()),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn client_prefs(&self, app_id: &AppId, client_id: &ClientId) -> Result<ClientPrefs, StoreError> {
        type PrefsRow = (bool, Option<String>, Option<String>, Option<String>, Option<String>);
        let row = sqlx::query_as::<_, PrefsRow>(
            "SELECT push_enabled, quiet_start, quiet_end, timezone, locale FROM client_prefs \
             WHERE app_id = $1 AND client_id = $2",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some((push_enabled, quiet_start, quiet_end, timezone, locale)) = row else {
            return Ok(ClientPrefs::default());
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("client_prefs.{what}"));
        let quiet_hours = match (quiet_start, quiet_end) {
            (Some(start), Some(end)) => Some(QuietHours::parse(&start, &end).map_err(|_| corrupt("quiet_hours"))?),
            _ => None,
        };
        Ok(ClientPrefs {
            push_enabled,
            quiet_hours,
            timezone: timezone.map(|zone| TimeZoneName::parse(&zone)).transpose().map_err(|_| corrupt("timezone"))?,
            locale: locale.map(|locale| Locale::parse(&locale)).transpose().map_err(|_| corrupt("locale"))?,
        })
    }

    async fn set_client_prefs(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        prefs: &ClientPrefs,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        sqlx::query(
            "INSERT INTO client_prefs (app_id, client_id, push_enabled, quiet_start, quiet_end, timezone, locale, \
                                       updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (app_id, client_id) DO UPDATE SET push_enabled = excluded.push_enabled, \
                 quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, timezone = excluded.timezone, \
                 locale = excluded.locale, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .bind(prefs.push_enabled)
        .bind(prefs.quiet_hours.map(|quiet| quiet.start()))
        .bind(prefs.quiet_hours.map(|quiet| quiet.end()))
        .bind(prefs.timezone.as_ref().map(TimeZoneName::as_str))
        .bind(prefs.locale.as_ref().map(Locale::as_str))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        let mut transaction = self.pool.begin().await?;
        // A coalescing window ends with the read (see `accept::end_windows_by_read`).
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(super::FAN_OUT_LOCK).execute(&mut *transaction).await?;
        sqlx::query("DELETE FROM room_unreads WHERE app_id = $1 AND client_id = $2 AND room = $3")
            .bind(app_id.as_str())
            .bind(client_id.as_str())
            .bind(room.as_str())
            .execute(&mut *transaction)
            .await?;
        let clients = serde_json::json!([client_id.as_str()]).to_string();
        let cancelled =
            super::accept::end_windows_by_read(&mut transaction, app_id.as_str(), &clients, room.as_str(), now_ms)
                .await?;
        transaction.commit().await?;
        self.coalesced.add(crate::CoalescingCounts { cancelled, ..Default::default() });
        Ok(())
    }

    async fn change_badge_source(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        source: &BadgeSource,
        change: SourceChange,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        let (sql, amount) = match change {
            SourceChange::Set(count) => (
                "INSERT INTO badge_sources (app_id, client_id, source, count, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (app_id, client_id, source) DO UPDATE SET count = excluded.count, \
                     updated_at_ms = excluded.updated_at_ms",
                i64::from(count),
            ),
            // One statement, so concurrent increments never lose one.
            SourceChange::Add(delta) => (
                "INSERT INTO badge_sources (app_id, client_id, source, count, updated_at_ms) \
                 VALUES ($1, $2, $3, GREATEST($4, 0), $5) \
                 ON CONFLICT (app_id, client_id, source) DO UPDATE \
                 SET count = GREATEST(badge_sources.count + $4, 0), updated_at_ms = excluded.updated_at_ms",
                delta,
            ),
        };
        sqlx::query(sql)
            .bind(app_id.as_str())
            .bind(client_id.as_str())
            .bind(source.as_str())
            .bind(amount)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ExperimentStore for PgStore {
    async fn put_experiment(
        &self,
        app_id: &AppId,
        id: &ExperimentId,
        experiment: &Experiment,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let definition = serde_json::to_string(experiment).map_err(|error| StoreError::Internal(error.into()))?;
        sqlx::query(
            "INSERT INTO experiments (app_id, experiment_id, definition, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, experiment_id) DO UPDATE SET definition = excluded.definition, \
                 updated_at_ms = excluded.updated_at_ms",
        )
        .bind(app_id.as_str())
        .bind(id.as_str())
        .bind(definition)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn experiments(&self, app_id: &AppId) -> Result<Vec<(ExperimentId, Experiment)>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT experiment_id, definition FROM experiments WHERE app_id = $1 ORDER BY experiment_id",
        )
        .bind(app_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(read_experiments(app_id, rows))
    }

    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &PushId,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO opens (app_id, push_id, client_id, opened_at_ms) \
             SELECT $1, $2, $3, $4 FROM pushes WHERE push_id = $2 AND app_id = $1 \
             ON CONFLICT DO NOTHING",
        )
        .bind(app_id.as_str())
        .bind(push_id.to_string())
        .bind(client_id.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        // Nothing inserted: an unknown push, or an open already recorded.
        let known = sqlx::query("SELECT 1 FROM pushes WHERE push_id = $1 AND app_id = $2")
            .bind(push_id.to_string())
            .bind(app_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(known.is_some())
    }

    async fn experiment_stats(&self, app_id: &AppId, id: &ExperimentId) -> Result<Vec<VariantCounts>, StoreError> {
        self.fan_out_journal().await?;
        let rows = sqlx::query_as::<_, (String, i64, i64, i64, i64)>(
            "SELECT r.variant, COUNT(*), SUM(r.delivered)::bigint, SUM(r.failed)::bigint, \
                    SUM((EXISTS (SELECT 1 FROM opens o WHERE o.app_id = $1 AND o.push_id = r.push_id \
                                 AND o.client_id = r.client_id))::int)::bigint \
             FROM (SELECT push_id, client_id, variant, MAX((status = 'delivered')::int) AS delivered, \
                          MIN((status IN ('failed', 'pruned'))::int) AS failed \
                   FROM delivery_states WHERE app_id = $1 AND experiment_id = $2 AND status != 'skipped' \
                   GROUP BY push_id, client_id, variant) r \
             GROUP BY r.variant ORDER BY r.variant",
        )
        .bind(app_id.as_str())
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|(variant, targeted, delivered, failed, opened)| VariantCounts {
                variant,
                targeted: count(targeted),
                delivered: count(delivered),
                failed: count(failed),
                opened: count(opened),
            })
            .collect())
    }
}
