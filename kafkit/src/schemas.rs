//! `kafkit schemas`: register, list, check and show event schemas.
//!
//! `check` is meant as a CI gate: it asks the registry whether each local
//! schema is compatible with what is registered, under the subject's level,
//! and exits non-zero with the registry's reasons when one is not.

use anyhow::{Context, bail};
use kafkit_events::SubjectStrategy;
use kafkit_messaging::RegistryConnection;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum SchemasCommand {
    /// Register schemas: every .avsc in --dir, or the files given.
    ///
    /// Example: kafkit schemas register --dir schemas
    Register(FilesArgs),
    /// Check local schemas against the registry; exit 1 if one is incompatible.
    ///
    /// Example: kafkit schemas check schemas/order_placed.avsc
    Check(FilesArgs),
    /// Subjects with their latest version and id.
    ///
    /// Example: kafkit schemas list --registry-url http://127.0.0.1:8081
    List(RegistryConnection),
    /// One subject's schema: the latest version, or the one given.
    ///
    /// Example: kafkit schemas show orders-value 1
    Show {
        subject: String,
        version: Option<String>,
        #[command(flatten)]
        registry: RegistryConnection,
    },
}

/// HTTP requests to one registry, with its credentials.
#[derive(Debug, Clone)]
pub struct Registry {
    client: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Registry {
    /// The registry `connection` names, with its credentials and CA file.
    pub fn of(connection: &RegistryConnection) -> anyhow::Result<Self> {
        Ok(Self {
            client: connection.codec_settings().http_client()?,
            base: connection.registry_url.trim_end_matches('/').to_owned(),
            auth: connection.basic_auth(),
        })
    }

    /// No credentials (the local stack's registry).
    pub fn at(url: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: url.trim_end_matches('/').to_owned(),
            auth: None,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// The latest version of `subject`: its global id and its schema text.
    pub async fn latest(&self, subject: &str) -> anyhow::Result<(u32, String)> {
        let answer = self
            .get(&format!("/subjects/{subject}/versions/latest"))
            .send()
            .await
            .with_context(|| format!("the schema registry at {} did not answer", self.base))?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("no latest schema of {subject}: {status} {body}");
        }
        let id = body["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .with_context(|| format!("the registry gave no id for {subject}: {body}"))?;
        let schema = body["schema"]
            .as_str()
            .with_context(|| format!("the registry gave no schema for {subject}: {body}"))?;
        Ok((id, schema.to_owned()))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct FilesArgs {
    /// .avsc files; default: every .avsc in --dir.
    pub files: Vec<PathBuf>,
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// `topic-name`, `record-name` or `topic-record-name`.
    #[arg(long, default_value = "topic-name")]
    pub subject_strategy: SubjectStrategy,
    /// Topic for the topic strategies. Default: kafkit's own topics for its
    /// events (OrderPlaced: orders, OrderConfirmed: order-confirmations).
    #[arg(long)]
    pub topic: Option<String>,
    #[command(flatten)]
    pub registry: RegistryConnection,
}

/// Where kafkit's own events are published, for the topic strategies.
pub fn default_topic(full_name: &str) -> Option<&'static str> {
    match full_name {
        "io.kafkit.orders.OrderPlaced" => Some("orders"),
        "io.kafkit.orders.OrderConfirmed" => Some("order-confirmations"),
        _ => None,
    }
}

/// (file, subject, schema text) for each file.
fn local_schemas(args: &FilesArgs) -> anyhow::Result<Vec<(PathBuf, String, String)>> {
    let mut files = args.files.clone();
    if files.is_empty() {
        for entry in std::fs::read_dir(&args.dir)
            .with_context(|| format!("cannot read {}", args.dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "avsc") {
                files.push(path);
            }
        }
        files.sort();
    }
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let json: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let full_name = full_name(&json)
                .with_context(|| format!("{} has no record name", file.display()))?;
            let topic = args
                .topic
                .clone()
                .or_else(|| default_topic(&full_name).map(str::to_owned));
            let subject = match (args.subject_strategy, topic) {
                (SubjectStrategy::RecordName, _) => full_name.clone(),
                (strategy, Some(topic)) => strategy.subject(&topic, &full_name, false),
                (_, None) => bail!(
                    "{}: pass --topic for the topic subject strategies",
                    file.display()
                ),
            };
            Ok((file, subject, text))
        })
        .collect()
}

fn full_name(schema: &Value) -> Option<String> {
    let name = schema.get("name")?.as_str()?;
    Some(match schema.get("namespace").and_then(Value::as_str) {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    })
}

async fn call(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = request
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .send()
        .await
        .with_context(|| {
            format!("could not reach the schema registry at {url}; is it running? (kafkit dev up)")
        })?;
    let status = response.status().as_u16();
    if status == 401 {
        bail!(
            "the schema registry at {url} asks for credentials: pass --registry-user and \
             --registry-password (SCHEMA_REGISTRY_BASIC_AUTH_USER, SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD)"
        );
    }
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Registers `schema` under `subject`; (version, id).
pub async fn register(
    registry: &Registry,
    subject: &str,
    schema: &str,
) -> anyhow::Result<(Value, Value)> {
    let base = &registry.base;
    let (status, body) = call(
        registry
            .post(&format!("/subjects/{subject}/versions"))
            .body(json!({"schema": schema}).to_string()),
        base,
    )
    .await?;
    if status != 200 {
        bail!("the registry refused {subject}: {}", body["message"]);
    }
    let (_, latest) = call(
        registry
            .post(&format!("/subjects/{subject}"))
            .body(json!({"schema": schema}).to_string()),
        base,
    )
    .await?;
    Ok((latest["version"].clone(), body["id"].clone()))
}

fn name_of(path: &Path) -> String {
    path.display().to_string()
}

pub async fn run(command: SchemasCommand) -> anyhow::Result<()> {
    match command {
        SchemasCommand::Register(args) => {
            let registry = Registry::of(&args.registry)?;
            for (file, subject, text) in local_schemas(&args)? {
                let (version, id) = register(&registry, &subject, &text)
                    .await
                    .with_context(|| name_of(&file))?;
                println!(
                    "{subject}  version {version}  id {id}  ({})",
                    name_of(&file)
                );
            }
            Ok(())
        }
        SchemasCommand::Check(args) => {
            let registry = Registry::of(&args.registry)?;
            let mut incompatible = 0;
            for (file, subject, text) in local_schemas(&args)? {
                let path = format!("/compatibility/subjects/{subject}/versions?verbose=true");
                let (status, body) = call(
                    registry
                        .post(&path)
                        .body(json!({"schema": text}).to_string()),
                    &registry.base,
                )
                .await?;
                match (status, body["is_compatible"].as_bool()) {
                    (200, Some(true)) => println!("ok            {subject}  ({})", name_of(&file)),
                    (200, Some(false)) => {
                        incompatible += 1;
                        println!("INCOMPATIBLE  {subject}  ({})", name_of(&file));
                        for message in body["messages"].as_array().into_iter().flatten() {
                            println!("    {}", message.as_str().unwrap_or_default());
                        }
                    }
                    _ => bail!(
                        "{}: the registry answered {status}: {}",
                        name_of(&file),
                        body["message"]
                    ),
                }
            }
            if incompatible > 0 {
                bail!("{incompatible} schema(s) incompatible with the registry");
            }
            Ok(())
        }
        SchemasCommand::List(args) => {
            let registry = Registry::of(&args)?;
            let base = &registry.base;
            let (_, subjects) = call(registry.get("/subjects"), base).await?;
            for subject in subjects
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let (_, latest) = call(
                    registry.get(&format!("/subjects/{subject}/versions/latest")),
                    base,
                )
                .await?;
                println!(
                    "{subject}  version {}  id {}",
                    latest["version"], latest["id"]
                );
            }
            Ok(())
        }
        SchemasCommand::Show {
            subject,
            version,
            registry,
        } => {
            let registry = Registry::of(&registry)?;
            let version = version.unwrap_or_else(|| "latest".into());
            let (status, body) = call(
                registry.get(&format!("/subjects/{subject}/versions/{version}")),
                &registry.base,
            )
            .await?;
            if status != 200 {
                bail!("{subject} version {version}: {}", body["message"]);
            }
            let schema: Value = serde_json::from_str(body["schema"].as_str().unwrap_or("null"))?;
            println!("{subject}  version {}  id {}", body["version"], body["id"]);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
    }
}
