//! W3C trace context between `tracing` spans and Kafka record headers.
//!
//! A record carries `traceparent` (and `tracestate`) of the span that sent
//! it; whoever processes it makes that the parent of its own span. When no
//! OpenTelemetry layer is installed (a library used bare, in-process tests)
//! spans have no context: `traceparent` answers None and callers keep the
//! header they had.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::str::FromStr;
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

/// Whether the sampler follows the parent's decision (`parentbased_*`,
/// the default): then a span whose parent was not sampled is not either.
static PARENT_BASED: AtomicBool = AtomicBool::new(true);

pub(crate) fn spans_built(parent_based: bool) {
    PARENT_BASED.store(parent_based, Ordering::Release);
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

/// Whether a span continuing the trace in `traceparent` is worth building:
/// spans are exported, and the sampler could keep it. Under a parent-based
/// sampler (the default) a parent marked "not sampled" decides for its
/// children, so nothing is built (no span, no attributes) and the record
/// keeps the `traceparent` it came with: its trace id and its "not sampled"
/// flag travel on, which is what the skipped span would have passed on.
pub fn continues(traceparent: Option<&str>) -> bool {
    continues_parent(traceparent.and_then(parse).as_ref())
}

/// [`continues`] for a parent already read.
pub(crate) fn continues_parent(parent: Option<&SpanContext>) -> bool {
    if !active() {
        return false;
    }
    !PARENT_BASED.load(Ordering::Acquire) || parent.is_none_or(SpanContext::is_sampled)
}

/// Whether a child of `parent` (a span in progress) is worth building: spans
/// are exported and, under a parent-based sampler, `parent` was sampled.
pub fn continues_span(parent: &Span) -> bool {
    if !active() {
        return false;
    }
    !PARENT_BASED.load(Ordering::Acquire) || parent.context().span().span_context().is_sampled()
}

/// A `traceparent` value (version `00`), read without a propagator.
pub(crate) fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Makes the context in these header values the parent of `span`.
/// Returns false when there is no valid context to continue.
pub fn set_parent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) -> bool {
    let Some(traceparent) = traceparent.filter(|_| active()) else {
        return false;
    };
    let Some(remote) = parse(traceparent) else {
        return false;
    };
    let state = tracestate
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        remote.trace_id(),
        remote.span_id(),
        remote.trace_flags(),
        true,
        state,
    );
    let parent = opentelemetry::Context::new().with_remote_span_context(remote);
    span.set_parent(parent).is_ok()
}

/// `traceparent` and `tracestate` naming `span`, when it has a valid context.
pub fn traceparent(span: &Span) -> Option<(String, Option<String>)> {
    if !active() {
        return None;
    }
    let context = span.context();
    let span = context.span();
    let ids = span.span_context();
    if !ids.is_valid() {
        return None;
    }
    let parent = format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    );
    let state = ids.trace_state().header();
    Some((parent, (!state.is_empty()).then_some(state)))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    #[test]
    fn traceparent_values_are_read_with_their_sampled_flag() {
        let sampled = parse(SAMPLED).unwrap();
        assert!(sampled.is_sampled());
        assert!(sampled.is_remote());
        assert_eq!(
            sampled.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sampled.span_id().to_string(), "00f067aa0ba902b7");
        assert!(!parse(NOT_SAMPLED).unwrap().is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    /// The only test here that turns spans on: the state is process-wide.
    #[test]
    fn a_parent_based_sampler_continues_only_sampled_parents() {
        assert!(!continues(Some(SAMPLED)), "nothing is built before init");
        spans_built(true);
        assert!(continues(Some(SAMPLED)));
        assert!(!continues(Some(NOT_SAMPLED)));
        assert!(continues(None), "a root: the sampler decides");
        assert!(continues(Some("garbage")), "no valid parent: a root");
        // A send outside any span, from its record's own trace.
        use crate::sampling::{RootRule, SendOutsideSpans, send_outside_spans, set_root_rule};
        set_root_rule(RootRule::Never);
        assert_eq!(
            send_outside_spans(Some(SAMPLED)),
            SendOutsideSpans::NotSampled(NOT_SAMPLED.to_owned())
        );
        assert_eq!(
            send_outside_spans(Some(NOT_SAMPLED)),
            SendOutsideSpans::Skip
        );
        assert_eq!(
            send_outside_spans(None),
            SendOutsideSpans::Build { kept: false }
        );
        set_root_rule(RootRule::Always);
        assert_eq!(
            send_outside_spans(Some(SAMPLED)),
            SendOutsideSpans::Build { kept: true }
        );
        spans_built(false);
        assert!(
            continues(Some(NOT_SAMPLED)),
            "another sampler decides itself"
        );
    }
}
