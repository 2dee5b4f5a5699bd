//! The SQLite store against the shared conformance suite, on a real file.

use pushgate_store::{ClientStore, DeviceStore, KeyStore, QueueStore, SqliteStore, Store, conformance};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.expect("open"));
    conformance::run_all(store).await;
}

#[tokio::test]
async fn reopening_a_database_keeps_its_devices_and_skips_applied_migrations() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let key = pushgate_store::StoredApiKey {
        app_id: pushgate_domain::AppId::parse("SampleApp").expect("app id"),
        digest: [1u8; 32],
        kind: pushgate_store::ApiKeyKind::Generated,
        created_at_ms: 5,
    };
    SqliteStore::open(&url).await.expect("first open").insert_api_key(&key).await.expect("insert");
    let reopened = SqliteStore::open(&url).await.expect("second open");
    assert_eq!(reopened.api_keys().await.expect("keys"), vec![key]);
}

/// A push of `SampleApp` to one client without devices.
fn push_to_nobody(name: &str) -> pushgate_store::NewPush {
    pushgate_store::NewPush { deadline_ms: 2, ..conformance::new_push("SampleApp", name, &["nobody"], 1) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_commits_and_every_one_is_stored() {
    use pushgate_domain::AppId;
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
    let app = AppId::parse("SampleApp").expect("app id");
    let accepts: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&store);
            let push = push_to_nobody(&format!("push-{n}"));
            tokio::spawn(async move { store.accept_push(&push).await })
        })
        .collect();
    for accept in accepts {
        accept.await.expect("task").expect("accepted");
    }
    for n in 0..64 {
        assert!(
            store.push_view(&app, &conformance::push_id(&format!("push-{n}"))).await.expect("view").is_some(),
            "push-{n} is stored"
        );
    }
    let transactions = store.writer_transactions();
    assert!(transactions < 64, "64 concurrent accepts took {transactions} transactions");
}

#[tokio::test]
async fn a_push_that_cannot_be_stored_does_not_fail_the_others_in_its_group() {
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
    let push = push_to_nobody;
    store.accept_push(&push("taken")).await.expect("first");
    // A duplicate id fails its own insert; the pushes grouped with it still go through.
    let (taken, fresh) = (push("taken"), push("fresh"));
    let (duplicate, fresh) = tokio::join!(store.accept_push(&taken), store.accept_push(&fresh));
    assert!(duplicate.is_err());
    fresh.expect("the other push of the group is stored");
}

/// Many concurrent callbacks for one client: no increment is lost, and a
/// callback sent several times at once is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callbacks_never_lose_an_increment_and_count_duplicates_once() {
    use pushgate_domain::{AppId, ClientId, RoomId};
    use pushgate_store::{BadgePlan, CallbackKey};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
    let accepts: Vec<_> = (0..200)
        .map(|n| {
            let store = Arc::clone(&store);
            // 100 distinct messages, each sent twice.
            let push = push_to_nobody(&format!("push-{n}"))
                .with_callback(CallbackKey { message_id: format!("m{}", n % 100), to_client: None })
                .with_badge(BadgePlan::CountUnread(RoomId::parse(&format!("room-{}", n % 3)).expect("room")), true);
            tokio::spawn(async move { store.accept_push(&push).await })
        })
        .collect();
    let mut duplicates = 0;
    for accept in accepts {
        duplicates += usize::from(accept.await.expect("task").expect("accepted").duplicate_of.is_some());
    }
    assert_eq!(duplicates, 100);
    let badge = store
        .badge(&AppId::parse("SampleApp").expect("app"), &ClientId::parse("nobody").expect("client"), true, 0)
        .await
        .expect("badge");
    assert_eq!(badge.total, 100);
    assert_eq!(badge.rooms.values().sum::<u64>(), 100);
}

/// Outcomes recorded at once (group-committed in one statement) each land
/// on their own delivery with their own status, reason and attempt count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_outcomes_each_land_on_their_own_delivery() {
    use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, PushToken};
    use pushgate_store::{DeliveryStatus, DeliveryUpdate, NewDevice};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
    let app = AppId::parse("SampleApp").expect("app id");
    for n in 0..40 {
        let token = format!("{n:064x}");
        let device = NewDevice {
            app_id: app.clone(),
            device_type: DeviceType::Ios,
            device_id: DeviceId::parse(&format!("device-{n}")).expect("device id"),
            client_id: ClientId::parse("many").expect("client"),
            token: PushToken::parse(DeviceType::Ios, &token).expect("token"),
            environment: None,
            locale: None,
            timezone: None,
            push_key: None,
            now_ms: 1,
        };
        store.upsert_device(&device).await.expect("registered");
    }
    let mut push = pushgate_store::NewPush { deadline_ms: 1_000_000, ..push_to_nobody("outcomes") };
    push.fan_out.clients = vec![ClientId::parse("many").expect("client")];
    assert_eq!(store.accept_push(&push).await.expect("accepted").duplicate_of, None);
    store.fan_out_journal().await.expect("fanned out");
    let claimed = store.claim_due_deliveries(10, 100, 60_000).await.expect("claimed");
    assert_eq!(claimed.len(), 40);
    // Even deliveries are delivered; odd ones retry at a time of their own.
    let records: Vec<_> = claimed
        .iter()
        .enumerate()
        .map(|(n, delivery)| {
            let store = Arc::clone(&store);
            let n = i64::try_from(n).expect("small");
            let update = if n % 2 == 0 {
                DeliveryUpdate {
                    status: DeliveryStatus::Delivered,
                    reason: None,
                    next_attempt_at_ms: None,
                    attempted: true,
                    now_ms: 20,
                }
            } else {
                DeliveryUpdate {
                    status: DeliveryStatus::Retrying,
                    reason: Some(pushgate_domain::Reason::provider(format!("busy {n}"))),
                    next_attempt_at_ms: Some(1000 + n),
                    attempted: true,
                    now_ms: 20,
                }
            };
            let id = delivery.id;
            tokio::spawn(async move { store.record_attempt(id, &update).await })
        })
        .collect();
    for record in records {
        record.await.expect("task").expect("recorded");
    }
    let view = store.push_view(&app, &conformance::push_id("outcomes")).await.expect("view").expect("stored");
    assert_eq!(view.deliveries.len(), 40);
    let retrying: Vec<_> =
        view.deliveries.iter().filter(|delivery| delivery.status == DeliveryStatus::Retrying).collect();
    assert_eq!(retrying.len(), 20);
    for delivery in &view.deliveries {
        assert_eq!(delivery.attempts, 1, "{delivery:?}");
        assert_eq!(delivery.updated_at_ms, 20);
        if delivery.status == DeliveryStatus::Retrying {
            let reason = delivery.reason.as_ref().map(ToString::to_string).expect("a reason");
            let n = reason.strip_prefix("busy ").expect("its own reason");
            assert_eq!(delivery.next_attempt_at_ms, Some(1000 + n.parse::<i64>().expect("number")));
        } else {
            assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
            assert_eq!(delivery.reason, None);
        }
    }
    // The push's planned deliveries are one row; only the retries got a row
    // of their own, and the successes none.
    assert_eq!(row_counts(&url).await, (1, 20), "(sends, deliveries)");
    // Only the retries are due again, at their own times.
    assert!(store.claim_due_deliveries(1000, 100, 60_000).await.expect("claim").is_empty());
    assert_eq!(store.claim_due_deliveries(2000, 100, 60_000).await.expect("claim").len(), 20);
}

/// Rows in `sends` and in `deliveries`, read beside the store on its file.
async fn row_counts(url: &str) -> (i64, i64) {
    let pool = sqlx::SqlitePool::connect(url).await.expect("a second connection");
    let sends = sqlx::query_scalar("SELECT COUNT(*) FROM sends").fetch_one(&pool).await.expect("sends");
    let deliveries = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries").fetch_one(&pool).await.expect("deliveries");
    (sends, deliveries)
}

/// The happy path writes a number of rows per push, not per delivery: a
/// push to 300 devices all delivered at their first attempt leaves two
/// `sends` rows (256 deliveries each at most) and no delivery row, and its
/// status still lists every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_that_succeed_at_their_first_attempt_cost_no_row_of_their_own() {
    use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, PushToken};
    use pushgate_store::{DeliveryStatus, DeliveryUpdate, NewDevice};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = SqliteStore::open(&url).await.expect("open");
    let app = AppId::parse("SampleApp").expect("app id");
    let mut clients = Vec::new();
    for n in 0..300 {
        let client = ClientId::parse(&format!("client-{n}")).expect("client");
        let device = NewDevice {
            app_id: app.clone(),
            device_type: DeviceType::Fcm,
            device_id: DeviceId::parse(&format!("device-{n}")).expect("device id"),
            client_id: client.clone(),
            token: PushToken::parse(DeviceType::Fcm, &format!("fcm-token-{n}")).expect("token"),
            environment: None,
            locale: None,
            timezone: None,
            push_key: None,
            now_ms: 1,
        };
        store.upsert_device(&device).await.expect("registered");
        clients.push(client);
    }
    clients.push(ClientId::parse("nobody").expect("client"));
    let mut push = pushgate_store::NewPush { deadline_ms: 1_000_000, ..push_to_nobody("many") };
    push.fan_out.clients = clients;
    store.accept_push(&push).await.expect("accepted");
    store.fan_out_journal().await.expect("fanned out");
    let mut claimed = Vec::new();
    loop {
        let batch = store.claim_due_deliveries(10, 100, 60_000).await.expect("claimed");
        if batch.is_empty() {
            break;
        }
        claimed.extend(batch);
    }
    assert_eq!(claimed.len(), 300, "whole sends are claimed, each once");
    let delivered = DeliveryUpdate {
        status: DeliveryStatus::Delivered,
        reason: None,
        next_attempt_at_ms: None,
        attempted: true,
        now_ms: 20,
    };
    for delivery in &claimed {
        store.record_attempt(delivery.id, &delivered).await.expect("recorded");
    }
    assert_eq!(row_counts(&url).await, (2, 0), "(sends, deliveries)");
    let view = store.push_view(&app, &conformance::push_id("many")).await.expect("view").expect("stored");
    let mut statuses: Vec<_> = view.deliveries.iter().map(|d| (d.status, d.attempts)).collect();
    statuses.dedup();
    assert_eq!(statuses, [(DeliveryStatus::Delivered, 1), (DeliveryStatus::Skipped, 0)]);
    assert_eq!(view.deliveries.len(), 301);
    let depth = store.queue_depth().await.expect("depth");
    assert_eq!((depth.queued, depth.retrying), (0, 0));
    assert_eq!(store.next_due_at().await.expect("due"), None, "nothing left to send");
}

/// Registrations are group-committed: concurrent ones share transactions,
/// and in a group each still sees the ones before it (a token registered by
/// many devices at once ends on exactly one, every move counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_each_land_and_a_shared_token_ends_on_one_device() {
    use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, PushToken};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
    let app = AppId::parse("SampleApp").expect("app id");
    let device = |n: usize, token: String| pushgate_store::NewDevice {
        app_id: app.clone(),
        device_type: DeviceType::Ios,
        device_id: DeviceId::parse(&format!("d{n}")).expect("device id"),
        client_id: ClientId::parse(&format!("c{n}")).expect("client"),
        token: PushToken::parse(DeviceType::Ios, &token).expect("token"),
        environment: None,
        locale: None,
        timezone: None,
        push_key: None,
        now_ms: 1,
    };
    // 48 devices with their own tokens, 16 more all registering one token.
    let shared = format!("{:064x}", 999_999);
    let registrations: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&store);
            let new = device(n, if n < 48 { format!("{n:064x}") } else { shared.clone() });
            tokio::spawn(async move { store.upsert_device(&new).await })
        })
        .collect();
    let mut moved = 0;
    for registration in registrations {
        moved += registration.await.expect("task").expect("registered").token_moved_from;
    }
    assert_eq!(moved, 15, "each later registration of the shared token moved it once");
    let mut holders = 0;
    for n in 0..64 {
        let devices =
            store.client_devices(&app, &ClientId::parse(&format!("c{n}")).expect("client")).await.expect("devices");
        if n < 48 {
            assert_eq!(devices.len(), 1, "client c{n} keeps its own device");
        } else {
            holders += devices.len();
        }
    }
    assert_eq!(holders, 1, "the shared token ends on exactly one device");
}

/// A v2 callback's push of `SampleApp` to `clients`, counting an unread in `room`.
fn message_to(name: &str, clients: &[&str], room: &str) -> pushgate_store::NewPush {
    pushgate_store::NewPush {
        deadline_ms: 1_000_000,
        ..conformance::callback_push("SampleApp", name, name, clients, room, 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_closed_between_journal_and_fan_out_loses_nothing_and_counts_each_message_once() {
    use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, PushToken};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let app = AppId::parse("SampleApp").expect("app id");
    const MESSAGES: usize = 300;
    {
        let store = SqliteStore::open(&url).await.expect("open");
        for client in ["ann", "ben"] {
            let device = pushgate_store::NewDevice {
                app_id: app.clone(),
                device_type: DeviceType::Fcm,
                device_id: DeviceId::parse(&format!("{client}-phone")).expect("device id"),
                client_id: ClientId::parse(client).expect("client"),
                token: PushToken::parse(DeviceType::Fcm, &format!("token-of-{client}")).expect("token"),
                environment: None,
                locale: None,
                timezone: None,
                push_key: None,
                now_ms: 1,
            };
            store.upsert_device(&device).await.expect("registered");
        }
        for n in 0..MESSAGES {
            let accepted =
                store.accept_push(&message_to(&format!("m{n}"), &["ann", "ben"], "r")).await.expect("accept");
            assert_eq!(accepted.duplicate_of, None);
        }
        assert_eq!(store.queue_depth().await.expect("depth").journaled, MESSAGES as u64);
        // One batch of the fan-out commits; the rest is still journaled when
        // the store goes away, as after a crash mid fan-out.
        let first_batch = store.fan_out_journal_batch_for_tests().await.expect("one batch");
        assert!(first_batch > 0 && first_batch < MESSAGES, "{first_batch}");
    }
    let store = SqliteStore::open(&url).await.expect("reopened");
    // A message sent again after the restart is still a duplicate.
    let again = store.accept_push(&message_to("m7", &["ann", "ben"], "r")).await.expect("accept");
    assert_eq!(again.duplicate_of, Some(conformance::push_id("m7")));
    // Reading a badge fans out what waits first, so it counts every message once.
    for client in ["ann", "ben"] {
        let badge = store.badge(&app, &ClientId::parse(client).expect("client"), true, 2).await.expect("badge");
        assert_eq!(badge.total, MESSAGES as u64, "{client}: each message counted exactly once");
    }
    assert_eq!(store.queue_depth().await.expect("depth").journaled, 0, "the badge read fanned out the rest");
    let mut claimed = 0;
    loop {
        let batch = store.claim_due_deliveries(10, 1000, 60_000).await.expect("claim");
        if batch.is_empty() {
            break;
        }
        claimed += batch.len();
    }
    assert_eq!(claimed, 2 * MESSAGES, "one delivery per device of each message, none twice");
    for n in [0, MESSAGES - 1] {
        let view = store.push_view(&app, &conformance::push_id(&format!("m{n}"))).await.expect("view").expect("exists");
        let badges: Vec<_> = view.deliveries.iter().map(|d| d.client_id.as_str()).collect();
        assert_eq!(badges, vec!["ann", "ben"]);
    }
}

#[tokio::test]
async fn a_read_mark_applies_after_the_messages_accepted_before_it() {
    use pushgate_domain::{AppId, ClientId, RoomId};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let store = SqliteStore::open(&url).await.expect("open");
    let (app, ann, room) = (
        AppId::parse("SampleApp").expect("app"),
        ClientId::parse("ann").expect("client"),
        RoomId::parse("r").expect("room"),
    );
    store.accept_push(&message_to("before-1", &["ann"], "r")).await.expect("accept");
    store.accept_push(&message_to("before-2", &["ann"], "r")).await.expect("accept");
    // Both are journaled, not fanned out: the read mark still clears them.
    store.mark_room_read(&app, &ann, &room, 3).await.expect("read");
    store.accept_push(&message_to("after", &["ann"], "r")).await.expect("accept");
    assert_eq!(store.badge(&app, &ann, true, 4).await.expect("badge").total, 1, "only the message after the read");
}

/// A database made before migration 0013 (a send's entries in `sends`) keeps
/// its planned deliveries through the upgrade, and no send id is given twice:
/// the file is taken back to its 0012 shape by hand (the entries into
/// `sends`, `send_plans` gone, the view as 0009 made it, the migration
/// forgotten), its last send dropped as a forgotten push's would be, and
/// opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_send_plans_keeps_the_planned_deliveries_and_gives_no_send_id_twice() {
    use pushgate_domain::{AppId, ClientId, DeviceType};
    let directory = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", directory.path().join("pushgate.db").display());
    let app = AppId::parse("SampleApp").expect("app id");
    let accept = |store: &SqliteStore, name: &str, clients: &[&str]| {
        let mut push = pushgate_store::NewPush { deadline_ms: 1_000_000, ..push_to_nobody(name) };
        push.fan_out.clients = clients.iter().map(|client| ClientId::parse(client).expect("client")).collect();
        let store = store.clone();
        async move {
            store.accept_push(&push).await.expect("accepted");
            store.fan_out_journal().await.expect("fanned out");
        }
    };
    {
        let store = SqliteStore::open(&url).await.expect("open");
        for n in 0..3 {
            let (device_id, client, token) = (format!("device-{n}"), format!("c{n}"), format!("fcm-token-{n}"));
            let device = conformance::device("SampleApp", DeviceType::Fcm, &device_id, &client, &token, 1);
            store.upsert_device(&device).await.expect("registered");
        }
        accept(&store, "before", &["c0", "c1", "c2", "nobody"]).await;
        accept(&store, "forgotten", &["c0"]).await;
    }
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let old_view = std::fs::read_to_string(migrations.join("0009_coalescing.sql")).expect("migration 0009");
    let old_view = &old_view[old_view.find("CREATE VIEW delivery_states").expect("the view")..];
    let pool = sqlx::SqlitePool::connect(&url).await.expect("a connection of its own");
    let forgotten = conformance::push_id("forgotten").to_string();
    let downgrade = format!(
        "DROP VIEW delivery_states; \
         ALTER TABLE sends ADD COLUMN deliveries TEXT NOT NULL DEFAULT '[]'; \
         UPDATE sends SET deliveries = (SELECT deliveries FROM send_plans p WHERE p.id = sends.id); \
         DROP TABLE send_plans; \
         {old_view} \
         DELETE FROM _sqlx_migrations WHERE version = 13; \
         DELETE FROM sends WHERE push_id = '{forgotten}';"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(downgrade)).execute(&pool).await.expect("taken back to 0012");
    let last_send: i64 =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'sends'").fetch_one(&pool).await.expect("seq");
    assert_eq!(last_send, 2, "two sends were made, the last one is gone");

    let store = SqliteStore::open(&url).await.expect("opened again, upgraded");
    let view = store.push_view(&app, &conformance::push_id("before")).await.expect("view").expect("stored");
    let mut states: Vec<_> =
        view.deliveries.iter().map(|d| (d.client_id.as_str().to_owned(), format!("{:?}", d.status))).collect();
    states.sort();
    assert_eq!(
        states,
        [("c0", "Queued"), ("c1", "Queued"), ("c2", "Queued"), ("nobody", "Skipped")]
            .map(|(client, status)| (client.to_owned(), status.to_owned()))
    );
    let claimed = store.claim_due_deliveries(10, 100, 60_000).await.expect("claimed");
    let mut tokens: Vec<_> = claimed.iter().map(|d| d.token.as_str().to_owned()).collect();
    tokens.sort();
    assert_eq!(tokens, ["fcm-token-0", "fcm-token-1", "fcm-token-2"], "the planned entries, read from send_plans");

    accept(&store, "after", &["c1"]).await;
    let after = conformance::push_id("after").to_string();
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM sends WHERE push_id = ?1").bind(&after).fetch_one(&pool).await.expect("id");
    assert_eq!(id, last_send + 1, "the forgotten send's id is not given again");
}
