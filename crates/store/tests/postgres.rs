//! The PostgreSQL store against the shared conformance suite, on a real
//! server: `PUSHGATE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in a schema of
//! its own, so tests run in parallel. With `CI=true` an unreachable server
//! fails the test; elsewhere the test says so and passes without running.

use pushgate_store::{PgStore, Store, conformance};
use std::sync::Arc;

fn url() -> String {
    std::env::var("PUSHGATE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store in a fresh schema, or `None` (outside CI) when no server answers.
async fn fresh_store(name: &str) -> Option<(PgStore, String)> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let schema = format!("pushgate_test_{name}_{}_{nanos}", std::process::id());
    match PgStore::open_in_schema(&url(), &schema).await {
        Ok(store) => Some((store, schema)),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("PostgreSQL at {} does not answer ({error:?}); this test did not run", url());
            None
        }
        Err(error) => panic!("PostgreSQL at {} does not answer, and CI needs it: {error:?}", url()),
    }
}

async fn drop_schema(schema: &str) {
    let pool = sqlx::PgPool::connect(&url()).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let Some((store, schema)) = fresh_store("conformance").await else { return };
    conformance::run_all(Arc::new(store) as Arc<dyn Store>).await;
    drop_schema(&schema).await;
}

/// A push of `SampleApp` to one client without devices.
fn push_to_nobody(push_id: &str) -> pushgate_store::NewPush {
    pushgate_store::NewPush {
        push_id: push_id.to_owned(),
        app_id: pushgate_domain::AppId::parse("SampleApp").expect("app id"),
        kind: pushgate_domain::PushKind::Custom,
        request: "{}".into(),
        clients: vec![pushgate_domain::ClientId::parse("nobody").expect("client")],
        now_ms: 1,
        deadline_ms: 1_000_000,
        skip_all: None,
        callback: None,
        badge: pushgate_store::BadgePlan::None,
        count_muted_rooms: true,
        routing: None,
        experiment: None,
    }
}

/// Two nodes on one database: callbacks sent to both at once, each message
/// twice, are counted and pushed once each, and no increment is lost, while
/// both nodes fan out the journal as it fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_sent_to_two_nodes_at_once_count_once_and_lose_no_increment() {
    use pushgate_domain::{AppId, ClientId, RoomId};
    use pushgate_store::{BadgePlan, CallbackKey};
    let Some((first, schema)) = fresh_store("two_nodes_callbacks").await else { return };
    let second = PgStore::open_in_schema(&url(), &schema).await.expect("a second node");
    let nodes = [Arc::new(first), Arc::new(second)];
    let accepts: Vec<_> = (0..200)
        .map(|n| {
            let node = Arc::clone(&nodes[n % 2]);
            // 100 distinct messages, each sent to both nodes.
            let push = pushgate_store::NewPush {
                callback: Some(CallbackKey { message_id: format!("m{}", n / 2), to_client: None }),
                badge: BadgePlan::CountUnread(RoomId::parse(&format!("room-{}", n % 3)).expect("room")),
                ..push_to_nobody(&format!("push-{n}"))
            };
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
    let Some((first, schema)) = fresh_store("two_nodes_claims").await else { return };
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
            now_ms: 1,
        };
        first.upsert_device(&device).await.expect("registered");
        clients.push(client);
    }
    // Twenty pushes of two recipients: twenty sends to share out.
    for n in 0..20 {
        let push = pushgate_store::NewPush {
            clients: clients[2 * n..2 * n + 2].to_vec(),
            ..push_to_nobody(&format!("push-{n}"))
        };
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
        claimed.extend(claim.await.expect("task").expect("claimed").into_iter().map(|d| (d.push_id, d.client_id)));
    }
    // A claim skips what another is locking at that moment, so some come
    // back short; what is left is taken afterwards, by either node.
    loop {
        let rest = nodes[0].claim_due_deliveries(10, 100, 60_000).await.expect("claimed");
        if rest.is_empty() {
            break;
        }
        claimed.extend(rest.into_iter().map(|d| (d.push_id, d.client_id)));
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
    let Some((store, schema)) = fresh_store("housekeeping").await else { return };
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
