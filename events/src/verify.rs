//! Checks an Avro binary body against its writer schema without building
//! anything: every byte is accounted for (nothing left over, nothing
//! missing), strings are UTF-8, UUIDs are UUIDs, union and enum indexes
//! exist, lengths are not negative. A body that passes can be read straight
//! into a Rust type; one that does not is malformed, with the reason.

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, NamesRef, UuidSchema};

/// Deeper than this is not a record kafkit reads (recursive schemas).
const MAX_DEPTH: usize = 64;

/// Ok when `body` is exactly one datum of `schema`.
pub(crate) fn check(schema: &Schema, names: &NamesRef<'_>, body: &[u8]) -> Result<(), String> {
    let mut input = body;
    walk(schema, names, None, &mut input, 0)?;
    if input.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} bytes are left after the end of the datum",
            input.len()
        ))
    }
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if input.len() < len {
        return Err(format!(
            "the body ends early: {len} bytes needed, {} left",
            input.len()
        ));
    }
    let (taken, rest) = input.split_at(len);
    *input = rest;
    Ok(taken)
}

/// A zig-zag varint (Avro `long`).
fn long(input: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *take(input, 1)?.first().unwrap_or(&0);
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("a varint is longer than 10 bytes".into())
}

fn int(input: &mut &[u8]) -> Result<i32, String> {
    let value = long(input)?;
    i32::try_from(value).map_err(|_| format!("{value} does not fit an int"))
}

fn length(input: &mut &[u8]) -> Result<usize, String> {
    let len = long(input)?;
    usize::try_from(len).map_err(|_| format!("a negative length ({len})"))
}

fn text<'a>(input: &mut &'a [u8]) -> Result<&'a str, String> {
    let len = length(input)?;
    std::str::from_utf8(take(input, len)?).map_err(|e| format!("a string is not UTF-8: {e}"))
}

/// Array and map blocks: a count (negative: followed by a byte size), items, until 0.
fn blocks(
    input: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    loop {
        let count = long(input)?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            length(input)?;
        }
        for _ in 0..count.unsigned_abs() {
            item(input)?;
        }
    }
}

fn walk(
    schema: &Schema,
    names: &NamesRef<'_>,
    namespace: Option<&str>,
    input: &mut &[u8],
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    let next = depth + 1;
    match schema {
        Schema::Null => Ok(()),
        Schema::Boolean => match take(input, 1)? {
            [0 | 1] => Ok(()),
            other => Err(format!("a boolean byte is {other:?}, not 0 or 1")),
        },
        Schema::Int | Schema::Date | Schema::TimeMillis => int(input).map(drop),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => long(input).map(drop),
        Schema::Float => take(input, 4).map(drop),
        Schema::Double => take(input, 8).map(drop),
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
            let len = length(input)?;
            take(input, len).map(drop)
        }
        Schema::Decimal(decimal) => match &decimal.inner {
            InnerDecimalSchema::Bytes => {
                let len = length(input)?;
                take(input, len).map(drop)
            }
            InnerDecimalSchema::Fixed(fixed) => take(input, fixed.size).map(drop),
        },
        Schema::String => text(input).map(drop),
        Schema::Uuid(UuidSchema::String) => {
            let value = text(input)?;
            uuid::Uuid::parse_str(value)
                .map(drop)
                .map_err(|e| format!("{value:?} is not a UUID: {e}"))
        }
        Schema::Uuid(UuidSchema::Fixed(fixed)) | Schema::Fixed(fixed) | Schema::Duration(fixed) => {
            take(input, fixed.size).map(drop)
        }
        Schema::Record(record) => {
            let name = record.name.fully_qualified_name(namespace);
            for field in &record.fields {
                walk(&field.schema, names, name.namespace(), input, next)?;
            }
            Ok(())
        }
        Schema::Enum(e) => {
            let index = int(input)?;
            match usize::try_from(index).ok().filter(|i| *i < e.symbols.len()) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "enum index {index} is not one of the {} symbols",
                    e.symbols.len()
                )),
            }
        }
        Schema::Array(array) => blocks(input, |input| {
            walk(&array.items, names, namespace, input, next)
        }),
        Schema::Map(map) => blocks(input, |input| {
            text(input)?;
            walk(&map.types, names, namespace, input, next)
        }),
        Schema::Union(union) => {
            let index = long(input)?;
            let variant = usize::try_from(index)
                .ok()
                .and_then(|i| union.variants().get(i))
                .ok_or_else(|| {
                    format!(
                        "union index {index} is not one of the {} branches",
                        union.variants().len()
                    )
                })?;
            walk(variant, names, namespace, input, next)
        }
        Schema::Ref { name } => {
            let name: Name = name.fully_qualified_name(namespace).into_owned();
            let target = names
                .get(&name)
                .ok_or_else(|| format!("the schema names {name} but does not define it"))?;
            walk(target, names, name.namespace(), input, next)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Event;
    use crate::fixture::{OrderItem, OrderPlaced};
    use apache_avro::schema::ResolvedSchema;

    fn encoded(order: &OrderPlaced) -> Vec<u8> {
        let value = apache_avro::to_value(order)
            .unwrap()
            .resolve(OrderPlaced::schema())
            .unwrap();
        apache_avro::writer::datum::GenericDatumWriter::builder(OrderPlaced::schema())
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    fn order(note: Option<&str>) -> OrderPlaced {
        OrderPlaced {
            order_id: "9b2d3c1e-64a5-4f5e-8b43-2f1c0d9e7a10".into(),
            customer_id: "c-1".into(),
            items: vec![
                OrderItem {
                    sku: "BOOK-1".into(),
                    quantity: 2,
                    unit_price_cents: -5,
                },
                OrderItem {
                    sku: "MUG-9".into(),
                    quantity: 1,
                    unit_price_cents: 1_000_000_000_000,
                },
            ],
            currency: "EUR".into(),
            placed_at: 1_764_000_000_000,
            note: note.map(str::to_owned),
        }
    }

    #[test]
    fn a_whole_datum_passes_and_a_cut_or_padded_one_does_not() {
        let schema = OrderPlaced::schema();
        let resolved = ResolvedSchema::try_from(schema).unwrap();
        let names = resolved.get_names();
        for note in [None, Some("leave at the door")] {
            let body = encoded(&order(note));
            assert_eq!(check(schema, names, &body), Ok(()));
            for cut in 0..body.len() {
                assert!(check(schema, names, &body[..cut]).is_err(), "cut at {cut}");
            }
            for junk in 1..=4 {
                let mut padded = body.clone();
                padded.extend(std::iter::repeat_n(0u8, junk));
                assert!(check(schema, names, &padded).is_err(), "{junk} extra bytes");
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn orders() -> impl Strategy<Value = OrderPlaced> {
            let item = (".{0,20}", any::<i32>(), any::<i64>()).prop_map(
                |(sku, quantity, unit_price_cents)| OrderItem {
                    sku,
                    quantity,
                    unit_price_cents,
                },
            );
            (
                any::<u128>(),
                ".{0,30}",
                proptest::collection::vec(item, 0..5),
                ".{0,4}",
                any::<i64>(),
                proptest::option::of(".{0,40}"),
            )
                .prop_map(|(id, customer_id, items, currency, placed_at, note)| {
                    OrderPlaced {
                        order_id: uuid::Uuid::from_u128(id).to_string(),
                        customer_id,
                        items,
                        currency,
                        placed_at,
                        note,
                    }
                })
        }

        proptest! {
            /// Any order passes whole; cut anywhere or padded with anything, it fails.
            #[test]
            fn whole_orders_pass_and_cut_or_padded_ones_fail(
                order in orders(),
                cut in any::<prop::sample::Index>(),
                junk in proptest::collection::vec(any::<u8>(), 1..8),
            ) {
                let schema = OrderPlaced::schema();
                let resolved = ResolvedSchema::try_from(schema).unwrap();
                let names = resolved.get_names();
                let body = encoded(&order);
                prop_assert_eq!(check(schema, names, &body), Ok(()));
                let cut = cut.index(body.len());
                prop_assert!(check(schema, names, &body[..cut]).is_err());
                let mut padded = body.clone();
                padded.extend(junk);
                prop_assert!(check(schema, names, &padded).is_err());
            }

            /// Whatever the bytes (random, or an order with one byte
            /// changed), the check answers without a panic, and what it lets
            /// through apache-avro reads as exactly one whole datum.
            #[test]
            fn whatever_passes_the_check_decodes_whole(
                random in proptest::collection::vec(any::<u8>(), 0..200),
                order in orders(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let schema = OrderPlaced::schema();
                let resolved = ResolvedSchema::try_from(schema).unwrap();
                let names = resolved.get_names();
                let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
                    .build()
                    .unwrap();
                let mut mutated = encoded(&order);
                let at = at.index(mutated.len());
                mutated[at] = byte;
                for bytes in [random, mutated] {
                    if check(schema, names, &bytes).is_ok() {
                        let mut rest = &bytes[..];
                        prop_assert!(reader.read_value(&mut rest).is_ok());
                        prop_assert!(rest.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn a_string_that_is_not_a_uuid_or_not_utf8_and_a_bad_union_index_are_refused() {
        let schema = OrderPlaced::schema();
        let resolved = ResolvedSchema::try_from(schema).unwrap();
        let names = resolved.get_names();
        let body = encoded(&order(None));
        // The first field is the order id: length 36 (zig-zag 72), then its text.
        assert_eq!(body[0], 72);
        let mut not_uuid = body.clone();
        not_uuid[1] = b'z';
        assert!(
            check(schema, names, &not_uuid)
                .unwrap_err()
                .contains("not a UUID")
        );
        let mut not_utf8 = body.clone();
        not_utf8[38] = 0xff;
        assert!(
            check(schema, names, &not_utf8)
                .unwrap_err()
                .contains("UTF-8")
        );
        let mut bad_union = body.clone();
        *bad_union.last_mut().unwrap() = 4;
        assert!(
            check(schema, names, &bad_union)
                .unwrap_err()
                .contains("union index")
        );
    }
}
