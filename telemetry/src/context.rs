//! W3C trace context between `tracing` spans and Kafka record headers.
//!
//! A record carries `traceparent` (and `tracestate`) of the span that sent
//! it; whoever processes it makes that the parent of its own span. When no
//! OpenTelemetry layer is installed (a library used bare, in-process tests)
//! spans have no context: `traceparent` answers None and callers keep the
//! header they had.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header of the W3C trace context of the span that sent a record.
pub const TRACEPARENT: &str = "traceparent";
/// Header of the W3C vendor trace state that goes with it.
pub const TRACESTATE: &str = "tracestate";

/// Set once OpenTelemetry spans are built (an exporter is configured);
/// until then the helpers below skip their work on the hot path.
static SPANS_BUILT: AtomicBool = AtomicBool::new(false);

pub(crate) fn spans_built() {
    SPANS_BUILT.store(true, Ordering::Release);
}

fn active() -> bool {
    SPANS_BUILT.load(Ordering::Acquire)
}

/// True when OpenTelemetry spans are built and exported. Without that,
/// per-record spans are not worth creating: hot paths skip them and put the
/// fields they need (a trace id from the record's `traceparent`) on their
/// log lines instead.
pub fn exported() -> bool {
    active()
}

/// The trace id inside a `traceparent` value, if it has one.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    traceparent.split('-').nth(1).filter(|id| id.len() == 32)
}

/// Makes the context in these header values the parent of `span`.
/// Returns false when there is no valid context to continue.
pub fn set_parent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) -> bool {
    let Some(traceparent) = traceparent.filter(|_| active()) else {
        return false;
    };
    let mut carrier = HashMap::new();
    carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    if !parent.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(parent).is_ok()
}

/// `traceparent` and `tracestate` naming `span`, when it has a valid context.
pub fn traceparent(span: &Span) -> Option<(String, Option<String>)> {
    if !active() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    let parent = carrier.remove(TRACEPARENT)?;
    Some((parent, carrier.remove(TRACESTATE).filter(|s| !s.is_empty())))
}

/// Fills the `trace_id` and `span_id` fields `span` declared (as
/// `tracing::field::Empty`), so every log line inside it carries them.
/// Without OpenTelemetry spans (no exporter), the trace id comes from the
/// `traceparent` the work arrived with, if any.
pub fn record_ids(span: &Span, arrived_with: Option<&str>) {
    let span_context = if active() {
        span.context().span().span_context().clone()
    } else {
        opentelemetry::trace::SpanContext::empty_context()
    };
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
        span.record("span_id", span_context.span_id().to_string());
    } else if let Some(trace_id) = arrived_with.and_then(trace_id_of) {
        span.record("trace_id", trace_id);
    }
}
