//! Accepting a push, in two steps. The accept (group-committed with the
//! others waiting) stores the push's row, its callback id and one journal
//! row: constant work, whatever the number of recipients. The fan-out then
//! takes journaled pushes in accept order, a batch per transaction: their
//! recipients' counters, routing and their planned deliveries (a `sends` row
//! per push, not a row per delivery), deleting the journal rows in the same
//! transaction.

use crate::plan::{self, CounterChange, Journaled};
use crate::{Accepted, CoalescingCounts, Journal, RoutingPlan, StoreError};
use pushgate_domain::{ClientId, DeviceId, PushId, RecipientState, RoomId};
use rusqlite::{Connection, params};

/// Stores the push, its callback id (a repeat answers the first push and
/// stores nothing) and its journal row.
pub(super) fn journal_push(connection: &Connection, push: &Journal) -> Result<Accepted, StoreError> {
    if let Some((message_id, to_client)) = &push.callback {
        let first = connection
            .prepare_cached(
                "INSERT INTO callbacks (app_id, message_id, to_client, push_id, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )?
            .execute(params![push.app_id.as_str(), message_id, to_client, push.push_id, push.now_ms])?
            == 1;
        if !first {
            let earlier: String = connection
                .prepare_cached(
                    "SELECT push_id FROM callbacks WHERE app_id = ?1 AND message_id = ?2 AND to_client = ?3",
                )?
                .query_row(params![push.app_id.as_str(), message_id, to_client], |row| row.get(0))?;
            let earlier =
                PushId::parse(&earlier).map_err(|_| StoreError::Corrupt(format!("callbacks.push_id {earlier:?}")))?;
            return Ok(Accepted { duplicate_of: Some(earlier) });
        }
    }
    connection
        .prepare_cached(
            "INSERT INTO pushes (push_id, app_id, kind, request, created_at_ms, deadline_ms, experiment, trace_parent) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            push.push_id,
            push.app_id.as_str(),
            push.kind,
            push.request,
            push.now_ms,
            push.deadline_ms,
            push.experiment,
            push.trace_parent,
        ])?;
    connection
        .prepare_cached("INSERT INTO journal (push_id, plan) VALUES (?1, ?2)")?
        .execute(params![push.push_id, push.plan])?;
    Ok(Accepted { duplicate_of: None })
}

/// One fan-out transaction's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FannedOut {
    /// Pushes fanned out.
    pub pushes: usize,
    /// Whether journaled pushes (up to the bound asked for) are left.
    pub more: bool,
    /// What coalescing did in it.
    pub coalesced: CoalescingCounts,
}

/// Fans out journaled pushes, oldest first and none journaled after
/// `up_to_seq`, in the open transaction: at most `max_pushes`, and no more
/// once `max_recipients` recipients are done (at least one push, or a
/// piece of one: a push larger than [`plan::FAN_OUT_PIECE`] is fanned out
/// a piece per transaction, its row counting what is done), so one
/// transaction holds the single writer for a bounded time.
pub(super) fn fan_out(
    connection: &Connection,
    max_pushes: u32,
    max_recipients: usize,
    up_to_seq: i64,
) -> Result<FannedOut, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT j.seq, j.plan, j.done, p.push_id, p.app_id, p.created_at_ms, p.trace_parent \
         FROM journal j JOIN pushes p ON p.push_id = j.push_id WHERE j.seq <= ?2 ORDER BY j.seq LIMIT ?1",
    )?;
    let rows = statement
        .query_map(params![max_pushes, up_to_seq], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, Option<String>>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(statement);
    let fetched = rows.len();
    let (mut last_seq, mut pushes, mut recipients, mut partial) = (None, 0, 0, false);
    let mut coalesced = CoalescingCounts::default();
    for (seq, entry, done, push_id, app_id, created_at_ms, trace_parent) in rows {
        if recipients >= max_recipients {
            break;
        }
        // An unreadable entry (it cannot happen short of a corrupt file) must
        // not block every push journaled after it: it is logged and dropped.
        let push = match Journaled::read(&push_id, &app_id, created_at_ms, &entry, trace_parent.as_deref()) {
            Ok(push) => push,
            Err(error) => {
                tracing::error!(push.id = %push_id, error = %error, "a journaled push is unreadable; it is not fanned out");
                last_seq = Some(seq);
                continue;
            }
        };
        let all = plan::recipients(&push.fan_out);
        let done = usize::try_from(done).unwrap_or_default();
        let (piece, last) = plan::next_piece(&all, done);
        coalesced.add(fan_out_push(connection, &push, piece)?);
        recipients += piece.len();
        if !last {
            connection
                .prepare_cached("UPDATE journal SET done = ?2 WHERE seq = ?1")?
                .execute(params![seq, i64::try_from(done + piece.len()).unwrap_or(i64::MAX)])?;
            partial = true;
            break;
        }
        last_seq = Some(seq);
        pushes += 1;
    }
    if let Some(last_seq) = last_seq {
        connection.prepare_cached("DELETE FROM journal WHERE seq <= ?1")?.execute([last_seq])?;
    }
    let more = partial || pushes < fetched || fetched == usize::try_from(max_pushes).unwrap_or(usize::MAX);
    Ok(FannedOut { pushes, more, coalesced })
}

/// Some of one push's recipients (`clients`, the whole push or a piece of
/// it): their counters, badges and routes by the shared plan, and one
/// planned delivery per device (one skipped delivery for a recipient
/// without devices), in `sends` rows. Answers what coalescing did.
fn fan_out_push(
    connection: &Connection,
    push: &Journaled,
    clients: &[&ClientId],
) -> Result<CoalescingCounts, StoreError> {
    let span = tracing::debug_span!("fan_out", app.id = %push.app_id, push.id = %push.push_id);
    pushgate_domain::trace::continue_from(&span, push.trace_parent.as_ref());
    let _span = span.entered();
    // Every statement below handles all the push's recipients at once,
    // through a JSON array (`json_each`): a constant number of statements
    // per accept (and two per `SEND_SIZE` planned deliveries), whatever the
    // number of recipients (found by
    // pushgate-bench: per-recipient statements made the single writer the
    // bottleneck). What each recipient gets is decided by the shared plan.
    let clients_json = serde_json::Value::from_iter(clients.iter().map(|client| client.as_str())).to_string();
    let totals = apply_counter_change(connection, push, &clients_json)?;
    let mut coalesced = CoalescingCounts::default();
    if let CounterChange::ClearRoom(room) = push.fan_out.badge.counter_change() {
        coalesced.cancelled =
            end_windows_by_read(connection, push.app_id.as_str(), &clients_json, room.as_str(), push.now_ms)?;
    }
    let states = match &push.fan_out.routing {
        Some(routing) => Some(routing_states(connection, push, &clients_json, routing)?),
        None => None,
    };
    let room = push.fan_out.routing.as_ref().map(|routing| &routing.room);
    let windows = match (&push.fan_out.coalescing, room) {
        (Some(_), Some(room)) => Some(coalescing_windows(connection, push, &clients_json, room)?),
        _ => None,
    };
    let recipients = plan::plan_recipients(push, clients, totals, states, windows);
    let plan::WindowWork { held, windowed, plans } = plan::WindowWork::of(&recipients)?;
    let push_id = push.push_id.to_string();
    if let (Some(held), Some(room)) = (&held, room) {
        (coalesced.merged, coalesced.held) = hold(connection, push, &push_id, room, &plans, held)?;
    }
    plan_sends(connection, push, &push_id, &clients_json, &recipients)?;
    if let (true, Some(room), Some(coalescing)) = (windowed, room, &push.fan_out.coalescing) {
        // Each recipient's window as the plan leaves it: opened by this
        // alert, or holding this message.
        connection
            .prepare_cached(
                "INSERT INTO coalescing (app_id, client_id, room, window_until_ms, window_ms, held_push_id, \
                                         messages, senders) \
                 SELECT ?1, json_extract(j.value, '$.client'), ?2, json_extract(j.value, '$.until'), ?3, \
                        CASE WHEN json_extract(j.value, '$.window') = 'hold' THEN ?4 END, \
                        json_extract(j.value, '$.count'), json_extract(j.value, '$.senders') \
                 FROM json_each(?5) j WHERE json_extract(j.value, '$.window') IS NOT NULL \
                 ON CONFLICT DO UPDATE SET window_until_ms = excluded.window_until_ms, \
                     window_ms = excluded.window_ms, held_push_id = excluded.held_push_id, \
                     messages = excluded.messages, senders = excluded.senders",
            )?
            .execute(params![push.app_id.as_str(), room.as_str(), coalescing.window_ms, push_id, plans])?;
    }
    tracing::debug!(recipients = clients.len(), held = coalesced.held, "fanned out");
    Ok(coalesced)
}

/// The push's `sends` for its recipients (`clients`, their ids as a JSON
/// array in the plan's order; one per `SEND_SIZE` planned deliveries, their
/// entries in `send_plans`, migration 0013; a delivery gets a row of its
/// own only when an outcome needs one, migration 0006): the devices the
/// push targets read in one statement (the client's own locale preference
/// wins over what its devices reported), the entries built by
/// [`plan::send_chunks`].
fn plan_sends(
    connection: &Connection,
    push: &Journaled,
    push_id: &str,
    clients: &str,
    recipients: &[plan::RecipientPlan<'_>],
) -> Result<(), StoreError> {
    let (device_type, device_id) = push.fan_out.target.filter();
    // `CROSS JOIN` keeps the client list as the outer loop, and `INDEXED BY`
    // the per-client device lookup (see `routing_states`).
    let mut statement = connection.prepare_cached(
        "SELECT j.key, d.device_type, d.device_id, d.token, d.environment, COALESCE(p.locale, d.locale), d.push_key \
         FROM json_each(?1) j CROSS JOIN devices d INDEXED BY devices_client \
         LEFT JOIN client_prefs p ON p.app_id = d.app_id AND p.client_id = d.client_id \
         WHERE d.app_id = ?2 AND d.client_id = j.value \
           AND CASE WHEN ?3 IS NULL THEN d.token_kind != 'apns-dedicated' ELSE d.device_type = ?3 END \
           AND (?4 IS NULL OR d.device_id = ?4) \
         ORDER BY j.key, d.device_type, d.device_id",
    )?;
    let devices = statement
        .query_map(params![clients, push.app_id.as_str(), device_type, device_id], |row| {
            Ok(plan::RecipientDevice {
                key: usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX),
                device_type: row.get(1)?,
                device_id: row.get(2)?,
                token: row.get(3)?,
                environment: row.get(4)?,
                locale: row.get(5)?,
                push_key: row.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(statement);
    let experiment = push.fan_out.experiment.as_ref().map(|experiment| experiment.id.as_str());
    for (deliveries, queued) in plan::send_chunks(push, recipients, &devices)? {
        connection.prepare_cached("INSERT INTO send_plans (deliveries) VALUES (?1)")?.execute([deliveries])?;
        connection
            .prepare_cached(
                "INSERT INTO sends (id, push_id, app_id, experiment_id, queued, pending, next_attempt_at_ms, \
                                    updated_at_ms) \
                 VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?4, ?5, ?5)",
            )?
            .execute(params![push_id, push.app_id.as_str(), experiment, queued, push.now_ms])?;
    }
    Ok(())
}

/// Each client's coalescing window in `room` (`clients`, a JSON array), in
/// the array's order: `[until, count, senders, holding]`, or null without one.
fn coalescing_windows(
    connection: &Connection,
    push: &Journaled,
    clients: &str,
    room: &RoomId,
) -> Result<Vec<Option<plan::Window>>, StoreError> {
    let rows: String = connection
        .prepare_cached(
            "SELECT json_group_array(CASE WHEN c.client_id IS NULL THEN NULL \
                        ELSE json_array(c.window_until_ms, c.messages, json(c.senders), \
                                        json(CASE WHEN c.held_push_id IS NULL THEN 'false' ELSE 'true' END)) \
                        END ORDER BY j.key) \
             FROM json_each(?2) j LEFT JOIN coalescing c ON c.app_id = ?1 AND c.client_id = j.value AND c.room = ?3",
        )?
        .query_row(params![push.app_id.as_str(), clients, room.as_str()], |row| row.get(0))?;
    plan::windows(&rows)
}

/// Holds the message for the recipients the plan holds (`plans`): the
/// message each held before is merged into this one (its deliveries become
/// `coalesced`, carried by this push), and this one's deliveries (all but
/// VoIP's, never held) wait as `held` rows until the window's end.
/// `held_clients`: a JSON array of their ids, so each window is one
/// primary-key lookup (joining the plan's objects parsed them again for every
/// window of the app: found by pushgate-bench). Answers the deliveries merged
/// and held.
fn hold(
    connection: &Connection,
    push: &Journaled,
    push_id: &str,
    room: &RoomId,
    plans: &str,
    held_clients: &str,
) -> Result<(u64, u64), StoreError> {
    let app = push.app_id.as_str();
    let merged = connection
        .prepare_cached(
            "UPDATE deliveries SET status = 'coalesced', carried_by = ?1, next_attempt_at_ms = NULL, \
                 updated_at_ms = ?5 \
             WHERE status = 'held' AND (client_id, push_id) IN ( \
                 SELECT c.client_id, c.held_push_id FROM json_each(?4) j CROSS JOIN coalescing c \
                 WHERE c.app_id = ?2 AND c.client_id = j.value AND c.room = ?3 AND c.held_push_id IS NOT NULL)",
        )?
        .execute(params![push_id, app, room.as_str(), held_clients, push.now_ms])?;
    let held = connection
        .prepare_cached(
            "INSERT INTO deliveries (push_id, app_id, client_id, device_type, device_id, token, environment, locale, \
                                     badge, status, attempts, next_attempt_at_ms, updated_at_ms, mode, route_reason, \
                                     experiment_id, variant, push_key) \
             SELECT ?1, ?2, d.client_id, d.device_type, d.device_id, d.token, d.environment, \
                    COALESCE(p.locale, d.locale), json_extract(j.value, '$.badge'), 'held', 0, \
                    json_extract(j.value, '$.until'), ?3, json_extract(j.value, '$.mode'), \
                    json_extract(j.value, '$.route_reason'), ?4, json_extract(j.value, '$.variant'), d.push_key \
             FROM json_each(?5) j CROSS JOIN devices d INDEXED BY devices_client \
             LEFT JOIN client_prefs p ON p.app_id = d.app_id AND p.client_id = d.client_id \
             WHERE json_extract(j.value, '$.window') = 'hold' AND d.app_id = ?2 \
               AND d.client_id = json_extract(j.value, '$.client') AND d.device_type != 'ios-voip' \
               AND d.token_kind != 'apns-dedicated' AND (?6 IS NULL OR d.device_id != ?6)",
        )?
        .execute(params![
            push_id,
            app,
            push.now_ms,
            push.fan_out.experiment.as_ref().map(|experiment| experiment.id.as_str()),
            plans,
            push.fan_out.except_device.as_ref().map(DeviceId::as_str),
        ])?;
    Ok((merged as u64, held as u64))
}

/// Ends the coalescing windows due at `now_ms` that hold a message (at most
/// `limit`, the earliest first): the held message's deliveries are queued,
/// due now, with the run's summary (see [`plan::Window`]), and a new
/// window opens. Losing this write (a power cut) is
/// harmless: the windows are still due.
pub(super) fn end_windows(connection: &Connection, now_ms: i64, limit: u32) -> Result<(), StoreError> {
    let due = "SELECT app_id, client_id, room FROM coalescing \
               WHERE held_push_id IS NOT NULL AND window_until_ms <= ?1 \
               ORDER BY window_until_ms, app_id, client_id, room LIMIT ?2";
    let queued = connection
        .prepare_cached(&format!(
            "UPDATE deliveries SET status = 'queued', next_attempt_at_ms = ?1, updated_at_ms = ?1, \
                 summary = w.summary \
             FROM (SELECT c.client_id, c.held_push_id, \
                          json_object('count', MAX(c.messages, COALESCE(u.unread, 0), 1), \
                                      'senders', json(c.senders)) AS summary \
                   FROM coalescing c LEFT JOIN room_unreads u \
                        ON u.app_id = c.app_id AND u.client_id = c.client_id AND u.room = c.room \
                   WHERE (c.app_id, c.client_id, c.room) IN ({due})) w \
             WHERE deliveries.status = 'held' AND deliveries.push_id = w.held_push_id \
               AND deliveries.client_id = w.client_id"
        ))?
        .execute(params![now_ms, limit])?;
    let ended = connection
        .prepare_cached(&format!(
            "UPDATE coalescing SET window_until_ms = ?1 + window_ms, held_push_id = NULL \
             WHERE (app_id, client_id, room) IN ({due})"
        ))?
        .execute(params![now_ms, limit])?;
    if ended > 0 {
        tracing::debug!(windows = ended, deliveries = queued, "coalescing windows ended");
    }
    Ok(())
}

/// A read ends the clients' (`clients`, a JSON array) windows in `room`:
/// what each held is not sent (skipped: the room was read), and the room's
/// next message alerts at once. Answers the deliveries cancelled.
pub(super) fn end_windows_by_read(
    connection: &Connection,
    app: &str,
    clients: &str,
    room: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let cancelled = connection
        .prepare_cached(
            "UPDATE deliveries SET status = 'skipped', reason = ?5, next_attempt_at_ms = NULL, updated_at_ms = ?4 \
             WHERE status = 'held' AND (client_id, push_id) IN ( \
                 SELECT client_id, held_push_id FROM coalescing \
                 WHERE app_id = ?1 AND room = ?3 AND held_push_id IS NOT NULL \
                   AND client_id IN (SELECT value FROM json_each(?2)))",
        )?
        .execute(params![app, clients, room, now_ms, pushgate_domain::Reason::ReadBeforeSent.to_string()])?;
    connection
        .prepare_cached(
            "DELETE FROM coalescing WHERE app_id = ?1 AND room = ?3 AND client_id IN (SELECT value FROM json_each(?2))",
        )?
        .execute(params![app, clients, room])?;
    Ok(cancelled as u64)
}

/// What is known of each client (`clients`, a JSON array) of a routed
/// push, in the array's order; the plan decides its route.
fn routing_states(
    connection: &Connection,
    push: &Journaled,
    clients: &str,
    plan: &RoutingPlan,
) -> Result<Vec<RecipientState>, StoreError> {
    // `INDEXED BY`: without statistics SQLite prefers the app's primary-key
    // range of this WITHOUT ROWID table when a query also sorts, a scan of
    // every device of the app per recipient (found by pushgate-bench).
    // One JSON row for all the clients: every row sqlx's SQLite driver
    // answers crosses a thread (found by profiling).
    let rows: String = connection
        .prepare_cached(
            "SELECT json_group_array(json_array(push_enabled, quiet_start, quiet_end, timezone, notify, online) \
                                 ORDER BY key) FROM ( \
           SELECT j.key, p.push_enabled, p.quiet_start, p.quiet_end, \
                  COALESCE(p.timezone, (SELECT timezone FROM devices INDEXED BY devices_client \
                                        WHERE app_id = ?1 AND client_id = j.value \
                                        AND timezone IS NOT NULL ORDER BY updated_at_ms DESC LIMIT 1)) AS timezone, \
                  (SELECT notify FROM room_prefs WHERE app_id = ?1 AND client_id = j.value AND room = ?3 \
                   AND (muted_until_ms IS NULL OR muted_until_ms > ?4)) AS notify, \
                  EXISTS (SELECT 1 FROM presence WHERE app_id = ?1 AND client_id = j.value \
                          AND online_until_ms > ?4) AS online \
           FROM json_each(?2) j LEFT JOIN client_prefs p ON p.app_id = ?1 AND p.client_id = j.value)",
        )?
        .query_row(params![push.app_id.as_str(), clients, plan.room.as_str(), push.now_ms], |row| row.get(0))?;
    plan::recipient_states(&rows)
}

/// The badge totals of `?2` (clients, a JSON array), in its order: unreads
/// (leaving out rooms muted at `?4`, now, unless `?3`, muted rooms count)
/// plus sources, for app `?1`. One JSON row, not one per client (see
/// `routing_states`).
pub(super) const BADGE_TOTALS: &str = "SELECT json_group_array(total ORDER BY key) FROM ( \
    SELECT j.key, (SELECT COALESCE(SUM(u.unread), 0) FROM room_unreads u \
            WHERE u.app_id = ?1 AND u.client_id = j.value AND (?3 OR NOT EXISTS ( \
                SELECT 1 FROM room_prefs r WHERE r.app_id = ?1 AND r.client_id = j.value AND r.room = u.room \
                AND r.muted = 1 AND (r.muted_until_ms IS NULL OR r.muted_until_ms > ?4)))) \
         + (SELECT COALESCE(SUM(count), 0) FROM badge_sources WHERE app_id = ?1 AND client_id = j.value) \
           AS total \
    FROM json_each(?2) j)";

/// [`BADGE_TOTALS`] in the open transaction.
fn badge_totals(
    connection: &Connection,
    app: &str,
    clients: &str,
    count_muted_rooms: bool,
    now_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let totals: String = connection
        .prepare_cached(BADGE_TOTALS)?
        .query_row(params![app, clients, count_muted_rooms, now_ms], |row| row.get(0))?;
    serde_json::from_str(&totals).map_err(|error| StoreError::Corrupt(format!("badge totals: {error}")))
}

/// Applies the push's counter change (its badge plan's) to its clients
/// (`clients`, a JSON array) and answers their badge totals after it, in
/// the array's order, when the plan's deliveries carry them.
fn apply_counter_change(
    connection: &Connection,
    push: &Journaled,
    clients: &str,
) -> Result<Option<Vec<i64>>, StoreError> {
    let app = push.app_id.as_str();
    match push.fan_out.badge.counter_change() {
        CounterChange::None => {}
        CounterChange::CountUnread(room) => {
            // `WHERE true`: SQLite needs it to tell the upsert's `ON` from a join's.
            connection
                .prepare_cached(
                    "INSERT INTO room_unreads (app_id, client_id, room, unread, updated_at_ms) \
                 SELECT ?1, j.value, ?3, 1, ?4 FROM json_each(?2) j WHERE true \
                 ON CONFLICT DO UPDATE SET unread = unread + 1, updated_at_ms = excluded.updated_at_ms",
                )?
                .execute(params![app, clients, room.as_str(), push.now_ms])?;
        }
        CounterChange::ClearRoom(room) => {
            connection
                .prepare_cached(
                    "DELETE FROM room_unreads WHERE app_id = ?1 AND room = ?3 \
                     AND client_id IN (SELECT value FROM json_each(?2))",
                )?
                .execute(params![app, clients, room.as_str()])?;
        }
    }
    if !push.fan_out.badge.carries_totals() {
        return Ok(None);
    }
    Ok(Some(badge_totals(connection, app, clients, push.fan_out.count_muted_rooms, push.now_ms)?))
}
