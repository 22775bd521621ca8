//! What a team writes: a [`Handler`] for one event type, given the decoded
//! [`Input`] and an [`Outbox`] for the events it wants published.

use crate::failure::{Failure, FailureKind};
use crate::publisher::OutgoingRecord;
use kafkit_events::{Event, EventCodec, EventHeaders};
use std::future::Future;

/// A decoded record, as a handler sees it.
#[derive(Debug)]
pub struct Input<E> {
    /// The decoded event.
    pub event: E,
    /// The event's id: its `ce_id`, or for a record without one (a plain
    /// Confluent serializer, Kafka Connect) a UUID derived from where it was
    /// first written, the same on every redelivery and retry. Derive output
    /// ids from it and downstream can drop duplicates.
    pub event_id: String,
    /// CloudEvents attributes, when the record carries valid ones.
    pub headers: Option<EventHeaders>,
    /// The topic the record was read from (a retry tier on the retry consumer).
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Failed attempts before this one (0 on a first delivery).
    pub attempts: u32,
}

/// Events a handler wants published. They are handed to the producer after
/// the handler returns `Ok`, and the input's offset is stored only once the
/// broker acknowledged every one of them.
#[derive(Debug)]
pub struct Outbox<'a> {
    codec: &'a EventCodec,
    records: Vec<OutgoingRecord>,
}

impl<'a> Outbox<'a> {
    pub(super) fn new(codec: &'a EventCodec) -> Self {
        Self {
            codec,
            records: Vec::new(),
        }
    }

    pub(super) fn into_records(self) -> Vec<OutgoingRecord> {
        self.records
    }

    /// Encodes `event` for `topic` now; it is published after the handler returns Ok.
    pub async fn publish<E: Event>(
        &mut self,
        topic: &str,
        key: &str,
        event: &E,
        headers: &EventHeaders,
    ) -> Result<(), Failure> {
        let payload = self.codec.encode(topic, event).await.map_err(|e| {
            let (kind, class) = if e.is_transient() {
                (FailureKind::Outage, "registry-unavailable")
            } else {
                (FailureKind::Permanent, "output-encode-failed")
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
/// [`Failure`] to have the record retried, dead-lettered or held. With
/// `key` or `unordered` ordering several calls run at once, so a handler
/// that waits on I/O should simply `await` it.
pub trait Handler<E>: Send + Sync {
    /// Handles one record. Events put in `out` are published only when this
    /// returns `Ok`; an `Err` routes the record by its [`FailureKind`].
    fn handle(
        &self,
        input: &Input<E>,
        out: &mut Outbox<'_>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}
