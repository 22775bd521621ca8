//! For the test suites of services (feature `testing`): a Tansu broker of
//! the test's own and a registry keeping its state on it, on free ports.

use crate::RunningRegistry;
use devstack::TestKafka;
use std::net::SocketAddr;

/// Broker and registry for one test; both stop when it is dropped.
#[derive(Debug)]
pub struct Stack {
    pub kafka: TestKafka,
    pub registry: RunningRegistry,
}

impl Stack {
    /// A new broker (`TestKafka::start`: SQLite storage, or the broker in
    /// `KAFKA_BOOTSTRAP_SERVERS`) and a registry on it, its state in a
    /// topic of its own.
    ///
    /// # Panics
    /// When either cannot start (for tests).
    pub async fn start() -> Self {
        let kafka = TestKafka::start();
        let registry = RunningRegistry::on_kafka(
            kafka.bootstrap_servers(),
            &devstack::random_name("_schemas"),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("a schema registry on the test's broker");
        Self { kafka, registry }
    }

    /// The broker's `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        self.kafka.bootstrap_servers()
    }
}
