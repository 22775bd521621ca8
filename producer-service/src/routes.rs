//! The HTTP API: orders in, acknowledged events out.
//!
//! Each request is read with a size limit, checked for its content type,
//! optionally deduplicated by `Idempotency-Key`, validated into a
//! `NewOrder`, and published. A 202 is sent only with the broker's
//! acknowledgement in hand; anything that kept the event out of Kafka is a
//! 503 with `Retry-After`.

use crate::domain::{FieldError, NewOrder, validate_order};
use crate::idempotency::{Begin, IdempotencyStore, StoredAnswer};
use crate::metrics::Metrics;
use crate::problem::{PROBLEM_JSON, Problem};
use crate::settings::Settings;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use messaging::{EventPublisher, PublishError, PublishEventError};
use serde::Serialize;
use serde_json::{Value, json};
use shared_events::{EventHeaders, OrderItem, OrderPlaced};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

const JSON: &str = "application/json";
/// Seconds a caller should wait before sending a 503'd request again.
const RETRY_AFTER_SECS: u64 = 2;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub events: EventPublisher,
    pub settings: Arc<Settings>,
    pub idempotency: Arc<IdempotencyStore>,
    pub metrics: Metrics,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/batch", post(place_batch))
        .route(
            "/healthz",
            get(|| async { answer(StatusCode::OK, json!({"status": "alive"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "Not found", "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .with_state(state)
}

/// Runs each request in a server span (continuing the caller's trace when
/// it sent `traceparent`) and measures it by route and status.
async fn track_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let (traceparent, tracestate) = {
        let header = |name: &str| -> Option<String> {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header(telemetry::context::TRACEPARENT),
            header(telemetry::context::TRACESTATE),
        )
    };
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        "http.request.method" = method.as_str(),
        "http.route" = route.as_str(),
        "url.path" = path.as_str(),
        "http.response.status_code" = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    telemetry::context::set_parent(&span, traceparent.as_deref(), tracestate.as_deref());
    telemetry::context::record_ids(&span, traceparent.as_deref());
    state.metrics.request_started(&method, &route);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    state
        .metrics
        .request_finished(&method, &route, status, started.elapsed());
    response
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
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

/// Reads a JSON body: 415 for another content type, 413 past the size limit.
async fn read_body(settings: &Settings, headers: &HeaderMap, body: Body) -> Result<Bytes, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != JSON && !essence.ends_with("+json") {
        let shown = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("{content_type:?}")
        };
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("send Content-Type: application/json (got {shown})"),
        ));
    }
    axum::body::to_bytes(body, settings.max_body_bytes)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                    format!("the body may be at most {} bytes", settings.max_body_bytes),
                )
            } else {
                Problem::new(StatusCode::BAD_REQUEST, "Unreadable body", e.to_string())
            }
        })
}

fn parse_json(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Malformed JSON",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// Runs `handle` once per `Idempotency-Key` and body; replays its answer after.
async fn idempotent<F, Fut>(
    state: &AppState,
    route: &str,
    headers: &HeaderMap,
    body: &Bytes,
    handle: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some(raw_key) = headers.get("idempotency-key") else {
        return handle().await;
    };
    let key = match raw_key.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= 255 => key,
        _ => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Invalid Idempotency-Key",
                "the key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    match state.idempotency.begin(route, key, body) {
        Begin::Replay(stored) => {
            let mut response = (
                stored.status,
                [(header::CONTENT_TYPE, stored.content_type)],
                stored.body,
            )
                .into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Begin::Mismatch => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key reused",
            "this key was already used with a different request body",
        )
        .into_response(),
        Begin::InProgress => Problem::new(
            StatusCode::CONFLICT,
            "Request in progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response(),
        Begin::Run(claim) => {
            let response = handle().await;
            let (parts, body) = response.into_parts();
            // Our own answers are small JSON documents.
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let content_type = match parts
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes())
            {
                Some(b"application/problem+json") => PROBLEM_JSON,
                _ => JSON,
            };
            claim.finish(StoredAnswer {
                status: parts.status,
                content_type,
                body: bytes.clone(),
            });
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

async fn place_order(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(&state.settings, &headers, body).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    idempotent(&state, "/v1/orders", &headers, &body, || async {
        let order = match parse_json(&body)
            .and_then(|v| validate_order(&v, "").map_err(Problem::invalid))
        {
            Ok(order) => order,
            Err(problem) => return problem.into_response(),
        };
        match accept(&state, order).await {
            Ok(accepted) => answer(StatusCode::ACCEPTED, json!(accepted)),
            Err(problem) => problem.into_response(),
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
    let body = match read_body(&state.settings, &headers, body).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    idempotent(&state, "/v1/orders/batch", &headers, &body, || async {
        match parse_json(&body).and_then(|v| batch_items(&v, state.settings.max_batch_orders)) {
            Ok(items) => run_batch(&state, items).await,
            Err(problem) => problem.into_response(),
        }
    })
    .await
}

/// The `orders` array of a batch body, checked for shape and size.
fn batch_items(body: &Value, max: usize) -> Result<Vec<Value>, Problem> {
    let invalid = |field: &str, message: String| {
        Problem::invalid(vec![FieldError {
            field: field.to_owned(),
            message,
        }])
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
async fn run_batch(state: &AppState, items: Vec<Value>) -> Response {
    let checked: Vec<Result<NewOrder, Vec<FieldError>>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| validate_order(item, &format!("orders[{i}]")))
        .collect();
    let results: Vec<ItemResult> = futures::future::join_all(checked.into_iter().enumerate().map(
        |(index, item)| async move {
            match item {
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
            }
        },
    ))
    .await;
    let count = |f: fn(&ItemResult) -> bool| results.iter().filter(|r| f(r)).count();
    let accepted = count(|r| matches!(r, ItemResult::Accepted { .. }));
    let unavailable = count(|r| matches!(r, ItemResult::Unavailable { .. }));
    let status = if accepted == results.len() {
        StatusCode::ACCEPTED
    } else if accepted == 0 && unavailable > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::MULTI_STATUS
    };
    let body = json!({
        "accepted": accepted,
        "invalid": count(|r| matches!(r, ItemResult::Invalid { .. })),
        "unavailable": unavailable,
        "rejected": count(|r| matches!(r, ItemResult::Rejected { .. })),
        "results": results,
    });
    let mut response = answer(status, body);
    if unavailable > 0 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    let timeout = Duration::from_secs(2);
    let kafka = state
        .events
        .publisher()
        .check_broker(timeout)
        .await
        .map_err(|e| e.to_string());
    let registry = state.events.codec().check_registry().await;
    match (kafka, registry) {
        (Ok(()), Ok(())) => answer(
            StatusCode::OK,
            json!({"status": "ready", "kafka": "ok", "schema_registry": "ok"}),
        ),
        (kafka, registry) => {
            let mut failures = Vec::new();
            if let Err(e) = kafka {
                failures.push(format!("kafka: {e}"));
            }
            if let Err(e) = registry {
                failures.push(format!("schema registry: {e}"));
            }
            Problem::unavailable(failures.join("; "), RETRY_AFTER_SECS).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
