//! What happens to one record: decode, handle, and hand to the producer
//! either the handler's outputs or the record's retry/DLQ copy. Nothing here
//! waits for the broker: the lane awaits the returned deliveries, so many
//! records of a partition can await their acknowledgements at once.
//!
//! The equivalent of Watermill's `handleMessage`, in one place:
//!
//! | what happened | [`Step`] |
//! |---|---|
//! | handled | `Sent` with the outputs |
//! | `Transient` failure, attempts left | `Sent` with the copy for the retry tier |
//! | `Permanent` failure, undecodable bytes, attempts used up, handler panic | `Sent` with the copy for the DLQ |
//! | registry, dependency or producer unavailable (`Outage`) | `Outage`: hold the partition here |
//! | an output or copy the broker refuses (too large, invalid) | [`Worker::refused`]: the input dead-lettered, a copy sent smaller |

use super::ConsumeSettings;
use super::handler::{Handler, Input, Outbox};
use super::metrics::ConsumeMetrics;
use super::record::Record;
use crate::failure::{Failure, FailureKind};
use crate::publisher::{OutgoingRecord, PendingDelivery, PublishError, Publisher};
use crate::routing::{self, CopyForm, FailedRecord, HeaderView, Route};
use futures::FutureExt;
use kafkit_events::{DecodeError, Event, EventCodec, EventHeaders};
use opentelemetry::KeyValue;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};
use tracing::Span;

/// What processing one record left to do.
#[derive(Debug)]
pub(super) enum Step {
    /// Handed to the producer; the record is settled once every delivery
    /// is acknowledged.
    Sent {
        deliveries: Vec<PendingDelivery>,
        outcome: Outcome,
    },
    /// Not the record's fault (registry, a dependency or the producer is
    /// unavailable): hold the partition at this record and try again later.
    Outage,
    /// The producer refused a send because of the record (too large,
    /// invalid): see [`Worker::refused`].
    Refused {
        error: PublishError,
        outcome: Outcome,
    },
}

/// How a record ends once its deliveries are acknowledged.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Handled,
    Retried {
        tier: usize,
        class: String,
        to: String,
        attempts: u32,
    },
    DeadLettered {
        class: String,
        to: String,
        attempts: u32,
        form: CopyForm,
    },
}

/// What every lane of a consumer shares: decoding, the handler, publishing, routing.
pub(super) struct Worker<E, H> {
    pub codec: std::sync::Arc<EventCodec>,
    pub publisher: Publisher,
    pub handler: H,
    pub settings: ConsumeSettings,
    pub metrics: ConsumeMetrics,
    pub _event: std::marker::PhantomData<fn() -> E>,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn header_text<'a>(headers: &'a HeaderView<'a>, name: &str) -> Option<&'a str> {
    routing::header(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// The trace id the record arrived with, for log lines (no span needed).
pub(super) fn trace_id<'a>(headers: &'a HeaderView<'a>) -> &'a str {
    header_text(headers, kafkit_telemetry::context::TRACEPARENT)
        .and_then(kafkit_telemetry::context::trace_id_of)
        .unwrap_or_default()
}

/// The text of a panic's payload (what `panic!` was given).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl<E: Event + 'static, H: Handler<E>> Worker<E, H> {
    /// Decodes and handles `message`, then hands its outputs, or its
    /// retry/DLQ copy, to the producer.
    pub async fn process(&self, message: &Record, headers: &HeaderView<'_>) -> Step {
        // kafkit's headers count only on our own retry topics.
        let trusted = self.trusted();
        let attempts = if trusted {
            routing::attempts_so_far(headers)
        } else {
            0
        };
        if message.unreadable_headers {
            let failure = Failure::permanent(
                "unreadable-header",
                "a header name is not valid UTF-8, so the record's headers could not be read",
            );
            return self.route(message, headers, failure, attempts, CopyForm::Full);
        }
        let decoded = AssertUnwindSafe(self.codec.decode::<E>(message.payload()))
            .catch_unwind()
            .await;
        let event = match decoded {
            Ok(Ok(decoded)) => decoded.event,
            Ok(Err(e)) if e.is_transient() => {
                tracing::warn!(
                    error = %e,
                    topic = &*message.topic,
                    partition = message.partition,
                    offset = message.offset,
                    trace_id = trace_id(headers),
                    "schema registry unavailable; holding the partition"
                );
                return Step::Outage;
            }
            Ok(Err(e)) => {
                return self.route(message, headers, undecodable(&e), attempts, CopyForm::Full);
            }
            Err(panic) => {
                let failure = Failure::permanent("decode-panic", panic_message(panic.as_ref()));
                return self.route(message, headers, failure, attempts, CopyForm::Full);
            }
        };
        let input = Input {
            event,
            event_id: self.event_id(message, headers),
            headers: EventHeaders::from_pairs(headers.iter().map(|(n, v)| (*n, Some(*v)))).ok(),
            topic: message.topic.to_string(),
            partition: message.partition,
            offset: message.offset,
            attempts,
        };
        let mut outbox = Outbox::new(&self.codec);
        // A handler that panics fails its record; the lane and the records
        // after it carry on.
        let handled = AssertUnwindSafe(self.handler.handle(&input, &mut outbox))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(Failure::permanent(
                    "handler-panic",
                    panic_message(panic.as_ref()),
                ))
            });
        match handled {
            Ok(()) => self.send(&outbox.into_records(), Outcome::Handled),
            Err(failure) if failure.kind == FailureKind::Outage => {
                tracing::warn!(
                    %failure,
                    topic = &*message.topic,
                    partition = message.partition,
                    offset = message.offset,
                    trace_id = trace_id(headers),
                    "a dependency is unavailable; holding the partition"
                );
                Step::Outage
            }
            Err(failure) => self.route(message, headers, failure, attempts, CopyForm::Full),
        }
    }

    /// True on the consumer's own retry topics, where kafkit's headers were
    /// written by a kafkit hop.
    fn trusted(&self) -> bool {
        self.settings.stage == super::Stage::Retry
    }

    /// The record's `ce_id`, or one derived from where it was first written.
    fn event_id(&self, message: &Record, headers: &HeaderView<'_>) -> String {
        if let Some(id) =
            header_text(headers, kafkit_events::headers::CE_ID).filter(|id| !id.is_empty())
        {
            return id.to_owned();
        }
        let (topic, partition, offset) = routing::origin(&self.failed(message, headers));
        routing::derived_event_id(&topic, partition, offset)
    }

    fn failed<'a>(&'a self, message: &'a Record, headers: &'a HeaderView<'a>) -> FailedRecord<'a> {
        FailedRecord {
            trusted: self.trusted(),
            topic: &message.topic,
            partition: message.partition,
            offset: message.offset,
            timestamp_ms: message.timestamp_ms,
            key: message.key(),
            payload: message.payload(),
            headers,
            group: &self.settings.group_id,
        }
    }

    /// Hands `records` to the producer; settled as `outcome` once acknowledged.
    fn send(&self, records: &[OutgoingRecord], outcome: Outcome) -> Step {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            match self.publisher.enqueue(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) if !error.is_transient() => {
                    return Step::Refused { error, outcome };
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = record.topic, "the producer did not take a record; holding");
                    return Step::Outage;
                }
            }
        }
        Step::Sent {
            deliveries,
            outcome,
        }
    }

    /// The broker (or the producer, before sending) refused something this
    /// record produced, because of the record: it is never tried again as
    /// it was. Refused outputs: the input is dead-lettered
    /// (`output-rejected`). A refused copy: a smaller copy goes to the DLQ,
    /// its failure headers trimmed, then without its value (a reference).
    /// Only a reference refused too is an outage.
    pub fn refused(
        &self,
        message: &Record,
        headers: &HeaderView<'_>,
        outcome: &Outcome,
        error: &PublishError,
    ) -> Step {
        let attempts = if self.trusted() {
            routing::attempts_so_far(headers)
        } else {
            0
        };
        let (class, form) = match outcome {
            Outcome::Handled => {
                tracing::warn!(%error, offset = message.offset, "the broker refused a handler output; dead-lettering the input");
                let failure =
                    Failure::permanent("output-rejected", error.to_string()).with_detail(error);
                return self.route(message, headers, failure, attempts, CopyForm::Full);
            }
            Outcome::Retried { class, .. } => (class, CopyForm::Trimmed),
            Outcome::DeadLettered {
                class,
                form: CopyForm::Full,
                ..
            } => (class, CopyForm::Trimmed),
            Outcome::DeadLettered {
                class,
                form: CopyForm::Trimmed,
                ..
            } => (class, CopyForm::Reference),
            Outcome::DeadLettered {
                form: CopyForm::Reference,
                ..
            } => {
                tracing::warn!(%error, offset = message.offset, "the broker refused even a reference dead letter; holding");
                return Step::Outage;
            }
        };
        tracing::warn!(%error, offset = message.offset, ?form, "the broker refused a copy of a failed record; dead-lettering it smaller");
        let failure = Failure::permanent(
            class.clone(),
            format!(
                "{class}; its copy was refused by the broker ({error}), so this dead letter is {form:?}"
            ),
        );
        // Straight to the DLQ: a copy that did not fit will not fit a tier.
        let attempts = attempts.max(self.settings.policy.max_attempts);
        self.route(message, headers, failure, attempts, form)
    }

    /// Sends a copy of a failed record to its retry tier or the DLQ.
    pub fn route(
        &self,
        message: &Record,
        headers: &HeaderView<'_>,
        failure: Failure,
        attempts_before: u32,
        form: CopyForm,
    ) -> Step {
        let attempts = attempts_before.saturating_add(1);
        let record = self.failed(message, headers);
        let policy = &self.settings.policy;
        let original = routing::original_topic(&record, policy);
        let now = now_ms();
        let kind = if form == CopyForm::Full {
            failure.kind
        } else {
            FailureKind::Permanent
        };
        let (copy, outcome) = match policy.route(kind, attempts) {
            Route::Retry { tier, delay } => {
                let due = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                let to = policy.retry_topic(&original, tier);
                let copy = routing::hop(&record, &failure, attempts, &to, Some(due), now, form);
                let outcome = Outcome::Retried {
                    tier,
                    class: failure.class,
                    to,
                    attempts,
                };
                (copy, outcome)
            }
            Route::DeadLetter => {
                let to = policy.dlq_topic(&original);
                let copy = routing::hop(&record, &failure, attempts, &to, None, now, form);
                let outcome = Outcome::DeadLettered {
                    class: failure.class,
                    to,
                    attempts,
                    form,
                };
                (copy, outcome)
            }
        };
        self.send(std::slice::from_ref(&copy), outcome)
    }

    /// For a retry record not due yet: how long until it is.
    pub fn not_due(&self, message: &Record) -> Option<Duration> {
        if self.settings.stage != super::Stage::Retry {
            return None;
        }
        let not_before = std::str::from_utf8(message.header(crate::headers::RETRY_NOT_BEFORE)?)
            .ok()?
            .trim()
            .parse::<i64>()
            .ok()?;
        // Never later than the longest tier after the copy was written: one
        // skewed clock or forged header cannot hold a retry partition for
        // hours. (Without a timestamp, due now.)
        let latest = message.timestamp_ms.map_or(i64::MIN, |written| {
            let longest = self.settings.policy.longest_delay().as_millis();
            written.saturating_add(i64::try_from(longest).unwrap_or(i64::MAX))
        });
        let wait = not_before.min(latest).saturating_sub(now_ms());
        (wait > 0).then(|| Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
    }

    /// A `process <topic>` consumer span, continuing the trace the record's
    /// `traceparent` names (the span that sent it). It lasts until the
    /// record is settled. Built only when spans are exported and the
    /// sampler could keep it (not for a record whose sender was not sampled,
    /// under the default parent-based sampler).
    pub fn process_span(&self, message: &Record, headers: &HeaderView<'_>) -> Span {
        let traceparent = header_text(headers, kafkit_telemetry::context::TRACEPARENT);
        if !kafkit_telemetry::context::continues(traceparent) {
            return Span::none();
        }
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", &*message.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            "messaging.system" = "kafka",
            "messaging.operation.type" = "process",
            "messaging.operation.name" = "process",
            "messaging.destination.name" = &*message.topic,
            "messaging.destination.partition.id" = message.partition,
            "messaging.kafka.offset" = message.offset,
            "messaging.kafka.message.key" = message.key().map(String::from_utf8_lossy).as_deref(),
            "messaging.consumer.group.name" = self.settings.group_id.as_str(),
            "kafkit.attempt" = routing::attempts_so_far(headers).saturating_add(1),
            "kafkit.outcome" = tracing::field::Empty,
            "kafkit.retry.tier" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        kafkit_telemetry::context::set_parent(
            &span,
            traceparent,
            header_text(headers, kafkit_telemetry::context::TRACESTATE),
        );
        kafkit_telemetry::context::record_ids(&span, traceparent);
        span
    }

    /// Records how a settled record ended: on its span, in
    /// `messaging.process.duration`, in the retry and DLQ counters, and in
    /// the log for a routed one. `None`: held (an outage).
    pub fn observe(
        &self,
        span: &Span,
        message: &Record,
        outcome: Option<&Outcome>,
        took: Duration,
    ) {
        let handled = matches!(outcome, Some(Outcome::Handled));
        if handled && span.is_none() {
            // The common case, kept cheap: one histogram point with
            // attributes built once per topic.
            self.metrics.record_handled(&message.topic, took);
            return;
        }
        let (name, class) = match outcome {
            Some(Outcome::Handled) => ("handled", None),
            Some(Outcome::Retried { class, .. }) => ("retried", Some(class.as_str())),
            Some(Outcome::DeadLettered { class, .. }) => ("dead-lettered", Some(class.as_str())),
            None => ("held", Some("outage")),
        };
        span.record("kafkit.outcome", name);
        if let Some(class) = class {
            span.record("error.type", class);
            span.record("otel.status_code", "ERROR");
        }
        let metrics = &self.metrics;
        let mut attributes = vec![
            KeyValue::new("messaging.destination.name", message.topic.to_string()),
            KeyValue::new("kafkit.outcome", name),
        ];
        if let Some(class) = class {
            attributes.push(KeyValue::new("error.type", class.to_owned()));
        }
        metrics
            .process_duration
            .record(took.as_secs_f64(), &metrics.with(&attributes));
        let (to, attempts) = match outcome {
            Some(Outcome::Retried {
                tier,
                class,
                to,
                attempts,
            }) => {
                span.record("kafkit.retry.tier", *tier);
                let tier = i64::try_from(*tier).unwrap_or(i64::MAX);
                metrics.retries.add(
                    1,
                    &metrics.with(&[
                        KeyValue::new("kafkit.retry.tier", tier),
                        KeyValue::new("error.type", class.clone()),
                    ]),
                );
                (to, attempts)
            }
            Some(Outcome::DeadLettered {
                class,
                to,
                attempts,
                form,
            }) => {
                metrics.dead_letters.add(
                    1,
                    &metrics.with(&[KeyValue::new("error.type", class.clone())]),
                );
                if *form != CopyForm::Full {
                    let form = if *form == CopyForm::Trimmed {
                        "trimmed"
                    } else {
                        "reference"
                    };
                    metrics
                        .reduced_dead_letters
                        .add(1, &metrics.with(&[KeyValue::new("kafkit.copy.form", form)]));
                }
                (to, attempts)
            }
            _ => return,
        };
        let headers = message.header_view();
        span.in_scope(|| {
            tracing::info!(
                from_topic = &*message.topic,
                partition = message.partition,
                offset = message.offset,
                to,
                attempts,
                class,
                trace_id = trace_id(&headers),
                "routed a failed record"
            );
        });
    }
}

/// A decode error as a permanent failure (transient ones are held, not routed).
fn undecodable(error: &DecodeError) -> Failure {
    Failure::permanent(error.class(), error.to_string()).with_detail(error)
}
