//! The publish part: `EventPublisher` against a raw `FutureProducer` sending
//! pre-encoded bytes, and one encoding each event.

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafkit_events::{CodecSettings, Event, EventCodec, EventHeaders};
use kafkit_messaging::{EventPublisher, KafkaSettings, ProducerSettings, Publisher};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use shared_events::OrderPlaced;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::BenchArgs;
use super::common::*;

/// Returns (kafkit events/s, raw events/s, registry requests during the runs).
pub(crate) async fn publish_bench(
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
pub(crate) struct PublishResult {
    pub(crate) kafkit: f64,
    /// A raw `FutureProducer` sending pre-encoded bytes.
    pub(crate) raw: f64,
    /// A raw `FutureProducer` encoding each order with apache-avro's serde
    /// serializer first (what a team writes by hand).
    pub(crate) raw_encoding: f64,
    /// Each round's (kafkit / raw, kafkit / raw encoding).
    pub(crate) round_ratios: Vec<(f64, f64)>,
    pub(crate) registry_requests: u64,
}

/// The raw side of the publish part: a `FutureProducer` with the same
/// settings, key and headers (built once), `in_flight` sends awaited at once.
pub(crate) struct RawSide<'a> {
    pub(crate) producer: &'a FutureProducer,
    pub(crate) topic: &'a str,
    pub(crate) in_flight: usize,
    pub(crate) headers: Vec<(&'static str, Vec<u8>)>,
    pub(crate) key: &'a str,
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
