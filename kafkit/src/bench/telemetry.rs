//! `kafkit bench --only telemetry`: what exporting spans costs, in one run.
//!
//! Telemetry is set up once per process, from its environment, so each
//! measured path runs in a process of its own: consumer-service doing the
//! real job, and `kafkit bench-publish` (hidden) publishing orders through
//! `EventPublisher`. Each runs without an OTLP endpoint, with one and the
//! default sampler (every span), and with one and
//! `OTEL_TRACES_SAMPLER=parentbased_traceidratio` at 0.1; alternating, for
//! several rounds. The endpoint is an OTLP/HTTP sink in this process that
//! decodes and counts the spans it is sent, so a run that exported nothing
//! shows. The orders consumed carry a trace of their own each, marked
//! sampled as a producer with the same sampler would have marked them (all
//! of them, or one in ten).

use super::common::order;
use super::common::{Rate, median, ratios};
use super::consume::{publish_all, service_job_rate_with};
use super::publish::publish_round;
use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use kafkit_events::{EventHeaders, TraceParent};
use kafkit_messaging::{
    EventPublisher, KafkaSettings, ProducerSettings, Publisher, RetryPolicy, TopicSpec,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use shared_events::OrderPlaced;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a measured process is told to trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing {
    /// No OTLP endpoint: no OpenTelemetry span is built.
    Off,
    /// An endpoint and the default sampler (`parentbased_always_on`).
    Every,
    /// An endpoint and `parentbased_traceidratio` at 0.1.
    OneInTen,
}

impl Tracing {
    /// Every configuration, in the order each round runs them.
    pub const ALL: [Self; 3] = [Self::Off, Self::Every, Self::OneInTen];

    /// How the report and docs/benchmarks.md name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Off => "no endpoint",
            Self::Every => "endpoint, default sampler",
            Self::OneInTen => "endpoint, parentbased_traceidratio 0.1",
        }
    }

    /// The environment that asks for it (empty endpoints: none, even if
    /// the bench itself was started with one).
    fn env(self, endpoint: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", String::new())];
        match self {
            Self::Off => env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", String::new())),
            Self::Every => env.extend([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
                ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
            ]),
            Self::OneInTen => env.extend([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1".to_owned()),
            ]),
        }
        env
    }
}

/// One configuration's measurements, a value per round.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    /// consumer-service, the real job.
    pub consume: Vec<Rate>,
    /// Spans the sink received per order consumed.
    pub consume_spans: Vec<f64>,
    /// `EventPublisher`, events/s.
    pub publish: Vec<f64>,
    /// Spans the sink received per event published.
    pub publish_spans: Vec<f64>,
}

/// Measurements by configuration, in [`Tracing::ALL`] order.
#[derive(Debug, Default, Clone)]
pub struct TelemetryResult {
    /// Per configuration.
    pub by_tracing: [Measured; 3],
}

impl TelemetryResult {
    /// Median ratios against no endpoint: (consume, publish).
    pub fn ratios(&self, tracing: Tracing) -> (f64, f64) {
        let [off, ..] = &self.by_tracing;
        let this = &self.by_tracing[index(tracing)];
        let rates = |of: &[Rate]| of.iter().map(|r| r.per_second).collect::<Vec<_>>();
        (
            median(&ratios(&rates(&this.consume), &rates(&off.consume))),
            median(&ratios(&this.publish, &off.publish)),
        )
    }

    /// Measurements of one configuration.
    pub fn of(&self, tracing: Tracing) -> &Measured {
        &self.by_tracing[index(tracing)]
    }
}

fn index(tracing: Tracing) -> usize {
    Tracing::ALL
        .iter()
        .position(|t| *t == tracing)
        .unwrap_or_default()
}

/// An OTLP/HTTP endpoint that counts the spans it is sent.
struct Sink {
    url: String,
    spans: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        async fn traces(State(spans): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
            if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                let count: usize = request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                spans.fetch_add(count as u64, Ordering::Relaxed);
            }
            ""
        }
        let spans = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(async || ""))
            .with_state(Arc::clone(&spans));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, spans, task })
    }

    fn received(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sizes of the telemetry part.
#[derive(Debug, Clone, Copy)]
pub struct TelemetrySizes {
    /// Orders each consumer-service run reads.
    pub orders: usize,
    /// Events each publish run sends.
    pub events: usize,
    /// Publish runs keep this many awaiting their acknowledgement.
    pub in_flight: usize,
    /// `linger.ms` of the publishing producer.
    pub linger_ms: u64,
    /// Rounds of each configuration, alternating.
    pub rounds: usize,
}

/// Fills `topic` with `count` orders, each in a trace of its own, marked
/// sampled one in `sampled_one_in`.
async fn fill_traced(
    events: &EventPublisher,
    topic: &str,
    count: usize,
    sampled_one_in: usize,
) -> anyhow::Result<()> {
    publish_all(events, topic, count, |i| {
        let mut order = order();
        order.customer_id = format!("customer-{i}");
        let mut headers = EventHeaders::new::<OrderPlaced>("/kafkit-bench");
        headers.traceparent = Some(TraceParent {
            flags: u8::from(i % sampled_one_in == 0),
            ..TraceParent::new_root()
        });
        (order.order_id.clone(), order, headers)
    })
    .await
}

/// Runs every configuration, alternating, `sizes.rounds` times.
pub async fn telemetry_bench(
    kafka: &KafkaSettings,
    registry_url: &str,
    events: &EventPublisher,
    sizes: TelemetrySizes,
) -> anyhow::Result<TelemetryResult> {
    let sink = Sink::start().await?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let every = format!("bench-traced-orders-{suffix}");
    let one_in_ten = format!("bench-traced-orders-10-{suffix}");
    let output = format!("bench-traced-confirmations-{suffix}");
    let publish_topic = format!("bench-traced-publish-{suffix}");
    let policy = RetryPolicy::default();
    let mut specs = vec![
        TopicSpec::new(&output, 3),
        TopicSpec::new(&publish_topic, 3),
    ];
    for topic in [&every, &one_in_ten] {
        specs.push(TopicSpec::new(topic, 3));
        specs.push(TopicSpec::new(policy.dlq_topic(topic), 3));
        specs.extend(
            policy
                .retry_topics(topic)
                .iter()
                .map(|t| TopicSpec::new(t, 3)),
        );
    }
    kafkit_messaging::ensure_topics(kafka, &specs).await?;
    fill_traced(events, &every, sizes.orders, 1).await?;
    fill_traced(events, &one_in_ten, sizes.orders, 10).await?;

    let mut result = TelemetryResult::default();
    for round in 1..=sizes.rounds {
        for tracing in Tracing::ALL {
            let env = tracing.env(&sink.url);
            let topic = match tracing {
                Tracing::OneInTen => &one_in_ten,
                Tracing::Off | Tracing::Every => &every,
            };
            let before = sink.received();
            let consume = service_job_rate_with(
                kafka,
                registry_url,
                [topic, &output],
                sizes.orders,
                "",
                None,
                &env,
            )
            .await?;
            let consume_spans = (sink.received() - before) as f64 / sizes.orders as f64;
            let before = sink.received();
            let publish = publish_worker(kafka, registry_url, &publish_topic, sizes, &env).await?;
            let publish_spans = (sink.received() - before) as f64 / sizes.events as f64;
            println!(
                "telemetry round {round}, {}: consumer-service {:.0} orders/s ({:.1} us CPU each, {consume_spans:.2} spans exported per order), publish {publish:.0} events/s ({publish_spans:.2} spans per event)",
                tracing.label(),
                consume.per_second,
                consume.cpu_us,
            );
            let measured = &mut result.by_tracing[index(tracing)];
            measured.consume.push(consume);
            measured.consume_spans.push(consume_spans);
            measured.publish.push(publish);
            measured.publish_spans.push(publish_spans);
        }
    }
    Ok(result)
}

/// Events/s of one `kafkit bench-publish` process with `env` set. Its
/// spans are flushed when it exits, before this returns.
async fn publish_worker(
    kafka: &KafkaSettings,
    registry_url: &str,
    topic: &str,
    sizes: TelemetrySizes,
    env: &[(&str, String)],
) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("failed to find the kafkit executable")?;
    let output = tokio::process::Command::new(exe)
        .args([
            "bench-publish",
            "--bootstrap-servers",
            &kafka.bootstrap_servers,
            "--registry-url",
            registry_url,
            "--topic",
            topic,
            "--events",
            &sizes.events.to_string(),
            "--in-flight",
            &sizes.in_flight.to_string(),
            "--linger-ms",
            &sizes.linger_ms.to_string(),
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .context("kafkit bench-publish took more than 120 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "kafkit bench-publish failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("events_per_second="))
        .and_then(|rate| rate.trim().parse().ok())
        .with_context(|| format!("kafkit bench-publish printed no rate: {stdout}"))
}

/// `kafkit bench-publish`: one publish run in this process, for `kafkit bench --only telemetry`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishWorkerArgs {
    #[arg(long)]
    bootstrap_servers: String,
    #[arg(long)]
    registry_url: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    events: usize,
    #[arg(long)]
    in_flight: usize,
    #[arg(long)]
    linger_ms: u64,
}

/// Warms up (schema, connections), then prints `events_per_second=<rate>`.
pub async fn publish_worker_main(args: PublishWorkerArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::new(&args.bootstrap_servers);
    let settings = ProducerSettings {
        linger: Duration::from_millis(args.linger_ms),
        ..ProducerSettings::default()
    };
    let codec = Arc::new(kafkit_events::EventCodec::new(
        kafkit_events::CodecSettings::new(args.registry_url),
    )?);
    let events = EventPublisher::new(Publisher::new(&kafka, &settings)?, codec);
    publish_round(&events, &args.topic, 200, 200).await?;
    let rate = publish_round(&events, &args.topic, args.events, args.in_flight).await?;
    println!("events_per_second={rate}");
    Ok(())
}
