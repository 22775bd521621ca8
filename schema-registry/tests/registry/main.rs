//! The schema registry's integration tests: one binary, a module per subject, helpers in `support`.

mod support;

mod api;
mod compatibility;
mod converter_client;
mod kafka_store;
