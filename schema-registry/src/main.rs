//! `schema-registry`: serve the registry until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use schema_registry::{Application, RegistryArgs, shutdown_signal};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A Confluent-compatible Schema Registry for local development and tests"
)]
struct Cli {
    #[command(flatten)]
    registry: RegistryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let app = Application::build(cli.registry.into())
        .await
        .context("failed to start the schema registry")?;
    app.run_until_stopped(shutdown_signal())
        .await
        .context("failed to serve")
}
