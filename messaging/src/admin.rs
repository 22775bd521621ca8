//! Topic administration: create what a service needs, idempotently.

use crate::config::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// A topic to create if it is missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// How many partitions it gets.
    pub partitions: i32,
    /// Copies of each partition; 1 from [`TopicSpec::new`] (one broker).
    pub replication_factor: i32,
    /// Topic configs such as `cleanup.policy`.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// `partitions` partitions, replication factor 1, no topic configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
        }
    }
}

/// Why [`ensure_topics`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin client could not be made, or its request got no answer.
    #[error("could not reach the broker: {0}")]
    Client(#[from] KafkaError),
    /// The broker refused to create a topic that does not exist.
    #[error("could not create topic {topic}: {code}")]
    Create {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Creates each topic unless it exists. Existing topics are left as they are.
pub async fn ensure_topics(kafka: &KafkaSettings, topics: &[TopicSpec]) -> Result<(), AdminError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut topic = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            );
            for (key, value) in &t.configs {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(new_topics.iter(), &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Create { topic, code }),
        }
    }
    Ok(())
}
