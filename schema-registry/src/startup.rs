//! Settings, start-up and the serve loop.
//!
//! `Application::build` binds the listener (port 0 works) and replays the
//! store before anything is served; `run_until_stopped` serves until the
//! shutdown future resolves, so tests pass any future and `main` passes
//! Ctrl-C / SIGTERM.

use crate::auth::{Credentials, Users};
use crate::http::router;
use crate::registry::Registry;
use crate::store::{KafkaStore, KafkaStoreSettings, Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Command-line flags and environment of the registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "SCHEMA_REGISTRY_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Where state is kept: `kafka` (a compacted topic, survives restarts) or `memory`.
    #[arg(long, env = "SCHEMA_REGISTRY_STORAGE", default_value = "kafka", value_parser = ["kafka", "memory"])]
    pub storage: String,
    /// Kafka bootstrap servers for `--storage kafka`.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// The topic that holds the registry's state.
    #[arg(long, env = "SCHEMA_REGISTRY_TOPIC", default_value = "_schemas")]
    pub topic: String,
    /// Replication factor used when the topic has to be created.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_TOPIC_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub replication_factor: i32,
    /// Extra librdkafka property as key=value (TLS, SASL, ...); repeatable.
    #[arg(short = 'X', long = "kafka-property", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Users for HTTP basic authentication, `user:password,...`; with none
    /// (and no users file) the registry is open.
    #[arg(long, env = "SCHEMA_REGISTRY_USERS", value_parser = crate::auth::parse_user_list, hide_env_values = true)]
    pub users: Option<crate::auth::UserList>,
    /// A file of users, one `user:password` a line.
    #[arg(long, env = "SCHEMA_REGISTRY_USERS_FILE")]
    pub users_file: Option<std::path::PathBuf>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// What the registry needs to start.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub listen: SocketAddr,
    pub storage: StorageSettings,
    /// HTTP basic authentication; none configured: open.
    pub users: Users,
}

#[derive(Debug, Clone)]
pub enum StorageSettings {
    Memory,
    Kafka(KafkaStoreSettings),
}

impl From<RegistryArgs> for RegistrySettings {
    fn from(args: RegistryArgs) -> Self {
        let storage = match args.storage.as_str() {
            "memory" => StorageSettings::Memory,
            _ => StorageSettings::Kafka(KafkaStoreSettings {
                topic: args.topic,
                replication_factor: args.replication_factor,
                client_properties: args.kafka_properties,
                ..KafkaStoreSettings::new(args.bootstrap_servers)
            }),
        };
        Self {
            listen: args.listen,
            storage,
            users: Users {
                inline: args.users.map(|u| u.0).unwrap_or_default(),
                file: args.users_file,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not load the registry's state: {0}")]
    Store(#[from] StoreError),
    #[error("could not load the users: {0}")]
    Users(String),
}

/// A registry that is bound and loaded, ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    registry: Arc<Registry>,
    credentials: Credentials,
}

impl Application {
    pub async fn build(settings: RegistrySettings) -> Result<Self, StartError> {
        let credentials = Credentials::load(&settings.users).map_err(StartError::Users)?;
        let (store, replayed) = match settings.storage {
            StorageSettings::Memory => (Store::Memory, Vec::new()),
            StorageSettings::Kafka(kafka) => {
                let topic = kafka.topic.clone();
                let (store, records) = KafkaStore::open(kafka).await?;
                tracing::info!(topic, records = records.len(), "replayed the schemas topic");
                (Store::Kafka(store), records)
            }
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            registry: Arc::new(Registry::new(store, &replayed)),
            credentials,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr(), "schema registry listening");
        let app = router(self.registry).layer(axum::middleware::from_fn_with_state(
            self.credentials,
            crate::auth::require_user,
        ));
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A registry serving on a background task, for tests and embedding.
#[derive(Debug)]
pub struct RunningRegistry {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningRegistry {
    /// A registry keeping its schemas in memory, on a free port of
    /// 127.0.0.1, no users, serving in the background: what a test of a
    /// service needs.
    pub async fn in_memory() -> Result<Self, StartError> {
        let settings = RegistrySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage: StorageSettings::Memory,
            users: Users::default(),
        };
        Ok(Application::build(settings).await?.spawn())
    }

    /// A registry keeping its state in `topic` on the Kafka at `bootstrap`,
    /// no users, listening on `listen` (port 0: a free one), serving in the
    /// background: what a test of a service against a real broker needs.
    pub async fn on_kafka(
        bootstrap: &str,
        topic: &str,
        listen: SocketAddr,
    ) -> Result<Self, StartError> {
        let settings = RegistrySettings {
            listen,
            storage: StorageSettings::Kafka(crate::KafkaStoreSettings {
                topic: topic.to_owned(),
                ..crate::KafkaStoreSettings::new(bootstrap)
            }),
            users: Users::default(),
        };
        Ok(Application::build(settings).await?.spawn())
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

impl Application {
    /// Serves on a background task until [`RunningRegistry::stop`].
    pub fn spawn(self) -> RunningRegistry {
        let url = format!("http://{}", self.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run_until_stopped(async {
            let _ = stopped.await;
        }));
        RunningRegistry { url, stop, task }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    // Give the log line a moment before the process exits.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
