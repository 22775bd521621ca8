//! `kafkit tail TOPIC...`: print records as they arrive, with kafkit's
//! retry and dead-letter headers, to watch a record move through the tiers.
//! (The full DLQ viewer is `kafkit dlq watch`, a later issue.)

use crate::reader::throwaway_group;
use kafkit_messaging::KafkaArgs;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Topics to follow, e.g. orders orders.retry.1 orders.retry.2 orders.dlq
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Start from the newest records instead of the beginning.
    #[arg(long)]
    pub only_new: bool,
    /// Exit after this many seconds without a record (default: run until Ctrl-C).
    #[arg(long)]
    pub idle_exit_secs: Option<u64>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let kafka = kafkit_messaging::KafkaSettings::from(args.kafka.clone());
    let consumer: StreamConsumer = crate::reader::config(&kafka, &throwaway_group("tail"))
        .set(
            "auto.offset.reset",
            if args.only_new { "latest" } else { "earliest" },
        )
        .create()?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    // Topics may not exist yet (tail is often started first); the broker must.
    consumer
        .fetch_metadata(None, rdkafka::util::Timeout::After(Duration::from_secs(10)))
        .map_err(|e| {
            anyhow::anyhow!(
                "could not reach Kafka at {}: {e}; is it running? (kafkit dev up)",
                kafka.bootstrap_servers
            )
        })?;
    consumer.subscribe(&topics)?;
    let idle = args.idle_exit_secs.map(Duration::from_secs);
    loop {
        let received = match idle {
            Some(idle) => match tokio::time::timeout(idle, consumer.recv()).await {
                Ok(received) => received,
                Err(_) => return Ok(()),
            },
            None => consumer.recv().await,
        };
        let message = received?;
        // A header name that is not UTF-8 ends the reading of its headers,
        // not the tail.
        let headers = kafkit_messaging::headers::read_all(&message).unwrap_or_else(|read| read);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let mut line = format!(
            "{}[{}]@{} key={}",
            message.topic(),
            message.partition(),
            message.offset(),
            message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| "-".into())
        );
        for (label, name) in [
            ("attempt", kafkit_messaging::headers::ATTEMPT),
            ("class", kafkit_messaging::headers::ERROR_CLASS),
            ("not-before", kafkit_messaging::headers::RETRY_NOT_BEFORE),
            ("from", kafkit_messaging::headers::ORIGINAL_TOPIC),
            ("message", kafkit_messaging::headers::ERROR_MESSAGE),
        ] {
            if let Some(value) = header(name) {
                line.push_str(&format!(" {label}={value}"));
            }
        }
        println!("{line}");
    }
}
