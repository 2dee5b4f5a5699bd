//! The queue on PostgreSQL: accepts, claims (`FOR UPDATE SKIP LOCKED`),
//! outcomes, leases, status and housekeeping.

use super::PgStore;
use crate::outcomes::OutcomeGroup;
use crate::{
    Accepted, ClaimedDelivery, DeliveryRef, DeliveryStatus, DeliveryUpdate, DeliveryView, NewPush, PushView,
    QueueDepth, QueueStore, StoreError, claim,
};
use async_trait::async_trait;
use pushgate_domain::{AppId, DeliveryMode, DeviceType, PushId, Reason};
use sqlx::postgres::PgConnection;
use std::collections::HashMap;

/// Records outcomes as the SQLite store does (see `sqlite::queue::record`):
/// own rows updated, planned entries settled in their send, a row of their
/// own only for an outcome other than a first-attempt success.
pub(super) async fn record(
    connection: &mut PgConnection,
    updates: &[(DeliveryRef, DeliveryUpdate)],
) -> Result<(), StoreError> {
    let group = OutcomeGroup::of(updates);
    if let Some(rows) = &group.rows {
        sqlx::query(
            "UPDATE deliveries d SET status = u.status, reason = u.reason, next_attempt_at_ms = u.next, \
                 leased_until_ms = NULL, attempts = d.attempts + u.attempted, updated_at_ms = u.now \
             FROM jsonb_to_recordset($1::jsonb) AS u (id BIGINT, status TEXT, reason TEXT, next BIGINT, \
                                                      attempted INTEGER, now BIGINT) \
             WHERE d.id = u.id",
        )
        .bind(rows)
        .execute(&mut *connection)
        .await?;
    }
    if let Some(own_rows) = &group.own_rows {
        sqlx::query(
            // Each send's entries parsed once (`MATERIALIZED`), whatever the
            // number of its entries getting a row.
            "WITH u AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS u (send BIGINT, index INTEGER, status TEXT, \
                                   reason TEXT, next BIGINT, attempted INTEGER, now BIGINT)), \
                  s AS MATERIALIZED (SELECT id, push_id, app_id, experiment_id, deliveries::jsonb AS entries \
                                     FROM sends WHERE id IN (SELECT send FROM u)) \
             INSERT INTO deliveries (push_id, app_id, client_id, device_type, device_id, token, environment, locale, \
                                     badge, status, reason, attempts, next_attempt_at_ms, updated_at_ms, mode, \
                                     route_reason, experiment_id, variant, send_id, send_index, push_key) \
             SELECT s.push_id, s.app_id, e ->> 'client_id', e ->> 'device_type', e ->> 'device_id', e ->> 'token', \
                    e ->> 'environment', e ->> 'locale', (e ->> 'badge')::bigint, u.status, u.reason, u.attempted, \
                    u.next, u.now, e ->> 'mode', e ->> 'route_reason', s.experiment_id, e ->> 'variant', s.id, u.index, \
                    e ->> 'push_key' \
             FROM u JOIN s ON s.id = u.send CROSS JOIN LATERAL (SELECT s.entries -> u.index AS e) entry \
             ON CONFLICT (send_id, send_index) WHERE send_id IS NOT NULL DO NOTHING",
        )
        .bind(own_rows)
        .execute(&mut *connection)
        .await?;
    }
    if !group.settled.is_empty() {
        let ids: Vec<i64> = group.settled.keys().copied().collect();
        // `settled` is computed from the row being updated (not from a
        // subquery read before its lock), so two nodes settling the same
        // send at once both count.
        sqlx::query(
            "UPDATE sends s SET updated_at_ms = GREATEST(s.updated_at_ms, u.now), \
                 settled = (SELECT jsonb_agg(DISTINCT v) FROM ( \
                              SELECT jsonb_array_elements(s.settled) AS v \
                              UNION SELECT jsonb_array_elements(u.indexes)) merged) \
             FROM jsonb_to_recordset($1::jsonb) AS u (send BIGINT, indexes JSONB, now BIGINT) \
             WHERE s.id = u.send",
        )
        .bind(group.settled_json())
        .execute(&mut *connection)
        .await?;
        sqlx::query(
            "UPDATE sends SET pending = queued - jsonb_array_length(settled), \
                 leased_until_ms = CASE WHEN queued > jsonb_array_length(settled) THEN leased_until_ms END \
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl QueueStore for PgStore {
    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError> {
        let _accepting = self.accepting.enter();
        self.accepts.write(crate::Journal::of(push)?).await
    }

    async fn fan_out_step(&self) -> Result<bool, StoreError> {
        // Accepts first (`crate::accepting`).
        self.accepting.give_way().await;
        Ok(self.fan_out_batch(i64::MAX).await?.1)
    }

    async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        super::accept::end_windows(self, now_ms, limit).await?;
        let mut transaction = self.pool.begin().await?;
        // `SKIP LOCKED`: what another node is claiming right now is left to it.
        let own: String = sqlx::query_scalar(
            "WITH due AS (SELECT id FROM deliveries \
                          WHERE status IN ('queued', 'retrying') AND next_attempt_at_ms <= $1 \
                            AND (leased_until_ms IS NULL OR leased_until_ms <= $1) \
                          ORDER BY next_attempt_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED), \
                  leased AS (UPDATE deliveries d SET leased_until_ms = $3 FROM due WHERE d.id = due.id \
                             RETURNING d.id, d.push_id, d.app_id, d.client_id, d.device_type, d.device_id, d.token, \
                                       d.environment, d.locale, d.badge, d.attempts, d.mode, d.variant, \
                                       d.summary, d.push_key) \
             SELECT COALESCE(jsonb_agg(to_jsonb(leased)), '[]')::text FROM leased",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(now_ms + lease_ms)
        .fetch_one(&mut *transaction)
        .await?;
        let own = claim::parse_rows(&own)?;
        let budget = i64::from(limit).saturating_sub(i64::try_from(own.len()).unwrap_or(i64::MAX));
        let sends = if budget > 0 {
            let sends: String = sqlx::query_scalar(
                "WITH due AS (SELECT id, pending, next_attempt_at_ms FROM sends \
                              WHERE pending > 0 AND next_attempt_at_ms <= $1 \
                                AND (leased_until_ms IS NULL OR leased_until_ms <= $1) \
                              ORDER BY next_attempt_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
                      picked AS (SELECT id FROM (SELECT id, SUM(pending) OVER (ORDER BY next_attempt_at_ms, id) \
                                                        - pending AS before FROM due) ahead \
                                 WHERE before < $2), \
                      leased AS (UPDATE sends s SET leased_until_ms = $3 FROM picked WHERE s.id = picked.id \
                                 RETURNING s.id, s.push_id, s.app_id, s.deliveries, s.settled) \
                 SELECT '[' || COALESCE(string_agg(concat('{\"id\":', id, ',\"push_id\":', to_json(push_id), \
                            ',\"app_id\":', to_json(app_id), ',\"settled\":', COALESCE(settled, 'null'), \
                            ',\"deliveries\":', deliveries, '}'), ','), '') || ']' FROM leased",
            )
            .bind(now_ms)
            .bind(budget)
            .bind(now_ms + lease_ms)
            .fetch_one(&mut *transaction)
            .await?;
            claim::parse_rows(&sends)?
        } else {
            Vec::new()
        };
        transaction.commit().await?;
        let mut pushes = HashMap::new();
        let push_ids: Vec<&str> = claim::push_ids(&own, &sends).into_iter().collect();
        if !push_ids.is_empty() {
            let rows = sqlx::query_as::<_, (String, String, String, i64, Option<String>, Option<String>)>(
                "SELECT push_id, kind, request, deadline_ms, experiment, trace_parent FROM pushes WHERE push_id = ANY($1)",
            )
            .bind(&push_ids)
            .fetch_all(&self.pool)
            .await?;
            for (push_id, kind, request, deadline_ms, experiment, trace_parent) in rows {
                let (id, claimed) = claim::claimed_push(
                    &push_id,
                    &kind,
                    &request,
                    deadline_ms,
                    experiment.as_deref(),
                    trace_parent.as_deref(),
                )?;
                pushes.insert(id, claimed);
            }
        }
        claim::expand(&own, &sends, &pushes)
    }

    async fn record_attempt(&self, delivery: DeliveryRef, update: &DeliveryUpdate) -> Result<(), StoreError> {
        self.outcomes.write((delivery, update.clone())).await
    }

    async fn renew_leases(&self, deliveries: &[DeliveryRef], until_ms: i64) -> Result<(), StoreError> {
        let (rows, sends) = DeliveryRef::split(deliveries);
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET leased_until_ms = $1 \
             WHERE id = ANY($2) AND leased_until_ms IS NOT NULL AND status IN ('queued', 'retrying')",
        )
        .bind(until_ms)
        .bind(rows)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE sends SET leased_until_ms = $1 WHERE id = ANY($2) AND leased_until_ms IS NOT NULL AND pending > 0",
        )
        .bind(until_ms)
        .bind(sends)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn release_leases(&self, deliveries: &[DeliveryRef]) -> Result<(), StoreError> {
        let (rows, sends) = DeliveryRef::split(deliveries);
        let mut transaction = self.pool.begin().await?;
        sqlx::query("UPDATE deliveries SET leased_until_ms = NULL WHERE id = ANY($1)")
            .bind(rows)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("UPDATE sends SET leased_until_ms = NULL WHERE id = ANY($1)")
            .bind(sends)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn expedite_retries(
        &self,
        app_id: &AppId,
        device_types: &[DeviceType],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let types: Vec<&str> = device_types.iter().map(|kind| kind.as_str()).collect();
        let changed = sqlx::query(
            "UPDATE deliveries SET next_attempt_at_ms = $1 \
             WHERE status = 'retrying' AND next_attempt_at_ms > $1 AND next_attempt_at_ms <= $2 \
               AND app_id = $3 AND device_type = ANY($4)",
        )
        .bind(now_ms)
        .bind(until_ms)
        .bind(app_id.as_str())
        .bind(types)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected())
    }

    async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let mut transaction = self.pool.begin().await?;
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

    async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        let (journaled, queued, retrying, held): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM journal), \
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'queued') \
                      + (SELECT COALESCE(SUM(pending), 0) FROM sends WHERE pending > 0)::bigint, \
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'retrying'), \
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'held')",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(QueueDepth {
            journaled: count(journaled),
            queued: count(queued),
            retrying: count(retrying),
            held: count(held),
        })
    }

    fn coalescing_counts(&self) -> crate::CoalescingCounts {
        self.coalesced.read()
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        if self.last_journaled().await?.is_some() {
            return Ok(Some(0));
        }
        Ok(sqlx::query_scalar(
            "SELECT MIN(due) FROM ( \
               SELECT MIN(GREATEST(next_attempt_at_ms, COALESCE(leased_until_ms, next_attempt_at_ms))) AS due \
               FROM deliveries WHERE status IN ('queued', 'retrying') \
               UNION ALL \
               SELECT MIN(GREATEST(next_attempt_at_ms, COALESCE(leased_until_ms, next_attempt_at_ms))) \
               FROM sends WHERE pending > 0 \
               UNION ALL \
               SELECT MIN(window_until_ms) FROM coalescing WHERE held_push_id IS NOT NULL) due",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn push_view(&self, app_id: &AppId, push_id: &PushId) -> Result<Option<PushView>, StoreError> {
        self.fan_out_journal().await?;
        let id = push_id.to_string();
        let Some(created_at_ms) =
            sqlx::query_scalar::<_, i64>("SELECT created_at_ms FROM pushes WHERE push_id = $1 AND app_id = $2")
                .bind(&id)
                .bind(app_id.as_str())
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        type ViewRow = (
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            i32,
            Option<i64>,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows = sqlx::query_as::<_, ViewRow>(
            "SELECT client_id, device_type, device_id, status, reason, attempts, next_attempt_at_ms, updated_at_ms, \
                    mode, route_reason, variant, carried_by \
             FROM delivery_states WHERE push_id = $1 ORDER BY send_id IS NULL, send_id, send_index",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        // Per client, the last of a run of merged messages carries them all
        // (see the SQLite `carriers`).
        let carriers: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
            "WITH RECURSIVE chain (client_id, carrier, depth) AS ( \
               SELECT client_id, carried_by, 0 FROM deliveries \
               WHERE push_id = $1 AND status = 'coalesced' AND carried_by IS NOT NULL \
               UNION \
               SELECT c.client_id, d.carried_by, c.depth + 1 FROM chain c \
               JOIN deliveries d ON d.push_id = c.carrier AND d.client_id = c.client_id \
               WHERE d.status = 'coalesced' AND d.carried_by IS NOT NULL AND c.depth < 100000) \
             SELECT client_id, carrier FROM chain c \
             WHERE depth = (SELECT MAX(depth) FROM chain x WHERE x.client_id = c.client_id)",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let deliveries = rows
            .into_iter()
            .map(
                |(
                    client_id,
                    device_type,
                    device_id,
                    status,
                    reason,
                    attempts,
                    next,
                    updated,
                    mode,
                    route,
                    variant,
                    carried,
                )| {
                    let carried_by = carriers
                        .get(&client_id)
                        .cloned()
                        .or(carried)
                        .map(|raw| PushId::parse(&raw))
                        .transpose()
                        .map_err(|_| StoreError::Corrupt("deliveries.carried_by".into()))?;
                    Ok(DeliveryView {
                        carried_by,
                        client_id,
                        device_type,
                        device_id,
                        status: DeliveryStatus::parse(&status)
                            .ok_or_else(|| StoreError::Corrupt(format!("deliveries.status {status:?}")))?,
                        reason: reason.as_deref().map(Reason::parse),
                        mode: mode
                            .map(|raw| DeliveryMode::parse(&raw))
                            .transpose()
                            .map_err(|error| StoreError::Corrupt(format!("deliveries.mode: {error}")))?,
                        route_reason: route,
                        variant,
                        attempts: u32::try_from(attempts).unwrap_or_default(),
                        next_attempt_at_ms: next,
                        updated_at_ms: updated,
                    })
                },
            )
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(PushView { push_id: *push_id, created_at_ms, deliveries }))
    }

    async fn forget_before(&self, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError> {
        self.fan_out_journal().await?;
        let mut transaction = self.pool.begin().await?;
        // One node at a time: a node that finds another at it leaves it be.
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(Self::HOUSEKEEPING_LOCK)
            .fetch_one(&mut *transaction)
            .await?;
        if !ours {
            return Ok((0, 0));
        }
        let pushes: i64 = sqlx::query_scalar(
            "WITH forgotten AS ( \
               SELECT push_id FROM pushes p WHERE created_at_ms < $1 \
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.push_id = p.push_id \
                               AND d.status IN ('queued', 'retrying', 'held')) \
               AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.push_id = p.push_id AND s.pending > 0) \
               AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.push_id = p.push_id) \
               ORDER BY created_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED), \
             gone_deliveries AS (DELETE FROM deliveries WHERE push_id IN (SELECT push_id FROM forgotten)), \
             gone_sends AS (DELETE FROM sends WHERE push_id IN (SELECT push_id FROM forgotten)), \
             gone_opens AS (DELETE FROM opens WHERE push_id IN (SELECT push_id FROM forgotten)), \
             gone_windows AS (DELETE FROM coalescing WHERE window_until_ms < $1 AND held_push_id IS NULL), \
             gone AS (DELETE FROM pushes WHERE push_id IN (SELECT push_id FROM forgotten) RETURNING 1) \
             SELECT COUNT(*) FROM gone",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_one(&mut *transaction)
        .await?;
        let callbacks: i64 = sqlx::query_scalar(
            "WITH old AS (SELECT app_id, message_id, to_client FROM callbacks WHERE created_at_ms < $1 \
                          ORDER BY created_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED), \
                  gone AS (DELETE FROM callbacks c USING old \
                           WHERE (c.app_id, c.message_id, c.to_client) = (old.app_id, old.message_id, old.to_client) \
                           RETURNING 1) \
             SELECT COUNT(*) FROM gone",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((u64::try_from(pushes).unwrap_or_default(), u64::try_from(callbacks).unwrap_or_default()))
    }
}
