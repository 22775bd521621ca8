//! Validation at the edge: a JSON body becomes a `NewOrder` or the full list
//! of what is wrong with it, by field.
//!
//! The body is read as a JSON value and checked field by field (rather than
//! deserialized straight into a struct) so that every broken rule is
//! reported at once, unknown fields included, instead of only the first.

use serde_json::{Map, Value};

pub const MAX_ID_LEN: usize = 64;
pub const MAX_NOTE_LEN: usize = 500;
pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;

pub use kafkit_runtime::http::FieldError;

/// An order that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: String,
    pub items: Vec<NewItem>,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

struct Checker<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn path(&self, field: &str) -> String {
        match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_owned(),
            (false, true) => self.prefix.to_owned(),
            (false, false) if field.starts_with('[') => format!("{}{field}", self.prefix),
            (false, false) => format!("{}.{field}", self.prefix),
        }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        let field = self.path(field);
        self.errors.push(FieldError {
            field,
            message: message.into(),
        });
    }

    fn object<'v>(&mut self, field: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.fail(field, format!("must be a JSON object, got {}", kind(value)));
        }
        object
    }

    fn unknown_fields(&mut self, at: &str, object: &Map<String, Value>, known: &[&str]) {
        for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
            let field = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            self.fail(
                &field,
                format!("unknown field; expected one of {}", known.join(", ")),
            );
        }
    }

    fn text(&mut self, field: &str, value: Option<&Value>, max: usize) -> Option<String> {
        match value {
            None | Some(Value::Null) => {
                self.fail(field, "is required");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.fail(field, "must not be empty");
                None
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                self.fail(
                    field,
                    format!(
                        "must be at most {max} characters, got {}",
                        s.chars().count()
                    ),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.fail(field, format!("must be a string, got {}", kind(other)));
                None
            }
        }
    }

    fn integer(&mut self, field: &str, value: Option<&Value>, min: i64, max: i64) -> Option<i64> {
        match value {
            None | Some(Value::Null) => {
                self.fail(field, "is required");
                None
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if i < min => {
                    self.fail(field, format!("must be at least {min}, got {i}"));
                    None
                }
                Some(i) if i > max => {
                    self.fail(field, format!("must be at most {max}, got {i}"));
                    None
                }
                Some(i) => Some(i),
                None => {
                    self.fail(
                        field,
                        format!("must be a whole number from {min} to {max}, got {n}"),
                    );
                    None
                }
            },
            Some(other) => {
                self.fail(
                    field,
                    format!("must be a whole number, got {}", kind(other)),
                );
                None
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks one order. `prefix` is prepended to field paths (`orders[3]` in a batch).
pub fn validate_order(value: &Value, prefix: &str) -> Result<NewOrder, Vec<FieldError>> {
    let mut check = Checker {
        prefix,
        errors: Vec::new(),
    };
    let Some(body) = check.object("", value) else {
        return Err(check.errors);
    };
    check.unknown_fields("", body, &["customer_id", "items", "currency", "note"]);
    let customer_id = check.text("customer_id", body.get("customer_id"), MAX_ID_LEN);
    let currency = match check.text("currency", body.get("currency"), 3) {
        Some(code) if iso_currency::Currency::from_code(&code).is_some() => Some(code),
        Some(code) => {
            check.fail(
                "currency",
                format!("{code:?} is not an ISO 4217 currency code (use upper case, e.g. EUR)"),
            );
            None
        }
        None => None,
    };
    let note = match body.get("note") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.chars().count() > MAX_NOTE_LEN => {
            check.fail(
                "note",
                format!(
                    "must be at most {MAX_NOTE_LEN} characters, got {}",
                    s.chars().count()
                ),
            );
            None
        }
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(other) => {
            check.fail(
                "note",
                format!("must be a string or null, got {}", kind(other)),
            );
            None
        }
    };
    let items = match body.get("items") {
        None | Some(Value::Null) => {
            check.fail("items", "is required");
            None
        }
        Some(Value::Array(items)) if items.is_empty() => {
            check.fail("items", "must contain at least one item");
            None
        }
        Some(Value::Array(items)) if items.len() > MAX_ITEMS => {
            check.fail(
                "items",
                format!(
                    "must contain at most {MAX_ITEMS} items, got {}",
                    items.len()
                ),
            );
            None
        }
        Some(Value::Array(items)) => {
            let parsed: Vec<Option<NewItem>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| validate_item(&mut check, i, item))
                .collect();
            parsed.into_iter().collect::<Option<Vec<NewItem>>>()
        }
        Some(other) => {
            check.fail("items", format!("must be an array, got {}", kind(other)));
            None
        }
    };
    match (customer_id, items, currency, note, check.errors.is_empty()) {
        (Some(customer_id), Some(items), Some(currency), Some(note), true) => Ok(NewOrder {
            customer_id,
            items,
            currency,
            note,
        }),
        _ => Err(check.errors),
    }
}

fn validate_item(check: &mut Checker<'_>, index: usize, item: &Value) -> Option<NewItem> {
    let at = format!("items[{index}]");
    let object = check.object(&at, item)?;
    check.unknown_fields(&at, object, &["sku", "quantity", "unit_price_cents"]);
    let sku = check.text(&format!("{at}.sku"), object.get("sku"), MAX_ID_LEN);
    let quantity = check.integer(
        &format!("{at}.quantity"),
        object.get("quantity"),
        1,
        MAX_QUANTITY,
    );
    let price = check.integer(
        &format!("{at}.unit_price_cents"),
        object.get("unit_price_cents"),
        0,
        i64::MAX,
    );
    Some(NewItem {
        sku: sku?,
        quantity: i32::try_from(quantity?).ok()?,
        unit_price_cents: price?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(result: Result<NewOrder, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_valid_order_becomes_a_new_order() {
        let order = validate_order(
            &json!({"customer_id": "c1", "items": [{"sku": "A", "quantity": 2, "unit_price_cents": 0}], "currency": "EUR"}),
            "",
        )
        .unwrap();
        assert_eq!(
            order.items[0],
            NewItem {
                sku: "A".into(),
                quantity: 2,
                unit_price_cents: 0
            }
        );
        assert_eq!(order.note, None);
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let body = json!({
            "customer_id": "x".repeat(65),
            "items": [
                {"sku": "", "quantity": 0, "unit_price_cents": -1},
                {"sku": "B", "quantity": 1.5, "unit_price_cents": "9", "colour": "red"},
                7
            ],
            "currency": "eur",
            "note": 12,
            "coupon": "FREE"
        });
        assert_eq!(
            fields(validate_order(&body, "")),
            [
                "coupon",
                "customer_id",
                "currency",
                "note",
                "items[0].sku",
                "items[0].quantity",
                "items[0].unit_price_cents",
                "items[1].colour",
                "items[1].quantity",
                "items[1].unit_price_cents",
                "items[2]"
            ]
        );
    }

    #[test]
    fn missing_and_empty_things_are_named() {
        assert_eq!(
            fields(validate_order(&json!({}), "")),
            ["customer_id", "currency", "items"]
        );
        let empty = json!({"customer_id": "c", "items": [], "currency": "USD"});
        assert_eq!(
            fields(validate_order(&empty, "orders[4]")),
            ["orders[4].items"]
        );
        assert_eq!(fields(validate_order(&json!([1]), "")), [""]);
        let unknown_code = json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 1, "unit_price_cents": 1}], "currency": "XYZ"});
        assert_eq!(fields(validate_order(&unknown_code, "")), ["currency"]);
    }
}
