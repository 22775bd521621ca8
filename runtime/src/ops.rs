//! The operations endpoint every service gets: `/healthz` (the process
//! answers), `/readyz` (Kafka, the schema registry and every destination
//! topic are there, else 503 problem+json with each reason) and `/metrics`
//! (Prometheus text of the service's meters).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kafkit_events::EventCodec;
use kafkit_messaging::Publisher;
use kafkit_telemetry::metrics::MetricsPipeline;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What the operations endpoint reads.
#[derive(Debug, Clone)]
pub(crate) struct Ops {
    pub publisher: Publisher,
    pub codec: Arc<EventCodec>,
    pub metrics: MetricsPipeline,
    /// Destination topics the cluster does not have, checked in the background.
    pub missing: watch::Receiver<Vec<String>>,
}

/// How often the destination topics are looked for.
const DESTINATIONS_EVERY: Duration = Duration::from_secs(5);

/// Keeps the list of missing destination topics current (checked once
/// before this returns) and logs the fix when one goes missing: the records
/// routed there are held (an outage, nothing is lost) until it exists.
pub(crate) async fn watch_destinations(
    publisher: Publisher,
    destinations: Vec<String>,
) -> watch::Receiver<Vec<String>> {
    let check = move || {
        let (publisher, destinations) = (publisher.clone(), destinations.clone());
        async move {
            publisher
                .missing_topics(&destinations, Duration::from_secs(2))
                .await
                .ok()
        }
    };
    let (states, state) = watch::channel(Vec::new());
    let report = move |states: &watch::Sender<Vec<String>>, missing: Vec<String>| {
        states.send_if_modified(|now| {
            let changed = *now != missing;
            if changed && !missing.is_empty() {
                tracing::error!(
                    missing = ?missing,
                    "destination topics do not exist: records routed there are held until they do; create them (kafkit topics create <main topic> ..., or start with CREATE_TOPICS=true)"
                );
            } else if changed {
                tracing::info!("every destination topic exists");
            }
            *now = missing;
            changed
        });
    };
    if let Some(missing) = check().await {
        report(&states, missing);
    }
    tokio::spawn(async move {
        while !states.is_closed() {
            tokio::time::sleep(DESTINATIONS_EVERY).await;
            // A failed look (no broker) says nothing about the topics.
            if let Some(missing) = check().await {
                report(&states, missing);
            }
        }
    });
    state
}

pub(crate) fn router(ops: Ops) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { (StatusCode::OK, "{\"status\":\"alive\"}") }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let kafka = ops
        .publisher
        .check_broker(Duration::from_secs(2))
        .await
        .map_err(|e| format!("kafka: {e}"));
    let registry = ops
        .codec
        .check_registry()
        .await
        .map_err(|e| format!("schema registry: {e}"));
    let missing = ops.missing.borrow().clone();
    let destinations = if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "destination topics missing: {}; records routed there are held until they exist (kafkit topics create, or CREATE_TOPICS=true)",
            missing.join(", ")
        ))
    };
    let failures: Vec<String> = [kafka, registry, destinations]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failures.is_empty() {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"status\":\"ready\"}",
        )
            .into_response()
    } else {
        let body = serde_json::json!({"type": "about:blank", "title": "Not ready", "status": 503, "detail": failures.join("; ")});
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    prometheus_text(ops.metrics.render())
}

/// A `/metrics` answer: Prometheus text exposition format.
pub(crate) fn prometheus_text(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// What a service's `main` runs: telemetry set up for `service_name`, then
/// `run` (build and serve until Ctrl-C or SIGTERM), then the last export.
pub(crate) async fn with_telemetry(
    service_name: &str,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let telemetry = kafkit_telemetry::init(kafkit_telemetry::Options {
        service_name: service_name.to_owned(),
        default_filter: "info".into(),
        stderr: false,
    })?;
    let result = run.await;
    telemetry.shutdown();
    result
}
