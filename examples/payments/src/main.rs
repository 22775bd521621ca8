//! `payments-service`: settle payments until Ctrl-C or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    payments_service::service(payments_service::Settings::parse())?
        .run()
        .await
}
