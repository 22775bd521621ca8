//! Edit and replay (`kafkit dlq edit`, and the console's edit form): a dead
//! letter's payload, corrected by hand as JSON, checked field by field
//! against its subject's latest schema, encoded in the Confluent wire
//! format and sent back to the topic it came from, marked
//! `kafkit.replay.edited`. For a record whose content is wrong (a currency
//! the business refuses), which would die again unchanged.

use super::record::DeadLetter;
use super::resolved;
use apache_avro::Schema;
use apache_avro::types::Value as AvroValue;
use kafkit_messaging::Publisher;
use serde_json::Value;

/// `kafkit.replay.edited`: the value was changed by hand before the replay.
pub const EDITED: &str = "kafkit.replay.edited";

/// A field whose value the schema refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `items[0].quantity`, or empty for the whole value.
    pub field: String,
    pub message: String,
}

fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Every field of `json` the `schema` refuses (empty: it fits).
pub fn check(schema: &Schema, json: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, json, "", &mut errors);
    errors
}

fn walk(schema: &Schema, json: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let mut fail = |message: String| {
        errors.push(FieldError {
            field: path.to_owned(),
            message,
        });
    };
    let int_in = |min: i64, max: i64| json.as_i64().is_some_and(|i| (min..=max).contains(&i));
    match schema {
        Schema::Null if !json.is_null() => fail(format!("must be null, got {json}")),
        Schema::Boolean if !json.is_boolean() => fail(format!("must be true or false, got {json}")),
        Schema::Int | Schema::Date | Schema::TimeMillis
            if !int_in(i64::from(i32::MIN), i64::from(i32::MAX)) =>
        {
            fail(format!("must be a whole number (32 bits), got {json}"));
        }
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
            if json.as_i64().is_none() =>
        {
            fail(format!("must be a whole number, got {json}"));
        }
        Schema::Float | Schema::Double if !json.is_number() => {
            fail(format!("must be a number, got {json}"));
        }
        Schema::String if !json.is_string() => fail(format!("must be a string, got {json}")),
        Schema::Uuid(_) => match json.as_str().map(uuid::Uuid::parse_str) {
            Some(Ok(_)) => {}
            _ => fail(format!("must be a UUID string, got {json}")),
        },
        Schema::Enum(e)
            if !json
                .as_str()
                .is_some_and(|s| e.symbols.iter().any(|x| x == s)) =>
        {
            fail(format!(
                "must be one of {}, got {json}",
                e.symbols.join(", ")
            ));
        }
        Schema::Array(array) => match json.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&array.items, item, &format!("{path}[{i}]"), errors);
                }
            }
            None => fail(format!("must be an array, got {json}")),
        },
        Schema::Map(map) => match json.as_object() {
            Some(entries) => {
                for (key, value) in entries {
                    walk(&map.types, value, &at(path, key), errors);
                }
            }
            None => fail(format!("must be an object, got {json}")),
        },
        Schema::Union(union) => {
            let fits = union.variants().iter().any(|variant| {
                let mut tried = Vec::new();
                walk(variant, json, path, &mut tried);
                tried.is_empty()
            });
            if !fits {
                fail(format!("fits none of the union's types, got {json}"));
            }
        }
        Schema::Record(record) => match json.as_object() {
            Some(object) => {
                for field in &record.fields {
                    match object.get(&field.name) {
                        Some(value) => walk(&field.schema, value, &at(path, &field.name), errors),
                        None if field.default.is_some() => {}
                        None => errors.push(FieldError {
                            field: at(path, &field.name),
                            message: "is required".into(),
                        }),
                    }
                }
                for key in object.keys() {
                    if !record.fields.iter().any(|f| &f.name == key) {
                        errors.push(FieldError {
                            field: at(path, key),
                            message: format!("is not a field of {}", record.name.fullname(None)),
                        });
                    }
                }
            }
            None => fail(format!("must be an object, got {json}")),
        },
        // Bytes, fixed, decimals and named references: left to the encoder.
        _ => {}
    }
}

/// `json`, which `check` accepted, as the Avro value `schema` describes
/// (JSON numbers, objects and unions read by the schema, not by guessing).
fn avro(schema: &Schema, json: &Value) -> AvroValue {
    let int = || {
        json.as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .unwrap_or_default()
    };
    let long = || json.as_i64().unwrap_or_default();
    let double = || json.as_f64().unwrap_or_default();
    match schema {
        Schema::Null => AvroValue::Null,
        Schema::Boolean => AvroValue::Boolean(json.as_bool().unwrap_or_default()),
        Schema::Int => AvroValue::Int(int()),
        Schema::Date => AvroValue::Date(int()),
        Schema::TimeMillis => AvroValue::TimeMillis(int()),
        Schema::Long => AvroValue::Long(long()),
        Schema::TimeMicros => AvroValue::TimeMicros(long()),
        Schema::TimestampMillis => AvroValue::TimestampMillis(long()),
        Schema::TimestampMicros => AvroValue::TimestampMicros(long()),
        Schema::TimestampNanos => AvroValue::TimestampNanos(long()),
        Schema::LocalTimestampMillis => AvroValue::LocalTimestampMillis(long()),
        Schema::LocalTimestampMicros => AvroValue::LocalTimestampMicros(long()),
        #[allow(clippy::cast_possible_truncation)]
        Schema::Float => AvroValue::Float(double() as f32),
        Schema::Double => AvroValue::Double(double()),
        Schema::String => AvroValue::String(json.as_str().unwrap_or_default().to_owned()),
        Schema::Uuid(_) => json
            .as_str()
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
            .map_or(AvroValue::Null, AvroValue::Uuid),
        Schema::Enum(e) => {
            let symbol = json.as_str().unwrap_or_default();
            let index = e
                .symbols
                .iter()
                .position(|s| s == symbol)
                .unwrap_or_default();
            AvroValue::Enum(u32::try_from(index).unwrap_or_default(), symbol.to_owned())
        }
        Schema::Array(array) => AvroValue::Array(
            json.as_array()
                .into_iter()
                .flatten()
                .map(|item| avro(&array.items, item))
                .collect(),
        ),
        Schema::Map(map) => AvroValue::Map(
            json.as_object()
                .into_iter()
                .flatten()
                .map(|(key, value)| (key.clone(), avro(&map.types, value)))
                .collect(),
        ),
        Schema::Union(union) => {
            let (index, variant) = union
                .variants()
                .iter()
                .enumerate()
                .find(|(_, variant)| check(variant, json).is_empty())
                .unwrap_or((0, &Schema::Null));
            AvroValue::Union(
                u32::try_from(index).unwrap_or_default(),
                Box::new(avro(variant, json)),
            )
        }
        Schema::Record(record) => AvroValue::Record(
            record
                .fields
                .iter()
                .map(|field| {
                    let value = json
                        .get(&field.name)
                        .or(field.default.as_ref())
                        .unwrap_or(&Value::Null);
                    (field.name.clone(), avro(&field.schema, value))
                })
                .collect(),
        ),
        // Bytes, fixed, decimals and named references: as serde sees them.
        _ => apache_avro::to_value(json).unwrap_or(AvroValue::Null),
    }
}

/// `json` in the Confluent wire format of schema `id`, or each field the
/// schema refuses.
pub fn encode(schema_id: u32, schema_text: &str, json: &Value) -> Result<Vec<u8>, Vec<FieldError>> {
    let whole = |message: String| {
        vec![FieldError {
            field: String::new(),
            message,
        }]
    };
    let schema = Schema::parse_str(schema_text)
        .map_err(|e| whole(format!("the schema does not parse: {e}")))?;
    let errors = check(&schema, json);
    if !errors.is_empty() {
        return Err(errors);
    }
    let value = avro(&schema, json)
        .resolve(&schema)
        .map_err(|e| whole(format!("does not fit the schema: {e}")))?;
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .map_err(|e| whole(format!("could not be encoded: {e}")))?;
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(0);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(&body);
    Ok(framed)
}

/// Re-encodes `json`, the corrected payload of `letter` (a `full_name`
/// event), against the latest schema of its subject, sends it to the topic
/// it came from with the replay's audit headers and `kafkit.replay.edited`,
/// and records the dead letter as replayed. Each refused field, or why
/// nothing was sent.
pub async fn replay_edited(
    letter: &DeadLetter,
    full_name: &str,
    json: &Value,
    registry: &crate::schemas::Registry,
    subjects: kafkit_events::SubjectStrategy,
    publisher: &Publisher,
    by: &str,
) -> Result<resolved::SentBack, Vec<FieldError>> {
    let whole = |message: String| {
        vec![FieldError {
            field: String::new(),
            message,
        }]
    };
    let destination = letter
        .original_topic
        .clone()
        .ok_or_else(|| whole("no original topic in its headers".into()))?;
    let subject = subjects.subject(&destination, full_name, false);
    let (schema_id, schema) = registry
        .latest(&subject)
        .await
        .map_err(|e| whole(format!("{e:#}")))?;
    let payload = encode(schema_id, &schema, json)?;
    let id = super::coordinates(letter);
    let mut record = super::replay_record(letter, &id, &destination);
    record.payload = Some(payload);
    record.headers.push((EDITED.into(), b"true".to_vec()));
    let reason = format!("edited and replayed to {destination} {by}");
    resolved::send_back(publisher, &letter.dlq_topic, &id, &record, reason)
        .await
        .map_err(whole)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &str = include_str!("../../../schemas/order_placed.avsc");

    fn order() -> Value {
        json!({
            "order_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
            "customer_id": "c-1",
            "items": [{"sku": "BOOK-1", "quantity": 1, "unit_price_cents": 1550}],
            "currency": "EUR",
            "placed_at": 1795000000000_i64,
            "note": null
        })
    }

    #[test]
    fn a_corrected_order_encodes_and_decodes_back_equal() {
        let framed = encode(7, ORDER, &order()).unwrap();
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 7]);
        let schema = Schema::parse_str(ORDER).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap();
        let back: shared_events::OrderPlaced = reader.read_deser(&mut &framed[5..]).unwrap();
        assert_eq!(back.currency, "EUR");
        assert_eq!(back.items[0].unit_price_cents, 1550);
    }

    #[test]
    fn each_field_the_schema_refuses_is_named() {
        let mut bad = order();
        bad["items"][0]["quantity"] = json!("two");
        bad["order_id"] = json!("not-a-uuid");
        bad["coupon"] = json!("FREE");
        bad.as_object_mut().unwrap().remove("currency");
        bad["note"] = json!(5);
        let errors = encode(7, ORDER, &bad).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "order_id",
                "items[0].quantity",
                "currency",
                "note",
                "coupon"
            ],
            "{errors:?}"
        );
        assert_eq!(errors[2].message, "is required");
    }
}
