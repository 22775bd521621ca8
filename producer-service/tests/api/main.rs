//! producer-service's integration tests: one binary, a module per subject, helpers in `support`.

mod support;

mod orders;
mod outages;
