//! Accepting a push on PostgreSQL: the push, its journal row and its
//! callback id, a group of concurrent accepts per transaction
//! ([`AcceptTarget`]); then the fan-out, a batch per transaction under the
//! fan-out advisory lock (see the SQLite `accept.rs` for the model).

use super::{FAN_OUT_LOCK, PgStore};
use crate::grouped::WriteGroup;
use crate::plan::{self, CounterChange, FAN_OUT_PUSHES, FAN_OUT_RECIPIENTS, Journaled};
use crate::{Accepted, CoalescingCounts, Journal, StoreError};
use async_trait::async_trait;
use pushgate_domain::{ClientId, DeviceId, PushId, Reason, RecipientState, RoomId};
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument as _;

/// Most accepts committed in one transaction.
pub(super) const MAX_ACCEPT_GROUP: usize = 256;
/// Groups of accepts committed at once: one forms while the other commits.
/// With a single one, an accept of a light load waited for the whole group
/// before it (pushgate-bench on PostgreSQL, push2clients' accepts: 519 and
/// 1,391/s against 1,126 and 1,620 without groups); more make smaller groups
/// (the store's accepts alone: ~5,400/s with one, 4,529 with two, 3,371 with
/// four; BENCHMARKS.md).
pub(super) const ACCEPT_GROUPS_IN_FLIGHT: usize = 2;

/// Where accepts commit: a group of them per transaction, three or four
/// statements whatever their number (each accept alone was five round trips
/// and a WAL flush).
pub(super) struct AcceptTarget {
    pub(super) pool: PgPool,
    /// Transactions committed, for tests: fewer than accepts when grouped.
    pub(super) transactions: Arc<AtomicU64>,
}

#[async_trait]
impl WriteGroup<Journal, Accepted> for AcceptTarget {
    async fn write_group(&self, rows: Arc<Vec<Journal>>) -> Result<Vec<Accepted>, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let duplicates = first_callbacks(&mut transaction, &rows).await?;
        let stored: Vec<&Journal> = rows.iter().filter(|row| !duplicates.contains_key(row.push_id.as_str())).collect();
        let column = |value: fn(&Journal) -> &str| stored.iter().map(|row| value(row)).collect::<Vec<_>>();
        let optional = |value: fn(&Journal) -> Option<&str>| stored.iter().map(|row| value(row)).collect::<Vec<_>>();
        let push_ids = column(|row| &row.push_id);
        let app_ids = column(|row| row.app_id.as_str());
        sqlx::query(
            "INSERT INTO pushes (push_id, app_id, kind, request, created_at_ms, deadline_ms, experiment, trace_parent) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
                                  $7::text[], $8::text[])",
        )
        .bind(&push_ids)
        .bind(&app_ids)
        .bind(column(|row| row.kind))
        .bind(column(|row| &row.request))
        .bind(stored.iter().map(|row| row.now_ms).collect::<Vec<_>>())
        .bind(stored.iter().map(|row| row.deadline_ms).collect::<Vec<_>>())
        .bind(optional(|row| row.experiment.as_deref()))
        .bind(optional(|row| row.trace_parent.as_deref()))
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO journal (push_id, plan) \
             SELECT push_id, plan FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS j (push_id, plan, n) \
             ORDER BY n",
        )
        .bind(&push_ids)
        .bind(column(|row| &row.plan))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(rows.iter().map(|row| Accepted { duplicate_of: duplicates.get(row.push_id.as_str()).cloned() }).collect())
    }
}

/// Stores the group's callback ids; answers, by push id, the pushes whose
/// callback was accepted before (by an earlier push, or by one before it in
/// the group) and the push that was. The ids go in in key order, so two
/// groups (on two nodes) that share callbacks wait for each other instead
/// of deadlocking; a callback another node is accepting waits for its commit.
async fn first_callbacks<'a>(
    connection: &mut PgConnection,
    rows: &'a [Journal],
) -> Result<HashMap<&'a str, PushId>, StoreError> {
    let called: Vec<(&Journal, &(String, String))> =
        rows.iter().filter_map(|row| row.callback.as_ref().map(|callback| (row, callback))).collect();
    if called.is_empty() {
        return Ok(HashMap::new());
    }
    let app_ids: Vec<&str> = called.iter().map(|(row, _)| row.app_id.as_str()).collect();
    let message_ids: Vec<&str> = called.iter().map(|(_, (message, _))| message.as_str()).collect();
    let to_clients: Vec<&str> = called.iter().map(|(_, (_, to))| to.as_str()).collect();
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO callbacks (app_id, message_id, to_client, push_id, created_at_ms) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
                AS c (app_id, message_id, to_client, push_id, created_at_ms) \
         ORDER BY app_id, message_id, to_client \
         ON CONFLICT DO NOTHING RETURNING push_id",
    )
    .bind(&app_ids)
    .bind(&message_ids)
    .bind(&to_clients)
    .bind(called.iter().map(|(row, _)| row.push_id.as_str()).collect::<Vec<_>>())
    .bind(called.iter().map(|(row, _)| row.now_ms).collect::<Vec<_>>())
    .fetch_all(&mut *connection)
    .await?
    .into_iter()
    .collect();
    let repeated: Vec<usize> = (0..called.len()).filter(|&n| !inserted.contains(&called[n].0.push_id)).collect();
    if repeated.is_empty() {
        return Ok(HashMap::new());
    }
    let pick = |values: &[&'a str]| repeated.iter().map(|&n| values[n]).collect::<Vec<_>>();
    let found = sqlx::query(
        "SELECT c.app_id, c.message_id, c.to_client, c.push_id \
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS k (app_id, message_id, to_client) \
         JOIN callbacks c USING (app_id, message_id, to_client)",
    )
    .bind(pick(&app_ids))
    .bind(pick(&message_ids))
    .bind(pick(&to_clients))
    .fetch_all(&mut *connection)
    .await?;
    let mut earlier = HashMap::new();
    for row in found {
        let key: (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let push_id: String = row.try_get(3)?;
        let push_id =
            PushId::parse(&push_id).map_err(|_| StoreError::Corrupt(format!("callbacks.push_id {push_id:?}")))?;
        earlier.insert(key, push_id);
    }
    repeated
        .into_iter()
        .map(|n| {
            let key = (app_ids[n].to_owned(), message_ids[n].to_owned(), to_clients[n].to_owned());
            let push_id = earlier.get(&key).cloned();
            push_id
                .map(|push_id| (called[n].0.push_id.as_str(), push_id))
                .ok_or_else(|| StoreError::Internal("a callback id neither stored nor found".into()))
        })
        .collect()
}

impl PgStore {
    /// One batch of the fan-out: (pushes fanned out, whether more wait).
    pub(super) async fn fan_out_batch(&self, up_to_seq: i64) -> Result<(usize, bool), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(FAN_OUT_LOCK).execute(&mut *transaction).await?;
        let rows = sqlx::query(
            "SELECT j.seq, j.plan, j.done, p.push_id, p.app_id, p.created_at_ms, p.trace_parent \
             FROM journal j JOIN pushes p ON p.push_id = j.push_id WHERE j.seq <= $2 ORDER BY j.seq LIMIT $1",
        )
        .bind(i64::from(FAN_OUT_PUSHES))
        .bind(up_to_seq)
        .fetch_all(&mut *transaction)
        .await?;
        // The rows taken, by `seq`: a lower `seq` may commit after a higher
        // one was read (sequences are taken at insert, not at commit), so
        // only what was read is deleted, never a range.
        let (mut taken, mut pushes, mut recipients, mut partial) = (Vec::new(), 0, 0, false);
        let mut coalesced = CoalescingCounts::default();
        for row in &rows {
            if recipients >= FAN_OUT_RECIPIENTS {
                break;
            }
            let seq: i64 = row.try_get("seq")?;
            let push_id: String = row.try_get("push_id")?;
            let read = Journaled::read(
                &push_id,
                &row.try_get::<String, _>("app_id")?,
                row.try_get("created_at_ms")?,
                &row.try_get::<String, _>("plan")?,
                row.try_get::<Option<String>, _>("trace_parent")?.as_deref(),
            );
            let push = match read {
                Ok(push) => push,
                Err(error) => {
                    tracing::error!(push.id = %push_id, error = %error, "a journaled push is unreadable; it is not fanned out");
                    taken.push(seq);
                    continue;
                }
            };
            // A push larger than a piece goes a piece per transaction (see
            // the SQLite fan-out), its row counting the recipients done.
            let all = plan::recipients(&push.fan_out);
            let done = usize::try_from(row.try_get::<i32, _>("done")?).unwrap_or_default();
            let (piece, last) = plan::next_piece(&all, done);
            let span = tracing::debug_span!("fan_out", app.id = %push.app_id, push.id = %push.push_id);
            pushgate_domain::trace::continue_from(&span, push.trace_parent.as_ref());
            coalesced.add(fan_out_push(&mut transaction, &push, piece).instrument(span).await?);
            recipients += piece.len();
            if !last {
                sqlx::query("UPDATE journal SET done = $2 WHERE seq = $1")
                    .bind(seq)
                    .bind(i32::try_from(done + piece.len()).unwrap_or(i32::MAX))
                    .execute(&mut *transaction)
                    .await?;
                partial = true;
                break;
            }
            taken.push(seq);
            pushes += 1;
        }
        if !taken.is_empty() {
            sqlx::query("DELETE FROM journal WHERE seq = ANY($1)").bind(&taken).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        self.coalesced.add(coalesced);
        let more =
            partial || pushes < rows.len() || rows.len() == usize::try_from(FAN_OUT_PUSHES).unwrap_or(usize::MAX);
        Ok((pushes, more))
    }
}

/// One push's recipients: counters, badges and routes by the shared plan,
/// and its planned deliveries in `sends` rows (see the SQLite fan-out).
async fn fan_out_push(
    connection: &mut PgConnection,
    push: &Journaled,
    clients: &[&ClientId],
) -> Result<CoalescingCounts, StoreError> {
    let clients_json = serde_json::Value::from_iter(clients.iter().map(|client| client.as_str())).to_string();
    apply_counter_change(connection, push, &clients_json).await?;
    let mut coalesced = CoalescingCounts::default();
    if let CounterChange::ClearRoom(room) = push.fan_out.badge.counter_change() {
        coalesced.cancelled =
            end_windows_by_read(connection, push.app_id.as_str(), &clients_json, room.as_str(), push.now_ms).await?;
    }
    let Recipients { totals, states, devices } = read_recipients(connection, push, clients).await?;
    let room = push.fan_out.routing.as_ref().map(|routing| &routing.room);
    let windows = match (&push.fan_out.coalescing, room) {
        (Some(_), Some(room)) => Some(coalescing_windows(connection, push, &clients_json, room).await?),
        _ => None,
    };
    let recipients = plan::plan_recipients(push, clients, totals, states, windows);
    let plan::WindowWork { held, windowed, plans } = plan::WindowWork::of(&recipients)?;
    let push_id = push.push_id.to_string();
    if let (Some(held), Some(room)) = (&held, room) {
        (coalesced.merged, coalesced.held) = hold(connection, push, &push_id, room, &plans, held).await?;
    }
    plan_sends(connection, push, &push_id, &recipients, &devices).await?;
    if let (true, Some(room), Some(coalescing)) = (windowed, room, &push.fan_out.coalescing) {
        // Each recipient's window as the plan leaves it (see the SQLite fan-out).
        sqlx::query(
            "INSERT INTO coalescing (app_id, client_id, room, window_until_ms, window_ms, held_push_id, messages, \
                                     senders) \
             SELECT $1, j ->> 'client', $2, (j ->> 'until')::bigint, $3, \
                    CASE WHEN j ->> 'window' = 'hold' THEN $4 END, (j ->> 'count')::integer, j -> 'senders' \
             FROM jsonb_array_elements($5::jsonb) AS j WHERE j ->> 'window' IS NOT NULL \
             ON CONFLICT (app_id, client_id, room) DO UPDATE SET window_until_ms = excluded.window_until_ms, \
                 window_ms = excluded.window_ms, held_push_id = excluded.held_push_id, \
                 messages = excluded.messages, senders = excluded.senders",
        )
        .bind(push.app_id.as_str())
        .bind(room.as_str())
        .bind(coalescing.window_ms)
        .bind(&push_id)
        .bind(&plans)
        .execute(&mut *connection)
        .await?;
    }
    tracing::debug!(recipients = clients.len(), held = coalesced.held, "fanned out");
    Ok(coalesced)
}

/// What the fan-out reads of a push's recipients, in one statement after
/// the counter change: their badge totals (when the push carries them),
/// their routing states (when it is routed) and the devices it targets.
struct Recipients {
    totals: Option<Vec<i64>>,
    states: Option<Vec<RecipientState>>,
    devices: Vec<plan::RecipientDevice>,
}

/// Reads [`Recipients`]: one row per targeted device of each recipient (one
/// with no device for a recipient without any), the recipient's own columns
/// computed once per recipient (the inner `OFFSET 0`) and repeated on each of
/// its devices. One statement where the totals, the routing states and the
/// devices were three, each looking up the client's preferences again.
///
/// The devices are looked up per recipient (`LATERAL … OFFSET 0`, which the
/// planner cannot turn into a join): a push reaches a few of an app's
/// devices, and with a join the planner, which guesses 100 rows for an
/// array, may scan all of them (it did: 10 ms per push at 20,000 devices).
async fn read_recipients(
    connection: &mut PgConnection,
    push: &Journaled,
    clients: &[&ClientId],
) -> Result<Recipients, StoreError> {
    let with_totals = push.fan_out.badge.carries_totals();
    let room = push.fan_out.routing.as_ref().map(|routing| routing.room.as_str());
    let (device_type, device_id) = push.fan_out.target.filter();
    let rows = sqlx::query(concat!(
        "SELECT c.key - 1, c.total, c.push_enabled, c.quiet_start, c.quiet_end, c.timezone, c.notify, c.online, \
                d.device_type, d.device_id, d.token, d.environment, COALESCE(c.locale, d.locale), d.push_key \
         FROM ( \
           SELECT j.key, j.value, p.locale, CASE WHEN $5 THEN (",
        badge_total!(),
        ")::bigint END AS total, \
                  p.push_enabled::int AS push_enabled, p.quiet_start, p.quiet_end, \
                  CASE WHEN $6::text IS NOT NULL THEN COALESCE(p.timezone, \
                      (SELECT timezone FROM devices WHERE app_id = $1 AND client_id = j.value \
                       AND timezone IS NOT NULL ORDER BY updated_at_ms DESC LIMIT 1)) END AS timezone, \
                  CASE WHEN $6::text IS NOT NULL THEN (SELECT notify FROM room_prefs WHERE app_id = $1 \
                      AND client_id = j.value AND room = $6 \
                      AND (muted_until_ms IS NULL OR muted_until_ms > $4)) END AS notify, \
                  CASE WHEN $6::text IS NOT NULL THEN (EXISTS (SELECT 1 FROM presence WHERE app_id = $1 \
                      AND client_id = j.value AND online_until_ms > $4))::int ELSE 0 END AS online \
           FROM UNNEST($2::text[]) WITH ORDINALITY AS j (value, key) \
           LEFT JOIN client_prefs p ON p.app_id = $1 AND p.client_id = j.value \
           OFFSET 0) c \
         LEFT JOIN LATERAL (SELECT * FROM devices WHERE app_id = $1 AND client_id = c.value \
                            AND CASE WHEN $7::text IS NULL THEN token_kind <> 'apns-dedicated' \
                                     ELSE device_type = $7 END \
                            AND ($8::text IS NULL OR device_id = $8) OFFSET 0) d ON true \
         ORDER BY c.key, d.device_type, d.device_id"
    ))
    .bind(push.app_id.as_str())
    .bind(clients.iter().map(|client| client.as_str()).collect::<Vec<_>>())
    .bind(push.fan_out.count_muted_rooms)
    .bind(push.now_ms)
    .bind(with_totals)
    .bind(room)
    .bind(device_type)
    .bind(device_id)
    .fetch_all(&mut *connection)
    .await?;
    let (mut totals, mut states, mut devices) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let key = usize::try_from(row.try_get::<i64, _>(0)?).unwrap_or(usize::MAX);
        if key == totals.len() {
            // The recipient's first row: its own columns.
            totals.push(row.try_get::<Option<i64>, _>(1)?.unwrap_or_default());
            states.push(plan::recipient_state((
                row.try_get::<Option<i32>, _>(2)?.map(i64::from),
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
                i64::from(row.try_get::<i32, _>(7)?),
            )));
        }
        if let Some(device_type) = row.try_get::<Option<String>, _>(8)? {
            devices.push(plan::RecipientDevice {
                key,
                device_type,
                device_id: row.try_get(9)?,
                token: row.try_get(10)?,
                environment: row.try_get(11)?,
                locale: row.try_get(12)?,
                push_key: row.try_get(13)?,
            });
        }
    }
    if totals.len() != clients.len() {
        return Err(StoreError::Internal(format!("read {} of {} recipients", totals.len(), clients.len()).into()));
    }
    Ok(Recipients { totals: with_totals.then_some(totals), states: room.map(|_| states), devices })
}

/// The push's `sends` for its recipients (see the SQLite `plan_sends`): the
/// entries built by [`plan::send_chunks`] from the devices
/// [`read_recipients`] read, the rows inserted in one statement.
async fn plan_sends(
    connection: &mut PgConnection,
    push: &Journaled,
    push_id: &str,
    recipients: &[plan::RecipientPlan<'_>],
    devices: &[plan::RecipientDevice],
) -> Result<(), StoreError> {
    let (deliveries, queued): (Vec<String>, Vec<i64>) =
        plan::send_chunks(push, recipients, devices)?.into_iter().unzip();
    sqlx::query(
        "INSERT INTO sends (push_id, app_id, experiment_id, deliveries, queued, pending, next_attempt_at_ms, \
                            updated_at_ms) \
         SELECT $1, $2, $3, s.deliveries::jsonb, s.queued, s.queued, $4, $4 \
         FROM UNNEST($5::text[], $6::integer[]) WITH ORDINALITY AS s (deliveries, queued, n) ORDER BY n",
    )
    .bind(push_id)
    .bind(push.app_id.as_str())
    .bind(push.fan_out.experiment.as_ref().map(|experiment| experiment.id.as_str()))
    .bind(push.now_ms)
    .bind(deliveries)
    .bind(queued.into_iter().map(|queued| i32::try_from(queued).unwrap_or(i32::MAX)).collect::<Vec<_>>())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Each client's coalescing window in `room` (see the SQLite fan-out). The
/// fan-out lock keeps them: the ends of windows take it too.
async fn coalescing_windows(
    connection: &mut PgConnection,
    push: &Journaled,
    clients: &str,
    room: &RoomId,
) -> Result<Vec<Option<plan::Window>>, StoreError> {
    let rows: String = sqlx::query_scalar(
        "SELECT COALESCE(jsonb_agg(CASE WHEN c.client_id IS NULL THEN NULL \
                    ELSE jsonb_build_array(c.window_until_ms, c.messages, c.senders, c.held_push_id IS NOT NULL) \
                    END ORDER BY j.key), '[]')::text \
         FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS j (value, key) \
         LEFT JOIN coalescing c ON c.app_id = $1 AND c.client_id = j.value AND c.room = $3",
    )
    .bind(push.app_id.as_str())
    .bind(clients)
    .bind(room.as_str())
    .fetch_one(&mut *connection)
    .await?;
    plan::windows(&rows)
}

/// Holds the message for the recipients the plan holds, `held_clients` (see
/// the SQLite `hold`); answers the deliveries merged and held.
async fn hold(
    connection: &mut PgConnection,
    push: &Journaled,
    push_id: &str,
    room: &RoomId,
    plans: &str,
    held_clients: &str,
) -> Result<(u64, u64), StoreError> {
    let merged = sqlx::query(
        "UPDATE deliveries d SET status = 'coalesced', carried_by = $1, next_attempt_at_ms = NULL, updated_at_ms = $5 \
         FROM coalescing c \
         WHERE c.app_id = $2 AND c.room = $3 AND c.client_id IN (SELECT jsonb_array_elements_text($4::jsonb)) \
           AND c.held_push_id IS NOT NULL \
           AND d.status = 'held' AND d.push_id = c.held_push_id AND d.client_id = c.client_id",
    )
    .bind(push_id)
    .bind(push.app_id.as_str())
    .bind(room.as_str())
    .bind(held_clients)
    .bind(push.now_ms)
    .execute(&mut *connection)
    .await?
    .rows_affected();
    let held = sqlx::query(
        "INSERT INTO deliveries (push_id, app_id, client_id, device_type, device_id, token, environment, locale, \
                                 badge, status, attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, \
                                 experiment_id, variant, push_key) \
         SELECT $1, $2, d.client_id, d.device_type, d.device_id, d.token, d.environment, \
                COALESCE(p.locale, d.locale), (j ->> 'badge')::bigint, 'held', 0, (j ->> 'until')::bigint, $3, \
                j ->> 'mode', j ->> 'route_reason', $4, j ->> 'variant', d.push_key \
         FROM jsonb_array_elements($5::jsonb) AS j \
         CROSS JOIN LATERAL (SELECT * FROM devices WHERE app_id = $2 AND client_id = j ->> 'client' OFFSET 0) d \
         LEFT JOIN client_prefs p ON p.app_id = d.app_id AND p.client_id = d.client_id \
         WHERE j ->> 'window' = 'hold' AND d.device_type <> 'ios-voip' AND d.token_kind <> 'apns-dedicated' \
           AND d.device_id IS DISTINCT FROM $6",
    )
    .bind(push_id)
    .bind(push.app_id.as_str())
    .bind(push.now_ms)
    .bind(push.fan_out.experiment.as_ref().map(|experiment| experiment.id.as_str()))
    .bind(plans)
    .bind(push.fan_out.except_device.as_ref().map(DeviceId::as_str))
    .execute(&mut *connection)
    .await?
    .rows_affected();
    Ok((merged, held))
}

/// A read ends the clients' windows in `room` (see the SQLite
/// `end_windows_by_read`); the caller holds the fan-out lock. Answers the
/// deliveries cancelled.
pub(super) async fn end_windows_by_read(
    connection: &mut PgConnection,
    app: &str,
    clients: &str,
    room: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let cancelled = sqlx::query(
        "UPDATE deliveries SET status = 'skipped', reason = $5, next_attempt_at_ms = NULL, updated_at_ms = $4 \
         WHERE status = 'held' AND (client_id, push_id) IN ( \
             SELECT client_id, held_push_id FROM coalescing \
             WHERE app_id = $1 AND room = $3 AND held_push_id IS NOT NULL \
               AND client_id IN (SELECT jsonb_array_elements_text($2::jsonb)))",
    )
    .bind(app)
    .bind(clients)
    .bind(room)
    .bind(now_ms)
    .bind(Reason::ReadBeforeSent.to_string())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM coalescing WHERE app_id = $1 AND room = $3 \
         AND client_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
    )
    .bind(app)
    .bind(clients)
    .bind(room)
    .execute(&mut *connection)
    .await?;
    Ok(cancelled)
}

/// Ends the coalescing windows due at `now_ms` that hold a message (see the
/// SQLite `end_windows`), under the fan-out lock so that no fan-out merges
/// into a window while it ends. Cheap when none is due: one indexed read.
pub(super) async fn end_windows(store: &PgStore, now_ms: i64, limit: u32) -> Result<(), StoreError> {
    let due: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM coalescing WHERE held_push_id IS NOT NULL AND window_until_ms <= $1)",
    )
    .bind(now_ms)
    .fetch_one(&store.pool)
    .await?;
    if !due {
        return Ok(());
    }
    let mut transaction = store.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(FAN_OUT_LOCK).execute(&mut *transaction).await?;
    let queued = sqlx::query(
        "WITH due AS (SELECT app_id, client_id, room, held_push_id FROM coalescing \
                      WHERE held_push_id IS NOT NULL AND window_until_ms <= $1 \
                      ORDER BY window_until_ms LIMIT $2), \
              ended AS (UPDATE coalescing c SET window_until_ms = $1 + c.window_ms, held_push_id = NULL FROM due \
                        WHERE (c.app_id, c.client_id, c.room) = (due.app_id, due.client_id, due.room) \
                        RETURNING c.app_id, c.client_id, c.room, due.held_push_id, c.messages, c.senders) \
         UPDATE deliveries d SET status = 'queued', next_attempt_at_ms = $1, updated_at_ms = $1, \
             summary = jsonb_build_object('count', GREATEST(e.messages, COALESCE(u.unread, 0), 1), \
                                          'senders', e.senders)::text \
         FROM ended e LEFT JOIN room_unreads u \
              ON u.app_id = e.app_id AND u.client_id = e.client_id AND u.room = e.room \
         WHERE d.status = 'held' AND d.push_id = e.held_push_id AND d.client_id = e.client_id",
    )
    .bind(now_ms)
    .bind(i64::from(limit))
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    transaction.commit().await?;
    tracing::debug!(deliveries = queued, "coalescing windows ended");
    Ok(())
}

/// One client's badge total (`j.value`; `$1` the app, `$3` whether muted
/// rooms count, `$4` now), as an SQL expression (see the SQLite `BADGE_TOTALS`).
macro_rules! badge_total {
    () => {
        "(SELECT COALESCE(SUM(u.unread), 0) FROM room_unreads u \
          WHERE u.app_id = $1 AND u.client_id = j.value AND ($3 OR NOT EXISTS ( \
              SELECT 1 FROM room_prefs r WHERE r.app_id = $1 AND r.client_id = j.value AND r.room = u.room \
              AND r.muted AND (r.muted_until_ms IS NULL OR r.muted_until_ms > $4)))) \
         + (SELECT COALESCE(SUM(count), 0) FROM badge_sources WHERE app_id = $1 AND client_id = j.value)"
    };
}
use badge_total;

/// The badge totals of `$2` (clients, a JSON array), in its order.
const BADGE_TOTALS: &str = concat!(
    "SELECT COALESCE(jsonb_agg(total ORDER BY key), '[]')::text FROM (SELECT j.key, ",
    badge_total!(),
    " AS total FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS j (value, key)) totals"
);

pub(super) async fn badge_totals(
    connection: &mut PgConnection,
    app: &str,
    clients: &str,
    count_muted_rooms: bool,
    now_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let totals: String = sqlx::query_scalar(BADGE_TOTALS)
        .bind(app)
        .bind(clients)
        .bind(count_muted_rooms)
        .bind(now_ms)
        .fetch_one(connection)
        .await?;
    serde_json::from_str(&totals).map_err(|error| StoreError::Corrupt(format!("badge totals: {error}")))
}

/// The push's change to its recipients' unread counts (`clients`, a JSON array).
async fn apply_counter_change(
    connection: &mut PgConnection,
    push: &Journaled,
    clients: &str,
) -> Result<(), StoreError> {
    let app = push.app_id.as_str();
    match push.fan_out.badge.counter_change() {
        CounterChange::None => {}
        CounterChange::CountUnread(room) => {
            sqlx::query(
                "INSERT INTO room_unreads (app_id, client_id, room, unread, updated_at_ms) \
                 SELECT $1, j.value, $3, 1, $4 FROM jsonb_array_elements_text($2::jsonb) AS j (value) \
                 ON CONFLICT (app_id, client_id, room) DO UPDATE \
                 SET unread = room_unreads.unread + 1, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(app)
            .bind(clients)
            .bind(room.as_str())
            .bind(push.now_ms)
            .execute(&mut *connection)
            .await?;
        }
        CounterChange::ClearRoom(room) => {
            sqlx::query(
                "DELETE FROM room_unreads WHERE app_id = $1 AND room = $3 \
                 AND client_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
            )
            .bind(app)
            .bind(clients)
            .bind(room.as_str())
            .execute(&mut *connection)
            .await?;
        }
    }
    Ok(())
}
