//! Rust types for the schemas in `schemas/`.
//!
//! The types are written by hand so their field types read naturally.
//! `#[derive(Event)]` takes each one's full name and CloudEvents type from
//! its `.avsc` and checks its fields against the record when this crate
//! compiles (`#[derive(Record)]` does the same for the nested `OrderItem`);
//! the tests at the bottom also prove, recursively (nested records
//! included), that each type serializes to exactly the record its schema
//! describes and back.

use kafkit_events::{Event, Record};
use serde::{Deserialize, Serialize};

/// A customer placed an order (`schemas/order_placed.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(schema = "../schemas/order_placed.avsc")]
pub struct OrderPlaced {
    /// UUID string.
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// Milliseconds since the Unix epoch.
    pub placed_at: i64,
    pub note: Option<String>,
}

/// One line of an [`OrderPlaced`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Record)]
#[record(schema = "../schemas/order_placed.avsc", name = "OrderItem")]
pub struct OrderItem {
    pub sku: String,
    pub quantity: i32,
    /// Price of one unit in minor units of the order's currency.
    pub unit_price_cents: i64,
}

/// An order passed the business rules (`schemas/order_confirmed.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(schema = "../schemas/order_confirmed.avsc")]
pub struct OrderConfirmed {
    /// UUID string.
    pub order_id: String,
    pub total_cents: i64,
    /// Milliseconds since the Unix epoch.
    pub confirmed_at: i64,
    /// The `ce_id` of the [`OrderPlaced`] event this answers.
    pub source_event_id: String,
}

/// Every event schema shipped in `schemas/`, by file name, for tools that register them.
pub fn all_schemas() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "order_placed.avsc",
            OrderPlaced::FULL_NAME,
            OrderPlaced::SCHEMA_JSON,
        ),
        (
            "order_confirmed.avsc",
            OrderConfirmed::FULL_NAME,
            OrderConfirmed::SCHEMA_JSON,
        ),
    ]
}

#[cfg(test)]
// The deprecated datum helpers are the shortest plain-Avro round trip; the
// Confluent-framed path is tested end to end in tests/wire_format.rs.
#[allow(clippy::unwrap_used, deprecated)]
mod tests {
    use super::*;
    use apache_avro::types::Value;
    use apache_avro::{Schema, from_avro_datum, from_value, to_avro_datum, to_value};

    /// Walks a serialized value alongside the schema: the same record fields in
    /// the same order, and every leaf of the kind the schema asks for.
    fn assert_shape(value: &Value, schema: &Schema, path: &str) {
        match (schema, value) {
            (Schema::Record(record), Value::Record(fields)) => {
                let expected: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
                let actual: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(actual, expected, "fields of {path}");
                for (field, (_, v)) in record.fields.iter().zip(fields) {
                    assert_shape(v, &field.schema, &format!("{path}.{}", field.name));
                }
            }
            (Schema::Array(array), Value::Array(items)) => {
                assert!(
                    !items.is_empty(),
                    "{path}: give the sample at least one item"
                );
                for item in items {
                    assert_shape(item, &array.items, &format!("{path}[]"));
                }
            }
            (Schema::Union(union), Value::Union(branch, inner)) => {
                let variant = union.variants().get(*branch as usize);
                assert_shape(inner, variant.expect("union branch in range"), path);
            }
            (Schema::Union(union), Value::Null) => {
                assert!(
                    union.variants().contains(&Schema::Null),
                    "{path}: null not allowed"
                );
            }
            (Schema::Null, Value::Null) => {}
            (Schema::Uuid(_), Value::String(s)) => {
                assert!(
                    uuid::Uuid::parse_str(s).is_ok(),
                    "{path}: {s} is not a uuid"
                );
            }
            (Schema::String, Value::String(_))
            | (Schema::Int, Value::Int(_))
            | (Schema::Long | Schema::TimestampMillis, Value::Long(_)) => {}
            (schema, value) => {
                panic!("{path}: type serializes as {value:?}, schema says {schema:?}")
            }
        }
    }

    fn assert_matches_schema<E: Event + std::fmt::Debug + PartialEq>(sample: &E) {
        let schema = E::schema();
        assert_eq!(schema.name().unwrap().fullname(None), E::FULL_NAME);
        let value = to_value(sample).unwrap();
        assert_shape(&value, schema, E::FULL_NAME);
        let resolved = value.resolve(schema).unwrap();
        let bytes = to_avro_datum(schema, resolved).unwrap();
        let decoded = from_avro_datum(schema, &mut bytes.as_slice(), None).unwrap();
        assert_eq!(&from_value::<E>(&decoded).unwrap(), sample);
    }

    fn order(note: Option<&str>) -> OrderPlaced {
        OrderPlaced {
            order_id: "9b2d3c1e-64a5-4f5e-8b43-2f1c0d9e7a10".into(),
            customer_id: "customer-17".into(),
            items: vec![OrderItem {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price_cents: 1250,
            }],
            currency: "EUR".into(),
            placed_at: 1_764_000_000_000,
            note: note.map(str::to_owned),
        }
    }

    #[test]
    fn order_placed_matches_its_avsc_with_and_without_a_note() {
        assert_matches_schema(&order(Some("leave at the door")));
        assert_matches_schema(&order(None));
    }

    #[test]
    fn order_confirmed_matches_its_avsc() {
        assert_matches_schema(&OrderConfirmed {
            order_id: "9b2d3c1e-64a5-4f5e-8b43-2f1c0d9e7a10".into(),
            total_cents: 2500,
            confirmed_at: 1_764_000_000_500,
            source_event_id: "3f0c3d7e-0a43-4b8e-9a57-1e0f3b3c2d11".into(),
        });
    }

    #[test]
    fn note_defaults_to_null_as_the_contract_says() {
        let Schema::Record(record) = OrderPlaced::schema() else {
            panic!("not a record")
        };
        let note = record.fields.iter().find(|f| f.name == "note").unwrap();
        assert_eq!(note.default, Some(serde_json::Value::Null));
    }

    #[test]
    fn every_schema_file_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".avsc"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = all_schemas()
            .iter()
            .map(|(f, _, _)| f.to_string())
            .collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}
