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
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use shared_events::{DecodeError, Event, EventCodec, EventHeaders};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

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

/// Counters of the consume loop, registered into the service's registry.
#[derive(Debug, Clone)]
pub struct ConsumeMetrics {
    pub consumed: IntCounter,
    pub handled: IntCounter,
    /// `records_retried_total{tier}`
    pub retried: IntCounterVec,
    /// `records_dead_lettered_total{class}`
    pub dead_lettered: IntCounterVec,
    /// `partition_holds_total{reason}`: not due yet, or an outage.
    pub holds: IntCounterVec,
    pub processing: Histogram,
    /// `consumer_lag{topic,partition}`: high watermark minus position, per assigned partition.
    pub lag: IntGaugeVec,
}

impl ConsumeMetrics {
    pub fn register(registry: &Registry, stage: Stage) -> Result<Self, prometheus::Error> {
        let stage = match stage {
            Stage::Main => "main",
            Stage::Retry => "retry",
        };
        let labels: HashMap<String, String> =
            HashMap::from([("stage".to_owned(), stage.to_owned())]);
        let opts = |name: &str, help: &str| Opts::new(name, help).const_labels(labels.clone());
        let consumed = IntCounter::with_opts(opts("records_consumed_total", "Records read"))?;
        let handled = IntCounter::with_opts(opts(
            "records_handled_total",
            "Records handled successfully",
        ))?;
        let retried = IntCounterVec::new(
            opts("records_retried_total", "Records sent to a retry tier"),
            &["tier"],
        )?;
        let dead_lettered = IntCounterVec::new(
            opts("records_dead_lettered_total", "Records sent to the DLQ"),
            &["class"],
        )?;
        let holds = IntCounterVec::new(
            opts("partition_holds_total", "Partitions paused for a record"),
            &["reason"],
        )?;
        let processing = Histogram::with_opts(
            HistogramOpts::new(
                "record_processing_seconds",
                "Decode, handle and settle one record",
            )
            .const_labels(labels.clone()),
        )?;
        registry.register(Box::new(consumed.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(retried.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(holds.clone()))?;
        let lag = IntGaugeVec::new(
            opts(
                "consumer_lag",
                "Records behind the high watermark, per assigned partition",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(processing.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self {
            consumed,
            handled,
            retried,
            dead_lettered,
            holds,
            processing,
            lag,
        })
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
            self.worker.metrics.lag.clone(),
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
        self.worker.metrics.consumed.inc();
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
                self.worker.metrics.holds.with_label_values(&[reason]).inc();
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
async fn report_lag(consumer: Arc<StreamConsumer>, lag: IntGaugeVec, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        let (consumer, lag) = (Arc::clone(&consumer), lag.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return;
            };
            lag.reset();
            for element in positions.elements() {
                let Offset::Offset(position) = element.offset() else {
                    continue;
                };
                let timeout = Duration::from_secs(2);
                if let Ok((_, high)) =
                    consumer.fetch_watermarks(element.topic(), element.partition(), timeout)
                {
                    let partition = element.partition().to_string();
                    lag.with_label_values(&[element.topic(), partition.as_str()])
                        .set((high - position).max(0));
                }
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
        let timer = worker.metrics.processing.start_timer();
        let settled = worker.settle(&message).await;
        timer.observe_duration();
        let settled = match settled {
            Ok(()) => {
                backoff = None;
                Settled::Done
            }
            Err(Wait::NotDue(delay)) => {
                held = true;
                Settled::Hold {
                    delay,
                    reason: "not-due",
                }
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

/// Why a record is not settled now.
enum Wait {
    /// A retry record whose `kafkit.retry.not-before` is this far away.
    NotDue(Duration),
    /// Not the record's fault: the registry, a dependency or the broker is down.
    Outage,
}

impl<E: Event + 'static, H: Handler<E>> Worker<E, H> {
    /// Settles one record: handled (outputs acknowledged), or routed to a
    /// retry tier or the DLQ (copy acknowledged); or says why not now.
    async fn settle(&self, message: &OwnedMessage) -> Result<(), Wait> {
        let headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        if self.settings.stage == Stage::Retry
            && let Some(due) = routing::not_before_ms(&headers)
        {
            let wait = due - now_ms();
            if wait > 0 {
                return Err(Wait::NotDue(Duration::from_millis(
                    u64::try_from(wait).unwrap_or(0),
                )));
            }
        }
        let attempts = routing::attempts_so_far(&headers);
        let event = match self.codec.decode::<E>(message.payload()).await {
            Ok(decoded) => decoded.event,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "schema registry unavailable; holding the partition");
                return Err(Wait::Outage);
            }
            Err(e) => {
                return self
                    .fail(message, &headers, undecodable(&e), attempts)
                    .await;
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
                self.metrics.handled.inc();
                Ok(())
            }
            Err(failure) if failure.kind == FailureKind::Outage => {
                tracing::warn!(%failure, "a dependency is unavailable; holding the partition");
                Err(Wait::Outage)
            }
            Err(failure) => self.fail(message, &headers, failure, attempts).await,
        }
    }

    /// Routes a failed record to its retry tier or the DLQ; settled once the copy is acknowledged.
    async fn fail(
        &self,
        message: &OwnedMessage,
        headers: &[(String, Vec<u8>)],
        failure: Failure,
        attempts_before: u32,
    ) -> Result<(), Wait> {
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
                match tier {
                    Some(tier) => self
                        .metrics
                        .retried
                        .with_label_values(&[tier.to_string().as_str()])
                        .inc(),
                    None => self
                        .metrics
                        .dead_lettered
                        .with_label_values(&[failure.class.as_str()])
                        .inc(),
                }
                tracing::info!(
                    from_topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    to = delivered.topic,
                    attempts,
                    class = failure.class,
                    "routed a failed record"
                );
                Ok(())
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
