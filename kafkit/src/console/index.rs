//! What the console shows, kept current: every dead letter of the watched
//! DLQ topics, read from the beginning by a reader of its own (a throwaway
//! group: the console never moves anyone's offsets) and kept in memory,
//! newest last. A list is a scan of that memory, which stays in
//! milliseconds at 100,000 dead letters.

use crate::dlq::record::DeadLetter;
use crate::dlq::resolved::{self, Resolution};
use kafkit_messaging::KafkaSettings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Dead letters by DLQ topic, and how those dealt with were dealt with.
#[derive(Debug, Clone)]
pub struct Index {
    topics: Arc<RwLock<BTreeMap<String, Vec<DeadLetter>>>>,
    /// By the dead letter's id (`dlqtopic/partition/offset`).
    resolutions: Arc<RwLock<std::collections::HashMap<String, Resolution>>>,
    /// Each dead letter as it arrives, for the pages that show them live.
    arrivals: tokio::sync::broadcast::Sender<DeadLetter>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            topics: Arc::default(),
            resolutions: Arc::default(),
            // A page that falls this far behind misses rows, not the server.
            arrivals: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

/// One DLQ topic at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub topic: String,
    pub total: usize,
    /// Not resolved, discarded or replayed yet.
    pub open: usize,
    /// (class, count), most first.
    pub classes: Vec<(String, usize)>,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

/// Which dead letters a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Query {
    /// `open`, or a status (`resolved`, `discarded`, `replayed`); all when unset.
    pub status: Option<String>,
    pub class: Option<String>,
    pub key: Option<String>,
    /// The partition of the topic it came from.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub partition: Option<i32>,
    /// Died at or after, epoch ms.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub after_ms: Option<i64>,
    /// Died before, epoch ms.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub before_ms: Option<i64>,
    /// 0-based page.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub page: Option<usize>,
}

/// A form's empty field is no filter (a browser sends every field).
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// How many rows a page of the list shows.
pub const PAGE: usize = 50;

impl Query {
    fn keeps(&self, letter: &DeadLetter, state: Option<&Resolution>) -> bool {
        let died = letter.dead_at_ms.unwrap_or_default();
        let status = state.map_or("open", |s| s.status.as_str());
        self.status
            .as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|s| s == status)
            && self
                .class
                .as_deref()
                .filter(|c| !c.is_empty())
                .is_none_or(|c| letter.error_class == c)
            && self
                .key
                .as_deref()
                .filter(|k| !k.is_empty())
                .is_none_or(|k| letter.key_text.as_deref() == Some(k))
            && self
                .partition
                .is_none_or(|p| letter.original_partition == Some(p))
            && self.after_ms.is_none_or(|after| died >= after)
            && self.before_ms.is_none_or(|before| died < before)
    }
}

/// One page of a list, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub letters: Vec<DeadLetter>,
    /// How many match the query in all.
    pub matching: usize,
    pub page: usize,
}

impl Index {
    /// An index of these topics, each empty until its reader fills it.
    pub fn new(topics: &[String]) -> Self {
        let index = Self::default();
        if let Ok(mut map) = index.topics.write() {
            for topic in topics {
                map.entry(topic.clone()).or_default();
            }
        }
        index
    }

    /// How dead letter `id` was dealt with, if it was.
    pub fn resolution(&self, id: &str) -> Option<Resolution> {
        self.resolutions.read().ok()?.get(id).cloned()
    }

    /// Sets (or, with None, clears) how dead letter `id` was dealt with.
    pub fn resolve(&self, id: String, state: Option<Resolution>) {
        if let Ok(mut map) = self.resolutions.write() {
            match state {
                Some(state) => map.insert(id, state),
                None => map.remove(&id),
            };
        }
    }

    /// Adds one dead letter (readers call this as records arrive).
    pub fn add(&self, letter: DeadLetter) {
        // Nobody watching is fine.
        let _ = self.arrivals.send(letter.clone());
        if let Ok(mut map) = self.topics.write() {
            map.entry(letter.dlq_topic.clone())
                .or_default()
                .push(letter);
        }
    }

    /// Dead letters from now on, as they arrive.
    pub fn arrivals(&self) -> tokio::sync::broadcast::Receiver<DeadLetter> {
        self.arrivals.subscribe()
    }

    pub fn topics(&self) -> Vec<String> {
        self.topics
            .read()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn overview(&self) -> Vec<Overview> {
        let Ok(map) = self.topics.read() else {
            return Vec::new();
        };
        let resolutions = self
            .resolutions
            .read()
            .map(|r| r.clone())
            .unwrap_or_default();
        map.iter()
            .map(|(topic, letters)| {
                let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
                for letter in letters {
                    *classes.entry(letter.error_class.as_str()).or_default() += 1;
                }
                let mut classes: Vec<(String, usize)> = classes
                    .into_iter()
                    .map(|(class, count)| (class.to_owned(), count))
                    .collect();
                classes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let times = letters.iter().filter_map(|l| l.dead_at_ms);
                let open = letters
                    .iter()
                    .filter(|l| !resolutions.contains_key(&crate::dlq::coordinates(l)))
                    .count();
                Overview {
                    topic: topic.clone(),
                    total: letters.len(),
                    open,
                    classes,
                    oldest_ms: times.clone().min(),
                    newest_ms: times.max(),
                }
            })
            .collect()
    }

    /// The page `query` asks for of `topic`'s dead letters, newest first;
    /// None for a topic the console does not watch.
    pub fn list(&self, topic: &str, query: &Query) -> Option<Page> {
        let map = self.topics.read().ok()?;
        let letters = map.get(topic)?;
        let page = query.page.unwrap_or(0);
        let resolutions = self.resolutions.read().ok()?;
        let matching: Vec<&DeadLetter> = letters
            .iter()
            .rev()
            .filter(|l| query.keeps(l, resolutions.get(&crate::dlq::coordinates(l))))
            .collect();
        Some(Page {
            matching: matching.len(),
            letters: matching
                .into_iter()
                .skip(page * PAGE)
                .take(PAGE)
                .cloned()
                .collect(),
            page,
        })
    }

    /// One dead letter by its coordinates on its DLQ topic.
    pub fn get(&self, topic: &str, partition: i32, offset: i64) -> Option<DeadLetter> {
        let map = self.topics.read().ok()?;
        map.get(topic)?
            .iter()
            .find(|l| l.dlq_partition == partition && l.dlq_offset == offset)
            .cloned()
    }
}

/// Reads the state topic of `dlq` (`<dlq>.resolved`) from its beginning
/// into `index`, then keeps reading what arrives.
pub async fn read_resolutions_into(
    index: Index,
    kafka: KafkaSettings,
    dlq: String,
) -> anyhow::Result<()> {
    let topic = resolved::topic_of(&dlq);
    let consumer: StreamConsumer =
        crate::reader::config(&kafka, &crate::reader::throwaway_group("console-resolved"))
            .set("auto.offset.reset", "earliest")
            .create()?;
    consumer.subscribe(&[topic.as_str()])?;
    loop {
        match consumer.recv().await {
            Ok(message) => {
                if let Some((id, state)) = resolved::parse(&message) {
                    index.resolve(id, state);
                }
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, "reading resolutions");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// Reads `topic` from its beginning into `index`, then keeps reading what
/// arrives, until the process ends. A failing poll is logged and retried.
pub async fn read_into(index: Index, kafka: KafkaSettings, topic: String) -> anyhow::Result<()> {
    let consumer: StreamConsumer =
        crate::reader::config(&kafka, &crate::reader::throwaway_group("console"))
            .set("auto.offset.reset", "earliest")
            .create()?;
    consumer.subscribe(&[topic.as_str()])?;
    loop {
        match consumer.recv().await {
            Ok(message) => index.add(DeadLetter::from_message(&message.detach())),
            Err(e) => {
                tracing::warn!(topic, error = %e, "reading dead letters");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(n: usize) -> Index {
        let index = Index::new(&["orders.dlq".to_owned()]);
        for i in 0..n {
            let mut letter = crate::dlq::record::tests::died_at(1_000 + i as i64);
            letter.dlq_offset = i as i64;
            letter.error_class = [
                "unsupported-currency",
                "injected-transient",
                "malformed-body",
            ][i % 3]
                .into();
            letter.key_text = Some(format!("k-{i}"));
            letter.original_partition = Some((i % 4) as i32);
            index.add(letter);
        }
        index
    }

    #[test]
    fn a_hundred_thousand_dead_letters_are_counted_filtered_and_paged() {
        let index = letters(100_000);
        let overview = &index.overview()[0];
        assert_eq!(overview.total, 100_000);
        assert_eq!(
            overview.classes[0],
            ("unsupported-currency".to_owned(), 33_334)
        );
        assert_eq!(
            (overview.oldest_ms, overview.newest_ms),
            (Some(1_000), Some(100_999))
        );
        let started = std::time::Instant::now();
        let query = Query {
            class: Some("malformed-body".into()),
            partition: Some(1),
            page: Some(2),
            ..Query::default()
        };
        let page = index
            .list("orders.dlq", &query)
            .unwrap_or_else(|| panic!("watched"));
        // Printed, not asserted: machines differ.
        println!(
            "list of 100,000 dead letters, filtered and paged: {:?}",
            started.elapsed()
        );
        // i % 3 == 2 and i % 4 == 1: i = 5, 17, 29, ... (every 12th).
        assert_eq!(page.matching, 8_333);
        assert_eq!(page.letters.len(), PAGE);
        assert!(
            page.letters
                .iter()
                .all(|l| l.error_class == "malformed-body" && l.original_partition == Some(1))
        );
        // Newest first: page 2 starts 100 matches below the newest.
        assert_eq!(page.letters[0].dlq_offset, 99_989 - 12 * 100);
        let window = Query {
            after_ms: Some(1_010),
            before_ms: Some(1_020),
            ..Query::default()
        };
        assert_eq!(
            index.list("orders.dlq", &window).map(|p| p.matching),
            Some(10)
        );
        assert!(index.get("orders.dlq", 0, 77).is_some());
        assert!(index.list("other.dlq", &Query::default()).is_none());
    }
}
