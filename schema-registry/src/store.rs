//! Where the registry's changes are kept.
//!
//! As in Confluent Schema Registry, the durable state is a compacted,
//! single-partition Kafka topic (`_schemas` by default). On start the topic is
//! read from the beginning to its end and folded into memory; every change is
//! written there and acknowledged by the broker before it is applied or
//! answered.
//!
//! One registry instance writes a topic at a time (no leader election). Each
//! instance claims the topic when it starts (a `WRITER` record); before each
//! write it reads what others wrote since it last looked, so a write whose
//! acknowledgement was lost is read back before another id is planned, and
//! an instance that finds a later claim by another one is fenced: it refuses
//! every write from then on, and says why.

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
    #[error(
        "this registry instance is fenced: {0} claimed the topic after it; it answers reads only. Run one registry per topic, or stop the other"
    )]
    Fenced(String),
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

    /// Ready when the broker answers a metadata request for the topic and
    /// this instance is not fenced.
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory => Ok(()),
            Self::Kafka(kafka) => kafka.check_ready().await,
        }
    }

    /// What was written to the topic since this instance last looked (its
    /// own lost acknowledgements included), to apply before planning a
    /// change; an error once another instance claimed the topic.
    pub async fn catch_up(&self) -> Result<Vec<LogRecord>, StoreError> {
        match self {
            Self::Memory => Ok(Vec::new()),
            Self::Kafka(kafka) => kafka.catch_up().await,
        }
    }
}

/// The `WRITER` record an instance writes when it starts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claim {
    instance: String,
    host: String,
    pid: u32,
    at_ms: i64,
}

const CLAIM_KEY: &[u8] = br#"{"keytype":"WRITER","magic":0}"#;

/// A consumer following the topic after the replay.
struct Tail {
    consumer: BaseConsumer,
    /// Offset of this instance's own claim.
    claimed_at: i64,
    /// Set once a later claim by another instance was read.
    fenced_by: Option<String>,
}

pub struct KafkaStore {
    settings: KafkaStoreSettings,
    producer: FutureProducer,
    instance: String,
    tail: std::sync::Arc<std::sync::Mutex<Tail>>,
}

impl std::fmt::Debug for KafkaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStore")
            .field("topic", &self.settings.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaStore {
    /// Creates the topic if needed, reads it to the end, and claims it.
    pub async fn open(settings: KafkaStoreSettings) -> Result<(Self, Vec<LogRecord>), StoreError> {
        ensure_topic(&settings).await?;
        let replay_settings = settings.clone();
        let (records, next) =
            tokio::task::spawn_blocking(move || replay(&replay_settings)).await??;
        let producer: FutureProducer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                settings.timeout.as_millis().to_string(),
            )
            .create()
            .map_err(StoreError::Unreachable)?;
        let instance = uuid::Uuid::new_v4().to_string();
        let claim = Claim {
            instance: instance.clone(),
            host: std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
            pid: std::process::id(),
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or_default(),
        };
        let value = serde_json::to_vec(&claim).unwrap_or_default();
        let claimed_at = producer
            .send(
                FutureRecord::to(&settings.topic)
                    .partition(0)
                    .key(CLAIM_KEY)
                    .payload(&value),
                Timeout::After(settings.timeout),
            )
            .await
            .map_err(|(source, _)| StoreError::Write {
                topic: settings.topic.clone(),
                source,
            })?
            .offset;
        let consumer: BaseConsumer = settings
            .client_config()
            .set("group.id", format!("schema-registry-tail-{instance}"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(StoreError::Unreachable)?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&settings.topic, 0, Offset::Offset(next))
            .and_then(|()| consumer.assign(&assignment))
            .map_err(StoreError::Unreachable)?;
        tracing::info!(
            topic = settings.topic,
            instance,
            offset = claimed_at,
            "claimed the schemas topic"
        );
        let tail = Tail {
            consumer,
            claimed_at,
            fenced_by: None,
        };
        Ok((
            Self {
                settings,
                producer,
                instance,
                tail: std::sync::Arc::new(std::sync::Mutex::new(tail)),
            },
            records,
        ))
    }

    async fn catch_up(&self) -> Result<Vec<LogRecord>, StoreError> {
        let tail = std::sync::Arc::clone(&self.tail);
        let (topic, instance) = (self.settings.topic.clone(), self.instance.clone());
        let timeout = self.settings.timeout;
        tokio::task::spawn_blocking(move || {
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(by) = &tail.fenced_by {
                return Err(StoreError::Fenced(by.clone()));
            }
            let (_, high) = tail
                .consumer
                .fetch_watermarks(&topic, 0, Timeout::After(Duration::from_secs(5)))
                .map_err(StoreError::Unreachable)?;
            let deadline = Instant::now() + timeout;
            let mut records = Vec::new();
            let mut position = tail
                .consumer
                .position()
                .ok()
                .and_then(|p| p.elements().first().map(|e| e.offset()))
                .and_then(|o| o.to_raw())
                .unwrap_or(0);
            // To the high watermark, then on until quiet (Tansu undercounts it).
            loop {
                let wait = if position >= high { 100 } else { 500 };
                match tail.consumer.poll(Duration::from_millis(wait)) {
                    None if position >= high => break,
                    None if Instant::now() > deadline => {
                        return Err(StoreError::Replay {
                            topic,
                            reason: format!("timed out before reaching offset {high}"),
                        });
                    }
                    None => {}
                    Some(Err(e)) => return Err(StoreError::Unreachable(e)),
                    Some(Ok(message)) => {
                        position = message.offset() + 1;
                        let key = message.key().unwrap_or_default();
                        if key == CLAIM_KEY {
                            let claim: Option<Claim> = message
                                .payload()
                                .and_then(|v| serde_json::from_slice(v).ok());
                            if let Some(claim) = claim
                                && claim.instance != instance
                                && message.offset() > tail.claimed_at
                            {
                                let by = format!(
                                    "instance {} on {} (pid {}) at offset {}",
                                    claim.instance,
                                    claim.host,
                                    claim.pid,
                                    message.offset()
                                );
                                tracing::error!(
                                    topic,
                                    by,
                                    "fenced: another registry instance claimed the schemas topic"
                                );
                                tail.fenced_by = Some(by.clone());
                                return Err(StoreError::Fenced(by));
                            }
                            continue;
                        }
                        records.extend(read_record(&message));
                    }
                }
            }
            Ok(records)
        })
        .await?
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
        let fenced = self
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fenced_by
            .clone();
        if let Some(by) = fenced {
            return Err(StoreError::Fenced(by));
        }
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

/// What a `_schemas` record means to the state: nothing for key types this
/// registry does not use; for an unreadable one, only the id it names (so
/// that id is never handed out again).
fn read_record(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<LogRecord> {
    let key = message.key().unwrap_or_default();
    match LogRecord::from_kafka(key, message.payload()) {
        Ok(record) => record,
        Err(e) => {
            tracing::warn!(offset = message.offset(), error = %e, "skipped an unreadable _schemas record");
            LogRecord::id_in_unreadable(message.payload())
        }
    }
}

/// Reads partition 0 from the start to the high watermark seen at start;
/// returns the records and the offset after the last one read.
/// Blocking: runs on the blocking pool.
fn replay(settings: &KafkaStoreSettings) -> Result<(Vec<LogRecord>, i64), StoreError> {
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
        return Ok((records, high));
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
    let mut next = low;
    loop {
        if Instant::now() > deadline {
            return Err(failed(format!("timed out before reaching offset {high}")));
        }
        match consumer.poll(Duration::from_millis(if reached_high { 300 } else { 500 })) {
            None if reached_high => return Ok((records, next)),
            None => continue,
            Some(Err(e)) => return Err(failed(e.to_string())),
            Some(Ok(message)) => {
                next = message.offset() + 1;
                records.extend(read_record(&message));
                reached_high |= message.offset() >= high - 1;
            }
        }
    }
}
