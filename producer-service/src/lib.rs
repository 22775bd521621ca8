//! producer-service: an HTTP API that turns requests into acknowledged Avro events.
//!
//! `POST /v1/orders` validates an order at the edge, publishes an
//! `OrderPlaced` event (Confluent wire format, CloudEvents headers) keyed by
//! the new order id, and answers 202 only once the broker acknowledged it.

pub mod domain;
pub mod routes;
pub mod settings;
pub mod startup;

pub use settings::Settings;
pub use startup::Application;
