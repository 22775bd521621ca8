//! The kafkit command line.
//!
//! One module per command group; `run` dispatches. Everything is reachable
//! from tests through this library.

pub mod bench;
pub mod console;
pub mod demo;
pub mod dev;
pub mod dlq;
pub mod docs;
pub mod new;
pub mod reader;
pub mod schemas;
pub mod tail;
pub mod term;
pub mod topics;

#[cfg(test)]
mod deps_check;
#[cfg(test)]
mod docs_check;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kafkit",
    version,
    about = "Event-driven microservices on Kafka: local stack, schemas, dead letters, demo",
    after_help = "Examples:
  kafkit demo                                   the whole system, live, on this machine
  kafkit dev up                                 local Kafka (Tansu) and schema registry in the background
  kafkit dlq watch orders.dlq --from-beginning  why records died, as they die
  kafkit dlq replay orders.dlq --class unsupported-currency --dry-run
  kafkit schemas check                          CI gate: exit 1 when a schema change is incompatible

Exit codes: 0 success; 1 failure (the reason is printed on stderr); 2 bad usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the service variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Local Kafka (Tansu) and schema registry for development.
    #[command(after_help = "Examples:
  kafkit dev up && kafkit dev status
  kafkit dev check
  kafkit dev down")]
    Dev {
        #[command(subcommand)]
        command: dev::DevCommand,
    },
    /// Run the schema registry in the foreground.
    #[command(
        after_help = "Example: kafkit registry --listen 127.0.0.1:8081 --storage kafka --bootstrap-servers 127.0.0.1:9092"
    )]
    Registry(schema_registry::RegistryArgs),
    /// The whole system in one command: stack, services, a stream of orders, retries and dead letters.
    Demo(demo::DemoArgs),
    /// Start a new consumer service crate: schemas, events, handler, main, a test.
    #[command(
        after_help = "Example: kafkit new shipping-notes --dir . && cargo test -p shipping-notes"
    )]
    New(new::NewArgs),
    /// Register, list, check and show event schemas.
    Schemas {
        #[command(subcommand)]
        command: schemas::SchemasCommand,
    },
    /// Create a topic with its retry tiers and DLQ; list topics; describe one with its consumer lag.
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// Write the contract documents: AsyncAPI for the topics, OpenAPI for producer-service.
    Docs {
        #[command(subcommand)]
        command: docs::DocsCommand,
    },
    /// The dead-letter topics in a browser: overview by error class, lists with filters, each dead letter in full.
    #[command(
        after_help = "Example: kafkit console --dlq orders.dlq   then open http://127.0.0.1:8090"
    )]
    Console(console::ConsoleArgs),
    /// Watch, inspect and replay dead letters.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Print records of topics as they arrive, with kafkit's retry/DLQ headers.
    #[command(after_help = "Example: kafkit tail orders orders.retry.1 orders.retry.2 orders.dlq")]
    Tail(tail::TailArgs),
    /// Measure the publish path and HTTP ingest against baselines, side by side.
    #[command(after_help = "Example: cargo run --release -p kafkit -- bench --linger-ms 5")]
    Bench(bench::BenchArgs),
    /// GET a URL; exit 0 on a 2xx answer, 1 otherwise (container health checks).
    #[command(after_help = "Example: kafkit probe http://127.0.0.1:8080/readyz")]
    Probe {
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// One publish run for `kafkit bench --only telemetry` (a process of its
    /// own, so its telemetry comes from its environment).
    #[command(hide = true)]
    BenchPublish(bench::telemetry::PublishWorkerArgs),
    /// Run producer-service in this process (what `kafkit demo` starts).
    #[command(hide = true)]
    ProducerService(producer_service::Settings),
    /// Run consumer-service in this process (what `kafkit demo` starts).
    #[command(hide = true)]
    ConsumerService(consumer_service::Settings),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev { command } => dev::run(command).await,
        Command::Registry(args) => {
            let app = schema_registry::Application::build(args.into()).await?;
            app.run_until_stopped(kafkit_messaging::shutdown_signal())
                .await?;
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchPublish(args) => bench::telemetry::publish_worker_main(args).await,
        Command::Tail(args) => tail::run(args).await,
        Command::Dlq { command } => dlq::run(command).await,
        Command::Console(args) => console::run(args).await,
        Command::Docs { command } => docs::run(command),
        Command::New(args) => new::run(args),
        Command::Schemas { command } => schemas::run(command).await,
        Command::Topics { command } => topics::run(command).await,
        Command::Probe { url, timeout_secs } => probe(&url, timeout_secs).await,
        Command::ProducerService(settings) => {
            let app = producer_service::service(settings).build().await?;
            app.run_until_stopped(kafkit_messaging::shutdown_signal())
                .await
        }
        Command::ConsumerService(settings) => {
            let app = consumer_service::service(settings).build().await?;
            app.run_until_stopped(kafkit_messaging::shutdown_signal())
                .await
        }
    }
}

/// `kafkit probe`: one GET, success on 2xx.
async fn probe(url: &str, timeout_secs: u64) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(std::time::Duration::from_secs(timeout_secs))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("no answer from {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{url} answered {status}: {body}")
    }
}
