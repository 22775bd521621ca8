//! `kafkit dlq watch TOPIC`: a live tail of a dead-letter topic.
//!
//! Each dead letter is one block: when it died, where it came from, how often
//! it was tried, why, its key, and its value decoded to JSON through the
//! registry (or hex with the reason when it does not decode). After each
//! block, the running summary by error class. `--output json` prints one JSON
//! object per dead letter instead, for jq.

use super::record::{DeadLetter, Filter};
use super::{Output, now_ms, when};
use anyhow::Context;
use messaging::{KafkaArgs, KafkaSettings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use shared_events::{CodecSettings, EventCodec};
use std::collections::BTreeMap;
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
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub registry_url: String,
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
async fn decoded(codec: &EventCodec, value: Option<&[u8]>) -> serde_json::Value {
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

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let kafka = KafkaSettings::from(args.kafka.clone());
    let codec = EventCodec::new(CodecSettings::new(args.registry_url.clone()))?;
    let consumer: StreamConsumer = kafka
        .client_config()
        .set(
            "group.id",
            format!("kafkit-watch-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set(
            "auto.offset.reset",
            if args.from_beginning || args.filter.since.is_some() {
                "earliest"
            } else {
                "latest"
            },
        )
        .create()?;
    consumer
        .subscribe(&[args.topic.as_str()])
        .with_context(|| {
            format!(
                "could not subscribe to {} at {}",
                args.topic, kafka.bootstrap_servers
            )
        })?;
    if args.output == Output::Table {
        println!("watching {} (Ctrl-C to stop)", args.topic);
    }
    let mut summary: BTreeMap<String, (usize, Option<i64>, Option<i64>)> = BTreeMap::new();
    loop {
        let received = match args.idle_exit_secs {
            Some(secs) => {
                match tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await {
                    Ok(received) => received,
                    Err(_) => return Ok(()),
                }
            }
            None => consumer.recv().await,
        };
        let letter = DeadLetter::from_message(&received?.detach());
        if !args.filter.matches(&letter, now_ms()) {
            continue;
        }
        let group = summary
            .entry(letter.error_class.clone())
            .or_insert((0, None, None));
        group.0 += 1;
        group.1 = group.1.min(letter.dead_at_ms).or(letter.dead_at_ms);
        group.2 = group.2.max(letter.dead_at_ms);
        let value = decoded(&codec, letter.value.as_deref()).await;
        match args.output {
            Output::Json => {
                let mut json = serde_json::to_value(&letter)?;
                json["value"] = value;
                println!("{json}");
            }
            Output::Table => {
                println!(
                    "--- {}/{}/{} died {}",
                    letter.dlq_topic,
                    letter.dlq_partition,
                    letter.dlq_offset,
                    when(letter.dead_at_ms)
                );
                println!(
                    "    from     {}[{}]@{} ({:?} headers)",
                    letter.original_topic.as_deref().unwrap_or("?"),
                    letter
                        .original_partition
                        .map_or("?".into(), |p| p.to_string()),
                    letter.original_offset.map_or("?".into(), |o| o.to_string()),
                    letter.convention
                );
                println!(
                    "    attempt  {}",
                    letter.attempt.map_or("-".into(), |a| a.to_string())
                );
                println!(
                    "    error    {}: {}",
                    letter.error_class, letter.error_message
                );
                println!("    key      {}", letter.key_text.as_deref().unwrap_or("-"));
                println!("    value    {value}");
                let line: Vec<String> = summary
                    .iter()
                    .map(|(class, (count, _, last))| {
                        format!("{class} {count} (last {})", when(*last))
                    })
                    .collect();
                println!("    summary  {}", line.join(", "));
            }
        }
    }
}
