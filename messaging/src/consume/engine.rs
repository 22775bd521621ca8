//! The loop that owns the consumer: it hands each run of records to its
//! partition's lane, stores the offsets the lanes report, drains revoked
//! partitions, and stops.
//!
//! Only this loop (and the poll thread) touch the consumer, so offsets are
//! stored and partitions paused or rewound in one place. Holds (outages,
//! retries not due) are the lanes' own business: they keep the records and
//! do them again, so no record is read twice from the broker for them. A
//! lane that is busy with a full queue is waited for (reading stops for a
//! moment; nothing is read twice); a *held* lane with a full queue is not:
//! its partition is paused and rewound to the first record it did not get,
//! and resumed when the lane has room, so the other partitions go on.

use super::lane::{Drain, Job, Lane, Report, ReportKind};
use super::metrics::{ConsumeMetrics, report_lag};
use super::record::Record;
use super::settle::Worker;
use super::source::{KafkaConsumer, Polled, RebalanceRelay, spawn_poller};
use super::{ConsumeError, ConsumeSettings, Handler, Partition};
use crate::publisher::Publisher;
use futures::FutureExt;
use kafkit_events::{Event, EventCodec};
use opentelemetry::KeyValue;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Hand-overs (runs of records) queued for a lane before the loop waits;
/// the lane's window is the real bound, this only smooths the hand-over.
const LANE_QUEUE: usize = 4;

/// The default `fetch.wait.max.ms` (`KAFKA_FETCH_WAIT_MAX_MS`): how long the
/// broker may hold a fetch that found nothing new. Tansu 0.6.0 holds every
/// such fetch this long, so on the local stack it is the floor of each
/// hop's latency: 5 ms gives produce -> OrderConfirmed p50 about 14 ms
/// there, 100 ms about 100 ms, with the same throughput (`kafkit bench
/// --only latency`). Apache Kafka answers as soon as data arrives, so there
/// a longer wait (its own default is 500 ms) costs no latency and makes
/// fewer idle requests.
pub const DEFAULT_FETCH_WAIT_MS: u64 = 5;

/// A lane's task and the ends the loop keeps.
struct LaneHandle {
    id: u64,
    jobs: mpsc::Sender<Job>,
    /// Set by the lane while a hold is in force.
    held: Arc<AtomicBool>,
    drain: Option<oneshot::Sender<Drain>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the loop knows of one assigned partition.
struct PartitionState {
    lane: Option<LaneHandle>,
    /// Paused and rewound after its lane died; resumed then.
    held: Option<Instant>,
    /// Paused because its lane's queue was full: resumed, from the first
    /// record the lane did not get, as soon as the queue has room.
    blocked: bool,
    /// The last offset stored.
    stored: Option<i64>,
    /// The first record handed to a lane since the assignment.
    first_dispatched: Option<i64>,
    /// Records read since the count was last added to the metric.
    consumed: u64,
    consumed_attributes: Vec<KeyValue>,
}

/// A consumer group member running `handler` on events of type `E`.
///
/// A thread of its own polls the consumer and serves rebalances; this loop
/// hands each record to its partition's lane (a task) and applies what the
/// lanes report. Lanes run concurrently; within a lane the ordering mode
/// decides what may overtake what, and many records may await the broker's
/// acknowledgements at once. Offsets are stored only over the settled prefix.
pub struct ConsumeLoop<E, H> {
    consumer: Arc<KafkaConsumer>,
    polled: mpsc::Receiver<Polled>,
    worker: Arc<Worker<E, H>>,
    /// By topic, then partition (looked up without allocating per record).
    partitions: HashMap<String, HashMap<i32, PartitionState>>,
    next_lane: u64,
    /// Partitions paused for a full lane.
    blocked: usize,
    /// The offset stored per partition, for the lag metric.
    settled: Arc<std::sync::Mutex<HashMap<Partition, i64>>>,
    report_to: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
}

impl<E, H> std::fmt::Debug for ConsumeLoop<E, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumeLoop")
            .field("settings", &self.worker.settings)
            .finish_non_exhaustive()
    }
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
        // (Tansu) adds this wait to every hop; pass-through may override.
        if config.get("fetch.wait.max.ms").is_none() {
            config.set(
                "fetch.wait.max.ms",
                settings.fetch_wait.as_millis().to_string(),
            );
        }
        if config.get("session.timeout.ms").is_none() {
            config.set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().to_string(),
            );
        }
        if let Some(id) = &settings.group_instance_id
            && config.get("group.instance.id").is_none()
        {
            config.set("group.instance.id", id);
        }
        let (polled_to, polled) = mpsc::channel(16);
        let relay = RebalanceRelay::new(polled_to, settings.drain_timeout);
        let consumer: KafkaConsumer = config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(relay)
            .map_err(ConsumeError::Create)?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| ConsumeError::Subscribe {
                topics: settings.topics.clone(),
                source,
            })?;
        let (report_to, reports) = mpsc::unbounded_channel();
        Ok(Self {
            consumer: Arc::new(consumer),
            polled,
            worker: Arc::new(Worker {
                codec,
                publisher,
                handler,
                settings,
                metrics,
                _event: std::marker::PhantomData,
            }),
            partitions: HashMap::new(),
            next_lane: 0,
            blocked: 0,
            settled: Arc::default(),
            report_to,
            reports,
        })
    }

    /// Consumes until `shutdown` resolves; then drains every lane (what runs
    /// finishes, what was sent is acknowledged, within `drain_timeout`),
    /// stores what settled, commits and leaves the group.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let settings = self.worker.settings.clone();
        tracing::info!(group = settings.group_id, topics = ?settings.topics, ordering = ?settings.pipeline.ordering, "consuming");
        let stop = Arc::new(AtomicBool::new(false));
        let poller = match spawn_poller(Arc::clone(&self.consumer), Arc::clone(&stop)) {
            Ok(poller) => poller,
            Err(e) => {
                tracing::error!(error = %e, "could not start the poll thread");
                return;
            }
        };
        let (stop_lag, lag_stopped) = tokio::sync::watch::channel(false);
        let lag = tokio::spawn(report_lag(
            Arc::clone(&self.consumer),
            Arc::clone(&self.settled),
            Arc::clone(&self.worker.metrics.lag),
            settings.lag_interval,
            lag_stopped,
        ));
        loop {
            let wake = self.next_resume();
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = timer => self.resume_due(),
                Some(report) = self.reports.recv() => self.apply(report),
                polled = self.polled.recv() => match polled {
                    Some(Polled::Records(batch)) => self.dispatch(batch).await,
                    Some(Polled::Revoked { partitions, done }) => {
                        self.revoke(&partitions).await;
                        let _ = done.send(());
                    }
                    Some(Polled::Error(e)) => tracing::warn!(error = %e, "consumer error"),
                    None => {
                        tracing::error!("the poll thread stopped; stopping the consumer");
                        break;
                    }
                },
            }
            self.unblock();
        }
        // The lag look-up in flight holds the consumer: let it finish.
        let _ = stop_lag.send(true);
        let _ = lag.await;
        stop.store(true, std::sync::atomic::Ordering::Release);
        // No more records, and a revoke waiting on us is answered at once.
        self.polled.close();
        while self.polled.try_recv().is_ok() {}
        let _ = tokio::task::spawn_blocking(move || poller.join()).await;
        let all: Vec<Partition> = self
            .partitions
            .iter()
            .flat_map(|(topic, partitions)| partitions.keys().map(|p| (topic.clone(), *p)))
            .collect();
        self.revoke(&all).await;
        // Offsets of settled records only are stored; commit them now. The
        // commit blocks, and with the broker gone it can block long: bound it.
        let consumer = self.consumer;
        let grace = settings.drain_timeout;
        let commit = tokio::task::spawn_blocking(move || {
            let committed = consumer.commit_consumer_state(CommitMode::Sync);
            // Leave the group now, so a successor is assigned the partitions
            // at once instead of after this member's session times out.
            consumer.unsubscribe();
            drop(consumer);
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

    fn next_resume(&self) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(HashMap::values)
            .filter_map(|state| state.held)
            .min()
    }

    fn state(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        if !self.partitions.contains_key(topic) {
            self.partitions.insert(topic.to_owned(), HashMap::new());
        }
        let metrics = &self.worker.metrics;
        let state = self
            .partitions
            .get_mut(topic)?
            .entry(partition)
            .or_insert_with(|| PartitionState {
                lane: None,
                held: None,
                blocked: false,
                stored: None,
                first_dispatched: None,
                consumed: 0,
                consumed_attributes: metrics.with(&[KeyValue::new(
                    "messaging.destination.name",
                    topic.to_owned(),
                )]),
            });
        Some(state)
    }

    fn existing(&mut self, partition: &Partition) -> Option<&mut PartitionState> {
        self.partitions.get_mut(&partition.0)?.get_mut(&partition.1)
    }

    /// Hands each record to its partition's lane, starting the lane if needed.
    async fn dispatch(&mut self, batch: Vec<Record>) {
        // Records of one partition come in runs; each run is one hand-over.
        let mut run: Vec<Record> = Vec::new();
        for record in batch {
            if run.last().is_some_and(|last| {
                last.partition != record.partition || last.topic != record.topic
            }) {
                self.hand_over(std::mem::take(&mut run)).await;
            }
            run.push(record);
        }
        self.hand_over(run).await;
        let consumed = &self.worker.metrics.consumed;
        for state in self.partitions.values_mut().flat_map(HashMap::values_mut) {
            if state.consumed > 0 {
                consumed.add(state.consumed, &state.consumed_attributes);
                state.consumed = 0;
            }
        }
    }

    /// Hands records of one partition to its lane, starting the lane if needed.
    async fn hand_over(&mut self, records: Vec<Record>) {
        let Some(first) = records.first() else {
            return;
        };
        let (topic, partition, offset) = (Arc::clone(&first.topic), first.partition, first.offset);
        let next_lane = self.next_lane;
        let (worker, report_to) = (Arc::clone(&self.worker), self.report_to.clone());
        let consumer = Arc::clone(&self.consumer);
        let Some(state) = self.state(&topic, partition) else {
            return;
        };
        if state.held.is_some() || state.blocked {
            // Fetched before the pause; they are read again after the resume.
            return;
        }
        state.consumed += records.len() as u64;
        state.first_dispatched.get_or_insert(offset);
        let lane = match &mut state.lane {
            Some(lane) => lane,
            lane @ None => {
                let key: Partition = (topic.to_string(), partition);
                lane.insert(spawn_lane(next_lane, key, worker, report_to))
            }
        };
        let (jobs, held) = (lane.jobs.clone(), Arc::clone(&lane.held));
        if lane.id == next_lane {
            self.next_lane += 1;
        }
        if !hand_to(&jobs, &held, records).await {
            let key: Partition = (topic.to_string(), partition);
            hold(&consumer, &key, offset);
            if let Some(state) = self.existing(&key) {
                state.blocked = true;
                self.blocked += 1;
            }
        }
    }

    /// Resumes the partitions paused for a full lane whose lane has room again.
    fn unblock(&mut self) {
        if self.blocked == 0 {
            return;
        }
        for (topic, partitions) in &mut self.partitions {
            for (partition, state) in partitions.iter_mut() {
                let room = state.lane.as_ref().is_none_or(|l| l.jobs.capacity() > 0);
                if state.blocked && room {
                    state.blocked = false;
                    self.blocked -= 1;
                    if state.held.is_none() {
                        resume(&self.consumer, topic, *partition);
                    }
                }
            }
        }
    }

    fn apply(&mut self, report: Report) {
        let Report {
            lane,
            partition,
            kind,
        } = report;
        let consumer = Arc::clone(&self.consumer);
        let worker = Arc::clone(&self.worker);
        let metrics = &worker.metrics;
        let Some(state) = self.existing(&partition) else {
            return;
        };
        if state.lane.as_ref().is_none_or(|l| l.id != lane) {
            // From a lane that was replaced or drained: nothing it says counts.
            return;
        }
        let (topic, number) = (&partition.0, partition.1);
        match kind {
            ReportKind::Store(next) => {
                if state.stored.is_none_or(|stored| next > stored) {
                    store(&consumer, &partition, next);
                    state.stored = Some(next);
                    if let Ok(mut settled) = self.settled.lock() {
                        settled.insert(partition.clone(), next);
                    }
                }
            }
            ReportKind::Ended => {
                // A lane ends on its own only by a panic in kafkit's code. Its
                // partition goes back to the settled prefix; a fresh lane
                // starts there after a back-off, never further on.
                state.lane = None;
                let at = state.stored.or(state.first_dispatched);
                tracing::error!(
                    topic,
                    partition = number,
                    rewind_to = at,
                    "a partition lane ended unexpectedly; rewinding the partition"
                );
                if let Some(at) = at {
                    hold(&consumer, &partition, at);
                    metrics.holds.add(
                        1,
                        &metrics.with(&[KeyValue::new("kafkit.hold.reason", "lane-ended")]),
                    );
                    state.held = Some(Instant::now() + worker.settings.outage_backoff);
                }
            }
        }
    }

    fn resume_due(&mut self) {
        let now = Instant::now();
        for (topic, partitions) in &mut self.partitions {
            for (partition, state) in partitions.iter_mut() {
                if state.held.is_some_and(|at| at <= now) {
                    state.held = None;
                    if !state.blocked {
                        resume(&self.consumer, topic, *partition);
                    }
                }
            }
        }
    }

    /// Drains the lanes of `partitions` (bounded by `drain_timeout`), stores
    /// what settled, and forgets them. No lane of theirs runs afterwards.
    async fn revoke(&mut self, partitions: &[Partition]) {
        let deadline = tokio::time::Instant::now() + self.worker.settings.drain_timeout;
        let mut draining = Vec::new();
        for partition in partitions {
            let Some(mut state) = self
                .partitions
                .get_mut(&partition.0)
                .and_then(|p| p.remove(&partition.1))
            else {
                continue;
            };
            if state.blocked {
                self.blocked -= 1;
            }
            if let Some(mut lane) = state.lane.take() {
                let (reply, answer) = oneshot::channel();
                if let Some(drain) = lane.drain.take() {
                    let _ = drain.send(Drain(reply));
                }
                draining.push((partition, state, lane, answer));
            }
        }
        for (partition, state, lane, answer) in draining {
            if let Ok(Ok(Some(next))) = tokio::time::timeout_at(deadline, answer).await
                && state.stored.is_none_or(|stored| next > stored)
            {
                store(&self.consumer, partition, next);
            }
            lane.task.abort();
            if tokio::time::timeout(Duration::from_secs(1), lane.task)
                .await
                .is_err()
            {
                tracing::warn!(
                    topic = partition.0,
                    partition = partition.1,
                    "a revoked partition's lane did not stop"
                );
            }
        }
        if let Ok(mut lag) = self.worker.metrics.lag.lock() {
            for partition in partitions {
                lag.remove(partition);
            }
        }
        if let Ok(mut settled) = self.settled.lock() {
            for partition in partitions {
                settled.remove(partition);
            }
        }
    }
}

/// Stores `next` as the offset to commit for `partition`: the next record
/// to read, one past the last settled. (rdkafka's `store_offset` would add
/// one more: it takes the offset of the last record.)
fn store(consumer: &KafkaConsumer, partition: &Partition, next: i64) {
    let (topic, number) = (&partition.0, partition.1);
    let mut list = TopicPartitionList::with_capacity(1);
    let stored = list
        .add_partition_offset(topic, number, Offset::Offset(next))
        .and_then(|()| consumer.store_offsets(&list));
    if let Err(e) = stored {
        tracing::warn!(topic, partition = number, offset = next, error = %e, "could not store an offset");
    }
}

fn resume(consumer: &KafkaConsumer, topic: &str, partition: i32) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    if let Err(e) = consumer.resume(&list) {
        tracing::warn!(topic, partition, error = %e, "could not resume a partition");
    }
}

/// Hands `records` to a lane. A lane that is busy is waited for: reading
/// from the broker stops for a moment and no record is read twice. A lane
/// that is held (an outage, a retry not due) with its queue full is not:
/// false, and the caller pauses its partition so the others go on.
async fn hand_to(jobs: &mpsc::Sender<Job>, held: &AtomicBool, mut records: Job) -> bool {
    loop {
        match jobs.try_send(records) {
            Err(mpsc::error::TrySendError::Full(back)) => records = back,
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return true,
        }
        if held.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        if let Ok(room) = tokio::time::timeout(Duration::from_millis(10), jobs.reserve()).await {
            if let Ok(permit) = room {
                permit.send(records);
            }
            return true;
        }
    }
}

/// Pauses `partition` and rewinds it to `offset`.
fn hold(consumer: &KafkaConsumer, partition: &Partition, offset: i64) {
    let (topic, number) = (&partition.0, partition.1);
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, number);
    if let Err(e) = consumer.pause(&list) {
        tracing::warn!(topic, partition = number, error = %e, "could not pause a partition");
    }
    if let Err(e) = consumer.seek(
        topic,
        number,
        Offset::Offset(offset),
        Duration::from_secs(5),
    ) {
        tracing::warn!(topic, partition = number, offset, error = %e, "could not rewind a paused partition");
    }
}

fn spawn_lane<E: Event + 'static, H: Handler<E> + 'static>(
    id: u64,
    partition: Partition,
    worker: Arc<Worker<E, H>>,
    report_to: mpsc::UnboundedSender<Report>,
) -> LaneHandle {
    let (jobs, queue) = mpsc::channel(LANE_QUEUE);
    let (drain, drained) = oneshot::channel();
    let held = Arc::new(AtomicBool::new(false));
    let lane = Lane::new(
        id,
        partition.clone(),
        Arc::clone(&worker),
        &worker.settings.pipeline,
        report_to.clone(),
        Arc::clone(&held),
    );
    let task = tokio::spawn(async move {
        // A lane that dies says so, so its partition is rewound rather than
        // left with a fresh lane that would store later offsets.
        if AssertUnwindSafe(lane.run(queue, drained))
            .catch_unwind()
            .await
            .is_err()
        {
            let _ = report_to.send(Report {
                lane: id,
                partition,
                kind: ReportKind::Ended,
            });
        }
    });
    LaneHandle {
        id,
        jobs,
        held,
        drain: Some(drain),
        task,
    }
}
