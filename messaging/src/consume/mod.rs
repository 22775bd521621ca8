//! The consume engine: decode, handle, publish, settle, store the offset.
//!
//! - [`handler`]: what a team writes (`Handler`, `Input`, `Outbox`).
//! - `source`: the consumer's poll thread and its rebalance callback.
//! - `engine`: the loop that owns the consumer ([`ConsumeLoop`]).
//! - `lane`: one partition's records, pipelined.
//! - `window`: the in-flight window and the settled prefix.
//! - `schedule`: the ordering modes.
//! - `settle`: what happens to one record (handled, retried, dead-lettered, held).
//! - [`metrics`]: instruments and the lag reporter.
//!
//! Guarantees: an offset is stored only once every record before it is
//! settled (handled and its outputs acknowledged, or its retry/DLQ copy
//! acknowledged); within a partition, records run in offset order
//! (`partition` ordering, the default) or in offset order per key (`key`);
//! a record that cannot be settled now (an outage, a retry not due) holds
//! its partition — paused and rewound — and never blocks the others.

mod engine;
pub mod handler;
mod lane;
pub mod metrics;
mod record;
mod schedule;
mod settle;
mod source;
mod window;

pub use engine::{ConsumeLoop, DEFAULT_FETCH_WAIT_MS};
pub use handler::{Handler, Input, Outbox};
pub use metrics::ConsumeMetrics;
pub use schedule::Ordering;
pub use window::WindowLimits;

use crate::routing::RetryPolicy;
use std::time::Duration;

/// A topic and a partition.
pub(crate) type Partition = (String, i32);

/// Which side of the retry flow a consumer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reads the main topic; first attempts.
    Main,
    /// Reads retry tiers; honours `kafkit.retry.not-before`.
    Retry,
}

/// How records of a partition flow through the handler and the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Which records of a partition may overtake each other; `partition` by default.
    pub ordering: Ordering,
    /// Handler calls at once per partition with `key` or `unordered`
    /// ordering (always 1 with `partition`).
    pub max_concurrency: usize,
    /// Records per partition taken and not yet settled (running, or
    /// awaiting the broker's acknowledgements).
    pub max_in_flight_records: usize,
    /// Key and value bytes of those records.
    pub max_in_flight_bytes: usize,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            ordering: Ordering::Partition,
            max_concurrency: 64,
            max_in_flight_records: 1_000,
            max_in_flight_bytes: 8 << 20,
        }
    }
}

impl Pipeline {
    /// The in-flight bounds per partition, each at least 1.
    pub fn limits(&self) -> WindowLimits {
        WindowLimits {
            records: self.max_in_flight_records.max(1),
            bytes: self.max_in_flight_bytes.max(1),
        }
    }
}

/// The pipeline's flags and environment, for any service that consumes.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// `partition` (offset order per partition), `key` (offset order per
    /// key, keys concurrently) or `unordered`.
    #[arg(
        long,
        env = "CONSUMER_ORDERING",
        value_enum,
        default_value = "partition"
    )]
    pub ordering: Ordering,
    /// Handler calls at once per partition with `key` or `unordered` ordering.
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = Pipeline::default().max_concurrency)]
    pub max_concurrency: usize,
    /// Records per partition awaiting their handler or the broker's acknowledgements.
    #[arg(long, env = "MAX_IN_FLIGHT_RECORDS", default_value_t = Pipeline::default().max_in_flight_records)]
    pub max_in_flight_records: usize,
    /// Bytes (keys and values) of those records per partition.
    #[arg(long, env = "MAX_IN_FLIGHT_BYTES", default_value_t = Pipeline::default().max_in_flight_bytes)]
    pub max_in_flight_bytes: usize,
}

impl From<&PipelineArgs> for Pipeline {
    fn from(args: &PipelineArgs) -> Self {
        Self {
            ordering: args.ordering,
            max_concurrency: args.max_concurrency,
            max_in_flight_records: args.max_in_flight_records,
            max_in_flight_bytes: args.max_in_flight_bytes,
        }
    }
}

/// What one consume loop needs.
#[derive(Debug, Clone)]
pub struct ConsumeSettings {
    /// The consumer group (`group.id`).
    pub group_id: String,
    /// Static membership (`group.instance.id`): a restarted member with the
    /// same id gets its partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`, unless the pass-through properties set it.
    pub session_timeout: Duration,
    /// The topics to subscribe to: the main topic, or the retry tiers.
    pub topics: Vec<String>,
    /// Which side of the retry flow this loop is.
    pub stage: Stage,
    /// Where failed records go: retry tiers, attempt limit, dead-letter topic.
    pub policy: RetryPolicy,
    /// Ordering, concurrency and in-flight bounds per partition.
    pub pipeline: Pipeline,
    /// First wait after an outage; doubles up to `outage_backoff_max`.
    pub outage_backoff: Duration,
    /// The longest wait between tries during an outage.
    pub outage_backoff_max: Duration,
    /// How often `consumer_lag` is refreshed.
    pub lag_interval: Duration,
    /// On a revoke or at shutdown, the longest wait for in-flight records
    /// to settle before their partitions are let go.
    pub drain_timeout: Duration,
    /// `fetch.wait.max.ms`, unless the pass-through properties set it: how
    /// long the broker may hold a fetch that found nothing new.
    pub fetch_wait: Duration,
}

/// Why a consume loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// librdkafka could not create the consumer (an invalid property, say).
    #[error("could not create the consumer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    /// The consumer could not subscribe to its topics.
    #[error("could not subscribe to {topics:?}: {source}")]
    Subscribe {
        /// The topics it was given.
        topics: Vec<String>,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}
