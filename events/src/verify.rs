//! Checks an Avro binary body against its writer schema without building
//! anything: every byte is accounted for (nothing left over, nothing
//! missing), strings are UTF-8, UUIDs are UUIDs, union and enum indexes
//! exist, lengths are not negative. A body that passes can be read straight
//! into a Rust type; one that does not is malformed, with the reason.
//!
//! The schema is compiled once into a [`Plan`] (named references resolved
//! to indexes), so checking a record walks plain data: no name look-up and
//! no allocation unless the body is malformed.

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, ResolvedSchema, UuidSchema};
use std::collections::HashMap;

/// Why a body is malformed. Boxed: a one-word error keeps every `Result`
/// of the walk in registers, and the box is only made for a bad body.
type Fault = Box<String>;

macro_rules! fault {
    ($($message:tt)*) => {
        Box::new(format!($($message)*))
    };
}

/// Deeper than this is not a record kafkit reads (recursive schemas).
const MAX_DEPTH: usize = 64;

/// What one schema node asks of the bytes.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// Length-prefixed bytes (bytes, big decimal, bytes decimal, bytes UUID).
    Bytes,
    Text,
    UuidText,
    Fixed(usize),
    /// The field nodes, in order.
    Record(Vec<usize>),
    /// The number of symbols.
    Enum(usize),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
}

/// A schema compiled for checking bodies; build once per schema.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    nodes: Vec<Node>,
}

/// Compiles a schema: named types get a node each, references point at it.
struct Compiler<'s> {
    nodes: Vec<Option<Node>>,
    named: HashMap<Name, usize>,
    definitions: &'s apache_avro::schema::NamesRef<'s>,
}

impl Compiler<'_> {
    fn reserve(&mut self, name: Option<Name>) -> usize {
        let id = self.nodes.len();
        self.nodes.push(None);
        if let Some(name) = name {
            self.named.insert(name, id);
        }
        id
    }

    fn leaf(&mut self, name: Option<Name>, node: Node) -> usize {
        let id = self.reserve(name);
        self.nodes[id] = Some(node);
        id
    }

    fn compile(&mut self, schema: &Schema, namespace: Option<&str>) -> Result<usize, String> {
        let named = |name: &Name| Some(name.fully_qualified_name(namespace).into_owned());
        Ok(match schema {
            Schema::Null => self.leaf(None, Node::Null),
            Schema::Boolean => self.leaf(None, Node::Boolean),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.leaf(None, Node::Int),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.leaf(None, Node::Long),
            Schema::Float => self.leaf(None, Node::Float),
            Schema::Double => self.leaf(None, Node::Double),
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
                self.leaf(None, Node::Bytes)
            }
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => self.leaf(None, Node::Bytes),
                InnerDecimalSchema::Fixed(fixed) => {
                    self.leaf(named(&fixed.name), Node::Fixed(fixed.size))
                }
            },
            Schema::String => self.leaf(None, Node::Text),
            Schema::Uuid(UuidSchema::String) => self.leaf(None, Node::UuidText),
            Schema::Uuid(UuidSchema::Fixed(fixed))
            | Schema::Fixed(fixed)
            | Schema::Duration(fixed) => self.leaf(named(&fixed.name), Node::Fixed(fixed.size)),
            Schema::Enum(e) => self.leaf(named(&e.name), Node::Enum(e.symbols.len())),
            Schema::Record(record) => {
                let name = record.name.fully_qualified_name(namespace).into_owned();
                let inner = name.namespace().map(str::to_owned);
                // Reserved before the fields: a field may refer back to the record.
                let id = self.reserve(Some(name));
                let fields = record
                    .fields
                    .iter()
                    .map(|field| self.compile(&field.schema, inner.as_deref()))
                    .collect::<Result<_, _>>()?;
                self.nodes[id] = Some(Node::Record(fields));
                id
            }
            Schema::Array(array) => {
                let id = self.reserve(None);
                let items = self.compile(&array.items, namespace)?;
                self.nodes[id] = Some(Node::Array(items));
                id
            }
            Schema::Map(map) => {
                let id = self.reserve(None);
                let values = self.compile(&map.types, namespace)?;
                self.nodes[id] = Some(Node::Map(values));
                id
            }
            Schema::Union(union) => {
                let id = self.reserve(None);
                let variants = union
                    .variants()
                    .iter()
                    .map(|variant| self.compile(variant, namespace))
                    .collect::<Result<_, _>>()?;
                self.nodes[id] = Some(Node::Union(variants));
                id
            }
            Schema::Ref { name } => {
                let name: Name = name.fully_qualified_name(namespace).into_owned();
                if let Some(id) = self.named.get(&name) {
                    return Ok(*id);
                }
                let target = *self
                    .definitions
                    .get(&name)
                    .ok_or_else(|| format!("the schema names {name} but does not define it"))?;
                let enclosing = name.namespace().map(str::to_owned);
                self.compile(target, enclosing.as_deref())?
            }
        })
    }
}

impl Plan {
    /// Compiles `schema`; fails only for a schema that names a type it does
    /// not define.
    pub(crate) fn compile(schema: &Schema) -> Result<Self, String> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
        let mut compiler = Compiler {
            nodes: Vec::new(),
            named: HashMap::new(),
            definitions: resolved.get_names(),
        };
        compiler.compile(schema, None)?;
        let nodes = compiler
            .nodes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or("the schema could not be compiled whole")?;
        Ok(Self { nodes })
    }

    /// Ok when `body` is exactly one datum of the schema.
    pub(crate) fn check(&self, body: &[u8]) -> Result<(), String> {
        let mut input = body;
        self.step(0, &mut input, 0).map_err(|fault| *fault)?;
        if input.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes are left after the end of the datum",
                input.len()
            ))
        }
    }

    /// One node: a leaf is checked in place (no call per field), a
    /// compound one through [`Plan::walk`].
    #[inline(always)]
    fn step(&self, id: usize, input: &mut &[u8], depth: usize) -> Result<(), Fault> {
        let node = self.node(id)?;
        match leaf(node, input) {
            Some(checked) => checked,
            None => self.walk(node, input, depth),
        }
    }

    fn node(&self, id: usize) -> Result<&Node, Fault> {
        self.nodes
            .get(id)
            .ok_or_else(|| fault!("the compiled schema is incomplete"))
    }

    fn walk(&self, node: &Node, input: &mut &[u8], depth: usize) -> Result<(), Fault> {
        if depth > MAX_DEPTH {
            return Err(fault!("nested deeper than {MAX_DEPTH} levels"));
        }
        if let Some(checked) = leaf(node, input) {
            return checked;
        }
        let next = depth + 1;
        match node {
            Node::Record(fields) => fields
                .iter()
                .try_for_each(|field| self.step(*field, input, next)),
            Node::Array(items) => blocks(input, |input| self.step(*items, input, next)),
            Node::Map(values) => blocks(input, |input| {
                text(input)?;
                self.step(*values, input, next)
            }),
            Node::Union(variants) => {
                let index = long(input)?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| variants.get(i))
                    .ok_or_else(|| {
                        fault!(
                            "union index {index} is not one of the {} branches",
                            variants.len()
                        )
                    })?;
                self.step(*variant, input, next)
            }
            _ => Err(fault!("a leaf node was not checked as one")),
        }
    }
}

/// Checks a node that holds no other node; `None` for one that does.
#[inline(always)]
fn leaf(node: &Node, input: &mut &[u8]) -> Option<Result<(), Fault>> {
    Some(match node {
        Node::Null => Ok(()),
        Node::Boolean => match take(input, 1) {
            Ok([0 | 1]) => Ok(()),
            Ok(other) => Err(fault!("a boolean byte is {other:?}, not 0 or 1")),
            Err(fault) => Err(fault),
        },
        Node::Int => int(input).map(drop),
        Node::Long => long(input).map(drop),
        Node::Float => take(input, 4).map(drop),
        Node::Double => take(input, 8).map(drop),
        Node::Bytes => length(input).and_then(|len| take(input, len).map(drop)),
        Node::Text => text(input),
        Node::UuidText => uuid_text(input),
        Node::Fixed(size) => take(input, *size).map(drop),
        Node::Enum(symbols) => {
            int(input).and_then(
                |index| match usize::try_from(index).ok().filter(|i| i < symbols) {
                    Some(_) => Ok(()),
                    None => Err(fault!(
                        "enum index {index} is not one of the {symbols} symbols"
                    )),
                },
            )
        }
        Node::Record(_) | Node::Array(_) | Node::Map(_) | Node::Union(_) => return None,
    })
}

/// A string holding a UUID.
fn uuid_text(input: &mut &[u8]) -> Result<(), Fault> {
    let len = length(input)?;
    let bytes = take(input, len)?;
    if is_hyphenated_uuid(bytes) {
        return Ok(());
    }
    let value = utf8(bytes)?;
    uuid::Uuid::parse_str(value)
        .map(drop)
        .map_err(|e| fault!("{value:?} is not a UUID: {e}"))
}

#[inline]
fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], Fault> {
    if input.len() < len {
        return Err(ends_early(len, input.len()));
    }
    let (taken, rest) = input.split_at(len);
    *input = rest;
    Ok(taken)
}

#[cold]
fn ends_early(needed: usize, left: usize) -> Fault {
    fault!("the body ends early: {needed} bytes needed, {left} left")
}

/// A zig-zag varint (Avro `long`).
#[inline]
fn long(input: &mut &[u8]) -> Result<i64, Fault> {
    // Most lengths, counts and indexes fit one byte.
    if let [byte, rest @ ..] = *input
        && byte & 0x80 == 0
    {
        *input = rest;
        return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
    }
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *take(input, 1)?.first().unwrap_or(&0);
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(fault!("a varint is longer than 10 bytes"))
}

fn int(input: &mut &[u8]) -> Result<i32, Fault> {
    let value = long(input)?;
    i32::try_from(value).map_err(|_| fault!("{value} does not fit an int"))
}

fn length(input: &mut &[u8]) -> Result<usize, Fault> {
    let len = long(input)?;
    usize::try_from(len).map_err(|_| fault!("a negative length ({len})"))
}

/// A string: its length, then UTF-8.
#[inline]
fn text(input: &mut &[u8]) -> Result<(), Fault> {
    let len = length(input)?;
    let bytes = take(input, len)?;
    // Most strings on the wire are ASCII: one cheap pass instead of a decode.
    if bytes.is_ascii() {
        return Ok(());
    }
    utf8(bytes).map(drop)
}

fn utf8(bytes: &[u8]) -> Result<&str, Fault> {
    std::str::from_utf8(bytes).map_err(|e| fault!("a string is not UTF-8: {e}"))
}

/// The hyphenated form Avro writers produce, checked in one pass; any other
/// form goes to `uuid`'s parser, which accepts what apache-avro accepts.
#[inline]
fn is_hyphenated_uuid(bytes: &[u8]) -> bool {
    let hex = |group: &[u8]| group.iter().all(u8::is_ascii_hexdigit);
    bytes.len() == 36
        && [8, 13, 18, 23].iter().all(|at| bytes[*at] == b'-')
        && [
            &bytes[..8],
            &bytes[9..13],
            &bytes[14..18],
            &bytes[19..23],
            &bytes[24..],
        ]
        .into_iter()
        .all(hex)
}

/// Array and map blocks: a count (negative: followed by a byte size), items, until 0.
fn blocks(
    input: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<(), Fault>,
) -> Result<(), Fault> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Event;
    use crate::fixture::{OrderItem, OrderPlaced};

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
        let plan = Plan::compile(schema).unwrap();
        for note in [None, Some("leave at the door")] {
            let body = encoded(&order(note));
            assert_eq!(plan.check(&body), Ok(()));
            for cut in 0..body.len() {
                assert!(plan.check(&body[..cut]).is_err(), "cut at {cut}");
            }
            for junk in 1..=4 {
                let mut padded = body.clone();
                padded.extend(std::iter::repeat_n(0u8, junk));
                assert!(plan.check(&padded).is_err(), "{junk} extra bytes");
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
                let plan = Plan::compile(schema).unwrap();
                let body = encoded(&order);
                prop_assert_eq!(plan.check(&body), Ok(()));
                let cut = cut.index(body.len());
                prop_assert!(plan.check(&body[..cut]).is_err());
                let mut padded = body.clone();
                padded.extend(junk);
                prop_assert!(plan.check(&padded).is_err());
            }

            /// The one-pass UUID check accepts only what `uuid` accepts,
            /// and every UUID `uuid` writes hyphenated.
            #[test]
            fn the_fast_uuid_check_agrees_with_the_parser(
                text in "[0-9a-fA-Fg-]{36}",
                id in any::<u128>(),
            ) {
                if is_hyphenated_uuid(text.as_bytes()) {
                    prop_assert!(uuid::Uuid::parse_str(&text).is_ok());
                }
                let written = uuid::Uuid::from_u128(id).hyphenated().to_string();
                prop_assert!(is_hyphenated_uuid(written.as_bytes()));
                prop_assert!(is_hyphenated_uuid(written.to_uppercase().as_bytes()));
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
                let plan = Plan::compile(schema).unwrap();
                let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
                    .build()
                    .unwrap();
                let mut mutated = encoded(&order);
                let at = at.index(mutated.len());
                mutated[at] = byte;
                for bytes in [random, mutated] {
                    if plan.check(&bytes).is_ok() {
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
        let plan = Plan::compile(schema).unwrap();
        let body = encoded(&order(None));
        // The first field is the order id: length 36 (zig-zag 72), then its text.
        assert_eq!(body[0], 72);
        let mut not_uuid = body.clone();
        not_uuid[1] = b'z';
        assert!(plan.check(&not_uuid).unwrap_err().contains("not a UUID"));
        let mut not_utf8 = body.clone();
        not_utf8[38] = 0xff;
        assert!(plan.check(&not_utf8).unwrap_err().contains("UTF-8"));
        let mut bad_union = body.clone();
        *bad_union.last_mut().unwrap() = 4;
        assert!(plan.check(&bad_union).unwrap_err().contains("union index"));
    }

    #[test]
    fn named_types_used_twice_and_recursive_records_are_checked() {
        use apache_avro::types::Value;
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "Node", "namespace": "t", "fields": [
                {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 2}},
                {"name": "other", "type": "Id"},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
                {"name": "tags", "type": {"type": "map", "values": "string"}},
                {"name": "next", "type": ["null", "Node"]}]}"#,
        )
        .unwrap();
        let plan = Plan::compile(&schema).unwrap();
        let node = |next: Value| {
            Value::Record(vec![
                ("id".into(), Value::Fixed(2, vec![1, 2])),
                ("other".into(), Value::Fixed(2, vec![3, 4])),
                ("kind".into(), Value::Enum(1, "B".into())),
                (
                    "tags".into(),
                    Value::Map([("a".to_owned(), Value::String("x".into()))].into()),
                ),
                ("next".into(), next),
            ])
        };
        let chain = |len: usize| {
            (0..len).fold(Value::Union(0, Box::new(Value::Null)), |next, _| {
                Value::Union(1, Box::new(node(next)))
            })
        };
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .unwrap();
        let Value::Union(_, two) = chain(2) else {
            unreachable!()
        };
        let body = writer.write_value_to_vec(*two).unwrap();
        assert_eq!(plan.check(&body), Ok(()));
        for cut in 0..body.len() {
            assert!(plan.check(&body[..cut]).is_err(), "cut at {cut}");
        }
        // The enum index (zig-zag 2 = 1) is the byte after the two fixed ids.
        assert_eq!(body[4], 2);
        let mut bad_enum = body.clone();
        bad_enum[4] = 4;
        assert!(plan.check(&bad_enum).unwrap_err().contains("enum index 2"));
        let Value::Union(_, deep) = chain(MAX_DEPTH) else {
            unreachable!()
        };
        let body = writer.write_value_to_vec(*deep).unwrap();
        assert!(plan.check(&body).unwrap_err().contains("nested deeper"));
    }
}
