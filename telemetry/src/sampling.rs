//! Deciding a root span before it is built.
//!
//! Under a parent-based sampler a span's fate is its parent's; only a root
//! (a record published outside any span, in a trace kafkit just started)
//! meets the root sampler, and the SDK asks it only once the span, every
//! attribute included, is built. kafkit decides such a root first, with the
//! SDK's own rule applied to the trace id of the record's `traceparent`: a
//! root that is not kept is never built, and one that is kept carries
//! [`ROOT_SAMPLED`], which the provider's sampler honours instead of
//! drawing again (which would keep a ratio's square).

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Attribute of a root span kafkit already decided to keep.
pub const ROOT_SAMPLED: &str = "kafkit.root.sampled";

/// The root sampler of a parent-based sampler, from `OTEL_TRACES_SAMPLER`
/// and `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RootRule {
    Always,
    Never,
    /// Keep this fraction of traces, by trace id.
    Ratio(f64),
}

impl RootRule {
    /// `None` for a sampler that is not parent-based (it decides every span).
    pub(crate) fn from_env(sampler: &str, arg: Option<&str>) -> Option<Self> {
        match sampler.trim() {
            "" | "parentbased_always_on" => Some(Self::Always),
            "parentbased_always_off" => Some(Self::Never),
            "parentbased_traceidratio" => {
                // The SDK's fallback for a missing or bad argument: 1.0.
                let ratio = arg
                    .and_then(|a| a.trim().parse::<f64>().ok())
                    .filter(|r| (0.0..=1.0).contains(r))
                    .unwrap_or(1.0);
                Some(Self::Ratio(ratio))
            }
            _ => None,
        }
    }

    /// The SDK's `TraceIdRatioBased` rule: the low 63 bits of the trace id
    /// against the ratio's share of 2^63.
    fn keeps(self, trace_id: [u8; 16]) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Ratio(ratio) => {
                let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
                let [.., a, b, c, d, e, f, g, h] = trace_id;
                (u64::from_be_bytes([a, b, c, d, e, f, g, h]) >> 1) < bound
            }
        }
    }
}

const UNSET: u8 = 0;
const ALWAYS: u8 = 1;
const NEVER: u8 = 2;
const RATIO: u8 = 3;
static RULE: AtomicU8 = AtomicU8::new(UNSET);
static RATIO_BITS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn set_root_rule(rule: RootRule) {
    let kind = match rule {
        RootRule::Always => ALWAYS,
        RootRule::Never => NEVER,
        RootRule::Ratio(ratio) => {
            RATIO_BITS.store(ratio.to_bits(), Ordering::Release);
            RATIO
        }
    };
    RULE.store(kind, Ordering::Release);
}

/// Whether a root span of the trace `trace_id` is to be kept; `None` when
/// kafkit does not decide roots (no parent-based sampler, spans not built).
pub fn keeps_root(trace_id: [u8; 16]) -> Option<bool> {
    let rule = match RULE.load(Ordering::Acquire) {
        ALWAYS => RootRule::Always,
        NEVER => RootRule::Never,
        RATIO => RootRule::Ratio(f64::from_bits(RATIO_BITS.load(Ordering::Acquire))),
        _ => return None,
    };
    Some(rule.keeps(trace_id))
}

/// What a send outside any span does with the trace its record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutsideSpans {
    /// No span: the record's trace was not sampled (or no span is built).
    Skip,
    /// No span, and the record goes out with this `traceparent`: its own
    /// trace, marked not sampled, because the root sampler drops it.
    NotSampled(String),
    /// A `send` span; `kept`: kafkit decided to keep this root, so the span
    /// carries [`ROOT_SAMPLED`].
    Build {
        /// Whether kafkit already decided to keep it.
        kept: bool,
    },
}

/// Decides a send made outside any span from the record's own
/// `traceparent`, read once: a parent marked not sampled skips it (under a
/// parent-based sampler), and a trace the root sampler drops is never built.
pub fn send_outside_spans(traceparent: Option<&str>) -> SendOutsideSpans {
    let parent = traceparent.and_then(crate::context::parse);
    if !crate::context::continues_parent(parent.as_ref()) {
        return SendOutsideSpans::Skip;
    }
    let Some(parent) = parent else {
        return SendOutsideSpans::Build { kept: false };
    };
    match keeps_root(parent.trace_id().to_bytes()) {
        Some(false) => SendOutsideSpans::NotSampled(format!(
            "00-{}-{}-{:02x}",
            parent.trace_id(),
            parent.span_id(),
            parent.trace_flags().to_u8() & !1
        )),
        Some(kept) => SendOutsideSpans::Build { kept },
        None => SendOutsideSpans::Build { kept: false },
    }
}

/// The configured sampler, except that a root span carrying
/// [`ROOT_SAMPLED`] is kept: kafkit decided it already.
#[derive(Debug, Clone)]
pub(crate) struct HonourRootDecisions(pub Box<dyn ShouldSample>);

impl ShouldSample for HonourRootDecisions {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let root = parent_context.is_none_or(|cx| !cx.span().span_context().is_valid());
        if root && attributes.iter().any(|kv| kv.key.as_str() == ROOT_SAMPLED) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        self.0
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::Sampler;

    #[test]
    fn the_root_rule_is_read_like_the_sdk_reads_it() {
        assert_eq!(RootRule::from_env("", None), Some(RootRule::Always));
        assert_eq!(
            RootRule::from_env("parentbased_traceidratio", Some("0.25")),
            Some(RootRule::Ratio(0.25))
        );
        assert_eq!(
            RootRule::from_env("parentbased_traceidratio", Some("2")),
            Some(RootRule::Ratio(1.0))
        );
        assert_eq!(
            RootRule::from_env("parentbased_always_off", None),
            Some(RootRule::Never)
        );
        assert_eq!(RootRule::from_env("traceidratio", Some("0.1")), None);
    }

    /// kafkit's decision is the SDK's own for the same trace id.
    #[test]
    fn a_ratio_keeps_the_traces_the_sdk_would_keep() {
        let sdk = Sampler::TraceIdRatioBased(0.1);
        let mut kept = 0;
        for i in 0..10_000u128 {
            let id = uuid_like(i);
            let ours = RootRule::Ratio(0.1).keeps(id);
            let theirs = sdk
                .should_sample(
                    None,
                    TraceId::from_bytes(id),
                    "send",
                    &SpanKind::Producer,
                    &[],
                    &[],
                )
                .decision
                == SamplingDecision::RecordAndSample;
            assert_eq!(ours, theirs, "trace {i}");
            kept += usize::from(ours);
        }
        assert!((800..1200).contains(&kept), "{kept} of 10000 kept at 0.1");
    }

    #[test]
    fn a_root_kafkit_kept_is_kept_and_others_go_to_the_configured_sampler() {
        let sampler = HonourRootDecisions(Box::new(Sampler::AlwaysOff));
        let decide = |attributes: &[KeyValue]| {
            sampler
                .should_sample(
                    None,
                    TraceId::from_bytes(uuid_like(7)),
                    "send",
                    &SpanKind::Producer,
                    attributes,
                    &[],
                )
                .decision
        };
        assert_eq!(
            decide(&[KeyValue::new(ROOT_SAMPLED, true)]),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide(&[]), SamplingDecision::Drop);
    }

    /// Spread-out ids, as random trace ids are.
    fn uuid_like(i: u128) -> [u8; 16] {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
            .to_be_bytes()
    }
}
