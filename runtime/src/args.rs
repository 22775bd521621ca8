//! What every consumer service can be told by flags and environment. A
//! service flattens [`ConsumerArgs`] into its own `clap` settings and adds
//! its topics and business settings beside it.

use kafkit_messaging::{KafkaArgs, KafkaSettings, PipelineArgs, RetryPolicy, SchemaRegistryArgs};
use std::net::SocketAddr;
use std::time::Duration;

/// Which consumers a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The main consumer on the main topics.
    Main,
    /// The retry consumer on the retry tiers.
    Retry,
    /// Both (the default).
    All,
}

/// Settings shared by every consumer service built on the runtime.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Health, readiness and metrics listener; port 0 picks a free port.
    #[arg(long, env = "CONSUMER_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// Which consumers this process runs.
    #[arg(long, env = "CONSUMER_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Consumer group of the main consumer; the retry consumer uses
    /// `<group>-retry`. Default: the service's name.
    #[arg(long, env = "CONSUMER_GROUP")]
    pub group: Option<String>,
    /// Static group membership: this member's `group.instance.id` (each
    /// consumer adds `-main` or `-retry`). A member restarted with the same
    /// id gets its partitions back at once, without a rebalance. Default:
    /// the host name and the ops port, stable across restarts on one host;
    /// in Kubernetes, the pod name.
    #[arg(long, env = "KAFKA_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    /// `false`: join as a dynamic member (no `group.instance.id`): a
    /// stopped member's partitions move at once, a restarted one rebalances
    /// the group. Tansu holds every static join and sync about 3 s.
    #[arg(long, env = "KAFKA_STATIC_MEMBERSHIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub static_membership: bool,
    /// How long the group waits for a member that stopped answering before
    /// its partitions go to the others (`session.timeout.ms`; Kafka's own
    /// default). A static member restarted within it gets them back at once.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 45_000)]
    pub session_timeout_ms: u64,
    /// Delay of each retry tier, in milliseconds, comma separated.
    #[arg(
        long,
        env = "RETRY_DELAYS_MS",
        value_delimiter = ',',
        default_value = "1000,10000,60000"
    )]
    pub retry_delays_ms: Vec<u64>,
    /// Handler executions before a transient failure is dead-lettered (first try included).
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = 4)]
    pub max_attempts: u32,
    /// Suffix of the retry tier topics, before the tier number (`orders.retry.1`).
    #[arg(long, env = "RETRY_TOPIC_SUFFIX", default_value = ".retry.")]
    pub retry_suffix: String,
    /// Suffix of the dead-letter topic (`orders.dlq`).
    #[arg(long, env = "DLQ_TOPIC_SUFFIX", default_value = ".dlq")]
    pub dlq_suffix: String,
    /// Create the main, retry, dead-letter and output topics at start-up when missing.
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// Partitions of each topic created at start-up.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// First wait after an outage; doubles up to the max.
    #[arg(long, env = "OUTAGE_BACKOFF_MS", default_value_t = 500)]
    pub outage_backoff_ms: u64,
    /// Longest wait between tries during an outage.
    #[arg(long, env = "OUTAGE_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub outage_backoff_max_ms: u64,
    /// How long the broker may hold a fetch that found nothing new
    /// (`fetch.wait.max.ms`). The default suits the local Tansu broker,
    /// which holds every such fetch this long (each hop waits it); with
    /// Apache Kafka, which answers as soon as data arrives, 500 (its own
    /// default) costs no latency and makes fewer idle requests.
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = kafkit_messaging::DEFAULT_FETCH_WAIT_MS)]
    pub fetch_wait_max_ms: u64,
    /// How often the `consumer_lag` metric is refreshed.
    #[arg(long, env = "LAG_INTERVAL_MS", default_value_t = 5_000)]
    pub lag_interval_ms: u64,
    /// Ordering, concurrency and in-flight limits of the consume pipeline.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Schema registry connection and subject naming.
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    /// Kafka connection, security and pass-through properties.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// On shutdown or a revoke, longest wait for in-flight records to settle.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl ConsumerArgs {
    /// The Kafka client settings these flags give.
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings::from(self.kafka.clone())
    }

    /// The retry tiers, attempt limit and topic suffixes these flags give.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            delays: self
                .retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            max_attempts: self.max_attempts,
            retry_suffix: self.retry_suffix.clone(),
            dlq_suffix: self.dlq_suffix.clone(),
        }
    }

    /// [`shutdown_grace_secs`](Self::shutdown_grace_secs) as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}
