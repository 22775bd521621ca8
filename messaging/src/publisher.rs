//! Publishing records and typed events, answered by the broker's acknowledgement.
//!
//! `publish` returns only when the broker acknowledged the record (idempotent
//! producer, `acks=all`) or when it definitely was not taken. Failures are
//! sorted: `Unavailable` (queue full, broker unreachable, delivery timeout:
//! nothing was accepted, try again later) apart from `Rejected` (this record
//! will never be taken, e.g. too large).

use crate::config::{KafkaSettings, ProducerSettings};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use shared_events::{EncodeError, Event, EventCodec, EventHeaders};
use std::sync::Arc;
use std::time::Duration;

/// A record to publish. Bytes are sent as they are.
#[derive(Debug, Clone, Default)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Nothing was accepted; the same record may succeed later.
    #[error("the broker did not take the record for {topic}: {source}")]
    Unavailable {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// This record will never be accepted as it is.
    #[error("the broker refused the record for {topic}: {source}")]
    Rejected {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl PublishError {
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
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Publisher {
    pub fn new(kafka: &KafkaSettings, settings: &ProducerSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: settings.client_config(kafka).create()?,
        })
    }

    /// Sends `record` and waits for the broker's answer. A full local queue
    /// fails at once rather than waiting: the caller decides whether to retry.
    pub async fn publish(&self, record: &OutgoingRecord) -> Result<Delivered, PublishError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(&record.topic).headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        if let Some(payload) = &record.payload {
            message = message.payload(payload);
        }
        match self
            .producer
            .send(message, Timeout::After(Duration::ZERO))
            .await
        {
            Ok(delivery) => Ok(Delivered {
                topic: record.topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((error, _)) => Err(PublishError::classify(&record.topic, error)),
        }
    }

    /// Records handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits up to `timeout` for every in-flight record to be settled.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }

    /// Ok when a broker answers a metadata request within `timeout`.
    pub async fn check_broker(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))?;
            if metadata.brokers().is_empty() {
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown));
            }
            Ok(())
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))
    }
}

/// Why a typed event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishEventError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
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
    pub fn new(publisher: Publisher, codec: Arc<EventCodec>) -> Self {
        Self { publisher, codec }
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

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
        let record = OutgoingRecord {
            topic: topic.to_owned(),
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload),
            headers: headers
                .to_pairs()
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
        };
        Ok(self.publisher.publish(&record).await?)
    }
}
