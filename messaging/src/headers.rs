//! kafkit's retry and dead-letter header names (DESIGN.md).
//!
//! A hop to a retry tier or the DLQ replaces these headers; it never appends
//! a second copy. Other headers (CloudEvents, trace context, the producer's
//! own) travel unchanged.

pub const ORIGINAL_TOPIC: &str = "kafkit.original.topic";
pub const ORIGINAL_PARTITION: &str = "kafkit.original.partition";
pub const ORIGINAL_OFFSET: &str = "kafkit.original.offset";
pub const ORIGINAL_TIMESTAMP: &str = "kafkit.original.timestamp";
pub const CONSUMER_GROUP: &str = "kafkit.consumer.group";
pub const ATTEMPT: &str = "kafkit.attempt";
pub const RETRY_NOT_BEFORE: &str = "kafkit.retry.not-before";
pub const ERROR_CLASS: &str = "kafkit.error.class";
pub const ERROR_MESSAGE: &str = "kafkit.error.message";
pub const ERROR_DETAIL: &str = "kafkit.error.detail";
pub const FAILURE_FIRST: &str = "kafkit.failure.first";
pub const FAILURE_LAST: &str = "kafkit.failure.last";

/// Every header kafkit owns; replaced as a set at each hop.
pub const ALL: [&str; 12] = [
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_TIMESTAMP,
    CONSUMER_GROUP,
    ATTEMPT,
    RETRY_NOT_BEFORE,
    ERROR_CLASS,
    ERROR_MESSAGE,
    ERROR_DETAIL,
    FAILURE_FIRST,
    FAILURE_LAST,
];

/// Bound on `kafkit.error.detail`, so a long cause chain cannot bloat records.
pub const MAX_DETAIL_BYTES: usize = 4096;
