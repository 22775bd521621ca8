//! Settings from flags and environment, with defaults that work on one laptop.

use kafkit_events::CodecSettings;
use kafkit_messaging::{
    Compression, KafkaArgs, KafkaSettings, ProducerSettings, SchemaRegistryArgs,
};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "producer-service",
    version,
    about = "HTTP API that turns orders into acknowledged Avro events"
)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "PRODUCER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Topic that OrderPlaced events go to.
    #[arg(long, env = "ORDERS_TOPIC", default_value = "orders")]
    pub topic: String,
    /// Create the topic at start-up when it is missing (Tansu and many
    /// clusters do not auto-create topics).
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// Partitions used when creating the topic.
    #[arg(long, env = "ORDERS_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// `none`, `gzip`, `snappy` or `lz4`.
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "none")]
    pub compression: Compression,
    /// How long the producer waits to batch records (`linger.ms`). Every
    /// request waits for its acknowledgement, so this adds to its latency.
    #[arg(long, env = "PRODUCE_LINGER_MS", default_value_t = 1)]
    pub linger_ms: u64,
    /// Longest wait for the broker's acknowledgement before answering 503.
    #[arg(long, env = "PRODUCE_TIMEOUT_MS", default_value_t = 5_000)]
    pub produce_timeout_ms: u64,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Most orders in one batch request.
    #[arg(long, env = "MAX_BATCH_ORDERS", default_value_t = 100)]
    pub max_batch_orders: usize,
    /// How long an Idempotency-Key answer is remembered.
    #[arg(long, env = "IDEMPOTENCY_WINDOW_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_window_secs: u64,
    /// Memory for remembered Idempotency-Key answers; the oldest go first
    /// past it (counted by `kafkit_idempotency_evicted_total`). 64 MiB is a
    /// quarter of a 256 MiB pod: about 150,000 single-order answers.
    #[arg(long, env = "IDEMPOTENCY_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub idempotency_max_bytes: usize,
    /// On shutdown, longest wait for in-flight records to be acknowledged.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// CloudEvents `source` of the events this service publishes.
    #[arg(long, env = "EVENT_SOURCE", default_value = "/producer-service")]
    pub event_source: String,
}

impl Settings {
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings::from(self.kafka.clone())
    }

    pub fn producer_settings(&self) -> ProducerSettings {
        ProducerSettings {
            compression: self.compression,
            delivery_timeout: self.produce_timeout(),
            linger: Duration::from_millis(self.linger_ms),
            ..ProducerSettings::default()
        }
    }

    pub fn codec_settings(&self) -> CodecSettings {
        self.registry.codec_settings()
    }

    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }

    /// How long a request waits for its event's fate before answering
    /// `outcome-unknown`: the produce timeout and a little for the rest.
    pub fn answer_deadline(&self) -> Duration {
        self.produce_timeout() + Duration::from_millis(400)
    }
}
