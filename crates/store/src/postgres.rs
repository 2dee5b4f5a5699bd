//! The PostgreSQL backend: the same model as the embedded store (journal,
//! fan-out into `sends`, a row per delivery only when an outcome needs one),
//! on a database several pushgate processes can share. Claims lease with
//! `FOR UPDATE SKIP LOCKED`, so concurrent workers never take the same work;
//! fan-out batches hold a transaction-scoped advisory lock, so they run one at
//! a time across every node and badges stay exact. Decisions come from
//! `plan.rs` and a claim is read back by `claim.rs`, as for SQLite.

use crate::delivery::OutcomeGroup;
use crate::outcomes::{Outcome, Outcomes, RecordGroup};
use crate::plan::{self, CounterChange};
use crate::{
    Accepted, ApiKeyKind, BadgeView, ClaimedDelivery, ClientPrefs, Cluster, DeliveryRef, DeliveryStatus,
    DeliveryUpdate, DeliveryView, Device, NewDevice, NewPush, PushView, QueueDepth, RoutingPlan, SharedPause,
    SourceChange, Store, StoreError, StoredApiKey, UpsertOutcome, VariantCounts, claim,
};
use async_trait::async_trait;
use pushgate_domain::{
    AppId, BadgeSource, ClientId, DeliveryMode, DeviceId, DeviceType, Environment, Locale, ProviderKind, PushKind,
    PushToken, QuietHours, RecipientState, RoomId, TimeZoneName,
};
use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock every fan-out transaction holds (any constant, the same
/// on every node): journaled pushes fan out one batch at a time, in order.
const FAN_OUT_LOCK: i64 = 0x7075_7368_6761_7465; // "pushgate"
/// Most journaled pushes fanned out per transaction.
const FAN_OUT_PUSHES: i64 = 64;
/// Recipients after which a fan-out transaction takes no further push.
const FAN_OUT_RECIPIENTS: usize = 256;
/// Batches of the journal a claim fans out before it claims.
const FAN_OUT_BATCHES_PER_CLAIM: usize = 4;
/// The `LISTEN`/`NOTIFY` channel on which nodes announce accepted work.
const WORK_CHANNEL: &str = "pushgate_work";
/// Most deliveries planned in one `sends` row.
const SEND_SIZE: i64 = 256;

/// A [`Store`] on a PostgreSQL database, shareable by several processes.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Outcomes recorded at the same time, committed together.
    outcomes: Outcomes,
}

/// Where the outcome batcher commits: one transaction per group.
struct OutcomeTarget(PgPool);

#[async_trait]
impl RecordGroup for OutcomeTarget {
    async fn record_group(&self, outcomes: Arc<Vec<Outcome>>) -> Result<(), StoreError> {
        let mut transaction = self.0.begin().await?;
        record(&mut transaction, &outcomes).await?;
        transaction.commit().await?;
        Ok(())
    }
}

impl PgStore {
    /// The advisory lock housekeeping holds, so one node at a time forgets.
    #[doc(hidden)]
    pub const HOUSEKEEPING_LOCK: i64 = FAN_OUT_LOCK + 1;

    /// Connects to a `postgres://` URL and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(PgConnectOptions::from_str(url)?).await
    }

    /// Connects with every table in `schema` (created if needed): for tests,
    /// which each take a schema of their own so they run in parallel.
    #[doc(hidden)]
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Internal(format!("not a schema name: {schema:?}").into()));
        }
        let mut connection = <PgConnection as sqlx::Connection>::connect_with(&options).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
            .execute(&mut connection)
            .await?;
        Self::connect(options.options([("search_path", schema)])).await
    }

    async fn connect(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await.map_err(|error| StoreError::Internal(error.into()))?;
        let outcomes = Outcomes::spawn(OutcomeTarget(pool.clone()));
        Ok(Self { pool, outcomes })
    }

    /// Fans out every push journaled before this call, in journal order, a
    /// batch per transaction; answers how many.
    pub async fn fan_out_journal(&self) -> Result<usize, StoreError> {
        let Some(up_to_seq) = self.last_journaled().await? else { return Ok(0) };
        let mut total = 0;
        loop {
            let (pushes, more) = self.fan_out_batch(up_to_seq).await?;
            total += pushes;
            if !more {
                return Ok(total);
            }
        }
    }

    async fn last_journaled(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MAX(seq) FROM journal").fetch_one(&self.pool).await?)
    }

    /// One batch of the fan-out: (pushes fanned out, whether more wait).
    async fn fan_out_batch(&self, up_to_seq: i64) -> Result<(usize, bool), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(FAN_OUT_LOCK).execute(&mut *transaction).await?;
        let rows = sqlx::query(
            "SELECT j.seq, j.plan, p.push_id, p.app_id, p.kind, p.created_at_ms, p.deadline_ms \
             FROM journal j JOIN pushes p ON p.push_id = j.push_id WHERE j.seq <= $2 ORDER BY j.seq LIMIT $1",
        )
        .bind(FAN_OUT_PUSHES)
        .bind(up_to_seq)
        .fetch_all(&mut *transaction)
        .await?;
        // The rows taken, by `seq`: a lower `seq` may commit after a higher
        // one was read (sequences are taken at insert, not at commit), so
        // only what was read is deleted, never a range.
        let (mut taken, mut pushes, mut recipients) = (Vec::new(), 0, 0);
        for row in &rows {
            if recipients >= FAN_OUT_RECIPIENTS {
                break;
            }
            let corrupt = |what: &str| StoreError::Corrupt(format!("pushes.{what}"));
            let mut push = NewPush {
                push_id: row.try_get("push_id")?,
                app_id: AppId::parse(&row.try_get::<String, _>("app_id")?).map_err(|_| corrupt("app_id"))?,
                kind: PushKind::parse(&row.try_get::<String, _>("kind")?).map_err(|_| corrupt("kind"))?,
                request: String::new(),
                clients: Vec::new(),
                now_ms: row.try_get("created_at_ms")?,
                deadline_ms: row.try_get("deadline_ms")?,
                skip_all: None,
                callback: None,
                badge: crate::BadgePlan::None,
                count_muted_rooms: true,
                routing: None,
                experiment: None,
            };
            taken.push(row.try_get::<i64, _>("seq")?);
            if let Err(error) = plan::apply_journal_entry(&mut push, &row.try_get::<String, _>("plan")?) {
                tracing::error!(push.id = %push.push_id, error = %error, "a journaled push is unreadable; it is not fanned out");
                continue;
            }
            fan_out_push(&mut transaction, &push).await?;
            pushes += 1;
            recipients += push.clients.len();
        }
        if !taken.is_empty() {
            sqlx::query("DELETE FROM journal WHERE seq = ANY($1)").bind(&taken).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        let more = pushes < rows.len() || rows.len() == usize::try_from(FAN_OUT_PUSHES).unwrap_or(usize::MAX);
        Ok((pushes, more))
    }
}

/// One push's recipients: counters, badges and routes by the shared plan,
/// and its planned deliveries in `sends` rows (see the SQLite fan-out).
///
/// The devices are looked up per recipient (`LATERAL … OFFSET 0`, which the
/// planner cannot turn into a join): a push reaches a few of an app's
/// devices, and with a join the planner, which guesses 100 rows for a JSON
/// array, may scan all of them (it did: 10 ms per push at 20,000 devices).
async fn fan_out_push(connection: &mut PgConnection, push: &NewPush) -> Result<(), StoreError> {
    let clients = plan::recipients(push);
    let clients_json = serde_json::Value::from_iter(clients.iter().map(|client| client.as_str())).to_string();
    let totals = apply_counter_change(connection, push, &clients_json).await?;
    let states = match &push.routing {
        Some(routing) => Some(routing_states(connection, push, &clients_json, routing).await?),
        None => None,
    };
    let plans = plan::plan_recipients(push, &clients, totals, states);
    let plans = serde_json::to_string(&plans).map_err(|error| StoreError::Corrupt(format!("accept plan: {error}")))?;
    sqlx::query(
        "INSERT INTO sends (push_id, app_id, experiment_id, deliveries, queued, pending, next_attempt_at_ms, \
                            updated_at_ms) \
         SELECT $1, $4, $5, jsonb_agg(entry ORDER BY n), SUM(queued), SUM(queued), $2, $2 FROM ( \
           SELECT entry, queued, n, (n - 1) / $7 AS chunk FROM ( \
             SELECT entry, queued, ROW_NUMBER() OVER (ORDER BY side, key, device_type, device_id) AS n FROM ( \
               SELECT 0 AS side, j.key, d.device_type, d.device_id, \
                      CASE WHEN j.value ->> 'status' = 'queued' THEN 1 ELSE 0 END AS queued, \
                      jsonb_build_object('client_id', d.client_id, 'device_type', d.device_type, \
                          'device_id', d.device_id, 'token', d.token, 'environment', d.environment, \
                          'locale', COALESCE(p.locale, d.locale), 'badge', j.value -> 'badge', \
                          'status', j.value -> 'status', 'reason', j.value -> 'reason', 'mode', j.value -> 'mode', \
                          'route_reason', j.value -> 'route_reason', 'variant', j.value -> 'variant') AS entry \
               FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS j (value, key) \
               CROSS JOIN LATERAL (SELECT * FROM devices \
                                   WHERE app_id = $4 AND client_id = j.value ->> 'client' OFFSET 0) d \
               LEFT JOIN client_prefs p ON p.app_id = d.app_id AND p.client_id = d.client_id \
               UNION ALL \
               SELECT 1, j.key, NULL, NULL, 0, \
                      jsonb_build_object('client_id', j.value -> 'client', 'badge', j.value -> 'badge', \
                          'status', 'skipped', 'reason', $6::text) \
               FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS j (value, key) \
               WHERE NOT EXISTS (SELECT 1 FROM devices WHERE app_id = $4 AND client_id = j.value ->> 'client' \
                                 OFFSET 0) \
             ) planned \
           ) numbered \
         ) chunked GROUP BY chunk",
    )
    .bind(&push.push_id)
    .bind(push.now_ms)
    .bind(&plans)
    .bind(push.app_id.as_str())
    .bind(push.experiment.as_ref().map(|experiment| experiment.id.as_str()))
    .bind(plan::NO_DEVICE)
    .bind(SEND_SIZE)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn routing_states(
    connection: &mut PgConnection,
    push: &NewPush,
    clients: &str,
    plan: &RoutingPlan,
) -> Result<Vec<RecipientState>, StoreError> {
    let rows: String = sqlx::query_scalar(
        "SELECT COALESCE(jsonb_agg(jsonb_build_array(push_enabled, quiet_start, quiet_end, timezone, muted, online) \
                                   ORDER BY key), '[]')::text FROM ( \
           SELECT j.key, p.push_enabled::int AS push_enabled, p.quiet_start, p.quiet_end, \
                  COALESCE(p.timezone, (SELECT timezone FROM devices WHERE app_id = $1 AND client_id = j.value \
                                        AND timezone IS NOT NULL ORDER BY updated_at_ms DESC LIMIT 1)) AS timezone, \
                  (EXISTS (SELECT 1 FROM room_prefs WHERE app_id = $1 AND client_id = j.value AND room = $3 \
                           AND muted AND (muted_until_ms IS NULL OR muted_until_ms > $4)))::int AS muted, \
                  (EXISTS (SELECT 1 FROM presence WHERE app_id = $1 AND client_id = j.value \
                           AND online_until_ms > $4))::int AS online \
           FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS j (value, key) \
           LEFT JOIN client_prefs p ON p.app_id = $1 AND p.client_id = j.value) known",
    )
    .bind(push.app_id.as_str())
    .bind(clients)
    .bind(plan.room.as_str())
    .bind(push.now_ms)
    .fetch_one(&mut *connection)
    .await?;
    plan::recipient_states(&rows)
}

/// The badge totals of `$2` (clients, a JSON array), in its order (see the
/// SQLite `BADGE_TOTALS`).
const BADGE_TOTALS: &str = "SELECT COALESCE(jsonb_agg(total ORDER BY key), '[]')::text FROM ( \
    SELECT j.key, (SELECT COALESCE(SUM(u.unread), 0) FROM room_unreads u \
            WHERE u.app_id = $1 AND u.client_id = j.value AND ($3 OR NOT EXISTS ( \
                SELECT 1 FROM room_prefs r WHERE r.app_id = $1 AND r.client_id = j.value AND r.room = u.room \
                AND r.muted AND (r.muted_until_ms IS NULL OR r.muted_until_ms > $4)))) \
         + (SELECT COALESCE(SUM(count), 0) FROM badge_sources WHERE app_id = $1 AND client_id = j.value) AS total \
    FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS j (value, key)) totals";

async fn badge_totals(
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

async fn apply_counter_change(
    connection: &mut PgConnection,
    push: &NewPush,
    clients: &str,
) -> Result<Option<Vec<i64>>, StoreError> {
    let app = push.app_id.as_str();
    match push.badge.counter_change() {
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
    if !push.badge.carries_totals() {
        return Ok(None);
    }
    Ok(Some(badge_totals(connection, app, clients, push.count_muted_rooms, push.now_ms).await?))
}

fn device_from_columns(
    (device_type, device_id, client_id, token, environment, locale, timezone, created_at_ms, updated_at_ms): DeviceRow,
) -> Result<Device, StoreError> {
    let corrupt = |what: &str, error: pushgate_domain::ParseError| StoreError::Corrupt(format!("{what}: {error}"));
    Ok(Device {
        device_type: DeviceType::parse(&device_type).map_err(|e| corrupt("device_type", e))?,
        device_id: DeviceId::parse(&device_id).map_err(|e| corrupt("device_id", e))?,
        client_id: ClientId::parse(&client_id).map_err(|e| corrupt("client_id", e))?,
        token: PushToken::from_trusted_storage(token),
        environment: environment
            .map(|raw| Environment::parse(&raw))
            .transpose()
            .map_err(|e| corrupt("environment", e))?,
        locale: locale.map(|raw| Locale::parse(&raw)).transpose().map_err(|e| corrupt("locale", e))?,
        timezone: timezone.map(|raw| TimeZoneName::parse(&raw)).transpose().map_err(|e| corrupt("timezone", e))?,
        created_at_ms,
        updated_at_ms,
    })
}

type DeviceRow = (String, String, String, String, Option<String>, Option<String>, Option<String>, i64, i64);

/// Records outcomes as the SQLite store does (see `sqlite::queue::record`):
/// own rows updated, planned entries settled in their send, a row of their
/// own only for an outcome other than a first-attempt success.
async fn record(connection: &mut PgConnection, updates: &[(DeliveryRef, DeliveryUpdate)]) -> Result<(), StoreError> {
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
            "INSERT INTO deliveries (push_id, app_id, client_id, device_type, device_id, token, environment, locale, \
                                     badge, status, reason, attempts, next_attempt_at_ms, updated_at_ms, mode, \
                                     route_reason, experiment_id, variant, send_id, send_index) \
             SELECT s.push_id, s.app_id, e ->> 'client_id', e ->> 'device_type', e ->> 'device_id', e ->> 'token', \
                    e ->> 'environment', e ->> 'locale', (e ->> 'badge')::bigint, u.status, u.reason, u.attempted, \
                    u.next, u.now, e ->> 'mode', e ->> 'route_reason', s.experiment_id, e ->> 'variant', s.id, u.index \
             FROM jsonb_to_recordset($1::jsonb) AS u (send BIGINT, index INTEGER, status TEXT, reason TEXT, \
                                                      next BIGINT, attempted INTEGER, now BIGINT) \
             JOIN sends s ON s.id = u.send CROSS JOIN LATERAL (SELECT s.deliveries -> u.index AS e) entry \
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
impl Store for PgStore {
    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_device(&self, device: &NewDevice) -> Result<UpsertOutcome, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let token_kind = device.device_type.token_kind().as_str();
        // Registrations of one token (on any node) take turns on an
        // advisory lock named after it, so two cannot both pass the delete
        // and then collide on the insert.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{}\u{1f}{token_kind}\u{1f}{}", device.app_id.as_str(), device.token.as_str()))
            .execute(&mut *transaction)
            .await?;
        let moved = sqlx::query(
            "DELETE FROM devices WHERE app_id = $1 AND token_kind = $2 AND token = $3 \
             AND NOT (device_type = $4 AND device_id = $5)",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (app_id, device_type, device_id) DO UPDATE SET \
                client_id = excluded.client_id, token_kind = excluded.token_kind, token = excluded.token, \
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
        transaction.commit().await?;
        Ok(UpsertOutcome { token_moved_from: moved })
    }

    async fn remove_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        client_id: &ClientId,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM devices WHERE app_id = $1 AND device_type = $2 AND device_id = $3 AND client_id = $4",
        )
        .bind(app_id.as_str())
        .bind(device_type.as_str())
        .bind(device_id.as_str())
        .bind(client_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn app_devices(
        &self,
        app_id: &AppId,
        after: Option<(DeviceType, DeviceId)>,
        limit: u32,
    ) -> Result<Vec<Device>, StoreError> {
        let (after_type, after_id) = after.map_or((String::new(), String::new()), |(device_type, device_id)| {
            (device_type.as_str().to_owned(), device_id.as_str().to_owned())
        });
        let rows = sqlx::query_as::<_, DeviceRow>(
            "SELECT device_type, device_id, client_id, token, environment, locale, timezone, \
                    created_at_ms, updated_at_ms \
             FROM devices WHERE app_id = $1 AND (device_type, device_id) > ($2, $3) \
             ORDER BY device_type, device_id LIMIT $4",
        )
        .bind(app_id.as_str())
        .bind(after_type)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(device_from_columns).collect()
    }

    async fn client_devices(&self, app_id: &AppId, client_id: &ClientId) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query_as::<_, DeviceRow>(
            "SELECT device_type, device_id, client_id, token, environment, locale, timezone, \
                    created_at_ms, updated_at_ms \
             FROM devices WHERE app_id = $1 AND client_id = $2 ORDER BY created_at_ms, device_type, device_id",
        )
        .bind(app_id.as_str())
        .bind(client_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(device_from_columns).collect()
    }

    async fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        let rows = sqlx::query_as::<_, (String, Vec<u8>, String, i64)>(
            "SELECT app_id, digest, kind, created_at_ms FROM api_keys ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(app_id, digest, kind, created_at_ms)| {
                let app_id = AppId::parse(&app_id).map_err(|e| StoreError::Corrupt(format!("api_keys.app_id: {e}")))?;
                let digest =
                    digest.try_into().map_err(|_| StoreError::Corrupt("api_keys.digest is not 32 bytes".into()))?;
                Ok(StoredApiKey { app_id, digest, kind: ApiKeyKind::parse(&kind)?, created_at_ms })
            })
            .collect()
    }

    async fn create_api_key(&self, key: &StoredApiKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (digest, app_id, kind, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&key.digest[..])
            .bind(key.app_id.as_str())
            .bind(key.kind.as_str())
            .bind(key.created_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_api_key(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM api_keys WHERE digest = $1").bind(&digest[..]).execute(&self.pool).await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn insert_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        // Nodes starting at once take turns per app, so one key is kept.
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("api-key\u{1f}{}", key.app_id.as_str()))
            .execute(&mut *transaction)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (digest, app_id, kind, created_at_ms) SELECT $1, $2, 'generated', $3 \
             WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE app_id = $2 AND kind = 'generated')",
        )
        .bind(&key.digest[..])
        .bind(key.app_id.as_str())
        .bind(key.created_at_ms)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(inserted == 1)
    }

    async fn accept_push(&self, push: &NewPush) -> Result<Accepted, StoreError> {
        let mut transaction = self.pool.begin().await?;
        if let Some(callback) = &push.callback {
            let to_client = callback.to_client.as_ref().map_or("", ClientId::as_str);
            // A concurrent accept of the same callback (on any node) waits
            // here for the first one's commit, then finds its row.
            let first = sqlx::query(
                "INSERT INTO callbacks (app_id, message_id, to_client, push_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
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
                    "SELECT push_id FROM callbacks WHERE app_id = $1 AND message_id = $2 AND to_client = $3",
                )
                .bind(push.app_id.as_str())
                .bind(&callback.message_id)
                .bind(to_client)
                .fetch_one(&mut *transaction)
                .await?;
                return Ok(Accepted { duplicate_of: Some(earlier) });
            }
        }
        sqlx::query(
            "INSERT INTO pushes (push_id, app_id, kind, request, created_at_ms, deadline_ms, experiment) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        sqlx::query("INSERT INTO journal (push_id, plan) VALUES ($1, $2)")
            .bind(&push.push_id)
            .bind(plan::journal_entry(push))
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(Accepted { duplicate_of: None })
    }

    async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if let Some(up_to_seq) = self.last_journaled().await? {
            for _ in 0..FAN_OUT_BATCHES_PER_CLAIM {
                if !self.fan_out_batch(up_to_seq).await?.1 {
                    break;
                }
            }
        }
        let mut transaction = self.pool.begin().await?;
        // `SKIP LOCKED`: what another node is claiming right now is left to it.
        let own: String = sqlx::query_scalar(
            "WITH due AS (SELECT id FROM deliveries \
                          WHERE status IN ('queued', 'retrying') AND next_attempt_at_ms <= $1 \
                            AND (leased_until_ms IS NULL OR leased_until_ms <= $1) \
                          ORDER BY next_attempt_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED), \
                  leased AS (UPDATE deliveries d SET leased_until_ms = $3 FROM due WHERE d.id = due.id \
                             RETURNING d.id, d.push_id, d.app_id, d.client_id, d.device_type, d.device_id, d.token, \
                                       d.environment, d.locale, d.badge, d.attempts, d.mode, d.variant) \
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
                 SELECT COALESCE(jsonb_agg(to_jsonb(leased)), '[]')::text FROM leased",
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
            let rows = sqlx::query_as::<_, (String, String, String, i64, Option<String>)>(
                "SELECT push_id, kind, request, deadline_ms, experiment FROM pushes WHERE push_id = ANY($1)",
            )
            .bind(&push_ids)
            .fetch_all(&self.pool)
            .await?;
            for (push_id, kind, request, deadline_ms, experiment) in rows {
                pushes.insert(push_id, claim::claimed_push(&kind, request, deadline_ms, experiment)?);
            }
        }
        claim::expand(&own, &sends, &pushes)
    }

    async fn record_attempt(&self, delivery: DeliveryRef, update: &DeliveryUpdate) -> Result<(), StoreError> {
        self.outcomes.record((delivery, update.clone())).await
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
        let (journaled, queued, retrying): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM journal), \
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'queued') \
                      + (SELECT COALESCE(SUM(pending), 0) FROM sends WHERE pending > 0)::bigint, \
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'retrying')",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(QueueDepth { journaled: count(journaled), queued: count(queued), retrying: count(retrying) })
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
               FROM sends WHERE pending > 0) due",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn prune_device(
        &self,
        app_id: &AppId,
        device_type: DeviceType,
        device_id: &DeviceId,
        token: &PushToken,
        invalid_since_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "DELETE FROM devices WHERE app_id = $1 AND device_type = $2 AND device_id = $3 AND token = $4 \
               AND ($5::bigint IS NULL OR updated_at_ms <= $5)",
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
        self.fan_out_journal().await?;
        let Some(created_at_ms) =
            sqlx::query_scalar::<_, i64>("SELECT created_at_ms FROM pushes WHERE push_id = $1 AND app_id = $2")
                .bind(push_id)
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
        );
        let rows = sqlx::query_as::<_, ViewRow>(
            "SELECT client_id, device_type, device_id, status, reason, attempts, next_attempt_at_ms, updated_at_ms, \
                    mode, route_reason, variant \
             FROM delivery_states WHERE push_id = $1 ORDER BY send_id IS NULL, send_id, send_index",
        )
        .bind(push_id)
        .fetch_all(&self.pool)
        .await?;
        let deliveries = rows
            .into_iter()
            .map(
                |(client_id, device_type, device_id, status, reason, attempts, next, updated, mode, route, variant)| {
                    Ok(DeliveryView {
                        client_id,
                        device_type,
                        device_id,
                        status: DeliveryStatus::parse(&status)
                            .ok_or_else(|| StoreError::Corrupt(format!("deliveries.status {status:?}")))?,
                        reason,
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
        Ok(Some(PushView { push_id: push_id.to_owned(), created_at_ms, deliveries }))
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
                               AND d.status IN ('queued', 'retrying')) \
               AND NOT EXISTS (SELECT 1 FROM sends s WHERE s.push_id = p.push_id AND s.pending > 0) \
               AND NOT EXISTS (SELECT 1 FROM journal j WHERE j.push_id = p.push_id) \
               ORDER BY created_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED), \
             gone_deliveries AS (DELETE FROM deliveries WHERE push_id IN (SELECT push_id FROM forgotten)), \
             gone_sends AS (DELETE FROM sends WHERE push_id IN (SELECT push_id FROM forgotten)), \
             gone_opens AS (DELETE FROM opens WHERE push_id IN (SELECT push_id FROM forgotten)), \
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
        muted: bool,
        muted_until_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        sqlx::query(
            "INSERT INTO room_prefs (app_id, client_id, room, muted, muted_until_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (app_id, client_id, room) DO UPDATE SET muted = excluded.muted, \
                 muted_until_ms = excluded.muted_until_ms, updated_at_ms = excluded.updated_at_ms",
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

    async fn put_experiment(&self, app_id: &AppId, id: &str, definition: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO experiments (app_id, experiment_id, definition, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, experiment_id) DO UPDATE SET definition = excluded.definition, \
                 updated_at_ms = excluded.updated_at_ms",
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
        Ok(sqlx::query_as::<_, (String, String)>(
            "SELECT experiment_id, definition FROM experiments WHERE app_id = $1 ORDER BY experiment_id",
        )
        .bind(app_id.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_open(
        &self,
        app_id: &AppId,
        push_id: &str,
        client_id: &ClientId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO opens (app_id, push_id, client_id, opened_at_ms) \
             SELECT $1, $2, $3, $4 FROM pushes WHERE push_id = $2 AND app_id = $1 \
             ON CONFLICT DO NOTHING",
        )
        .bind(app_id.as_str())
        .bind(push_id)
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
            .bind(push_id)
            .bind(app_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(known.is_some())
    }

    async fn experiment_stats(&self, app_id: &AppId, id: &str) -> Result<Vec<VariantCounts>, StoreError> {
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
        .bind(id)
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

    async fn mark_room_read(
        &self,
        app_id: &AppId,
        client_id: &ClientId,
        room: &RoomId,
        _now_ms: i64,
    ) -> Result<(), StoreError> {
        self.fan_out_journal().await?;
        sqlx::query("DELETE FROM room_unreads WHERE app_id = $1 AND client_id = $2 AND room = $3")
            .bind(app_id.as_str())
            .bind(client_id.as_str())
            .bind(room.as_str())
            .execute(&self.pool)
            .await?;
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
