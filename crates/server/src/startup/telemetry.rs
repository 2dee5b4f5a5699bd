//! The process's logging, its trace export and its TLS crypto provider, set
//! up once at start.

use crate::config::{Config, LogFormat, TelemetryConfig};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use pushgate_domain::TraceParent;
use pushgate_domain::trace::TraceHooks;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Picks the one rustls crypto provider of the whole binary (aws-lc-rs).
/// Calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is the goal.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What logging started and a stop must finish: the trace exporter, whose
/// last spans are sent by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
#[must_use = "shut it down at the end, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not sent yet (waiting for the collector's answers) and
    /// stops the exporter. Blocks: call it once the server has stopped.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces
            && let Err(error) = traces.shutdown()
        {
            tracing::warn!(error = %error, "the last spans could not be sent to the OTLP collector");
        }
    }
}

/// Starts logging to standard error as the configuration says (`RUST_LOG`
/// wins), and, with `[telemetry] otlp_endpoint`, exporting traces.
pub fn init_logging(config: &Config) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colour codes only for a person at a terminal, never into a file or a log shipper.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let lines = match config.log.format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let traces = config.telemetry.otlp_endpoint.as_ref().map(|endpoint| traces(endpoint, &config.telemetry));
    let (traces, provider) = match traces {
        Some(Ok(provider)) => {
            let tracer = provider.tracer("pushgate");
            // Every span of pushgate's own (the `debug` steps of a delivery
            // too, whatever the log level), and the events at `info` and above
            // as the spans' events; nothing of the libraries underneath.
            let ours = tracing_subscriber::filter::filter_fn(|metadata| {
                metadata.target().starts_with("pushgate")
                    && (metadata.is_span() || *metadata.level() <= tracing::Level::INFO)
            });
            (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(ours)), Some(provider))
        }
        Some(Err(error)) => {
            // Logging is not up yet; a trace exporter that cannot start must not stop pushgate.
            eprintln!("pushgate: traces are not exported: {error}");
            (None, None)
        }
        None => (None, None),
    };
    match traces {
        // Each layer its own filter: the spans go to the exporter whatever the log level.
        Some(traces) => tracing_subscriber::registry().with(lines.with_filter(filter)).with(traces).init(),
        // One filter for the whole subscriber, as cheap as logging alone can be.
        None => tracing_subscriber::registry().with(filter.and_then(lines)).init(),
    }
    if provider.is_some() {
        pushgate_domain::trace::install(TraceHooks { context_of, set_parent });
        tracing::info!(endpoint = %config.telemetry.otlp_endpoint.as_ref().map(url::Url::as_str).unwrap_or_default(), "exporting traces over OTLP");
    }
    Telemetry { traces: provider }
}

/// The OTLP/HTTP (protobuf) exporter, batching on a thread of its own.
fn traces(endpoint: &url::Url, telemetry: &TelemetryConfig) -> Result<SdkTracerProvider, anyhow::Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/')))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(telemetry.service_name.clone()).build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(telemetry.sample_ratio))))
        .with_resource(resource)
        .build())
}

/// A span's OpenTelemetry context as a `traceparent`.
fn context_of(span: &tracing::Span) -> Option<TraceParent> {
    let context = span.context();
    let span = context.span();
    let found = span.span_context();
    if !found.is_valid() {
        return None;
    }
    TraceParent::new(found.trace_id().to_bytes(), found.span_id().to_bytes(), found.trace_flags().to_u8())
}

/// Makes a remote `traceparent` the span's OpenTelemetry parent.
fn set_parent(span: &tracing::Span, parent: &TraceParent) {
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.span_id()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}
