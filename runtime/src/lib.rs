//! The kafkit service runtime: settings and a handler in, a running service out.
//!
//! A team writes its events (`kafkit-events`) and a
//! [`Handler`](kafkit_messaging::Handler); the runtime gives it the rest:
//! a main consumer and a retry consumer (run together or apart by
//! [`Role`]), retry tiers and a dead-letter topic with the reason of every
//! failure in its headers, topic creation, outage handling that never
//! dead-letters for a broker or registry that is away, `/healthz`
//! `/readyz` `/metrics`, OpenTelemetry traces and metrics, and a graceful
//! shutdown that settles in-flight records before it commits.

#![warn(missing_docs)]

mod args;
mod consumer;
pub mod http;
mod ingest;
mod ops;

pub use args::{ConsumerArgs, Role};
pub use consumer::{ConsumerService, Service};
pub use ingest::{IngestArgs, IngestParts, IngestServer, IngestService, RETRY_AFTER_SECS};
