//! The operations endpoint every service gets, one router with the same
//! JSON everywhere: `/healthz` (the process answers), `/readyz` (each of
//! the service's checks, else 503 problem+json naming each reason) and
//! `/metrics` (Prometheus text of the service's meters).

use crate::RETRY_AFTER_SECS;
use crate::http::Problem;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use kafkit_events::EventCodec;
use kafkit_messaging::Publisher;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

/// One condition `/readyz` reports: its name in the answer and how to look
/// at it now (an answer at once, or within a short timeout).
#[derive(Clone)]
pub(crate) struct Check {
    name: &'static str,
    look: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl Check {
    pub(crate) fn new<F, Fut>(name: &'static str, look: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            look: Arc::new(move || Box::pin(look())),
        }
    }
}

/// What the operations routes serve.
#[derive(Clone)]
struct Endpoint {
    checks: Arc<[Check]>,
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

/// The operations routes, the same JSON in every service:
/// - `GET /healthz`: `200 {"status":"alive"}` while the process answers;
/// - `GET /readyz`: `200 {"status":"ready","checks":{"kafka":"ok",...}}`, or
///   `503` problem+json of type [`NOT_READY`] whose `detail` names each
///   failed check and why, with `Retry-After`;
/// - `GET /metrics`: Prometheus text of `metrics()`.
pub(crate) fn router(
    checks: Vec<Check>,
    metrics: impl Fn() -> String + Send + Sync + 'static,
) -> Router {
    let endpoint = Endpoint {
        checks: checks.into(),
        metrics: Arc::new(metrics),
    };
    Router::new()
        .route(
            "/healthz",
            get(|| async { json(StatusCode::OK, &serde_json::json!({"status": "alive"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(endpoint): State<Endpoint>| async move {
            prometheus_text((endpoint.metrics)())
        }))
        .with_state(endpoint)
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn readyz(State(endpoint): State<Endpoint>) -> Response {
    let looks = endpoint.checks.iter().map(|check| (check.look)());
    let states = futures::future::join_all(looks).await;
    let mut checks = serde_json::Map::new();
    let mut failures = Vec::new();
    for (check, state) in endpoint.checks.iter().zip(states) {
        let shown = match state {
            Ok(()) => "ok".to_owned(),
            Err(why) => {
                failures.push(format!("{}: {why}", check.name));
                why
            }
        };
        checks.insert(check.name.to_owned(), shown.into());
    }
    if failures.is_empty() {
        json(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "checks": checks}),
        )
    } else {
        Problem::not_ready(failures.join("; "), RETRY_AFTER_SECS).into_response()
    }
}

/// The consumer service's conditions: a broker answers, the registry
/// answers, and every destination topic (retry tiers, DLQ, outputs) exists.
pub(crate) fn consumer_checks(
    publisher: Publisher,
    codec: Arc<EventCodec>,
    missing: watch::Receiver<Vec<String>>,
) -> Vec<Check> {
    vec![
        Check::new("kafka", move || {
            let publisher = publisher.clone();
            async move {
                publisher
                    .check_broker(Duration::from_secs(2))
                    .await
                    .map_err(|e| e.to_string())
            }
        }),
        Check::new("schema_registry", move || {
            let codec = Arc::clone(&codec);
            async move { codec.check_registry().await.map_err(|e| e.to_string()) }
        }),
        Check::new("destinations", move || {
            let missing = missing.borrow().clone();
            async move {
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "topics missing: {}; records routed there are held until they exist (kafkit topics create, or CREATE_TOPICS=true)",
                        missing.join(", ")
                    ))
                }
            }
        }),
    ]
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

/// What a service's `main` runs: telemetry set up for `name`, the service
/// built, then served by `serve` until Ctrl-C or SIGTERM, then the last
/// export of spans.
pub(crate) async fn run_main<S, Fut>(
    name: &str,
    build: impl Future<Output = anyhow::Result<S>>,
    serve: impl FnOnce(S, BoxFuture<'static, ()>) -> Fut,
) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    let telemetry = kafkit_telemetry::init(kafkit_telemetry::Options {
        service_name: name.to_owned(),
        default_filter: "info".into(),
        stderr: false,
    })?;
    let result = match build.await {
        Ok(service) => serve(service, Box::pin(kafkit_messaging::shutdown_signal())).await,
        Err(e) => Err(e),
    };
    telemetry.shutdown();
    result
}

/// Where a bound listener answers.
pub(crate) fn bound_addr(listener: &tokio::net::TcpListener) -> std::net::SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
}
