//! `kafkit bench` part (c): the consume side, against baselines in one run.
//!
//! - the real job: consumer-service, as a user runs it (its own process,
//!   default settings), decoding `OrderPlaced`, running the order handler and
//!   publishing `OrderConfirmed`, storing each input offset once its output is
//!   acknowledged; against a raw rdkafka pipeline written here for the same
//!   job (`StreamConsumer` → decode → `FutureProducer` send, not awaited →
//!   offsets stored in delivery order per partition), same broker, same
//!   topics, same producer settings. Then consumer-service with 1% of the
//!   orders failing once (routed to the retry tier) against 0% failing.
//! - an I/O-bound handler (an async 5 ms wait per record, 100 keys):
//!   `key` ordering against `partition` ordering.
//! - the consume path alone: `ConsumeLoop` with a handler that publishes
//!   nothing, against a raw `StreamConsumer` storing offsets.
//! - end to end: produce `OrderPlaced`, consumer-service confirms it; latency
//!   from the produce acknowledgement to reading the `OrderConfirmed`.

use super::common::*;
use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use kafkit_events::headers as ce;
use kafkit_events::{Event, EventCodec, EventHeaders, TraceParent};
use kafkit_messaging::{
    ConsumeLoop, ConsumeMetrics, ConsumeSettings, EventPublisher, Failure, Handler, Input,
    KafkaSettings, Ordering, Outbox, Pipeline, ProducerSettings, RetryPolicy, Stage,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shared_events::{OrderConfirmed, OrderPlaced};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the service's `/metrics` is read while it runs: rendering them
/// costs the service CPU, so not too often; the end is known to within this.
const POLL: Duration = Duration::from_millis(50);

/// Sku prefix of the orders that fail once when faults are on.
const FLAKY: &str = "FLAKY";

/// Every round's measurements; the summary takes medians.
#[derive(Debug, Clone, Default)]
pub struct ConsumeResult {
    /// The real job: consumer-service, orders/s.
    pub job_kafkit: Vec<Rate>,
    /// The real job: the raw pipeline, orders/s.
    pub job_raw: Vec<Rate>,
    /// consumer-service with 1% of the orders failing once.
    pub job_failing: Vec<Rate>,
    /// I/O-bound handler, `key` ordering, records/s.
    pub io_key: Vec<f64>,
    /// I/O-bound handler, `partition` ordering, records/s.
    pub io_partition: Vec<f64>,
    /// `ConsumeLoop` with a no-op handler, records/s.
    pub noop_kafkit: Vec<f64>,
    /// Raw `StreamConsumer` storing offsets, records/s.
    pub noop_raw: Vec<f64>,
    /// The raw consumer reading each payload into `OrderPlaced` too.
    pub noop_raw_decoding: Vec<f64>,
}

/// The sizes of one consume benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSizes {
    pub job_orders: usize,
    pub io_records: usize,
    pub rounds: usize,
}

/// Produces `count` orders to `topic`: keyed by order id, or by one of
/// `keys` keys; one in a hundred has a `FLAKY` sku.
pub async fn fill(
    events: &EventPublisher,
    topic: &str,
    count: usize,
    keys: Option<usize>,
) -> anyhow::Result<()> {
    let headers = EventHeaders::new::<OrderPlaced>("/kafkit-bench");
    publish_all(events, topic, count, |i| {
        let mut order = super::common::order();
        order.customer_id = format!("customer-{i}");
        if i % 100 == 50 {
            order.items[0].sku = format!("{FLAKY}-1");
        }
        let key = keys.map_or_else(|| order.order_id.clone(), |k| format!("key-{}", i % k));
        (key, order, headers.clone())
    })
    .await
}

/// Produces the `count` orders `make` gives (key, order, headers), 1,000
/// awaiting their acknowledgement at once.
pub async fn publish_all(
    events: &EventPublisher,
    topic: &str,
    count: usize,
    make: impl Fn(usize) -> (String, OrderPlaced, EventHeaders),
) -> anyhow::Result<()> {
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..count {
        let (key, order, headers) = make(i);
        pending.push(async move { events.publish_event(topic, &key, &order, &headers).await });
        if pending.len() >= 1000 {
            pending.next().await.context("fill")??;
        }
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    Ok(())
}

pub async fn consume_bench(
    kafka: &KafkaSettings,
    registry_url: &str,
    events: &EventPublisher,
    codec: Arc<EventCodec>,
    sizes: ConsumeSizes,
) -> anyhow::Result<ConsumeResult> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (orders, output, io) = (
        format!("bench-orders-{suffix}"),
        format!("bench-confirmations-{suffix}"),
        format!("bench-io-{suffix}"),
    );
    let mut specs = vec![
        kafkit_messaging::TopicSpec::new(&orders, 3),
        kafkit_messaging::TopicSpec::new(&output, 3),
        kafkit_messaging::TopicSpec::new(&io, 3),
    ];
    let policy = RetryPolicy::default();
    for topic in [&orders, &io] {
        specs.push(kafkit_messaging::TopicSpec::new(policy.dlq_topic(topic), 3));
        for retry in policy.retry_topics(topic) {
            specs.push(kafkit_messaging::TopicSpec::new(&retry, 3));
        }
    }
    kafkit_messaging::ensure_topics(kafka, &specs).await?;
    fill(events, &orders, sizes.job_orders, None).await?;
    fill(events, &io, sizes.io_records, Some(100)).await?;
    // The raw pipeline encodes with the id consumer-service registers.
    let confirmed_id = codec.schema_id::<OrderConfirmed>(&output).await?;

    let mut result = ConsumeResult::default();
    let job = |faults: &'static str| {
        service_job_rate(
            kafka,
            registry_url,
            &orders,
            &output,
            sizes.job_orders,
            faults,
            None,
        )
    };
    for round in 1..=sizes.rounds {
        let raw = raw_job_rate(kafka, &orders, &output, sizes.job_orders, confirmed_id).await?;
        let kafkit = job("").await?;
        let failing = job("FLAKY:transient:1").await?;
        println!(
            "real job round {round}: consumer-service {:.0} orders/s ({:.1} us CPU each), raw pipeline {:.0} orders/s ({:.1} us CPU each): {:.2}x; with 1% failing once {:.0} orders/s: {:.2}x",
            kafkit.per_second,
            kafkit.cpu_us,
            raw.per_second,
            raw.cpu_us,
            kafkit.per_second / raw.per_second,
            failing.per_second,
            failing.per_second / kafkit.per_second
        );
        result.job_raw.push(raw);
        result.job_kafkit.push(kafkit);
        result.job_failing.push(failing);

        let io_rate = async |ordering| {
            let codec = Arc::clone(&codec);
            consume_loop_rate(
                kafka,
                events,
                codec,
                &io,
                sizes.io_records,
                WaitingHandler,
                ordering,
            )
            .await
        };
        let io_partition = io_rate(Ordering::Partition).await?;
        let io_key = io_rate(Ordering::Key).await?;
        println!(
            "I/O-bound handler round {round}: key ordering {io_key:.0}/s, partition ordering {io_partition:.0}/s ({:.1}x)",
            io_key / io_partition
        );
        result.io_key.push(io_key);
        result.io_partition.push(io_partition);

        let noop_raw = raw_consume_rate(kafka, &orders, sizes.job_orders, false).await?;
        let noop_raw_decoding = raw_consume_rate(kafka, &orders, sizes.job_orders, true).await?;
        let noop = consume_loop_rate(
            kafka,
            events,
            Arc::clone(&codec),
            &orders,
            sizes.job_orders,
            NoopHandler,
            Ordering::Partition,
        )
        .await?;
        println!(
            "consume path round {round}: ConsumeLoop with a no-op handler {noop:.0}/s, raw StreamConsumer {noop_raw:.0}/s, raw StreamConsumer decoding each {noop_raw_decoding:.0}/s"
        );
        result.noop_raw.push(noop_raw);
        result.noop_raw_decoding.push(noop_raw_decoding);
        result.noop_kafkit.push(noop);
    }
    Ok(result)
}

/// Orders/s of consumer-service (its own process, default settings but
/// the names) doing the real job on `topic`: from its first record read to
/// `count` records settled by the main consumer, read from its `/metrics`.
async fn service_job_rate(
    kafka: &KafkaSettings,
    registry_url: &str,
    topic: &str,
    output: &str,
    count: usize,
    faults: &str,
    fetch_wait_ms: Option<u64>,
) -> anyhow::Result<Rate> {
    service_job_rate_with(
        kafka,
        registry_url,
        [topic, output],
        count,
        faults,
        fetch_wait_ms,
        &[],
    )
    .await
}

/// [`service_job_rate`] with these environment variables set for the
/// service (its telemetry settings).
pub(crate) async fn service_job_rate_with(
    kafka: &KafkaSettings,
    registry_url: &str,
    [topic, output]: [&str; 2],
    count: usize,
    faults: &str,
    fetch_wait_ms: Option<u64>,
    env: &[(&str, String)],
) -> anyhow::Result<Rate> {
    let group = format!("bench-job-{}", uuid::Uuid::new_v4().simple());
    let fetch_wait = fetch_wait_ms.map(|ms| ms.to_string());
    let mut extra = vec!["--faults", faults];
    if let Some(ms) = &fetch_wait {
        extra.extend(["--fetch-wait-max-ms", ms.as_str()]);
    }
    let process =
        ServiceProcess::start(kafka, registry_url, [topic, output, &group], &extra, env).await?;
    let (pid, ops, log) = (process.pid(), process.ops.clone(), process.log.clone());
    let measured = async {
        let client = reqwest::Client::new();
        let main = [("kafkit_stage", "main")];
        let read = |name: &'static str| {
            let client = &client;
            let url = format!("{ops}/metrics");
            async move {
                let text = client.get(url).send().await?.text().await?;
                anyhow::Ok(kafkit_telemetry::metrics::sum(&text, name, &main) as usize)
            }
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while read("messaging_client_consumed_messages_total").await? == 0 {
            if Instant::now() > deadline {
                bail!(
                    "consumer-service read nothing in 120 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        let (started, cpu_before) = (Instant::now(), cpu_time(pid));
        while read("messaging_process_duration_seconds_count").await? < count {
            if Instant::now() > deadline {
                bail!(
                    "consumer-service did not settle {count} orders in time; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        let took = started.elapsed();
        let cpu = cpu_time(pid)
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before));
        Ok(Rate::new(count, took, cpu))
    }
    .await;
    process.stop(measured.is_ok()).await?;
    measured
}

/// consumer-service in its own process (`kafkit consumer-service`, as a
/// user runs it), on a free port, logging to a file of its own.
struct ServiceProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT` of its operations endpoint.
    ops: String,
    log: std::path::PathBuf,
}

impl ServiceProcess {
    /// Started with `[topic, output topic, group]` and `extra` flags; returns
    /// once `/healthz` answers.
    async fn start(
        kafka: &KafkaSettings,
        registry_url: &str,
        [topic, output, group]: [&str; 3],
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let listen = format!("127.0.0.1:{}", devstack::free_port()?);
        let mut args = vec![
            "consumer-service",
            "--listen",
            &listen,
            "--topic",
            topic,
            "--output-topic",
            output,
            "--group",
            group,
            "--bootstrap-servers",
            &kafka.bootstrap_servers,
            "--registry-url",
            registry_url,
        ];
        args.extend_from_slice(extra);
        let log = std::env::temp_dir().join(format!("{group}.log"));
        let ops = format!("http://{listen}");
        let child = crate::dev::spawn_self(
            "consumer-service",
            &args,
            env,
            &log,
            &format!("{ops}/healthz"),
        )
        .await?;
        Ok(Self { child, ops, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 20 s for a graceful stop before a kill; the log
    /// is removed when `remove_log` (kept to read after a failure).
    async fn stop(self, remove_log: bool) -> anyhow::Result<()> {
        let Self { mut child, log, .. } = self;
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .await?;
        if remove_log {
            let _ = std::fs::remove_file(&log);
        }
        Ok(())
    }
}

/// Orders/s of the same job written on the raw client: one task, decode
/// with apache-avro's schema-aware deserializer, the same business rules,
/// encode with its schema-aware serializer, the same CloudEvents headers,
/// send without waiting, and store each partition's offsets in order as the
/// outputs are acknowledged (at most 1,000 per partition in flight).
async fn raw_job_rate(
    kafka: &KafkaSettings,
    topic: &str,
    output: &str,
    count: usize,
    confirmed_schema_id: u32,
) -> anyhow::Result<Rate> {
    const MAX_IN_FLIGHT: usize = 1_000;
    let consumer: StreamConsumer = kafka
        .client_config()
        .set(
            "group.id",
            format!("bench-raw-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            kafkit_messaging::DEFAULT_FETCH_WAIT_MS.to_string(),
        )
        .create()?;
    let producer: FutureProducer = ProducerSettings::default().client_config(kafka).create()?;
    consumer.subscribe(&[topic])?;
    let reader =
        apache_avro::reader::datum::GenericDatumReader::builder(OrderPlaced::schema()).build()?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(OrderConfirmed::schema())
        .build()?;
    let allowed: HashSet<&str> = ["EUR", "USD", "GBP"].into();
    type Ack = futures::future::BoxFuture<
        'static,
        (
            i64,
            Result<
                rdkafka::producer::future_producer::OwnedDeliveryResult,
                futures::channel::oneshot::Canceled,
            >,
        ),
    >;
    let mut acks: Vec<FuturesOrdered<Ack>> = (0..3).map(|_| FuturesOrdered::new()).collect();
    let (mut settled, mut in_flight) = (0, 0);
    let mut started = None;
    let mut cpu_before = None;
    while settled < count {
        let room = in_flight < MAX_IN_FLIGHT * acks.len();
        let next_ack = futures::future::poll_fn(|cx| {
            for (partition, queue) in acks.iter_mut().enumerate() {
                if let std::task::Poll::Ready(Some(done)) = queue.poll_next_unpin(cx) {
                    return std::task::Poll::Ready((partition, done));
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            biased;
            (partition, (offset, delivered)) = next_ack => {
                delivered?.map_err(|(e, _)| e)?;
                // Stores offset + 1: the next record to read.
                consumer.store_offset(topic, i32::try_from(partition)?, offset)?;
                settled += 1;
                in_flight -= 1;
            }
            received = consumer.recv(), if room => {
                let message = received?;
                if started.is_none() {
                    started = Some(Instant::now());
                    cpu_before = cpu_time(std::process::id());
                }
                let payload = message.payload().context("no payload")?;
                let order: OrderPlaced = reader.read_deser(&mut payload.get(5..).context("short")?)?;
                let total = order.items.iter().try_fold(0i64, |sum, item| {
                    i64::from(item.quantity).checked_mul(item.unit_price_cents).and_then(|l| sum.checked_add(l))
                });
                let (Some(total), true) = (total, allowed.contains(order.currency.as_str())) else {
                    bail!("the bench's orders are all valid");
                };
                let (mut source_id, mut parent) = ("", None);
                for header in message.headers().into_iter().flat_map(|h| h.iter()) {
                    let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
                    match (header.key, value) {
                        (ce::CE_ID, Some(id)) => source_id = id,
                        (ce::TRACEPARENT, Some(tp)) => parent = tp.parse::<TraceParent>().ok(),
                        _ => {}
                    }
                }
                let confirmed = OrderConfirmed {
                    order_id: order.order_id,
                    total_cents: total,
                    confirmed_at: 0,
                    source_event_id: source_id.to_owned(),
                };
                let mut body = Vec::with_capacity(64);
                body.push(0);
                body.extend_from_slice(&confirmed_schema_id.to_be_bytes());
                writer.write_ser(&mut body, &confirmed)?;
                let id = consumer_service::handler::confirmation_id(source_id);
                let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                let traceparent = parent.map_or_else(TraceParent::new_root, |p| p.child()).to_string();
                let headers = OwnedHeaders::new_with_capacity(7)
                    .insert(Header { key: ce::CE_SPECVERSION, value: Some(ce::SPEC_VERSION) })
                    .insert(Header { key: ce::CE_ID, value: Some(&id) })
                    .insert(Header { key: ce::CE_TYPE, value: Some(OrderConfirmed::CE_TYPE) })
                    .insert(Header { key: ce::CE_SOURCE, value: Some("/kafkit-bench-raw") })
                    .insert(Header { key: ce::CE_TIME, value: Some(&time) })
                    .insert(Header { key: ce::CONTENT_TYPE, value: Some(ce::AVRO_CONTENT_TYPE) })
                    .insert(Header { key: ce::TRACEPARENT, value: Some(&traceparent) });
                let record = FutureRecord::to(output)
                    .key(&confirmed.order_id)
                    .payload(&body)
                    .headers(headers);
                let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
                let offset = message.offset();
                let partition = usize::try_from(message.partition())?;
                acks.get_mut(partition).context("the bench topic has 3 partitions")?
                    .push_back(Box::pin(async move { (offset, delivery.await) }));
                in_flight += 1;
            }
        }
    }
    let took = started.context("nothing read")?.elapsed();
    let cpu = cpu_time(std::process::id())
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(Rate::new(count, took, cpu))
}

/// Does nothing: the consume path alone.
#[derive(Debug, Clone)]
struct NoopHandler;

impl Handler<OrderPlaced> for NoopHandler {
    async fn handle(&self, _: &Input<OrderPlaced>, _: &mut Outbox<'_>) -> Result<(), Failure> {
        Ok(())
    }
}

/// Waits 5 ms per record, as a handler calling an HTTP service or a database would.
#[derive(Debug, Clone)]
struct WaitingHandler;

impl Handler<OrderPlaced> for WaitingHandler {
    async fn handle(&self, _: &Input<OrderPlaced>, _: &mut Outbox<'_>) -> Result<(), Failure> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    }
}

/// Records/s of a `ConsumeLoop` settling `count` records of `topic`.
async fn consume_loop_rate<H: Handler<OrderPlaced> + 'static>(
    kafka: &KafkaSettings,
    events: &EventPublisher,
    codec: Arc<EventCodec>,
    topic: &str,
    count: usize,
    handler: H,
    ordering: Ordering,
) -> anyhow::Result<f64> {
    let pipeline = kafkit_telemetry::metrics::MetricsPipeline::new("kafkit-bench")?;
    let group_id = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let metrics = ConsumeMetrics::new(&pipeline.meter("bench"), Stage::Main, &group_id);
    let settings = ConsumeSettings {
        group_id,
        group_instance_id: None,
        session_timeout: Duration::from_secs(10),
        topics: vec![topic.to_owned()],
        stage: Stage::Main,
        policy: RetryPolicy::default(),
        pipeline: Pipeline {
            ordering,
            ..Pipeline::default()
        },
        outage_backoff: Duration::from_millis(100),
        outage_backoff_max: Duration::from_secs(1),
        lag_interval: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(5),
        fetch_wait: Duration::from_millis(kafkit_messaging::DEFAULT_FETCH_WAIT_MS),
    };
    let consume_loop = ConsumeLoop::new(
        kafka.client_config(),
        settings,
        codec,
        events.publisher().clone(),
        handler,
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
    // Rendering every metric takes CPU from the loop measured in this same
    // process: read every 20 ms (at most 20 ms late, about 1% of a run).
    while sum_of(&pipeline, "messaging_process_duration_seconds_count") < count as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await?;
    Ok(rate)
}

fn sum_of(pipeline: &kafkit_telemetry::metrics::MetricsPipeline, metric: &str) -> u64 {
    kafkit_telemetry::metrics::sum(&pipeline.render(), metric, &[]) as u64
}

/// Records/s of a raw `StreamConsumer` reading and storing `count` records.
/// Records/s of a raw `StreamConsumer` storing each offset; with `decode`,
/// also reading each payload into `OrderPlaced` (apache-avro's schema-aware
/// deserializer, built once), as a typed consumer written by hand would.
async fn raw_consume_rate(
    kafka: &KafkaSettings,
    topic: &str,
    count: usize,
    decode: bool,
) -> anyhow::Result<f64> {
    let reader =
        apache_avro::reader::datum::GenericDatumReader::builder(OrderPlaced::schema()).build()?;
    let consumer: StreamConsumer = kafka
        .client_config()
        .set(
            "group.id",
            format!("bench-raw-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            kafkit_messaging::DEFAULT_FETCH_WAIT_MS.to_string(),
        )
        .create()?;
    consumer.subscribe(&[topic])?;
    let first = consumer.recv().await?;
    consumer.store_offset_from_message(&first)?;
    drop(first);
    let started = Instant::now();
    for _ in 1..count {
        let message = consumer.recv().await?;
        if decode {
            let mut body = message
                .payload()
                .and_then(|p| p.get(5..))
                .context("no body")?;
            std::hint::black_box(reader.read_deser::<OrderPlaced>(&mut body)?);
        } else {
            std::hint::black_box(message.payload());
        }
        consumer.store_offset_from_message(&message)?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Latency from the produce acknowledgement of an `OrderPlaced` to reading its `OrderConfirmed`.
pub async fn end_to_end(
    bootstrap: &str,
    registry_url: &str,
    events: &EventPublisher,
    orders: usize,
    fetch_wait_ms: Option<u64>,
) -> anyhow::Result<(f64, f64)> {
    use clap::Parser;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (topic, output) = (
        format!("bench-e2e-{suffix}"),
        format!("bench-e2e-confirmed-{suffix}"),
    );
    let group = format!("bench-e2e-{suffix}");
    let mut args = vec![
        "consumer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        &topic,
        "--output-topic",
        &output,
        "--group",
        &group,
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry_url,
    ];
    // The service's default unless a wait is given; the reader waits the same.
    let fetch_wait = fetch_wait_ms.map(|ms| ms.to_string());
    if let Some(ms) = &fetch_wait {
        args.extend(["--fetch-wait-max-ms", ms.as_str()]);
    }
    let settings = consumer_service::Settings::try_parse_from(args)?;
    let app = consumer_service::service(settings).build().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let reader_wait = fetch_wait_ms.map_or(kafkit_messaging::DEFAULT_FETCH_WAIT_MS, |ms| ms);
    let reader: StreamConsumer = KafkaSettings::new(bootstrap)
        .client_config()
        .set("group.id", format!("bench-e2e-reader-{suffix}"))
        .set("fetch.wait.max.ms", reader_wait.to_string())
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[output.as_str()])?;
    let headers = EventHeaders::new::<OrderPlaced>("/kafkit-bench");
    let mut sent_at = std::collections::HashMap::new();
    let mut latencies = Vec::new();
    // Warm-up order: group joins, schema registration of OrderConfirmed.
    let warm = super::common::order();
    events
        .publish_event(&topic, &warm.order_id, &warm, &headers)
        .await?;
    tokio::time::timeout(Duration::from_secs(60), reader.recv())
        .await
        .context("no warm-up confirmation")??;
    for _ in 0..orders {
        let order = super::common::order();
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

/// What the fetch-wait study compares and how much it reads.
#[derive(Debug, Clone)]
pub struct FetchWaitStudy {
    /// The `fetch.wait.max.ms` values, the first one the baseline.
    pub waits: Vec<u64>,
    /// Orders each real-job run reads.
    pub job_orders: usize,
    /// Orders timed end to end per value.
    pub e2e_orders: usize,
    /// Real-job rounds per value.
    pub rounds: usize,
    /// The broker's process, for its idle CPU.
    pub broker_pid: u32,
}

/// One setting of the fetch-wait study.
#[derive(Debug, Clone)]
pub struct FetchWaitResult {
    /// `fetch.wait.max.ms` of consumer-service and of the reader.
    pub wait_ms: u64,
    /// End to end produce -> OrderConfirmed, p50 and p99 in ms.
    pub e2e: (f64, f64),
    /// consumer-service doing the real job, orders/s, per round.
    pub job: Vec<f64>,
    /// CPU while idle (main and retry consumers, nothing to read), in % of
    /// one core: consumer-service's and the broker's.
    pub idle_cpu: (f64, f64),
}

/// How long an idle consumer-service is measured, after it joined.
const IDLE_MEASURED: Duration = Duration::from_secs(20);

/// CPU % of one core an idle consumer-service (main and retry consumers on
/// empty topics) and the broker use at `fetch.wait.max.ms` = `wait_ms`.
async fn idle_cpu(
    kafka: &KafkaSettings,
    registry_url: &str,
    wait_ms: u64,
    broker_pid: u32,
) -> anyhow::Result<(f64, f64)> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (topic, output, group) = (
        format!("bench-idle-{suffix}"),
        format!("bench-idle-out-{suffix}"),
        format!("bench-idle-{suffix}"),
    );
    let wait = wait_ms.to_string();
    let extra = ["--static-membership", "false", "--fetch-wait-max-ms", &wait];
    let process =
        ServiceProcess::start(kafka, registry_url, [&topic, &output, &group], &extra, &[]).await?;
    let pid = process.pid();
    // Both consumers join (and the first fetches settle) before measuring.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (service_before, broker_before) = (cpu_time(pid), cpu_time(broker_pid));
    tokio::time::sleep(IDLE_MEASURED).await;
    let (service_after, broker_after) = (cpu_time(pid), cpu_time(broker_pid));
    process.stop(true).await?;
    let percent = |after: Option<Duration>, before: Option<Duration>| {
        after.zip(before).map_or(f64::NAN, |(a, b)| {
            a.saturating_sub(b).as_secs_f64() / IDLE_MEASURED.as_secs_f64() * 100.0
        })
    };
    Ok((
        percent(service_after, service_before),
        percent(broker_after, broker_before),
    ))
}

/// End-to-end latency and real-job throughput of consumer-service at each
/// `fetch.wait.max.ms` in `waits` (Tansu holds a fetch that found nothing
/// new for the whole wait, so the wait sets the floor of each hop's latency).
pub async fn fetch_wait_study(
    kafka: &KafkaSettings,
    registry_url: &str,
    events: &EventPublisher,
    study: &FetchWaitStudy,
) -> anyhow::Result<Vec<FetchWaitResult>> {
    let FetchWaitStudy {
        waits,
        job_orders,
        e2e_orders,
        rounds,
        broker_pid,
    } = study;
    let (job_orders, e2e_orders, rounds, broker_pid) =
        (*job_orders, *e2e_orders, *rounds, *broker_pid);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (orders, output) = (
        format!("bench-wait-orders-{suffix}"),
        format!("bench-wait-confirmations-{suffix}"),
    );
    let policy = RetryPolicy::default();
    let mut specs = vec![
        kafkit_messaging::TopicSpec::new(&orders, 3),
        kafkit_messaging::TopicSpec::new(&output, 3),
        kafkit_messaging::TopicSpec::new(policy.dlq_topic(&orders), 3),
    ];
    for retry in policy.retry_topics(&orders) {
        specs.push(kafkit_messaging::TopicSpec::new(&retry, 3));
    }
    kafkit_messaging::ensure_topics(kafka, &specs).await?;
    fill(events, &orders, job_orders, None).await?;
    let mut results: Vec<FetchWaitResult> = Vec::new();
    for &wait_ms in waits.iter() {
        let e2e = end_to_end(
            &kafka.bootstrap_servers,
            registry_url,
            events,
            e2e_orders,
            Some(wait_ms),
        )
        .await?;
        let idle_cpu = idle_cpu(kafka, registry_url, wait_ms, broker_pid).await?;
        println!(
            "fetch wait {wait_ms} ms: end to end p50 {:.2} ms, p99 {:.2} ms; idle CPU: consumer-service {:.1}%, broker {:.1}%",
            e2e.0, e2e.1, idle_cpu.0, idle_cpu.1
        );
        results.push(FetchWaitResult {
            wait_ms,
            e2e,
            job: Vec::new(),
            idle_cpu,
        });
    }
    // Rounds alternate the settings, so a noisy minute hurts them alike.
    for round in 1..=rounds {
        for result in &mut results {
            let rate = service_job_rate(
                kafka,
                registry_url,
                &orders,
                &output,
                job_orders,
                "",
                Some(result.wait_ms),
            )
            .await?;
            println!(
                "fetch wait round {round}: {} ms: consumer-service {:.0} orders/s",
                result.wait_ms, rate.per_second
            );
            result.job.push(rate.per_second);
        }
    }
    Ok(results)
}
