//! From routes and [`IngestArgs`] to a running HTTP service that publishes
//! events: the publishing side of the runtime, as [`ConsumerService`] is the
//! consuming side.
//!
//! The service's own routes get an [`IngestParts`]: the event publisher,
//! [`Ingest`] (each publishing request idempotent by key and answered by a
//! deadline), the settings and the metrics. The runtime adds `/healthz`,
//! `/readyz` (a broker answers, the registry gave the event's schema id),
//! `/metrics`, problem+json answers for unknown routes and methods, a server
//! span and HTTP metrics per request, topic creation, and a shutdown that
//! lets requests finish and then flushes the producer within the grace period.
//!
//! [`ConsumerService`]: crate::ConsumerService

use crate::http::{HttpMetrics, IdempotencyStore, Ingest, Problem, traced};
use crate::ops;
use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use futures::future::BoxFuture;
use kafkit_events::{Event, EventCodec};
use kafkit_messaging::{
    BrokerState, Compression, EventPublisher, KafkaArgs, KafkaSettings, ProducerSettings,
    Publisher, SchemaRegistryArgs, TopicSpec, ensure_topics,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often brokers are probed while they answer (every 500 ms while not).
const BROKER_PROBE_EVERY: Duration = Duration::from_secs(2);
/// How often the registry is asked for the event's schema id (answered from
/// the cache once known, so this costs nothing after the first success).
const REGISTRY_PROBE_EVERY: Duration = Duration::from_secs(2);
/// Seconds a caller should wait before sending a 503'd request again.
pub const RETRY_AFTER_SECS: u64 = 2;

/// Settings shared by every HTTP ingest service built on the runtime.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Create the topics at start-up when they are missing (Tansu and many
    /// clusters do not auto-create topics).
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// The schema registry: URL, credentials, CA file, subject strategy.
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    /// The Kafka cluster: bootstrap servers, TLS/SASL, extra properties.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// `none`, `gzip`, `snappy` or `lz4`.
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "none")]
    pub compression: Compression,
    /// How long the producer waits to batch records (`linger.ms`). Every
    /// request waits for its acknowledgement, so this adds to its latency.
    #[arg(long, env = "PRODUCE_LINGER_MS", default_value_t = 1)]
    pub linger_ms: u64,
    /// Longest wait for the broker's acknowledgement before answering 503.
    #[arg(long, env = "PRODUCE_TIMEOUT_MS", default_value_t = 5_000)]
    pub produce_timeout_ms: u64,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// How long an Idempotency-Key answer is remembered.
    #[arg(long, env = "IDEMPOTENCY_WINDOW_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_window_secs: u64,
    /// Memory for remembered Idempotency-Key answers; the oldest go first
    /// past it (counted by `kafkit_idempotency_evicted_total`). 64 MiB is a
    /// quarter of a 256 MiB pod: about 150,000 single-order answers.
    #[arg(long, env = "IDEMPOTENCY_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub idempotency_max_bytes: usize,
    /// On shutdown, longest wait for in-flight records to be acknowledged.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl IngestArgs {
    /// The client settings of the cluster.
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings::from(self.kafka.clone())
    }

    /// The producer: acknowledged by all in-sync replicas, idempotent, with
    /// this compression, linger and delivery timeout.
    pub fn producer_settings(&self) -> ProducerSettings {
        ProducerSettings {
            compression: self.compression,
            delivery_timeout: self.produce_timeout(),
            linger: Duration::from_millis(self.linger_ms),
            ..ProducerSettings::default()
        }
    }

    /// `PRODUCE_TIMEOUT_MS` as a duration.
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }

    /// How long a request waits for its event's fate before answering
    /// `outcome-unknown`: the produce timeout and a little for the rest.
    pub fn answer_deadline(&self) -> Duration {
        self.produce_timeout() + Duration::from_millis(400)
    }
}

/// What a service's routes are built from.
#[derive(Debug, Clone)]
pub struct IngestParts {
    /// Encodes and publishes events, answering with the broker's acknowledgement.
    pub events: EventPublisher,
    /// Runs each publishing request: idempotent by key, answered by the deadline.
    pub ingest: Ingest,
    /// HTTP and send metrics (`event_sent` for each event published).
    pub metrics: HttpMetrics,
    /// The runtime's settings.
    pub args: Arc<IngestArgs>,
}

/// Asks the registry for the published event's schema id on its topic.
type RegistryProbe = Box<dyn Fn(Arc<EventCodec>) -> BoxFuture<'static, Result<(), String>> + Send>;

/// Builds the service's own routes.
type Routes = Box<dyn FnOnce(IngestParts) -> Router + Send>;

/// An HTTP ingest service being described: its name, settings, the topic
/// it publishes to and its routes.
pub struct IngestService {
    name: String,
    args: IngestArgs,
    listen: SocketAddr,
    /// What `publishes` said: topic, partitions, and the registry probe for its event.
    publishes: Option<(String, i32, RegistryProbe)>,
    routes: Option<Routes>,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("topic", &self.publishes.as_ref().map(|(topic, ..)| topic))
            .finish_non_exhaustive()
    }
}

impl IngestService {
    /// A service called `name` (its metrics' and traces' service name),
    /// listening on `listen` (port 0 picks a free port).
    pub fn new(name: impl Into<String>, args: IngestArgs, listen: SocketAddr) -> Self {
        Self {
            name: name.into(),
            args,
            listen,
            publishes: None,
            routes: None,
        }
    }

    /// The service's own routes, built from the parts the runtime makes.
    pub fn routes(mut self, routes: impl FnOnce(IngestParts) -> Router + Send + 'static) -> Self {
        self.routes = Some(Box::new(routes));
        self
    }

    /// Sets up telemetry, builds the service and serves until Ctrl-C or
    /// SIGTERM: what a service's `main` calls.
    pub async fn run(self) -> anyhow::Result<()> {
        let name = self.name.clone();
        crate::ops::run_main(&name, self.build(), |service, stop| {
            service.run_until_stopped(stop)
        })
        .await
    }

    /// The service publishes `E` to `topic`: created with `partitions` when
    /// missing (`CREATE_TOPICS`), probed for readiness (a broker answers for
    /// it, the registry gives `E`'s schema id under its subject).
    pub fn publishes<E: Event + 'static>(
        mut self,
        topic: impl Into<String>,
        partitions: i32,
    ) -> Self {
        let topic = topic.into();
        let probed = topic.clone();
        let probe: RegistryProbe = Box::new(move |codec: Arc<EventCodec>| {
            let topic = probed.clone();
            Box::pin(async move {
                match tokio::time::timeout(REGISTRY_PROBE_EVERY, codec.schema_id::<E>(&topic)).await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {REGISTRY_PROBE_EVERY:?}")),
                }
            })
        });
        self.publishes = Some((topic, partitions, probe));
        self
    }

    /// Creates the topic (when asked), the clients, the listener and the
    /// routes; nothing is served yet.
    pub async fn build(self) -> anyhow::Result<IngestServer> {
        let args = Arc::new(self.args);
        let kafka = args.kafka_settings();
        let (topic, partitions, probe) = self
            .publishes
            .context("say which topic the service publishes to (IngestService::publishes)")?;
        if args.create_topics {
            // The service still starts when the broker is down; requests get 503 until it is back.
            if let Err(e) = ensure_topics(&kafka, &[TopicSpec::new(&topic, partitions)]).await {
                tracing::warn!(topic, error = %e, "could not create the topic at start-up");
            }
        }
        let publisher = Publisher::new(&kafka, &args.producer_settings())
            .context("failed to create the Kafka producer")?;
        let codec = Arc::new(
            EventCodec::new(args.registry.codec_settings())
                .context("failed to configure the schema registry client")?,
        );
        let listener = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("failed to listen on {}", self.listen))?;
        let (brokers, registry) = tokio::join!(
            publisher.watch_brokers(&topic, BROKER_PROBE_EVERY),
            watch_registry(codec.clone(), probe)
        );
        let metrics = HttpMetrics::new(&self.name).context("failed to set up metrics")?;
        let idempotency = IdempotencyStore::new(
            Duration::from_secs(args.idempotency_window_secs),
            args.idempotency_max_bytes,
        );
        let parts = IngestParts {
            events: EventPublisher::new(publisher.clone(), codec),
            ingest: Ingest::new(
                idempotency,
                brokers.clone(),
                args.answer_deadline(),
                RETRY_AFTER_SECS,
                metrics.clone(),
            ),
            metrics: metrics.clone(),
            args: Arc::clone(&args),
        };
        let checks = vec![
            ops::Check::new("kafka", move || {
                let state = match brokers.state() {
                    BrokerState::Reachable => Ok(()),
                    BrokerState::Unreachable(why) => Err(why),
                };
                std::future::ready(state)
            }),
            ops::Check::new("schema_registry", move || {
                std::future::ready(registry.borrow().clone())
            }),
        ];
        let rendered = metrics.clone();
        let routes = self
            .routes
            .context("give the service its routes (IngestService::routes)")?;
        let router = routes(parts)
            .merge(ops::router(checks, move || rendered.render()))
            .fallback(|| async {
                Problem::new(StatusCode::NOT_FOUND, "Not found", "no such route")
            })
            .method_not_allowed_fallback(|| async {
                Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    "this route does not take that method",
                )
            });
        Ok(IngestServer {
            name: self.name,
            topic,
            listener,
            router: traced(router, metrics.clone()),
            publisher,
            metrics,
            grace: Duration::from_secs(args.shutdown_grace_secs),
        })
    }
}

/// Keeps "the event's schema id is known" current for `/readyz` (asked
/// once before this returns), until nobody reads it any more.
async fn watch_registry(
    codec: Arc<EventCodec>,
    probe: RegistryProbe,
) -> watch::Receiver<Result<(), String>> {
    let (states, state) = watch::channel(probe(Arc::clone(&codec)).await);
    tokio::spawn(async move {
        while !states.is_closed() {
            tokio::time::sleep(REGISTRY_PROBE_EVERY).await;
            let _previous = states.send_replace(probe(Arc::clone(&codec)).await);
        }
    });
    state
}

/// A built HTTP ingest service, ready to serve.
#[derive(Debug)]
pub struct IngestServer {
    name: String,
    topic: String,
    listener: TcpListener,
    router: Router,
    publisher: Publisher,
    metrics: HttpMetrics,
    grace: Duration,
}

impl IngestServer {
    /// Where the service answers.
    pub fn local_addr(&self) -> SocketAddr {
        crate::ops::bound_addr(&self.listener)
    }

    /// Serves until `shutdown`, then flushes what is still in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, topic = self.topic, service = %self.name, "listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        let publisher = self.publisher;
        tracing::info!(
            in_flight = publisher.in_flight(),
            "stopped accepting requests; flushing the producer"
        );
        let grace = self.grace;
        let flushed = publisher.flush(grace).await.with_context(|| {
            format!(
                "{} records were not flushed within {grace:?}",
                publisher.in_flight()
            )
        });
        self.metrics.shutdown();
        flushed
    }
}
