//! payments-service: a kafkit service of another domain, written only
//! against the public API (kafkit-events, kafkit-messaging, kafkit-runtime).
//! `PaymentRequested` (keyed by account) → a charge at the payment gateway
//! over HTTP with a timeout → `PaymentSettled`; gateway outages go through the
//! retry tiers, declined payments to the dead-letter topic with the reason.

pub mod events;
pub mod handler;

use events::PaymentRequested;
use handler::{Gateway, SettlePayment};
use kafkit_runtime::{ConsumerArgs, ConsumerService};
use std::time::Duration;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "payments-service",
    version,
    about = "Settles payments through a payment gateway"
)]
pub struct Settings {
    /// Topic of `PaymentRequested` events, keyed by account.
    #[arg(long, env = "PAYMENTS_TOPIC", default_value = "payments")]
    pub topic: String,
    /// Where `PaymentSettled` events go.
    #[arg(long, env = "SETTLED_TOPIC", default_value = "payments-settled")]
    pub settled_topic: String,
    /// Base URL of the payment gateway.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8090")]
    pub gateway_url: String,
    /// A gateway call slower than this is a transient failure.
    #[arg(long, env = "GATEWAY_TIMEOUT_MS", default_value_t = 2_000)]
    pub gateway_timeout_ms: u64,
    #[command(flatten)]
    pub runtime: ConsumerArgs,
}

/// The whole service.
pub fn service(
    settings: Settings,
) -> anyhow::Result<ConsumerService<PaymentRequested, SettlePayment>> {
    let handler = SettlePayment {
        gateway: Gateway::new(
            &settings.gateway_url,
            Duration::from_millis(settings.gateway_timeout_ms),
        )?,
        settled_topic: settings.settled_topic.clone(),
        source: "/payments-service".into(),
    };
    Ok(ConsumerService::new("payments-service", settings.runtime)
        .consume(settings.topic, handler)
        .publishes_to(settings.settled_topic))
}
