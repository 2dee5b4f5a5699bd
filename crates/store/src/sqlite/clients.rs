//! Per-client state: badges and their sources, room preferences, presence,
//! preferences, experiments.

use super::SqliteStore;
use super::accept::{self, BADGE_TOTALS};
use super::writer::Durability;
use crate::experiments::read_experiments;
use crate::{BadgeView, ClientPrefs, SourceChange, StoreError, VariantCounts};
use crate::{ClientStore, ExperimentStore};
use async_trait::async_trait;
use pushgate_domain::{AppId, BadgeSource, ClientId, Locale, QuietHours, RoomId, RoomNotify, TimeZoneName};
use pushgate_domain::{Experiment, ExperimentId, PushId};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

pub(super) async fn badge(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
    count_muted_rooms: bool,
    now_ms: i64,
) -> Result<BadgeView, StoreError> {
    let counts = |sql| {
        sqlx::query_as::<_, (String, i64)>(sql).bind(app_id.as_str()).bind(client_id.as_str()).fetch_all(&store.pool)
    };
    let rooms = counts(
        "SELECT room, unread FROM room_unreads WHERE app_id = ?1 AND client_id = ?2 AND unread > 0 ORDER BY room",
    )
    .await?;
    let sources = counts(
        "SELECT source, count FROM badge_sources WHERE app_id = ?1 AND client_id = ?2 AND count > 0 \
         ORDER BY source",
    )
    .await?;
    let to_map = |rows: Vec<(String, i64)>| -> std::collections::BTreeMap<String, u64> {
        rows.into_iter().map(|(name, count)| (name, u64::try_from(count).unwrap_or_default())).collect()
    };
    let clients = serde_json::Value::from([client_id.as_str()]).to_string();
    let totals: String = sqlx::query_scalar(BADGE_TOTALS)
        .bind(app_id.as_str())
        .bind(clients)
        .bind(count_muted_rooms)
        .bind(now_ms)
        .fetch_one(&store.pool)
        .await?;
    let totals: Vec<i64> =
        serde_json::from_str(&totals).map_err(|error| StoreError::Corrupt(format!("badge totals: {error}")))?;
    Ok(BadgeView {
        total: totals.first().and_then(|total| u64::try_from(*total).ok()).unwrap_or_default(),
        rooms: to_map(rooms),
        sources: to_map(sources),
    })
}

/// A read mark without a push: the room's unreads go, and so does a
/// coalescing window's held alert (see [`accept::end_windows_by_read`]).
pub(super) async fn mark_room_read(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
    room: &RoomId,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (app, room) = (app_id.as_str().to_owned(), room.as_str().to_owned());
    let clients = serde_json::json!([client_id.as_str()]).to_string();
    let cancelled = store
        .writer
        .write(Durability::Flushed, move |connection| {
            connection
                .prepare_cached(
                    "DELETE FROM room_unreads WHERE app_id = ?1 AND room = ?3 \
                     AND client_id IN (SELECT value FROM json_each(?2))",
                )?
                .execute(rusqlite::params![app, clients, room])?;
            accept::end_windows_by_read(connection, &app, &clients, &room, now_ms)
        })
        .await?;
    store.coalesced.add(crate::CoalescingCounts { cancelled, ..Default::default() });
    Ok(())
}

pub(super) async fn change_badge_source(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
    source: &BadgeSource,
    change: SourceChange,
    now_ms: i64,
) -> Result<(), StoreError> {
    let _writer = store.write_lock.lock().await;
    let (sql, amount) = match change {
        SourceChange::Set(count) => (
            "INSERT INTO badge_sources (app_id, client_id, source, count, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO UPDATE SET count = excluded.count, updated_at_ms = excluded.updated_at_ms",
            i64::from(count),
        ),
        // One statement, so concurrent increments never lose one.
        SourceChange::Add(delta) => (
            "INSERT INTO badge_sources (app_id, client_id, source, count, updated_at_ms) \
             VALUES (?1, ?2, ?3, MAX(?4, 0), ?5) \
             ON CONFLICT DO UPDATE SET count = MAX(count + ?4, 0), updated_at_ms = excluded.updated_at_ms",
            delta,
        ),
    };
    sqlx::query(sql)
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .bind(source.as_str())
        .bind(amount)
        .bind(now_ms)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn set_room_pref(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
    room: &RoomId,
    notify: RoomNotify,
    until_ms: Option<i64>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let _writer = store.write_lock.lock().await;
    sqlx::query(
        "INSERT INTO room_prefs (app_id, client_id, room, muted, muted_until_ms, updated_at_ms, notify) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT DO UPDATE SET muted = excluded.muted, muted_until_ms = excluded.muted_until_ms, \
                                   updated_at_ms = excluded.updated_at_ms, notify = excluded.notify",
    )
    .bind(app_id.as_str())
    .bind(client_id.as_str())
    .bind(room.as_str())
    .bind(notify == RoomNotify::None)
    .bind(until_ms.filter(|_| notify != RoomNotify::All))
    .bind(now_ms)
    .bind(notify.as_str())
    .execute(&store.pool)
    .await?;
    Ok(())
}

pub(super) async fn set_presence(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
    online_until_ms: Option<i64>,
) -> Result<(), StoreError> {
    let _writer = store.write_lock.lock().await;
    let query = match online_until_ms {
        Some(until) => sqlx::query(
            "INSERT INTO presence (app_id, client_id, online_until_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO UPDATE SET online_until_ms = excluded.online_until_ms",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .bind(until),
        None => sqlx::query("DELETE FROM presence WHERE app_id = ?1 AND client_id = ?2")
            .bind(app_id.as_str())
            .bind(client_id.as_str()),
    };
    query.execute(&store.pool).await?;
    Ok(())
}

pub(super) async fn client_prefs(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
) -> Result<ClientPrefs, StoreError> {
    let row = sqlx::query(
        "SELECT push_enabled, quiet_start, quiet_end, timezone, locale FROM client_prefs \
         WHERE app_id = ?1 AND client_id = ?2",
    )
    .bind(app_id.as_str())
    .bind(client_id.as_str())
    .fetch_optional(&store.pool)
    .await?;
    let Some(row) = row else { return Ok(ClientPrefs::default()) };
    let corrupt = |what: &str| StoreError::Corrupt(format!("client_prefs.{what}"));
    let text = |column: &str| row.try_get::<Option<String>, _>(column);
    let quiet_hours = match (text("quiet_start")?, text("quiet_end")?) {
        (Some(start), Some(end)) => Some(QuietHours::parse(&start, &end).map_err(|_| corrupt("quiet_hours"))?),
        _ => None,
    };
    Ok(ClientPrefs {
        push_enabled: row.try_get("push_enabled")?,
        quiet_hours,
        timezone: text("timezone")?
            .map(|zone| TimeZoneName::parse(&zone))
            .transpose()
            .map_err(|_| corrupt("timezone"))?,
        locale: text("locale")?.map(|locale| Locale::parse(&locale)).transpose().map_err(|_| corrupt("locale"))?,
    })
}

pub(super) async fn set_client_prefs(
    store: &SqliteStore,
    app_id: &AppId,
    client_id: &ClientId,
    prefs: &ClientPrefs,
    now_ms: i64,
) -> Result<(), StoreError> {
    let _writer = store.write_lock.lock().await;
    sqlx::query(
        "INSERT INTO client_prefs (app_id, client_id, push_enabled, quiet_start, quiet_end, timezone, locale, \
                                   updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT DO UPDATE SET push_enabled = excluded.push_enabled, quiet_start = excluded.quiet_start, \
             quiet_end = excluded.quiet_end, timezone = excluded.timezone, locale = excluded.locale, \
             updated_at_ms = excluded.updated_at_ms",
    )
    .bind(app_id.as_str())
    .bind(client_id.as_str())
    .bind(prefs.push_enabled)
    .bind(prefs.quiet_hours.map(|quiet| quiet.start()))
    .bind(prefs.quiet_hours.map(|quiet| quiet.end()))
    .bind(prefs.timezone.as_ref().map(TimeZoneName::as_str))
    .bind(prefs.locale.as_ref().map(Locale::as_str))
    .bind(now_ms)
    .execute(&store.pool)
    .await?;
    Ok(())
}

pub(super) async fn put_experiment(
    store: &SqliteStore,
    app_id: &AppId,
    id: &str,
    definition: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let _writer = store.write_lock.lock().await;
    sqlx::query(
        "INSERT INTO experiments (app_id, experiment_id, definition, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT DO UPDATE SET definition = excluded.definition, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(app_id.as_str())
    .bind(id)
    .bind(definition)
    .bind(now_ms)
    .execute(&store.pool)
    .await?;
    Ok(())
}

pub(super) async fn experiments(store: &SqliteStore, app_id: &AppId) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query_as::<_, (String, String)>(
        "SELECT experiment_id, definition FROM experiments WHERE app_id = ?1 ORDER BY experiment_id",
    )
    .bind(app_id.as_str())
    .fetch_all(&store.pool)
    .await?;
    Ok(rows)
}

pub(super) async fn record_open(
    store: &SqliteStore,
    app_id: &AppId,
    push_id: &str,
    client_id: &ClientId,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let _writer = store.write_lock.lock().await;
    let result = sqlx::query(
        "INSERT INTO opens (app_id, push_id, client_id, opened_at_ms) \
         SELECT ?1, ?2, ?3, ?4 FROM pushes WHERE push_id = ?2 AND app_id = ?1 \
         ON CONFLICT DO NOTHING",
    )
    .bind(app_id.as_str())
    .bind(push_id)
    .bind(client_id.as_str())
    .bind(now_ms)
    .execute(&store.pool)
    .await?;
    if result.rows_affected() == 1 {
        return Ok(true);
    }
    // Nothing inserted: an unknown push, or an open already recorded.
    let known = sqlx::query("SELECT 1 FROM pushes WHERE push_id = ?1 AND app_id = ?2")
        .bind(push_id)
        .bind(app_id.as_str())
        .fetch_optional(&store.pool)
        .await?;
    Ok(known.is_some())
}

pub(super) async fn experiment_stats(
    store: &SqliteStore,
    app_id: &AppId,
    id: &str,
) -> Result<Vec<VariantCounts>, StoreError> {
    let rows = sqlx::query(
        "SELECT r.variant, COUNT(*) AS targeted, \
                COALESCE(SUM(r.delivered), 0) AS delivered, COALESCE(SUM(r.failed), 0) AS failed, \
                COALESCE(SUM(EXISTS (SELECT 1 FROM opens o WHERE o.app_id = ?1 AND o.push_id = r.push_id \
                                     AND o.client_id = r.client_id)), 0) AS opened \
         FROM (SELECT push_id, client_id, variant, MAX(status = 'delivered') AS delivered, \
                      MIN(status IN ('failed', 'pruned')) AS failed \
               FROM delivery_states WHERE app_id = ?1 AND experiment_id = ?2 AND status != 'skipped' \
               GROUP BY push_id, client_id, variant) r \
         GROUP BY r.variant ORDER BY r.variant",
    )
    .bind(app_id.as_str())
    .bind(id)
    .fetch_all(&store.pool)
    .await?;
    let count =
        |row: &SqliteRow, column: &str| row.try_get::<i64, _>(column).map(|n| u64::try_from(n).unwrap_or_default());
    rows.iter()
        .map(|row| {
            Ok(VariantCounts {
                variant: row.try_get("variant")?,
                targeted: count(row, "targeted")?,
                delivered: count(row, "delivered")?,
                failed: count(row, "failed")?,
                opened: count(row, "opened")?,
            })
        })
        .collect()
}

#[async_trait]
impl ClientStore for SqliteStore {
    async fn badge(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        count_muted_rooms: bool,
        now_ms: i64,
    ) -> Result<BadgeView, StoreError> {
        self.fan_out_journal().await?;
        badge(self, app_id, client_id, count_muted_rooms, now_ms).await
    }

    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        mark_room_read(self, app_id, client_id, room, now_ms).await
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
        change_badge_source(self, app_id, client_id, source, change, now_ms).await
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
        set_room_pref(self, app_id, client_id, room, notify, until_ms, now_ms).await
    }

    async fn set_presence(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        online_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        set_presence(self, app_id, client_id, online_until_ms).await
    }

    async fn client_prefs(&self, app_id: &AppId, client_id: &ClientId) -> Result<ClientPrefs, StoreError> {
        client_prefs(self, app_id, client_id).await
    }

    async fn set_client_prefs(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        prefs: &ClientPrefs,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        set_client_prefs(self, app_id, client_id, prefs, now_ms).await
    }
}

#[async_trait]
impl ExperimentStore for SqliteStore {
    async fn put_experiment(
        &self,
        app_id: &AppId,
        id: &ExperimentId,
        experiment: &Experiment,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let definition = serde_json::to_string(experiment).map_err(|error| StoreError::Internal(error.into()))?;
        put_experiment(self, app_id, id.as_str(), &definition, now_ms).await
    }

    async fn experiments(&self, app_id: &AppId) -> Result<Vec<(ExperimentId, Experiment)>, StoreError> {
        Ok(read_experiments(app_id, experiments(self, app_id).await?))
    }

    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &PushId,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        record_open(self, app_id, &push_id.to_string(), client_id, now_ms).await
    }

    async fn experiment_stats(&self, app_id: &AppId, id: &ExperimentId) -> Result<Vec<VariantCounts>, StoreError> {
        self.fan_out_journal().await?;
        experiment_stats(self, app_id, id.as_str()).await
    }
}
