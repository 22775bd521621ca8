//! The consume loop: decode, handle, publish, settle, store the offset.
//!
//! Partitions are settled concurrently, each partition's records in order,
//! and an offset is stored only once the record is settled: handled and its
//! outputs acknowledged, or its retry/DLQ copy acknowledged. Auto-commit then
//! commits stored offsets in the background, on rebalance and on shutdown.
//!
//! Waiting never sleeps in the poll loop: a record that is not due yet (retry
//! tiers) or that met an outage (registry or dependency down) *holds* its
//! partition: the partition is paused and rewound to that record, the loop
//! keeps polling the others, and a timer resumes it when due.

use crate::failure::{Failure, FailureKind};
use crate::publisher::{OutgoingRecord, Publisher};
use crate::routing::{self, FailedRecord, RetryPolicy, Route};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shared_events::{DecodeError, Event, EventCodec, EventHeaders};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{Instrument, Span};

/// A decoded record, as a handler sees it.
#[derive(Debug)]
pub struct Input<E> {
    pub event: E,
    /// CloudEvents attributes, when the record carries valid ones.
    pub headers: Option<EventHeaders>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Failed attempts before this one (0 on a first delivery).
    pub attempts: u32,
}

/// Events a handler wants published; they are sent, and acknowledged,
/// before the input's offset is stored.
#[derive(Debug)]
pub struct Outbox<'a> {
    codec: &'a EventCodec,
    records: Vec<OutgoingRecord>,
}

impl Outbox<'_> {
    /// Encodes `event` for `topic` now; it is published after the handler returns Ok.
    pub async fn publish<E: Event>(
        &mut self,
        topic: &str,
        key: &str,
        event: &E,
        headers: &EventHeaders,
    ) -> Result<(), Failure> {
        let payload = self.codec.encode(topic, event).await.map_err(|e| {
            let kind = if e.is_transient() {
                FailureKind::Outage
            } else {
                FailureKind::Permanent
            };
            let class = if e.is_transient() {
                "registry-unavailable"
            } else {
                "output-encode-failed"
            };
            Failure {
                kind,
                class: class.into(),
                message: e.to_string(),
                detail: String::new(),
            }
            .with_detail(&e)
        })?;
        self.records.push(OutgoingRecord::event(
            topic,
            key.as_bytes(),
            payload,
            headers,
        ));
        Ok(())
    }
}

/// Business logic for one event type. Return `Err` with a classified
/// [`Failure`] to have the record retried, dead-lettered or held.
pub trait Handler<E>: Send + Sync {
    fn handle(
        &self,
        input: &Input<E>,
        out: &mut Outbox<'_>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Which side of the retry flow a consumer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reads the main topic; first attempts.
    Main,
    /// Reads retry tiers; honours `kafkit.retry.not-before`.
    Retry,
}

/// What one consume loop needs.
#[derive(Debug, Clone)]
pub struct ConsumeSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    pub stage: Stage,
    pub policy: RetryPolicy,
    /// First wait after an outage; doubles up to `outage_backoff_max`.
    pub outage_backoff: Duration,
    pub outage_backoff_max: Duration,
    /// How often `consumer_lag` is refreshed.
    pub lag_interval: Duration,
}

/// The consume loop's instruments, named after the OpenTelemetry messaging
/// semantic conventions where one exists (`kafkit.*` where none does).
/// Every point carries `messaging.system`, `messaging.consumer.group.name`
/// and `kafkit.stage`.
#[derive(Debug, Clone)]
pub struct ConsumeMetrics {
    /// `messaging.client.consumed.messages{messaging.destination.name}`
    consumed: Counter<u64>,
    /// `messaging.process.duration{messaging.destination.name, kafkit.outcome, error.type}`, seconds
    process_duration: Histogram<f64>,
    /// `kafkit.retries{kafkit.retry.tier, error.type}`: records sent to a retry tier
    retries: Counter<u64>,
    /// `kafkit.dead_letters{error.type}`: records sent to the DLQ
    dead_letters: Counter<u64>,
    /// `kafkit.partition.holds{kafkit.hold.reason}`: not due yet, or an outage
    holds: Counter<u64>,
    /// Lag per assigned partition, read by the `kafkit.consumer.lag` gauge.
    lag: Arc<Mutex<HashMap<Partition, i64>>>,
    base: Arc<[KeyValue]>,
}

impl ConsumeMetrics {
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
                .with_boundaries(telemetry::metrics::SECONDS_BUCKETS.to_vec())
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
            holds: meter
                .u64_counter("kafkit.partition.holds")
                .with_unit("{hold}")
                .with_description("Partitions paused at a record: not due yet, or an outage")
                .build(),
            lag,
            base,
        }
    }

    fn with(&self, extra: &[KeyValue]) -> Vec<KeyValue> {
        let mut attributes = self.base.to_vec();
        attributes.extend_from_slice(extra);
        attributes
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("could not create the consumer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    #[error("could not subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// How a record ended this pass.
#[derive(Debug)]
enum Settled {
    /// Handled, retried or dead-lettered: store the offset.
    Done,
    /// Not now: hold the partition at this record for this long.
    Hold {
        delay: Duration,
        reason: &'static str,
    },
}

type Partition = (String, i32);

/// Work for one partition's lane, in order.
enum Job {
    Record(OwnedMessage),
    /// The partition was resumed: records arriving from now on are new.
    Resume,
}

/// A lane's verdict on one record, applied by the loop that owns the consumer.
struct Outcome {
    partition: Partition,
    offset: i64,
    settled: Settled,
}

/// What every partition lane shares: decoding, the handler, publishing, routing.
struct Worker<E, H> {
    codec: Arc<EventCodec>,
    publisher: Publisher,
    handler: H,
    settings: ConsumeSettings,
    metrics: ConsumeMetrics,
    stopping: AtomicBool,
    _event: std::marker::PhantomData<fn() -> E>,
}

/// Records queued per partition lane before the loop waits (back-pressure).
const LANE_DEPTH: usize = 64;

/// A consumer group member running `handler` on events of type `E`.
///
/// One task owns the consumer: it reads, dispatches each record to its
/// partition's lane, and applies the lanes' verdicts (store the offset, or
/// pause and rewind the partition). Each lane is a task that settles its
/// partition's records one after another, so partitions progress
/// concurrently and records of one partition stay in order.
pub struct ConsumeLoop<E, H> {
    consumer: Arc<StreamConsumer>,
    worker: Arc<Worker<E, H>>,
    /// Paused partitions and when to resume them.
    held: HashMap<Partition, Instant>,
    lanes: HashMap<Partition, mpsc::Sender<Job>>,
    lane_tasks: tokio::task::JoinSet<()>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    verdicts: mpsc::UnboundedReceiver<Outcome>,
}

impl<E, H> std::fmt::Debug for ConsumeLoop<E, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeLoop")
            .field("settings", &self.worker.settings)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl<E: Event + 'static, H: Handler<E> + 'static> ConsumeLoop<E, H> {
    /// A subscribed consumer; `config` is the base client config (bootstrap, security).
    pub fn new(
        mut config: ClientConfig,
        settings: ConsumeSettings,
        codec: Arc<EventCodec>,
        publisher: Publisher,
        handler: H,
        metrics: ConsumeMetrics,
    ) -> Result<Self, ConsumeError> {
        // A broker that does not answer a fetch early when data arrives
        // (Tansu) would add this wait to every hop; pass-through may override.
        if config.get("fetch.wait.max.ms").is_none() {
            config.set("fetch.wait.max.ms", "100");
        }
        let consumer: StreamConsumer = config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(ConsumeError::Create)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| ConsumeError::Subscribe {
                topics: settings.topics.clone(),
                source,
            })?;
        let (outcomes, verdicts) = mpsc::unbounded_channel();
        Ok(Self {
            consumer: Arc::new(consumer),
            worker: Arc::new(Worker {
                codec,
                publisher,
                handler,
                settings,
                metrics,
                stopping: AtomicBool::new(false),
                _event: std::marker::PhantomData,
            }),
            held: HashMap::new(),
            lanes: HashMap::new(),
            lane_tasks: tokio::task::JoinSet::new(),
            outcomes,
            verdicts,
        })
    }

    /// Consumes until `shutdown` resolves; then lets each lane finish the
    /// record in hand (abandoning queued ones: they are read again later),
    /// stores what settled and commits.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let settings = self.worker.settings.clone();
        tracing::info!(group = settings.group_id, topics = ?settings.topics, "consuming");
        let consumer = Arc::clone(&self.consumer);
        let lag = tokio::spawn(report_lag(
            Arc::clone(&consumer),
            Arc::clone(&self.worker.metrics.lag),
            settings.lag_interval,
        ));
        loop {
            let wake = self.held.values().min().copied();
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = timer => self.resume_due().await,
                Some(outcome) = self.verdicts.recv() => self.apply(outcome),
                received = consumer.recv() => match received {
                    Ok(message) => self.dispatch(message.detach()).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        lag.abort();
        self.worker.stopping.store(true, Ordering::Release);
        self.lanes.clear();
        let grace = settings.outage_backoff_max.max(Duration::from_secs(5));
        let lanes_done = async { while self.lane_tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, lanes_done).await.is_err() {
            tracing::warn!(
                "a partition lane did not finish in time; its record will be read again"
            );
        }
        while let Ok(outcome) = self.verdicts.try_recv() {
            self.apply(outcome);
        }
        // Offsets of settled records only are stored; commit them now. The
        // commit blocks, and with the broker gone it can block long: bound it.
        let commit = tokio::task::spawn_blocking(move || {
            let committed = consumer.commit_consumer_state(CommitMode::Sync);
            // Leave the group now, so a successor is assigned the partitions
            // at once instead of after this member's session times out.
            consumer.unsubscribe();
            committed
        });
        match tokio::time::timeout(grace, commit).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::debug!(error = %e, "nothing committed at shutdown"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the shutdown commit task failed"),
            Err(_) => tracing::warn!(
                "the shutdown commit did not finish in time; stored offsets may be re-read"
            ),
        }
        tracing::info!(group = settings.group_id, "consumer stopped");
    }

    async fn dispatch(&mut self, message: OwnedMessage) {
        let partition: Partition = (message.topic().to_owned(), message.partition());
        if self.held.contains_key(&partition) {
            // Fetched before the pause; it is read again after the resume.
            return;
        }
        let metrics = &self.worker.metrics;
        metrics.consumed.add(
            1,
            &metrics.with(&[KeyValue::new(
                "messaging.destination.name",
                partition.0.clone(),
            )]),
        );
        tracing::debug!(
            topic = partition.0,
            partition = partition.1,
            offset = message.offset(),
            "dispatching a record"
        );
        let lane = match self.lanes.get(&partition) {
            Some(lane) if !lane.is_closed() => lane.clone(),
            _ => {
                let (lane, jobs) = mpsc::channel(LANE_DEPTH);
                let (worker, outcomes) = (Arc::clone(&self.worker), self.outcomes.clone());
                self.lane_tasks
                    .spawn(run_lane(worker, partition.clone(), jobs, outcomes));
                self.lanes.insert(partition, lane.clone());
                lane
            }
        };
        // Waits when the lane is full: back-pressure on the whole consumer.
        let _ = lane.send(Job::Record(message)).await;
    }

    fn apply(&mut self, outcome: Outcome) {
        let Outcome {
            partition: (topic, partition),
            offset,
            settled,
        } = outcome;
        match settled {
            Settled::Done => {
                if let Err(e) = self.consumer.store_offset(&topic, partition, offset + 1) {
                    tracing::warn!(topic, partition, offset, error = %e, "could not store an offset");
                }
            }
            Settled::Hold { delay, reason } => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, partition);
                if let Err(e) = self.consumer.pause(&tpl) {
                    tracing::warn!(topic, partition, error = %e, "could not pause a partition");
                }
                if let Err(e) = self.consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                ) {
                    tracing::warn!(topic, partition, offset, error = %e, "could not rewind a held partition");
                }
                let metrics = &self.worker.metrics;
                metrics.holds.add(
                    1,
                    &metrics.with(&[KeyValue::new("kafkit.hold.reason", reason)]),
                );
                tracing::debug!(
                    topic,
                    partition,
                    offset,
                    ?delay,
                    reason,
                    "holding a partition"
                );
                self.held.insert((topic, partition), Instant::now() + delay);
            }
        }
    }

    async fn resume_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Partition> = self
            .held
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for partition in due {
            self.held.remove(&partition);
            if let Some(lane) = self.lanes.get(&partition) {
                let _ = lane.send(Job::Resume).await;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&partition.0, partition.1);
            if let Err(e) = self.consumer.resume(&tpl) {
                tracing::warn!(topic = partition.0, partition = partition.1, error = %e, "could not resume a partition");
            }
        }
    }
}

/// Refreshes `consumer_lag` every `interval` (the look-ups block: off the runtime).
/// Note: Tansu 0.6.0 undercounts the high watermark after multi-record batches.
async fn report_lag(
    consumer: Arc<StreamConsumer>,
    lag: Arc<Mutex<HashMap<Partition, i64>>>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let (consumer, lag) = (Arc::clone(&consumer), Arc::clone(&lag));
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return;
            };
            let timeout = Duration::from_secs(2);
            // A partition held (paused and rewound) before it delivered
            // anything has no position yet: count from its committed offset,
            // or from its start when the group never committed there.
            let committed = consumer.committed(timeout).ok();
            let mut now = HashMap::new();
            for element in positions.elements() {
                let (topic, partition) = (element.topic(), element.partition());
                let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, timeout) else {
                    continue;
                };
                let from = match element.offset() {
                    Offset::Offset(position) => position,
                    _ => committed
                        .as_ref()
                        .and_then(|c| c.find_partition(topic, partition))
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or(low),
                };
                now.insert((topic.to_owned(), partition), (high - from).max(0));
            }
            // Only the partitions assigned now: revoked ones disappear.
            if let Ok(mut lag) = lag.lock() {
                *lag = now;
            }
        })
        .await;
    }
}

/// One partition's records, settled in order. After a hold, records already
/// queued are dropped until the partition is resumed (it was rewound).
async fn run_lane<E: Event + 'static, H: Handler<E>>(
    worker: Arc<Worker<E, H>>,
    partition: Partition,
    mut jobs: mpsc::Receiver<Job>,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    let mut held = false;
    let mut backoff: Option<Duration> = None;
    while let Some(job) = jobs.recv().await {
        if worker.stopping.load(Ordering::Acquire) {
            break;
        }
        let message = match job {
            Job::Resume => {
                held = false;
                continue;
            }
            Job::Record(_) if held => continue,
            Job::Record(message) => message,
        };
        let headers = header_pairs(&message);
        if let Some(delay) = worker.not_due(&headers) {
            held = true;
            let _ = outcomes.send(Outcome {
                partition: partition.clone(),
                offset: message.offset(),
                settled: Settled::Hold {
                    delay,
                    reason: "not-due",
                },
            });
            continue;
        }
        let span = worker.process_span(&message, &headers);
        let started = Instant::now();
        let processed = worker
            .settle(&message, &headers)
            .instrument(span.clone())
            .await;
        worker.observe(&span, &message, processed.as_ref().ok(), started.elapsed());
        let settled = match processed {
            Ok(_) => {
                backoff = None;
                Settled::Done
            }
            Err(Wait::Outage) => {
                held = true;
                let next = backoff.map_or(worker.settings.outage_backoff, |d| {
                    (d * 2).min(worker.settings.outage_backoff_max)
                });
                backoff = Some(next);
                Settled::Hold {
                    delay: next,
                    reason: "outage",
                }
            }
        };
        let _ = outcomes.send(Outcome {
            partition: partition.clone(),
            offset: message.offset(),
            settled,
        });
    }
}

/// Why a record is not settled now: not the record's fault, the registry,
/// a dependency or the broker is down.
enum Wait {
    Outage,
}

/// How a settled record ended.
#[derive(Debug)]
enum Processed {
    Handled,
    Retried { tier: usize, class: String },
    DeadLettered { class: String },
}

fn header_pairs(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

fn header_text<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    routing::header(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

impl<E: Event + 'static, H: Handler<E>> Worker<E, H> {
    /// For a retry record not due yet: how long until it is.
    fn not_due(&self, headers: &[(String, Vec<u8>)]) -> Option<Duration> {
        if self.settings.stage != Stage::Retry {
            return None;
        }
        let wait = routing::not_before_ms(headers)? - now_ms();
        (wait > 0).then(|| Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
    }

    /// A `process <topic>` consumer span, continuing the trace the record's
    /// `traceparent` names (the span that sent it).
    fn process_span(&self, message: &OwnedMessage, headers: &[(String, Vec<u8>)]) -> Span {
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", message.topic()),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            "messaging.system" = "kafka",
            "messaging.operation.type" = "process",
            "messaging.operation.name" = "process",
            "messaging.destination.name" = message.topic(),
            "messaging.destination.partition.id" = message.partition(),
            "messaging.kafka.offset" = message.offset(),
            "messaging.kafka.message.key" = message.key().map(String::from_utf8_lossy).as_deref(),
            "messaging.consumer.group.name" = self.settings.group_id.as_str(),
            "kafkit.attempt" = routing::attempts_so_far(headers) + 1,
            "kafkit.outcome" = tracing::field::Empty,
            "kafkit.retry.tier" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::context::set_parent(
            &span,
            header_text(headers, telemetry::context::TRACEPARENT),
            header_text(headers, telemetry::context::TRACESTATE),
        );
        telemetry::context::record_ids(
            &span,
            header_text(headers, telemetry::context::TRACEPARENT),
        );
        span
    }

    /// Records how a pass ended on its span and in `messaging.process.duration`.
    fn observe(
        &self,
        span: &Span,
        message: &OwnedMessage,
        processed: Option<&Processed>,
        took: Duration,
    ) {
        let (outcome, class) = match processed {
            Some(Processed::Handled) => ("handled", None),
            Some(Processed::Retried { class, .. }) => ("retried", Some(class.as_str())),
            Some(Processed::DeadLettered { class }) => ("dead-lettered", Some(class.as_str())),
            None => ("held", Some("outage")),
        };
        span.record("kafkit.outcome", outcome);
        if let Some(Processed::Retried { tier, .. }) = processed {
            span.record("kafkit.retry.tier", *tier);
        }
        if let Some(class) = class {
            span.record("error.type", class);
            span.record("otel.status_code", "ERROR");
        }
        let mut attributes = vec![
            KeyValue::new("messaging.destination.name", message.topic().to_owned()),
            KeyValue::new("kafkit.outcome", outcome),
        ];
        if let Some(class) = class {
            attributes.push(KeyValue::new("error.type", class.to_owned()));
        }
        self.metrics
            .process_duration
            .record(took.as_secs_f64(), &self.metrics.with(&attributes));
    }

    /// Settles one record: handled (outputs acknowledged), or routed to a
    /// retry tier or the DLQ (copy acknowledged); or says why not now.
    async fn settle(
        &self,
        message: &OwnedMessage,
        headers: &[(String, Vec<u8>)],
    ) -> Result<Processed, Wait> {
        let attempts = routing::attempts_so_far(headers);
        let event = match self.codec.decode::<E>(message.payload()).await {
            Ok(decoded) => decoded.event,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "schema registry unavailable; holding the partition");
                return Err(Wait::Outage);
            }
            Err(e) => {
                return self.fail(message, headers, undecodable(&e), attempts).await;
            }
        };
        let input = Input {
            event,
            headers: EventHeaders::from_pairs(
                headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), Some(v.as_slice()))),
            )
            .ok(),
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            attempts,
        };
        let mut outbox = Outbox {
            codec: &self.codec,
            records: Vec::new(),
        };
        match self.handler.handle(&input, &mut outbox).await {
            Ok(()) => {
                for record in &outbox.records {
                    if let Err(e) = self.publisher.publish(record).await {
                        tracing::warn!(error = %e, topic = record.topic, "could not publish a handler output; holding");
                        return Err(Wait::Outage);
                    }
                }
                Ok(Processed::Handled)
            }
            Err(failure) if failure.kind == FailureKind::Outage => {
                tracing::warn!(%failure, "a dependency is unavailable; holding the partition");
                Err(Wait::Outage)
            }
            Err(failure) => self.fail(message, headers, failure, attempts).await,
        }
    }

    /// Routes a failed record to its retry tier or the DLQ; settled once the copy is acknowledged.
    async fn fail(
        &self,
        message: &OwnedMessage,
        headers: &[(String, Vec<u8>)],
        failure: Failure,
        attempts_before: u32,
    ) -> Result<Processed, Wait> {
        let attempts = attempts_before + 1;
        let record = FailedRecord {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            payload: message.payload(),
            headers,
            group: &self.settings.group_id,
        };
        let original = routing::original_topic(&record);
        let now = now_ms();
        let (copy, tier) = match self.settings.policy.route(failure.kind, attempts) {
            Route::Retry { tier, delay } => {
                let due = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                let topic = self.settings.policy.retry_topic(&original, tier);
                (
                    routing::hop(&record, &failure, attempts, &topic, Some(due), now),
                    Some(tier),
                )
            }
            Route::DeadLetter => {
                let topic = self.settings.policy.dlq_topic(&original);
                (
                    routing::hop(&record, &failure, attempts, &topic, None, now),
                    None,
                )
            }
        };
        match self.publisher.publish(&copy).await {
            Ok(delivered) => {
                let class = KeyValue::new("error.type", failure.class.clone());
                let processed = match tier {
                    Some(tier) => {
                        let tier_label = i64::try_from(tier).unwrap_or(i64::MAX);
                        self.metrics.retries.add(
                            1,
                            &self
                                .metrics
                                .with(&[KeyValue::new("kafkit.retry.tier", tier_label), class]),
                        );
                        Processed::Retried {
                            tier,
                            class: failure.class.clone(),
                        }
                    }
                    None => {
                        self.metrics
                            .dead_letters
                            .add(1, &self.metrics.with(&[class]));
                        Processed::DeadLettered {
                            class: failure.class.clone(),
                        }
                    }
                };
                tracing::info!(
                    from_topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    to = delivered.topic,
                    attempts,
                    class = failure.class,
                    "routed a failed record"
                );
                Ok(processed)
            }
            Err(e) => {
                // Never store the offset of a record whose copy is not acknowledged.
                tracing::warn!(error = %e, to = copy.topic, "could not route a failed record; holding");
                Err(Wait::Outage)
            }
        }
    }
}

/// A decode error as a permanent failure (transient ones are held, not routed).
fn undecodable(error: &DecodeError) -> Failure {
    Failure::permanent(error.class(), error.to_string()).with_detail(error)
}
