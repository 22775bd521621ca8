//! A dead letter as people want to see it: where it came from, why it died,
//! how often it was tried, whatever tool wrote it.
//!
//! kafkit's own headers are read first; Spring Kafka's (`kafka_dlt-*`) and
//! Kafka Connect's (`__connect.errors.*`) are understood too, so the same
//! tools work on dead-letter topics other stacks filled.

use kafkit_messaging::headers as h;
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use std::collections::BTreeMap;

/// Which convention the failure headers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Convention {
    Kafkit,
    SpringKafka,
    KafkaConnect,
    /// No known failure headers.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    /// When it was written to the DLQ (epoch ms), from the record timestamp.
    pub dead_at_ms: Option<i64>,
    pub convention: Convention,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    pub attempt: Option<u32>,
    pub error_class: String,
    pub error_message: String,
    /// Set when this record had been replayed from a DLQ before it died again.
    pub replayed_from: Option<String>,
    /// The W3C trace id from its `traceparent` header, to look the record up
    /// in a tracing backend.
    pub trace_id: Option<String>,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    pub key_text: Option<String>,
    #[serde(skip)]
    pub value: Option<Vec<u8>>,
    #[serde(skip)]
    pub headers: Vec<(String, Vec<u8>)>,
}

fn text(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

fn raw<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// Spring writes partition and offset as big-endian binary ints.
fn be_int(bytes: &[u8]) -> Option<i64> {
    match bytes.len() {
        4 => Some(i64::from(i32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(i64::from_be_bytes(bytes.try_into().ok()?)),
        _ => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
    }
}

impl DeadLetter {
    pub fn from_message(message: &OwnedMessage) -> Self {
        // A header name that is not UTF-8 ends the reading of its headers,
        // not the command.
        let headers = kafkit_messaging::headers::read_all(message).unwrap_or_else(|read| read);
        let number = |name: &str| text(&headers, name).and_then(|t| t.trim().parse::<i64>().ok());
        let (convention, original_topic, original_partition, original_offset, attempt, class, msg) =
            if text(&headers, h::ERROR_CLASS).is_some()
                || text(&headers, h::ORIGINAL_TOPIC).is_some()
            {
                (
                    Convention::Kafkit,
                    text(&headers, h::ORIGINAL_TOPIC),
                    number(h::ORIGINAL_PARTITION),
                    number(h::ORIGINAL_OFFSET),
                    number(h::ATTEMPT),
                    text(&headers, h::ERROR_CLASS),
                    text(&headers, h::ERROR_MESSAGE),
                )
            } else if text(&headers, "kafka_dlt-original-topic").is_some() {
                (
                    Convention::SpringKafka,
                    text(&headers, "kafka_dlt-original-topic"),
                    raw(&headers, "kafka_dlt-original-partition").and_then(be_int),
                    raw(&headers, "kafka_dlt-original-offset").and_then(be_int),
                    None,
                    text(&headers, "kafka_dlt-exception-fqcn"),
                    text(&headers, "kafka_dlt-exception-message"),
                )
            } else if text(&headers, "__connect.errors.topic").is_some() {
                (
                    Convention::KafkaConnect,
                    text(&headers, "__connect.errors.topic"),
                    number("__connect.errors.partition"),
                    number("__connect.errors.offset"),
                    None,
                    text(&headers, "__connect.errors.exception.class.name"),
                    text(&headers, "__connect.errors.exception.message"),
                )
            } else {
                (Convention::Unknown, None, None, None, None, None, None)
            };
        let key = message.key().map(<[u8]>::to_vec);
        Self {
            dlq_topic: message.topic().to_owned(),
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
            dead_at_ms: message.timestamp().to_millis(),
            convention,
            original_topic,
            original_partition: original_partition.and_then(|p| i32::try_from(p).ok()),
            original_offset,
            attempt: attempt.and_then(|a| u32::try_from(a).ok()),
            error_class: class.unwrap_or_else(|| "unknown".into()),
            error_message: msg.unwrap_or_default(),
            replayed_from: text(&headers, "kafkit.replay.from"),
            trace_id: text(&headers, "traceparent")
                .and_then(|t| t.split('-').nth(1).map(str::to_owned))
                .filter(|id| id.len() == 32),
            key_text: key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            key,
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// A header's value as text, when it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        raw(&self.headers, name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Headers for sending it back: failure headers of every known
    /// convention removed; CloudEvents, trace context and the rest kept.
    pub fn replay_headers(&self) -> Vec<(std::borrow::Cow<'static, str>, Vec<u8>)> {
        self.headers
            .iter()
            .filter(|(name, _)| {
                !h::ALL.contains(&name.as_str())
                    && !name.starts_with("kafka_dlt-")
                    && !name.starts_with("__connect.errors.")
                    && !name.starts_with("kafkit.replay.")
            })
            .map(|(name, value)| (name.clone().into(), value.clone()))
            .collect()
    }
}

/// Count, first and last death (epoch ms) of one error class.
pub type ClassCount = (usize, Option<i64>, Option<i64>);

/// Count, first and last death per error class.
#[derive(Debug, Default)]
pub struct ClassSummary {
    pub total: usize,
    pub classes: BTreeMap<String, ClassCount>,
}

impl ClassSummary {
    pub fn add(&mut self, letter: &DeadLetter) {
        self.total += 1;
        let group = self
            .classes
            .entry(letter.error_class.clone())
            .or_insert((0, None, None));
        group.0 += 1;
        group.1 = group.1.min(letter.dead_at_ms).or(letter.dead_at_ms);
        group.2 = group.2.max(letter.dead_at_ms);
    }

    /// Classes, most frequent first.
    pub fn ranked(&self) -> Vec<(&String, &ClassCount)> {
        let mut ranked: Vec<_> = self.classes.iter().collect();
        ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        ranked
    }
}

/// Which dead letters a command looks at.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only this error class (e.g. unsupported-currency).
    #[arg(long = "class")]
    pub class: Option<String>,
    /// Only dead letters that came from this topic.
    #[arg(long = "from-topic")]
    pub original_topic: Option<String>,
    /// Only this record key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only those that died within this long ago, e.g. 15m, 2h, 1d.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only those that died at or after this time, e.g. 2026-11-26T10:00:00Z.
    #[arg(long)]
    pub after: Option<humantime::Timestamp>,
    /// Only those that died before this time, e.g. 2026-11-26T11:00:00Z.
    #[arg(long)]
    pub before: Option<humantime::Timestamp>,
}

fn epoch_ms(at: &humantime::Timestamp) -> i64 {
    std::time::SystemTime::from(*at)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter, now_ms: i64) -> bool {
        self.class.as_ref().is_none_or(|c| c == &letter.error_class)
            && self
                .original_topic
                .as_ref()
                .is_none_or(|t| Some(t) == letter.original_topic.as_ref())
            && self
                .key
                .as_ref()
                .is_none_or(|k| Some(k) == letter.key_text.as_ref())
            && self.since.is_none_or(|since| {
                let cutoff = now_ms - i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
                letter.dead_at_ms.is_some_and(|at| at >= cutoff)
            })
            && self
                .after
                .as_ref()
                .is_none_or(|after| letter.dead_at_ms.is_some_and(|at| at >= epoch_ms(after)))
            && self
                .before
                .as_ref()
                .is_none_or(|before| letter.dead_at_ms.is_some_and(|at| at < epoch_ms(before)))
    }

    /// A short stable description, part of the replay group name.
    pub fn fingerprint(&self) -> String {
        let mut fingerprint = format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.class, self.original_topic, self.key, self.since
        );
        // Appended only when used, so earlier replays keep their group.
        if self.after.is_some() || self.before.is_some() {
            fingerprint.push_str(&format!(
                "|{:?}|{:?}",
                self.after.as_ref().map(epoch_ms),
                self.before.as_ref().map(epoch_ms)
            ));
        }
        fingerprint
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A kafkit dead letter from `orders`, class unsupported-currency.
    pub(crate) fn died_at(ms: i64) -> DeadLetter {
        DeadLetter {
            dlq_topic: "orders.dlq".into(),
            dlq_partition: 0,
            dlq_offset: 0,
            dead_at_ms: Some(ms),
            convention: Convention::Kafkit,
            original_topic: Some("orders".into()),
            original_partition: Some(0),
            original_offset: Some(0),
            attempt: Some(1),
            error_class: "unsupported-currency".into(),
            error_message: String::new(),
            replayed_from: None,
            trace_id: None,
            key: None,
            key_text: Some("k".into()),
            value: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn time_range_filters_keep_after_inclusive_and_before_exclusive() {
        let at = |s: &str| s.parse::<humantime::Timestamp>().ok();
        let filter = Filter {
            after: at("2026-11-26T10:00:00Z"),
            before: at("2026-11-26T11:00:00Z"),
            ..Filter::default()
        };
        let ten = 1_795_687_200_000; // 2026-11-26T10:00:00Z
        let now = ten + 10 * 3_600_000;
        assert!(filter.matches(&died_at(ten), now));
        assert!(filter.matches(&died_at(ten + 3_599_999), now));
        assert!(!filter.matches(&died_at(ten + 3_600_000), now));
        assert!(!filter.matches(&died_at(ten - 1), now));
        let unset = Filter::default();
        assert_eq!(
            unset.fingerprint(),
            "None|None|None|None",
            "replays without a time range keep the group they always had"
        );
        assert_ne!(filter.fingerprint(), unset.fingerprint());
    }
}
