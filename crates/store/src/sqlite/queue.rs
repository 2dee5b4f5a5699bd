//! The delivery queue: claims with leases, outcomes, status, housekeeping.

use super::SqliteStore;
use super::accept;
use super::writer::Durability;
use crate::Journal;
use crate::claim::{self, ClaimedPushes};
use crate::grouped::WriteGroup;
use crate::outcomes::{Outcome, OutcomeGroup};
use crate::{
    Accepted, ClaimedDelivery, DeliveryRef, DeliveryStatus, DeliveryUpdate, DeliveryView, NewPush, PushView,
    QueueDepth, QueueStore, StoreError,
};
use async_trait::async_trait;
use pushgate_domain::{AppId, DeliveryMode, DeviceType, PushId, Reason};
use rusqlite::{Connection, params};
use sqlx::Row as _;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Records attempt outcomes in a few statements, whatever their number (the
/// outcomes go in as JSON arrays). A delivery with a row of its own has it
/// updated; a planned one (its first attempt) is settled in its send, and
/// gets a row of its own only when the outcome needs one: a retry, a
/// failure, a prune, a skip. A first-attempt success writes no row.
pub(super) fn record(connection: &Connection, updates: &[(DeliveryRef, DeliveryUpdate)]) -> Result<(), StoreError> {
    let group = OutcomeGroup::of(updates);
    if let Some(rows) = &group.rows {
        connection.prepare_cached("UPDATE deliveries SET status = json_extract(j.value, '$.status'), reason = json_extract(j.value, '$.reason'), \
                 next_attempt_at_ms = json_extract(j.value, '$.next'), leased_until_ms = NULL, \
                 attempts = attempts + json_extract(j.value, '$.attempted'), updated_at_ms = json_extract(j.value, '$.now') \
             FROM json_each(?1) j WHERE deliveries.id = json_extract(j.value, '$.id')")?.execute(params![rows])?;
    }
    if let Some(own_rows) = &group.own_rows {
        // The row copies its planned entry. A second outcome for the same
        // entry (only after a lease ran out) keeps the first.
        connection.prepare_cached("INSERT INTO deliveries (push_id, app_id, client_id, device_type, device_id, token, environment, locale, \
                                     badge, status, reason, attempts, next_attempt_at_ms, updated_at_ms, mode, \
                                     route_reason, experiment_id, variant, send_id, send_index, push_key) \
             SELECT push_id, app_id, json_extract(entry, '$.client_id'), json_extract(entry, '$.device_type'), \
                    json_extract(entry, '$.device_id'), json_extract(entry, '$.token'), \
                    json_extract(entry, '$.environment'), json_extract(entry, '$.locale'), \
                    json_extract(entry, '$.badge'), json_extract(outcome, '$.status'), \
                    json_extract(outcome, '$.reason'), json_extract(outcome, '$.attempted'), \
                    json_extract(outcome, '$.next'), json_extract(outcome, '$.now'), json_extract(entry, '$.mode'), \
                    json_extract(entry, '$.route_reason'), experiment_id, json_extract(entry, '$.variant'), \
                    send_id, send_index, json_extract(entry, '$.push_key') \
             FROM (SELECT s.push_id, s.app_id, s.experiment_id, s.id AS send_id, j.value AS outcome, \
                          json_extract(j.value, '$.index') AS send_index, \
                          json_extract(p.deliveries, '$[' || json_extract(j.value, '$.index') || ']') AS entry \
                   FROM json_each(?1) j JOIN sends s ON s.id = json_extract(j.value, '$.send') \
                   JOIN send_plans p ON p.id = s.id) \
             WHERE true ON CONFLICT (send_id, send_index) WHERE send_id IS NOT NULL DO NOTHING")?.execute(params![own_rows])?;
    }
    if !group.settled.is_empty() {
        // A send whose every queued entry is settled is done: its lease ends
        // and it leaves the due index (`pending > 0`).
        connection.prepare_cached("UPDATE sends SET settled = n.settled, pending = sends.queued - json_array_length(n.settled), \
                 leased_until_ms = CASE WHEN sends.queued > json_array_length(n.settled) \
                                        THEN sends.leased_until_ms END, \
                 updated_at_ms = n.now \
             FROM (SELECT s.id, json_extract(j.value, '$.now') AS now, \
                          (SELECT json_group_array(v) FROM (SELECT x.value AS v FROM json_each(s.settled) x \
                                                           UNION SELECT y.value FROM json_each(j.value, '$.indexes') y)) \
                            AS settled \
                   FROM json_each(?1) j JOIN sends s ON s.id = json_extract(j.value, '$.send')) n \
             WHERE sends.id = n.id")?.execute(params![group.settled_json()])?;
    }
    Ok(())
}

pub(super) async fn claim_due_deliveries(
    store: &SqliteStore,
    now_ms: i64,
    limit: u32,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    // Leases need no flush (see `Durability::Unflushed`).
    let (own, sends) = store
        .writer
        .write(Durability::Unflushed, move |connection| lease_due(connection, now_ms, limit, lease_ms))
        .await?;
    // The pushes of the claimed deliveries, in one read after the commit
    // (a push never changes, and is not forgotten while it has deliveries
    // to send).
    let pushes = claimed_pushes(store, &claim::push_ids(&own, &sends)).await?;
    claim::expand(&own, &sends, &pushes)
}

/// Leases what is due, on the writer thread: deliveries with a row of their
/// own (retries) first, then whole sends (first attempts) up to the limit (a
/// send is leased whole, so the last one may take the claim past it).
/// Answers the leased rows and sends, each as one JSON row.
fn lease_due(
    connection: &Connection,
    now_ms: i64,
    limit: u32,
    lease_ms: i64,
) -> Result<(Vec<claim::LeasedRow>, Vec<claim::LeasedSend>), StoreError> {
    // Coalescing windows that have ended queue their held alerts first, so
    // this claim takes them.
    accept::end_windows(connection, now_ms, limit)?;
    let own: String = connection
        .prepare_cached(
            "SELECT json_group_array(json_object('id', id, 'push_id', push_id, 'app_id', app_id, \
                    'client_id', client_id, 'device_type', device_type, 'device_id', device_id, 'token', token, \
                    'environment', environment, 'locale', locale, 'badge', badge, 'attempts', attempts, \
                    'mode', mode, 'variant', variant, 'summary', summary, 'push_key', push_key)) \
         FROM (SELECT * FROM deliveries \
               WHERE status IN ('queued', 'retrying') AND next_attempt_at_ms <= ?1 \
                 AND (leased_until_ms IS NULL OR leased_until_ms <= ?1) \
               ORDER BY next_attempt_at_ms LIMIT ?2)",
        )?
        .query_row(params![now_ms, i64::from(limit)], |row| row.get(0))?;
    let own: Vec<claim::LeasedRow> = claim::parse_rows(&own)?;
    if !own.is_empty() {
        connection
            .prepare_cached(
                "UPDATE deliveries SET leased_until_ms = ?1 \
             WHERE id IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![
                now_ms + lease_ms,
                serde_json::Value::from_iter(own.iter().map(|row| row.id)).to_string()
            ])?;
    }
    let budget = i64::from(limit).saturating_sub(i64::try_from(own.len()).unwrap_or(i64::MAX));
    let sends: Vec<claim::LeasedSend> = if budget > 0 {
        let sends: String = connection
            .prepare_cached(
                "SELECT json_group_array(json_object('id', s.id, 'push_id', s.push_id, 'app_id', s.app_id, \
                        'deliveries', json(p.deliveries), 'settled', json(s.settled))) \
             FROM sends s JOIN send_plans p ON p.id = s.id WHERE s.id IN ( \
               SELECT id FROM (SELECT id, SUM(pending) OVER (ORDER BY next_attempt_at_ms, id) - pending AS before \
                               FROM (SELECT id, pending, next_attempt_at_ms FROM sends \
                                     WHERE pending > 0 AND next_attempt_at_ms <= ?1 \
                                       AND (leased_until_ms IS NULL OR leased_until_ms <= ?1) \
                                     ORDER BY next_attempt_at_ms, id LIMIT ?2)) \
               WHERE before < ?2)",
            )?
            .query_row(params![now_ms, budget], |row| row.get(0))?;
        claim::parse_rows(&sends)?
    } else {
        Vec::new()
    };
    if !sends.is_empty() {
        connection
            .prepare_cached("UPDATE sends SET leased_until_ms = ?1 WHERE id IN (SELECT value FROM json_each(?2))")?
            .execute(params![
                now_ms + lease_ms,
                serde_json::Value::from_iter(sends.iter().map(|send| send.id)).to_string()
            ])?;
    }
    Ok((own, sends))
}

async fn claimed_pushes(store: &SqliteStore, push_ids: &BTreeSet<&str>) -> Result<ClaimedPushes, StoreError> {
    let mut pushes = HashMap::new();
    if push_ids.is_empty() {
        return Ok(pushes);
    }
    for push in sqlx::query(
        "SELECT push_id, kind, request, deadline_ms, experiment, trace_parent FROM pushes \
         WHERE push_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(serde_json::Value::from_iter(push_ids.iter().copied()).to_string())
    .fetch_all(&store.pool)
    .await?
    {
        let (id, claimed) = claim::claimed_push(
            &push.try_get::<String, _>("push_id")?,
            &push.try_get::<String, _>("kind")?,
            &push.try_get::<String, _>("request")?,
            push.try_get("deadline_ms")?,
            push.try_get::<Option<String>, _>("experiment")?.as_deref(),
            push.try_get::<Option<String>, _>("trace_parent")?.as_deref(),
        )?;
        pushes.insert(id, claimed);
    }
    Ok(pushes)
}

#[async_trait::async_trait]
impl WriteGroup<Outcome, ()> for super::writer::Writer {
    async fn write_group(&self, outcomes: Arc<Vec<Outcome>>) -> Result<Vec<()>, StoreError> {
        let count = outcomes.len();
        // Unflushed: a power cut may forget the last outcomes (their
        // deliveries are sent again), never a crash of the process.
        self.write(Durability::Unflushed, move |connection| record(connection, &outcomes)).await?;
        Ok(vec![(); count])
    }
}

pub(super) async fn record_attempt(
    store: &SqliteStore,
    delivery: DeliveryRef,
    update: &DeliveryUpdate,
) -> Result<(), StoreError> {
    store.outcomes.write((delivery, update.clone())).await
}

pub(super) async fn release_all_leases(store: &SqliteStore) -> Result<u64, StoreError> {
    let _writer = store.write_lock.lock().await;
    let mut transaction = store.pool.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query("UPDATE deliveries SET leased_until_ms = NULL WHERE leased_until_ms IS NOT NULL")
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    let sends = sqlx::query("UPDATE sends SET leased_until_ms = NULL WHERE leased_until_ms IS NOT NULL")
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(rows + sends)
}

pub(super) async fn queue_depth(store: &SqliteStore) -> Result<QueueDepth, StoreError> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(status = 'queued'), 0) \
                  + (SELECT COALESCE(SUM(pending), 0) FROM sends WHERE pending > 0) AS queued, \
                COALESCE(SUM(status = 'retrying'), 0) AS retrying, (SELECT COUNT(*) FROM journal) AS journaled, \
                (SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_held WHERE status = 'held') AS held \
         FROM deliveries WHERE status IN ('queued', 'retrying')",
    )
    .fetch_one(&store.pool)
    .await?;
    let count = |column: &str| row.try_get::<i64, _>(column).map(|n| u64::try_from(n).unwrap_or_default());
    Ok(QueueDepth {
        journaled: count("journaled")?,
        queued: count("queued")?,
        retrying: count("retrying")?,
        held: count("held")?,
    })
}

pub(super) async fn next_due_at(store: &SqliteStore) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(due) AS due FROM ( \
           SELECT MIN(COALESCE(MAX(next_attempt_at_ms, leased_until_ms), next_attempt_at_ms)) AS due \
           FROM deliveries WHERE status IN ('queued', 'retrying') \
           UNION ALL \
           SELECT MIN(COALESCE(MAX(next_attempt_at_ms, leased_until_ms), next_attempt_at_ms)) \
           FROM sends WHERE pending > 0 \
           UNION ALL \
           SELECT MIN(window_until_ms) FROM coalescing WHERE held_push_id IS NOT NULL)",
    )
    .fetch_one(&store.pool)
    .await?;
    Ok(row.try_get("due")?)
}

pub(super) async fn push_view(
    store: &SqliteStore,
    app_id: &AppId,
    push_id: &PushId,
) -> Result<Option<PushView>, StoreError> {
    let id = push_id.to_string();
    let Some(push) = sqlx::query("SELECT created_at_ms FROM pushes WHERE push_id = ?1 AND app_id = ?2")
        .bind(&id)
        .bind(app_id.as_str())
        .fetch_optional(&store.pool)
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT client_id, device_type, device_id, status, reason, attempts, next_attempt_at_ms, updated_at_ms, \
                mode, route_reason, variant, carried_by \
         FROM delivery_states WHERE push_id = ?1 \
         ORDER BY send_id IS NULL, send_id, send_index",
    )
    .bind(&id)
    .fetch_all(&store.pool)
    .await?;
    let carriers = carriers(store, &id).await?;
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
                reason: row.try_get::<Option<String>, _>("reason")?.as_deref().map(Reason::parse),
                mode: row
                    .try_get::<Option<String>, _>("mode")?
                    .map(|raw| DeliveryMode::parse(&raw))
                    .transpose()
                    .map_err(|error| StoreError::Corrupt(format!("deliveries.mode: {error}")))?,
                route_reason: row.try_get("route_reason")?,
                variant: row.try_get("variant")?,
                carried_by: carriers
                    .get(&row.try_get::<String, _>("client_id")?)
                    .cloned()
                    .or(row.try_get::<Option<String>, _>("carried_by")?)
                    .map(|raw| PushId::parse(&raw))
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("deliveries.carried_by".into()))?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
                updated_at_ms: row.try_get("updated_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(PushView { push_id: *push_id, created_at_ms: push.try_get("created_at_ms")?, deliveries }))
}

/// Per client, the push that carries the push's `coalesced` deliveries: a
/// merged message's `carried_by` names the message that merged it, which may
/// have been merged in turn; the last of the run carries them all.
async fn carriers(store: &SqliteStore, push_id: &str) -> Result<HashMap<String, String>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "WITH RECURSIVE chain (client_id, carrier, depth) AS ( \
           SELECT client_id, carried_by, 0 FROM deliveries \
           WHERE push_id = ?1 AND status = 'coalesced' AND carried_by IS NOT NULL \
           UNION \
           SELECT c.client_id, d.carried_by, c.depth + 1 FROM chain c \
           JOIN deliveries d ON d.push_id = c.carrier AND d.client_id = c.client_id \
           WHERE d.status = 'coalesced' AND d.carried_by IS NOT NULL AND c.depth < 100000) \
         SELECT client_id, carrier FROM chain c \
         WHERE depth = (SELECT MAX(depth) FROM chain x WHERE x.client_id = c.client_id)",
    )
    .bind(push_id)
    .fetch_all(&store.pool)
    .await?;
    Ok(rows.into_iter().collect())
}

pub(super) async fn forget_before(store: &SqliteStore, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError> {
    let _writer = store.write_lock.lock().await;
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
             SELECT 1 FROM deliveries d WHERE d.push_id = p.push_id AND d.status IN ('queued', 'retrying', 'held')) \
         AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.push_id = p.push_id AND s.pending > 0) \
         AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.push_id = p.push_id) \
         ORDER BY created_at_ms LIMIT ?2",
    )
    .bind(before_ms)
    .bind(i64::from(limit))
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "DELETE FROM deliveries WHERE push_id IN (SELECT push_id FROM forgotten); \
         DELETE FROM send_plans WHERE id IN (SELECT id FROM sends WHERE push_id IN (SELECT push_id FROM forgotten)); \
         DELETE FROM sends WHERE push_id IN (SELECT push_id FROM forgotten); \
         DELETE FROM opens WHERE push_id IN (SELECT push_id FROM forgotten);",
    )
    .execute(&mut *transaction)
    .await?;
    // Windows long over that hold nothing (their run ended: the room's next
    // message alerts at once either way).
    sqlx::query("DELETE FROM coalescing WHERE window_until_ms < ?1 AND held_push_id IS NULL")
        .bind(before_ms)
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

#[async_trait]
impl QueueStore for SqliteStore {
    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError> {
        let push = Journal::of(push)?;
        let _accepting = self.accepting.enter();
        self.writer.write(Durability::Flushed, move |connection| accept::journal_push(connection, &push)).await
    }

    async fn fan_out_step(&self) -> Result<bool, StoreError> {
        // Accepts first (`crate::accepting`).
        self.accepting.give_way().await;
        Ok(self.fan_out_batch(i64::MAX).await?.more)
    }

    async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        claim_due_deliveries(self, now_ms, limit, lease_ms).await
    }

    async fn record_attempt(&self, delivery: DeliveryRef, update: &DeliveryUpdate) -> Result<(), StoreError> {
        record_attempt(self, delivery, update).await
    }

    async fn renew_leases(&self, deliveries: &[DeliveryRef], until_ms: i64) -> Result<(), StoreError> {
        let (rows, sends) = DeliveryRef::split(deliveries);
        let (rows, sends) = (serde_json::Value::from(rows).to_string(), serde_json::Value::from(sends).to_string());
        // Leases need no flush (see `Durability::Unflushed`).
        self.writer
            .write(Durability::Unflushed, move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE deliveries SET leased_until_ms = ?1 \
                         WHERE id IN (SELECT value FROM json_each(?2)) AND leased_until_ms IS NOT NULL \
                           AND status IN ('queued', 'retrying')",
                    )?
                    .execute(rusqlite::params![until_ms, rows])?;
                connection
                    .prepare_cached(
                        "UPDATE sends SET leased_until_ms = ?1 \
                         WHERE id IN (SELECT value FROM json_each(?2)) AND leased_until_ms IS NOT NULL AND pending > 0",
                    )?
                    .execute(rusqlite::params![until_ms, sends])?;
                Ok(())
            })
            .await
    }

    async fn release_all_leases(&self) -> Result<u64, StoreError> {
        release_all_leases(self).await
    }

    async fn release_leases(&self, deliveries: &[DeliveryRef]) -> Result<(), StoreError> {
        let (rows, sends) = DeliveryRef::split(deliveries);
        let (rows, sends) = (serde_json::Value::from(rows).to_string(), serde_json::Value::from(sends).to_string());
        self.writer
            .write(Durability::Flushed, move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE deliveries SET leased_until_ms = NULL WHERE id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute(rusqlite::params![rows])?;
                connection
                    .prepare_cached(
                        "UPDATE sends SET leased_until_ms = NULL WHERE id IN (SELECT value FROM json_each(?1))",
                    )?
                    .execute(rusqlite::params![sends])?;
                Ok(())
            })
            .await
    }

    async fn expedite_retries(
        &self,
        app_id: &AppId,
        device_types: &[DeviceType],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let app = app_id.as_str().to_owned();
        let types =
            serde_json::Value::from(device_types.iter().map(|kind| kind.as_str()).collect::<Vec<_>>()).to_string();
        self.writer
            .write(Durability::Flushed, move |connection| {
                let changed = connection
                    .prepare_cached(
                        "UPDATE deliveries SET next_attempt_at_ms = ?1 \
                         WHERE status = 'retrying' AND next_attempt_at_ms > ?1 AND next_attempt_at_ms <= ?2 \
                           AND app_id = ?3 AND device_type IN (SELECT value FROM json_each(?4))",
                    )?
                    .execute(rusqlite::params![now_ms, until_ms, app, types])?;
                Ok(u64::try_from(changed).unwrap_or_default())
            })
            .await
    }

    async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        queue_depth(self).await
    }

    fn coalescing_counts(&self) -> crate::CoalescingCounts {
        self.coalesced.read()
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        // Journaled pushes are due at once: a claim fans them out.
        if self.last_journaled().await?.is_some() {
            return Ok(Some(0));
        }
        next_due_at(self).await
    }

    async fn push_view(&self, app_id: &AppId, push_id: &PushId) -> Result<Option<PushView>, StoreError> {
        self.fan_out_journal().await?;
        push_view(self, app_id, push_id).await
    }

    async fn forget_before(&self, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError> {
        // A journaled push has no deliveries yet, so it would look finished;
        // fanning out first lets housekeeping judge it by its deliveries.
        self.fan_out_journal().await?;
        forget_before(self, before_ms, limit).await
    }
}
