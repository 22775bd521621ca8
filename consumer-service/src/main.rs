//! `consumer-service`: load settings, consume until Ctrl-C or SIGTERM.

use clap::Parser;
use consumer_service::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let app = Application::build(Settings::parse()).await?;
    app.run_until_stopped(messaging::shutdown_signal()).await
}
