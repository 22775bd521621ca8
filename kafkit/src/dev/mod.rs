//! `kafkit dev`: the local stack (Tansu broker + schema registry) in the background.
//!
//! `up` records what it started (pid, port) in a state file; `down` stops
//! only those processes, after checking each pid still runs the program it
//! started, and `status` reports them. `up` is idempotent: what already runs
//! is left alone.

pub mod check;

use anyhow::{Context, bail};
use devstack::{Broker, BrokerOptions, Storage};
use serde::{Deserialize, Serialize};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Subcommand)]
pub enum DevCommand {
    /// Install the pinned Tansu broker if it is missing (about 10 minutes, once).
    ///
    /// Example: KAFKIT_CACHE_DIR=/opt/kafkit kafkit dev install
    Install,
    /// Start the broker and the schema registry in the background.
    ///
    /// Examples: kafkit dev up --durable --broker-port 19092
    ///           eval "$(kafkit dev up --env)"
    Up {
        #[command(flatten)]
        args: UpArgs,
        /// Print only the `export ...` line on standard output (the
        /// addresses and progress go to standard error), for `eval`.
        #[arg(long)]
        env: bool,
    },
    /// Stop what `up` started.
    ///
    /// Example: kafkit dev down
    Down,
    /// Show what runs and whether it answers.
    ///
    /// Example: kafkit dev status
    Status,
    /// Start the stack if needed, then round-trip one OrderPlaced event through it.
    ///
    /// Example: kafkit dev check --topic smoke-orders
    Check {
        #[command(flatten)]
        up: UpArgs,
        /// Topic to send the event to.
        #[arg(long, default_value = "kafkit-check")]
        topic: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Keep broker data in SQLite across restarts (slower fetches) instead of memory.
    #[arg(long)]
    pub durable: bool,
    #[arg(long, env = "KAFKIT_DEV_BROKER_PORT", default_value_t = 9092)]
    pub broker_port: u16,
    #[arg(long, env = "KAFKIT_DEV_REGISTRY_PORT", default_value_t = 8081)]
    pub registry_port: u16,
}

impl Default for UpArgs {
    fn default() -> Self {
        Self {
            durable: false,
            broker_port: 9092,
            registry_port: 8081,
        }
    }
}

/// Addresses of a running local stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub bootstrap_servers: String,
    pub registry_url: String,
    /// This call started the broker (it was not running before).
    pub started_broker: bool,
    /// This call started the registry (it was not running before).
    pub started_registry: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Process {
    pid: u32,
    port: u16,
    /// The program name its command line must contain, to recognise it later.
    program: String,
    log: PathBuf,
    #[serde(default)]
    storage: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StackFile {
    broker: Option<Process>,
    registry: Option<Process>,
}

/// `$KAFKIT_STATE_DIR/dev`, default `~/.local/state/kafkit/dev`.
pub fn state_dir() -> PathBuf {
    let base = std::env::var_os("KAFKIT_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("kafkit")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/kafkit")))
        .unwrap_or_else(|| std::env::temp_dir().join("kafkit-state"));
    base.join("dev")
}

fn stack_file() -> PathBuf {
    state_dir().join("stack.json")
}

fn load() -> StackFile {
    std::fs::read(stack_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(stack: &StackFile) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir())?;
    std::fs::write(stack_file(), serde_json::to_vec_pretty(stack)?)
        .context("failed to write the dev state file")
}

/// True while `pid` runs a command line containing `program` (and is not a zombie).
fn is_running(process: &Process) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{}", process.pid));
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(") ")
        .next()
        .is_some_and(|rest| rest.starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(&process.program)
}

fn port_answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

pub async fn run(command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::Install => {
            let bin = tokio::task::spawn_blocking(|| devstack::install_tansu(|s| eprintln!("{s}")))
                .await??;
            println!(
                "Tansu {} is installed at {}",
                devstack::TANSU_VERSION,
                bin.display()
            );
            Ok(())
        }
        DevCommand::Up { args, env } => {
            let stack = up(&args).await?;
            let addresses = format!(
                "kafka:           {}\nschema registry: {}",
                stack.bootstrap_servers, stack.registry_url
            );
            let export = format!(
                "export KAFKA_BOOTSTRAP_SERVERS={} SCHEMA_REGISTRY_URL={}",
                stack.bootstrap_servers, stack.registry_url
            );
            if env {
                eprintln!("{addresses}");
            } else {
                println!("{addresses}");
            }
            println!("{export}");
            Ok(())
        }
        DevCommand::Down => tokio::task::spawn_blocking(down).await?,
        DevCommand::Status => {
            status();
            Ok(())
        }
        DevCommand::Check { up: args, topic } => {
            let stack = up(&args).await?;
            println!(
                "local stack: kafka {} / schema registry {}",
                stack.bootstrap_servers, stack.registry_url
            );
            check::round_trip(&stack.bootstrap_servers, &stack.registry_url, &topic).await
        }
    }
}

/// Starts whatever of the stack is not running yet and returns its addresses.
pub async fn up(args: &UpArgs) -> anyhow::Result<Stack> {
    let mut stack = load();
    let dir = state_dir();
    std::fs::create_dir_all(&dir)?;

    let broker_was_running = stack.broker.as_ref().is_some_and(is_running);
    let broker = match stack.broker.take().filter(is_running) {
        Some(running) => {
            eprintln!(
                "Kafka broker already running (pid {}, port {}).",
                running.pid, running.port
            );
            running
        }
        None => {
            if port_answers(args.broker_port) {
                bail!(
                    "port {} is taken by a process kafkit did not start; pass --broker-port",
                    args.broker_port
                );
            }
            tokio::task::spawn_blocking(|| devstack::install_tansu(|s| eprintln!("{s}"))).await??;
            let storage = if args.durable {
                Storage::Sqlite("tansu.db".into())
            } else {
                Storage::Memory
            };
            let broker_dir = dir.join("tansu");
            let options = BrokerOptions {
                port: args.broker_port,
                storage: storage.clone(),
                dir: broker_dir.clone(),
                detach: true,
                advertised_port: None,
            };
            eprintln!(
                "Starting the Tansu broker on 127.0.0.1:{} ({:?} storage)...",
                args.broker_port, storage
            );
            let started = tokio::task::spawn_blocking(move || Broker::start(options)).await??;
            Process {
                pid: started.pid(),
                port: args.broker_port,
                program: "tansu".into(),
                log: broker_dir.join("tansu.log"),
                storage: if args.durable {
                    "sqlite".into()
                } else {
                    "memory".into()
                },
            }
        }
    };
    let bootstrap_servers = format!("127.0.0.1:{}", broker.port);
    stack.broker = Some(broker);
    save(&stack)?;

    let mut registry = stack.registry.take().filter(is_running);
    if let (false, Some(stale)) = (broker_was_running, &registry) {
        // It holds schemas the new broker's _schemas topic does not: restart it.
        eprintln!("The broker was restarted, so the schema registry is restarted too.");
        let stale = stale.clone();
        tokio::task::spawn_blocking(move || stop("schema registry", &stale)).await?;
        registry = None;
    }
    let started_registry = registry.is_none();
    let registry = match registry {
        Some(running) => {
            eprintln!(
                "Schema registry already running (pid {}, port {}).",
                running.pid, running.port
            );
            running
        }
        None => start_registry(&dir, args.registry_port, &bootstrap_servers).await?,
    };
    let registry_url = format!("http://127.0.0.1:{}", registry.port);
    stack.registry = Some(registry);
    save(&stack)?;
    Ok(Stack {
        bootstrap_servers,
        registry_url,
        started_broker: !broker_was_running,
        started_registry,
    })
}

/// Stops what `stack` says its `up` call started; leaves the rest running.
pub fn stop_started(stack: &Stack) -> anyhow::Result<()> {
    if stack.started_broker {
        return down();
    }
    let mut file = load();
    if stack.started_registry
        && let Some(registry) = file.registry.take()
    {
        stop("schema registry", &registry);
        save(&file)?;
    }
    Ok(())
}

async fn start_registry(dir: &Path, port: u16, bootstrap: &str) -> anyhow::Result<Process> {
    if port_answers(port) {
        bail!("port {port} is taken by a process kafkit did not start; pass --registry-port");
    }
    let log = dir.join("registry.log");
    eprintln!("Starting the schema registry on 127.0.0.1:{port} (state in the _schemas topic)...");
    let listen = format!("127.0.0.1:{port}");
    let child = spawn_self(
        "the schema registry",
        &[
            "registry",
            "--listen",
            &listen,
            "--storage",
            "kafka",
            "--bootstrap-servers",
            bootstrap,
        ],
        &[("RUST_LOG", "info".to_owned())],
        &log,
        &format!("http://{listen}/readyz"),
    )
    .await?;
    Ok(Process {
        pid: child.id(),
        port,
        program: "registry".into(),
        log,
        storage: "kafka".into(),
    })
}

/// Starts this executable with `args` in its own process group (Ctrl-C in
/// the terminal reaches only kafkit, which stops it in order), output to
/// `log`, and waits up to 60 s until `ready_url` answers 2xx. A child that
/// exits or never gets ready is reported with its log, and not left behind.
pub(crate) async fn spawn_self(
    what: &str,
    args: &[&str],
    env: &[(&str, String)],
    log: &Path,
    ready_url: &str,
) -> anyhow::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("failed to find the kafkit executable")?;
    let out = std::fs::File::create(log)
        .with_context(|| format!("failed to create {}", log.display()))?;
    let mut child = Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start {what}"))?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status}; see {}", log.display());
        }
        if let Ok(response) = client
            .get(ready_url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && response.status().is_success()
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} was not ready at {ready_url} after 60 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stop(name: &str, process: &Process) {
    if !is_running(process) {
        println!("{name}: not running");
        return;
    }
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, &process.pid.to_string()])
            .status();
    };
    signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(process) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if is_running(process) {
        signal("-KILL");
    }
    println!("{name}: stopped (pid {})", process.pid);
}

/// Stops the registry first (it writes to the broker), then the broker.
pub fn down() -> anyhow::Result<()> {
    let stack = load();
    if stack.broker.is_none() && stack.registry.is_none() {
        println!("Nothing to stop: kafkit dev up has not started anything.");
        return Ok(());
    }
    if let Some(registry) = &stack.registry {
        stop("schema registry", registry);
    }
    if let Some(broker) = &stack.broker {
        stop("kafka broker", broker);
    }
    std::fs::remove_file(stack_file()).ok();
    Ok(())
}

fn status() {
    let stack = load();
    let show = |name: &str, process: Option<&Process>| match process {
        Some(p) if is_running(p) => println!(
            "{name}: running, pid {}, 127.0.0.1:{} ({}), {}, log {}",
            p.pid,
            p.port,
            if port_answers(p.port) {
                "answering"
            } else {
                "not answering"
            },
            p.storage,
            p.log.display()
        ),
        Some(p) => println!("{name}: stopped (was pid {}, port {})", p.pid, p.port),
        None => println!("{name}: not started"),
    };
    show("kafka broker   ", stack.broker.as_ref());
    show("schema registry", stack.registry.as_ref());
}
