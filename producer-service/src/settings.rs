//! Settings from flags and environment, with defaults that work on one laptop.

use kafkit_runtime::IngestArgs;
use std::net::SocketAddr;

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
    /// Partitions used when creating the topic.
    #[arg(long, env = "ORDERS_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,
    /// Most orders in one batch request.
    #[arg(long, env = "MAX_BATCH_ORDERS", default_value_t = 100)]
    pub max_batch_orders: usize,
    /// CloudEvents `source` of the events this service publishes.
    #[arg(long, env = "EVENT_SOURCE", default_value = "/producer-service")]
    pub event_source: String,
    /// Kafka, registry, producer, bodies, idempotency, shutdown: the runtime's settings.
    #[command(flatten)]
    pub runtime: IngestArgs,
}
