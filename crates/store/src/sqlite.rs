//! The embedded default: one SQLite file in WAL mode.

use crate::{
    Accepted, BadgePlan, BadgeView, ClaimedDelivery, ClientPrefs, DeliveryStatus, DeliveryUpdate, DeliveryView, Device,
    NewDevice, NewPush, PushView, RoutingPlan, SourceChange, Store, StoreError, StoredApiKey, UpsertOutcome,
    VariantCounts,
};
use async_trait::async_trait;
use pushgate_domain::{
    AppId, BadgeSource, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Locale, PushKind, PushToken,
    QuietHours, RecipientState, RoomId, Route, TimeZoneName,
};
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A [`Store`] on one SQLite file.
///
/// WAL mode lets readers run beside the single writer; `synchronous = FULL`
/// makes every commit survive a power cut, which is what "accepted" promises
/// (all but a claim's leases, which need not: see [`SqliteStore::open`]).
///
/// The busiest writes are group-committed: concurrent accepts queue for one
/// writer task, attempt outcomes for another, device registrations for a
/// third; each stores all that are waiting in one transaction, so durability
/// costs one disk flush per group rather than per request.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The one connection claims commit on (`synchronous = NORMAL`: see `open`).
    leases: SqlitePool,
    /// Held by every write, before it takes a connection: writers queue here
    /// in order rather than in SQLite's busy handler (which polls, unfairly,
    /// and would hold pool connections while it waits).
    writer: Arc<tokio::sync::Mutex<()>>,
    accepts: Committer<NewPush>,
    records: Committer<(i64, DeliveryUpdate)>,
    registrations: Committer<NewDevice>,
}

/// Most writes committed in one group.
const MAX_GROUP: usize = 256;

/// What a group of writes answers, once stored: each write's output.
type GroupOutputs<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<Vec<T>, StoreError>> + Send + 'a>>;

/// A write that can share a transaction with others of its kind.
trait GroupWrite: std::fmt::Debug + Send + Sync + 'static {
    type Output: Send + 'static;
    /// Stores a group of writes in the open transaction, answering each
    /// one's output in order.
    fn write_group<'a>(writes: &'a [&'a Self], connection: &'a mut SqliteConnection) -> GroupOutputs<'a, Self::Output>;
}

impl GroupWrite for NewPush {
    type Output = Accepted;
    fn write_group<'a>(writes: &'a [&'a Self], connection: &'a mut SqliteConnection) -> GroupOutputs<'a, Accepted> {
        Box::pin(async move {
            let mut accepted = Vec::with_capacity(writes.len());
            for push in writes {
                accepted.push(insert_push(connection, push).await?);
            }
            Ok(accepted)
        })
    }
}

impl GroupWrite for (i64, DeliveryUpdate) {
    type Output = ();
    fn write_group<'a>(writes: &'a [&'a Self], connection: &'a mut SqliteConnection) -> GroupOutputs<'a, ()> {
        Box::pin(async move {
            record(connection, writes).await?;
            Ok(vec![(); writes.len()])
        })
    }
}

impl GroupWrite for NewDevice {
    type Output = UpsertOutcome;
    fn write_group<'a>(
        writes: &'a [&'a Self],
        connection: &'a mut SqliteConnection,
    ) -> GroupOutputs<'a, UpsertOutcome> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(writes.len());
            for device in writes {
                outcomes.push(upsert_device(connection, device).await?);
            }
            Ok(outcomes)
        })
    }
}

type Reply<W> = tokio::sync::oneshot::Sender<Result<<W as GroupWrite>::Output, StoreError>>;

/// The sending side of a group-committing writer task.
#[derive(Debug)]
struct Committer<W: GroupWrite> {
    queue: tokio::sync::mpsc::Sender<(W, Reply<W>)>,
    transactions: Arc<AtomicU64>,
}

impl<W: GroupWrite> Clone for Committer<W> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone(), transactions: Arc::clone(&self.transactions) }
    }
}

impl<W: GroupWrite> Committer<W> {
    /// Starts the writer task; it ends when every sender is dropped.
    fn spawn(pool: SqlitePool, writer: Arc<tokio::sync::Mutex<()>>) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        let transactions = Arc::new(AtomicU64::new(0));
        tokio::spawn(group_committer(pool, writer, receiver, Arc::clone(&transactions)));
        Self { queue, transactions }
    }

    /// Queues the write and waits until its group is committed.
    async fn write(&self, write: W) -> Result<W::Output, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || StoreError::Unavailable(Box::new(sqlx::Error::PoolClosed));
        self.queue.send((write, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://` URL, such as
    /// `sqlite://pushgate.db` (relative to the working directory) or
    /// `sqlite:///var/lib/pushgate/pushgate.db`, and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&pool).await.map_err(|error| StoreError::Internal(error.into()))?;
        // A lease needs no disk flush: this queue's leases are all released
        // when the process starts, so a lease a power cut forgets changes
        // nothing. Claims commit on a connection of their own with
        // `synchronous = NORMAL`, which keeps a flush (and the single writer's
        // wait for it) off every claim. The next `FULL` commit flushes the
        // write-ahead log with the claim's frames in it.
        let leases = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await?;
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let accepts = Committer::spawn(pool.clone(), Arc::clone(&writer));
        let records = Committer::spawn(pool.clone(), Arc::clone(&writer));
        let registrations = Committer::spawn(pool.clone(), Arc::clone(&writer));
        Ok(Self { pool, leases, writer, accepts, records, registrations })
    }

    /// How many transactions accepted pushes so far (fewer than the pushes
    /// when accepts were grouped).
    pub fn accept_transactions(&self) -> u64 {
        self.accepts.transactions.load(Ordering::Relaxed)
    }
}

/// A single writer: takes the first waiting write, adds every other one
/// already waiting, and stores them in one transaction. If the group fails,
/// each write is tried alone, so one bad write never fails another.
async fn group_committer<W: GroupWrite>(
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    mut queue: tokio::sync::mpsc::Receiver<(W, Reply<W>)>,
    transactions: Arc<AtomicU64>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let _writer = writer.lock().await;
        // Writes that came while waiting for the writer join this group.
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        transactions.fetch_add(1, Ordering::Relaxed);
        let writes: Vec<&W> = group.iter().map(|(write, _)| write).collect();
        match commit_group(&pool, &writes).await {
            Ok(results) => {
                for ((_, reply), output) in group.into_iter().zip(results) {
                    let _ = reply.send(Ok(output));
                }
            }
            Err(error) if group.len() == 1 => {
                let _ = group.pop().map(|(_, reply)| reply.send(Err(error)));
            }
            Err(error) => {
                tracing::warn!(error = %error, writes = group.len(), "a group commit failed; storing its writes one by one");
                for (write, reply) in group {
                    transactions.fetch_add(1, Ordering::Relaxed);
                    let result = commit_group(&pool, &[&write]).await.map(|mut one| one.remove(0));
                    let _ = reply.send(result);
                }
            }
        }
    }
}

async fn commit_group<W: GroupWrite>(pool: &SqlitePool, writes: &[&W]) -> Result<Vec<W::Output>, StoreError> {
    let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
    let results = W::write_group(writes, &mut transaction).await?;
    transaction.commit().await?;
    Ok(results)
}

/// Records attempt outcomes, all in one statement (the outcomes go in as a
/// JSON array).
async fn record(connection: &mut SqliteConnection, updates: &[&(i64, DeliveryUpdate)]) -> Result<(), StoreError> {
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

async fn insert_push(transaction: &mut SqliteConnection, push: &NewPush) -> Result<Accepted, StoreError> {
    if let Some(callback) = &push.callback {
        let to_client = callback.to_client.as_ref().map_or("", ClientId::as_str);
        let first = sqlx::query(
            "INSERT INTO callbacks (app_id, message_id, to_client, push_id, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(push.app_id.as_str())
        .bind(&callback.message_id)
        .bind(to_client)
        .bind(&push.push_id)
        .bind(push.now_ms)
        .execute(&mut *transaction)
        .await?
        .rows_affected()
            == 1;
        if !first {
            let earlier: String = sqlx::query_scalar(
                "SELECT push_id FROM callbacks WHERE app_id = ?1 AND message_id = ?2 AND to_client = ?3",
            )
            .bind(push.app_id.as_str())
            .bind(&callback.message_id)
            .bind(to_client)
            .fetch_one(&mut *transaction)
            .await?;
            return Ok(Accepted { queued: 0, clients_without_devices: 0, duplicate_of: Some(earlier) });
        }
    }
    sqlx::query(
        "INSERT INTO pushes (push_id, app_id, kind, request, created_at_ms, deadline_ms, experiment) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(&push.push_id)
    .bind(push.app_id.as_str())
    .bind(push.kind.as_str())
    .bind(&push.request)
    .bind(push.now_ms)
    .bind(push.deadline_ms)
    .bind(push.experiment.as_ref().map(|experiment| experiment.snapshot.as_str()))
    .execute(&mut *transaction)
    .await?;
    // A client listed twice is reached (and counted) once. Every statement
    // below handles all the push's clients at once, through a JSON array
    // (`json_each`): a constant number of statements per accept, whatever
    // the number of recipients (found by pushgate-bench: per-recipient
    // statements made the single writer the bottleneck).
    let clients: Vec<&ClientId> = push.clients.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let clients_json = serde_json::Value::from_iter(clients.iter().map(|client| client.as_str())).to_string();
    let badges = apply_badge_plan(transaction, push, &clients_json, clients.len()).await?;
    let routes = match &push.routing {
        Some(plan) => route_clients(transaction, push, &clients_json, plan).await?.into_iter().map(Some).collect(),
        None => vec![None; clients.len()],
    };
    let experiment = push.experiment.as_ref();
    let plans: Vec<serde_json::Value> = clients
        .iter()
        .zip(badges)
        .zip(routes)
        .map(|((client, badge), route)| {
            let (status, reason) = match (&push.skip_all, route) {
                (Some(reason), _) => (DeliveryStatus::Skipped, Some(reason.as_str())),
                (None, Some(Route::Skip(reason))) => (DeliveryStatus::Skipped, Some(reason)),
                (None, _) => (DeliveryStatus::Queued, None),
            };
            let variant = experiment.and_then(|experiment| experiment.variants.get(*client));
            serde_json::json!({
                "client": client.as_str(),
                "badge": badge,
                "status": status.as_str(),
                "reason": reason,
                "mode": route.and_then(Route::mode).map(DeliveryMode::as_str),
                "route_reason": route.and_then(Route::reason),
                "experiment": variant.and(experiment).map(|experiment| experiment.id.as_str()),
                "variant": variant,
            })
        })
        .collect();
    let plans = serde_json::Value::from(plans).to_string();
    // `CROSS JOIN` keeps the client list as the outer loop, and `INDEXED BY`
    // the per-client device lookup (see `route_clients`). The client's own
    // locale preference wins over what its devices reported.
    sqlx::query(
        "INSERT INTO deliveries (push_id, app_id, client_id, device_type, device_id, token, environment, locale, \
                                 badge, status, reason, next_attempt_at_ms, updated_at_ms, mode, route_reason, \
                                 experiment_id, variant) \
         SELECT ?1, d.app_id, d.client_id, d.device_type, d.device_id, d.token, d.environment, \
                COALESCE(p.locale, d.locale), json_extract(j.value, '$.badge'), json_extract(j.value, '$.status'), \
                json_extract(j.value, '$.reason'), ?2, ?2, json_extract(j.value, '$.mode'), \
                json_extract(j.value, '$.route_reason'), json_extract(j.value, '$.experiment'), \
                json_extract(j.value, '$.variant') \
         FROM json_each(?3) j CROSS JOIN devices d INDEXED BY devices_client \
         LEFT JOIN client_prefs p ON p.app_id = d.app_id AND p.client_id = d.client_id \
         WHERE d.app_id = ?4 AND d.client_id = json_extract(j.value, '$.client')",
    )
    .bind(&push.push_id)
    .bind(push.now_ms)
    .bind(&plans)
    .bind(push.app_id.as_str())
    .execute(&mut *transaction)
    .await?;
    let clients_without_devices = sqlx::query(
        "INSERT INTO deliveries (push_id, app_id, client_id, badge, status, reason, updated_at_ms) \
         SELECT ?1, ?2, json_extract(j.value, '$.client'), json_extract(j.value, '$.badge'), 'skipped', \
                'no registered device', ?3 \
         FROM json_each(?4) j \
         WHERE NOT EXISTS (SELECT 1 FROM devices INDEXED BY devices_client \
                           WHERE app_id = ?2 AND client_id = json_extract(j.value, '$.client'))",
    )
    .bind(&push.push_id)
    .bind(push.app_id.as_str())
    .bind(push.now_ms)
    .bind(&plans)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    // One row answered, not one per delivery: every row crosses a thread in sqlx's SQLite driver.
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE push_id = ?1 AND status = 'queued'")
        .bind(&push.push_id)
        .fetch_one(&mut *transaction)
        .await?;
    Ok(Accepted { queued: u64::try_from(queued).unwrap_or_default(), clients_without_devices, duplicate_of: None })
}

/// What is known of each client (`clients`, a JSON array) of a routed
/// push, and the route it decides, in the array's order.
async fn route_clients(
    connection: &mut SqliteConnection,
    push: &NewPush,
    clients: &str,
    plan: &RoutingPlan,
) -> Result<Vec<Route>, StoreError> {
    // `INDEXED BY`: without statistics SQLite prefers the app's primary-key
    // range of this WITHOUT ROWID table when a query also sorts, a scan of
    // every device of the app per recipient (found by pushgate-bench).
    // One JSON row for all the clients: every row sqlx's SQLite driver
    // answers crosses a thread (found by profiling).
    let rows: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(push_enabled, quiet_start, quiet_end, timezone, muted, online) \
                                 ORDER BY key) FROM ( \
           SELECT j.key, p.push_enabled, p.quiet_start, p.quiet_end, \
                  COALESCE(p.timezone, (SELECT timezone FROM devices INDEXED BY devices_client \
                                        WHERE app_id = ?1 AND client_id = j.value \
                                        AND timezone IS NOT NULL ORDER BY updated_at_ms DESC LIMIT 1)) AS timezone, \
                  EXISTS (SELECT 1 FROM room_prefs WHERE app_id = ?1 AND client_id = j.value AND room = ?3 \
                          AND muted = 1 AND (muted_until_ms IS NULL OR muted_until_ms > ?4)) AS muted, \
                  EXISTS (SELECT 1 FROM presence WHERE app_id = ?1 AND client_id = j.value \
                          AND online_until_ms > ?4) AS online \
           FROM json_each(?2) j LEFT JOIN client_prefs p ON p.app_id = ?1 AND p.client_id = j.value)",
    )
    .bind(push.app_id.as_str())
    .bind(clients)
    .bind(plan.room.as_str())
    .bind(push.now_ms)
    .fetch_one(&mut *connection)
    .await?;
    // SQLite's booleans are the integers 0 and 1.
    type Known = (Option<i64>, Option<String>, Option<String>, Option<String>, i64, i64);
    let rows: Vec<Known> =
        serde_json::from_str(&rows).map_err(|error| StoreError::Corrupt(format!("routing state: {error}")))?;
    Ok(rows
        .into_iter()
        .map(|(push_enabled, quiet_start, quiet_end, timezone, muted, online)| {
            let quiet_hours = match (quiet_start, quiet_end) {
                (Some(start), Some(end)) => QuietHours::parse(&start, &end).ok(),
                _ => None,
            };
            let state = RecipientState {
                push_disabled: push_enabled == Some(0),
                room_muted: muted != 0,
                online: online != 0,
                quiet_hours,
                timezone: timezone.and_then(|zone| TimeZoneName::parse(&zone).ok()),
            };
            pushgate_domain::route(&state, plan.online, push.now_ms)
        })
        .collect())
}

/// The badge totals of `clients` (a JSON array), in its order: unreads
/// (leaving out rooms muted at `now_ms` unless they count) plus sources.
async fn badge_totals(
    connection: &mut SqliteConnection,
    app: &str,
    clients: &str,
    count_muted_rooms: bool,
    now_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    // One JSON row, not one per client (see `route_clients`).
    let totals: String = sqlx::query_scalar(
        "SELECT json_group_array(total ORDER BY key) FROM ( \
           SELECT j.key, (SELECT COALESCE(SUM(u.unread), 0) FROM room_unreads u \
                   WHERE u.app_id = ?1 AND u.client_id = j.value AND (?3 OR NOT EXISTS ( \
                       SELECT 1 FROM room_prefs r WHERE r.app_id = ?1 AND r.client_id = j.value AND r.room = u.room \
                       AND r.muted = 1 AND (r.muted_until_ms IS NULL OR r.muted_until_ms > ?4)))) \
                + (SELECT COALESCE(SUM(count), 0) FROM badge_sources WHERE app_id = ?1 AND client_id = j.value) \
                  AS total \
           FROM json_each(?2) j)",
    )
    .bind(app)
    .bind(clients)
    .bind(count_muted_rooms)
    .bind(now_ms)
    .fetch_one(connection)
    .await?;
    serde_json::from_str(&totals).map_err(|error| StoreError::Corrupt(format!("badge totals: {error}")))
}

/// Applies the push's badge plan to its clients (`clients`, a JSON array
/// of `count` ids) and answers the badge each one's deliveries carry, in
/// the array's order.
async fn apply_badge_plan(
    transaction: &mut SqliteConnection,
    push: &NewPush,
    clients: &str,
    count: usize,
) -> Result<Vec<Option<i64>>, StoreError> {
    let app = push.app_id.as_str();
    match &push.badge {
        BadgePlan::None => return Ok(vec![None; count]),
        BadgePlan::Given(badge) => return Ok(vec![Some(i64::from(*badge)); count]),
        BadgePlan::CountUnread(room) => {
            // `WHERE true`: SQLite needs it to tell the upsert's `ON` from a join's.
            sqlx::query(
                "INSERT INTO room_unreads (app_id, client_id, room, unread, updated_at_ms) \
                 SELECT ?1, j.value, ?3, 1, ?4 FROM json_each(?2) j WHERE true \
                 ON CONFLICT DO UPDATE SET unread = unread + 1, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(app)
            .bind(clients)
            .bind(room.as_str())
            .bind(push.now_ms)
            .execute(&mut *transaction)
            .await?;
        }
        BadgePlan::ClearRoom(room) => {
            sqlx::query("DELETE FROM room_unreads WHERE app_id = ?1 AND room = ?3 AND client_id IN (SELECT value FROM json_each(?2))")
                .bind(app)
                .bind(clients)
                .bind(room.as_str())
                .execute(&mut *transaction)
                .await?;
        }
    }
    let totals = badge_totals(transaction, app, clients, push.count_muted_rooms, push.now_ms).await?;
    Ok(totals.into_iter().map(Some).collect())
}

/// Registers a device in the open transaction (which holds SQLite's write
/// lock, so two registrations of one token cannot both pass the delete and
/// then collide).
async fn upsert_device(transaction: &mut SqliteConnection, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
    let token_kind = device.device_type.token_kind().as_str();
    let moved = sqlx::query(
        "DELETE FROM devices WHERE app_id = ?1 AND token_kind = ?2 AND token = ?3 \
         AND NOT (device_type = ?4 AND device_id = ?5)",
    )
    .bind(device.app_id.as_str())
    .bind(token_kind)
    .bind(device.token.as_str())
    .bind(device.device_type.as_str())
    .bind(device.device_id.as_str())
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    sqlx::query(
        "INSERT INTO devices (app_id, device_type, device_id, client_id, token_kind, token, \
                              environment, locale, timezone, created_at_ms, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
         ON CONFLICT (app_id, device_type, device_id) DO UPDATE SET \
            client_id = excluded.client_id, \
            token_kind = excluded.token_kind, \
            token = excluded.token, \
            environment = COALESCE(excluded.environment, devices.environment), \
            locale = COALESCE(excluded.locale, devices.locale), \
            timezone = COALESCE(excluded.timezone, devices.timezone), \
            updated_at_ms = excluded.updated_at_ms",
    )
    .bind(device.app_id.as_str())
    .bind(device.device_type.as_str())
    .bind(device.device_id.as_str())
    .bind(device.client_id.as_str())
    .bind(token_kind)
    .bind(device.token.as_str())
    .bind(device.environment.map(Environment::as_str))
    .bind(device.locale.as_ref().map(Locale::as_str))
    .bind(device.timezone.as_ref().map(TimeZoneName::as_str))
    .bind(device.now_ms)
    .execute(&mut *transaction)
    .await?;
    Ok(UpsertOutcome { token_moved_from: moved })
}

async fn clear_room(
    connection: &mut SqliteConnection,
    app: &str,
    client: &str,
    room: &RoomId,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM room_unreads WHERE app_id = ?1 AND client_id = ?2 AND room = ?3")
        .bind(app)
        .bind(client)
        .bind(room.as_str())
        .execute(connection)
        .await?;
    Ok(())
}

fn device_from_row(row: &SqliteRow) -> Result<Device, StoreError> {
    let corrupt = |what: &str, error: pushgate_domain::ParseError| StoreError::Corrupt(format!("{what}: {error}"));
    let text = |column: &str| row.try_get::<String, _>(column);
    let optional = |column: &str| row.try_get::<Option<String>, _>(column);
    Ok(Device {
        device_type: DeviceType::parse(&text("device_type")?).map_err(|e| corrupt("device_type", e))?,
        device_id: DeviceId::parse(&text("device_id")?).map_err(|e| corrupt("device_id", e))?,
        client_id: ClientId::parse(&text("client_id")?).map_err(|e| corrupt("client_id", e))?,
        token: PushToken::from_trusted_storage(text("token")?),
        environment: optional("environment")?
            .map(|raw| Environment::parse(&raw))
            .transpose()
            .map_err(|e| corrupt("environment", e))?,
        locale: optional("locale")?.map(|raw| Locale::parse(&raw)).transpose().map_err(|e| corrupt("locale", e))?,
        timezone: optional("timezone")?
            .map(|raw| TimeZoneName::parse(&raw))
            .transpose()
            .map_err(|e| corrupt("timezone", e))?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        self.registrations.write(device.clone()).await
    }

    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let result = sqlx::query(
            "DELETE FROM devices WHERE app_id = ?1 AND device_type = ?2 AND device_id = ?3 AND client_id = ?4",
        )
        .bind(app_id.as_str())
        .bind(device_type.as_str())
        .bind(device_id.as_str())
        .bind(client_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError> {
        // `INDEXED BY`: see `route_client` (the accept in `insert_push` needs it too).
        let rows = sqlx::query(
            "SELECT device_type, device_id, client_id, token, environment, locale, timezone, \
                    created_at_ms, updated_at_ms \
             FROM devices INDEXED BY devices_client WHERE app_id = ?1 AND client_id = ?2 \
             ORDER BY created_at_ms, device_type, device_id",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        let rows =
            sqlx::query("SELECT app_id, digest FROM api_keys ORDER BY created_at_ms").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let app_id = AppId::parse(&row.try_get::<String, _>("app_id")?)
                    .map_err(|e| StoreError::Corrupt(format!("api_keys.app_id: {e}")))?;
                let digest: Vec<u8> = row.try_get("digest")?;
                let digest =
                    digest.try_into().map_err(|_| StoreError::Corrupt("api_keys.digest is not 32 bytes".into()))?;
                Ok(StoredApiKey { app_id, digest })
            })
            .collect()
    }

    async fn insert_api_key(&self, key: &StoredApiKey, now_ms: i64) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        sqlx::query("INSERT INTO api_keys (digest, app_id, created_at_ms) VALUES (?1, ?2, ?3)")
            .bind(&key.digest[..])
            .bind(key.app_id.as_str())
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError> {
        self.accepts.write(push.clone()).await
    }

    async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let writer = self.writer.lock().await;
        let mut transaction = self.leases.begin_with("BEGIN IMMEDIATE").await?;
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
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&claimed)
            .map_err(|error| StoreError::Corrupt(format!("claimed deliveries: {error}")))?;
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
        .fetch_all(&self.pool)
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

    async fn record_attempt(&self, delivery_id: i64, update: &DeliveryUpdate) -> Result<(), StoreError> {
        self.records.write((delivery_id, update.clone())).await
    }

    async fn release_all_leases(&self) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let result = sqlx::query("UPDATE deliveries SET leased_until_ms = NULL WHERE leased_until_ms IS NOT NULL")
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn queue_depth(&self) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 'queued'), 0) AS queued, COALESCE(SUM(status = 'retrying'), 0) AS retrying \
             FROM deliveries WHERE status IN ('queued', 'retrying')",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = |column: &str| row.try_get::<i64, _>(column).map(|n| u64::try_from(n).unwrap_or_default());
        Ok((count("queued")?, count("retrying")?))
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(COALESCE(MAX(next_attempt_at_ms, leased_until_ms), next_attempt_at_ms)) AS due \
             FROM deliveries WHERE status IN ('queued', 'retrying')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }

    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().await;
        let result = sqlx::query(
            "DELETE FROM devices WHERE app_id = ?1 AND device_type = ?2 AND device_id = ?3 AND token = ?4 \
               AND (?5 IS NULL OR updated_at_ms <= ?5)",
        )
        .bind(app_id.as_str())
        .bind(device_type.as_str())
        .bind(device_id.as_str())
        .bind(token.as_str())
        .bind(invalid_since_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn push_view(&self, app_id: &AppId, push_id: &str) -> Result<Option<PushView>, StoreError> {
        let Some(push) = sqlx::query("SELECT created_at_ms FROM pushes WHERE push_id = ?1 AND app_id = ?2")
            .bind(push_id)
            .bind(app_id.as_str())
            .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
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

    async fn forget_before(&self, before_ms: i64, limit: u32) -> Result<(u64, u64), StoreError> {
        let _writer = self.writer.lock().await;
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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

    async fn badge(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        count_muted_rooms: bool,
        now_ms: i64,
    ) -> Result<BadgeView, StoreError> {
        let counts = |sql| {
            sqlx::query_as::<_, (String, i64)>(sql).bind(app_id.as_str()).bind(client_id.as_str()).fetch_all(&self.pool)
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
        let mut connection = self.pool.acquire().await?;
        let clients = serde_json::Value::from([client_id.as_str()]).to_string();
        let totals = badge_totals(&mut connection, app_id.as_str(), &clients, count_muted_rooms, now_ms).await?;
        Ok(BadgeView {
            total: totals.first().and_then(|total| u64::try_from(*total).ok()).unwrap_or_default(),
            rooms: to_map(rooms),
            sources: to_map(sources),
        })
    }

    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let mut connection = self.pool.acquire().await?;
        clear_room(&mut connection, app_id.as_str(), client_id.as_str(), room).await
    }

    async fn change_badge_source(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        source: &BadgeSource,
        change: SourceChange,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
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
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_room_pref(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        muted: bool,
        muted_until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO room_prefs (app_id, client_id, room, muted, muted_until_ms, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT DO UPDATE SET muted = excluded.muted, muted_until_ms = excluded.muted_until_ms, \
                                       updated_at_ms = excluded.updated_at_ms",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .bind(room.as_str())
        .bind(muted)
        .bind(muted_until_ms)
        .bind(now_ms)
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
        let _writer = self.writer.lock().await;
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
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn client_prefs(&self, app_id: &AppId, client_id: &ClientId) -> Result<ClientPrefs, StoreError> {
        let row = sqlx::query(
            "SELECT push_enabled, quiet_start, quiet_end, timezone, locale FROM client_prefs \
             WHERE app_id = ?1 AND client_id = ?2",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .fetch_optional(&self.pool)
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

    async fn set_client_prefs(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        prefs: &ClientPrefs,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_experiment(&self, app_id: &AppId, id: &str, definition: &str, now_ms: i64) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO experiments (app_id, experiment_id, definition, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO UPDATE SET definition = excluded.definition, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(app_id.as_str())
        .bind(id)
        .bind(definition)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn experiments(&self, app_id: &AppId) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT experiment_id, definition FROM experiments WHERE app_id = ?1 ORDER BY experiment_id",
        )
        .bind(app_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &str,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().await;
        let result = sqlx::query(
            "INSERT INTO opens (app_id, push_id, client_id, opened_at_ms) \
             SELECT ?1, ?2, ?3, ?4 FROM pushes WHERE push_id = ?2 AND app_id = ?1 \
             ON CONFLICT DO NOTHING",
        )
        .bind(app_id.as_str())
        .bind(push_id)
        .bind(client_id.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(true);
        }
        // Nothing inserted: an unknown push, or an open already recorded.
        let known = sqlx::query("SELECT 1 FROM pushes WHERE push_id = ?1 AND app_id = ?2")
            .bind(push_id)
            .bind(app_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(known.is_some())
    }

    async fn experiment_stats(&self, app_id: &AppId, id: &str) -> Result<Vec<VariantCounts>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.variant, COUNT(*) AS targeted, \
                    COALESCE(SUM(r.delivered), 0) AS delivered, COALESCE(SUM(r.failed), 0) AS failed, \
                    COALESCE(SUM(EXISTS (SELECT 1 FROM opens o WHERE o.app_id = ?1 AND o.push_id = r.push_id \
                                         AND o.client_id = r.client_id)), 0) AS opened \
             FROM (SELECT push_id, client_id, variant, MAX(status = 'delivered') AS delivered, \
                          MIN(status IN ('failed', 'pruned')) AS failed \
                   FROM deliveries WHERE app_id = ?1 AND experiment_id = ?2 AND status != 'skipped' \
                   GROUP BY push_id, client_id, variant) r \
             GROUP BY r.variant ORDER BY r.variant",
        )
        .bind(app_id.as_str())
        .bind(id)
        .fetch_all(&self.pool)
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
}
