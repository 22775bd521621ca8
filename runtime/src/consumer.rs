//! From a handler and [`ConsumerArgs`] to a running consumer service.
//!
//! The main consumer (group `<group>`, the main topic) and the retry
//! consumer (group `<group>-retry`, the retry tiers) are two consume loops
//! with the same handler; [`Role`] picks which of them a process runs.
//! Shutdown stops both after their in-flight records settle, commits stored
//! offsets, then flushes the producer within the grace period.

use crate::args::{ConsumerArgs, Role};
use crate::ops;
use anyhow::Context;
use futures::future::BoxFuture;
use kafkit_events::{Event, EventCodec};
use kafkit_messaging::{
    ConsumeLoop, ConsumeMetrics, ConsumeSettings, Handler, Pipeline, ProducerSettings, Publisher,
    Stage, TopicSpec, ensure_topics,
};
use kafkit_telemetry::metrics::MetricsPipeline;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A consumer service being described: its name, settings, the topic it
/// consumes with which handler, and the topics its handler publishes to.
///
/// ```no_run
/// # use kafkit_events::Event;
/// # use kafkit_messaging::Handler;
/// # async fn example<E: Event + 'static, H: Handler<E> + Clone + 'static>(
/// #     args: kafkit_runtime::ConsumerArgs, handler: H,
/// # ) -> anyhow::Result<()> {
/// kafkit_runtime::ConsumerService::new("payments", args)
///     .consume::<E, _>("payments", handler)
///     .publishes_to("payments-settled")
///     .run()
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct ConsumerService<E = (), H = ()> {
    name: String,
    args: ConsumerArgs,
    topic: String,
    handler: H,
    outputs: Vec<String>,
    event: PhantomData<fn() -> E>,
}

impl ConsumerService {
    /// A service called `name` (its default consumer group, its metrics'
    /// and traces' service name).
    pub fn new(name: impl Into<String>, args: ConsumerArgs) -> Self {
        Self {
            name: name.into(),
            args,
            topic: String::new(),
            handler: (),
            outputs: Vec::new(),
            event: PhantomData,
        }
    }

    /// Runs `handler` on every `E` of `topic`; its failures go through the
    /// retry tiers `<topic>.retry.N` to `<topic>.dlq`.
    pub fn consume<E, H>(self, topic: impl Into<String>, handler: H) -> ConsumerService<E, H>
    where
        E: Event + 'static,
        H: Handler<E> + Clone + 'static,
    {
        ConsumerService {
            name: self.name,
            args: self.args,
            topic: topic.into(),
            handler,
            outputs: self.outputs,
            event: PhantomData,
        }
    }
}

impl<E, H> ConsumerService<E, H>
where
    E: Event + 'static,
    H: Handler<E> + Clone + 'static,
{
    /// A topic the handler publishes to: created at start-up with the others
    /// (`CREATE_TOPICS`), and `/readyz` says 503 while it is missing.
    pub fn publishes_to(mut self, topic: impl Into<String>) -> Self {
        self.outputs.push(topic.into());
        self
    }

    /// The main, retry and dead-letter topics, then the outputs.
    pub fn topics(&self) -> Vec<String> {
        let policy = self.args.retry_policy();
        let mut topics = vec![self.topic.clone(), policy.dlq_topic(&self.topic)];
        topics.extend(policy.retry_topics(&self.topic));
        topics.extend(self.outputs.iter().cloned());
        topics
    }

    /// Sets up telemetry, builds the service and runs it until Ctrl-C or
    /// SIGTERM: what a service's `main` calls.
    pub async fn run(self) -> anyhow::Result<()> {
        let name = self.name.clone();
        crate::ops::run_main(&name, self.build(), |service, stop| {
            service.run_until_stopped(stop)
        })
        .await
    }

    /// Creates the topics (when asked), the clients, the consumers of this
    /// process's role and the operations listener; nothing runs yet.
    pub async fn build(self) -> anyhow::Result<Service> {
        let args = &self.args;
        let kafka = args.kafka_settings();
        let policy = args.retry_policy();
        if args.create_topics {
            let specs: Vec<TopicSpec> = self
                .topics()
                .iter()
                .map(|t| TopicSpec::new(t, args.partitions))
                .collect();
            if let Err(e) = ensure_topics(&kafka, &specs).await {
                tracing::warn!(error = %e, "could not create topics at start-up");
            }
        }
        let codec = Arc::new(
            EventCodec::new(args.registry.codec_settings())
                .context("failed to configure the registry client")?,
        );
        let publisher = Publisher::new(&kafka, &ProducerSettings::default())
            .context("failed to create the producer")?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        // Static membership: stable across restarts on one host (the ops
        // port tells two local replicas apart), or what the deployment says.
        let instance = args.static_membership.then(|| {
            args.group_instance_id.clone().unwrap_or_else(|| {
                let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                format!("{}-{port}", host_name())
            })
        });
        let group = args.group.clone().unwrap_or_else(|| self.name.clone());
        let metrics = MetricsPipeline::new(&self.name)?;
        // The instrumentation scope is the library that records (OpenTelemetry
        // convention); the service is named by the resource.
        let meter = metrics.meter("kafkit-runtime");
        let (stop, stopped) = watch::channel(false);
        let mut loops: Vec<BoxFuture<'static, ()>> = Vec::new();
        let mut add = |stage: Stage, group: String, topics: Vec<String>| -> anyhow::Result<()> {
            let consume_metrics = ConsumeMetrics::new(&meter, stage, &group);
            let stage_name = match stage {
                Stage::Main => "main",
                Stage::Retry => "retry",
            };
            let consume = ConsumeSettings {
                group_id: group,
                group_instance_id: instance.as_ref().map(|i| format!("{i}-{stage_name}")),
                session_timeout: Duration::from_millis(args.session_timeout_ms),
                topics,
                stage,
                policy: policy.clone(),
                pipeline: Pipeline::from(&args.pipeline),
                outage_backoff: Duration::from_millis(args.outage_backoff_ms),
                outage_backoff_max: Duration::from_millis(args.outage_backoff_max_ms),
                lag_interval: Duration::from_millis(args.lag_interval_ms),
                drain_timeout: args.grace(),
                fetch_wait: Duration::from_millis(args.fetch_wait_max_ms),
            };
            let consume_loop = ConsumeLoop::<E, H>::new(
                kafka.client_config(),
                consume,
                Arc::clone(&codec),
                publisher.clone(),
                self.handler.clone(),
                consume_metrics,
            )?;
            loops.push(Box::pin(consume_loop.run(stop_signal(stopped.clone()))));
            Ok(())
        };
        if matches!(args.role, Role::Main | Role::All) {
            add(Stage::Main, group.clone(), vec![self.topic.clone()])?;
        }
        if matches!(args.role, Role::Retry | Role::All) {
            add(
                Stage::Retry,
                format!("{group}-retry"),
                policy.retry_topics(&self.topic),
            )?;
        }
        let mut destinations = self.outputs.clone();
        destinations.push(policy.dlq_topic(&self.topic));
        destinations.extend(policy.retry_topics(&self.topic));
        let missing = ops::watch_destinations(publisher.clone(), destinations).await;
        Ok(Service {
            name: self.name,
            listener,
            loops,
            stop,
            checks: ops::consumer_checks(publisher.clone(), codec, missing),
            publisher,
            metrics,
            grace: args.grace(),
        })
    }
}

/// A built consumer service: consumers and an operations listener, ready to run.
pub struct Service {
    name: String,
    listener: TcpListener,
    loops: Vec<BoxFuture<'static, ()>>,
    stop: watch::Sender<bool>,
    checks: Vec<ops::Check>,
    publisher: Publisher,
    metrics: MetricsPipeline,
    grace: Duration,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("listener", &self.listener)
            .field("consumers", &self.loops.len())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Where `/healthz`, `/readyz` and `/metrics` answer.
    pub fn local_addr(&self) -> SocketAddr {
        crate::ops::bound_addr(&self.listener)
    }

    /// Runs the consumers and the operations endpoint until `shutdown`.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let stopped = self.stop.subscribe();
        let tasks: Vec<_> = self.loops.into_iter().map(tokio::spawn).collect();
        let (publisher, pipeline) = (self.publisher, self.metrics);
        let rendered = pipeline.clone();
        tracing::info!(%addr, service = %self.name, "listening");
        let router = ops::router(self.checks, move || rendered.render());
        let server =
            axum::serve(self.listener, router).with_graceful_shutdown(stop_signal(stopped));
        let server = tokio::spawn(async move { server.await });
        shutdown.await;
        let _ = self.stop.send(true);
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

/// Resolves once `stop` turns true (or its sender is gone).
async fn stop_signal(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
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
