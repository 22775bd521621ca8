//! The event machinery of kafkit, independent of any one domain.
//!
//! An [`Event`] is a Rust type bound to an Avro schema (`.avsc`). This crate
//! encodes and decodes events in the Confluent wire format (magic byte,
//! 4-byte schema id, Avro body) through `schema_registry_converter`, checks
//! every body against its writer schema before reading it, names subjects,
//! and reads and writes the CloudEvents and W3C trace-context headers every
//! record carries. Domain contracts (kafkit's orders live in `shared-events`)
//! depend on this crate; it depends on none of them.

pub mod codec;
pub mod headers;
pub mod subject;
mod verify;

#[cfg(test)]
mod fixture;

pub use codec::{CodecSettings, DecodeError, Decoded, EncodeError, EventCodec, RegistrationMode};
pub use headers::{EventHeaders, HeaderError, TraceParent};
pub use subject::SubjectStrategy;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// An event type bound to an Avro schema.
pub trait Event: Serialize + for<'de> Deserialize<'de> + Send + Sync {
    /// The `.avsc` text.
    const SCHEMA_JSON: &'static str;
    /// Avro full name (`namespace.name`), also used by the record-name subject strategies.
    const FULL_NAME: &'static str;
    /// CloudEvents `type` attribute (`ce_type` header).
    const CE_TYPE: &'static str;

    /// The parsed schema. Panics only if [`Event::SCHEMA_JSON`] is not valid
    /// Avro, which a test of the implementing crate rules out.
    fn schema() -> &'static Schema;
}
