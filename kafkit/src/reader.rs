//! The command line's readers, built in one place: a consumer that never
//! commits on its own, under a group of its own, with the local broker's
//! fetch-wait work-around.
//!
//! Tansu 0.6.0 holds a fetch that finds nothing new for the whole
//! `fetch.wait.max.ms` (docs/tansu.md), so a reader waiting librdkafka's
//! default 500 ms would show each record up to half a second late there; on
//! Apache Kafka a shorter wait only costs a few more idle requests.

use kafkit_messaging::KafkaSettings;
use rdkafka::ClientConfig;

/// `fetch.wait.max.ms` of every CLI reader.
pub const FETCH_WAIT_MS: u32 = 100;

/// A group name for one run of one command (`kafkit-<purpose>-<random>`):
/// reading under it never moves another group's offsets.
pub fn throwaway_group(purpose: &str) -> String {
    format!("kafkit-{purpose}-{}", uuid::Uuid::new_v4().simple())
}

/// Client settings of a reader in `group`: `kafka`'s connection and
/// security settings, no automatic commit, the CLI's fetch wait. Add what
/// the command needs (`auto.offset.reset`, ...) and `create()` it.
pub fn config(kafka: &KafkaSettings, group: &str) -> ClientConfig {
    let mut config = kafka.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string());
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_commits_nothing_and_keeps_the_connection_settings() {
        let mut kafka = KafkaSettings::new("127.0.0.1:1");
        kafka
            .properties
            .push(("security.protocol".into(), "ssl".into()));
        let group = throwaway_group("watch");
        assert!(group.starts_with("kafkit-watch-") && group.len() > 20);
        assert_ne!(group, throwaway_group("watch"));
        let config = config(&kafka, &group);
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:1"));
        assert_eq!(config.get("security.protocol"), Some("ssl"));
        assert_eq!(config.get("group.id"), Some(group.as_str()));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("fetch.wait.max.ms"), Some("100"));
    }
}
