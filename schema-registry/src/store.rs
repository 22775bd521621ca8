//! Where the registry's changes are kept.
//!
//! As in Confluent Schema Registry, the durable state is a compacted,
//! single-partition Kafka topic (`_schemas` by default). On start the topic is
//! read from the beginning to its end and folded into memory; every change is
//! written there and acknowledged by the broker before it is applied or
//! answered. One registry instance writes a topic at a time (no leader
//! election); several instances need several topics.

use crate::records::LogRecord;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// How to reach the `_schemas` topic.
#[derive(Debug, Clone)]
pub struct KafkaStoreSettings {
    pub bootstrap_servers: String,
    pub topic: String,
    /// Replication factor when the topic has to be created.
    pub replication_factor: i32,
    /// Bound on start-up replay and on each write.
    pub timeout: Duration,
    /// Extra librdkafka properties (TLS, SASL, ...), passed through untouched.
    pub client_properties: Vec<(String, String)>,
}

impl KafkaStoreSettings {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: "_schemas".into(),
            replication_factor: 1,
            timeout: Duration::from_secs(30),
            client_properties: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.client_properties {
            config.set(key, value);
        }
        config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not create the {topic} topic: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("could not read the {topic} topic: {reason}")]
    Replay { topic: String, reason: String },
    #[error("the broker did not acknowledge the write to {topic}: {source}")]
    Write {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the broker is not reachable: {0}")]
    Unreachable(#[source] rdkafka::error::KafkaError),
    #[error("replay task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The durable log of registry changes: in memory only, or a Kafka topic.
#[derive(Debug)]
pub enum Store {
    /// Nothing survives a restart. For quick local runs.
    Memory,
    Kafka(KafkaStore),
}

impl Store {
    /// Writes records in order; returns once the broker acknowledged all of them.
    pub async fn append(&self, records: &[LogRecord]) -> Result<(), StoreError> {
        match self {
            Self::Memory => Ok(()),
            Self::Kafka(kafka) => kafka.append(records).await,
        }
    }

    /// Ready when the broker answers a metadata request for the topic.
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory => Ok(()),
            Self::Kafka(kafka) => kafka.check_ready().await,
        }
    }
}

pub struct KafkaStore {
    settings: KafkaStoreSettings,
    producer: FutureProducer,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("topic", &self.settings.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaStore {
    /// Creates the topic if needed and reads it to the end.
    pub async fn open(settings: KafkaStoreSettings) -> Result<(Self, Vec<LogRecord>), StoreError> {
        ensure_topic(&settings).await?;
        let replay_settings = settings.clone();
        let records = tokio::task::spawn_blocking(move || replay(&replay_settings)).await??;
        let producer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                settings.timeout.as_millis().to_string(),
            )
            .create()
            .map_err(StoreError::Unreachable)?;
        Ok((Self { settings, producer }, records))
    }

    async fn append(&self, records: &[LogRecord]) -> Result<(), StoreError> {
        for record in records {
            let (key, value) = record.to_kafka();
            let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.settings.topic)
                .partition(0)
                .key(&key);
            if let Some(value) = &value {
                message = message.payload(value);
            }
            self.producer
                .send(message, Timeout::After(self.settings.timeout))
                .await
                .map_err(|(source, _)| StoreError::Write {
                    topic: self.settings.topic.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let producer = self.producer.clone();
        let topic = self.settings.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(2)))
                .map(|_| ())
                .map_err(StoreError::Unreachable)
        })
        .await?
    }
}

async fn ensure_topic(settings: &KafkaStoreSettings) -> Result<(), StoreError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(StoreError::Unreachable)?;
    let topic = NewTopic::new(
        &settings.topic,
        1,
        TopicReplication::Fixed(settings.replication_factor),
    )
    .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(|source| StoreError::CreateTopic {
            topic: settings.topic.clone(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(StoreError::CreateTopic {
                    topic: settings.topic.clone(),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

/// Reads partition 0 from the start to the high watermark seen at start.
/// Blocking: runs on the blocking pool.
fn replay(settings: &KafkaStoreSettings) -> Result<Vec<LogRecord>, StoreError> {
    let failed = |reason: String| StoreError::Replay {
        topic: settings.topic.clone(),
        reason,
    };
    let consumer: BaseConsumer = settings
        .client_config()
        .set(
            "group.id",
            format!("schema-registry-replay-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(StoreError::Unreachable)?;
    let deadline = Instant::now() + settings.timeout;
    // A topic created a moment ago may not be in the broker's metadata yet.
    let (low, high) = loop {
        match consumer.fetch_watermarks(&settings.topic, 0, Timeout::After(Duration::from_secs(2)))
        {
            Ok(marks) => break marks,
            Err(e) if Instant::now() > deadline => {
                return Err(failed(format!("no watermarks: {e}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut records = Vec::new();
    if high <= low {
        return Ok(records);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&settings.topic, 0, Offset::Beginning)
        .map_err(|e| failed(e.to_string()))?;
    consumer
        .assign(&assignment)
        .map_err(|e| failed(e.to_string()))?;
    // Read to the high watermark, then on until nothing more comes: Tansu
    // 0.6.0 reports a high watermark that undercounts multi-record batches.
    let mut reached_high = false;
    loop {
        if Instant::now() > deadline {
            return Err(failed(format!("timed out before reaching offset {high}")));
        }
        match consumer.poll(Duration::from_millis(if reached_high { 300 } else { 500 })) {
            None if reached_high => return Ok(records),
            None => continue,
            Some(Err(e)) => return Err(failed(e.to_string())),
            Some(Ok(message)) => {
                let key = message.key().unwrap_or_default();
                match LogRecord::from_kafka(key, message.payload()) {
                    Ok(Some(record)) => records.push(record),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(offset = message.offset(), error = %e, "skipped an unreadable _schemas record");
                        // Its id, if it names one, is never handed out again.
                        records.extend(LogRecord::id_in_unreadable(message.payload()));
                    }
                }
                reached_high |= message.offset() >= high - 1;
            }
        }
    }
}
