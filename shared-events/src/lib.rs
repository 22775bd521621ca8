//! kafkit's orders contract: Rust types for the `.avsc` files in `schemas/`.
//!
//! The schemas are the single source of truth; tests in `events.rs` prove,
//! field by field, that each type serializes to exactly the record its schema
//! describes. The machinery that carries them (codec, wire format, headers,
//! subjects) is the domain-free `kafkit-events` crate.

pub mod events;

pub use events::{OrderConfirmed, OrderItem, OrderPlaced, all_schemas};
