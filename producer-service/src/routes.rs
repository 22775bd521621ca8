//! The HTTP API: orders in, acknowledged events out.
//!
//! Each request is read with a size limit, checked for its content type,
//! optionally deduplicated by `Idempotency-Key`, validated into a
//! `NewOrder`, and published in a task of its own (a caller that hangs up
//! cannot cancel a publish half way). A 202 is sent only with the broker's
//! acknowledgement in hand; an event kept out of Kafka is a 503 with
//! `Retry-After` (at once when no broker is reachable); no answer by the
//! deadline (`PRODUCE_TIMEOUT_MS` + 0.4 s) or brokers lost meanwhile is a 503
//! `outcome-unknown`, and the key's entry keeps the real answer for the retry.

use crate::domain::{NewOrder, validate_order};
use crate::settings::Settings;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kafkit_events::EventHeaders;
use kafkit_messaging::{BrokerState, EventPublisher, PublishError, PublishEventError};
use kafkit_runtime::http::{
    FieldError, Finality, HttpMetrics, Ingest, Problem, StoredAnswer, parse_json, read_json_body,
};
use kafkit_runtime::{IngestParts, RETRY_AFTER_SECS};
use serde::Serialize;
use serde_json::{Value, json};
use shared_events::{OrderItem, OrderPlaced};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const JSON: &str = "application/json";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub events: EventPublisher,
    /// Runs each publishing request: idempotent by key, answered by the deadline.
    pub ingest: Ingest,
    pub metrics: HttpMetrics,
    pub settings: Arc<Settings>,
}

/// The orders API and its OpenAPI document (`/openapi.json`); the runtime
/// adds `/healthz`, `/readyz`, `/metrics` and the problem+json fallbacks.
pub fn router(parts: IngestParts, settings: Settings) -> Router {
    let state = AppState {
        events: parts.events,
        ingest: parts.ingest,
        metrics: parts.metrics,
        settings: Arc::new(settings),
    };
    let openapi = crate::openapi::document(&state.settings).to_string();
    Router::new()
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/batch", post(place_batch))
        .route(
            "/openapi.json",
            get(|| async move { ([(header::CONTENT_TYPE, JSON)], openapi) }),
        )
        .with_state(state)
}

/// The coordinates of an accepted event.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub order_id: String,
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A JSON answer to keep.
fn stored(status: StatusCode, body: &Value, finality: Finality) -> StoredAnswer {
    StoredAnswer {
        status,
        content_type: JSON,
        body: body.to_string().into(),
        retry_after: None,
        finality,
    }
}

async fn place_order(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body(&headers, body, state.settings.runtime.max_body_bytes).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    let (task_state, task_body) = (state.clone(), body.clone());
    state
        .ingest
        .run("/v1/orders", &headers, &body, move |_| async move {
            let order = match parse_json(&task_body).and_then(|v| {
                validate_order(&v, "").map_err(|e| Problem::invalid("Invalid order", e))
            }) {
                Ok(order) => order,
                Err(problem) => return problem.stored(),
            };
            match accept(&task_state, order).await {
                Ok(accepted) => stored(StatusCode::ACCEPTED, &json!(accepted), Finality::Final),
                Err(problem) => problem.stored(),
            }
        })
        .await
}

/// Publishes one valid order and waits for the broker.
async fn accept(state: &AppState, order: NewOrder) -> Result<Accepted, Problem> {
    let order_id = uuid::Uuid::new_v4().to_string();
    let headers = EventHeaders::new::<OrderPlaced>(state.settings.event_source.clone());
    let placed_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let event = OrderPlaced {
        order_id: order_id.clone(),
        customer_id: order.customer_id,
        items: order
            .items
            .into_iter()
            .map(|i| OrderItem {
                sku: i.sku,
                quantity: i.quantity,
                unit_price_cents: i.unit_price_cents,
            })
            .collect(),
        currency: order.currency,
        placed_at,
        note: order.note,
    };
    let topic = &state.settings.topic;
    if let BrokerState::Unreachable(why) = state.ingest.brokers().state() {
        state
            .metrics
            .event_sent(topic, Some("unavailable"), Duration::ZERO);
        return Err(Problem::unavailable(
            format!("no Kafka broker is reachable ({why}); nothing was published"),
            RETRY_AFTER_SECS,
        ));
    }
    let started = std::time::Instant::now();
    let result = state
        .events
        .publish_event(topic, &order_id, &event, &headers)
        .await;
    match result {
        Ok(delivered) => {
            state.metrics.event_sent(topic, None, started.elapsed());
            tracing::debug!(
                topic,
                partition = delivered.partition,
                offset = delivered.offset,
                order_id,
                "order accepted"
            );
            Ok(Accepted {
                order_id,
                event_id: headers.id,
                topic: delivered.topic,
                partition: delivered.partition,
                offset: delivered.offset,
            })
        }
        Err(error) => {
            let reason = if error.is_transient() {
                "unavailable"
            } else {
                "rejected"
            };
            state
                .metrics
                .event_sent(topic, Some(reason), started.elapsed());
            Err(refusal(error))
        }
    }
}

/// Why an event is not in Kafka, as an answer.
fn refusal(error: PublishEventError) -> Problem {
    tracing::warn!(error = %error, "order not accepted");
    match error {
        e if e.is_transient() => Problem::unavailable(e.to_string(), RETRY_AFTER_SECS),
        PublishEventError::Publish(e @ PublishError::Rejected { .. }) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Event refused by the broker",
            e.to_string(),
        ),
        // The registry refused our own compiled-in schema: a deployment problem, not the caller's.
        e => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Event schema refused",
            e.to_string(),
        ),
    }
}

/// One item of a batch answer.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum ItemResult {
    Accepted {
        index: usize,
        #[serde(flatten)]
        accepted: Accepted,
    },
    Invalid {
        index: usize,
        errors: Vec<FieldError>,
    },
    Unavailable {
        index: usize,
        detail: String,
    },
    Rejected {
        index: usize,
        detail: String,
    },
}

async fn place_batch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_json_body(&headers, body, state.settings.runtime.max_body_bytes).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    let (task_state, task_body) = (state.clone(), body.clone());
    state
        .ingest
        .run(
            "/v1/orders/batch",
            &headers,
            &body,
            move |previous| async move {
                match parse_json(&task_body)
                    .and_then(|v| batch_items(&v, task_state.settings.max_batch_orders))
                {
                    Ok(items) => run_batch(&task_state, items, previous).await,
                    Err(problem) => problem.stored(),
                }
            },
        )
        .await
}

/// The `orders` array of a batch body, checked for shape and size.
fn batch_items(body: &Value, max: usize) -> Result<Vec<Value>, Problem> {
    let invalid = |field: &str, message: String| {
        Problem::invalid(
            "Invalid order",
            vec![FieldError {
                field: field.to_owned(),
                message,
            }],
        )
    };
    let Some(object) = body.as_object() else {
        return Err(invalid(
            "",
            "must be a JSON object with an \"orders\" array".into(),
        ));
    };
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "orders") {
        return Err(invalid(unknown, "unknown field; expected orders".into()));
    }
    match object.get("orders") {
        Some(Value::Array(orders)) if orders.is_empty() => {
            Err(invalid("orders", "must contain at least one order".into()))
        }
        Some(Value::Array(orders)) if orders.len() > max => Err(invalid(
            "orders",
            format!("must contain at most {max} orders, got {}", orders.len()),
        )),
        Some(Value::Array(orders)) => Ok(orders.clone()),
        _ => Err(invalid("orders", "is required and must be an array".into())),
    }
}

/// Valid items are published concurrently; invalid ones do not block them.
/// Resuming a partial answer (`previous`), only its unavailable items run
/// again; the others keep their first result (and order id).
async fn run_batch(
    state: &AppState,
    items: Vec<Value>,
    previous: Option<StoredAnswer>,
) -> StoredAnswer {
    let earlier: Vec<Value> = previous
        .and_then(|p| serde_json::from_slice::<Value>(&p.body).ok())
        .and_then(|mut body| body.get_mut("results").map(Value::take))
        .and_then(|results| serde_json::from_value(results).ok())
        .unwrap_or_default();
    let settled = |index: usize| {
        earlier
            .get(index)
            .filter(|r| r["index"] == index && r["status"] != "unavailable")
            .cloned()
    };
    let results: Vec<Value> =
        futures::future::join_all(items.iter().enumerate().map(|(index, item)| {
            let kept = settled(index);
            async move {
                if let Some(kept) = kept {
                    return kept;
                }
                let result = match validate_order(item, &format!("orders[{index}]")) {
                    Err(errors) => ItemResult::Invalid { index, errors },
                    Ok(order) => match accept(state, order).await {
                        Ok(accepted) => ItemResult::Accepted { index, accepted },
                        Err(problem) if problem.status == StatusCode::SERVICE_UNAVAILABLE => {
                            ItemResult::Unavailable {
                                index,
                                detail: problem.detail,
                            }
                        }
                        Err(problem) => ItemResult::Rejected {
                            index,
                            detail: problem.detail,
                        },
                    },
                };
                json!(result)
            }
        }))
        .await;
    let count = |status: &str| results.iter().filter(|r| r["status"] == status).count();
    let accepted = count("accepted");
    let unavailable = count("unavailable");
    let (status, finality) = if accepted == results.len() {
        (StatusCode::ACCEPTED, Finality::Final)
    } else if accepted == 0 && unavailable > 0 {
        // Nothing published: a retry runs the whole batch again.
        (StatusCode::SERVICE_UNAVAILABLE, Finality::NotTaken)
    } else if unavailable > 0 {
        // Some published: a retry with the key runs the rest only.
        (StatusCode::MULTI_STATUS, Finality::Partial)
    } else {
        (StatusCode::MULTI_STATUS, Finality::Final)
    };
    let body = json!({
        "accepted": accepted,
        "invalid": count("invalid"),
        "unavailable": unavailable,
        "rejected": count("rejected"),
        "results": results,
    });
    StoredAnswer {
        retry_after: (unavailable > 0).then_some(RETRY_AFTER_SECS),
        ..stored(status, &body, finality)
    }
}
