//! An app's rate limit on a store several nodes share is one budget: two
//! nodes (two store connections, two limiters, as two processes would have)
//! sending at once stay together under the limit. Runs on the PostgreSQL of
//! `PUSHGATE_TEST_POSTGRES` (see `pushgate_testkit::postgres_server`).

use pushgate_delivery::SendRate;
use pushgate_store::{PgStore, Store};
use pushgate_testkit::{postgres_absent, postgres_server, unique_schema};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 40 sends at 10 per second need four one-second windows, so the last
/// starts more than two seconds after the first. Each node alone holds a
/// bucket of 10 refilling at 10/s: without the shared budget, its 20 would
/// take one second and the pair would finish in about one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_together_stay_under_one_apps_rate() {
    let schema = unique_schema("rate");
    let node = |_: usize| async {
        let store: Arc<dyn Store> = match PgStore::open_in_schema(&postgres_server(), &schema).await {
            Ok(store) => Arc::new(store),
            Err(error) => postgres_absent(&error),
        };
        Arc::new(SendRate::new(10).expect("a limit").shared_on(&store, "SampleApp/fcm".to_owned()))
    };
    let (one, two) = (node(1).await, node(2).await);
    let mut sends = tokio::task::JoinSet::new();
    for rate in [one, two] {
        for _ in 0..20 {
            let rate = Arc::clone(&rate);
            sends.spawn(async move {
                rate.until_ready().await;
                Instant::now()
            });
        }
    }
    let started: Vec<Instant> = sends.join_all().await;
    let first = started.iter().min().expect("sends");
    let last = started.iter().max().expect("sends");
    let spread = last.duration_since(*first);
    assert!(spread > Duration::from_secs(2), "40 sends at 10/s across two nodes started within {spread:?}");
    // The windows are whole seconds: in any second from the first send, at
    // most two windows' worth (20) can have started.
    for start in &started {
        let within = started.iter().filter(|at| **at >= *start && at.duration_since(*start) < Duration::from_secs(1));
        assert!(within.count() <= 20, "more than two windows' budget within one second");
    }
}
