//! Micro-benchmark: the APNs client alone against the fake APNs.
//!
//!     cargo bench -p pushgate-providers --bench apns_client [-- REQUESTS [CONCURRENCY]]
//!
//! It first measures the raw capacity of the fake on this machine: a bare
//! HTTP/2 sender (`pushgate_testkit::load`: h2, pre-built requests, one pre-signed token) that does
//! nothing but send. Then it runs `ApnsClient` over one and over several
//! connections with the same requests, and reports each figure also as a
//! ratio of the raw capacity with the same number of connections, measured
//! in the same run, since absolute numbers vary from machine to machine.
//! The fake runs on its own Tokio runtime.

use bytes::Bytes;
use pushgate_providers::apns::{
    ApnsAuth, ApnsClient, ApnsClientConfig, Notification, PushType, TokenSigner, apns_id, build_request,
};
use pushgate_providers::{Outcome, SystemClock};
use pushgate_testkit::load::{drive, h2_connections, send};
use pushgate_testkit::{Es256Key, FakeApns, FakeApnsConfig, TestCa};
use std::sync::Arc;
use std::time::Duration;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "io.imkit.app";
const PAYLOAD: &[u8] = br#"{"aps":{"alert":{"loc-key":"im_loc_text","loc-args":["Alice","Hello there"]},"badge":3,"sound":"default","thread-id":"demo-room"}}"#;

fn device_token(n: usize) -> String {
    format!("{n:064x}")
}

fn notification(device: &str) -> Notification<'_> {
    Notification {
        device_token: device,
        push_type: PushType::Alert,
        topic: TOPIC,
        apns_id: apns_id("bench", device),
        expiration: None,
        priority: None,
        collapse_id: None,
        payload: PAYLOAD,
    }
}

fn main() {
    let arguments: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let requests = arguments.first().copied().unwrap_or(20_000);
    let concurrency = arguments.get(1).copied().unwrap_or(256);
    let several = 4;

    // The fake gets a runtime of its own.
    let fake_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let ca = TestCa::generate();
    let key = Es256Key::generate();
    let fake = fake_runtime.block_on(FakeApns::start(
        &ca,
        FakeApnsConfig {
            topic: TOPIC.into(),
            token_auth: Some((KEY_ID.into(), TEAM_ID.into(), key.public_pem.clone())),
            max_concurrent_streams: 1000,
        },
    ));
    let endpoint = fake.endpoint();
    let ca_pem = ca.ca_pem();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let signer =
        Arc::new(TokenSigner::new(key.private_pem.as_bytes(), KEY_ID, TEAM_ID, Arc::new(SystemClock)).expect("signer"));
    let mut results = Vec::new();
    for connections in [1, several] {
        // Raw capacity: pre-built requests with one pre-signed token, round-robin over bare connections.
        let jwt = signer.token().expect("jwt");
        let raw = runtime.block_on(async {
            let senders = Arc::new(h2_connections(&endpoint, &ca, connections).await);
            let authority = endpoint.trim_start_matches("https://").to_owned();
            let prebuilt: Arc<Vec<http::Request<Bytes>>> = Arc::new(
                (0..requests)
                    .map(|n| build_request(&notification(&device_token(n)), &authority, Some(&jwt)).expect("request"))
                    .collect(),
            );
            drive(requests, concurrency, move |n| {
                let senders = Arc::clone(&senders);
                let request = prebuilt[n].clone();
                async move { send(&senders[n % senders.len()], request).await == Some(200) }
            })
            .await
        });
        fake.clear_requests();
        let client = {
            let mut config =
                ApnsClientConfig::new(endpoint.parse().expect("endpoint"), ApnsAuth::Token(Arc::clone(&signer)));
            config.extra_ca_pem = Some(ca_pem.clone().into_bytes());
            config.connections = connections;
            config.request_timeout = Duration::from_secs(60);
            Arc::new(ApnsClient::new(config).expect("client"))
        };
        let tokens: Arc<Vec<String>> = Arc::new((0..requests).map(device_token).collect());
        let measured = runtime.block_on(drive(requests, concurrency, move |n| {
            let client = Arc::clone(&client);
            let tokens = Arc::clone(&tokens);
            async move { client.send(&notification(&tokens[n])).await == Outcome::Delivered }
        }));
        fake.clear_requests();
        results.push((connections, raw, measured));
    }

    println!();
    println!(
        "APNs client vs the raw capacity of the fake APNs ({requests} requests, {concurrency} in flight, 2-core budget)"
    );
    println!("{:<14} {:>16} {:>18} {:>8}", "connections", "raw (req/s)", "ApnsClient (req/s)", "ratio");
    for (connections, raw, measured) in &results {
        println!("{connections:<14} {raw:>16.0} {measured:>18.0} {:>8.2}", measured / raw);
    }
    let json: Vec<_> = results
        .iter()
        .map(|(connections, raw, measured)| {
            serde_json::json!({ "connections": connections, "raw_rps": raw.round(), "client_rps": measured.round(), "ratio": (measured / raw * 100.0).round() / 100.0 })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "benchmark": "apns_client", "requests": requests, "concurrency": concurrency, "results": json })
    );
    drop(fake);
    fake_runtime.shutdown_timeout(Duration::from_secs(1));
}
