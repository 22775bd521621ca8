//! kafkit's event contracts.
//!
//! The `.avsc` files in `schemas/` are the single source of truth. This crate
//! carries Rust types that match them (proved by tests in `events.rs`), the
//! Confluent wire format (magic byte, 4-byte schema id, Avro body) through
//! `schema_registry_converter`, subject naming, and the CloudEvents and W3C
//! trace-context headers every record carries.

pub mod codec;
pub mod events;
pub mod headers;
pub mod subject;
mod verify;

pub use codec::{CodecSettings, DecodeError, Decoded, EncodeError, EventCodec, RegistrationMode};
pub use events::{Event, OrderConfirmed, OrderItem, OrderPlaced};
pub use headers::{EventHeaders, HeaderError, TraceParent};
pub use subject::SubjectStrategy;
