//! `kafkit topics describe TOPIC`: partitions and offsets, and the lag of
//! every consumer group that committed offsets on the topic.
//!
//! Groups come from the broker's group list; a group counts as a consumer of
//! the topic when it has a committed offset on one of its partitions (asked
//! per group, without joining it). Lag is high watermark minus committed
//! offset, as far as the broker tells: a broker that cannot list groups gets
//! a note instead of a table.

use crate::dlq::Output;
use crate::term::table;
use anyhow::{Context, bail};
use kafkit_messaging::{KafkaArgs, KafkaSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    pub topic: String,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, Serialize)]
pub struct Description {
    pub topic: String,
    pub partitions: Vec<PartitionOffsets>,
    pub groups: Vec<GroupLag>,
    /// Why groups are missing, when the broker did not list them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_unavailable: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub leader: i32,
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub state: String,
    pub members: usize,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Serialize)]
pub struct PartitionLag {
    pub partition: i32,
    /// None: the group committed nothing on this partition.
    pub committed: Option<i64>,
    pub lag: Option<i64>,
}

const TIMEOUT: Timeout = Timeout::After(Duration::from_secs(10));

pub async fn run(args: DescribeArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let topic = args.topic.clone();
    let description = tokio::task::spawn_blocking(move || describe(&kafka, &topic)).await??;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&description)?),
        Output::Table => print_table(&description),
    }
    Ok(())
}

pub fn describe(kafka: &KafkaSettings, topic: &str) -> anyhow::Result<Description> {
    let consumer: BaseConsumer =
        crate::reader::config(kafka, &crate::reader::throwaway_group("describe")).create()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| {
            format!(
                "could not reach Kafka at {}; is it running? (kafkit dev up)",
                kafka.bootstrap_servers
            )
        })?;
    let Some(found) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    else {
        bail!(
            "topic {topic} does not exist at {} (kafkit topics list)",
            kafka.bootstrap_servers
        );
    };
    let mut partitions = Vec::new();
    for partition in found.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), TIMEOUT)?;
        partitions.push(PartitionOffsets {
            partition: partition.id(),
            leader: partition.leader(),
            low,
            high,
        });
    }
    partitions.sort_by_key(|p| p.partition);

    let (groups, groups_unavailable) = match consumer.fetch_group_list(None, TIMEOUT) {
        Err(e) => (
            Vec::new(),
            Some(format!("the broker did not list groups: {e}")),
        ),
        Ok(list) => {
            let mut groups = Vec::new();
            for group in list.groups() {
                if group.name().starts_with("kafkit-describe-") {
                    continue;
                }
                if let Some(lag) = group_lag(
                    kafka,
                    topic,
                    group.name(),
                    group.state(),
                    group.members().len(),
                    &partitions,
                )? {
                    groups.push(lag);
                }
            }
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            (groups, None)
        }
    };
    Ok(Description {
        topic: topic.to_owned(),
        partitions,
        groups,
        groups_unavailable,
    })
}

/// The group's committed offsets on `topic` and its lag; None when it
/// committed nothing there.
fn group_lag(
    kafka: &KafkaSettings,
    topic: &str,
    group: &str,
    state: &str,
    members: usize,
    partitions: &[PartitionOffsets],
) -> anyhow::Result<Option<GroupLag>> {
    // A consumer with the group's id that never subscribes only reads its offsets.
    let reader: BaseConsumer = crate::reader::config(kafka, group).create()?;
    let mut wanted = TopicPartitionList::new();
    for p in partitions {
        wanted.add_partition(topic, p.partition);
    }
    let committed = reader
        .committed_offsets(wanted, TIMEOUT)
        .with_context(|| format!("could not read the offsets of group {group}"))?;
    let mut lags = Vec::new();
    for p in partitions {
        let offset = committed
            .find_partition(topic, p.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        lags.push(PartitionLag {
            partition: p.partition,
            committed: offset,
            // A broker that undercounts its high watermark (Tansu 0.6.0) must
            // not show a negative lag.
            lag: offset.map(|o| (p.high - o).max(0)),
        });
    }
    if lags.iter().all(|l| l.committed.is_none()) {
        return Ok(None);
    }
    Ok(Some(GroupLag {
        group: group.to_owned(),
        state: state.to_owned(),
        members,
        total_lag: lags.iter().filter_map(|l| l.lag).sum(),
        partitions: lags,
    }))
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

fn print_table(d: &Description) {
    println!("{}  {} partitions", d.topic, d.partitions.len());
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                p.low.to_string(),
                p.high.to_string(),
            ]
        })
        .collect();
    print_indented(&table(
        &["partition", "leader", "low", "high"],
        &rows,
        &[1, 2, 3],
    ));
    println!();
    if let Some(why) = &d.groups_unavailable {
        println!("consumer groups: unknown ({why})");
        return;
    }
    if d.groups.is_empty() {
        println!("consumer groups: none has committed offsets on {}", d.topic);
        return;
    }
    let rows: Vec<Vec<String>> = d
        .groups
        .iter()
        .map(|g| {
            let per: Vec<String> = g
                .partitions
                .iter()
                .map(|p| match (p.committed, p.lag) {
                    (Some(c), Some(l)) => format!("{}:{c}/{l}", p.partition),
                    _ => format!("{}:-", p.partition),
                })
                .collect();
            vec![
                g.group.clone(),
                g.state.clone(),
                g.members.to_string(),
                g.total_lag.to_string(),
                per.join(" "),
            ]
        })
        .collect();
    let header = [
        "group",
        "state",
        "members",
        "lag",
        "per partition (committed/lag)",
    ];
    print_indented(&table(&header, &rows, &[2, 3]));
    let behind_watermark = d.groups.iter().flat_map(|g| &g.partitions).any(|p| {
        d.partitions
            .iter()
            .any(|w| w.partition == p.partition && p.committed.is_some_and(|c| c > w.high))
    });
    if behind_watermark {
        println!(
            "note: a committed offset is above its partition's high watermark; the broker \
             undercounts (Tansu 0.6.0 does), so lag is shown as 0 there"
        );
    }
}
