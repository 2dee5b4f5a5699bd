//! Micro-benchmark: the APNs client alone against the fake APNs.
//!
//!     cargo bench -p pushgate-providers --bench apns_client [-- REQUESTS [CONCURRENCY]]
//!
//! It first measures the raw capacity of the fake on this machine: a bare
//! HTTP/2 sender (hyper, pre-built requests, one pre-signed token) that does
//! nothing but send. Then it runs `ApnsClient` over one and over several
//! connections with the same requests, and reports each figure also as a
//! ratio of the raw capacity with the same number of connections, measured
//! in the same run, since absolute numbers vary from machine to machine.
//! The fake runs on its own Tokio runtime.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushgate_providers::apns::{
    ApnsAuth, ApnsClient, ApnsClientConfig, Notification, PushType, TokenSigner, apns_id, build_request,
};
use pushgate_providers::{Outcome, SystemClock, client_tls_config};
use pushgate_testkit::{Es256Key, FakeApns, FakeApnsConfig, TestCa};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Runs `requests` sends with `concurrency` in flight; returns requests per second.
async fn drive<F, Fut>(requests: usize, concurrency: usize, send: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let send = Arc::new(send);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (send, next, failures) = (Arc::clone(&send), Arc::clone(&next), Arc::clone(&failures));
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        break;
                    }
                    if !send(n).await {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "every benchmark request must be delivered");
    requests as f64 / elapsed.as_secs_f64()
}

async fn raw_senders(
    fake: &str,
    ca_pem: &str,
    connections: usize,
) -> Vec<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let url: url::Url = fake.parse().expect("endpoint");
    let port = url.port().expect("port");
    let tls = Arc::new(client_tls_config(Some(ca_pem.as_bytes()), &[b"h2"], None).expect("tls"));
    let mut senders = Vec::new();
    for _ in 0..connections {
        let tcp = tokio::net::TcpStream::connect(("localhost", port)).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&tls)).connect(name, tcp).await.expect("tls");
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .expect("h2");
        tokio::spawn(connection);
        senders.push(sender);
    }
    senders
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
            let senders = Arc::new(raw_senders(&endpoint, &ca_pem, connections).await);
            let authority = endpoint.trim_start_matches("https://").to_owned();
            let prebuilt: Arc<Vec<http::Request<Bytes>>> = Arc::new(
                (0..requests)
                    .map(|n| build_request(&notification(&device_token(n)), &authority, Some(&jwt)).expect("request"))
                    .collect(),
            );
            drive(requests, concurrency, move |n| {
                let mut sender = senders[n % senders.len()].clone();
                let request = prebuilt[n].clone().map(Full::new);
                async move { sender.send_request(request).await.is_ok_and(|response| response.status() == 200) }
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
