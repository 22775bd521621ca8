//! `kafkit bench`: kafkit's hot paths side by side with a baseline, in one run.
//!
//! Machines here are shared and noisy, so only ratios measured in the same
//! run mean anything. Each pair is run alternately, several rounds; the best
//! round of each side and the median of the round ratios are reported.
//! docs/benchmarks.md says what each part measures and what it found.
//!
//! This file: the codec (encode and decode apart, heap allocations per call),
//! publish (`EventPublisher` against a raw `FutureProducer` sending
//! pre-encoded bytes, and one encoding each event), HTTP ingest
//! (producer-service against a bare 202 and the same job by hand). The
//! consume side is in `bench_consume`, the cost of exporting spans in
//! `bench_telemetry`. The registry's request counter is read before and
//! after the timed runs: after warm-up, no request per record.

use anyhow::Context;
use axum::http::StatusCode;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafkit_events::{CodecSettings, Event, EventCodec, EventHeaders};
use kafkit_messaging::{EventPublisher, KafkaSettings, ProducerSettings, Publisher};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use schema_registry::{
    Application as Registry, KafkaStoreSettings, RegistrySettings, StorageSettings,
};
use shared_events::OrderPlaced;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events per publish round.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Records in flight at once in the publish benchmark.
    #[arg(long, default_value_t = 1_000)]
    pub in_flight: usize,
    /// Requests per HTTP round (enough for a p99 of 200 requests).
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// `linger.ms` of both publish paths and of producer-service.
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,
    /// Orders per round of the real job (consumer-service against the raw pipeline).
    #[arg(long, default_value_t = 200_000)]
    pub job_orders: usize,
    /// Records per round of the I/O-bound handler benchmark.
    #[arg(long, default_value_t = 4_000)]
    pub io_records: usize,
    /// Orders timed end to end (one at a time).
    #[arg(long, default_value_t = 200)]
    pub e2e_orders: usize,
    /// Rounds of each side, alternating.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Run only these parts (comma separated): codec, publish, http,
    /// consume, e2e, latency (end-to-end latency and real-job throughput at
    /// each `--fetch-waits-ms`), telemetry (consume and publish with and
    /// without an OTLP endpoint).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "codec,publish,http,consume,e2e,latency,telemetry"
    )]
    pub only: Vec<Part>,
    /// Encode + decode round trips per round of the codec part.
    #[arg(long, default_value_t = 200_000)]
    pub codec_events: usize,
    /// `fetch.wait.max.ms` values the latency part compares.
    #[arg(long, value_delimiter = ',', default_value = "100,50,25,10,5")]
    pub fetch_waits_ms: Vec<u64>,
    /// Orders each consumer-service run of the telemetry part reads.
    #[arg(long, default_value_t = 100_000)]
    pub telemetry_orders: usize,
    /// Events each publish run of the telemetry part sends.
    #[arg(long, default_value_t = 100_000)]
    pub telemetry_events: usize,
    /// Orders each real-job run of the latency part reads.
    #[arg(long, default_value_t = 50_000)]
    pub latency_job_orders: usize,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Codec,
    Publish,
    Http,
    Consume,
    E2e,
    Latency,
    Telemetry,
}

pub(crate) fn order() -> OrderPlaced {
    OrderPlaced {
        customer_id: "bench-customer".into(),
        ..crate::dev::check::sample_order()
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // Memory storage: SQLite is too slow for these volumes, and nothing
    // timed here rewinds a partition (see devstack::Storage).
    let broker = tokio::task::spawn_blocking(|| {
        devstack::Broker::start_for_test_with(devstack::Storage::Memory)
    })
    .await??;
    let bootstrap = broker.bootstrap_servers().to_owned();
    let store = KafkaStoreSettings {
        topic: "_schemas".into(),
        ..KafkaStoreSettings::new(&bootstrap)
    };
    let registry = Registry::build(RegistrySettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        storage: StorageSettings::Kafka(store),
        users: Default::default(),
    })
    .await?
    .spawn();
    println!(
        "broker {bootstrap} (Tansu {}), registry {}",
        devstack::TANSU_VERSION,
        registry.url
    );

    let kafka = KafkaSettings::new(&bootstrap);
    let topic = "bench-publish";
    kafkit_messaging::ensure_topics(&kafka, &[kafkit_messaging::TopicSpec::new(topic, 3)]).await?;
    let runs = |part: Part| args.only.contains(&part);
    let codec_times = match runs(Part::Codec) {
        true => Some(codec_bench(&args, &registry.url).await?),
        false => None,
    };
    let publish = match runs(Part::Publish) {
        true => Some(publish_bench(&args, &kafka, &registry.url, topic).await?),
        false => None,
    };
    let http = match runs(Part::Http) {
        true => Some(http_bench(&args, &bootstrap, &registry.url).await?),
        false => None,
    };
    let codec = Arc::new(EventCodec::new(CodecSettings::new(registry.url.clone()))?);
    let events = EventPublisher::new(
        Publisher::new(&kafka, &ProducerSettings::default())?,
        Arc::clone(&codec),
    );
    let consume = match runs(Part::Consume) {
        true => {
            let before = registry_requests(&registry.url).await?;
            let sizes = crate::bench_consume::ConsumeSizes {
                job_orders: args.job_orders,
                io_records: args.io_records,
                rounds: args.rounds,
            };
            let result = crate::bench_consume::consume_bench(
                &kafka,
                &registry.url,
                &events,
                Arc::clone(&codec),
                sizes,
            )
            .await?;
            Some((result, registry_requests(&registry.url).await? - before))
        }
        false => None,
    };
    let e2e = match runs(Part::E2e) {
        true => Some(
            crate::bench_consume::end_to_end(
                &bootstrap,
                &registry.url,
                &events,
                args.e2e_orders,
                None,
            )
            .await?,
        ),
        false => None,
    };
    let latency = match runs(Part::Latency) {
        true => Some(
            crate::bench_consume::fetch_wait_study(
                &kafka,
                &registry.url,
                &events,
                &crate::bench_consume::FetchWaitStudy {
                    waits: args.fetch_waits_ms.clone(),
                    job_orders: args.latency_job_orders,
                    e2e_orders: args.e2e_orders,
                    rounds: args.rounds,
                    broker_pid: broker.pid(),
                },
            )
            .await?,
        ),
        false => None,
    };
    let telemetry = match runs(Part::Telemetry) {
        true => Some(
            crate::bench_telemetry::telemetry_bench(
                &kafka,
                &registry.url,
                &events,
                crate::bench_telemetry::TelemetrySizes {
                    orders: args.telemetry_orders,
                    events: args.telemetry_events,
                    in_flight: args.in_flight,
                    linger_ms: args.linger_ms,
                    rounds: args.rounds,
                },
            )
            .await?,
        ),
        false => None,
    };

    println!();
    println!("| benchmark | kafkit | baseline | ratio |");
    println!("|---|---|---|---|");
    if let Some(codec) = codec_times {
        println!(
            "| codec: encode + decode one OrderPlaced, ns ({} per round, best round) | {:.0} | {:.0} (apache-avro schema-aware serde, writer and reader built once) | {:.2}x (lower is better) |",
            args.codec_events,
            codec.kafkit_ns,
            codec.bare_ns,
            codec.kafkit_ns / codec.bare_ns
        );
        println!(
            "| codec: encode / decode apart, ns | {:.0} / {:.0} | {:.0} / {:.0} | {:.2}x / {:.2}x |",
            codec.kafkit_split.0,
            codec.kafkit_split.1,
            codec.bare_split.0,
            codec.bare_split.1,
            codec.kafkit_split.0 / codec.bare_split.0,
            codec.kafkit_split.1 / codec.bare_split.1
        );
        match codec.allocations {
            Some(a) => println!(
                "| codec: heap allocations per encode / per decode | {} / {} | {} / {} | |",
                a.kafkit_encode, a.kafkit_decode, a.bare_encode, a.bare_decode
            ),
            None => println!(
                "| codec: heap allocations | not counted (the counting allocator is not installed) | | |"
            ),
        }
    }
    if let Some(publish) = &publish {
        println!(
            "| publish, events/s ({} events, {} in flight; best rounds) | {:.0} | {:.0} (raw FutureProducer, pre-encoded) | {:.2}x (median of rounds {:.2}x) |",
            args.events,
            args.in_flight,
            publish.kafkit,
            publish.raw,
            publish.kafkit / publish.raw,
            crate::bench_consume::median(
                &publish.round_ratios.iter().map(|r| r.0).collect::<Vec<_>>()
            )
        );
        println!(
            "| publish against a hand-written producer that encodes each event, events/s | {:.0} | {:.0} (raw FutureProducer, apache-avro serde encode per event) | {:.2}x (median of rounds {:.2}x) |",
            publish.kafkit,
            publish.raw_encoding,
            publish.kafkit / publish.raw_encoding,
            crate::bench_consume::median(
                &publish.round_ratios.iter().map(|r| r.1).collect::<Vec<_>>()
            )
        );
    }
    if let Some(http) = &http {
        println!(
            "| HTTP ingest, requests/s ({} requests, {} clients) | {:.0} | {:.0} (bare axum 202) | {:.2}x |",
            args.requests,
            args.concurrency,
            http.kafkit.rps,
            http.baseline.rps,
            http.kafkit.rps / http.baseline.rps
        );
        println!(
            "| HTTP latency p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms | |",
            http.kafkit.p50_ms, http.kafkit.p99_ms, http.baseline.p50_ms, http.baseline.p99_ms
        );
        println!(
            "| HTTP ingest against the same job by hand, requests/s (p50 / p99), best rounds | {:.0} ({:.2} / {:.2} ms) | {:.0} ({:.2} / {:.2} ms) (axum, JSON parsed, raw FutureProducer acknowledgement of pre-encoded bytes) | {:.2}x (p99 {:.2}x); median of rounds {:.2}x (p99 {:.2}x) |",
            http.kafkit.rps,
            http.kafkit.p50_ms,
            http.kafkit.p99_ms,
            http.fair.rps,
            http.fair.p50_ms,
            http.fair.p99_ms,
            http.kafkit.rps / http.fair.rps,
            http.kafkit.p99_ms / http.fair.p99_ms,
            crate::bench_consume::median(&http.fair_ratios.iter().map(|r| r.0).collect::<Vec<_>>()),
            crate::bench_consume::median(&http.fair_ratios.iter().map(|r| r.1).collect::<Vec<_>>())
        );
    }
    if let Some(telemetry) = &telemetry {
        use crate::bench_consume::{cpu, median, rates};
        use crate::bench_telemetry::Tracing;
        let off = telemetry.of(Tracing::Off);
        for tracing in [Tracing::Every, Tracing::OneInTen] {
            let this = telemetry.of(tracing);
            let (consume_ratio, publish_ratio) = telemetry.ratios(tracing);
            println!(
                "| telemetry, {}: consumer-service real job, orders/s (CPU us/order; spans exported per order) | {:.0} ({:.1}; {:.2}) | {:.0} ({:.1}), no endpoint | {consume_ratio:.2}x |",
                tracing.label(),
                median(&rates(&this.consume)),
                median(&cpu(&this.consume)),
                median(&this.consume_spans),
                median(&rates(&off.consume)),
                median(&cpu(&off.consume)),
            );
            println!(
                "| telemetry, {}: publish, events/s (spans exported per event) | {:.0} ({:.2}) | {:.0}, no endpoint | {publish_ratio:.2}x |",
                tracing.label(),
                median(&this.publish),
                median(&this.publish_spans),
                median(&off.publish),
            );
        }
    }
    if let Some((consume, _)) = &consume {
        use crate::bench_consume::{cpu, median, rates, ratios};
        let (job, raw, failing) = (
            rates(&consume.job_kafkit),
            rates(&consume.job_raw),
            rates(&consume.job_failing),
        );
        println!(
            "| **real job**: consumer-service, OrderPlaced -> OrderConfirmed, orders/s ({} orders; CPU us/order) | {:.0} ({:.1}) | {:.0} ({:.1}) (raw rdkafka pipeline, same job) | {:.2}x |",
            args.job_orders,
            median(&job),
            median(&cpu(&consume.job_kafkit)),
            median(&raw),
            median(&cpu(&consume.job_raw)),
            median(&ratios(&job, &raw))
        );
        println!(
            "| real job with 1% failing once, orders/s | {:.0} | {:.0} (0% failing) | {:.2}x |",
            median(&failing),
            median(&job),
            median(&ratios(&failing, &job))
        );
        println!(
            "| I/O-bound handler (5 ms wait, 100 keys), records/s ({} records) | {:.0} (key ordering) | {:.0} (partition ordering) | {:.1}x |",
            args.io_records,
            median(&consume.io_key),
            median(&consume.io_partition),
            median(&ratios(&consume.io_key, &consume.io_partition))
        );
        println!(
            "| consume path, no-op handler, records/s ({} records) | {:.0} | {:.0} (raw StreamConsumer, store offsets) | {:.2}x |",
            args.job_orders,
            median(&consume.noop_kafkit),
            median(&consume.noop_raw),
            median(&ratios(&consume.noop_kafkit, &consume.noop_raw))
        );
        println!(
            "| consume path, no-op handler (it decodes each record), against a raw consumer that decodes too, records/s | {:.0} | {:.0} (raw StreamConsumer, apache-avro serde decode, store offsets) | {:.2}x |",
            median(&consume.noop_kafkit),
            median(&consume.noop_raw_decoding),
            median(&ratios(&consume.noop_kafkit, &consume.noop_raw_decoding))
        );
    }
    if let Some((e2e_p50, e2e_p99)) = e2e {
        println!(
            "| end to end produce -> OrderConfirmed, p50 / p99 ({} orders) | {e2e_p50:.2} / {e2e_p99:.2} ms | | |",
            args.e2e_orders
        );
    }
    if let Some(study) = &latency {
        use crate::bench_consume::median;
        // Against the first setting given (100 ms, the old default, unless told otherwise).
        let base = study.first().map(|r| median(&r.job)).unwrap_or(f64::NAN);
        for result in study {
            println!(
                "| fetch.wait.max.ms {}: end to end p50 / p99; real job orders/s ({} orders); idle CPU service / broker | {:.2} / {:.2} ms; {:.0}; {:.1}% / {:.1}% | {:.0} at {} ms | {:.2}x |",
                result.wait_ms,
                args.latency_job_orders,
                result.e2e.0,
                result.e2e.1,
                median(&result.job),
                result.idle_cpu.0,
                result.idle_cpu.1,
                base,
                study.first().map_or(0, |r| r.wait_ms),
                median(&result.job) / base
            );
        }
    }
    let requests = publish.as_ref().map_or(0, |p| p.registry_requests)
        + http.as_ref().map_or(0, |h| h.registry_requests)
        + consume.as_ref().map_or(0, |c| c.1);
    println!("| registry requests during the timed runs (after warm-up) | {requests} | | |");
    registry.stop().await?;
    Ok(())
}

/// The codec part's result.
#[derive(Debug, Clone, Copy)]
struct CodecResult {
    kafkit_ns: f64,
    bare_ns: f64,
    /// (encode, decode), best round of each.
    kafkit_split: (f64, f64),
    bare_split: (f64, f64),
    allocations: Option<Allocations>,
}

/// Heap allocations per call (reallocations included), counted on one thread.
#[derive(Debug, Clone, Copy)]
struct Allocations {
    kafkit_encode: f64,
    kafkit_decode: f64,
    bare_encode: f64,
    bare_decode: f64,
}

/// Heap allocations per call of `f` over `calls` calls, on this thread.
fn allocations_per_call(
    calls: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let (result, spent) = densa_alloc::measure(|| (0..calls).try_for_each(|_| f()));
    result?;
    Ok((spent.allocs + spent.reallocs) as f64 / calls as f64)
}

/// Nanoseconds per encode + decode of one `OrderPlaced`: kafkit's codec
/// (warm registry cache, Confluent framing, the body check before reading)
/// against apache-avro's schema-aware serializer and deserializer with the
/// same framing, writer and reader built once. Best round of each, and the
/// heap allocations of each call (counted per thread by the binary's
/// allocator).
async fn codec_bench(args: &BenchArgs, registry_url: &str) -> anyhow::Result<CodecResult> {
    use futures::FutureExt;
    let codec = EventCodec::new(CodecSettings::new(registry_url))?;
    let order = order();
    let topic = "bench-codec";
    let warm = codec.encode(topic, &order).await?;
    let id = codec.decode::<OrderPlaced>(Some(&warm)).await?.schema_id;
    let writer =
        apache_avro::writer::datum::GenericDatumWriter::builder(OrderPlaced::schema()).build()?;
    let reader =
        apache_avro::reader::datum::GenericDatumReader::builder(OrderPlaced::schema()).build()?;
    let bare_encode = |order: &OrderPlaced| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(128);
        bytes.push(0u8);
        bytes.extend_from_slice(&id.to_be_bytes());
        writer.write_ser(&mut bytes, order)?;
        Ok(bytes)
    };
    let bare_decode = |bytes: &[u8]| -> anyhow::Result<OrderPlaced> {
        Ok(reader.read_deser(&mut bytes.get(5..).context("short")?)?)
    };
    // Counted synchronously on this thread: a warm codec never waits, so
    // each call must be ready at its first poll.
    let allocations = if densa_alloc::is_active() {
        let ready = "a warm codec call waited";
        let calls = 1_000;
        let encoded = bare_encode(&order)?;
        Some(Allocations {
            kafkit_encode: allocations_per_call(calls, || {
                std::hint::black_box(
                    codec
                        .encode(topic, &order)
                        .now_or_never()
                        .context(ready)??,
                );
                Ok(())
            })?,
            kafkit_decode: allocations_per_call(calls, || {
                let decoded = codec.decode::<OrderPlaced>(Some(&encoded));
                std::hint::black_box(decoded.now_or_never().context(ready)??);
                Ok(())
            })?,
            bare_encode: allocations_per_call(calls, || {
                std::hint::black_box(bare_encode(&order)?);
                Ok(())
            })?,
            bare_decode: allocations_per_call(calls, || {
                std::hint::black_box(bare_decode(&encoded)?);
                Ok(())
            })?,
        })
    } else {
        None
    };
    // Encode and decode are timed apart (decode reads one payload over
    // and over), so each side's split is visible too.
    let encoded = codec.encode(topic, &order).await?;
    let n = args.codec_events as f64;
    let mut best = [f64::INFINITY; 4];
    for round in 1..=args.rounds {
        let started = Instant::now();
        for _ in 0..args.codec_events {
            std::hint::black_box(codec.encode(topic, std::hint::black_box(&order)).await?);
        }
        let kafkit_encode = started.elapsed().as_nanos() as f64 / n;
        let started = Instant::now();
        for _ in 0..args.codec_events {
            let payload = Some(std::hint::black_box(&encoded[..]));
            std::hint::black_box(codec.decode::<OrderPlaced>(payload).await?);
        }
        let kafkit_decode = started.elapsed().as_nanos() as f64 / n;
        let started = Instant::now();
        for _ in 0..args.codec_events {
            std::hint::black_box(bare_encode(std::hint::black_box(&order))?);
        }
        let bare_encode_ns = started.elapsed().as_nanos() as f64 / n;
        let started = Instant::now();
        for _ in 0..args.codec_events {
            std::hint::black_box(bare_decode(std::hint::black_box(&encoded))?);
        }
        let bare_decode_ns = started.elapsed().as_nanos() as f64 / n;
        let (k, b) = (
            kafkit_encode + kafkit_decode,
            bare_encode_ns + bare_decode_ns,
        );
        println!(
            "codec round {round}: kafkit {k:.0} ns (encode {kafkit_encode:.0}, decode {kafkit_decode:.0}), apache-avro serde {b:.0} ns (encode {bare_encode_ns:.0}, decode {bare_decode_ns:.0}) ({:.2}x)",
            k / b
        );
        for (best, now) in
            best.iter_mut()
                .zip([kafkit_encode, kafkit_decode, bare_encode_ns, bare_decode_ns])
        {
            *best = best.min(now);
        }
    }
    let [kafkit_encode, kafkit_decode, bare_encode_ns, bare_decode_ns] = best;
    Ok(CodecResult {
        kafkit_ns: kafkit_encode + kafkit_decode,
        bare_ns: bare_encode_ns + bare_decode_ns,
        kafkit_split: (kafkit_encode, kafkit_decode),
        bare_split: (bare_encode_ns, bare_decode_ns),
        allocations,
    })
}

async fn registry_requests(url: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix("schema_registry_requests_total "))
        .and_then(|n| n.trim().parse().ok())
        .context("the registry's /metrics has no request counter")
}

/// Returns (kafkit events/s, raw events/s, registry requests during the runs).
async fn publish_bench(
    args: &BenchArgs,
    kafka: &KafkaSettings,
    registry_url: &str,
    topic: &str,
) -> anyhow::Result<PublishResult> {
    let settings = ProducerSettings {
        linger: Duration::from_millis(args.linger_ms),
        ..ProducerSettings::default()
    };
    let codec = Arc::new(EventCodec::new(CodecSettings::new(registry_url))?);
    let events = EventPublisher::new(Publisher::new(kafka, &settings)?, codec.clone());
    let raw: FutureProducer = settings.client_config(kafka).create()?;
    let sample = order();
    let headers = EventHeaders::new::<OrderPlaced>("/kafkit-bench");
    // Warm-up: registers the schema, fills caches, opens connections.
    let payload = codec.encode(topic, &sample).await?;
    for _ in 0..200 {
        events
            .publish_event(topic, &sample.order_id, &sample, &headers)
            .await?;
    }
    let id = codec.schema_id::<OrderPlaced>(topic).await?;
    let writer =
        apache_avro::writer::datum::GenericDatumWriter::builder(OrderPlaced::schema()).build()?;
    let raw_side = RawSide {
        producer: &raw,
        topic,
        in_flight: args.in_flight,
        headers: headers.to_pairs(),
        key: &sample.order_id,
    };
    let before = registry_requests(registry_url).await?;
    let mut best = PublishResult::default();
    for round in 1..=args.rounds {
        let kafkit_rate = publish_round(&events, topic, args.events, args.in_flight).await?;
        let raw_rate = raw_side.round(args.events, |_| Ok(payload.clone())).await?;
        let encoding_rate = raw_side
            .round(args.events, |i| {
                let mut event = sample.clone();
                event.customer_id = format!("bench-customer-{i}");
                let mut bytes = Vec::with_capacity(128);
                bytes.push(0u8);
                bytes.extend_from_slice(&id.to_be_bytes());
                writer.write_ser(&mut bytes, &event)?;
                Ok(bytes)
            })
            .await?;
        println!(
            "publish round {round}: kafkit {kafkit_rate:.0}/s, raw pre-encoded {raw_rate:.0}/s ({:.2}x), raw encoding each {encoding_rate:.0}/s ({:.2}x)",
            kafkit_rate / raw_rate,
            kafkit_rate / encoding_rate
        );
        best.kafkit = best.kafkit.max(kafkit_rate);
        best.raw = best.raw.max(raw_rate);
        best.raw_encoding = best.raw_encoding.max(encoding_rate);
        best.round_ratios
            .push((kafkit_rate / raw_rate, kafkit_rate / encoding_rate));
    }
    best.registry_requests = registry_requests(registry_url).await? - before;
    Ok(best)
}

/// Best rounds of the publish part.
#[derive(Debug, Default, Clone)]
struct PublishResult {
    kafkit: f64,
    /// A raw `FutureProducer` sending pre-encoded bytes.
    raw: f64,
    /// A raw `FutureProducer` encoding each order with apache-avro's serde
    /// serializer first (what a team writes by hand).
    raw_encoding: f64,
    /// Each round's (kafkit / raw, kafkit / raw encoding).
    round_ratios: Vec<(f64, f64)>,
    registry_requests: u64,
}

/// The raw side of the publish part: a `FutureProducer` with the same
/// settings, key and headers (built once), `in_flight` sends awaited at once.
struct RawSide<'a> {
    producer: &'a FutureProducer,
    topic: &'a str,
    in_flight: usize,
    headers: Vec<(&'static str, Vec<u8>)>,
    key: &'a str,
}

impl RawSide<'_> {
    /// Events/s of `count` sends of what `payload(i)` gives.
    async fn round(
        &self,
        count: usize,
        payload: impl Fn(usize) -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut pending = FuturesUnordered::new();
        for i in 0..count {
            if pending.len() >= self.in_flight {
                pending.next().await.context("publish stream ended")??;
            }
            let bytes = payload(i)?;
            pending.push(async move {
                let mut kafka_headers = OwnedHeaders::new_with_capacity(self.headers.len());
                for (name, value) in &self.headers {
                    kafka_headers = kafka_headers.insert(Header {
                        key: name,
                        value: Some(value),
                    });
                }
                let record = FutureRecord::to(self.topic)
                    .key(self.key)
                    .payload(&bytes)
                    .headers(kafka_headers);
                self.producer
                    .send(record, Timeout::After(Duration::from_secs(30)))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| anyhow::Error::from(e))
            });
        }
        while let Some(result) = pending.next().await {
            result?;
        }
        Ok(count as f64 / started.elapsed().as_secs_f64())
    }
}

/// Events/s of `EventPublisher` publishing `count` orders (each its own
/// customer id, so each is encoded; headers taken in turn from 1,024) with
/// `in_flight` awaiting their acknowledgement at once.
pub(crate) async fn publish_round(
    events: &EventPublisher,
    topic: &str,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    let sample = order();
    // Headers of 1,024 events (ids and traces of their own), made before
    // the clock starts and used in turn: varied traces for a sampler, and
    // warm in the cache as a caller's headers are when it publishes.
    let headers: Vec<EventHeaders> = (0..1024)
        .map(|_| EventHeaders::new::<OrderPlaced>("/kafkit-bench"))
        .collect();
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for (i, headers) in (0..count).zip(headers.iter().cycle()) {
        if pending.len() >= in_flight {
            pending.next().await.context("publish stream ended")??;
        }
        let sample = &sample;
        pending.push(async move {
            let mut event = sample.clone();
            event.customer_id = format!("bench-customer-{i}");
            events
                .publish_event(topic, &event.order_id, &event, headers)
                .await
        });
    }
    while let Some(result) = pending.next().await {
        result?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

#[derive(Debug, Default, Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug)]
struct HttpResult {
    kafkit: Load,
    baseline: Load,
    /// The fair baseline: parse the same JSON, await a raw producer's
    /// acknowledgement of pre-encoded bytes.
    fair: Load,
    /// Each round's producer-service / by hand: (throughput, p99).
    fair_ratios: Vec<(f64, f64)>,
    registry_requests: u64,
}

/// The strongest HTTP ingest a team would write by hand for the same job:
/// axum, the JSON body parsed, one pre-encoded `OrderPlaced` (same schema id,
/// same CloudEvents headers) sent with a raw `FutureProducer` with the
/// producer-service's settings, 202 only with the acknowledgement in hand.
/// No validation, no idempotency, no per-request encoding, no telemetry.
async fn fair_ingest(
    args: &BenchArgs,
    bootstrap: &str,
    registry_url: &str,
    topic: &str,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let codec = EventCodec::new(CodecSettings::new(registry_url))?;
    let sample = order();
    let payload = Arc::new(codec.encode(topic, &sample).await?);
    let mut headers = OwnedHeaders::new();
    for (name, value) in EventHeaders::new::<OrderPlaced>("/kafkit-bench").to_pairs() {
        headers = headers.insert(Header {
            key: name,
            value: Some(&value),
        });
    }
    let settings = ProducerSettings {
        linger: Duration::from_millis(args.linger_ms),
        ..ProducerSettings::default()
    };
    let producer: FutureProducer = settings
        .client_config(&KafkaSettings::new(bootstrap))
        .create()?;
    let topic = topic.to_owned();
    let handler = move |body: axum::body::Bytes| {
        let (producer, payload, headers, topic) = (
            producer.clone(),
            Arc::clone(&payload),
            headers.clone(),
            topic.clone(),
        );
        async move {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
            if parsed.is_err() {
                return (StatusCode::BAD_REQUEST, "{}".to_owned());
            }
            let key = uuid::Uuid::new_v4().to_string();
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(payload.as_slice())
                .headers(headers);
            match producer.send(record, Duration::from_secs(5)).await {
                Ok(delivery) => (
                    StatusCode::ACCEPTED,
                    serde_json::json!({"order_id": key, "partition": delivery.partition, "offset": delivery.offset})
                        .to_string(),
                ),
                Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "{}".to_owned()),
            }
        }
    };
    let app = axum::Router::new().route("/v1/orders", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/orders", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, server))
}

/// `args.requests` POSTs from `args.concurrency` clients; all must answer 202.
async fn load(url: &str, body: &str, args: &BenchArgs) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let per_client = args.requests / args.concurrency;
    let started = Instant::now();
    let workers = (0..args.concurrency).map(|_| {
        let (client, url, body) = (client.clone(), url.to_owned(), body.to_owned());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == StatusCode::ACCEPTED,
                    "answered {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    });
    let mut latencies = Vec::new();
    for worker in futures::future::join_all(workers).await {
        latencies.extend(worker??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1e3
    };
    Ok(Load {
        rps: latencies.len() as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

async fn http_bench(
    args: &BenchArgs,
    bootstrap: &str,
    registry_url: &str,
) -> anyhow::Result<HttpResult> {
    use clap::Parser;
    let settings = producer_service::Settings::try_parse_from([
        "producer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        "bench-http",
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry_url,
        "--linger-ms",
        &args.linger_ms.to_string(),
    ])?;
    let app = producer_service::service(settings).build().await?;
    let service_url = format!("http://{}/v1/orders", app.local_addr());
    let (stop_service, service_stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app.run_until_stopped(async {
        let _ = service_stopped.await;
    }));

    let bare = axum::Router::new().route(
        "/v1/orders",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let accepted = serde_json::json!({"received": body.len()}).to_string();
            (
                StatusCode::ACCEPTED,
                [("content-type", "application/json")],
                accepted,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_url = format!("http://{}/v1/orders", listener.local_addr()?);
    let bare_server = tokio::spawn(async move { axum::serve(listener, bare).await });
    let (fair_url, fair_server) = fair_ingest(args, bootstrap, registry_url, "bench-http").await?;

    let body = serde_json::json!({
        "customer_id": "bench-customer",
        "items": [{"sku": "BOOK-42", "quantity": 2, "unit_price_cents": 1999}, {"sku": "MUG-7", "quantity": 1, "unit_price_cents": 850}],
        "currency": "EUR"
    })
    .to_string();
    // Warm-up both, including the schema registration.
    let warm = BenchArgs {
        requests: args.concurrency * 10,
        ..args.clone()
    };
    load(&service_url, &body, &warm).await?;
    load(&bare_url, &body, &warm).await?;
    load(&fair_url, &body, &warm).await?;
    let before = registry_requests(registry_url).await?;
    let (mut kafkit, mut baseline, mut fair) = (Load::default(), Load::default(), Load::default());
    let mut fair_ratios = Vec::new();
    for round in 1..=args.rounds {
        let k = load(&service_url, &body, args).await?;
        let b = load(&bare_url, &body, args).await?;
        let f = load(&fair_url, &body, args).await?;
        println!(
            "http round {round}: producer-service {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms), bare axum {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms), axum + raw producer {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms)",
            k.rps, k.p50_ms, k.p99_ms, b.rps, b.p50_ms, b.p99_ms, f.rps, f.p50_ms, f.p99_ms
        );
        fair_ratios.push((k.rps / f.rps, k.p99_ms / f.p99_ms));
        if k.rps > kafkit.rps {
            kafkit = k;
        }
        if b.rps > baseline.rps {
            baseline = b;
        }
        if f.rps > fair.rps {
            fair = f;
        }
    }
    let registry_requests = registry_requests(registry_url).await? - before;
    let _ = stop_service.send(());
    service.await??;
    bare_server.abort();
    fair_server.abort();
    Ok(HttpResult {
        kafkit,
        baseline,
        fair,
        fair_ratios,
        registry_requests,
    })
}
