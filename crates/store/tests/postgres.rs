//! The PostgreSQL store against the shared conformance suite, on a real
//! server: `PUSHGATE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in a schema of
//! its own, so tests run in parallel. An unreachable server fails the test
//! (`cargo xtask test` leaves these tests out when it does not answer).

use pushgate_store::{ClientStore, DeviceStore, PgStore, QueueStore, Store, conformance};
use std::sync::Arc;

use pushgate_testkit::{postgres_absent, postgres_server as url, unique_schema};

/// A store in a fresh schema.
async fn fresh_store(name: &str) -> (PgStore, String) {
    let schema = unique_schema(name);
    match PgStore::open_in_schema(&url(), &schema).await {
        Ok(store) => (store, schema),
        Err(error) => postgres_absent(&error),
    }
}

async fn drop_schema(schema: &str) {
    let pool = sqlx::PgPool::connect(&url()).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let (store, schema) = fresh_store("conformance").await;
    conformance::run_all(Arc::new(store) as Arc<dyn Store>).await;
    drop_schema(&schema).await;
}

/// A push of `SampleApp` to one client without devices.
fn push_to_nobody(name: &str) -> pushgate_store::NewPush {
    pushgate_store::NewPush { deadline_ms: 2, ..conformance::new_push("SampleApp", name, &["nobody"], 1) }
}

/// Concurrent accepts on one node are committed together, a callback sent
/// twice within one group is stored once (the second answers the first), and
/// a push that cannot be stored fails alone, not the others of its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_commits_and_a_failed_one_fails_alone() {
    use pushgate_domain::AppId;
    use pushgate_store::CallbackKey;
    let (store, schema) = fresh_store("grouped_accepts").await;
    let store = Arc::new(store);
    let accepts: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&store);
            // Pairs of pushes answer the same callback.
            let push = push_to_nobody(&format!("push-{n}"))
                .with_callback(CallbackKey { message_id: format!("m{}", n / 2), to_client: None });
            tokio::spawn(async move { store.accept_push(&push).await })
        })
        .collect();
    let mut answered = Vec::new();
    for accept in accepts {
        answered.push(accept.await.expect("task").expect("accepted"));
    }
    let transactions = store.accept_transactions();
    assert!(transactions < 64, "64 concurrent accepts took {transactions} transactions");
    let app = AppId::parse("SampleApp").expect("app id");
    let mut stored_ids = Vec::new();
    for (pair, answers) in answered.chunks(2).enumerate() {
        let (stored, repeat) = match (&answers[0].duplicate_of, &answers[1].duplicate_of) {
            (None, Some(earlier)) => (2 * pair, earlier),
            (Some(earlier), None) => (2 * pair + 1, earlier),
            other => panic!("pair {pair}: one of two is the repeat, not {other:?}"),
        };
        assert_eq!(repeat, &conformance::push_id(&format!("push-{stored}")), "the repeat answers the stored push");
        assert!(store.push_view(&app, repeat).await.expect("view").is_some(), "push-{stored} is stored");
        stored_ids.push(format!("push-{stored}"));
    }
    // A stored push id fails its own insert; the pushes grouped with it still go through.
    let (taken, fresh) = (push_to_nobody(&stored_ids[0]), push_to_nobody("fresh"));
    let (duplicate, fresh) = tokio::join!(store.accept_push(&taken), store.accept_push(&fresh));
    assert!(duplicate.is_err());
    fresh.expect("the other push of the group is stored");
    assert!(store.push_view(&app, &conformance::push_id("fresh")).await.expect("view").is_some());
    drop_schema(&schema).await;
}

/// Two nodes on one database: callbacks sent to both at once, each message
/// twice, are counted and pushed once each, and no increment is lost, while
/// both nodes fan out the journal as it fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_sent_to_two_nodes_at_once_count_once_and_lose_no_increment() {
    use pushgate_domain::{AppId, ClientId, RoomId};
    use pushgate_store::{BadgePlan, CallbackKey};
    let (first, schema) = fresh_store("two_nodes_callbacks").await;
    let second = PgStore::open_in_schema(&url(), &schema).await.expect("a second node");
    let nodes = [Arc::new(first), Arc::new(second)];
    let accepts: Vec<_> = (0..200)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            // 100 distinct messages, each sent to both nodes.
            let push = push_to_nobody(&format!("push-{n}"))
                .with_callback(CallbackKey { message_id: format!("m{}", n / 2), to_client: None })
                .with_badge(BadgePlan::CountUnread(RoomId::parse(&format!("room-{}", n % 3)).expect("room")), true);
            tokio::spawn(async move { node.accept_push(&push).await })
        })
        .collect();
    // Meanwhile both nodes fan out what is journaled, as their claims do.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fan_outs: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (node, done) = (Arc::clone(node), Arc::clone(&done));
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    node.fan_out_journal().await.expect("fan-out");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut duplicates = 0;
    for accept in accepts {
        duplicates += usize::from(accept.await.expect("task").expect("accepted").duplicate_of.is_some());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for fan_out in fan_outs {
        fan_out.await.expect("fan-out task");
    }
    assert_eq!(duplicates, 100);
    let (app, client) = (AppId::parse("SampleApp").expect("app"), ClientId::parse("nobody").expect("client"));
    let badge = nodes[1].badge(&app, &client, true, 0).await.expect("badge");
    assert_eq!((badge.total, badge.rooms.values().sum::<u64>()), (100, 100));
    assert_eq!(nodes[0].badge(&app, &client, true, 0).await.expect("badge").total, 100, "both nodes agree");
    drop_schema(&schema).await;
}

/// Two nodes claiming at once never take the same delivery (`SKIP LOCKED`),
/// and every delivery is taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_at_once_never_take_the_same_delivery() {
    use pushgate_domain::{AppId, ClientId, DeviceId, DeviceType, PushToken};
    use pushgate_store::NewDevice;
    let (first, schema) = fresh_store("two_nodes_claims").await;
    let second = PgStore::open_in_schema(&url(), &schema).await.expect("a second node");
    let app = AppId::parse("SampleApp").expect("app id");
    let mut clients = Vec::new();
    for n in 0..40 {
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
        first.upsert_device(&device).await.expect("registered");
        clients.push(client);
    }
    // Twenty pushes of two recipients: twenty sends to share out.
    for n in 0..20 {
        let mut push = push_to_nobody(&format!("push-{n}"));
        push.fan_out.clients = clients[2 * n..2 * n + 2].to_vec();
        first.accept_push(&push).await.expect("accepted");
    }
    first.fan_out_journal().await.expect("fanned out");
    let nodes = [Arc::new(first), Arc::new(second)];
    let claims: Vec<_> = (0..20)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            tokio::spawn(async move { node.claim_due_deliveries(10, 2, 60_000).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for claim in claims {
        claimed.extend(claim.await.expect("task").expect("claimed").into_iter().map(|d| (d.push_id(), d.client_id)));
    }
    // A claim skips what another is locking at that moment, so some come
    // back short; what is left is taken afterwards, by either node.
    loop {
        let rest = nodes[0].claim_due_deliveries(10, 100, 60_000).await.expect("claimed");
        if rest.is_empty() {
            break;
        }
        claimed.extend(rest.into_iter().map(|d| (d.push_id(), d.client_id)));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "a delivery was handed to two claims");
    assert_eq!(total, 40, "every delivery was claimed");
    drop_schema(&schema).await;
}

/// Housekeeping runs on one node at a time: while another holds its turn, a
/// node forgets nothing; once the turn is free, it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_runs_on_one_node_at_a_time() {
    let (store, schema) = fresh_store("housekeeping").await;
    store.accept_push(&push_to_nobody("old")).await.expect("accepted");
    store.fan_out_journal().await.expect("fanned out");
    let other_node = sqlx::PgPool::connect(&url()).await.expect("connect");
    let mut turn = other_node.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PgStore::HOUSEKEEPING_LOCK)
        .execute(&mut *turn)
        .await
        .expect("take the turn");
    assert_eq!(store.forget_before(10_000, 100).await.expect("forget"), (0, 0), "another node is at it");
    turn.commit().await.expect("end the turn");
    assert_eq!(store.forget_before(10_000, 100).await.expect("forget"), (1, 0));
    drop_schema(&schema).await;
}

/// The budget of a rate limit, taken by two nodes in one window: together
/// they get the limit and no more; a new window starts again; a node whose
/// clock runs behind takes from the latest window.
#[tokio::test]
async fn nodes_share_one_send_budget_per_window() {
    let (one, schema) = fresh_store("budget").await;
    let two = PgStore::open_in_schema(&url(), &schema).await.expect("second node");
    let (one, two) = (one.cluster().expect("shared"), two.cluster().expect("shared"));
    let mut granted = 0;
    for round in 0..4 {
        let node = if round % 2 == 0 { one } else { two };
        granted += node.take_send_budget("SampleApp/fcm", 100, 4, 10).await.expect("take");
    }
    assert_eq!(granted, 10, "4 + 4 + 2 + 0 of a limit of 10");
    assert_eq!(two.take_send_budget("SampleApp/apns", 100, 4, 10).await.expect("take"), 4, "another budget");
    assert_eq!(one.take_send_budget("SampleApp/fcm", 101, 4, 10).await.expect("take"), 4, "a new window");
    assert_eq!(two.take_send_budget("SampleApp/fcm", 100, 10, 10).await.expect("take"), 6, "the latest window's rest");
    assert_eq!(one.take_send_budget("SampleApp/fcm", 101, 1, 10).await.expect("take"), 0);
    drop_schema(&schema).await;
}

/// A provider pause as the nodes share it: the first refusal opens it, a
/// second one while it runs keeps it, one after it ran out (a failed probe)
/// doubles it up to the ceiling, and an accepted probe ends it for all.
#[tokio::test]
async fn a_provider_pause_is_shared_doubled_and_resumed() {
    use pushgate_domain::{AppId, ProviderKind};
    use pushgate_store::SharedPause;
    let (one, schema) = fresh_store("pauses").await;
    let two = PgStore::open_in_schema(&url(), &schema).await.expect("second node");
    let (one, two) = (one.cluster().expect("shared"), two.cluster().expect("shared"));
    let app = AppId::parse("SampleApp").expect("app");
    let refused = |reason: &str| SharedPause {
        app_id: app.clone(),
        provider: ProviderKind::Apns,
        reason: reason.to_owned(),
        until_ms: 0,
    };
    assert_eq!(one.pause_provider(&refused("InvalidProviderToken"), 1_000, 100, 350).await.expect("pause"), 1_100);
    assert_eq!(two.pause_provider(&refused("BadTopic"), 1_050, 100, 350).await.expect("pause"), 1_100, "kept");
    let shared = two.provider_pauses().await.expect("pauses");
    assert_eq!(shared, vec![SharedPause { until_ms: 1_100, ..refused("InvalidProviderToken") }]);
    assert_eq!(two.pause_provider(&refused("BadTopic"), 1_100, 100, 350).await.expect("pause"), 1_300, "doubled");
    assert_eq!(one.pause_provider(&refused("BadTopic"), 1_300, 100, 350).await.expect("pause"), 1_650, "ceiling");
    assert_eq!(one.provider_pauses().await.expect("pauses")[0].reason, "BadTopic");
    assert!(two.resume_provider(&app, ProviderKind::Apns).await.expect("resume"));
    assert!(one.provider_pauses().await.expect("pauses").is_empty());
    assert!(!one.resume_provider(&app, ProviderKind::Apns).await.expect("resume"), "already resumed");
    drop_schema(&schema).await;
}
