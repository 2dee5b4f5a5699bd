//! An OpenTelemetry collector's OTLP/HTTP trace receiver (`POST /v1/traces`,
//! protobuf), decoding what it gets with the protocol's own generated types
//! (`opentelemetry-proto`), so a test sees the spans as a collector would.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// One span as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// Its name (`accept`, `deliver`, …).
    pub name: String,
    /// The trace id, lowercase hex.
    pub trace_id: String,
    /// Its span id, lowercase hex.
    pub span_id: String,
    /// Its parent's span id, lowercase hex; empty for a root.
    pub parent_span_id: String,
    /// Its attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// The `service.name` of the resource that sent it.
    pub service_name: String,
}

/// A running receiver; stops when dropped.
pub struct FakeOtlpCollector {
    address: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    handle: axum_server::Handle<SocketAddr>,
}

impl std::fmt::Debug for FakeOtlpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOtlpCollector").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for FakeOtlpCollector {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl FakeOtlpCollector {
    /// Starts on a free loopback port (plain HTTP, as a collector next to the service listens).
    pub async fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new().route("/v1/traces", post(receive)).with_state(Arc::clone(&spans));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp(listener).expect("serve the OTLP receiver").handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(router.into_make_service()).await;
        });
        handle.listening().await;
        Self { address, spans, handle }
    }

    /// `http://127.0.0.1:<port>`, the collector's OTLP/HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

async fn receive(
    State(spans): State<Arc<Mutex<Vec<ReceivedSpan>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|resource| attributes(&resource.attributes)).unwrap_or_default();
        let service_name = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            received.push(ReceivedSpan {
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: attributes(&span.attributes),
                service_name: service_name.clone(),
            });
        }
    }
    spans.lock().unwrap_or_else(PoisonError::into_inner).extend(received);
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

fn attributes(pairs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|pair| {
            let value = match pair.value.as_ref().and_then(|value| value.value.as_ref()) {
                Some(Value::StringValue(text)) => text.clone(),
                Some(Value::IntValue(number)) => number.to_string(),
                Some(Value::BoolValue(flag)) => flag.to_string(),
                Some(Value::DoubleValue(number)) => number.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (pair.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
