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
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How the dead letters of one DLQ topic were dealt with, by partition and offset.
type States = HashMap<(i32, i64), Resolution>;

/// Dead letters by DLQ topic, and how those dealt with were dealt with.
#[derive(Debug, Clone)]
pub struct Index {
    topics: Arc<RwLock<BTreeMap<String, Vec<DeadLetter>>>>,
    /// By DLQ topic, then the dead letter's partition and offset: a list
    /// looks each letter up without building its id.
    resolutions: Arc<RwLock<HashMap<String, States>>>,
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

    /// How dead letter `id` (`dlqtopic/partition/offset`) was dealt with, if it was.
    pub fn resolution(&self, id: &str) -> Option<Resolution> {
        let (topic, at) = parse_id(id)?;
        self.resolutions.read().ok()?.get(topic)?.get(&at).cloned()
    }

    /// Sets (or, with None, clears) how dead letter `id` was dealt with.
    pub fn resolve(&self, id: String, state: Option<Resolution>) {
        let Some((topic, at)) = parse_id(&id) else {
            return;
        };
        if let Ok(mut map) = self.resolutions.write() {
            let states = map.entry(topic.to_owned()).or_default();
            match state {
                Some(state) => states.insert(at, state),
                None => states.remove(&at),
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
        let Ok(resolutions) = self.resolutions.read() else {
            return Vec::new();
        };
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
                let states = resolutions.get(topic);
                let open = letters
                    .iter()
                    .filter(|l| {
                        states.is_none_or(|s| !s.contains_key(&(l.dlq_partition, l.dlq_offset)))
                    })
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
        let page = query.page.unwrap_or(0);
        let mut letters = Vec::new();
        let matching = self.scan(topic, query, |index, letter| {
            if index / PAGE == page {
                letters.push(letter.clone());
            }
        })?;
        Some(Page {
            matching,
            letters,
            page,
        })
    }

    /// Every dead letter of `topic` that `query` keeps, newest first, all
    /// pages at once (what a replay of the filter sends).
    pub fn matching(&self, topic: &str, query: &Query) -> Option<Vec<DeadLetter>> {
        let mut letters = Vec::new();
        self.scan(topic, query, |_, letter| letters.push(letter.clone()))?;
        Some(letters)
    }

    /// One pass over `topic`'s dead letters, newest first, handing each one
    /// `query` keeps to `each` with its rank; how many it kept.
    fn scan(
        &self,
        topic: &str,
        query: &Query,
        mut each: impl FnMut(usize, &DeadLetter),
    ) -> Option<usize> {
        let map = self.topics.read().ok()?;
        let letters = map.get(topic)?;
        let resolutions = self.resolutions.read().ok()?;
        let states = resolutions.get(topic);
        let mut kept = 0;
        for letter in letters.iter().rev() {
            let state = states.and_then(|s| s.get(&(letter.dlq_partition, letter.dlq_offset)));
            if query.keeps(letter, state) {
                each(kept, letter);
                kept += 1;
            }
        }
        Some(kept)
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

/// `dlqtopic/partition/offset` as (topic, (partition, offset)).
fn parse_id(id: &str) -> Option<(&str, (i32, i64))> {
    let mut parts = id.rsplitn(3, '/');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((parts.next()?, (partition, offset)))
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
