//! `kafkit dlq watch TOPIC`: a live tail of a dead-letter topic.
//!
//! Each dead letter is one block: when it died, where it came from, how often
//! it was tried, why, its key, and its value decoded to JSON through the
//! registry (or hex with the reason when it does not decode) and its trace
//! id. On a terminal the summary by error class stays pinned above the
//! stream; piped, it follows each block as a line. `--output json` prints
//! one JSON object per dead letter instead, for jq.

use super::record::{ClassSummary, DeadLetter, Filter};
use super::{Output, now_ms, when};
use crate::reader::throwaway_group;
use crate::term::{BOLD, DIM, RED, Style};
use anyhow::Context;
use kafkit_events::EventCodec;
use kafkit_messaging::{KafkaArgs, KafkaSettings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The dead-letter topic, e.g. orders.dlq
    pub topic: String,
    /// Show what is already parked too, not only what arrives from now on.
    #[arg(long)]
    pub from_beginning: bool,
    #[command(flatten)]
    pub filter: Filter,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Registry to decode values with.
    #[command(flatten)]
    pub registry: kafkit_messaging::RegistryConnection,
    /// Exit after this many seconds without a dead letter (default: until Ctrl-C).
    #[arg(long)]
    pub idle_exit_secs: Option<u64>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value as JSON through the registry, or hex and the reason it did not decode.
pub(crate) async fn decoded(codec: &EventCodec, value: Option<&[u8]>) -> serde_json::Value {
    match codec.decode_value(value).await {
        Ok(decoded) => match serde_json::Value::try_from(decoded.value) {
            Ok(json) => {
                serde_json::json!({"schema_id": decoded.schema_id, "type": decoded.full_name, "json": json})
            }
            Err(e) => serde_json::json!({"undecodable": format!("not representable as JSON: {e}")}),
        },
        Err(e) => serde_json::json!({
            "undecodable": e.to_string(),
            "class": e.class(),
            "hex": value.map(hex),
        }),
    }
}

/// On a terminal, the summary stays on the top lines while dead letters
/// scroll below it (a VT100 scroll region, so no terminal size is needed).
struct PinnedSummary {
    style: Style,
}

const PINNED_LINES: usize = 9;
const PINNED_CLASSES: usize = 5;

impl PinnedSummary {
    fn open(style: Style) -> Self {
        let mut out = std::io::stdout().lock();
        // Clear, scroll only below the summary, put the cursor there.
        let _ = write!(
            out,
            "\x1b[2J\x1b[{top};r\x1b[{top};1H",
            top = PINNED_LINES + 1
        );
        let _ = out.flush();
        Self { style }
    }

    fn draw(&self, topic: &str, summary: &ClassSummary) {
        let mut lines = vec![
            self.style.paint(
                BOLD,
                &format!(
                    "kafkit dlq watch {topic}: {} dead letters (Ctrl-C to stop)",
                    summary.total
                ),
            ),
            format!(
                "  {:<32} {:>6}  {:<22} {:<22}",
                "error class", "count", "first seen", "last seen"
            ),
        ];
        let ranked = summary.ranked();
        for (class, (count, first, last)) in ranked.iter().take(PINNED_CLASSES) {
            lines.push(format!(
                "  {} {count:>6}  {:<22} {:<22}",
                self.style.paint(RED, &format!("{class:<32}")),
                when(*first),
                when(*last)
            ));
        }
        if ranked.len() > PINNED_CLASSES {
            lines.push(format!(
                "  ... and {} more classes (kafkit dlq inspect {topic})",
                ranked.len() - PINNED_CLASSES
            ));
        }
        lines.resize(PINNED_LINES - 1, String::new());
        lines.push(self.style.paint(DIM, &"─".repeat(80)));
        let mut out = std::io::stdout().lock();
        // Save the cursor, draw at the top, come back.
        let _ = write!(out, "\x1b7\x1b[H");
        for (i, line) in lines.iter().enumerate() {
            let _ = write!(out, "\x1b[{};1H\x1b[2K{line}", i + 1);
        }
        let _ = write!(out, "\x1b8");
        let _ = out.flush();
    }
}

impl Drop for PinnedSummary {
    /// Give the whole screen back (keeping the cursor where it is).
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\x1b7\x1b[r\x1b8");
        let _ = out.flush();
    }
}

/// One dead letter as a readable block.
fn block(style: Style, letter: &DeadLetter, value: &serde_json::Value) -> String {
    let mut lines = vec![
        style.paint(
            BOLD,
            &format!(
                "--- {}/{}/{} died {}",
                letter.dlq_topic,
                letter.dlq_partition,
                letter.dlq_offset,
                when(letter.dead_at_ms)
            ),
        ),
        format!(
            "    from     {}[{}]@{} ({:?} headers)",
            letter.original_topic.as_deref().unwrap_or("?"),
            letter
                .original_partition
                .map_or("?".into(), |p| p.to_string()),
            letter.original_offset.map_or("?".into(), |o| o.to_string()),
            letter.convention
        ),
        format!(
            "    attempt  {}",
            letter.attempt.map_or("-".into(), |a| a.to_string())
        ),
        format!(
            "    error    {}: {}",
            style.paint(RED, &letter.error_class),
            letter.error_message
        ),
        format!("    key      {}", letter.key_text.as_deref().unwrap_or("-")),
    ];
    if let Some(trace_id) = &letter.trace_id {
        lines.push(format!("    trace    {trace_id}"));
    }
    if let Some(from) = &letter.replayed_from {
        lines.push(format!("    replayed from {from} before dying again"));
    }
    lines.push(format!("    value    {value}"));
    lines.join("\n")
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let codec = EventCodec::new(args.registry.codec_settings())?;
    let consumer: StreamConsumer = crate::reader::config(&kafka, &throwaway_group("watch"))
        .set(
            "auto.offset.reset",
            if args.from_beginning || args.filter.since.is_some() || args.filter.after.is_some() {
                "earliest"
            } else {
                "latest"
            },
        )
        .create()?;
    super::partitions_of(&consumer, &kafka, &args.topic)?;
    consumer
        .subscribe(&[args.topic.as_str()])
        .with_context(|| {
            format!(
                "could not subscribe to {} at {}",
                args.topic, kafka.bootstrap_servers
            )
        })?;
    let style = Style::stdout();
    let pinned = (args.output == Output::Table && std::io::stdout().is_terminal())
        .then(|| PinnedSummary::open(style));
    let mut summary = ClassSummary::default();
    match &pinned {
        Some(pinned) => pinned.draw(&args.topic, &summary),
        None if args.output == Output::Table => {
            println!("watching {} (Ctrl-C to stop)", args.topic);
        }
        None => {}
    }
    let stop = kafkit_messaging::shutdown_signal();
    tokio::pin!(stop);
    let idle = args.idle_exit_secs.map(Duration::from_secs);
    loop {
        let received = tokio::select! {
            () = &mut stop => return Ok(()),
            received = next(&consumer, idle) => match received {
                None => return Ok(()),
                Some(received) => received,
            },
        };
        let letter = DeadLetter::from_message(&received?.detach());
        if !args.filter.matches(&letter, now_ms()) {
            continue;
        }
        summary.add(&letter);
        let value = decoded(&codec, letter.value.as_deref()).await;
        match (args.output, &pinned) {
            (Output::Json, _) => {
                let mut json = serde_json::to_value(&letter)?;
                json["value"] = value;
                println!("{json}");
            }
            (Output::Table, Some(pinned)) => {
                println!("{}", block(style, &letter, &value));
                pinned.draw(&args.topic, &summary);
            }
            (Output::Table, None) => {
                println!("{}", block(style, &letter, &value));
                let line: Vec<String> = summary
                    .ranked()
                    .iter()
                    .map(|(class, (count, first, last))| {
                        format!(
                            "{class} {count} (first {}, last {})",
                            when(*first),
                            when(*last)
                        )
                    })
                    .collect();
                println!("    summary  {}", line.join(", "));
            }
        }
    }
}

/// The next record; None once `idle` passed without one.
async fn next(
    consumer: &StreamConsumer,
    idle: Option<Duration>,
) -> Option<rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, consumer.recv()).await.ok(),
        None => Some(consumer.recv().await),
    }
}
