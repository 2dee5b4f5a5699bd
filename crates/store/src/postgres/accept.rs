//! Accepting a push on PostgreSQL: the push, its journal row and its
//! callback id, a group of concurrent accepts per transaction
//! ([`AcceptTarget`]); then the fan-out, a batch per transaction under the
//! fan-out advisory lock (see the SQLite `accept.rs` for the model).

use super::{FAN_OUT_LOCK, PgStore};
use crate::grouped::WriteGroup;
use crate::plan::{self, CounterChange, FAN_OUT_PIECE, FAN_OUT_PUSHES, FAN_OUT_RECIPIENTS, Journaled};
use crate::{Accepted, CoalescingCounts, Journal, StoreError};
use async_trait::async_trait;
use pushgate_domain::{ClientId, DeviceId, PushId, Reason, RecipientState, RoomId};
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap, HashSet};
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
    ///
    /// Consecutive pushes that neither coalesce nor clear a room, each whole,
    /// are fanned out together ([`fan_out_run`]: three statements for all of
    /// them); any other push alone ([`fan_out_push`]), after the run before
    /// it, so that each push sees the counters of those journaled before it.
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
        let mut run = Vec::new();
        for row in &rows {
            if recipients >= FAN_OUT_RUN_RECIPIENTS {
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
            let done = usize::try_from(row.try_get::<i32, _>("done")?).unwrap_or_default();
            let whole = plan::recipients(&push.fan_out).len();
            if done == 0 && whole <= FAN_OUT_PIECE && joins_run(&push) {
                recipients += whole;
                run.push(push);
                taken.push(seq);
                pushes += 1;
                continue;
            }
            if recipients >= FAN_OUT_RECIPIENTS {
                break;
            }
            fan_out_run(&mut transaction, &std::mem::take(&mut run)).await?;
            // A push larger than a piece goes a piece per transaction (see
            // the SQLite fan-out), its row counting the recipients done.
            let all = plan::recipients(&push.fan_out);
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
        fan_out_run(&mut transaction, &run).await?;
        if !taken.is_empty() {
            sqlx::query("DELETE FROM journal WHERE seq = ANY($1)").bind(&taken).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        self.coalesced.add(coalesced);
        let more =
            partial || taken.len() < rows.len() || rows.len() == usize::try_from(FAN_OUT_PUSHES).unwrap_or(usize::MAX);
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
    let read = read_recipients(connection, &[(push, clients.to_vec())], false).await?;
    let Some(Recipients { totals, states, devices, .. }) = read.into_iter().next() else {
        return Err(StoreError::Internal("no recipients read".into()));
    };
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
    let mut sends = RunSends::default();
    sends.add(push, plan::send_chunks(push, &recipients, &devices)?);
    sends.insert(connection).await?;
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

/// Most recipients of a run of pushes fanned out in one transaction
/// ([`fan_out_run`]): its statements' cost grows with its recipients, the
/// per-statement cost (planning, a round trip) does not. A push alone keeps
/// [`FAN_OUT_RECIPIENTS`].
const FAN_OUT_RUN_RECIPIENTS: usize = FAN_OUT_PIECE;

/// Whether a push may be fanned out in a run ([`fan_out_run`]): its counter
/// change only adds unreads (a run's badge totals are the counters read
/// before it plus what the run adds), and it holds nothing (coalescing
/// reads and writes each recipient's window push by push).
fn joins_run(push: &Journaled) -> bool {
    push.fan_out.coalescing.is_none() && !matches!(push.fan_out.badge.counter_change(), CounterChange::ClearRoom(_))
}

/// Fans out a run of whole pushes (see [`joins_run`]) in three statements
/// whatever their number, where each push alone took three: one read of
/// every recipient of every push ([`read_recipients`], before the run's
/// counter changes), one upsert of the unreads the run adds, one insert of
/// its `sends`. A recipient's badge total for a push is the one read plus
/// the unreads the run added to it up to and with that push (journal order)
/// in the rooms that push's badge counts: what reading after each push's own
/// change, push by push, answers.
async fn fan_out_run(connection: &mut PgConnection, run: &[Journaled]) -> Result<(), StoreError> {
    if run.is_empty() {
        return Ok(());
    }
    let members: Vec<(&Journaled, Vec<&ClientId>)> =
        run.iter().map(|push| (push, plan::recipients(&push.fan_out))).collect();
    let read = read_recipients(connection, &members, true).await?;
    // The unreads the run adds per (app, client, room) so far: (count, last time).
    let mut unreads: BTreeMap<(&str, &str, &str), (i64, i64)> = BTreeMap::new();
    let mut sends = RunSends::default();
    for ((push, clients), recipients) in members.iter().zip(read) {
        let Recipients { mut totals, states, devices, uncounted } = recipients;
        let app = push.app_id.as_str();
        if let CounterChange::CountUnread(room) = push.fan_out.badge.counter_change() {
            for (n, client) in clients.iter().enumerate() {
                let client = client.as_str();
                let unread = unreads.entry((app, client, room.as_str())).or_insert((0, push.now_ms));
                *unread = (unread.0 + 1, push.now_ms);
                if let (Some(total), Some(uncounted)) =
                    (totals.as_mut().and_then(|totals| totals.get_mut(n)), uncounted.get(n))
                {
                    // The client's rooms the run added to so far, those this push's badge counts.
                    *total += unreads
                        .range((app, client, "")..)
                        .take_while(|((other_app, other, _), _)| (*other_app, *other) == (app, client))
                        .filter(|((_, _, room), _)| !uncounted.iter().any(|muted| muted == room))
                        .map(|(_, (count, _))| count)
                        .sum::<i64>();
                }
            }
        }
        let span = tracing::debug_span!("fan_out", app.id = %push.app_id, push.id = %push.push_id);
        pushgate_domain::trace::continue_from(&span, push.trace_parent.as_ref());
        let _planning = span.enter();
        let recipients = plan::plan_recipients(push, clients, totals, states, None);
        sends.add(push, plan::send_chunks(push, &recipients, &devices)?);
        tracing::debug!(recipients = clients.len(), run = run.len(), "fanned out");
    }
    if !unreads.is_empty() {
        // Rows in key order (the BTreeMap's), so their locks are taken in a stable order.
        sqlx::query(
            "INSERT INTO room_unreads (app_id, client_id, room, unread, updated_at_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
             ON CONFLICT (app_id, client_id, room) DO UPDATE \
             SET unread = room_unreads.unread + excluded.unread, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(unreads.keys().map(|(app, _, _)| *app).collect::<Vec<_>>())
        .bind(unreads.keys().map(|(_, client, _)| *client).collect::<Vec<_>>())
        .bind(unreads.keys().map(|(_, _, room)| *room).collect::<Vec<_>>())
        .bind(unreads.values().map(|(count, _)| *count).collect::<Vec<_>>())
        .bind(unreads.values().map(|(_, now_ms)| *now_ms).collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
    }
    sends.insert(connection).await
}

/// The `sends` rows of one or more pushes, inserted in one statement.
#[derive(Default)]
struct RunSends<'a> {
    push_ids: Vec<String>,
    apps: Vec<&'a str>,
    experiments: Vec<Option<&'a str>>,
    times: Vec<i64>,
    deliveries: Vec<String>,
    queued: Vec<i32>,
}

impl<'a> RunSends<'a> {
    /// A push's rows ([`plan::send_chunks`]).
    fn add(&mut self, push: &'a Journaled, chunks: Vec<(String, i64)>) {
        let push_id = push.push_id.to_string();
        for (deliveries, queued) in chunks {
            self.push_ids.push(push_id.clone());
            self.apps.push(push.app_id.as_str());
            self.experiments.push(push.fan_out.experiment.as_ref().map(|experiment| experiment.id.as_str()));
            self.times.push(push.now_ms);
            self.deliveries.push(deliveries);
            self.queued.push(i32::try_from(queued).unwrap_or(i32::MAX));
        }
    }

    async fn insert(self, connection: &mut PgConnection) -> Result<(), StoreError> {
        if self.push_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO sends (push_id, app_id, experiment_id, deliveries, queued, pending, next_attempt_at_ms, \
                                updated_at_ms) \
             SELECT s.push_id, s.app_id, s.experiment_id, s.deliveries, s.queued, s.queued, s.now, s.now \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::integer[]) \
                  WITH ORDINALITY AS s (push_id, app_id, experiment_id, now, deliveries, queued, n) ORDER BY n",
        )
        .bind(self.push_ids)
        .bind(self.apps)
        .bind(self.experiments)
        .bind(self.times)
        .bind(self.deliveries)
        .bind(self.queued)
        .execute(&mut *connection)
        .await?;
        Ok(())
    }
}

/// What the fan-out reads of a push's recipients: their badge totals (when
/// the push carries them), their routing states (when it is routed), the
/// devices it targets and, for a run, the rooms each one's badge does not
/// count (muted).
struct Recipients {
    totals: Option<Vec<i64>>,
    states: Option<Vec<RecipientState>>,
    devices: Vec<plan::RecipientDevice>,
    uncounted: Vec<Vec<String>>,
}

/// Reads [`Recipients`] of one or more pushes in one statement: one row per
/// device of each recipient of each push (one with no device for a
/// recipient without any), the recipient's own columns computed once per
/// (push, recipient) (the inner `OFFSET 0`) and repeated on each of its
/// devices. `run`: whether the caller adds the run's unreads to the totals
/// itself (and so needs each recipient's muted rooms); a push alone is read
/// after its counter change.
///
/// All of a recipient's devices are read, the push's target and the
/// recipient's time zone (its preference, else its latest device's) picked
/// from them here: one index lookup where a second one for the time zone
/// cost as much as the devices' (~6 µs a recipient, `EXPLAIN ANALYZE`).
/// They are looked up per recipient (`LATERAL … OFFSET 0`, which the planner
/// cannot turn into a join): a push reaches a few of an app's devices, and
/// with a join the planner, which guesses 100 rows for an array, may scan all
/// of them (it did: 10 ms per push at 20,000 devices).
async fn read_recipients(
    connection: &mut PgConnection,
    pushes: &[(&Journaled, Vec<&ClientId>)],
    run: bool,
) -> Result<Vec<Recipients>, StoreError> {
    let (mut which, mut clients) = (Vec::new(), Vec::new());
    for (n, (_, recipients)) in pushes.iter().enumerate() {
        which.extend(std::iter::repeat_n(i32::try_from(n + 1).unwrap_or(i32::MAX), recipients.len()));
        clients.extend(recipients.iter().map(|client| client.as_str()));
    }
    let rows = sqlx::query(concat!(
        "SELECT c.key - 1, c.push, c.total, c.uncounted, c.push_enabled, c.quiet_start, c.quiet_end, c.timezone, \
                c.notify, c.online, d.device_type, d.device_id, d.token, d.environment, COALESCE(c.locale, d.locale), \
                d.push_key, d.token_kind, d.timezone, d.updated_at_ms \
         FROM ( \
           SELECT j.key, j.push, j.value, q.app, p.locale, CASE WHEN q.with_totals THEN (",
        badge_total!("q.app", "q.count_muted", "q.now"),
        ")::bigint END AS total, \
                  CASE WHEN $8 AND q.with_totals AND NOT q.count_muted THEN ARRAY(SELECT r.room FROM room_prefs r \
                      WHERE r.app_id = q.app AND r.client_id = j.value AND r.muted \
                      AND (r.muted_until_ms IS NULL OR r.muted_until_ms > q.now)) ELSE '{}' END AS uncounted, \
                  p.push_enabled::int AS push_enabled, p.quiet_start, p.quiet_end, p.timezone, \
                  CASE WHEN q.room IS NOT NULL THEN (SELECT notify FROM room_prefs WHERE app_id = q.app \
                      AND client_id = j.value AND room = q.room \
                      AND (muted_until_ms IS NULL OR muted_until_ms > q.now)) END AS notify, \
                  CASE WHEN q.room IS NOT NULL THEN (EXISTS (SELECT 1 FROM presence WHERE app_id = q.app \
                      AND client_id = j.value AND online_until_ms > q.now))::int ELSE 0 END AS online \
           FROM UNNEST($1::integer[], $2::text[]) WITH ORDINALITY AS j (push, value, key) \
           JOIN UNNEST($3::text[], $4::boolean[], $5::bigint[], $6::boolean[], $7::text[]) \
                WITH ORDINALITY AS q (app, count_muted, now, with_totals, room, n) ON q.n = j.push \
           LEFT JOIN client_prefs p ON p.app_id = q.app AND p.client_id = j.value \
           OFFSET 0) c \
         LEFT JOIN LATERAL (SELECT * FROM devices WHERE app_id = c.app AND client_id = c.value OFFSET 0) d ON true \
         ORDER BY c.key, d.device_type, d.device_id"
    ))
    .bind(which)
    .bind(clients)
    .bind(pushes.iter().map(|(push, _)| push.app_id.as_str()).collect::<Vec<_>>())
    .bind(pushes.iter().map(|(push, _)| push.fan_out.count_muted_rooms).collect::<Vec<_>>())
    .bind(pushes.iter().map(|(push, _)| push.now_ms).collect::<Vec<_>>())
    .bind(pushes.iter().map(|(push, _)| push.fan_out.badge.carries_totals()).collect::<Vec<_>>())
    .bind(
        pushes
            .iter()
            .map(|(push, _)| push.fan_out.routing.as_ref().map(|routing| routing.room.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(run)
    .fetch_all(&mut *connection)
    .await?;
    let mut read: Vec<ReadPush> = pushes
        .iter()
        .scan(0, |start, (push, recipients)| {
            let (device_type, device_id) = push.fan_out.target.filter();
            let read = ReadPush { start: *start, device_type, device_id, ..ReadPush::default() };
            *start += recipients.len();
            Some(read)
        })
        .collect();
    for row in &rows {
        let push = usize::try_from(row.try_get::<i32, _>(1)?).ok().and_then(|push| push.checked_sub(1));
        let (Some(read), Ok(key)) =
            (push.and_then(|push| read.get_mut(push)), usize::try_from(row.try_get::<i64, _>(0)?))
        else {
            return Err(StoreError::Internal("a recipient read for no push".into()));
        };
        let key = key.saturating_sub(read.start);
        if key == read.totals.len() {
            // The recipient's first row: its own columns.
            read.totals.push(row.try_get::<Option<i64>, _>(2)?.unwrap_or_default());
            read.uncounted.push(row.try_get(3)?);
            read.known.push((
                row.try_get::<Option<i32>, _>(4)?.map(i64::from),
                row.try_get(5)?,
                row.try_get(6)?,
                row.try_get(7)?,
                row.try_get(8)?,
                i64::from(row.try_get::<i32, _>(9)?),
            ));
            read.zones.push(None);
        }
        let Some(device_type) = row.try_get::<Option<String>, _>(10)? else { continue };
        let device_id: String = row.try_get(11)?;
        if let Some(zone) = row.try_get::<Option<String>, _>(17)? {
            // The time zone of the device updated last (the first of them).
            let updated_at_ms: i64 = row.try_get(18)?;
            let latest =
                read.zones.last_mut().filter(|latest| latest.as_ref().is_none_or(|(at, _)| updated_at_ms > *at));
            if let Some(latest) = latest {
                *latest = Some((updated_at_ms, zone));
            }
        }
        let targeted = match read.device_type {
            None => row.try_get::<&str, _>(16)? != "apns-dedicated",
            Some(only) => device_type == only,
        };
        if targeted && read.device_id.is_none_or(|only| only == device_id) {
            read.devices.push(plan::RecipientDevice {
                key,
                device_type,
                device_id,
                token: row.try_get(12)?,
                environment: row.try_get(13)?,
                locale: row.try_get(14)?,
                push_key: row.try_get(15)?,
            });
        }
    }
    pushes
        .iter()
        .zip(read)
        .map(|((push, recipients), read)| {
            if read.totals.len() != recipients.len() {
                return Err(StoreError::Internal(
                    format!("read {} of {} recipients", read.totals.len(), recipients.len()).into(),
                ));
            }
            let states = push.fan_out.routing.as_ref().map(|_| {
                read.known
                    .into_iter()
                    .zip(read.zones)
                    .map(|(known, zone)| {
                        let (push_enabled, quiet_start, quiet_end, timezone, notify, online) = known;
                        let timezone = timezone.or(zone.map(|(_, zone)| zone));
                        plan::recipient_state((push_enabled, quiet_start, quiet_end, timezone, notify, online))
                    })
                    .collect()
            });
            Ok(Recipients {
                totals: push.fan_out.badge.carries_totals().then_some(read.totals),
                states,
                devices: read.devices,
                uncounted: read.uncounted,
            })
        })
        .collect()
}

/// What [`read_recipients`] gathers of one push, recipient by recipient.
#[derive(Default)]
struct ReadPush<'a> {
    /// Its first recipient's place among all those read.
    start: usize,
    /// The push's target (see [`crate::DeviceTarget::filter`]).
    device_type: Option<&'a str>,
    device_id: Option<&'a str>,
    totals: Vec<i64>,
    uncounted: Vec<Vec<String>>,
    known: Vec<plan::KnownState>,
    /// The time zone of each recipient's latest device that has one, with
    /// that device's update time.
    zones: Vec<Option<(i64, String)>>,
    devices: Vec<plan::RecipientDevice>,
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

/// One client's badge total (`j.value`), as an SQL expression (see the
/// SQLite `BADGE_TOTALS`), given the SQL for its app, whether muted rooms
/// count, and now.
macro_rules! badge_total {
    ($app:literal, $count_muted:literal, $now:literal) => {
        concat!(
            "(SELECT COALESCE(SUM(u.unread), 0) FROM room_unreads u WHERE u.app_id = ",
            $app,
            " AND u.client_id = j.value AND (",
            $count_muted,
            " OR NOT EXISTS (SELECT 1 FROM room_prefs r WHERE r.app_id = ",
            $app,
            " AND r.client_id = j.value AND r.room = u.room AND r.muted \
              AND (r.muted_until_ms IS NULL OR r.muted_until_ms > ",
            $now,
            ")))) + (SELECT COALESCE(SUM(count), 0) FROM badge_sources WHERE app_id = ",
            $app,
            " AND client_id = j.value)"
        )
    };
}
use badge_total;

/// The badge totals of `$2` (clients, a JSON array), in its order.
const BADGE_TOTALS: &str = concat!(
    "SELECT COALESCE(jsonb_agg(total ORDER BY key), '[]')::text FROM (SELECT j.key, ",
    badge_total!("$1", "$3", "$4"),
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
