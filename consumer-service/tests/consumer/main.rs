//! consumer-service's integration tests: one binary (one link of librdkafka), a module per subject, helpers in `support`.

mod support;

mod flows;
mod fuzz;
mod hostile;
mod pipeline;
mod resilience;
