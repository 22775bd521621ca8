//! A test event with nested records, arrays and a union, so the generic
//! machinery is tested without depending on a domain crate. Its schema is
//! the orders one in `schemas/`.

use crate::Event;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub currency: String,
    pub placed_at: i64,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

impl Event for OrderPlaced {
    const SCHEMA_JSON: &'static str = include_str!("../../schemas/order_placed.avsc");
    const FULL_NAME: &'static str = "io.kafkit.orders.OrderPlaced";
    const CE_TYPE: &'static str = "io.kafkit.orders.OrderPlaced";
    #[allow(clippy::unwrap_used)]
    fn schema() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema::parse_str(Self::SCHEMA_JSON).unwrap())
    }
}
