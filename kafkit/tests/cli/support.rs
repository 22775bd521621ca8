//! Shared by kafkit's integration tests.
#![allow(clippy::unwrap_used, dead_code)]

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::Duration;

/// Every record of `topic`, read from the beginning until 1.5 s pass
/// without one (Tansu's watermarks undercount, so they cannot say when
/// the end is reached).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(5)))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut out, mut quiet) = (Vec::new(), 0);
    while quiet < 6 {
        match consumer.poll(Duration::from_millis(250)) {
            Some(m) => {
                out.push(m.unwrap().detach());
                quiet = 0;
            }
            None => quiet += 1,
        }
    }
    out
}

/// stdout and stderr of a finished command, as one text.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the real `kafkit` binary: (exit code 0, stdout + stderr).
pub fn kafkit(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .args(args)
        .output()
        .unwrap();
    (output.status.success(), text(&output))
}

/// Runs the real `kafkit` binary with its own dev state directory (and no
/// colour), as a user with that `KAFKIT_STATE_DIR` would.
pub fn kafkit_with_state(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .args(args)
        .env("KAFKIT_STATE_DIR", state)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}
