//! Building blocks for a service that takes events in over HTTP, as
//! producer-service does: errors as problem+json (RFC 9457) with a reason a
//! caller can act on, JSON bodies read with a content-type check and a size
//! limit, an `Idempotency-Key` store (bounded in bytes) that replays the
//! first answer to a repeated request instead of publishing twice, request
//! execution that always answers by a deadline ([`Ingest`]), and a server
//! span and HTTP metrics for every request ([`traced`], [`HttpMetrics`]).

pub mod body;
pub mod idempotency;
pub mod ingest;
pub mod metrics;
pub mod problem;

pub use body::{idempotency_key, parse_json, read_json_body};
pub use idempotency::{Begin, Claim, Finality, IdempotencyStore, StoredAnswer};
pub use ingest::{Ingest, respond, traced};
pub use metrics::HttpMetrics;
pub use problem::{FieldError, NOT_READY, NOT_TAKEN, OUTCOME_UNKNOWN, PROBLEM_JSON, Problem};
