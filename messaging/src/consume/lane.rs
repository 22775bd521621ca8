//! One partition's lane: takes its records in offset order, runs the handler
//! as the ordering mode allows, hands every record's sends to the producer
//! without waiting, and reports how far the offset may be stored.
//!
//! Many records may await their acknowledgements at once, up to the window's
//! limits. The lane never touches the consumer: it reports `Store` (the
//! settled prefix grew) and `Hold` (pause and rewind here) to the loop that
//! owns it. A hold forgets every record at or after its point (they are read
//! again after the resume) and keeps waiting for the acknowledgements of the
//! records before it, so the stored offset still reaches the point.

use super::record::Record;
use super::schedule::{Running, Schedule};
use super::settle::{Outcome, Step, Worker};
use super::window::{InFlight, WindowLimits};
use super::{Partition, Pipeline};
use crate::publisher::PublishError;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use shared_events::Event;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, Span};

/// Records for a lane, in offset order, and resumes, in the same stream so
/// a resume is never taken before the stale records queued ahead of it.
#[derive(Debug)]
pub(super) enum Job {
    /// A run of records, in offset order.
    Records(Vec<Record>),
    /// The hold with this epoch is over: records arriving from now on are new.
    Resume { epoch: u64 },
}

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
    /// Pause the partition, rewind it to `at`, resume after `delay`.
    Hold {
        at: i64,
        delay: Duration,
        reason: &'static str,
        epoch: u64,
    },
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
    offset: i64,
    message: Record,
    outcome: Outcome,
    span: Span,
    started: Instant,
}

type Processing = dyn Future<Output = (Settling, Running, Step)> + Send;
type Acking = dyn Future<Output = (Settling, Result<(), PublishError>)> + Send;

pub(super) struct Lane<E, H> {
    id: u64,
    partition: Partition,
    worker: Arc<Worker<E, H>>,
    limits: WindowLimits,
    window: InFlight,
    schedule: Schedule<Record>,
    /// Handed over and not taken yet (the window was full).
    backlog: std::collections::VecDeque<Record>,
    running: FuturesUnordered<Tagged<Processing>>,
    acks: FuturesUnordered<Tagged<Acking>>,
    /// The epoch of the hold in force, if any.
    held: Option<u64>,
    epochs: u64,
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
    ) -> Self {
        Self {
            id,
            partition,
            worker,
            limits: pipeline.limits(),
            window: InFlight::default(),
            schedule: Schedule::new(pipeline.ordering, pipeline.max_concurrency),
            backlog: std::collections::VecDeque::new(),
            running: FuturesUnordered::new(),
            acks: FuturesUnordered::new(),
            held: None,
            epochs: 0,
            backoff: None,
            reported: None,
            reports,
        }
    }

    /// Runs until drained, or until the loop drops the job sender.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>, mut drain: oneshot::Receiver<Drain>) {
        loop {
            while !self.backlog.is_empty() && !self.window.is_full(self.limits) {
                if let Some(record) = self.backlog.pop_front() {
                    self.take(record);
                }
            }
            self.start_what_may_run();
            let take = self.held.is_some()
                || (self.backlog.is_empty() && !self.window.is_full(self.limits));
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
                job = jobs.recv(), if take => match job {
                    // Held: fetched before the rewind, read again after the resume.
                    Some(Job::Records(records)) if self.held.is_none() => self.backlog.extend(records),
                    Some(Job::Records(_)) => {}
                    Some(Job::Resume { epoch }) => {
                        if self.held == Some(epoch) {
                            self.held = None;
                        }
                    }
                    None => return,
                },
            }
            self.report_progress();
        }
    }

    fn take(&mut self, message: Record) {
        if self.held.is_some() {
            // Fetched before the rewind; it is read again after the resume.
            return;
        }
        let offset = message.offset;
        if let Some(delay) = self.worker.not_due(&message) {
            self.hold(offset, delay, "not-due");
            return;
        }
        self.window.push(offset, message.size());
        let key = self
            .schedule
            .by_key()
            .then(|| message.key().map(<[u8]>::to_vec))
            .flatten();
        self.schedule.push(offset, key, message);
    }

    /// Starts every record the ordering mode and the concurrency limit allow.
    fn start_what_may_run(&mut self) {
        while let Some((offset, message, running)) = self.schedule.start() {
            let worker = Arc::clone(&self.worker);
            let future = async move {
                let started = Instant::now();
                let (span, step) = {
                    let headers = message.header_view();
                    let span = worker.process_span(&message, &headers);
                    let step = worker
                        .process(&message, &headers)
                        .instrument(span.clone())
                        .await;
                    (span, step)
                };
                let settling = Settling {
                    offset,
                    message,
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
                self.window.mark_sent(settling.offset);
                settling.outcome = outcome;
                self.await_acks(settling, deliveries);
            }
            Step::Outage => {
                let delay = self.next_backoff();
                self.worker.observe(
                    &settling.span,
                    &settling.message,
                    None,
                    settling.started.elapsed(),
                );
                self.hold(settling.offset, delay, "outage");
            }
        }
    }

    fn await_acks(
        &mut self,
        settling: Settling,
        deliveries: Vec<crate::publisher::PendingDelivery>,
    ) {
        let offset = settling.offset;
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
                    &settling.message,
                    Some(&settling.outcome),
                    settling.started.elapsed(),
                );
                self.window.settle(settling.offset);
            }
            // An output the broker will never take is the record's fault:
            // dead-letter the input with the reason.
            Err(e) if !e.is_transient() && matches!(settling.outcome, Outcome::Handled) => {
                tracing::warn!(error = %e, offset = settling.offset, "the broker refused a handler output; dead-lettering the input");
                let failure =
                    crate::Failure::permanent("output-rejected", e.to_string()).with_detail(&e);
                let headers = settling.message.header_view();
                let attempts = crate::routing::attempts_so_far(&headers);
                let step = settling.span.in_scope(|| {
                    self.worker
                        .route(&settling.message, &headers, failure, attempts)
                });
                drop(headers);
                self.processed(settling, step);
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    topic = self.partition.0,
                    partition = self.partition.1,
                    offset = settling.offset,
                    "a send was not acknowledged; rewinding the partition to it"
                );
                let delay = self.next_backoff();
                self.hold(settling.offset, delay, "outage");
            }
        }
    }

    /// Holds the partition from `at`, or from an earlier record not yet
    /// handed to the producer: everything from that point is forgotten and
    /// read again after `delay`; acknowledgements of earlier records still count.
    fn hold(&mut self, at: i64, delay: Duration, reason: &'static str) {
        let point = self.window.first_unsent().map_or(at, |first| first.min(at));
        self.backlog.clear();
        self.schedule.clear();
        self.running = FuturesUnordered::new();
        self.window.truncate_from(point);
        self.acks = std::mem::take(&mut self.acks)
            .into_iter()
            .filter(|ack| ack.offset < point)
            .collect();
        self.epochs += 1;
        self.held = Some(self.epochs);
        self.report(ReportKind::Hold {
            at: point,
            delay,
            reason,
            epoch: self.epochs,
        });
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
            self.report(ReportKind::Store(offset));
        }
    }

    fn report(&self, kind: ReportKind) {
        let _ = self.reports.send(Report {
            lane: self.id,
            partition: self.partition.clone(),
            kind,
        });
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
                        self.window.mark_sent(settling.offset);
                        self.await_acks(settling, deliveries);
                    }
                }
                Some((settling, result)) = self.acks.next(), if !self.acks.is_empty() => {
                    if result.is_err() {
                        // Nothing after it can be stored; stop waiting.
                        break;
                    }
                    self.worker.observe(&settling.span, &settling.message, Some(&settling.outcome), settling.started.elapsed());
                    self.window.settle(settling.offset);
                }
                else => break,
            }
        }
        self.window.stored()
    }
}
