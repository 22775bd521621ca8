//! Where a failed record goes next, and the copy that goes there.
//!
//! Pure functions: given the record, its classified failure and how many
//! attempts it has had, pick a retry tier or the DLQ and build the copy,
//! with the original key, value and headers, kafkit's headers replaced.
//!
//! Headers are input like any other: kafkit's routing headers are trusted
//! only on the consumer's own retry topics (`FailedRecord::trusted`). On a
//! main topic a record is attempt 0 of the topic it was read from, whatever
//! it carries; destinations always come from configuration.

use crate::failure::{Failure, FailureKind};
use crate::headers;
use crate::publisher::OutgoingRecord;
use std::borrow::Cow;
use std::time::Duration;

/// Retry tiers and limits for one main topic.
///
/// ```
/// use kafkit_messaging::{FailureKind, RetryPolicy, Route};
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default();
/// assert_eq!(
///     policy.retry_topics("orders"),
///     ["orders.retry.1", "orders.retry.2", "orders.retry.3"],
/// );
/// assert_eq!(policy.dlq_topic("orders"), "orders.dlq");
/// assert_eq!(policy.main_topic_of("orders.retry.2"), Some("orders"));
///
/// // Failed once: tier 1. Failed on the fourth try, or for good: the DLQ.
/// assert_eq!(
///     policy.route(FailureKind::Transient, 1),
///     Route::Retry { tier: 1, delay: Duration::from_secs(1) },
/// );
/// assert_eq!(policy.route(FailureKind::Transient, 4), Route::DeadLetter);
/// assert_eq!(policy.route(FailureKind::Permanent, 1), Route::DeadLetter);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay of each tier: tier 1 is `delays[0]`. Default 1 s, 10 s, 60 s.
    pub delays: Vec<Duration>,
    /// Handler executions before a transient failure is dead-lettered,
    /// the first try included. Default: one per tier, plus the first.
    pub max_attempts: u32,
    /// `orders` + `.retry.` + tier number.
    pub retry_suffix: String,
    /// `orders` + `.dlq`.
    pub dlq_suffix: String,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(10),
                Duration::from_secs(60),
            ],
            max_attempts: 4,
            retry_suffix: ".retry.".into(),
            dlq_suffix: ".dlq".into(),
        }
    }
}

/// The next stop of a failed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Retry tier `tier` (1-based), not before `delay` from now.
    Retry {
        /// The tier, 1-based.
        tier: usize,
        /// The tier's delay.
        delay: Duration,
    },
    /// The dead-letter topic: a permanent failure, or no attempts left.
    DeadLetter,
}

impl RetryPolicy {
    /// The topic of retry tier `tier` (1-based) of `original`, e.g. `orders.retry.1`.
    pub fn retry_topic(&self, original: &str, tier: usize) -> String {
        format!("{original}{}{tier}", self.retry_suffix)
    }

    /// The topics of every retry tier of `original`, tier 1 first.
    pub fn retry_topics(&self, original: &str) -> Vec<String> {
        (1..=self.delays.len())
            .map(|tier| self.retry_topic(original, tier))
            .collect()
    }

    /// The dead-letter topic of `original`, e.g. `orders.dlq`.
    pub fn dlq_topic(&self, original: &str) -> String {
        format!("{original}{}", self.dlq_suffix)
    }

    /// The main topic a retry tier belongs to (`orders.retry.2` → `orders`),
    /// from the configured suffix; None for a topic that is not a tier.
    pub fn main_topic_of<'t>(&self, retry_topic: &'t str) -> Option<&'t str> {
        let (main, tier) = retry_topic.rsplit_once(self.retry_suffix.as_str())?;
        (!main.is_empty() && !tier.is_empty() && tier.bytes().all(|b| b.is_ascii_digit()))
            .then_some(main)
    }

    /// The longest a retry waits (its tier's delay); `kafkit.retry.not-before`
    /// is never honoured beyond it, so a skewed clock cannot hold a tier.
    pub fn longest_delay(&self) -> Duration {
        self.delays.iter().max().copied().unwrap_or_default()
    }

    /// Where a record goes after failing with `kind`, having now been tried
    /// `attempts` times. Outages are handled in place and never routed.
    pub fn route(&self, kind: FailureKind, attempts: u32) -> Route {
        match kind {
            FailureKind::Transient if attempts < self.max_attempts && !self.delays.is_empty() => {
                let tier = usize::try_from(attempts)
                    .unwrap_or(usize::MAX)
                    .clamp(1, self.delays.len());
                Route::Retry {
                    tier,
                    delay: self.delays[tier - 1],
                }
            }
            _ => Route::DeadLetter,
        }
    }
}

/// A record's headers as borrowed name and value pairs, in record order.
pub type HeaderView<'a> = [(&'a str, &'a [u8])];

/// A consumed record that failed, with everything a hop needs.
#[derive(Debug, Clone)]
pub struct FailedRecord<'a> {
    /// True on the consumer's own retry topics: its `kafkit.*` headers were
    /// written by a kafkit hop and say where it comes from. Elsewhere they
    /// are ignored (forged, or forwarded from another system).
    pub trusted: bool,
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its timestamp, epoch milliseconds, when it has one.
    pub timestamp_ms: Option<i64>,
    /// Its key, as read.
    pub key: Option<&'a [u8]>,
    /// Its value, as read.
    pub payload: Option<&'a [u8]>,
    /// Its headers, as read.
    pub headers: &'a HeaderView<'a>,
    /// The consumer group that read it.
    pub group: &'a str,
}

/// The first value of header `name`, in owned or borrowed pairs.
pub fn header<'h, N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &'h [(N, V)],
    name: &str,
) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

fn header_number<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)], name: &str) -> Option<i64> {
    std::str::from_utf8(header(headers, name)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Failed attempts recorded on the record (0 on a first delivery).
pub fn attempts_so_far<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> u32 {
    header_number(headers, headers::ATTEMPT)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// `kafkit.retry.not-before`, epoch milliseconds.
pub fn not_before_ms<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> Option<i64> {
    header_number(headers, headers::RETRY_NOT_BEFORE)
}

/// The main topic the record belongs to: its own topic on a first
/// delivery, the tier's main topic (by the configured suffix) on a retry.
pub fn original_topic(record: &FailedRecord<'_>, policy: &RetryPolicy) -> String {
    let own = record.topic;
    let main = if record.trusted {
        policy.main_topic_of(own).unwrap_or(own)
    } else {
        own
    };
    main.to_owned()
}

/// Namespace of event ids derived from a record's coordinates.
const DERIVED_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b61_666b_6974_2d64_6572_6976_6564_6964);

/// The event id of a record that has no `ce_id` (a plain Confluent
/// serializer, Kafka Connect, another team's producer): a UUID v5 of where
/// it was first written, so a redelivery or a retry gets the same id.
pub fn derived_event_id(topic: &str, partition: i32, offset: i64) -> String {
    let name = format!("{topic}/{partition}/{offset}");
    uuid::Uuid::new_v5(&DERIVED_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// Where a record was first written: its own coordinates, or on a retry
/// topic the origin its (trusted) headers carry.
pub fn origin<'a>(record: &FailedRecord<'a>) -> (String, i32, i64) {
    let own = (record.topic.to_owned(), record.partition, record.offset);
    if !record.trusted {
        return own;
    }
    let topic = header(record.headers, headers::ORIGINAL_TOPIC)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned);
    let partition = header_number(record.headers, headers::ORIGINAL_PARTITION)
        .and_then(|p| i32::try_from(p).ok());
    let offset = header_number(record.headers, headers::ORIGINAL_OFFSET);
    match (topic, partition, offset) {
        (Some(topic), Some(partition), Some(offset)) => (topic, partition, offset),
        _ => own,
    }
}

/// How much of a failed record its copy carries. A copy the broker refuses
/// (too large, invalid) is sent again smaller, never retried as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyForm {
    /// Key, value, headers, failure headers bounded to `MAX_DETAIL_BYTES`.
    Full,
    /// The same with the error message and detail cut to `TRIMMED_DETAIL_BYTES`.
    Trimmed,
    /// No value, no headers but kafkit's: where it came from, why it died,
    /// and `kafkit.value.dropped` with the size left out.
    Reference,
}

fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The copy of `record` for `destination`: original key, value and
/// non-kafkit headers untouched; kafkit's headers replaced (the origin kept
/// from a trusted record's headers). `form` says how much to carry.
pub fn hop(
    record: &FailedRecord<'_>,
    failure: &Failure,
    attempts: u32,
    destination: &str,
    not_before_ms: Option<i64>,
    now_ms: i64,
    form: CopyForm,
) -> OutgoingRecord {
    let existing = |name: &str| {
        record
            .trusted
            .then(|| header(record.headers, name).map(<[u8]>::to_vec))
            .flatten()
    };
    let mut out: Vec<(Cow<'static, str>, Vec<u8>)> = if form == CopyForm::Reference {
        Vec::new()
    } else {
        record
            .headers
            .iter()
            .filter(|(n, _)| !headers::ALL.contains(n))
            .map(|(n, v)| (Cow::Owned((*n).to_owned()), v.to_vec()))
            .collect()
    };
    let detail_bound = match form {
        CopyForm::Full => headers::MAX_DETAIL_BYTES,
        CopyForm::Trimmed | CopyForm::Reference => headers::TRIMMED_DETAIL_BYTES,
    };
    let mut set = |name: &'static str, value: Vec<u8>| out.push((Cow::Borrowed(name), value));
    set(
        headers::ORIGINAL_TOPIC,
        existing(headers::ORIGINAL_TOPIC).unwrap_or_else(|| record.topic.as_bytes().to_vec()),
    );
    set(
        headers::ORIGINAL_PARTITION,
        existing(headers::ORIGINAL_PARTITION)
            .unwrap_or_else(|| record.partition.to_string().into_bytes()),
    );
    set(
        headers::ORIGINAL_OFFSET,
        existing(headers::ORIGINAL_OFFSET)
            .unwrap_or_else(|| record.offset.to_string().into_bytes()),
    );
    if let Some(ts) = existing(headers::ORIGINAL_TIMESTAMP)
        .or_else(|| record.timestamp_ms.map(|t| t.to_string().into_bytes()))
    {
        set(headers::ORIGINAL_TIMESTAMP, ts);
    }
    set(headers::CONSUMER_GROUP, record.group.as_bytes().to_vec());
    set(headers::ATTEMPT, attempts.to_string().into_bytes());
    if let Some(not_before) = not_before_ms {
        set(
            headers::RETRY_NOT_BEFORE,
            not_before.to_string().into_bytes(),
        );
    }
    set(headers::ERROR_CLASS, failure.class.as_bytes().to_vec());
    set(
        headers::ERROR_MESSAGE,
        bounded(&failure.message, detail_bound).as_bytes().to_vec(),
    );
    set(
        headers::ERROR_DETAIL,
        bounded(&failure.detail, detail_bound).as_bytes().to_vec(),
    );
    set(
        headers::FAILURE_FIRST,
        existing(headers::FAILURE_FIRST).unwrap_or_else(|| now_ms.to_string().into_bytes()),
    );
    set(headers::FAILURE_LAST, now_ms.to_string().into_bytes());
    let (key, payload) = match form {
        CopyForm::Full | CopyForm::Trimmed => (
            record.key.map(<[u8]>::to_vec),
            record.payload.map(<[u8]>::to_vec),
        ),
        CopyForm::Reference => {
            let dropped = record.payload.map_or(0, <[u8]>::len);
            set(headers::VALUE_DROPPED, dropped.to_string().into_bytes());
            // A key too large to matter for partitioning is dropped too.
            (
                record.key.filter(|k| k.len() <= 1024).map(<[u8]>::to_vec),
                None,
            )
        }
    };
    OutgoingRecord {
        topic: destination.to_owned(),
        partition: None,
        key,
        payload,
        headers: out,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            delays: vec![Duration::from_secs(1), Duration::from_secs(10)],
            max_attempts: 3,
            ..Default::default()
        }
    }

    #[test]
    fn transient_failures_climb_the_tiers_then_die_permanent_ones_die_at_once() {
        let p = policy();
        assert_eq!(
            p.route(FailureKind::Transient, 1),
            Route::Retry {
                tier: 1,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(
            p.route(FailureKind::Transient, 2),
            Route::Retry {
                tier: 2,
                delay: Duration::from_secs(10)
            }
        );
        assert_eq!(p.route(FailureKind::Transient, 3), Route::DeadLetter);
        assert_eq!(p.route(FailureKind::Permanent, 1), Route::DeadLetter);
        let more = RetryPolicy {
            max_attempts: 5,
            ..policy()
        };
        assert_eq!(
            more.route(FailureKind::Transient, 4),
            Route::Retry {
                tier: 2,
                delay: Duration::from_secs(10)
            }
        );
        assert_eq!(p.retry_topic("orders", 2), "orders.retry.2");
        assert_eq!(p.dlq_topic("orders"), "orders.dlq");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Header names: kafkit's own, CloudEvents, anything.
        fn names() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(headers::ALL.to_vec()).prop_map(str::to_owned),
                Just("ce_id".to_owned()),
                ".{0,12}",
            ]
        }

        /// Values: numbers of any size and sign, text, bytes that are not UTF-8.
        fn values() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                any::<i128>().prop_map(|n| n.to_string().into_bytes()),
                ".{0,40}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..40),
            ]
        }

        proptest! {
            /// Whatever headers a record carries, reading them never panics
            /// or overflows, and a hop's copy carries each kafkit header at
            /// most once, the attempt it was given, and on a first delivery
            /// (untrusted) the record's own origin.
            #[test]
            fn any_headers_hop_without_panic_and_a_first_delivery_keeps_its_own_origin(
                pairs in proptest::collection::vec((names(), values()), 0..12),
                trusted in any::<bool>(),
                attempts in 0u32..10,
                now in any::<i64>(),
            ) {
                let view: Vec<(&str, &[u8])> =
                    pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
                let _ = attempts_so_far(&view);
                let _ = not_before_ms(&view);
                let record = FailedRecord {
                    trusted,
                    topic: "orders.retry.1",
                    partition: 2,
                    offset: 9,
                    timestamp_ms: Some(now),
                    key: None,
                    payload: Some(b"v"),
                    headers: &view,
                    group: "g",
                };
                let (topic, partition, offset) = origin(&record);
                let policy = policy();
                let _ = original_topic(&record, &policy);
                for form in [CopyForm::Full, CopyForm::Trimmed, CopyForm::Reference] {
                    let copy = hop(
                        &record,
                        &Failure::transient("x", "y"),
                        attempts,
                        "orders.dlq",
                        Some(now),
                        now,
                        form,
                    );
                    for name in headers::ALL {
                        prop_assert!(copy.headers.iter().filter(|(n, _)| n == name).count() <= 1);
                    }
                    prop_assert_eq!(attempts_so_far(&copy.headers), attempts);
                    if !trusted {
                        let own = |name: &str| header(&copy.headers, name).map(<[u8]>::to_vec);
                        prop_assert_eq!(own(headers::ORIGINAL_TOPIC), Some(b"orders.retry.1".to_vec()));
                        prop_assert_eq!(own(headers::ORIGINAL_PARTITION), Some(b"2".to_vec()));
                        prop_assert_eq!(own(headers::ORIGINAL_OFFSET), Some(b"9".to_vec()));
                    }
                }
                if !trusted {
                    prop_assert_eq!((topic.as_str(), partition, offset), ("orders.retry.1", 2, 9));
                }
            }
        }
    }

    #[test]
    fn a_hop_replaces_kafkit_headers_and_keeps_the_rest_and_the_origin() {
        let incoming = [
            ("ce_id".to_owned(), b"e1".to_vec()),
            (headers::ORIGINAL_TOPIC.to_owned(), b"orders".to_vec()),
            (headers::ORIGINAL_OFFSET.to_owned(), b"7".to_vec()),
            (headers::ATTEMPT.to_owned(), b"1".to_vec()),
            (headers::FAILURE_FIRST.to_owned(), b"1000".to_vec()),
            (headers::ERROR_CLASS.to_owned(), b"old".to_vec()),
        ];
        let incoming: Vec<(&str, &[u8])> = incoming
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let record = FailedRecord {
            trusted: true,
            topic: "orders.retry.1",
            partition: 0,
            offset: 3,
            timestamp_ms: Some(900),
            key: Some(b"k"),
            payload: Some(b"\x00v"),
            headers: &incoming,
            group: "g",
        };
        let failure = Failure::transient("timeout", "x".repeat(10_000));
        let copy = hop(
            &record,
            &failure,
            2,
            "orders.retry.2",
            Some(5000),
            2000,
            CopyForm::Full,
        );
        assert_eq!(copy.topic, "orders.retry.2");
        assert_eq!(
            (copy.key.as_deref(), copy.payload.as_deref()),
            (Some(&b"k"[..]), Some(&b"\x00v"[..]))
        );
        for name in headers::ALL {
            assert!(
                copy.headers.iter().filter(|(n, _)| n == name).count() <= 1,
                "{name} appears once at most"
            );
        }
        let get =
            |name: &str| String::from_utf8(header(&copy.headers, name).unwrap().to_vec()).unwrap();
        assert_eq!(get("ce_id"), "e1");
        assert_eq!(get(headers::ORIGINAL_TOPIC), "orders");
        assert_eq!(
            get(headers::ORIGINAL_OFFSET),
            "7",
            "the first origin is kept"
        );
        assert_eq!(get(headers::ORIGINAL_PARTITION), "0");
        assert_eq!(get(headers::ATTEMPT), "2");
        assert_eq!(get(headers::ERROR_CLASS), "timeout");
        assert_eq!(get(headers::FAILURE_FIRST), "1000");
        assert_eq!(get(headers::FAILURE_LAST), "2000");
        assert_eq!(get(headers::RETRY_NOT_BEFORE), "5000");
        assert_eq!(get(headers::ERROR_MESSAGE).len(), headers::MAX_DETAIL_BYTES);
        assert_eq!(attempts_so_far(&copy.headers), 2);
        assert_eq!(not_before_ms(&copy.headers), Some(5000));
    }
}
