//! `kafkit bench`: kafkit's hot paths side by side with a baseline, in one run.
//!
//! Machines here are shared and noisy, so only ratios measured in the same
//! run mean anything. Each pair is run alternately, several rounds; the best
//! round of each side and the median of the round ratios are reported.
//! docs/benchmarks.md says what each part measures and what it found.
//!
//! One module per part, each a leaf the report (`run`, here) calls:
//! `codec` (encode and decode apart, heap allocations per call), `publish`
//! (`EventPublisher` against a raw `FutureProducer` sending pre-encoded
//! bytes, and one encoding each event), `http` (producer-service against a
//! bare 202 and the same job by hand), `consume` (the real job, the engine's
//! own cost, end-to-end latency and the fetch-wait study), `telemetry` (the
//! cost of exporting spans); `args` and `common` (the sample order, rates,
//! medians, the registry's request counter) are what they share. The
//! registry's request counter is read before and after the timed runs:
//! after warm-up, no request per record.

use kafkit_events::{CodecSettings, EventCodec};
use kafkit_messaging::{EventPublisher, KafkaSettings, ProducerSettings, Publisher};
use schema_registry::{
    Application as Registry, KafkaStoreSettings, RegistrySettings, StorageSettings,
};
use std::net::SocketAddr;
use std::sync::Arc;

mod args;
mod codec;
mod common;
mod consume;
mod http;
mod publish;
pub mod telemetry;

pub use args::{BenchArgs, Part};
use codec::codec_bench;
use common::*;
use http::http_bench;
use publish::publish_bench;
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
            let sizes = consume::ConsumeSizes {
                job_orders: args.job_orders,
                io_records: args.io_records,
                rounds: args.rounds,
            };
            let result =
                consume::consume_bench(&kafka, &registry.url, &events, Arc::clone(&codec), sizes)
                    .await?;
            Some((result, registry_requests(&registry.url).await? - before))
        }
        false => None,
    };
    let e2e = match runs(Part::E2e) {
        true => Some(
            consume::end_to_end(&bootstrap, &registry.url, &events, args.e2e_orders, None).await?,
        ),
        false => None,
    };
    let latency = match runs(Part::Latency) {
        true => Some(
            consume::fetch_wait_study(
                &kafka,
                &registry.url,
                &events,
                &consume::FetchWaitStudy {
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
            telemetry::telemetry_bench(
                &kafka,
                &registry.url,
                &events,
                telemetry::TelemetrySizes {
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
            common::median(&publish.round_ratios.iter().map(|r| r.0).collect::<Vec<_>>())
        );
        println!(
            "| publish against a hand-written producer that encodes each event, events/s | {:.0} | {:.0} (raw FutureProducer, apache-avro serde encode per event) | {:.2}x (median of rounds {:.2}x) |",
            publish.kafkit,
            publish.raw_encoding,
            publish.kafkit / publish.raw_encoding,
            common::median(&publish.round_ratios.iter().map(|r| r.1).collect::<Vec<_>>())
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
            common::median(&http.fair_ratios.iter().map(|r| r.0).collect::<Vec<_>>()),
            common::median(&http.fair_ratios.iter().map(|r| r.1).collect::<Vec<_>>())
        );
    }
    if let Some(telemetry) = &telemetry {
        use common::{cpu, median, rates};
        use telemetry::Tracing;
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
        use common::{cpu, median, rates, ratios};
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
        use common::median;
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
