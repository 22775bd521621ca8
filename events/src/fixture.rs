//! A test event with nested records, arrays and a union, so the generic
//! machinery is tested without depending on a domain crate. Its schema is
//! the orders one in `schemas/`.

use crate::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(schema = "../schemas/order_placed.avsc")]
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
