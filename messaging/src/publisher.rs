//! Publishing records and typed events, answered by the broker's acknowledgement.
//!
//! `publish` returns only when the broker acknowledged the record (idempotent
//! producer, `acks=all`) or when it definitely was not taken. Failures are
//! sorted: `Unavailable` (queue full, broker unreachable, delivery timeout:
//! nothing was accepted, try again later) apart from `Rejected` (this record
//! will never be taken, e.g. too large).

use crate::config::{KafkaSettings, ProducerSettings};
use kafkit_events::{EncodeError, Event, EventCodec, EventHeaders};
use kafkit_telemetry::context::{TRACEPARENT, TRACESTATE};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::Span;

/// The producer's client context: librdkafka's global errors are logged,
/// and "all brokers down" wakes the [`BrokerWatch`] at once.
#[derive(Debug, Clone, Default)]
pub struct PublisherContext {
    brokers_lost: Arc<Notify>,
}

impl ClientContext for PublisherContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.brokers_lost.notify_one();
        }
        tracing::error!(target: "librdkafka", "librdkafka: {error}: {reason}");
    }
}

type KafkitProducer = FutureProducer<PublisherContext>;

/// What a record's send contributes to its trace.
enum SendTrace {
    /// A `send` span: the record carries its context.
    Span(Span),
    /// No span: the record carries the enclosing span's context, or the
    /// `traceparent` it has.
    Skipped,
    /// A root kafkit decided not to keep: the record carries its own trace
    /// marked not sampled (this `traceparent`).
    NotSampled(String),
}

/// A producer span named after the semantic conventions for messaging,
/// built only when spans are exported (a span per record costs throughput)
/// and the sampler could keep it. Under the default parent-based sampler:
/// inside a span, only when that span is sampled; outside any span, not for
/// a record whose `traceparent` says "not sampled" (it continues an
/// unsampled trace, and keeps that header), and for a new trace only when
/// the root sampler keeps it, decided before anything is built
/// (`kafkit_telemetry::sampling`).
fn send_trace(topic: &str, key: Option<&[u8]>, traceparent: Option<&str>) -> SendTrace {
    if !kafkit_telemetry::context::exported() {
        return SendTrace::Skipped;
    }
    let current = Span::current();
    let mut root_kept = false;
    if current.is_none() {
        use kafkit_telemetry::sampling::{SendOutsideSpans, send_outside_spans};
        match send_outside_spans(traceparent) {
            SendOutsideSpans::Skip => return SendTrace::Skipped,
            SendOutsideSpans::NotSampled(traceparent) => return SendTrace::NotSampled(traceparent),
            SendOutsideSpans::Build { kept } => root_kept = kept,
        }
    } else if !kafkit_telemetry::context::continues_span(&current) {
        // Inside a request or a record's span that was not sampled.
        return SendTrace::Skipped;
    }
    let span = tracing::info_span!(
        "send",
        otel.name = %format_args!("send {topic}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        "messaging.system" = "kafka",
        "messaging.operation.type" = "send",
        "messaging.operation.name" = "send",
        "messaging.destination.name" = topic,
        "messaging.kafka.message.key" = key.map(String::from_utf8_lossy).as_deref(),
        "messaging.destination.partition.id" = tracing::field::Empty,
        "messaging.kafka.offset" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "kafkit.root.sampled" = tracing::field::Empty,
    );
    if root_kept {
        span.record(kafkit_telemetry::sampling::ROOT_SAMPLED, true);
    }
    SendTrace::Span(span)
}

/// A record to publish. Bytes are sent as they are.
#[derive(Debug, Clone, Default)]
pub struct OutgoingRecord {
    /// The destination topic.
    pub topic: String,
    /// `None`: the partitioner picks one from the key.
    pub partition: Option<i32>,
    /// The record key; `None` for a record without one.
    pub key: Option<Vec<u8>>,
    /// The record value; `None` for a record without one (a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Names are usually constants: borrowed, not copied per record.
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
}

impl OutgoingRecord {
    /// An encoded event with its CloudEvents headers, keyed, partitioner's choice.
    pub fn event(topic: &str, key: &[u8], payload: Vec<u8>, headers: &EventHeaders) -> Self {
        Self {
            topic: topic.to_owned(),
            partition: None,
            key: Some(key.to_vec()),
            payload: Some(payload),
            headers: {
                let mut pairs = Vec::with_capacity(8);
                headers
                    .write_pairs(|name, value| pairs.push((Cow::Borrowed(name), value.to_vec())));
                pairs
            },
        }
    }
}

/// A record to hand over, borrowed: what [`Publisher::enqueue_parts`] sends.
struct Parts<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    /// The record's own `traceparent`, for the decision to build a span.
    traceparent: Option<&'a str>,
}

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The topic.
    pub topic: String,
    /// The partition the record went to.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// A record handed to the producer; resolves to the broker's answer. The
/// `send <topic>` span lasts until then. Dropping it does not withdraw the
/// record: the producer still delivers it.
#[must_use = "the broker's answer is only known by awaiting it"]
pub struct PendingDelivery {
    delivery: DeliveryFuture,
    topic: String,
    generation: u64,
    producer: KafkitProducer,
    publisher: Publisher,
    span: Span,
}

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Future for PendingDelivery {
    type Output = Result<Delivered, PublishError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let answer = match Pin::new(&mut this.delivery).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(answer) => answer,
        };
        let result = match answer {
            Ok(Ok(delivery)) => Ok(Delivered {
                topic: std::mem::take(&mut this.topic),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _))) => {
                this.publisher
                    .recover_from_fatal(this.generation, &this.producer, &error);
                Err(PublishError::classify(&this.topic, error))
            }
            // The producer went away with the record: it was not taken.
            Err(_) => Err(PublishError::classify(&this.topic, KafkaError::Canceled)),
        };
        match &result {
            Ok(delivered) => {
                this.span
                    .record("messaging.destination.partition.id", delivered.partition);
                this.span.record("messaging.kafka.offset", delivered.offset);
            }
            Err(e) => record_failure(&this.span, e),
        }
        Poll::Ready(result)
    }
}

fn record_failure(span: &Span, error: &PublishError) {
    span.record("otel.status_code", "ERROR");
    span.record(
        "error.type",
        if error.is_transient() {
            "unavailable"
        } else {
            "rejected"
        },
    );
}

/// Why a record was not published, sorted by whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Nothing was accepted; the same record may succeed later.
    #[error("the broker did not take the record for {topic}: {source}")]
    Unavailable {
        /// The record's topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// This record will never be accepted as it is.
    #[error("the broker refused the record for {topic}: {source}")]
    Rejected {
        /// The record's topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
}

impl PublishError {
    /// True for [`PublishError::Unavailable`]: the same record may be taken later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    fn classify(topic: &str, source: KafkaError) -> Self {
        let topic = topic.to_owned();
        let record_at_fault = matches!(
            source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::InvalidArgument
            )
        );
        if record_at_fault {
            Self::Rejected { topic, source }
        } else {
            Self::Unavailable { topic, source }
        }
    }
}

/// An idempotent, `acks=all` producer. Cheap to clone.
///
/// An idempotent producer whose sequence or epoch the broker can no longer
/// reconcile (a librdkafka fatal error, or the broker answering "fenced",
/// "invalid epoch", "out of order sequence", "unknown producer id", as it
/// may after a long outage) never sends again. The publisher then replaces
/// it with a new instance, so the service recovers on its own. Records in
/// flight on the old instance fail and are reported as such.
#[derive(Clone)]
pub struct Publisher {
    current: Arc<RwLock<(u64, KafkitProducer)>>,
    /// Shared: a clone of the publisher travels with every pending delivery.
    config: Arc<ClientConfig>,
    context: PublisherContext,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Publisher {
    /// A producer configured by [`ProducerSettings::client_config`]. It
    /// connects in the background; nothing is sent yet.
    pub fn new(kafka: &KafkaSettings, settings: &ProducerSettings) -> Result<Self, KafkaError> {
        let config = settings.client_config(kafka);
        let context = PublisherContext::default();
        let producer = config.create_with_context(context.clone())?;
        Ok(Self {
            current: Arc::new(RwLock::new((0, producer))),
            config: Arc::new(config),
            context,
        })
    }

    /// The producer in use and its generation.
    fn producer(&self) -> (u64, KafkitProducer) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces generation `failed` when it can never send again and is still current.
    ///
    /// That includes a broker error that does not say what went wrong
    /// (`Unknown`): the idempotent producer's sequence state is then unknown
    /// too, and a new producer id starts clean. Seen with Tansu 0.6.0's SQLite
    /// storage after its connections were cut: every later send of the old
    /// producer failed that way.
    fn recover_from_fatal(&self, failed: u64, producer: &KafkitProducer, error: &KafkaError) {
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::Unknown
            )
        );
        let (code, reason) = match producer.client().fatal_error() {
            Some(fatal) => fatal,
            None if fenced => (
                error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail),
                error.to_string(),
            ),
            None => return,
        };
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != failed {
            return;
        }
        match self.config.create_with_context(self.context.clone()) {
            Ok(fresh) => {
                tracing::warn!(%code, reason, generation = failed + 1, "replaced a producer that hit a fatal error");
                *current = (failed + 1, fresh);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not replace a producer that hit a fatal error")
            }
        }
    }

    /// Sends `record` and waits for the broker's answer. A full local queue
    /// fails at once rather than waiting: the caller decides whether to retry.
    ///
    /// Runs in a `send <topic>` producer span, a child of the caller's span;
    /// the record's `traceparent`/`tracestate` headers name that span, so
    /// whoever processes the record continues the same trace.
    pub async fn publish(&self, record: &OutgoingRecord) -> Result<Delivered, PublishError> {
        self.enqueue(record)?.await
    }

    /// Hands `record` to the producer without waiting for the broker: the
    /// returned [`PendingDelivery`] resolves to its answer. Many records may
    /// be pending at once (that is what makes consuming fast); an error here
    /// means the record was not taken at all (a full local queue, a producer
    /// that can never send again).
    pub fn enqueue(&self, record: &OutgoingRecord) -> Result<PendingDelivery, PublishError> {
        // Only read to decide on a span, which only an exporter needs.
        let traceparent = if kafkit_telemetry::context::exported() {
            record
                .headers
                .iter()
                .find(|(name, _)| name == TRACEPARENT)
                .and_then(|(_, value)| std::str::from_utf8(value).ok())
        } else {
            None
        };
        self.enqueue_parts(
            Parts {
                topic: &record.topic,
                partition: record.partition,
                key: record.key.as_deref(),
                payload: record.payload.as_deref(),
                traceparent,
            },
            record.headers.len(),
            |write| {
                for (name, value) in &record.headers {
                    write(name, value);
                }
            },
        )
    }

    /// [`enqueue`](Self::enqueue) from borrowed parts: `headers` hands each
    /// header to the writer it is given, straight into the producer's record.
    fn enqueue_parts(
        &self,
        parts: Parts<'_>,
        header_count: usize,
        headers: impl FnOnce(&mut dyn FnMut(&str, &[u8])),
    ) -> Result<PendingDelivery, PublishError> {
        let Parts {
            topic,
            partition,
            key,
            payload,
            traceparent,
        } = parts;
        let (span, context) = match send_trace(topic, key, traceparent) {
            SendTrace::Span(span) => {
                let context = kafkit_telemetry::context::traceparent(&span);
                (span, context)
            }
            // No span of its own: the enclosing span's context, when there is
            // one (a request whose caller was not sampled passes on its trace
            // id and its "not sampled" flag, as the skipped span would have).
            SendTrace::Skipped => (
                Span::none(),
                if kafkit_telemetry::context::exported() {
                    kafkit_telemetry::context::traceparent(&Span::current())
                } else {
                    None
                },
            ),
            SendTrace::NotSampled(traceparent) => (Span::none(), Some((traceparent, None))),
        };
        let mut owned = Some(OwnedHeaders::new_with_capacity(header_count + 2));
        let mut add = |name: &str, value: &[u8]| {
            if let Some(built) = owned.take() {
                owned = Some(built.insert(Header {
                    key: name,
                    value: Some(value),
                }));
            }
        };
        headers(&mut |name, value| {
            let replaced = matches!(name, TRACEPARENT | TRACESTATE) && context.is_some();
            if !replaced {
                add(name, value);
            }
        });
        if let Some((traceparent, tracestate)) = &context {
            add(TRACEPARENT, traceparent.as_bytes());
            if let Some(state) = tracestate {
                add(TRACESTATE, state.as_bytes());
            }
        }
        let mut message = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(headers) = owned {
            message = message.headers(headers);
        }
        if let Some(key) = key {
            message = message.key(key);
        }
        if let Some(partition) = partition {
            message = message.partition(partition);
        }
        if let Some(payload) = payload {
            message = message.payload(payload);
        }
        let (generation, producer) = self.producer();
        match producer.send_result(message) {
            Ok(delivery) => Ok(PendingDelivery {
                delivery,
                topic: topic.to_owned(),
                generation,
                producer,
                publisher: self.clone(),
                span,
            }),
            Err((error, _)) => {
                self.recover_from_fatal(generation, &producer, &error);
                let error = PublishError::classify(topic, error);
                record_failure(&span, &error);
                Err(error)
            }
        }
    }
    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> i32 {
        self.producer().1.in_flight_count()
    }

    /// Waits up to `timeout` for every in-flight record to be settled.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let (_, producer) = self.producer();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }

    /// Ok when a broker answers a metadata request within `timeout`.
    pub async fn check_broker(&self, timeout: Duration) -> Result<(), KafkaError> {
        probe(&self.producer().1, None, timeout).await
    }

    /// Keeps [`BrokerState`] current in the background: a metadata request
    /// for `topic` every `every` while brokers answer (unreachable after two
    /// in a row get no answer within 2 s), every 500 ms while none does;
    /// unreachable at once when librdkafka reports every broker connection
    /// down.
    /// The first probe is made before this returns; the task ends when the
    /// publisher and every watch are gone.
    pub async fn watch_brokers(&self, topic: &str, every: Duration) -> BrokerWatch {
        let first = probe_state(&self.producer().1, topic).await;
        let (states, watch) = watch::channel(first);
        let current = Arc::downgrade(&self.current);
        let lost = Arc::clone(&self.context.brokers_lost);
        let topic = topic.to_owned();
        tokio::spawn(async move {
            loop {
                let wait = if states.borrow().is_reachable() {
                    every
                } else {
                    RETRY_WHILE_DOWN
                };
                let all_down = tokio::select! {
                    () = lost.notified() => true,
                    () = tokio::time::sleep(wait) => false,
                };
                if all_down {
                    // librdkafka's word is enough to stop handing records
                    // over now; the probe below says when one answers again.
                    states.send_if_modified(|now| {
                        let changed = now.is_reachable();
                        if changed {
                            tracing::warn!("every broker connection is down");
                            *now = BrokerState::Unreachable(
                                "every broker connection is down".to_owned(),
                            );
                        }
                        changed
                    });
                }
                let Some(producer) = current
                    .upgrade()
                    .map(|c| c.read().unwrap_or_else(|p| p.into_inner()).1.clone())
                else {
                    return;
                };
                let mut state = probe_state(&producer, &topic).await;
                // One slow answer is not an outage: while brokers were
                // reachable (and librdkafka did not say otherwise), a failed
                // probe is tried once more before orders are refused.
                if !state.is_reachable() && !all_down && states.borrow().is_reachable() {
                    state = probe_state(&producer, &topic).await;
                }
                drop(producer);
                states.send_if_modified(|now| {
                    let changed = *now != state;
                    if changed {
                        match &state {
                            BrokerState::Reachable => tracing::info!("a broker answers again"),
                            BrokerState::Unreachable(why) => {
                                tracing::warn!(reason = why, "no broker answers")
                            }
                        }
                    }
                    *now = state;
                    changed
                });
                if states.is_closed() {
                    return;
                }
            }
        });
        BrokerWatch { states: watch }
    }
}

impl Publisher {
    /// Which of `topics` the cluster does not have (one metadata request for
    /// every topic: asking for a missing one by name could create it).
    pub async fn missing_topics(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Vec<String>, KafkaError> {
        let producer = self.producer().1;
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))?;
            let known: std::collections::HashSet<&str> =
                metadata.topics().iter().map(|t| t.name()).collect();
            Ok(topics
                .into_iter()
                .filter(|t| !known.contains(t.as_str()))
                .collect())
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))
    }
}

/// How long a broker probe waits for a metadata answer: a slow network is
/// not an outage (librdkafka's "all brokers down" is what says so at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often brokers are probed while none answers.
const RETRY_WHILE_DOWN: Duration = Duration::from_millis(500);

/// What one probe for `topic` says of the brokers.
async fn probe_state(producer: &KafkitProducer, topic: &str) -> BrokerState {
    match probe(producer, Some(topic), PROBE_TIMEOUT).await {
        Ok(()) => BrokerState::Reachable,
        Err(e) => BrokerState::Unreachable(e.to_string()),
    }
}

/// A metadata request (for `topic`, or every topic) answered within `timeout`.
async fn probe(
    producer: &KafkitProducer,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let producer = producer.clone();
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let metadata = producer
            .client()
            .fetch_metadata(topic.as_deref(), Timeout::After(timeout))?;
        if metadata.brokers().is_empty() {
            return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown));
        }
        Ok(())
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

/// Whether any broker answers, as last probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerState {
    /// A broker answered.
    Reachable,
    /// No broker answered; why.
    Unreachable(String),
}

impl BrokerState {
    /// True when a broker answered.
    pub fn is_reachable(&self) -> bool {
        matches!(self, Self::Reachable)
    }
}

/// The publisher's view of the brokers, kept current by
/// [`Publisher::watch_brokers`]: read it before handing a record over, or
/// wait for it to turn.
#[derive(Debug, Clone)]
pub struct BrokerWatch {
    states: watch::Receiver<BrokerState>,
}

impl BrokerWatch {
    /// The state as last probed.
    pub fn state(&self) -> BrokerState {
        self.states.borrow().clone()
    }

    /// Resolves once no broker answers (at once if none does now).
    pub async fn lost(&self) {
        let mut states = self.states.clone();
        if states.wait_for(|s| !s.is_reachable()).await.is_err() {
            // The watch task ended: nothing will ever say so.
            std::future::pending::<()>().await;
        }
    }
}

/// Why a typed event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishEventError {
    /// The event could not be encoded (the registry, or the event itself).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The broker did not take the encoded record.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl PublishEventError {
    /// True when nothing is wrong with the event and a later try may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Encode(e) => e.is_transient(),
            Self::Publish(e) => e.is_transient(),
        }
    }
}

/// Encodes typed events through the registry and publishes them with their headers.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    publisher: Publisher,
    codec: Arc<EventCodec>,
}

impl EventPublisher {
    /// Publishes through `publisher`, encoding with `codec`.
    pub fn new(publisher: Publisher, codec: Arc<EventCodec>) -> Self {
        Self { publisher, codec }
    }

    /// The publisher underneath, for plain records and broker checks.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The codec events are encoded with.
    pub fn codec(&self) -> &EventCodec {
        &self.codec
    }

    /// Encodes `event` (Confluent wire format) and publishes it to `topic`
    /// under `key` with `headers`; returns once the broker acknowledged it.
    pub async fn publish_event<E: Event>(
        &self,
        topic: &str,
        key: &str,
        event: &E,
        headers: &EventHeaders,
    ) -> Result<Delivered, PublishEventError> {
        let payload = self.codec.encode(topic, event).await?;
        // Straight from the event's headers into the producer's record: no
        // intermediate `OutgoingRecord` with a copy of every header.
        // Only read to decide on a span, which only an exporter needs.
        let traceparent = headers
            .traceparent
            .filter(|_| kafkit_telemetry::context::exported())
            .map(|tp| tp.to_bytes());
        let parts = Parts {
            topic,
            partition: None,
            key: Some(key.as_bytes()),
            payload: Some(&payload),
            traceparent: traceparent
                .as_ref()
                .and_then(|tp| std::str::from_utf8(tp).ok()),
        };
        let delivery = self
            .publisher
            .enqueue_parts(parts, 8, |write| headers.write_pairs(|n, v| write(n, v)))?;
        Ok(delivery.await?)
    }
}
