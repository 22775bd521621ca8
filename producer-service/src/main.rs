//! `producer-service`: load settings, serve until Ctrl-C or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    producer_service::service(producer_service::Settings::parse())
        .run()
        .await
}
