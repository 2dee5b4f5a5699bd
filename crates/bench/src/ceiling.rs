//! The store's own ceilings: its accept and fan-out alone, without HTTP or a worker.

use super::*;

/// The embedded store's own ceilings for v2 callbacks of `group` recipients,
/// on the database the run left (its devices and history), with no HTTP and
/// no delivery worker beside it: the accept (`SqliteStore::accept_push`
/// called directly, 32 in flight, with what the v2 route hands it: it
/// journals), then the fan-out of all of them (`fan_out_journal`: unread
/// counts, routing, deliveries). pushgate cannot accept or fan out faster.
pub(crate) fn store_ceiling(store_url: String, devices: usize, group: usize, count: usize) -> anyhow::Result<Value> {
    use pushgate_domain::{AppId, ChatMessage, ClientId, OnlinePolicy, PushId, PushRequest, RoomId};
    use pushgate_store::{BadgePlan, CallbackKey, NewPush, PgStore, RoutingPlan, SqliteStore, Store};
    // Its own runtime, of pushgate's shape (one worker per core), on a thread
    // of its own: the load generator's runtime has one worker.
    let run = move || -> anyhow::Result<Value> {
        tokio::runtime::Runtime::new()?.block_on(async move {
            // The same database, SQLite or PostgreSQL: the fan-out is each
            // store's own (not part of the `Store` trait).
            let (store, sqlite, postgres): (Arc<dyn Store>, _, _) = if store_url.starts_with("postgres") {
                let postgres = Arc::new(PgStore::open(&store_url).await?);
                (Arc::clone(&postgres) as Arc<dyn Store>, None, Some(postgres))
            } else {
                let sqlite = Arc::new(SqliteStore::open(&store_url).await?);
                (Arc::clone(&sqlite) as Arc<dyn Store>, Some(sqlite), None)
            };
            let (app, room) = (AppId::parse("SampleApp")?, RoomId::parse("bench-room")?);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
            let accepting = Arc::clone(&store);
            let rate = drive(count, 32, move |n| {
                let clients: Vec<ClientId> =
                    (0..group).filter_map(|k| ClientId::parse(&client_id((n * group + k) % devices)).ok()).collect();
                let body = callback(&format!("ceiling-{n}"), n, &[]);
                let message = body.as_object().map(ChatMessage::parse).and_then(Result::ok);
                let push = message.map(|message| {
                    let push_id = PushId::from_uuid(uuid::Uuid::now_v7());
                    let request = PushRequest::Chat(message);
                    NewPush::new(push_id, app.clone(), request, clients, now, now + 3_600_000)
                        .with_callback(CallbackKey { message_id: format!("ceiling-{n}"), to_client: None })
                        .with_badge(BadgePlan::CountUnread(room.clone()), true)
                        .with_routing(RoutingPlan { room: room.clone(), online: OnlinePolicy::Silent })
                });
                let store = Arc::clone(&accepting);
                async move {
                    let Some(push) = push else { return false };
                    store.accept_push(&push).await.is_ok_and(|accepted| accepted.duplicate_of.is_none())
                }
            })
            .await;
            let started = Instant::now();
            let fanned_out = match (&sqlite, &postgres) {
                (Some(sqlite), _) => sqlite.fan_out_journal().await?,
                (None, Some(postgres)) => postgres.fan_out_journal().await?,
                (None, None) => 0,
            };
            let fan_out_rate = fanned_out as f64 / started.elapsed().as_secs_f64();
            Ok(json!({
                "group": group,
                "callbacks": count,
                "callbacks_per_second": rate.round(),
                "recipients_per_second": (rate * group as f64).round(),
                "fanned_out": fanned_out,
                "fan_out_callbacks_per_second": fan_out_rate.round(),
                "fan_out_recipients_per_second": (fan_out_rate * group as f64).round(),
            }))
        })
    };
    std::thread::spawn(run).join().map_err(|_| anyhow::anyhow!("the store ceiling run panicked"))?
}

/// A fresh schema with pushgate's tables on the PostgreSQL `server`; answers
/// the URL that selects it.
pub(crate) async fn fresh_postgres_schema(server: &str) -> anyhow::Result<String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let schema = format!("pushgate_bench_{nanos}");
    pushgate_store::PgStore::open_in_schema(server, &schema).await?;
    let separator = if server.contains('?') { '&' } else { '?' };
    Ok(format!("{server}{separator}options=-c%20search_path%3D{schema}"))
}
