//! Local Kafka for development and tests: the pinned Tansu broker.
//!
//! Finds (or, on request, installs) Tansu, starts brokers on chosen or free
//! ports from a clean working directory (Tansu reads `.env` files and
//! `LISTENER_URL`-style variables, so it is started with explicit flags and a
//! scrubbed environment), and waits until a broker answers Kafka metadata
//! requests. Installing is never done implicitly by tests: it takes minutes.

pub mod broker;
pub mod proxy;
pub mod raw;
pub mod read;
pub mod tansu;
pub mod tools;

pub use broker::{
    Broker, BrokerOptions, Storage, TestKafka, ensure_topic, free_port,
    free_port_outside_ephemeral_range, wait_for_kafka,
};
pub use proxy::BrokerProxy;
pub use tansu::{TANSU_VERSION, find_tansu, install_tansu, tansu_install_root};

/// A name no other test or run uses, `prefix-<32 hex digits>`: for the
/// topics, groups and subjects a test makes, so tests run side by side and
/// twice in a row on one broker.
pub fn random_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Everything that can go wrong starting local Kafka.
#[derive(Debug, thiserror::Error)]
pub enum DevstackError {
    #[error(
        "Tansu {TANSU_VERSION} is not installed. Run `cargo run -p kafkit -- dev install` (or scripts/test.sh) once; it takes about 10 minutes"
    )]
    TansuMissing,
    #[error("installing Tansu failed: {0}")]
    Install(String),
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the broker at {bootstrap} did not answer within {seconds} s: {reason}")]
    NotReady {
        bootstrap: String,
        seconds: u64,
        reason: String,
    },
    #[error("the broker exited early with {status}; its log is at {log}")]
    Exited { status: String, log: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
