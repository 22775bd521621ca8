//! The event machinery of kafkit, independent of any one domain.
//!
//! An [`Event`] is a Rust type bound to an Avro schema (`.avsc`). This crate
//! encodes and decodes events in the Confluent wire format (magic byte,
//! 4-byte schema id, Avro body) through `schema_registry_converter`, checks
//! every body against its writer schema before reading it, names subjects,
//! and reads and writes the CloudEvents and W3C trace-context headers every
//! record carries. Domain contracts (kafkit's orders live in `shared-events`)
//! depend on this crate; it depends on none of them.

#![warn(missing_docs)]

// The derive's output names `::kafkit_events`, also inside this crate.
extern crate self as kafkit_events;

pub mod codec;
pub mod headers;
pub mod subject;
mod verify;

#[cfg(test)]
mod fixture;

pub use codec::{CodecSettings, DecodeError, Decoded, EncodeError, EventCodec, RegistrationMode};
pub use headers::{EventHeaders, HeaderError, TraceParent};
pub use subject::SubjectStrategy;

/// `#[derive(Event)]` with `#[event(schema = "schemas/x.avsc")]`: the full
/// name and CloudEvents type come from the schema file, and a struct whose
/// fields do not match the record does not compile.
pub use kafkit_events_derive::Event;

/// `#[derive(Record)]` with `#[record(schema = "schemas/x.avsc", name = "Line")]`:
/// a nested record's type checked against its definition in the file.
pub use kafkit_events_derive::Record;

/// What the derive's output uses; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use apache_avro::Schema;

    /// The schema text compiled into an event type. The derive has read it
    /// as a record already; a test of the crate parses every event's schema.
    pub fn parse_schema(text: &str, file: &str) -> Schema {
        Schema::parse_str(text).unwrap_or_else(|e| panic!("{file} is not valid Avro: {e}"))
    }
}

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
