//! `kafkit docs`: the contract documents, written from the code. The
//! committed copies in `docs/contracts/` are checked against these by the
//! test suite, and validated against the AsyncAPI and OpenAPI schemas.

pub mod asyncapi;

use anyhow::Context;
use asyncapi::{Layout, TopicEvent};
use clap::Subcommand;
use kafkit_messaging::RetryPolicy;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// The AsyncAPI 3.0 document of the topics: each consumed topic with its
    /// retry tiers and DLQ, the events' Avro schemas, CloudEvents and kafkit headers.
    #[command(after_help = "Examples:
  kafkit docs asyncapi --out docs/contracts/asyncapi.json
  kafkit docs asyncapi --consumes payments=schemas/payment_requested.avsc --publishes payments-settled=schemas/payment_settled.avsc --title payments")]
    Asyncapi(AsyncapiArgs),
    /// The OpenAPI 3.1 document of producer-service (the one it serves at /openapi.json).
    #[command(after_help = "Example: kafkit docs openapi --out docs/contracts/openapi.json")]
    Openapi(Box<OpenapiArgs>),
}

#[derive(Debug, clap::Args)]
pub struct AsyncapiArgs {
    /// A topic consumed with retry tiers and a DLQ, and its event's schema:
    /// TOPIC=FILE.avsc; repeatable. Default: orders=schemas/order_placed.avsc.
    #[arg(long, value_parser = topic_and_file)]
    pub consumes: Vec<(String, PathBuf)>,
    /// A topic the handlers publish to, and its event's schema: TOPIC=FILE.avsc;
    /// repeatable. Default: order-confirmations=schemas/order_confirmed.avsc.
    #[arg(long, value_parser = topic_and_file)]
    pub publishes: Vec<(String, PathBuf)>,
    /// Delay of each retry tier, comma separated (kafkit's default tiers when absent).
    #[arg(long, value_delimiter = ',')]
    pub retry_delays_ms: Vec<u64>,
    /// Handler executions before the DLQ, the first one included (default: one per tier, plus one).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// The document's title.
    #[arg(long, default_value = "orders")]
    pub title: String,
    /// The broker the document names as its server.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub server: String,
    /// Write the document here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct OpenapiArgs {
    /// Write the document here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The settings the document describes (batch size, body size, topic).
    #[command(flatten)]
    pub settings: producer_service::Settings,
}

fn topic_and_file(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((topic, file)) if !topic.is_empty() && !file.is_empty() => {
            Ok((topic.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!("expected TOPIC=FILE.avsc, got {s:?}")),
    }
}

impl AsyncapiArgs {
    /// The layout these arguments describe.
    pub fn layout(&self) -> anyhow::Result<Layout> {
        let or_default = |given: &[(String, PathBuf)], topic: &str, file: &str| {
            if given.is_empty() {
                vec![(topic.to_owned(), PathBuf::from(file))]
            } else {
                given.to_vec()
            }
        };
        let read = |pairs: Vec<(String, PathBuf)>| -> anyhow::Result<Vec<TopicEvent>> {
            pairs
                .iter()
                .map(|(topic, file)| TopicEvent::read(topic, file))
                .collect()
        };
        let mut policy = RetryPolicy::default();
        if !self.retry_delays_ms.is_empty() {
            policy.delays = self
                .retry_delays_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect();
            policy.max_attempts = u32::try_from(policy.delays.len() + 1).unwrap_or(u32::MAX);
        }
        if let Some(attempts) = self.max_attempts {
            policy.max_attempts = attempts;
        }
        Ok(Layout {
            title: self.title.clone(),
            consumes: read(or_default(
                &self.consumes,
                "orders",
                "schemas/order_placed.avsc",
            ))?,
            publishes: read(or_default(
                &self.publishes,
                "order-confirmations",
                "schemas/order_confirmed.avsc",
            ))?,
            policy,
            server: self.server.clone(),
        })
    }
}

/// The text a document is written as: pretty JSON and a final newline.
pub fn render(document: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(document).unwrap_or_default();
    text.push('\n');
    text
}

fn write(text: &str, out: Option<&PathBuf>) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

pub fn run(command: DocsCommand) -> anyhow::Result<()> {
    match command {
        DocsCommand::Asyncapi(args) => {
            let document = asyncapi::document(&args.layout()?);
            write(&render(&document), args.out.as_ref())
        }
        DocsCommand::Openapi(args) => {
            let document = producer_service::openapi::document(&args.settings);
            write(&render(&document), args.out.as_ref())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DocsCommand,
    }

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// `docs/contracts/` holds what the commands write for the defaults:
    /// regenerate with the commands in docs/contracts/README.md.
    #[test]
    fn the_committed_contracts_are_what_the_code_writes() {
        let schemas = root().join("schemas");
        let Cli {
            command: DocsCommand::Asyncapi(args),
        } = Cli::parse_from([
            "kafkit".to_owned(),
            "asyncapi".to_owned(),
            format!(
                "--consumes=orders={}",
                schemas.join("order_placed.avsc").display()
            ),
            format!(
                "--publishes=order-confirmations={}",
                schemas.join("order_confirmed.avsc").display()
            ),
        ])
        else {
            panic!("parsed as asyncapi");
        };
        let asyncapi = render(&asyncapi::document(&args.layout().unwrap()));
        let committed =
            std::fs::read_to_string(root().join("docs/contracts/asyncapi.json")).unwrap();
        assert!(
            asyncapi == committed,
            "docs/contracts/asyncapi.json is stale: run `cargo run -p kafkit -- docs asyncapi --out docs/contracts/asyncapi.json`"
        );
        let Cli {
            command: DocsCommand::Openapi(args),
        } = Cli::parse_from(["kafkit", "openapi"])
        else {
            panic!("parsed as openapi");
        };
        let openapi = render(&producer_service::openapi::document(&args.settings));
        let committed =
            std::fs::read_to_string(root().join("docs/contracts/openapi.json")).unwrap();
        assert!(
            openapi == committed,
            "docs/contracts/openapi.json is stale: run `cargo run -p kafkit -- docs openapi --out docs/contracts/openapi.json`"
        );
    }

    #[test]
    fn a_topic_and_its_schema_parse_from_one_argument() {
        assert_eq!(
            topic_and_file("payments=schemas/p.avsc").unwrap(),
            ("payments".to_owned(), PathBuf::from("schemas/p.avsc"))
        );
        assert!(topic_and_file("payments").is_err());
        assert!(topic_and_file("=x.avsc").is_err());
    }
}
