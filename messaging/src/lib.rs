//! Kafka plumbing shared by every kafkit service.
//!
//! Typed settings that become an `rdkafka::ClientConfig` (extra librdkafka
//! properties pass through untouched), a publisher that answers only with the
//! broker's acknowledgement and sorts failures into "try again later" and
//! "will never work", publishing of typed events with their CloudEvents
//! headers, and topic administration.

#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod consume;
pub mod failure;
pub mod headers;
pub mod publisher;
pub mod routing;
pub mod shutdown;

pub use admin::{AdminError, TopicSpec, ensure_topics};
pub use config::{
    Compression, KafkaArgs, KafkaSettings, ProducerSettings, RegistryConnection,
    SchemaRegistryArgs, Secret,
};
pub use consume::{
    ConsumeLoop, ConsumeMetrics, ConsumeSettings, DEFAULT_FETCH_WAIT_MS, Handler, Input, Ordering,
    Outbox, Pipeline, PipelineArgs, Stage,
};
pub use failure::{Failure, FailureKind};
pub use publisher::{
    BrokerState, BrokerWatch, Delivered, EventPublisher, OutgoingRecord, PendingDelivery,
    PublishError, PublishEventError, Publisher, PublisherContext,
};
pub use routing::{RetryPolicy, Route};
pub use shutdown::shutdown_signal;
