//! The consumer's instruments and the lag reporter.

use super::Partition;
use super::Stage;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The consume loop's instruments, named after the OpenTelemetry messaging
/// semantic conventions where one exists (`kafkit.*` where none does).
/// Every point carries `messaging.system`, `messaging.consumer.group.name`
/// and `kafkit.stage`.
#[derive(Debug, Clone)]
pub struct ConsumeMetrics {
    /// `messaging.client.consumed.messages{messaging.destination.name}`
    pub(super) consumed: Counter<u64>,
    /// `messaging.process.duration{messaging.destination.name, kafkit.outcome, error.type}`, seconds
    pub(super) process_duration: Histogram<f64>,
    /// `kafkit.retries{kafkit.retry.tier, error.type}`: records sent to a retry tier
    pub(super) retries: Counter<u64>,
    /// `kafkit.dead_letters{error.type}`: records sent to the DLQ
    pub(super) dead_letters: Counter<u64>,
    /// `kafkit.dead_letters.reduced{kafkit.copy.form}`: dead letters sent
    /// smaller because the broker refused the full copy
    pub(super) reduced_dead_letters: Counter<u64>,
    /// `kafkit.partition.holds{kafkit.hold.reason}`: not due yet, or an outage
    pub(super) holds: Counter<u64>,
    /// Lag per assigned partition, read by the `kafkit.consumer.lag` gauge.
    pub(super) lag: Arc<Mutex<HashMap<Partition, i64>>>,
    /// Attributes of a handled record's duration point, built once per topic.
    handled: Arc<std::sync::RwLock<HashMap<String, Vec<KeyValue>>>>,
    base: Arc<[KeyValue]>,
}

impl ConsumeMetrics {
    /// The instruments on `meter`, every point labelled with `stage` and `group`.
    pub fn new(meter: &Meter, stage: Stage, group: &str) -> Self {
        let stage = match stage {
            Stage::Main => "main",
            Stage::Retry => "retry",
        };
        let base: Arc<[KeyValue]> = Arc::from(vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.consumer.group.name", group.to_owned()),
            KeyValue::new("kafkit.stage", stage),
        ]);
        let lag: Arc<Mutex<HashMap<Partition, i64>>> = Arc::default();
        let (observed, labels) = (Arc::clone(&lag), Arc::clone(&base));
        // Kept alive by the meter provider; reads the latest lag map.
        let _gauge = meter
            .i64_observable_gauge("kafkit.consumer.lag")
            .with_unit("{message}")
            .with_description("Records behind the high watermark, per assigned partition")
            .with_callback(move |gauge| {
                let lags = observed.lock().map(|l| l.clone()).unwrap_or_default();
                for ((topic, partition), lag) in lags {
                    let mut attributes = labels.to_vec();
                    attributes.push(KeyValue::new("messaging.destination.name", topic));
                    attributes.push(KeyValue::new(
                        "messaging.destination.partition.id",
                        partition.to_string(),
                    ));
                    gauge.observe(lag, &attributes);
                }
            })
            .build();
        Self {
            consumed: meter
                .u64_counter("messaging.client.consumed.messages")
                .with_unit("{message}")
                .with_description("Records read from the broker")
                .build(),
            process_duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Decode, handle and settle one record")
                .with_boundaries(kafkit_telemetry::metrics::SECONDS_BUCKETS.to_vec())
                .build(),
            retries: meter
                .u64_counter("kafkit.retries")
                .with_unit("{message}")
                .with_description("Records sent to a retry tier")
                .build(),
            dead_letters: meter
                .u64_counter("kafkit.dead_letters")
                .with_unit("{message}")
                .with_description("Records sent to the dead-letter topic")
                .build(),
            reduced_dead_letters: meter
                .u64_counter("kafkit.dead_letters.reduced")
                .with_unit("{message}")
                .with_description(
                    "Dead letters sent trimmed or as a reference: the broker refused the full copy",
                )
                .build(),
            holds: meter
                .u64_counter("kafkit.partition.holds")
                .with_unit("{hold}")
                .with_description("Partitions paused at a record: not due yet, or an outage")
                .build(),
            lag,
            handled: Arc::default(),
            base,
        }
    }

    /// One `messaging.process.duration` point for a record handled from `topic`.
    pub(super) fn record_handled(&self, topic: &str, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(attributes) = self
            .handled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            self.process_duration.record(seconds, attributes);
            return;
        }
        let attributes = self.with(&[
            KeyValue::new("messaging.destination.name", topic.to_owned()),
            KeyValue::new("kafkit.outcome", "handled"),
        ]);
        self.process_duration.record(seconds, &attributes);
        self.handled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), attributes);
    }

    pub(super) fn with(&self, extra: &[KeyValue]) -> Vec<KeyValue> {
        let mut attributes = self.base.to_vec();
        attributes.extend_from_slice(extra);
        attributes
    }
}

/// Refreshes `consumer_lag` every `interval` (the look-ups block: off the
/// runtime): records after the settled prefix, up to the high watermark.
/// The settled prefix is what the consume loop stored (`settled`); for a
/// partition that settled nothing yet, the group's committed offset, or its
/// start when the group never committed there. (The consumer's position
/// says nothing here: a lane holds records in memory while it retries them.)
/// Note: Tansu 0.6.0 undercounts the high watermark after multi-record batches.
///
/// Returns once `stopped` turns true, after the look-up in flight (which
/// holds the consumer) has finished: the consume loop waits for that, so
/// its own shutdown drops the consumer last, while the broker is still
/// there (a consumer dropped after the broker is gone can block for good
/// in librdkafka's close).
pub(super) async fn report_lag<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    settled: Arc<Mutex<HashMap<Partition, i64>>>,
    lag: Arc<Mutex<HashMap<Partition, i64>>>,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let (consumer, settled, lag) = (
            Arc::clone(&consumer),
            Arc::clone(&settled),
            Arc::clone(&lag),
        );
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(assigned) = consumer.assignment() else {
                return;
            };
            let timeout = Duration::from_secs(2);
            let committed = consumer.committed(timeout).ok();
            let settled = settled.lock().map(|s| s.clone()).unwrap_or_default();
            let mut now = HashMap::new();
            for element in assigned.elements() {
                let (topic, partition) = (element.topic(), element.partition());
                let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, timeout) else {
                    continue;
                };
                let key = (topic.to_owned(), partition);
                let from = settled.get(&key).copied().unwrap_or_else(|| {
                    committed
                        .as_ref()
                        .and_then(|c| c.find_partition(topic, partition))
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or(low)
                });
                now.insert(key, (high - from).max(0));
            }
            // Only the partitions assigned now: revoked ones disappear.
            if let Ok(mut lag) = lag.lock() {
                *lag = now;
            }
        })
        .await;
    }
}
