//! consumer-service: runs the order handler on `orders`, routes failures
//! through retry topics and a retry consumer to the dead-letter topic.

pub mod faults;
pub mod handler;
pub mod settings;
pub mod startup;

pub use settings::{Role, Settings};
pub use startup::Application;
