//! `consumer-service`: load settings, consume until Ctrl-C or SIGTERM.

use clap::Parser;
use consumer_service::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = kafkit_telemetry::init(kafkit_telemetry::Options {
        service_name: "consumer-service".into(),
        default_filter: "info".into(),
        stderr: false,
    })?;
    let app = Application::build(Settings::parse()).await?;
    let result = app
        .run_until_stopped(kafkit_messaging::shutdown_signal())
        .await;
    telemetry.shutdown();
    result
}
