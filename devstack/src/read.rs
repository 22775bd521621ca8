//! Reading a topic back in tests: every record with its headers, from the
//! start of each partition, without a consumer group's committed offsets.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// A record read back, with its headers as text.
#[derive(Debug, Clone)]
pub struct Read {
    pub message: OwnedMessage,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Read {
    /// The value's bytes (`None` for a tombstone).
    pub fn payload(&self) -> Option<&[u8]> {
        self.message.payload()
    }
    /// The key's bytes.
    pub fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }
    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    /// How many headers are called `name`.
    pub fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// Reads `topic` from the start until `want` records arrived (or `within`
/// passed), then half a second more to catch extras. Never uses watermarks
/// (Tansu 0.6.0 undercounts them for batches).
pub async fn read_topic(bootstrap: &str, topic: &str, want: usize, within: Duration) -> Vec<Read> {
    read_topic_until_quiet(bootstrap, topic, want, within, Duration::from_millis(500)).await
}

/// [`read_topic`], waiting `quiet` without a new record before it stops
/// (longer for "the topic holds exactly these": a slow broker answers late).
#[allow(clippy::unwrap_used)]
pub async fn read_topic_until_quiet(
    bootstrap: &str,
    topic: &str,
    want: usize,
    within: Duration,
    quiet: Duration,
) -> Vec<Read> {
    let quiet_polls_wanted = quiet.as_millis().div_ceil(250).max(1);
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set(
                "group.id",
                format!("reader-{}", uuid::Uuid::new_v4().simple()),
            )
            .create()
            .unwrap();
        // A busy broker may drop one metadata request (seen once with Tansu
        // as "broker transport failure" in a long rebalancing test): ask
        // again until `within` has passed.
        let deadline = Instant::now() + within.max(Duration::from_secs(10));
        let metadata = loop {
            match consumer.fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(5))) {
                Ok(metadata) => break metadata,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reading {topic}: metadata not fetched ({e}), asking again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("reading {topic}: metadata not fetched: {e}"),
            }
        };
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            assignment
                .add_partition_offset(&topic, partition.id(), Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let deadline = Instant::now() + within;
        let mut records = Vec::new();
        let mut quiet_polls = 0;
        while (records.len() < want && Instant::now() < deadline)
            || (records.len() >= want && quiet_polls < quiet_polls_wanted)
        {
            match consumer.poll(Duration::from_millis(250)) {
                // A transient client error (a connection dropped) is not a
                // record: librdkafka reconnects and the next poll goes on.
                Some(Err(e)) => eprintln!("reading {topic}: {e}"),
                Some(Ok(message)) => {
                    let message = message.detach();
                    let headers = message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    records.push(Read { message, headers });
                    quiet_polls = 0;
                }
                None if records.len() >= want => quiet_polls += 1,
                None => {}
            }
        }
        records
    })
    .await
    .unwrap()
}

/// The offsets `group` committed on `topic`'s partitions `0..partitions`
/// (-1: nothing committed), asked without joining the group.
///
/// # Panics
/// When the broker does not answer within 10 s (for tests).
pub async fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<i64> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .expect("a consumer to read committed offsets");
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let committed = consumer
            .committed_offsets(list, Timeout::After(Duration::from_secs(10)))
            .expect("the group's committed offsets within 10 s");
        (0..partitions)
            .map(
                |p| match committed.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    _ => -1,
                },
            )
            .collect()
    })
    .await
    .expect("the look-up task")
}
