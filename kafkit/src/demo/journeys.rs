//! What became of each order, read from the topics themselves.
//!
//! The demo does not ask the services how things went: it reads the orders
//! topic, every retry tier, the DLQ and the confirmations topic from where
//! they stood when it started, and follows each order by its key (the order
//! id on every one of them). So the summary it prints is what the topics
//! hold, and a test can check it against them.

use crate::dlq::record::DeadLetter;
use kafkit_messaging::KafkaSettings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// The topics one order can pass through.
#[derive(Debug, Clone)]
pub struct Topics {
    pub main: String,
    pub retries: Vec<String>,
    pub dlq: String,
    pub confirmations: String,
}

impl Topics {
    pub fn all(&self) -> Vec<String> {
        let mut all = vec![self.main.clone()];
        all.extend(self.retries.iter().cloned());
        all.push(self.dlq.clone());
        all.push(self.confirmations.clone());
        all
    }
}

/// One record seen on one of the topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Placed,
    /// Scheduled on retry tier `tier` (1-based) because of `class`.
    Retry {
        tier: usize,
        class: String,
    },
    Confirmed,
    Dead {
        class: String,
        message: String,
    },
}

/// What a step means to a person watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Retrying {
        order_id: String,
        tier: usize,
        class: String,
    },
    Recovered {
        order_id: String,
        retries: usize,
    },
    DeadLettered {
        order_id: String,
        class: String,
        message: String,
    },
}

/// Reads the order topics from where they stood at `start`.
pub struct Monitor {
    consumer: StreamConsumer,
    topics: Topics,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// Assigns every partition of every topic at its current end, so only
    /// what happens from now on is seen. (Tansu 0.6.0 can report an end
    /// lower than the truth; that only makes the monitor read a few older
    /// records, which belong to no order of this run and are ignored.)
    pub fn start(kafka: &KafkaSettings, topics: Topics) -> anyhow::Result<Self> {
        let group = crate::reader::throwaway_group("demo-monitor");
        let consumer: StreamConsumer = crate::reader::config(kafka, &group).create()?;
        let mut assignment = TopicPartitionList::new();
        for topic in topics.all() {
            let metadata =
                consumer.fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(10)))?;
            for partition in metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions())
            {
                let (_, high) = consumer.fetch_watermarks(
                    &topic,
                    partition.id(),
                    Timeout::After(Duration::from_secs(10)),
                )?;
                assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(high))?;
            }
        }
        consumer.assign(&assignment)?;
        Ok(Self { consumer, topics })
    }

    /// The next record as (order id, topic, step), or None after `idle` without one.
    pub async fn next(&self, idle: Duration) -> anyhow::Result<Option<(String, String, Step)>> {
        let message = match tokio::time::timeout(idle, self.consumer.recv()).await {
            Err(_) => return Ok(None),
            Ok(received) => received?.detach(),
        };
        Ok(Some(self.step(&message)))
    }

    fn step(&self, message: &OwnedMessage) -> (String, String, Step) {
        let topic = message.topic().to_owned();
        let order_id = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let step = if topic == self.topics.dlq {
            let letter = DeadLetter::from_message(message);
            Step::Dead {
                class: letter.error_class,
                message: letter.error_message,
            }
        } else if topic == self.topics.confirmations {
            Step::Confirmed
        } else if let Some(index) = self.topics.retries.iter().position(|t| *t == topic) {
            Step::Retry {
                tier: index + 1,
                class: DeadLetter::from_message(message).error_class,
            }
        } else {
            Step::Placed
        };
        (order_id, topic, step)
    }
}

/// Everything seen about one order.
#[derive(Debug, Default, Clone)]
struct Journey {
    /// Sent by this run (its records may be seen before its 202 comes back).
    ours: bool,
    records: BTreeMap<String, usize>,
    tiers: BTreeSet<usize>,
    confirmed: bool,
    dead: Option<String>,
}

/// Every order seen, keyed by id; those this run sent are marked.
#[derive(Debug, Default)]
pub struct Journeys {
    journeys: HashMap<String, Journey>,
}

/// Counts for the summary table, over the orders this run sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub sent: usize,
    pub first_try: usize,
    pub after_retries: usize,
    pub dead_by_class: BTreeMap<String, usize>,
    pub retrying: usize,
    /// Accepted but not processed yet.
    pub waiting: usize,
    /// Records per topic that belong to this run's orders.
    pub records: BTreeMap<String, usize>,
}

impl Tally {
    pub fn dead(&self) -> usize {
        self.dead_by_class.values().sum()
    }

    /// Every sent order is confirmed or dead-lettered.
    pub fn settled(&self) -> bool {
        self.first_try + self.after_retries + self.dead() == self.sent
    }
}

impl Journeys {
    /// An order the demo sent (its records may have been seen already).
    pub fn sent(&mut self, order_id: String) {
        self.journeys.entry(order_id).or_default().ours = true;
    }

    /// Records a step; returns what a person should be told, if anything.
    pub fn apply(&mut self, order_id: &str, topic: &str, step: Step) -> Option<Notice> {
        let journey = self.journeys.entry(order_id.to_owned()).or_default();
        *journey.records.entry(topic.to_owned()).or_default() += 1;
        match step {
            Step::Placed => None,
            Step::Retry { tier, class } => {
                journey.tiers.insert(tier);
                Some(Notice::Retrying {
                    order_id: order_id.to_owned(),
                    tier,
                    class,
                })
            }
            Step::Confirmed => {
                let first = !journey.confirmed;
                journey.confirmed = true;
                (first && !journey.tiers.is_empty()).then(|| Notice::Recovered {
                    order_id: order_id.to_owned(),
                    retries: journey.tiers.len(),
                })
            }
            Step::Dead { class, message } => {
                journey.dead = Some(class.clone());
                Some(Notice::DeadLettered {
                    order_id: order_id.to_owned(),
                    class,
                    message,
                })
            }
        }
    }

    /// Is this one of the orders this run sent?
    pub fn is_ours(&self, order_id: &str) -> bool {
        self.journeys.get(order_id).is_some_and(|j| j.ours)
    }

    pub fn tally(&self, topics: &Topics) -> Tally {
        let mut tally = Tally {
            records: topics.all().into_iter().map(|t| (t, 0)).collect(),
            ..Tally::default()
        };
        for journey in self.journeys.values().filter(|j| j.ours) {
            tally.sent += 1;
            for (topic, count) in &journey.records {
                *tally.records.entry(topic.clone()).or_default() += count;
            }
            match (&journey.dead, journey.confirmed) {
                (Some(class), _) => *tally.dead_by_class.entry(class.clone()).or_default() += 1,
                (None, true) if journey.tiers.is_empty() => tally.first_try += 1,
                (None, true) => tally.after_retries += 1,
                (None, false) if journey.tiers.is_empty() => tally.waiting += 1,
                (None, false) => tally.retrying += 1,
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics {
            main: "orders".into(),
            retries: vec!["orders.retry.1".into(), "orders.retry.2".into()],
            dlq: "orders.dlq".into(),
            confirmations: "order-confirmations".into(),
        }
    }

    #[test]
    fn journeys_count_outcomes_and_records_of_this_runs_orders_only() {
        let mut journeys = Journeys::default();
        for id in ["a", "b", "c", "d"] {
            journeys.sent(id.into());
        }
        let retry = |tier| Step::Retry {
            tier,
            class: "injected-transient".into(),
        };
        // A record seen before its 202 came back still counts.
        journeys.apply("zz-older-run", "orders", Step::Placed);
        for id in ["a", "b", "c", "d"] {
            journeys.apply(id, "orders", Step::Placed);
        }
        journeys.apply("a", "order-confirmations", Step::Confirmed);
        journeys.apply("b", "orders.retry.1", retry(1));
        let recovered = journeys.apply("b", "order-confirmations", Step::Confirmed);
        assert_eq!(
            recovered,
            Some(Notice::Recovered {
                order_id: "b".into(),
                retries: 1
            })
        );
        journeys.apply("c", "orders.retry.1", retry(1));
        let dead = Step::Dead {
            class: "unsupported-currency".into(),
            message: "JPY".into(),
        };
        journeys.apply("d", "orders.dlq", dead);

        let tally = journeys.tally(&topics());
        assert_eq!(tally.sent, 4);
        assert_eq!((tally.first_try, tally.after_retries), (1, 1));
        assert_eq!(tally.retrying, 1);
        assert_eq!(tally.dead_by_class.get("unsupported-currency"), Some(&1));
        assert!(!tally.settled());
        assert_eq!(
            tally.records["orders"], 4,
            "the older run's record is not ours"
        );
        assert_eq!(tally.records["orders.retry.1"], 2);
        assert_eq!(tally.records["orders.retry.2"], 0);
        assert_eq!(tally.records["order-confirmations"], 2);
        assert!(journeys.is_ours("c") && !journeys.is_ours("zz-older-run"));
    }
}
