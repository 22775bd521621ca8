//! Which dead letters are dealt with, kept in Kafka so that every console
//! and `kafkit dlq inspect` see the same: a compacted topic `<dlq>.resolved`
//! keyed by a dead letter's coordinates (`dlqtopic/partition/offset`, as
//! `kafkit.replay.from` names them), whose value says how it was dealt with
//! and why. A tombstone opens it again. The dead letters themselves are
//! never changed or deleted.

use anyhow::Context;
use kafkit_messaging::{KafkaSettings, OutgoingRecord, Publisher, TopicSpec, ensure_topics};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::HashMap;
use std::time::Duration;

/// The state topic of `dlq`.
pub fn topic_of(dlq: &str) -> String {
    format!("{dlq}.resolved")
}

/// How a dead letter was dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fixed elsewhere; nothing to send back.
    Resolved,
    /// Not worth sending back.
    Discarded,
    /// Sent back to its topic.
    Replayed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resolved => "resolved",
            Self::Discarded => "discarded",
            Self::Replayed => "replayed",
        }
    }
}

/// One dead letter's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolution {
    pub status: Status,
    pub reason: String,
    pub at_ms: i64,
}

/// Creates `<dlq>.resolved` (compacted, one partition) when it is missing.
pub async fn ensure(kafka: &KafkaSettings, dlq: &str) -> anyhow::Result<()> {
    let mut spec = TopicSpec::new(topic_of(dlq), 1);
    spec.configs
        .push(("cleanup.policy".to_owned(), "compact".to_owned()));
    ensure_topics(kafka, &[spec])
        .await
        .with_context(|| format!("could not create {}", topic_of(dlq)))
}

/// Records `resolution` of the dead letter `id` (acknowledged by the broker).
pub async fn record(
    publisher: &Publisher,
    dlq: &str,
    id: &str,
    resolution: &Resolution,
) -> anyhow::Result<()> {
    let record = OutgoingRecord {
        topic: topic_of(dlq),
        partition: Some(0),
        key: Some(id.as_bytes().to_vec()),
        payload: Some(serde_json::to_vec(resolution)?),
        headers: Vec::new(),
    };
    publisher
        .publish(&record)
        .await
        .with_context(|| format!("could not record {id} as {}", resolution.status.as_str()))?;
    Ok(())
}

/// A dead letter sent back: where to, the state recorded for it, and
/// whether the state topic took it (else why not).
#[derive(Debug, Clone)]
pub struct SentBack {
    pub destination: String,
    pub state: Resolution,
    pub recorded: Result<(), String>,
}

/// Sends `record`, the way back of dead letter `id` of `dlq`, and records
/// it as replayed with `reason`; Err (nothing recorded) when the broker did
/// not take the record. What the console's replays and every edit share.
pub async fn send_back(
    publisher: &Publisher,
    dlq: &str,
    id: &str,
    record: &OutgoingRecord,
    reason: String,
) -> Result<SentBack, String> {
    publisher
        .publish(record)
        .await
        .map_err(|e| format!("not sent: {e}"))?;
    let state = Resolution {
        status: Status::Replayed,
        reason,
        at_ms: super::now_ms(),
    };
    let recorded = self::record(publisher, dlq, id, &state)
        .await
        .map_err(|e| format!("{e:#}"));
    Ok(SentBack {
        destination: record.topic.clone(),
        state,
        recorded,
    })
}

/// What one record of the state topic says: the dead letter's id and its
/// state (None: opened again, or a value this version cannot read).
pub fn parse(message: &impl Message) -> Option<(String, Option<Resolution>)> {
    let id = String::from_utf8(message.key()?.to_vec()).ok()?;
    let state = message
        .payload()
        .and_then(|value| serde_json::from_slice(value).ok());
    Some((id, state))
}

/// Every dead letter of `dlq` dealt with so far, read to the end of the
/// state topic (empty when it does not exist).
pub async fn read_all(
    kafka: &KafkaSettings,
    dlq: &str,
) -> anyhow::Result<HashMap<String, Resolution>> {
    let topic = topic_of(dlq);
    let consumer: StreamConsumer =
        crate::reader::config(kafka, &crate::reader::throwaway_group("resolved"))
            .set("auto.offset.reset", "earliest")
            .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    let mut states = HashMap::new();
    if !exists {
        return Ok(states);
    }
    consumer.subscribe(&[topic.as_str()])?;
    // Read until quiet: the topic is small and written rarely.
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await
    {
        if let Some((id, state)) = parse(&message) {
            match state {
                Some(state) => states.insert(id, state),
                None => states.remove(&id),
            };
        }
    }
    Ok(states)
}
