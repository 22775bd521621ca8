//! `kafkit dlq`: see what died and why, grouped, and send it back safely.

pub mod edit;
pub mod record;
pub mod resolved;
pub mod transfer;
pub mod watch;

use anyhow::{Context, bail};
use kafkit_messaging::{KafkaArgs, KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use record::{ClassSummary, DeadLetter, Filter};
use std::collections::HashMap;
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
    /// Edit one dead letter's payload in $EDITOR, then re-encode it against the latest schema and replay it.
    ///
    /// Example: kafkit dlq edit orders.dlq 0 42
    Edit(transfer::EditArgs),
    /// Dead letters as JSON lines, every byte kept (base64), for a file or another cluster.
    ///
    /// Example: kafkit dlq export orders.dlq --class unsupported-currency --out dead.jsonl
    Export(transfer::ExportArgs),
    /// Write exported dead letters to a topic, byte for byte.
    ///
    /// Example: kafkit dlq import orders.dlq --in dead.jsonl --bootstrap-servers other:9092
    Import(transfer::ImportArgs),
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
    /// Only open dead letters, or only those dealt with (resolved,
    /// discarded or replayed in `kafkit console`, kept in `<dlq>.resolved`).
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// `--status` of `kafkit dlq inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    Open,
    Resolved,
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
        DlqCommand::Edit(args) => transfer::edit(args).await,
        DlqCommand::Export(args) => transfer::export(args).await,
        DlqCommand::Import(args) => transfer::import(args).await,
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

/// The dead letters of `topic` that `filter` and `status` keep, read from
/// the beginning under a group of their own, and the state of those dealt
/// with (read when `status` asks, or when `with_states`; else empty).
async fn select(
    kafka: &KafkaSettings,
    topic: &str,
    filter: &Filter,
    status: Option<StatusFilter>,
    with_states: bool,
) -> anyhow::Result<(Vec<DeadLetter>, HashMap<String, resolved::Resolution>)> {
    let group = crate::reader::throwaway_group("dlq");
    let consumer = assigned(kafka, &group, topic, false)?;
    let now = now_ms();
    let mut letters = Vec::new();
    read_until_idle(&consumer, IDLE, |letter| {
        if filter.matches(&letter, now) {
            letters.push(letter);
        }
    })
    .await?;
    let states = if status.is_some() || with_states {
        resolved::read_all(kafka, topic).await?
    } else {
        HashMap::new()
    };
    if let Some(wanted) = status {
        letters
            .retain(|l| (wanted == StatusFilter::Resolved) == states.contains_key(&coordinates(l)));
    }
    Ok((letters, states))
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
    // The state topic is read only when something shows it: --status, or
    // the `status` field of the JSON lines.
    let with_states = args.output == Output::Json;
    let (letters, states) =
        select(&kafka, &args.topic, &args.filter, args.status, with_states).await?;
    let state_of = |letter: &DeadLetter| states.get(&coordinates(letter));
    let mut summary = ClassSummary::default();
    for letter in &letters {
        summary.add(letter);
    }
    let groups = &summary.classes;
    match args.output {
        Output::Json => {
            for letter in &letters {
                let mut json = serde_json::to_value(letter)?;
                json["status"] = state_of(letter)
                    .map_or("open", |s| s.status.as_str())
                    .into();
                json["resolution"] = serde_json::to_value(state_of(letter))?;
                println!("{json}");
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
            let rows: Vec<Vec<String>> = letters
                .iter()
                .map(|l| {
                    let from = format!(
                        "{}[{}]@{}",
                        l.original_topic.as_deref().unwrap_or("?"),
                        l.original_partition.map_or("?".into(), |p| p.to_string()),
                        l.original_offset.map_or("?".into(), |o| o.to_string())
                    );
                    let message = match &l.replayed_from {
                        Some(from) => format!(
                            "{} (died again after a replay from {from})",
                            l.error_message
                        ),
                        None => l.error_message.clone(),
                    };
                    vec![
                        when(l.dead_at_ms),
                        from,
                        l.attempt.map_or("-".into(), |a| a.to_string()),
                        l.error_class.clone(),
                        format!("{} / {message}", l.key_text.as_deref().unwrap_or("-")),
                    ]
                })
                .collect();
            let header = ["died", "from", "attempt", "class", "key / message"];
            println!("{}", crate::term::table(&header, &rows, &[]));
            println!();
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|(class, (count, first, last))| {
                    vec![
                        class.to_string(),
                        count.to_string(),
                        when(*first),
                        when(*last),
                    ]
                })
                .collect();
            let header = ["class", "count", "first", "last"];
            println!("{}", crate::term::table(&header, &rows, &[1]));
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

/// What the plan does with one dead letter, in the order they were read.
#[derive(Debug)]
enum Step<'a> {
    /// Send it to `destination`.
    Move {
        letter: &'a DeadLetter,
        id: String,
        destination: String,
    },
    /// Filtered out, or over `--limit`.
    Skip,
    /// It cannot be sent (and nothing after it in its partition is remembered).
    Fail {
        letter: &'a DeadLetter,
        id: String,
        reason: String,
    },
}

/// `dlqtopic/partition/offset`, as `kafkit.replay.from` carries it.
pub(crate) fn coordinates(letter: &DeadLetter) -> String {
    format!(
        "{}/{}/{}",
        letter.dlq_topic, letter.dlq_partition, letter.dlq_offset
    )
}

/// Which dead letters move where: the filter, the limit, the destination
/// (`--to`, else the topic each came from). Pure: nothing is sent.
fn plan<'a>(letters: &'a [DeadLetter], args: &ReplayArgs, now: i64) -> Vec<Step<'a>> {
    let mut planned = 0;
    letters
        .iter()
        .map(|letter| {
            if !args.filter.matches(letter, now) || args.limit.is_some_and(|l| planned >= l) {
                return Step::Skip;
            }
            let id = coordinates(letter);
            match args.to.clone().or_else(|| letter.original_topic.clone()) {
                Some(destination) => {
                    planned += 1;
                    Step::Move {
                        letter,
                        id,
                        destination,
                    }
                }
                None => Step::Fail {
                    letter,
                    id,
                    reason: "no original topic in its headers; pass --to".into(),
                },
            }
        })
        .collect()
}

/// The copy a replay sends: key and value byte for byte, the failure
/// headers removed, the audit headers added.
pub(crate) fn replay_record(letter: &DeadLetter, id: &str, destination: &str) -> OutgoingRecord {
    let mut headers = letter.replay_headers();
    headers.push(("kafkit.replay.from".into(), id.as_bytes().to_vec()));
    headers.push(("kafkit.replay.at".into(), now_ms().to_string().into_bytes()));
    OutgoingRecord {
        topic: destination.to_owned(),
        partition: None,
        key: letter.key.clone(),
        payload: letter.value.clone(),
        headers,
    }
}

/// Where a replay stands once it ends.
#[derive(Debug, Default)]
struct Sent {
    summary: ReplaySummary,
    /// Stopped by Ctrl-C or SIGTERM before the end of the plan.
    stopped: bool,
}

/// Sends each planned move in order, and remembers each in `group` (a
/// synchronous commit) as soon as the broker has it, so an interrupted
/// replay run again sends nothing twice; unless something before it in its
/// partition failed: then the next run must see that one again. Ctrl-C or
/// SIGTERM stops between records.
async fn send(
    steps: &[Step<'_>],
    args: &ReplayArgs,
    group: &str,
    publisher: &Publisher,
    consumer: &StreamConsumer,
) -> anyhow::Result<Sent> {
    let pace = args
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let stop = Arc::new(AtomicBool::new(false));
    let signalled = Arc::clone(&stop);
    let watcher = tokio::spawn(async move {
        kafkit_messaging::shutdown_signal().await;
        signalled.store(true, Ordering::SeqCst);
    });
    let mut progress = crate::term::Progress::new(format!("replaying {}", args.topic), steps.len());
    let mut sent = Sent::default();
    let mut blocked = std::collections::BTreeSet::new();
    for step in steps {
        if stop.load(Ordering::SeqCst) {
            sent.stopped = true;
            break;
        }
        progress.advance();
        let (letter, id, destination) = match step {
            Step::Skip => {
                sent.summary.skipped += 1;
                continue;
            }
            Step::Fail { letter, id, reason } => {
                sent.summary.failed.push((id.clone(), reason.clone()));
                blocked.insert(letter.dlq_partition);
                continue;
            }
            Step::Move {
                letter,
                id,
                destination,
            } => (*letter, id, destination),
        };
        let span = replay_span(&args.topic, group, letter, destination);
        let record = replay_record(letter, id, destination);
        match publisher.publish(&record).instrument(span).await {
            Ok(_) => {
                sent.summary.moved += 1;
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
                sent.summary.failed.push((id.clone(), e.to_string()));
                blocked.insert(letter.dlq_partition);
            }
        }
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
    }
    progress.finish();
    watcher.abort();
    Ok(sent)
}

/// What `--dry-run` shows: each move the plan would make, and the counts.
fn dry_run_summary(steps: &[Step<'_>]) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    for step in steps {
        match step {
            Step::Move {
                letter,
                id,
                destination,
            } => {
                println!(
                    "would move {id} -> {destination} (class {}, key {})",
                    letter.error_class,
                    letter.key_text.as_deref().unwrap_or("-")
                );
                summary.moved += 1;
            }
            Step::Skip => summary.skipped += 1,
            Step::Fail { id, reason, .. } => summary.failed.push((id.clone(), reason.clone())),
        }
    }
    summary
}

/// The closing lines: counts, the group that remembers, each failure.
fn report(topic: &str, summary: &ReplaySummary, dry_run: bool, group: &str, stopped: bool) {
    if stopped {
        println!(
            "{topic}: stopped after {} moved; what was sent is remembered: run the same command again to go on",
            summary.moved
        );
        return;
    }
    let verb = if dry_run { "would move" } else { "moved" };
    println!(
        "{topic}: {} {verb}, {} skipped (filtered out or over the limit), {} failed",
        summary.moved,
        summary.skipped,
        summary.failed.len()
    );
    if !dry_run {
        println!(
            "  replay group {group} remembers what it sent: the same replay again sends only what is new"
        );
    }
    for (id, reason) in &summary.failed {
        println!("  failed {id}: {reason}");
    }
}

/// `kafkit dlq replay`: read what this replay's group has not sent yet,
/// plan, send (or, with `--dry-run`, show the plan), report.
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
    let now = now_ms();
    let mut letters = Vec::new();
    read_until_idle(&consumer, IDLE, |letter| letters.push(letter)).await?;
    let steps = plan(&letters, &args, now);
    if args.dry_run {
        let summary = dry_run_summary(&steps);
        report(&args.topic, &summary, true, &group, false);
        return Ok(summary);
    }
    let publisher = Publisher::new(&kafka, &ProducerSettings::default())?;
    let sent = send(&steps, &args, &group, &publisher, &consumer).await?;
    report(&args.topic, &sent.summary, false, &group, sent.stopped);
    Ok(sent.summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{ReplayArgs, Step, plan, resume_at};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        replay: ReplayArgs,
    }

    #[test]
    fn a_plan_filters_limits_and_fails_a_letter_without_a_destination() {
        let letter = |offset: i64, class: &str, from: Option<&str>| {
            let mut letter = super::record::tests::died_at(0);
            letter.dlq_offset = offset;
            letter.error_class = class.into();
            letter.original_topic = from.map(str::to_owned);
            letter
        };
        let letters = [
            letter(0, "unsupported-currency", Some("orders")),
            letter(1, "injected-permanent", Some("orders")),
            letter(2, "unsupported-currency", None),
            letter(3, "unsupported-currency", Some("orders")),
        ];
        let shape = |steps: &[Step<'_>]| -> Vec<String> {
            steps
                .iter()
                .map(|s| match s {
                    Step::Move {
                        id, destination, ..
                    } => format!("move {id} -> {destination}"),
                    Step::Skip => "skip".into(),
                    Step::Fail { id, .. } => format!("fail {id}"),
                })
                .collect()
        };
        let args = |extra: &[&str]| {
            let mut argv = vec!["x", "orders.dlq", "--class", "unsupported-currency"];
            argv.extend_from_slice(extra);
            Cli::parse_from(argv).replay
        };
        assert_eq!(
            shape(&plan(&letters, &args(&[]), 1)),
            [
                "move orders.dlq/0/0 -> orders",
                "skip",
                "fail orders.dlq/0/2",
                "move orders.dlq/0/3 -> orders"
            ]
        );
        assert_eq!(
            shape(&plan(&letters, &args(&["--limit", "1"]), 1)),
            ["move orders.dlq/0/0 -> orders", "skip", "skip", "skip"]
        );
        assert_eq!(
            shape(&plan(&letters, &args(&["--to", "orders-fixed"]), 1)),
            [
                "move orders.dlq/0/0 -> orders-fixed",
                "skip",
                "move orders.dlq/0/2 -> orders-fixed",
                "move orders.dlq/0/3 -> orders-fixed"
            ]
        );
    }

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
