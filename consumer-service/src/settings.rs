//! Settings from flags and environment, with defaults that work on one laptop.

use crate::faults::Faults;
use crate::handler::OrderHandler;
use kafkit_runtime::ConsumerArgs;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "consumer-service",
    version,
    about = "Runs kafkit handlers with retry topics and dead-letter topics"
)]
pub struct Settings {
    /// Main topic of OrderPlaced events.
    #[arg(long, env = "ORDERS_TOPIC", default_value = "orders")]
    pub topic: String,
    /// Where OrderConfirmed events go.
    #[arg(
        long,
        env = "CONFIRMATIONS_TOPIC",
        default_value = "order-confirmations"
    )]
    pub output_topic: String,
    /// Currencies the business accepts; others are dead-lettered.
    #[arg(
        long,
        env = "ALLOWED_CURRENCIES",
        value_delimiter = ',',
        default_value = "EUR,USD,GBP"
    )]
    pub allowed_currencies: Vec<String>,
    /// Orders above this total (minor units) are dead-lettered.
    #[arg(long, env = "MAX_TOTAL_CENTS", default_value_t = 100_000_000)]
    pub max_total_cents: i64,
    /// Fault injection rules (see faults.rs); empty: off.
    #[arg(long, env = "FAULTS", default_value = "")]
    pub faults: Faults,
    /// CloudEvents `source` of the events this service publishes.
    #[arg(long, env = "EVENT_SOURCE", default_value = "/consumer-service")]
    pub event_source: String,
    /// Consumers, retries, dead letters, ops endpoint: the runtime's settings.
    #[command(flatten)]
    pub runtime: ConsumerArgs,
}

impl Settings {
    /// The order handler these settings describe.
    pub fn handler(&self) -> OrderHandler {
        OrderHandler {
            output_topic: self.output_topic.clone(),
            allowed_currencies: self
                .allowed_currencies
                .iter()
                .map(|c| c.trim().to_owned())
                .collect(),
            max_total_cents: self.max_total_cents,
            faults: self.faults.clone(),
            source: self.event_source.clone(),
        }
    }
}
