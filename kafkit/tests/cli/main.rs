//! The `kafkit` command line's integration tests, run as a user runs it: one binary, a module per subject, helpers in `support`.

mod support;

mod browser;
mod chaos;
mod console;
mod demo;
mod deploy;
mod dev_stack;
mod dlq;
mod new;
mod registry_tls;
mod schemas_topics;
mod telemetry;
