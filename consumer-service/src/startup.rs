//! Build the consumers and the operations endpoint, run them, stop them.
//!
//! The main consumer (group `<group>`, topic `orders`) and the retry consumer
//! (group `<group>-retry`, topics `orders.retry.N`) are two consume loops
//! with the same handler, stacked here in one visible place. Shutdown stops
//! both loops after their in-flight records settle, commits stored offsets,
//! then flushes the producer within the grace period.

use crate::handler::OrderHandler;
use crate::settings::{Role, Settings};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kafkit_events::EventCodec;
use kafkit_messaging::{
    ConsumeLoop, ConsumeMetrics, ConsumeSettings, ProducerSettings, Publisher, Stage, TopicSpec,
    ensure_topics,
};
use kafkit_telemetry::metrics::MetricsPipeline;
use shared_events::OrderPlaced;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

type OrderLoop = ConsumeLoop<OrderPlaced, OrderHandler>;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    loops: Vec<OrderLoop>,
    ops: Ops,
    grace: Duration,
}

/// What the operations endpoint needs.
#[derive(Debug, Clone)]
struct Ops {
    publisher: Publisher,
    codec: Arc<EventCodec>,
    metrics: MetricsPipeline,
    /// Destination topics the cluster does not have, checked in the background.
    missing: watch::Receiver<Vec<String>>,
}

/// How often the destination topics are looked for.
const DESTINATIONS_EVERY: Duration = Duration::from_secs(5);

/// Keeps the list of missing destination topics current (checked once
/// before this returns) and logs the fix when one goes missing: the records
/// routed there are held (an outage, nothing is lost) until it exists.
async fn watch_destinations(
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

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let kafka = settings.kafka_settings();
        let policy = settings.retry_policy();
        if settings.create_topics {
            let mut topics = vec![
                settings.topic.clone(),
                policy.dlq_topic(&settings.topic),
                settings.output_topic.clone(),
            ];
            topics.extend(policy.retry_topics(&settings.topic));
            let specs: Vec<TopicSpec> = topics
                .iter()
                .map(|t| TopicSpec::new(t, settings.partitions))
                .collect();
            if let Err(e) = ensure_topics(&kafka, &specs).await {
                tracing::warn!(error = %e, "could not create topics at start-up");
            }
        }
        let codec = Arc::new(
            EventCodec::new(settings.codec_settings())
                .context("failed to configure the registry client")?,
        );
        let publisher = Publisher::new(&kafka, &ProducerSettings::default())
            .context("failed to create the producer")?;
        let handler = OrderHandler {
            output_topic: settings.output_topic.clone(),
            allowed_currencies: settings
                .allowed_currencies
                .iter()
                .map(|c| c.trim().to_owned())
                .collect(),
            max_total_cents: settings.max_total_cents,
            faults: settings.faults.clone(),
            source: settings.event_source.clone(),
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        // Static membership: stable across restarts on one host (the ops
        // port tells two local replicas apart), or what the deployment says.
        let instance = settings.static_membership.then(|| {
            settings.group_instance_id.clone().unwrap_or_else(|| {
                let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                format!("{}-{port}", host_name())
            })
        });
        let metrics = MetricsPipeline::new("consumer-service")?;
        let meter = metrics.meter("consumer-service");
        let mut loops = Vec::new();
        let mut add = |stage: Stage, group: String, topics: Vec<String>| -> anyhow::Result<()> {
            let consume_metrics = ConsumeMetrics::new(&meter, stage, &group);
            let stage_name = match stage {
                Stage::Main => "main",
                Stage::Retry => "retry",
            };
            let consume = ConsumeSettings {
                group_id: group,
                group_instance_id: instance.as_ref().map(|i| format!("{i}-{stage_name}")),
                session_timeout: Duration::from_millis(settings.session_timeout_ms),
                topics,
                stage,
                policy: policy.clone(),
                pipeline: kafkit_messaging::Pipeline::from(&settings.pipeline),
                outage_backoff: Duration::from_millis(settings.outage_backoff_ms),
                outage_backoff_max: Duration::from_millis(settings.outage_backoff_max_ms),
                lag_interval: Duration::from_millis(settings.lag_interval_ms),
                drain_timeout: Duration::from_secs(settings.shutdown_grace_secs),
            };
            loops.push(ConsumeLoop::new(
                kafka.client_config(),
                consume,
                Arc::clone(&codec),
                publisher.clone(),
                handler.clone(),
                consume_metrics,
            )?);
            Ok(())
        };
        if matches!(settings.role, Role::Main | Role::All) {
            add(
                Stage::Main,
                settings.group.clone(),
                vec![settings.topic.clone()],
            )?;
        }
        if matches!(settings.role, Role::Retry | Role::All) {
            add(
                Stage::Retry,
                format!("{}-retry", settings.group),
                policy.retry_topics(&settings.topic),
            )?;
        }
        let mut destinations = vec![
            settings.output_topic.clone(),
            policy.dlq_topic(&settings.topic),
        ];
        destinations.extend(policy.retry_topics(&settings.topic));
        let missing = watch_destinations(publisher.clone(), destinations).await;
        let ops = Ops {
            missing,
            publisher,
            codec: Arc::clone(&codec),
            metrics,
        };
        Ok(Self {
            listener,
            loops,
            ops,
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Runs the consumers and the operations endpoint until `shutdown`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signal = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut tasks = Vec::new();
        for consume_loop in self.loops {
            tasks.push(tokio::spawn(consume_loop.run(signal(stopped.clone()))));
        }
        let publisher = self.ops.publisher.clone();
        let pipeline = self.ops.metrics.clone();
        let app = Router::new()
            .route(
                "/healthz",
                get(|| async { (StatusCode::OK, "{\"status\":\"alive\"}") }),
            )
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.ops);
        tracing::info!(%addr, "consumer-service listening");
        let server =
            axum::serve(self.listener, app).with_graceful_shutdown(signal(stopped.clone()));
        let server = tokio::spawn(async move { server.await });
        shutdown.await;
        let _ = stop.send(true);
        for task in tasks {
            task.await.context("a consume loop panicked")?;
        }
        server.await.context("the operations endpoint panicked")??;
        let flushed = publisher
            .flush(self.grace)
            .await
            .context("the producer did not flush within the grace period");
        // Last export of the counts, after everything settled.
        pipeline.shutdown();
        flushed
    }
}

/// This machine's name (a container's or pod's in a deployment).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
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
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
        .into_response()
}
