//! Starting Tansu brokers and waiting for them.

use crate::{DevstackError, find_tansu};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::util::Timeout;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where a broker keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Lost when the broker stops. Fast, but Tansu 0.6.0 answers a fetch
    /// from an offset inside a record batch with only the batches after it:
    /// a consumer that pauses and resumes, seeks back, or restarts from a
    /// committed offset in the middle of a batch never sees the rest of that
    /// batch. Real Kafka returns the batch and the client skips to the offset.
    Memory,
    /// A SQLite file (relative to the broker's working directory), kept
    /// across restarts. Fetches are answered record by record, correctly,
    /// and more slowly.
    Sqlite(String),
}

impl Storage {
    fn url(&self) -> String {
        match self {
            Self::Memory => "memory://tansu/".into(),
            Self::Sqlite(file) => format!("sqlite://{file}"),
        }
    }
}

/// How to start one broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub port: u16,
    pub storage: Storage,
    /// Working directory (created if missing); the log goes to `tansu.log` in it.
    pub dir: PathBuf,
    /// Keep running after this process exits (for `kafkit dev up`).
    pub detach: bool,
    /// Port advertised to clients when it differs from `port`, e.g. a proxy
    /// in front of the broker that tests cut to simulate an outage.
    pub advertised_port: Option<u16>,
}

/// A running Tansu broker. Stopped on drop unless started detached.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    /// Where the broker listens (readiness is checked here).
    listen: String,
    /// What clients are told to use.
    bootstrap: String,
    dir: PathBuf,
    detach: bool,
    remove_dir_on_drop: bool,
}

/// Asks the OS for a free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A free port below Linux's ephemeral range (32768 and up), for a listener
/// that a test stops and starts again on the same port. With a port from
/// the ephemeral range, a client reconnecting while nothing listens can be
/// given that very port as its own source port and connect to itself (TCP
/// self-connect), and the port is then taken when the listener comes back.
pub fn free_port_outside_ephemeral_range() -> std::io::Result<u16> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    for i in 0..2000u32 {
        let port =
            20_000 + u16::try_from((seed.wrapping_add(i.wrapping_mul(7919))) % 12_000).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no free port in 20000..32000",
    ))
}

impl Broker {
    /// Starts a broker and waits until it answers metadata requests.
    pub fn start(options: BrokerOptions) -> Result<Self, DevstackError> {
        let tansu = find_tansu().ok_or(DevstackError::TansuMissing)?;
        std::fs::create_dir_all(&options.dir)?;
        let log_path = options.dir.join("tansu.log");
        let log = File::create(&log_path)?;
        let url = format!("tcp://127.0.0.1:{}", options.port);
        let advertised = format!(
            "tcp://127.0.0.1:{}",
            options.advertised_port.unwrap_or(options.port)
        );
        let mut command = Command::new(&tansu);
        command
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", &options.storage.url()])
            .current_dir(&options.dir)
            // Tansu reads these from the environment; a stray one must not redirect it.
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if options.detach {
            use std::os::unix::process::CommandExt;
            // Its own process group: Ctrl-C in the terminal that ran `dev up` does not stop it.
            command.process_group(0);
        }
        let child = command.spawn().map_err(|source| DevstackError::Spawn {
            what: tansu.display().to_string(),
            source,
        })?;
        let mut broker = Self {
            child,
            listen: format!("127.0.0.1:{}", options.port),
            bootstrap: format!(
                "127.0.0.1:{}",
                options.advertised_port.unwrap_or(options.port)
            ),
            dir: options.dir,
            detach: options.detach,
            remove_dir_on_drop: false,
        };
        broker.wait_ready(Duration::from_secs(30), &log_path)?;
        Ok(broker)
    }

    /// A broker on a free port in a fresh temporary directory, for tests:
    /// SQLite storage, whose fetches behave as Kafka's do (see [`Storage`]).
    pub fn start_for_test() -> Result<Self, DevstackError> {
        Self::start_for_test_with(Storage::Sqlite("tansu.db".into()))
    }

    /// Like [`Broker::start_for_test`] with the given storage (the benchmark
    /// takes memory: SQLite is too slow for its volumes).
    pub fn start_for_test_with(storage: Storage) -> Result<Self, DevstackError> {
        let dir = std::env::temp_dir().join(format!("kafkit-tansu-{}", uuid::Uuid::new_v4()));
        let mut last = None;
        // The free port can be taken between asking and binding; try a few.
        for _ in 0..3 {
            let options = BrokerOptions {
                port: free_port()?,
                storage: storage.clone(),
                dir: dir.clone(),
                detach: false,
                advertised_port: None,
            };
            match Self::start(options) {
                Ok(mut broker) => {
                    broker.remove_dir_on_drop = true;
                    return Ok(broker);
                }
                Err(e @ DevstackError::TansuMissing) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(DevstackError::TansuMissing))
    }

    fn wait_ready(&mut self, timeout: Duration, log: &Path) -> Result<(), DevstackError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(DevstackError::Exited {
                    status: status.to_string(),
                    log: log.display().to_string(),
                });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match wait_for_kafka(&self.listen, remaining.min(Duration::from_secs(2))) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if !self.detach {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if self.remove_dir_on_drop {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// Waits until a Kafka broker at `bootstrap` answers a metadata request.
pub fn wait_for_kafka(bootstrap: &str, timeout: Duration) -> Result<(), DevstackError> {
    let not_ready = |reason: String| DevstackError::NotReady {
        bootstrap: bootstrap.to_owned(),
        seconds: timeout.as_secs(),
        reason,
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .map_err(|e| not_ready(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200));
        match producer
            .client()
            .fetch_metadata(None, Timeout::After(left.min(Duration::from_secs(1))))
        {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) if Instant::now() >= deadline => {
                return Err(not_ready("no brokers in metadata".into()));
            }
            Err(e) if Instant::now() >= deadline => return Err(not_ready(e.to_string())),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The Kafka a test talks to: `KAFKA_BOOTSTRAP_SERVERS` when set, otherwise
/// a broker of its own that stops when this value is dropped.
#[derive(Debug)]
pub enum TestKafka {
    External(String),
    Own(Broker),
}

impl TestKafka {
    /// For tests: panics with a sentence (how to install Tansu, or why the
    /// broker did not start) rather than returning an error. Its own broker
    /// has SQLite storage (fetches behave as Kafka's, see [`Storage`]).
    pub fn start() -> Self {
        Self::start_on(Storage::Sqlite("tansu.db".into()))
    }

    /// Like [`TestKafka::start`], its own broker with `storage`.
    pub fn start_on(storage: Storage) -> Self {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.trim().is_empty() => Self::External(servers),
            _ => Self::Own(Broker::start_for_test_with(storage).unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    /// A broker of the test's own even when `KAFKA_BOOTSTRAP_SERVERS` is set,
    /// for tests that stop it.
    pub fn own_broker() -> Broker {
        Broker::start_for_test().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Self::External(servers) => servers,
            Self::Own(broker) => broker.bootstrap_servers(),
        }
    }
}

/// Creates `topic` with `partitions` partitions unless it exists, and waits
/// until the broker's metadata lists it. Tansu does not auto-create topics.
pub fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), DevstackError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::RDKafkaErrorCode;
    let failed = |reason: String| DevstackError::NotReady {
        bootstrap: bootstrap.to_owned(),
        seconds: 30,
        reason,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| failed(e.to_string()))?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| failed(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(failed(format!("creating topic {name}: {code}"))),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = admin
            .inner()
            .fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(2)))
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            });
        match listed {
            Ok(true) => return Ok(()),
            _ if Instant::now() >= deadline => {
                return Err(failed(format!("topic {topic} never showed up in metadata")));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
