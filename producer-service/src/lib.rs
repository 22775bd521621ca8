//! producer-service: an HTTP API that turns requests into acknowledged Avro events.
//!
//! `POST /v1/orders` validates an order at the edge, publishes an
//! `OrderPlaced` event (Confluent wire format, CloudEvents headers) keyed by
//! the new order id, and answers 202 only once the broker acknowledged it.
//! Everything but the orders API is the kafkit runtime's (`IngestService`).

pub mod domain;
pub mod openapi;
pub mod routes;
pub mod settings;

use kafkit_runtime::IngestService;
use shared_events::OrderPlaced;

pub use settings::Settings;

/// The whole service: the orders API publishing `OrderPlaced` to the orders topic.
pub fn service(settings: Settings) -> IngestService {
    IngestService::new(
        "producer-service",
        settings.runtime.clone(),
        settings.listen,
    )
    .publishes::<OrderPlaced>(settings.topic.clone(), settings.topic_partitions)
    .routes(move |parts| routes::router(parts, settings))
}
