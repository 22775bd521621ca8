//! Subject naming: which registry subject a topic's schema lives under.
//!
//! The three strategies are Confluent's, named the same way so that settings
//! carry over from Java clients.

use std::fmt;
use std::str::FromStr;

/// How a record's schema subject is named.
///
/// Parses from kafkit's names (`topic-name`, `record-name`,
/// `topic-record-name`, as in `SUBJECT_NAME_STRATEGY`) or Confluent's class
/// names, and prints kafkit's:
///
/// ```
/// use kafkit_events::SubjectStrategy;
///
/// let event = "io.kafkit.orders.OrderConfirmed";
///
/// let strategy: SubjectStrategy = "topic-name".parse()?;
/// assert_eq!(strategy, SubjectStrategy::TopicName);
/// assert_eq!(strategy.subject("order-confirmations", event, false), "order-confirmations-value");
/// assert_eq!(strategy.subject("order-confirmations", event, true), "order-confirmations-key");
///
/// let strategy: SubjectStrategy = "record-name".parse()?;
/// assert_eq!(strategy.subject("order-confirmations", event, false), event);
///
/// let strategy: SubjectStrategy = "topic-record-name".parse()?;
/// assert_eq!(
///     strategy.subject("order-confirmations", event, false),
///     "order-confirmations-io.kafkit.orders.OrderConfirmed",
/// );
///
/// let confluent: SubjectStrategy =
///     "io.confluent.kafka.serializers.subject.RecordNameStrategy".parse()?;
/// assert_eq!(confluent.to_string(), "record-name");
/// assert!("by-color".parse::<SubjectStrategy>().is_err());
/// # Ok::<(), kafkit_events::subject::UnknownStrategy>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `<topic>-value` / `<topic>-key`: one schema lineage per topic (the default).
    #[default]
    TopicName,
    /// `<record full name>`: one lineage per event type, across topics.
    RecordName,
    /// `<topic>-<record full name>`: several event types on one topic.
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject for a record of `record_full_name` on `topic`.
    pub fn subject(self, topic: &str, record_full_name: &str, is_key: bool) -> String {
        match self {
            Self::TopicName => format!("{topic}-{}", if is_key { "key" } else { "value" }),
            Self::RecordName => record_full_name.to_owned(),
            Self::TopicRecordName => format!("{topic}-{record_full_name}"),
        }
    }
}

impl fmt::Display for SubjectStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TopicName => "topic-name",
            Self::RecordName => "record-name",
            Self::TopicRecordName => "topic-record-name",
        })
    }
}

/// The strategy name was none of the three.
#[derive(Debug, thiserror::Error)]
#[error("unknown subject strategy {0:?}: expected topic-name, record-name or topic-record-name")]
pub struct UnknownStrategy(String);

impl FromStr for SubjectStrategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Accept Confluent's class names too, so existing settings keep working.
        match s
            .rsplit('.')
            .next()
            .unwrap_or(s)
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "topicname" | "topicnamestrategy" => Ok(Self::TopicName),
            "recordname" | "recordnamestrategy" => Ok(Self::RecordName),
            "topicrecordname" | "topicrecordnamestrategy" => Ok(Self::TopicRecordName),
            _ => Err(UnknownStrategy(s.to_owned())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_confluent_naming() {
        let name = "io.kafkit.orders.OrderPlaced";
        assert_eq!(
            SubjectStrategy::TopicName.subject("orders", name, false),
            "orders-value"
        );
        assert_eq!(
            SubjectStrategy::TopicName.subject("orders", name, true),
            "orders-key"
        );
        assert_eq!(
            SubjectStrategy::RecordName.subject("orders", name, false),
            name
        );
        assert_eq!(
            SubjectStrategy::TopicRecordName.subject("orders", name, false),
            "orders-io.kafkit.orders.OrderPlaced"
        );
    }

    #[test]
    fn strategy_names_parse_in_kafkit_and_confluent_spelling() {
        assert_eq!(
            "topic-name".parse::<SubjectStrategy>().unwrap(),
            SubjectStrategy::TopicName
        );
        assert_eq!(
            "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"
                .parse::<SubjectStrategy>()
                .unwrap(),
            SubjectStrategy::TopicRecordName
        );
        let err = "by-color".parse::<SubjectStrategy>().unwrap_err();
        assert!(err.to_string().contains("by-color"));
    }
}
