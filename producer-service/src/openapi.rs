//! The OpenAPI 3.1 document of producer-service, served at `/openapi.json`.
//!
//! Built from the code it describes, not written beside it: the limits come
//! from `domain`'s constants and the running settings (batch size, body
//! size), the currencies from the same ISO 4217 list the validator asks,
//! the header and problem names from the runtime. `docs/contracts/openapi.json`
//! is this document for the default settings; a test keeps the two equal,
//! and the suite runs schemathesis against the running service with it.

use crate::domain::{MAX_ID_LEN, MAX_ITEMS, MAX_NOTE_LEN, MAX_QUANTITY};
use crate::settings::Settings;
use kafkit_runtime::http::{NOT_READY, NOT_TAKEN, OUTCOME_UNKNOWN, PROBLEM_JSON};
use serde_json::{Value, json};

/// Every code `validate_order` accepts: the ISO 4217 alphabetic codes.
pub fn currencies() -> Vec<String> {
    let letters = || b'A'..=b'Z';
    letters()
        .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| [a, b, c])))
        .filter_map(|code| String::from_utf8(code.to_vec()).ok())
        .filter(|code| iso_currency::Currency::from_code(code).is_some())
        .collect()
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

fn retry_after() -> Value {
    json!({
        "description": "Seconds after which sending the same request again makes sense",
        "schema": {"type": "integer", "minimum": 0},
    })
}

/// The answers every publishing route may give besides its success.
fn publishing_errors() -> Value {
    json!({
        "400": problem("Malformed JSON, a broken rule (listed by field in `errors`) or an invalid Idempotency-Key; nothing was published"),
        "413": problem("The body is larger than MAX_BODY_BYTES; nothing was published"),
        "415": problem("The Content-Type is not application/json (or +json); nothing was published"),
        "422": problem("The Idempotency-Key was used with another body, or the broker refused the record (too large, invalid)"),
        "500": problem("The schema registry refused the service's own compiled-in schema: a deployment problem, never the caller's input"),
    })
}

/// The document for a service running with `settings`.
pub fn document(settings: &Settings) -> Value {
    let idempotency_key = json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes a retry safe: within IDEMPOTENCY_WINDOW_SECS the same key and body get the first answer again (with `Idempotent-Replayed: true`) and nothing new is published. Keys are per route and per replica.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    });
    let replayed = json!({
        "description": "`true` when this is the answer to an earlier request with the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    });
    let mut order_errors = publishing_errors();
    order_errors["503"] = json!({
        "description": format!("Nothing was published (type `{NOT_TAKEN}`: no broker or registry could take it; retrying is safe), or no acknowledgement came in time (type `{OUTCOME_UNKNOWN}`: it may still be stored; the same Idempotency-Key then gets the real answer)"),
        "headers": {"Retry-After": retry_after()},
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    });
    let mut place_order = order_errors.clone();
    place_order["202"] = json!({
        "description": "The broker acknowledged the OrderPlaced event",
        "headers": {"Idempotent-Replayed": replayed},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
    });
    let batch_result = json!({"$ref": "#/components/schemas/BatchResult"});
    let mut place_batch = publishing_errors();
    place_batch["202"] = json!({
        "description": "Every order was accepted",
        "headers": {"Idempotent-Replayed": replayed},
        "content": {"application/json": {"schema": batch_result}},
    });
    place_batch["207"] = json!({
        "description": "Some orders were accepted and some were not: one result per order, in order. With unavailable ones, the same batch with the same Idempotency-Key runs those again only",
        "headers": {"Idempotent-Replayed": replayed, "Retry-After": retry_after()},
        "content": {"application/json": {"schema": batch_result}},
    });
    place_batch["503"] = json!({
        "description": "None was accepted and some were unavailable (the results say which), or no answer came in time",
        "headers": {"Retry-After": retry_after()},
        "content": {
            "application/json": {"schema": batch_result},
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}},
        },
    });
    let json_body = |schema: &str| {
        json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "producer-service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Orders in, acknowledged OrderPlaced events out (topic `{}`). A 202 is given only with the broker's acknowledgement; every error is application/problem+json. Bodies up to {} bytes.", settings.topic, settings.runtime.max_body_bytes),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": {
            "/v1/orders": {"post": {
                "operationId": "placeOrder",
                "summary": "Validate an order and publish OrderPlaced",
                "parameters": [idempotency_key],
                "requestBody": json_body("Order"),
                "responses": place_order,
            }},
            "/v1/orders/batch": {"post": {
                "operationId": "placeOrders",
                "summary": "Validate and publish several orders; invalid ones do not block the others",
                "parameters": [idempotency_key],
                "requestBody": json_body("Batch"),
                "responses": place_batch,
            }},
            "/healthz": {"get": {
                "operationId": "healthz",
                "summary": "The process answers",
                "responses": {"200": {
                    "description": "Alive",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Alive"}}},
                }},
            }},
            "/readyz": {"get": {
                "operationId": "readyz",
                "summary": "Can publish now: a broker answers and the event's schema id is known",
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}},
                    },
                    "503": {
                        "description": format!("Not ready (type `{NOT_READY}`): the detail names each failed check"),
                        "headers": {"Retry-After": retry_after()},
                        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    },
                },
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition of the service's metrics",
                "responses": {"200": {
                    "description": "Metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {
                    "description": "The OpenAPI document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }},
            }},
        },
        "components": {"schemas": {
            "Order": {
                "type": "object",
                "additionalProperties": false,
                "required": ["customer_id", "items", "currency"],
                "properties": {
                    "customer_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "description": "Not blank"},
                    "items": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": {"$ref": "#/components/schemas/OrderItem"}},
                    "currency": {"type": "string", "enum": currencies(), "description": "ISO 4217 alphabetic code, upper case"},
                    "note": {"type": ["string", "null"], "maxLength": MAX_NOTE_LEN},
                },
            },
            "OrderItem": {
                "type": "object",
                "additionalProperties": false,
                "required": ["sku", "quantity", "unit_price_cents"],
                "properties": {
                    "sku": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN, "description": "Not blank"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                    "unit_price_cents": {"type": "integer", "minimum": 0, "maximum": i64::MAX},
                },
            },
            "Batch": {
                "type": "object",
                "additionalProperties": false,
                "required": ["orders"],
                "properties": {"orders": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_batch_orders,
                    "items": {"description": "An order; each is validated on its own, so an invalid one is reported in its result instead of refusing the batch"},
                }},
            },
            "Accepted": {
                "type": "object",
                "required": ["order_id", "event_id", "topic", "partition", "offset"],
                "properties": {
                    "order_id": {"type": "string", "format": "uuid", "description": "The record key"},
                    "event_id": {"type": "string", "format": "uuid", "description": "The ce_id header"},
                    "topic": {"type": "string"},
                    "partition": {"type": "integer"},
                    "offset": {"type": "integer"},
                },
            },
            "BatchResult": {
                "type": "object",
                "required": ["accepted", "invalid", "unavailable", "rejected", "results"],
                "properties": {
                    "accepted": {"type": "integer", "minimum": 0},
                    "invalid": {"type": "integer", "minimum": 0},
                    "unavailable": {"type": "integer", "minimum": 0},
                    "rejected": {"type": "integer", "minimum": 0},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/BatchItemResult"}},
                },
            },
            "BatchItemResult": {
                "type": "object",
                "required": ["index", "status"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "status": {"type": "string", "enum": ["accepted", "invalid", "unavailable", "rejected"]},
                    "order_id": {"type": "string"},
                    "event_id": {"type": "string"},
                    "topic": {"type": "string"},
                    "partition": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                    "detail": {"type": "string"},
                },
            },
            "FieldError": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
                },
            },
            "Alive": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"const": "alive"}},
            },
            "Ready": {
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                    "status": {"const": "ready"},
                    "checks": {"type": "object", "additionalProperties": {"const": "ok"}},
                },
            },
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate_order;

    #[test]
    fn the_currency_list_is_what_the_validator_accepts() {
        let codes = currencies();
        assert!(codes.len() > 150, "{} codes", codes.len());
        for code in ["EUR", "USD", "GBP", "JPY"] {
            assert!(codes.iter().any(|c| c == code), "{code}");
        }
        let order = |currency: &str| json!({"customer_id": "c", "items": [{"sku": "s", "quantity": 1, "unit_price_cents": 0}], "currency": currency});
        for code in &codes {
            assert!(validate_order(&order(code), "").is_ok(), "{code}");
        }
        for code in ["EURO", "eur", "XYZ", "AAA"] {
            assert!(!codes.iter().any(|c| c == code), "{code}");
            assert!(validate_order(&order(code), "").is_err(), "{code}");
        }
    }
}
