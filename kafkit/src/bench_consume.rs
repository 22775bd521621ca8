//! `kafkit bench` part (c): the consume side, against baselines in one run.
//!
//! - consume path: `messaging::ConsumeLoop` (decode through the registry
//!   cache, a no-op handler, offset store) against a raw rdkafka
//!   `StreamConsumer` reading the same records and storing offsets;
//! - failures: the same loop with 1% of records failing once (routed to the
//!   retry tier) against 0% failing;
//! - end to end: produce `OrderPlaced`, consumer-service confirms it; latency
//!   from the produce acknowledgement to reading the `OrderConfirmed`.

use anyhow::Context;
use messaging::{
    ConsumeLoop, ConsumeMetrics, ConsumeSettings, EventPublisher, Failure, Handler, Input,
    KafkaSettings, Outbox, RetryPolicy, Stage,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use shared_events::{EventHeaders, OrderPlaced};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Does nothing, or fails once (transiently) for one record in `fail_one_in`.
#[derive(Debug, Clone)]
struct BenchHandler {
    fail_one_in: Option<u32>,
}

impl Handler<OrderPlaced> for BenchHandler {
    fn handle(
        &self,
        input: &Input<OrderPlaced>,
        _out: &mut Outbox<'_>,
    ) -> impl std::future::Future<Output = Result<(), Failure>> + Send {
        let fail = self.fail_one_in.is_some_and(|n| {
            input.attempts == 0
                && input.event.customer_id.bytes().map(u32::from).sum::<u32>() % n == 0
        });
        async move {
            if fail {
                Err(Failure::transient("bench", "fails once"))
            } else {
                Ok(())
            }
        }
    }
}

/// Pre-produces `count` orders to `topic` with their headers.
pub async fn fill(events: &EventPublisher, topic: &str, count: usize) -> anyhow::Result<()> {
    let headers = &EventHeaders::new::<OrderPlaced>("/kafkit-bench");
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..count {
        let mut order = super::bench::order();
        order.customer_id = format!("customer-{i}");
        pending.push(async move {
            events
                .publish_event(topic, &order.order_id, &order, headers)
                .await
        });
        if pending.len() >= 1000 {
            futures::StreamExt::next(&mut pending)
                .await
                .context("fill")??;
        }
    }
    while let Some(result) = futures::StreamExt::next(&mut pending).await {
        result?;
    }
    Ok(())
}

/// Events/s of a `ConsumeLoop` settling `count` records of `topic`.
async fn consume_loop_rate(
    kafka: &KafkaSettings,
    events: &EventPublisher,
    codec: Arc<shared_events::EventCodec>,
    topic: &str,
    count: usize,
    fail_one_in: Option<u32>,
) -> anyhow::Result<f64> {
    let pipeline = telemetry::metrics::MetricsPipeline::new("kafkit-bench")?;
    let group_id = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let metrics = ConsumeMetrics::new(&pipeline.meter("bench"), Stage::Main, &group_id);
    let settings = ConsumeSettings {
        group_id,
        topics: vec![topic.to_owned()],
        stage: Stage::Main,
        policy: RetryPolicy {
            delays: vec![Duration::from_secs(60)],
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        pipeline: messaging::Pipeline::default(),
        outage_backoff: Duration::from_millis(100),
        outage_backoff_max: Duration::from_secs(1),
        lag_interval: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
    };
    let consume_loop = ConsumeLoop::new(
        kafka.client_config(),
        settings,
        codec,
        events.publisher().clone(),
        BenchHandler { fail_one_in },
        metrics,
    )?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(consume_loop.run(async {
        let _ = stopped.await;
    }));
    // The clock starts with the first record, so group join is not counted.
    while sum_of(&pipeline, "messaging_client_consumed_messages_total") == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    // Every settled record (handled or routed) is one process-duration point.
    while sum_of(&pipeline, "messaging_process_duration_seconds_count") < count as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = (count - 1) as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await?;
    Ok(rate)
}

fn sum_of(pipeline: &telemetry::metrics::MetricsPipeline, metric: &str) -> u64 {
    telemetry::metrics::sum(&pipeline.render(), metric, &[]) as u64
}

/// Events/s of a raw `StreamConsumer` reading and storing `count` records.
async fn raw_rate(kafka: &KafkaSettings, topic: &str, count: usize) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = kafka
        .client_config()
        .set(
            "group.id",
            format!("bench-raw-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let first = consumer.recv().await?;
    consumer.store_offset_from_message(&first)?;
    drop(first);
    let started = Instant::now();
    for _ in 1..count {
        let message = consumer.recv().await?;
        std::hint::black_box(message.payload());
        consumer.store_offset_from_message(&message)?;
    }
    Ok((count - 1) as f64 / started.elapsed().as_secs_f64())
}

#[derive(Debug)]
pub struct ConsumeResult {
    pub kafkit: f64,
    pub raw: f64,
    pub failing: f64,
    pub clean: f64,
}

pub async fn consume_bench(
    kafka: &KafkaSettings,
    events: &EventPublisher,
    codec: Arc<shared_events::EventCodec>,
    count: usize,
    rounds: usize,
) -> anyhow::Result<ConsumeResult> {
    let topic = "bench-consume";
    messaging::ensure_topics(kafka, &[messaging::TopicSpec::new(topic, 3)]).await?;
    messaging::ensure_topics(
        kafka,
        &[messaging::TopicSpec::new("bench-consume.retry.1", 3)],
    )
    .await?;
    fill(events, topic, count).await?;
    let mut best = ConsumeResult {
        kafkit: 0.0,
        raw: 0.0,
        failing: 0.0,
        clean: 0.0,
    };
    for round in 1..=rounds {
        let raw = raw_rate(kafka, topic, count).await?;
        let kafkit =
            consume_loop_rate(kafka, events, Arc::clone(&codec), topic, count, None).await?;
        let failing =
            consume_loop_rate(kafka, events, Arc::clone(&codec), topic, count, Some(100)).await?;
        println!(
            "consume round {round}: kafkit {kafkit:.0}/s, raw {raw:.0}/s, with 1% failing once {failing:.0}/s"
        );
        best.raw = best.raw.max(raw);
        best.kafkit = best.kafkit.max(kafkit);
        best.failing = best.failing.max(failing);
        best.clean = best.kafkit;
    }
    Ok(best)
}

/// Latency from the produce acknowledgement of an `OrderPlaced` to reading its `OrderConfirmed`.
pub async fn end_to_end(
    bootstrap: &str,
    registry_url: &str,
    events: &EventPublisher,
    orders: usize,
) -> anyhow::Result<(f64, f64)> {
    use clap::Parser;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (topic, output) = (
        format!("bench-e2e-{suffix}"),
        format!("bench-e2e-confirmed-{suffix}"),
    );
    let settings = consumer_service::Settings::try_parse_from([
        "consumer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        &topic,
        "--output-topic",
        &output,
        "--group",
        &format!("bench-e2e-{suffix}"),
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry_url,
    ])?;
    let app = consumer_service::Application::build(settings).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let reader: StreamConsumer = KafkaSettings::new(bootstrap)
        .client_config()
        .set("group.id", format!("bench-e2e-reader-{suffix}"))
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[output.as_str()])?;
    let headers = EventHeaders::new::<OrderPlaced>("/kafkit-bench");
    let mut sent_at = std::collections::HashMap::new();
    let mut latencies = Vec::new();
    // Warm-up order: group joins, schema registration of OrderConfirmed.
    let warm = super::bench::order();
    events
        .publish_event(&topic, &warm.order_id, &warm, &headers)
        .await?;
    tokio::time::timeout(Duration::from_secs(60), reader.recv())
        .await
        .context("no warm-up confirmation")??;
    for _ in 0..orders {
        let order = super::bench::order();
        events
            .publish_event(&topic, &order.order_id, &order, &headers)
            .await?;
        sent_at.insert(order.order_id.clone(), Instant::now());
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .context("no confirmation")??;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        if let Some(sent) = sent_at.remove(&key) {
            latencies.push(sent.elapsed());
        }
    }
    let _ = stop.send(());
    service.await??;
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1e3
    };
    Ok((at(0.5), at(0.99)))
}
