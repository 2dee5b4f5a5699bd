//! The delivery queue: claims with leases, outcomes, status, housekeeping.

use super::SqliteStore;
use crate::{ClaimedDelivery, DeliveryStatus, DeliveryUpdate, DeliveryView, PushView, QueueDepth, StoreError};
use pushgate_domain::{AppId, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Locale, PushKind, PushToken};
use sqlx::Row as _;
use sqlx::sqlite::SqliteConnection;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Records attempt outcomes, all in one statement (the outcomes go in as a
/// JSON array).
pub(super) async fn record(
    connection: &mut SqliteConnection,
    updates: &[&(i64, DeliveryUpdate)],
) -> Result<(), StoreError> {
    let updates = serde_json::Value::from_iter(updates.iter().map(|(delivery_id, update)| {
        serde_json::json!({
            "id": delivery_id,
            "status": update.status.as_str(),
            "reason": update.reason,
            "next": update.next_attempt_at_ms,
            "attempted": i64::from(update.attempted),
            "now": update.now_ms,
        })
    }))
    .to_string();
    sqlx::query(
        "UPDATE deliveries SET status = json_extract(j.value, '$.status'), reason = json_extract(j.value, '$.reason'), \
             next_attempt_at_ms = json_extract(j.value, '$.next'), leased_until_ms = NULL, \
             attempts = attempts + json_extract(j.value, '$.attempted'), updated_at_ms = json_extract(j.value, '$.now') \
         FROM json_each(?1) j WHERE deliveries.id = json_extract(j.value, '$.id')",
    )
    .bind(updates)
    .execute(connection)
    .await?;
    Ok(())
}

pub(super) async fn claim_due_deliveries(
    store: &SqliteStore,
    now_ms: i64,
    limit: u32,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let writer = store.writer.lock().await;
    let mut transaction = store.leases.begin_with("BEGIN IMMEDIATE").await?;
    // The claimed rows come back as one JSON array in one row: every row
    // sqlx's SQLite driver answers crosses a thread (found by profiling).
    let claimed: String = sqlx::query_scalar(
        "SELECT json_group_array(json_object('id', id, 'push_id', push_id, 'app_id', app_id, \
                    'client_id', client_id, 'device_type', device_type, 'device_id', device_id, 'token', token, \
                    'environment', environment, 'locale', locale, 'badge', badge, 'attempts', attempts, \
                    'mode', mode, 'variant', variant)) \
         FROM (SELECT * FROM deliveries \
               WHERE status IN ('queued', 'retrying') AND next_attempt_at_ms <= ?1 \
                 AND (leased_until_ms IS NULL OR leased_until_ms <= ?1) \
               ORDER BY next_attempt_at_ms LIMIT ?2)",
    )
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_one(&mut *transaction)
    .await?;
    sqlx::query(
        "UPDATE deliveries SET leased_until_ms = ?1 \
         WHERE id IN (SELECT json_extract(value, '$.id') FROM json_each(?2))",
    )
    .bind(now_ms + lease_ms)
    .bind(&claimed)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    drop(writer);
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&claimed).map_err(|error| StoreError::Corrupt(format!("claimed deliveries: {error}")))?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("deliveries.{what}"));
    // The pushes of the claimed deliveries, in one read after the commit
    // (a push never changes, and is not forgotten while it has deliveries
    // to send).
    let push_ids: BTreeSet<&str> = rows.iter().filter_map(|row| row.get("push_id")?.as_str()).collect();
    let push_ids = serde_json::Value::from_iter(push_ids).to_string();
    type ClaimedPush = (PushKind, Arc<str>, i64, Option<Arc<str>>);
    let mut pushes: HashMap<String, ClaimedPush> = HashMap::new();
    for push in sqlx::query(
        "SELECT push_id, kind, request, deadline_ms, experiment FROM pushes \
         WHERE push_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&push_ids)
    .fetch_all(&store.pool)
    .await?
    {
        pushes.insert(
            push.try_get("push_id")?,
            (
                PushKind::parse(&push.try_get::<String, _>("kind")?)
                    .map_err(|error| StoreError::Corrupt(format!("pushes.kind: {error}")))?,
                push.try_get::<String, _>("request")?.into(),
                push.try_get("deadline_ms")?,
                push.try_get::<Option<String>, _>("experiment")?.map(Arc::from),
            ),
        );
    }
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |column: &str| row.get(column).and_then(|value| value.as_str()).map(str::to_owned);
        let number = |column: &str| row.get(column).and_then(serde_json::Value::as_i64);
        let push_id = text("push_id").ok_or_else(|| corrupt("push_id"))?;
        let (kind, request, deadline_ms, experiment) =
            pushes.get(&push_id).cloned().ok_or_else(|| StoreError::Corrupt(format!("pushes.{push_id}")))?;
        let device_type = text("device_type").ok_or_else(|| corrupt("device_type"))?;
        claimed.push(ClaimedDelivery {
            id: number("id").ok_or_else(|| corrupt("id"))?,
            push_id,
            app_id: AppId::parse(&text("app_id").unwrap_or_default()).map_err(|_| corrupt("app_id"))?,
            client_id: ClientId::parse(&text("client_id").unwrap_or_default()).map_err(|_| corrupt("client_id"))?,
            device_type: DeviceType::parse(&device_type).map_err(|_| corrupt("device_type"))?,
            device_id: DeviceId::parse(&text("device_id").unwrap_or_default()).map_err(|_| corrupt("device_id"))?,
            token: PushToken::from_trusted_storage(text("token").ok_or_else(|| corrupt("token"))?),
            environment: text("environment")
                .map(|raw| Environment::parse(&raw))
                .transpose()
                .map_err(|_| corrupt("environment"))?,
            locale: text("locale").map(|raw| Locale::parse(&raw)).transpose().map_err(|_| corrupt("locale"))?,
            badge: number("badge").map(|badge| u32::try_from(badge.max(0)).unwrap_or(u32::MAX)),
            attempts: u32::try_from(number("attempts").unwrap_or_default()).unwrap_or(u32::MAX),
            mode: text("mode").map(|raw| DeliveryMode::parse(&raw)).transpose().map_err(|_| corrupt("mode"))?,
            experiment: experiment.zip(text("variant")),
            kind,
            request,
            deadline_ms,
        });
    }
    Ok(claimed)
}

pub(super) async fn record_attempt(
    store: &SqliteStore,
    delivery_id: i64,
    update: &DeliveryUpdate,
) -> Result<(), StoreError> {
    store.records.write((delivery_id, update.clone())).await
}

pub(super) async fn release_all_leases(store: &SqliteStore) -> Result<u64, StoreError> {
    let _writer = store.writer.lock().await;
    let result = sqlx::query("UPDATE deliveries SET leased_until_ms = NULL WHERE leased_until_ms IS NOT NULL")
        .execute(&store.pool)
        .await?;
    Ok(result.rows_affected())
}

pub(super) async fn queue_depth(store: &SqliteStore) -> Result<QueueDepth, StoreError> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(status = 'queued'), 0) AS queued, COALESCE(SUM(status = 'retrying'), 0) AS retrying, \
                (SELECT COUNT(*) FROM journal) AS journaled \
         FROM deliveries WHERE status IN ('queued', 'retrying')",
    )
    .fetch_one(&store.pool)
    .await?;
    let count = |column: &str| row.try_get::<i64, _>(column).map(|n| u64::try_from(n).unwrap_or_default());
    Ok(QueueDepth { journaled: count("journaled")?, queued: count("queued")?, retrying: count("retrying")? })
}

pub(super) async fn next_due_at(store: &SqliteStore) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(COALESCE(MAX(next_attempt_at_ms, leased_until_ms), next_attempt_at_ms)) AS due \
         FROM deliveries WHERE status IN ('queued', 'retrying')",
    )
    .fetch_one(&store.pool)
    .await?;
    Ok(row.try_get("due")?)
}

pub(super) async fn push_view(
    store: &SqliteStore,
    app_id: &AppId,
    push_id: &str,
) -> Result<Option<PushView>, StoreError> {
    let Some(push) = sqlx::query("SELECT created_at_ms FROM pushes WHERE push_id = ?1 AND app_id = ?2")
        .bind(push_id)
        .bind(app_id.as_str())
        .fetch_optional(&store.pool)
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT client_id, device_type, device_id, status, reason, attempts, next_attempt_at_ms, updated_at_ms, \
                mode, route_reason, variant \
         FROM deliveries WHERE push_id = ?1 ORDER BY id",
    )
    .bind(push_id)
    .fetch_all(&store.pool)
    .await?;
    let deliveries = rows
        .iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(DeliveryView {
                client_id: row.try_get("client_id")?,
                device_type: row.try_get("device_type")?,
                device_id: row.try_get("device_id")?,
                status: DeliveryStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("deliveries.status {status:?}")))?,
                reason: row.try_get("reason")?,
                mode: row
                    .try_get::<Option<String>, _>("mode")?
                    .map(|raw| DeliveryMode::parse(&raw))
                    .transpose()
                    .map_err(|error| StoreError::Corrupt(format!("deliveries.mode: {error}")))?,
                route_reason: row.try_get("route_reason")?,
                variant: row.try_get("variant")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(PushView { push_id: push_id.to_owned(), created_at_ms: push.try_get("created_at_ms")?, deliveries }))
}

pub(super) async fn forget_before(store: &SqliteStore, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError> {
    let _writer = store.writer.lock().await;
    let mut transaction = store.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS forgotten (push_id TEXT PRIMARY KEY) WITHOUT ROWID; \
         DELETE FROM forgotten;",
    )
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "INSERT INTO forgotten (push_id) \
         SELECT push_id FROM pushes p WHERE created_at_ms < ?1 AND NOT EXISTS ( \
             SELECT 1 FROM deliveries d WHERE d.push_id = p.push_id AND d.status IN ('queued', 'retrying')) \
         AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.push_id = p.push_id) \
         ORDER BY created_at_ms LIMIT ?2",
    )
    .bind(before_ms)
    .bind(i64::from(limit))
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "DELETE FROM deliveries WHERE push_id IN (SELECT push_id FROM forgotten); \
         DELETE FROM opens WHERE push_id IN (SELECT push_id FROM forgotten);",
    )
    .execute(&mut *transaction)
    .await?;
    let pushes = sqlx::query("DELETE FROM pushes WHERE push_id IN (SELECT push_id FROM forgotten)")
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    let callbacks = sqlx::query(
        "DELETE FROM callbacks WHERE (app_id, message_id, to_client) IN ( \
             SELECT app_id, message_id, to_client FROM callbacks WHERE created_at_ms < ?1 \
             ORDER BY created_at_ms LIMIT ?2)",
    )
    .bind(before_ms)
    .bind(i64::from(limit))
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    transaction.commit().await?;
    Ok((pushes, callbacks))
}
