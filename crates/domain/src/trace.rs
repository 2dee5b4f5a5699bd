//! A push's place in a distributed trace: the W3C `traceparent` of its
//! `accept` span, kept with the push, so its fan-out and every attempt of
//! every delivery (on whichever node, after a restart too) continue the trace
//! the request began, and a trace an incoming `traceparent` began goes on
//! through them.
//!
//! The crates that make those spans know only this module: what a span's
//! context is and how a span takes a parent is the exporter's business, which
//! the binary installs ([`install`]) when `[telemetry] otlp_endpoint` is set.
//! Without it, [`parent_of`] is `None` and [`continue_from`] does nothing.

use std::fmt;
use std::sync::OnceLock;

/// A W3C Trace Context `traceparent` (version 00): a trace id, the parent
/// span's id and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A trace context from its parts; `None` for the invalid all-zero ids.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id, flags })
    }

    /// Reads a `traceparent` header value: `None` for anything but the
    /// spec's form (W3C Trace Context §3.2: a version `ff` or ids all zero
    /// are invalid; a future version's longer value is read by its first
    /// four fields).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut fields = value.split('-');
        let version = hex::<1>(fields.next()?)?;
        let trace_id = hex::<16>(fields.next()?)?;
        let span_id = hex::<8>(fields.next()?)?;
        let flags = hex::<1>(fields.next()?)?;
        if version[0] == 0xff || (version[0] == 0 && fields.next().is_some()) {
            return None;
        }
        Self::new(trace_id, span_id, flags[0])
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent span's id.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

/// Lowercase hex of exactly `N` bytes.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)) {
        return None;
    }
    let mut bytes = [0u8; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
    }
    Some(bytes)
}

impl fmt::Display for TraceParent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("00-")?;
        self.trace_id.iter().try_for_each(|byte| write!(formatter, "{byte:02x}"))?;
        formatter.write_str("-")?;
        self.span_id.iter().try_for_each(|byte| write!(formatter, "{byte:02x}"))?;
        write!(formatter, "-{:02x}", self.flags)
    }
}

/// What an exporter does with spans: read a span's context, give one a parent.
#[derive(Debug, Clone, Copy)]
pub struct TraceHooks {
    /// The span's own context, as the parent of what follows it.
    pub context_of: fn(&tracing::Span) -> Option<TraceParent>,
    /// Makes `parent` the span's parent (before the span is entered).
    pub set_parent: fn(&tracing::Span, &TraceParent),
}

static HOOKS: OnceLock<TraceHooks> = OnceLock::new();

/// Installs the exporter's hooks, once per process (a second call is ignored).
pub fn install(hooks: TraceHooks) {
    let _ = HOOKS.set(hooks);
}

/// The span's context, to keep with a push; `None` when nothing exports traces.
pub fn parent_of(span: &tracing::Span) -> Option<TraceParent> {
    HOOKS.get().and_then(|hooks| (hooks.context_of)(span))
}

/// Makes the span a child of `parent` (a push's kept context, a request's
/// `traceparent`), when something exports traces.
pub fn continue_from(span: &tracing::Span, parent: Option<&TraceParent>) {
    if let (Some(hooks), Some(parent)) = (HOOKS.get(), parent) {
        (hooks.set_parent)(span, parent);
    }
}

#[cfg(test)]
mod tests {
    use super::TraceParent;

    #[test]
    fn a_traceparent_reads_back_as_written_and_invalid_ones_are_refused() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceParent::parse(value).expect("the spec's example");
        assert_eq!(parent.to_string(), value);
        assert_eq!(parent.flags(), 1);
        assert_eq!(parent.span_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        // A later version may add fields; version 00 may not.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").is_some());
        for invalid in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert_eq!(TraceParent::parse(invalid), None, "{invalid:?}");
        }
    }
}
