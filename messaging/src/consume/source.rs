//! The consumer's own thread: it polls librdkafka, passes records to the
//! consume loop in batches, and serves rebalance callbacks.
//!
//! Polling on a thread of its own means a rebalance callback may wait
//! without stopping the async runtime: on a revoke it asks the loop to drain
//! the revoked partitions (stop their lanes, wait for their sends, store the
//! settled prefix), waits for that (bounded), commits, and only then lets
//! librdkafka hand the partitions to another member.

use super::Partition;
use super::record::Record;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Message};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The consumer every consume loop uses.
pub(super) type KafkaConsumer = BaseConsumer<RebalanceRelay>;

/// Records read per hand-over at most.
const MAX_BATCH: usize = 512;
/// How long one poll waits for a record (also how soon a stop is noticed).
const POLL_WAIT: Duration = Duration::from_millis(100);

/// What the poll thread passes to the consume loop, in order.
#[derive(Debug)]
pub(super) enum Polled {
    Records(Vec<Record>),
    /// These partitions are being revoked: drain them, then answer on `done`.
    Revoked {
        partitions: Vec<Partition>,
        done: std::sync::mpsc::Sender<()>,
    },
    Error(KafkaError),
}

/// The consumer's context: relays records and revocations to the loop.
#[derive(Debug)]
pub(super) struct RebalanceRelay {
    polled: mpsc::Sender<Polled>,
    batch: Mutex<Vec<Record>>,
    revoke_timeout: Duration,
}

impl RebalanceRelay {
    pub fn new(polled: mpsc::Sender<Polled>, revoke_timeout: Duration) -> Self {
        Self {
            polled,
            batch: Mutex::new(Vec::with_capacity(MAX_BATCH)),
            revoke_timeout,
        }
    }

    fn add(&self, message: Record) -> usize {
        let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        batch.push(message);
        batch.len()
    }

    /// Passes the records read so far on; false when the loop is gone.
    fn flush(&self) -> bool {
        let batch = {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            if batch.is_empty() {
                return !self.polled.is_closed();
            }
            std::mem::replace(&mut *batch, Vec::with_capacity(MAX_BATCH))
        };
        self.polled.blocking_send(Polled::Records(batch)).is_ok()
    }
}

impl ClientContext for RebalanceRelay {}

impl ConsumerContext for RebalanceRelay {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions: Vec<Partition> = list
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        tracing::info!(?partitions, "partitions revoked; draining them");
        // Records read before the revoke reach their lanes before it.
        if partitions.is_empty() || self.polled.is_closed() || !self.flush() {
            return;
        }
        let (done, drained) = std::sync::mpsc::channel();
        if self
            .polled
            .blocking_send(Polled::Revoked { partitions, done })
            .is_err()
        {
            return;
        }
        if drained.recv_timeout(self.revoke_timeout).is_err() {
            tracing::warn!(
                "revoked partitions did not drain in time; their unsettled records will be read again"
            );
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "nothing committed on revoke");
        }
    }
}

/// Polls `consumer` on a thread of its own until `stop` is set or the loop
/// stops listening.
pub(super) fn spawn_poller(
    consumer: Arc<KafkaConsumer>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kafkit-poll".into())
        .spawn(move || {
            let relay = consumer.context();
            // Topic names, shared by the records of each topic.
            let mut topics: Vec<Arc<str>> = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let mut wait = POLL_WAIT;
                loop {
                    match consumer.poll(wait) {
                        None => break,
                        Some(Ok(message)) => {
                            let topic = match topics.iter().find(|t| ***t == *message.topic()) {
                                Some(topic) => Arc::clone(topic),
                                None => {
                                    let topic: Arc<str> = Arc::from(message.topic());
                                    topics.push(Arc::clone(&topic));
                                    topic
                                }
                            };
                            if relay.add(Record::read(&message, topic)) >= MAX_BATCH {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            if !relay.flush()
                                || relay.polled.blocking_send(Polled::Error(e)).is_err()
                            {
                                return;
                            }
                        }
                    }
                    // Take what is ready without waiting, then hand it over.
                    wait = Duration::ZERO;
                }
                if !relay.flush() {
                    return;
                }
            }
        })
}
