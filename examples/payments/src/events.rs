//! The payments contract: one Rust type per `.avsc` in `schemas/`, checked
//! against it when the crate compiles.

use kafkit_events::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(schema = "schemas/payment_requested.avsc")]
pub struct PaymentRequested {
    pub payment_id: String,
    pub account_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub requested_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(schema = "schemas/payment_settled.avsc")]
pub struct PaymentSettled {
    pub payment_id: String,
    pub account_id: String,
    pub amount_cents: i64,
    pub gateway_reference: String,
    pub settled_at: i64,
    pub source_event_id: String,
}
