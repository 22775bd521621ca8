//! One partition's lane: takes its records in offset order, runs the handler
//! as the ordering mode allows, hands every record's sends to the producer
//! without waiting, and reports how far the offset may be stored.
//!
//! Many records may await their acknowledgements at once, up to the window's
//! limits. A record that cannot be settled now (an outage, a retry not due
//! yet) *holds* the lane: everything from the first record not yet handed
//! to the producer (or, after a failed acknowledgement, not yet fully
//! acknowledged) is taken back, in order, and done again after a back-off.
//! The records are kept in memory, not read again from the broker; records
//! arriving meanwhile queue behind them, and when that queue is full the lane
//! stops taking more, so the loop that owns the consumer pauses the partition.
//! Acknowledgements of records before the hold point still count, so the
//! stored offset reaches it.

use super::record::Record;
use super::schedule::{Running, Schedule};
use super::settle::{Outcome, Step, Worker};
use super::window::{InFlight, WindowLimits};
use super::{Partition, Pipeline};
use crate::publisher::{PendingDelivery, PublishError};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use kafkit_events::Event;
use opentelemetry::KeyValue;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, Span};

/// Records for a lane: a run of one partition's records, in offset order.
pub(super) type Job = Vec<Record>;

/// Asks a lane to stop: take nothing more, let what runs finish and what was
/// sent be acknowledged, answer with the offset to store, and end.
#[derive(Debug)]
pub(super) struct Drain(pub oneshot::Sender<Option<i64>>);

/// What a lane tells the loop that owns the consumer.
#[derive(Debug)]
pub(super) struct Report {
    pub lane: u64,
    pub partition: Partition,
    pub kind: ReportKind,
}

#[derive(Debug)]
pub(super) enum ReportKind {
    /// Every record before this offset is settled: store it.
    Store(i64),
    /// The lane died (a panic in kafkit's own code): rewind its partition.
    Ended,
}

/// A future with the offset of its record, so a rewind can drop those at or after its point.
struct Tagged<F: ?Sized> {
    offset: i64,
    future: Pin<Box<F>>,
}

impl<F: Future + ?Sized> Future for Tagged<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.future.as_mut().poll(cx)
    }
}

/// A record on its way: what acknowledgement-time needs to finish it.
struct Settling {
    record: Arc<Record>,
    outcome: Outcome,
    span: Span,
    started: std::time::Instant,
}

type Processing = dyn Future<Output = (Settling, Running, Step)> + Send;
type Acking = dyn Future<Output = (Settling, Result<(), PublishError>)> + Send;

pub(super) struct Lane<E, H> {
    id: u64,
    partition: Partition,
    worker: Arc<Worker<E, H>>,
    limits: WindowLimits,
    window: InFlight<Arc<Record>>,
    schedule: Schedule<Arc<Record>>,
    /// Handed over, or taken back by a hold, and not taken (yet).
    backlog: VecDeque<Arc<Record>>,
    backlog_bytes: usize,
    running: FuturesUnordered<Tagged<Processing>>,
    acks: FuturesUnordered<Tagged<Acking>>,
    /// Nothing is taken before then.
    held_until: Option<Instant>,
    /// Whether a hold is in force, for the loop that owns the consumer.
    held: Arc<AtomicBool>,
    backoff: Option<Duration>,
    reported: Option<i64>,
    reports: mpsc::UnboundedSender<Report>,
}

impl<E: Event + 'static, H: super::Handler<E> + 'static> Lane<E, H> {
    pub fn new(
        id: u64,
        partition: Partition,
        worker: Arc<Worker<E, H>>,
        pipeline: &Pipeline,
        reports: mpsc::UnboundedSender<Report>,
        held: Arc<AtomicBool>,
    ) -> Self {
        Self {
            id,
            partition,
            worker,
            limits: pipeline.limits(),
            window: InFlight::default(),
            schedule: Schedule::new(pipeline.ordering, pipeline.max_concurrency),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            running: FuturesUnordered::new(),
            acks: FuturesUnordered::new(),
            held_until: None,
            held,
            backoff: None,
            reported: None,
            reports,
        }
    }

    /// Runs until drained, or until the loop drops the job sender.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>, mut drain: oneshot::Receiver<Drain>) {
        loop {
            self.take_what_fits();
            self.start_what_may_run();
            // While the backlog is full nothing more is read: the loop that
            // owns the consumer then pauses the partition.
            let room =
                self.backlog.len() < self.limits.records && self.backlog_bytes < self.limits.bytes;
            let held_until = self.held_until;
            let hold_ends = async move {
                match held_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                request = &mut drain => {
                    let stored = self.drain().await;
                    if let Ok(Drain(reply)) = request {
                        let _ = reply.send(stored);
                    }
                    return;
                }
                Some((settling, result)) = self.acks.next(), if !self.acks.is_empty() => {
                    self.acknowledged(settling, result);
                    // Every acknowledgement already in, then one report.
                    while let Some(Some((settling, result))) = self.acks.next().now_or_never() {
                        self.acknowledged(settling, result);
                    }
                }
                Some((settling, running, step)) = self.running.next(), if !self.running.is_empty() => {
                    self.schedule.finished(running);
                    self.processed(settling, step);
                }
                () = hold_ends => {
                    self.held_until = None;
                    self.held.store(false, AtomicOrdering::Release);
                }
                job = jobs.recv(), if room => match job {
                    Some(records) => {
                        for record in records {
                            self.backlog_bytes += record.size();
                            self.backlog.push_back(Arc::new(record));
                        }
                    }
                    None => return,
                },
            }
            self.report_progress();
        }
    }

    /// Moves records from the backlog into the window while it has room
    /// and no hold is in force.
    fn take_what_fits(&mut self) {
        while self.held_until.is_none() && !self.window.is_full(self.limits) {
            let Some(record) = self.backlog.pop_front() else {
                return;
            };
            self.backlog_bytes -= record.size();
            if let Some(delay) = self.worker.not_due(&record) {
                let offset = record.offset;
                self.backlog_bytes += record.size();
                self.backlog.push_front(record);
                self.hold(offset, delay, "not-due");
                return;
            }
            let key = self
                .schedule
                .by_key()
                .then(|| record.key().map(<[u8]>::to_vec))
                .flatten();
            self.window
                .push(record.offset, record.size(), Arc::clone(&record));
            self.schedule.push(record.offset, key, record);
        }
    }

    /// Starts every record the ordering mode and the concurrency limit allow.
    fn start_what_may_run(&mut self) {
        while let Some((offset, record, running)) = self.schedule.start() {
            let worker = Arc::clone(&self.worker);
            let future = async move {
                let started = std::time::Instant::now();
                let (span, step) = {
                    let headers = record.header_view();
                    let span = worker.process_span(&record, &headers);
                    let step = worker
                        .process(&record, &headers)
                        .instrument(span.clone())
                        .await;
                    (span, step)
                };
                let settling = Settling {
                    record,
                    outcome: Outcome::Handled,
                    span,
                    started,
                };
                (settling, running, step)
            };
            self.running.push(Tagged {
                offset,
                future: Box::pin(future),
            });
        }
    }

    fn processed(&mut self, mut settling: Settling, step: Step) {
        match step {
            Step::Sent {
                deliveries,
                outcome,
            } => {
                self.window.mark_sent(settling.record.offset);
                settling.outcome = outcome;
                self.await_acks(settling, deliveries);
            }
            Step::Refused { error, outcome } => {
                settling.outcome = outcome;
                self.refused(settling, &error);
            }
            Step::Outage => {
                let delay = self.next_backoff();
                self.worker.observe(
                    &settling.span,
                    &settling.record,
                    None,
                    settling.started.elapsed(),
                );
                self.hold(settling.record.offset, delay, "outage");
            }
        }
    }

    fn await_acks(&mut self, settling: Settling, deliveries: Vec<PendingDelivery>) {
        let offset = settling.record.offset;
        let future = async move {
            let mut result = Ok(());
            for delivery in deliveries {
                if let Err(e) = delivery.await {
                    result = Err(e);
                    break;
                }
            }
            (settling, result)
        };
        self.acks.push(Tagged {
            offset,
            future: Box::pin(future),
        });
    }

    fn acknowledged(&mut self, settling: Settling, result: Result<(), PublishError>) {
        match result {
            Ok(()) => {
                self.backoff = None;
                self.worker.observe(
                    &settling.span,
                    &settling.record,
                    Some(&settling.outcome),
                    settling.started.elapsed(),
                );
                self.window.settle(settling.record.offset);
            }
            // Refused because of the record: never tried again as it was.
            Err(error) if !error.is_transient() => self.refused(settling, &error),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    topic = self.partition.0,
                    partition = self.partition.1,
                    offset = settling.record.offset,
                    "a send was not acknowledged; doing the partition again from the first record not fully acknowledged"
                );
                // Earlier failures of the same outage fold into this one hold.
                let at = self
                    .window
                    .first_unsettled()
                    .unwrap_or(settling.record.offset);
                let delay = self.next_backoff();
                self.hold(at, delay, "outage");
            }
        }
    }

    /// Something the record produced was refused because of the record: the
    /// worker picks what to send instead (see `Worker::refused`).
    fn refused(&mut self, settling: Settling, error: &PublishError) {
        let step = {
            let headers = settling.record.header_view();
            settling.span.in_scope(|| {
                self.worker
                    .refused(&settling.record, &headers, &settling.outcome, error)
            })
        };
        self.processed(settling, step);
    }

    /// Holds the lane for `delay` from `at`, or from an earlier record not
    /// yet handed to the producer: every record from that point is taken
    /// back, in order, to be done again; acknowledgements of earlier records
    /// still count.
    fn hold(&mut self, at: i64, delay: Duration, reason: &'static str) {
        let point = self.window.first_unsent().map_or(at, |first| first.min(at));
        self.schedule.clear();
        self.running = FuturesUnordered::new();
        self.acks = std::mem::take(&mut self.acks)
            .into_iter()
            .filter(|ack| ack.offset < point)
            .collect();
        let again = self.window.truncate_from(point);
        for record in again.into_iter().rev() {
            self.backlog_bytes += record.size();
            self.backlog.push_front(record);
        }
        self.held_until = Some(Instant::now() + delay);
        self.held.store(true, AtomicOrdering::Release);
        let metrics = &self.worker.metrics;
        metrics.holds.add(
            1,
            &metrics.with(&[KeyValue::new("kafkit.hold.reason", reason)]),
        );
        tracing::debug!(
            topic = self.partition.0,
            partition = self.partition.1,
            offset = point,
            ?delay,
            reason,
            "holding a partition"
        );
    }

    fn next_backoff(&mut self) -> Duration {
        let settings = &self.worker.settings;
        let next = self.backoff.map_or(settings.outage_backoff, |d| {
            (d * 2).min(settings.outage_backoff_max)
        });
        self.backoff = Some(next);
        next
    }

    fn report_progress(&mut self) {
        let stored = self.window.stored();
        if stored > self.reported
            && let Some(offset) = stored
        {
            self.reported = stored;
            let _ = self.reports.send(Report {
                lane: self.id,
                partition: self.partition.clone(),
                kind: ReportKind::Store(offset),
            });
        }
    }

    /// Takes nothing more; lets running records finish and sent ones be
    /// acknowledged. Answers the offset to store (None: nothing settled).
    async fn drain(&mut self) -> Option<i64> {
        self.backlog.clear();
        self.schedule.clear();
        loop {
            tokio::select! {
                Some((settling, running, step)) = self.running.next(), if !self.running.is_empty() => {
                    self.schedule.finished(running);
                    if let Step::Sent { deliveries, outcome } = step {
                        let mut settling = settling;
                        settling.outcome = outcome;
                        self.window.mark_sent(settling.record.offset);
                        self.await_acks(settling, deliveries);
                    }
                }
                Some((settling, result)) = self.acks.next(), if !self.acks.is_empty() => {
                    if result.is_err() {
                        // Nothing after it can be stored; stop waiting.
                        break;
                    }
                    self.worker.observe(&settling.span, &settling.record, Some(&settling.outcome), settling.started.elapsed());
                    self.window.settle(settling.record.offset);
                }
                else => break,
            }
        }
        self.window.stored()
    }
}
