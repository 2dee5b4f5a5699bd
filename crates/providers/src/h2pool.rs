//! A small pool of HTTP/2 connections to one provider endpoint (APNs, FCM).
//!
//! Written on hyper's HTTP/2 client connection rather than taken from a crate:
//! the `a2` crate cannot be pointed at another endpoint or CA and is no longer
//! maintained, and general HTTP clients (reqwest, hyper-util's pooled client)
//! open one HTTP/2 connection per host, where APNs throughput wants several.
//! FCM's sends use it too: through reqwest (its redirect, retry and timeout
//! layers, a `Value` body serialised per request) an FCM send cost three times
//! the CPU of an APNs one (found by `perf` on pushgate-bench, issue 30).
//! Each connection multiplexes requests up to the server's current
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (h2 enforces it, including changes
//! mid-connection), PINGs while idle, and is replaced when it dies.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pushgate_domain::Unreachable;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Sender = http2::SendRequest<Full<Bytes>>;

/// A connection lent for one request.
pub(crate) struct Lease {
    index: usize,
    generation: u64,
    sender: Sender,
}

struct Slot {
    generation: u64,
    sender: Sender,
}

pub(crate) struct Pool {
    /// Which provider (for logs): "APNs", "FCM".
    provider: &'static str,
    slots: Vec<Mutex<Option<Slot>>>,
    next: AtomicUsize,
    generations: AtomicU64,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    ping_interval: Duration,
    connects: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("provider", &self.provider)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("size", &self.slots.len())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(
        provider: &'static str,
        host: String,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
        size: usize,
        ping_interval: Duration,
    ) -> Result<Self, String> {
        let server_name = ServerName::try_from(host.clone()).map_err(|error| error.to_string())?;
        Ok(Self {
            provider,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            generations: AtomicU64::new(0),
            host,
            port,
            server_name,
            tls: TlsConnector::from(tls),
            ping_interval,
            connects: AtomicU64::new(0),
        })
    }

    /// How many connections were opened so far (for metrics and tests).
    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// A live connection, opening one in the next slot if it has none. The
    /// slot's lock is held while connecting, so concurrent callers wait for
    /// one new connection instead of each opening their own.
    pub(crate) async fn lease(&self) -> Result<Lease, String> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(existing) = slot.as_ref()
            && !existing.sender.is_closed()
        {
            return Ok(Lease { index, generation: existing.generation, sender: existing.sender.clone() });
        }
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| "connect timed out".to_owned())??;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some(Slot { generation, sender: sender.clone() });
        Ok(Lease { index, generation, sender })
    }

    /// Drops the lease's connection from its slot (if it is still the one
    /// there), so the next lease of that slot opens a new one.
    pub(crate) async fn retire(&self, lease: &Lease) {
        let mut slot = self.slots[lease.index].lock().await;
        if slot.as_ref().is_some_and(|existing| existing.generation == lease.generation) {
            *slot = None;
        }
    }

    async fn connect(&self) -> Result<Sender, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| format!("connect to {}:{}: {error}", self.host, self.port))?;
        tcp.set_nodelay(true).map_err(|error| error.to_string())?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|error| format!("TLS handshake with {}: {error}", self.host))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(format!("{} did not agree to HTTP/2", self.host));
        }
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // APNs allows one stream until the server's SETTINGS (and, with
            // token auth, the first accepted request) raise the limit; h2
            // queues the rest instead of opening streams APNs would refuse.
            // (Any server's SETTINGS raise it the same way.)
            .initial_max_send_streams(1)
            .keep_alive_interval(self.ping_interval)
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|error| format!("HTTP/2 handshake with {}: {error}", self.host))?;
        let (host, provider) = (self.host.clone(), self.provider);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(provider, host = %host, error = %error, "provider connection ended");
            }
        });
        self.connects.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(provider, host = %self.host, "opened a provider connection");
        Ok(sender)
    }
}

/// What became of one request sent through [`Pool::send`].
pub(crate) enum Trip {
    /// The answer's head and its body (at most the given bytes, as far as it
    /// came), with the connection it came on, for the caller to retire if
    /// the answer says so.
    Answered { lease: Lease, head: http::response::Parts, body: Result<Bytes, BodyError> },
    /// No answer in time: the connection, suspect, is retired (the answer may
    /// still come, so the request may have been processed).
    TimedOut,
    /// The server refused the stream (its stream limit went down under us):
    /// not processed, and the connection is still good.
    Refused,
    /// No connection (`ConnectionFailed`), or the request was cut off before
    /// an answer (`ConnectionLost`: GOAWAY, reset, connection lost): the
    /// connection is retired; the caller may send again on a new one.
    CutOff(Unreachable),
}

/// Why an answer's body did not come whole.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Pool {
    /// Sends `request` on a lent connection and waits `timeout` at most for
    /// its answer (head and body, `max_body` bytes at most).
    pub(crate) async fn send(&self, request: http::Request<Full<Bytes>>, timeout: Duration, max_body: usize) -> Trip {
        let lease = match self.lease().await {
            Ok(lease) => lease,
            Err(problem) => {
                tracing::warn!(provider = self.provider, host = %self.host, error = %problem, "cannot connect");
                return Trip::CutOff(Unreachable::ConnectionFailed);
            }
        };
        let mut sender = lease.sender.clone();
        let round_trip = async {
            let (head, body) = sender.send_request(request).await?.into_parts();
            let body = Limited::new(body, max_body).collect().await.map(|collected| collected.to_bytes());
            Ok::<_, hyper::Error>((head, body))
        };
        match tokio::time::timeout(timeout, round_trip).await {
            Err(_) => {
                self.retire(&lease).await;
                Trip::TimedOut
            }
            Ok(Err(error)) if is_refused_stream(&error) => Trip::Refused,
            Ok(Err(error)) => {
                tracing::debug!(provider = self.provider, error = %error, "request cut off; the connection is retired");
                self.retire(&lease).await;
                Trip::CutOff(Unreachable::ConnectionLost)
            }
            Ok(Ok((head, body))) => Trip::Answered { lease, head, body },
        }
    }
}

/// Whether the server reset the stream with `REFUSED_STREAM` on a connection
/// that is not going away (the request was not processed: RFC 9113 §8.7).
fn is_refused_stream(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2_error) = cause.downcast_ref::<h2::Error>() {
            return h2_error.reason() == Some(h2::Reason::REFUSED_STREAM) && !h2_error.is_go_away();
        }
        source = cause.source();
    }
    false
}
