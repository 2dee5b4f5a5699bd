//! A bare HTTP/2 load generator for benchmarks: the "raw capacity" of a fake
//! is what these connections push through it when they do nothing but send
//! pre-built requests.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Opens `connections` HTTP/2 connections over TLS to `https://localhost:<port>`,
/// trusting `ca`.
pub async fn h2_connections(
    endpoint: &str,
    ca: &crate::TestCa,
    connections: usize,
) -> Vec<h2::client::SendRequest<Bytes>> {
    let port = endpoint.rsplit(':').next().and_then(|port| port.trim_end_matches('/').parse::<u16>().ok());
    let port = port.expect("an https://localhost:<port> endpoint");
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[b"h2"]));
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let (sender, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
        tokio::spawn(connection);
        senders.push(sender);
    }
    senders
}

/// Sends one request with its body on `sender`; answers the response status,
/// `None` when the connection failed.
pub async fn send(sender: &h2::client::SendRequest<Bytes>, request: http::Request<Bytes>) -> Option<u16> {
    let mut sender = sender.clone().ready().await.ok()?;
    let (parts, body) = request.into_parts();
    let (response, mut stream) = sender.send_request(http::Request::from_parts(parts, ()), body.is_empty()).ok()?;
    if !body.is_empty() {
        stream.send_data(body, true).ok()?;
    }
    let response = response.await.ok()?;
    let status = response.status().as_u16();
    // Read the body to its end so the stream closes.
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Some(status)
}

/// Runs `send(0..requests)` with `concurrency` in flight and answers the
/// rate, requests per second. Panics if any send answers `false`: a
/// benchmark figure must not hide failures.
pub async fn drive<F, Fut>(requests: usize, concurrency: usize, send: F) -> f64
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
        worker.await.expect("a load worker panicked");
    }
    let elapsed = started.elapsed();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "every benchmark request must succeed");
    requests as f64 / elapsed.as_secs_f64()
}
