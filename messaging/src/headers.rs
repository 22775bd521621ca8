//! kafkit's retry and dead-letter header names (docs/DESIGN.md, header contract).
//!
//! A hop to a retry tier or the DLQ replaces these headers; it never appends
//! a second copy. Other headers (CloudEvents, trace context, the producer's
//! own) travel unchanged.

/// The topic the record was first written to; kept across hops.
pub const ORIGINAL_TOPIC: &str = "kafkit.original.topic";
/// Its partition there.
pub const ORIGINAL_PARTITION: &str = "kafkit.original.partition";
/// Its offset there.
pub const ORIGINAL_OFFSET: &str = "kafkit.original.offset";
/// Its timestamp there, epoch milliseconds, when it had one.
pub const ORIGINAL_TIMESTAMP: &str = "kafkit.original.timestamp";
/// The consumer group that made the hop.
pub const CONSUMER_GROUP: &str = "kafkit.consumer.group";
/// Handler executions so far, the failed one included.
pub const ATTEMPT: &str = "kafkit.attempt";
/// On a retry copy: epoch milliseconds before which it is not handled.
pub const RETRY_NOT_BEFORE: &str = "kafkit.retry.not-before";
/// The failure's class, e.g. `bad-magic-byte`.
pub const ERROR_CLASS: &str = "kafkit.error.class";
/// The failure's message, bounded like [`ERROR_DETAIL`].
pub const ERROR_MESSAGE: &str = "kafkit.error.message";
/// The failure's cause chain, at most [`MAX_DETAIL_BYTES`]
/// ([`TRIMMED_DETAIL_BYTES`] on a dead letter sent smaller).
pub const ERROR_DETAIL: &str = "kafkit.error.detail";
/// When the record first failed, epoch milliseconds; kept across hops.
pub const FAILURE_FIRST: &str = "kafkit.failure.first";
/// When it failed last, epoch milliseconds.
pub const FAILURE_LAST: &str = "kafkit.failure.last";

/// On a dead letter the broker would not take whole: how many value bytes
/// were left out (the record is then a reference: origin and error only).
pub const VALUE_DROPPED: &str = "kafkit.value.dropped";

/// Every header kafkit owns; replaced as a set at each hop.
pub const ALL: [&str; 13] = [
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
    VALUE_DROPPED,
];

/// Bound on `kafkit.error.detail`, so a long cause chain cannot bloat records.
pub const MAX_DETAIL_BYTES: usize = 4096;

/// Bound on the error message and detail of a dead letter whose full copy
/// the broker refused.
pub const TRIMMED_DETAIL_BYTES: usize = 256;

/// Header names and values, owned.
pub type OwnedPairs = Vec<(String, Vec<u8>)>;

/// A record's headers, as names and bytes. rdkafka panics on a header name
/// that is not UTF-8; such a record is reported, not allowed to crash the
/// reader: `Err` carries the headers read before the bad one.
pub fn read_all<M: rdkafka::Message>(message: &M) -> Result<OwnedPairs, OwnedPairs> {
    use rdkafka::message::Headers;
    let Some(headers) = message.headers() else {
        return Ok(Vec::new());
    };
    let mut read = Vec::with_capacity(headers.count());
    let result = catch_quietly(|| {
        for header in headers.iter() {
            read.push((
                header.key.to_owned(),
                header.value.unwrap_or_default().to_vec(),
            ));
        }
    });
    match result {
        Ok(()) => Ok(read),
        Err(_) => Err(read),
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` and catches its panic without printing it: rdkafka's header
/// reader panics on a name that is not UTF-8 (every accessor unwraps), and
/// the caller reports that itself. Other threads' panics print as before.
pub fn catch_quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}
