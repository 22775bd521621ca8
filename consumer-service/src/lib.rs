//! consumer-service: the order handler on `orders`, on the kafkit runtime.
//! Failures go through the retry topics and the retry consumer to the
//! dead-letter topic; everything but the handler is the runtime's.

pub mod faults;
pub mod handler;
pub mod settings;

use handler::OrderHandler;
use kafkit_runtime::ConsumerService;
use shared_events::OrderPlaced;

pub use settings::Settings;

/// The whole service: `OrderPlaced` from the orders topic through the order
/// handler, `OrderConfirmed` to the confirmations topic.
pub fn service(settings: Settings) -> ConsumerService<OrderPlaced, OrderHandler> {
    let handler = settings.handler();
    ConsumerService::new("consumer-service", settings.runtime)
        .consume(settings.topic, handler)
        .publishes_to(settings.output_topic)
}
