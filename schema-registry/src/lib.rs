//! A Confluent-compatible Schema Registry for local development and tests.
//!
//! Implements the subset of Confluent's REST API that serializers and tools
//! use (subjects, versions, ids, compatibility, config) with Confluent's
//! paths, media type and error codes, so existing clients work unchanged.
//! State lives in a compacted Kafka topic as in Confluent, or in memory.
//! In production, point kafkit at Confluent Schema Registry, Karapace,
//! Redpanda or Apicurio instead.

pub mod auth;
pub mod compatibility;
pub mod error;
pub mod http;
pub mod records;
pub mod registry;
pub mod startup;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::Users;
pub use compatibility::CompatibilityLevel;
pub use startup::{
    Application, RegistryArgs, RegistrySettings, RunningRegistry, StartError, StorageSettings,
    shutdown_signal,
};
pub use store::KafkaStoreSettings;
