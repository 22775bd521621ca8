//! Building blocks for a service that takes events in over HTTP, as
//! producer-service does: errors as problem+json (RFC 9457) with a reason a
//! caller can act on, JSON bodies read with a content-type check and a size
//! limit, and an `Idempotency-Key` store (bounded in bytes) that replays the
//! first answer to a repeated request instead of publishing twice.

pub mod body;
pub mod idempotency;
pub mod problem;

pub use body::{idempotency_key, parse_json, read_json_body};
pub use idempotency::{Begin, Claim, Finality, IdempotencyStore, StoredAnswer};
pub use problem::{FieldError, NOT_TAKEN, OUTCOME_UNKNOWN, PROBLEM_JSON, Problem};
