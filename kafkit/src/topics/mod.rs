//! `kafkit topics`: create a main topic with its retry tiers and DLQ; list
//! topics; describe one (partitions, offsets, consumer groups and their lag).

pub mod describe;

use kafkit_messaging::{KafkaArgs, KafkaSettings, RetryPolicy, TopicSpec, ensure_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::util::Timeout;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// Create TOPIC, TOPIC.retry.1..N and TOPIC.dlq (existing ones are left alone).
    ///
    /// Example: kafkit topics create orders --partitions 6 --tiers 3
    Create {
        topic: String,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Retry tiers to create.
        #[arg(long, default_value_t = 3)]
        tiers: usize,
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// Create no dead-letter topic (for output topics that are only written).
        #[arg(long)]
        no_dlq: bool,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Topics and their partition counts.
    ///
    /// Example: kafkit topics list --bootstrap-servers 127.0.0.1:9092
    List {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Partitions with their offsets, and every consumer group with offsets
    /// committed on the topic, with its lag per partition.
    ///
    /// Example: kafkit topics describe orders --output json
    Describe(describe::DescribeArgs),
}

pub async fn run(command: TopicsCommand) -> anyhow::Result<()> {
    match command {
        TopicsCommand::Describe(args) => describe::run(args).await,
        TopicsCommand::Create {
            topic,
            partitions,
            tiers,
            replication_factor,
            no_dlq,
            kafka,
        } => {
            let kafka = KafkaSettings::from(kafka);
            let policy = RetryPolicy {
                delays: vec![Duration::from_secs(1); tiers],
                ..RetryPolicy::default()
            };
            let mut names = vec![topic.clone()];
            names.extend(policy.retry_topics(&topic));
            if !no_dlq {
                names.push(policy.dlq_topic(&topic));
            }
            let specs: Vec<TopicSpec> = names
                .iter()
                .map(|n| TopicSpec {
                    replication_factor,
                    ..TopicSpec::new(n, partitions)
                })
                .collect();
            ensure_topics(&kafka, &specs).await.map_err(|e| {
                anyhow::anyhow!(
                    "{e} (Kafka at {}; is it running? kafkit dev up)",
                    kafka.bootstrap_servers
                )
            })?;
            for name in names {
                println!("{name}");
            }
            Ok(())
        }
        TopicsCommand::List { kafka } => {
            let kafka = KafkaSettings::from(kafka);
            let bootstrap = kafka.bootstrap_servers.clone();
            let topics =
                tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, usize)>> {
                    let consumer: BaseConsumer = kafka.client_config().create()?;
                    let metadata = consumer
                        .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "could not reach Kafka at {bootstrap}: {e} (kafkit dev up)"
                            )
                        })?;
                    let mut topics: Vec<(String, usize)> = metadata
                        .topics()
                        .iter()
                        .map(|t| (t.name().to_owned(), t.partitions().len()))
                        .collect();
                    topics.sort();
                    Ok(topics)
                })
                .await??;
            for (name, partitions) in topics {
                println!("{name}  {partitions} partitions");
            }
            Ok(())
        }
    }
}
