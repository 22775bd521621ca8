//! `kafkit dlq`: see what died and why, grouped, and send it back safely.

pub mod record;
pub mod watch;

use anyhow::{Context, bail};
use kafkit_messaging::{KafkaArgs, KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use record::{ClassSummary, DeadLetter, Filter};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};
use tracing::Instrument;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Follow a dead-letter topic live: each dead letter decoded, with a summary by class.
    ///
    /// Example: kafkit dlq watch orders.dlq --from-beginning
    Watch(watch::WatchArgs),
    /// List and count what is parked on a dead-letter topic.
    ///
    /// Example: kafkit dlq inspect orders.dlq --class unsupported-currency --output json
    Inspect(InspectArgs),
    /// Send dead letters back to their original topic (or --to), once.
    ///
    /// Example: kafkit dlq replay orders.dlq --class injected-transient --dry-run
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The dead-letter topic, e.g. orders.dlq
    pub topic: String,
    #[command(flatten)]
    pub filter: Filter,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The dead-letter topic, e.g. orders.dlq
    pub topic: String,
    #[command(flatten)]
    pub filter: Filter,
    /// Send here instead of each record's original topic.
    #[arg(long)]
    pub to: Option<String>,
    /// Move at most this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Records per second at most.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Show what would move; move nothing and remember nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Consumer group that remembers what was replayed (default: derived
    /// from the topic, filter and destination, so the same replay twice
    /// sends nothing the second time).
    #[arg(long)]
    pub group: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::Watch(args) => watch::watch(args).await,
        DlqCommand::Inspect(args) => inspect(args).await,
        DlqCommand::Replay(args) => {
            let summary = replay(args).await?;
            if summary.failed.is_empty() {
                Ok(())
            } else {
                bail!("{} records could not be replayed", summary.failed.len())
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

pub(crate) fn when(ms: Option<i64>) -> String {
    ms.and_then(|ms| u64::try_from(ms).ok())
        .map(|ms| {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// The partitions of `topic`; an error naming the address when Kafka cannot
/// be reached, or the topic when it does not exist.
pub(crate) fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    kafka: &KafkaSettings,
    topic: &str,
) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(10)))
        .with_context(|| {
            format!(
                "could not reach Kafka at {}; is it running? (kafkit dev up)",
                kafka.bootstrap_servers
            )
        })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!(
            "topic {topic} does not exist at {} (kafkit topics list)",
            kafka.bootstrap_servers
        );
    }
    Ok(partitions)
}

/// A consumer assigned to every partition of `topic`, each at `start(partition)`.
fn assigned(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
    committed: bool,
) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = crate::reader::config(kafka, group).create()?;
    let partitions = partitions_of(&consumer, kafka, topic)?;
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    if committed {
        // Start where this group stopped; the beginning where it never was.
        let stored = consumer
            .committed_offsets(assignment.clone(), Timeout::After(Duration::from_secs(10)))?;
        for element in stored.elements() {
            if let Offset::Offset(offset) = element.offset() {
                let (log_start, _) = consumer.fetch_watermarks(
                    topic,
                    element.partition(),
                    Timeout::After(Duration::from_secs(10)),
                )?;
                let offset = resume_at(group, topic, element.partition(), offset, log_start)?;
                assignment.set_partition_offset(
                    topic,
                    element.partition(),
                    Offset::Offset(offset),
                )?;
            }
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Where a replay group goes on in a partition: where it stopped, unless
/// the log no longer starts there (retention deleted dead letters it never
/// sent): then an error that says so and what to do, never a silent
/// jump to the end.
fn resume_at(
    group: &str,
    topic: &str,
    partition: i32,
    committed: i64,
    log_start: i64,
) -> anyhow::Result<i64> {
    if committed < log_start {
        bail!(
            "replay group {group} stopped at offset {committed} of {topic}[{partition}], but the \
             topic now starts at {log_start}: the dead letters at {committed}..{} were deleted \
             (retention) before they were replayed and cannot be sent. To replay what is left, \
             run again with --group {group}-from-{log_start} (a new group starts at the beginning)",
            log_start - 1
        );
    }
    Ok(committed)
}

/// Reads until nothing arrives for `idle` (watermarks are not trusted: Tansu
/// 0.6.0 undercounts them), handing each record to `each`.
async fn read_until_idle(
    consumer: &StreamConsumer,
    idle: Duration,
    mut each: impl FnMut(DeadLetter),
) -> anyhow::Result<()> {
    loop {
        match tokio::time::timeout(idle, consumer.recv()).await {
            Err(_) => return Ok(()),
            Ok(received) => each(DeadLetter::from_message(&received?.detach())),
        }
    }
}

const IDLE: Duration = Duration::from_millis(1500);

async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let group = format!("kafkit-inspect-{}", uuid::Uuid::new_v4().simple());
    let consumer = assigned(&kafka, &group, &args.topic, false)?;
    let now = now_ms();
    let mut letters = Vec::new();
    read_until_idle(&consumer, IDLE, |letter| {
        if args.filter.matches(&letter, now) {
            letters.push(letter);
        }
    })
    .await?;
    let mut summary = ClassSummary::default();
    for letter in &letters {
        summary.add(letter);
    }
    let groups = &summary.classes;
    match args.output {
        Output::Json => {
            for letter in &letters {
                println!("{}", serde_json::to_string(letter)?);
            }
            let summary: Vec<serde_json::Value> = groups
                .iter()
                .map(|(class, (count, first, last))| serde_json::json!({"class": class, "count": count, "first_ms": first, "last_ms": last}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"total": letters.len(), "groups": summary})
            );
        }
        Output::Table => {
            println!("{} dead letters on {}", letters.len(), args.topic);
            println!(
                "{:<22} {:<28} {:<7} {:<24} key / message",
                "died", "from", "attempt", "class"
            );
            for l in &letters {
                let from = format!(
                    "{}[{}]@{}",
                    l.original_topic.as_deref().unwrap_or("?"),
                    l.original_partition.map_or("?".into(), |p| p.to_string()),
                    l.original_offset.map_or("?".into(), |o| o.to_string())
                );
                println!(
                    "{:<22} {:<28} {:<7} {:<24} {} / {}",
                    when(l.dead_at_ms),
                    from,
                    l.attempt.map_or("-".into(), |a| a.to_string()),
                    l.error_class,
                    l.key_text.as_deref().unwrap_or("-"),
                    match &l.replayed_from {
                        Some(from) => format!(
                            "{} (died again after a replay from {from})",
                            l.error_message
                        ),
                        None => l.error_message.clone(),
                    }
                );
            }
            println!();
            println!(
                "{:<24} {:>6}  {:<22} {:<22}",
                "class", "count", "first", "last"
            );
            for (class, (count, first, last)) in groups {
                println!(
                    "{class:<24} {count:>6}  {:<22} {:<22}",
                    when(*first),
                    when(*last)
                );
            }
        }
    }
    Ok(())
}

/// A span per replayed record that continues the dead letter's trace (its
/// `traceparent` names the span that dead-lettered it), so the processing
/// after the replay lands in the same trace as the failures before it.
fn replay_span(dlq: &str, group: &str, letter: &DeadLetter, destination: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "replay",
        otel.name = %format_args!("replay {dlq}"),
        otel.kind = "consumer",
        "messaging.system" = "kafka",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "replay",
        "messaging.destination.name" = dlq,
        "messaging.destination.partition.id" = letter.dlq_partition,
        "messaging.kafka.offset" = letter.dlq_offset,
        "messaging.kafka.message.key" = letter.key_text.as_deref(),
        "messaging.consumer.group.name" = group,
        "kafkit.replay.to" = destination,
        "error.type" = letter.error_class.as_str(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let traceparent = letter.header(kafkit_telemetry::context::TRACEPARENT);
    kafkit_telemetry::context::set_parent(
        &span,
        traceparent,
        letter.header(kafkit_telemetry::context::TRACESTATE),
    );
    kafkit_telemetry::context::record_ids(&span, traceparent);
    span
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub moved: usize,
    pub skipped: usize,
    pub failed: Vec<(String, String)>,
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ReplaySummary> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let group = args.group.clone().unwrap_or_else(|| {
        let key = format!("{}|{}|{:?}", args.topic, args.filter.fingerprint(), args.to);
        format!(
            "kafkit-replay-{}",
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).simple()
        )
    });
    let consumer = assigned(&kafka, &group, &args.topic, true)?;
    let publisher = Publisher::new(&kafka, &ProducerSettings::default())?;
    let now = now_ms();
    let mut letters = Vec::new();
    read_until_idle(&consumer, IDLE, |letter| letters.push(letter)).await?;

    let mut summary = ReplaySummary::default();
    let mut blocked: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    let pace = args
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let verb = if args.dry_run { "would move" } else { "moved" };
    let mut progress =
        crate::term::Progress::new(format!("replaying {}", args.topic), letters.len());
    // Ctrl-C (or SIGTERM) stops between records, after what was sent is
    // remembered: the same command again goes on from there.
    let stop = Arc::new(AtomicBool::new(false));
    let signalled = Arc::clone(&stop);
    let watcher = tokio::spawn(async move {
        kafkit_messaging::shutdown_signal().await;
        signalled.store(true, Ordering::SeqCst);
    });
    let mut stopped = false;
    for letter in &letters {
        if !args.dry_run && stop.load(Ordering::SeqCst) {
            stopped = true;
            break;
        }
        if !args.dry_run {
            progress.advance();
        }
        let matches =
            args.filter.matches(letter, now) && args.limit.is_none_or(|l| summary.moved < l);
        if !matches {
            summary.skipped += 1;
            continue;
        }
        let id = format!(
            "{}/{}/{}",
            letter.dlq_topic, letter.dlq_partition, letter.dlq_offset
        );
        let Some(destination) = args.to.clone().or_else(|| letter.original_topic.clone()) else {
            summary
                .failed
                .push((id, "no original topic in its headers; pass --to".into()));
            blocked.insert(letter.dlq_partition);
            continue;
        };
        if args.dry_run {
            println!(
                "{verb} {id} -> {destination} (class {}, key {})",
                letter.error_class,
                letter.key_text.as_deref().unwrap_or("-")
            );
            summary.moved += 1;
            continue;
        }
        let mut headers = letter.replay_headers();
        headers.push(("kafkit.replay.from".into(), id.clone().into_bytes()));
        headers.push(("kafkit.replay.at".into(), now_ms().to_string().into_bytes()));
        let record = OutgoingRecord {
            topic: destination.clone(),
            partition: None,
            key: letter.key.clone(),
            payload: letter.value.clone(),
            headers,
        };
        let span = replay_span(&args.topic, &group, letter, &destination);
        match publisher.publish(&record).instrument(span).await {
            Ok(_) => {
                summary.moved += 1;
                // Remember what was sent as soon as the broker has it, so an
                // interrupted replay run again does not send it twice;
                // unless something before it in the partition failed: then
                // the next run must see that one again.
                if !blocked.contains(&letter.dlq_partition) {
                    let mut done = TopicPartitionList::new();
                    done.add_partition_offset(
                        &args.topic,
                        letter.dlq_partition,
                        Offset::Offset(letter.dlq_offset + 1),
                    )?;
                    consumer
                        .commit(&done, CommitMode::Sync)
                        .context("could not record what was replayed")?;
                }
            }
            Err(e) => {
                summary.failed.push((id, e.to_string()));
                blocked.insert(letter.dlq_partition);
            }
        }
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
    }
    progress.finish();
    watcher.abort();
    if stopped {
        println!(
            "{}: stopped after {} moved; what was sent is remembered: run the same command again to go on",
            args.topic, summary.moved
        );
        return Ok(summary);
    }
    println!(
        "{}: {} {verb}, {} skipped (filtered out or over the limit), {} failed",
        args.topic,
        summary.moved,
        summary.skipped,
        summary.failed.len()
    );
    if !args.dry_run {
        println!(
            "  replay group {group} remembers what it sent: the same replay again sends only what is new"
        );
    }
    for (id, reason) in &summary.failed {
        println!("  failed {id}: {reason}");
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::resume_at;

    #[test]
    fn a_replay_goes_on_where_it_stopped_unless_the_log_no_longer_starts_there() {
        assert_eq!(resume_at("g", "t.dlq", 0, 7, 0).unwrap(), 7);
        assert_eq!(resume_at("g", "t.dlq", 0, 7, 7).unwrap(), 7);
        let error = resume_at("g", "t.dlq", 2, 7, 12).unwrap_err().to_string();
        assert!(error.contains("stopped at offset 7 of t.dlq[2]"), "{error}");
        assert!(error.contains("7..11 were deleted"), "{error}");
        assert!(error.contains("--group g-from-12"), "{error}");
    }
}
