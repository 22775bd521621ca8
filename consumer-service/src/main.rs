//! `consumer-service`: load settings, consume until Ctrl-C or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    consumer_service::service(consumer_service::Settings::parse())
        .run()
        .await
}
