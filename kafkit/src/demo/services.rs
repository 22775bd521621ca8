//! producer-service and consumer-service as child processes of the demo.
//!
//! They run from this same executable (`kafkit producer-service` and
//! `kafkit consumer-service`, hidden commands that load the services'
//! own settings), so `cargo run -p kafkit -- demo` needs no other build.
//! Each logs to a file and is stopped with SIGTERM, so it drains and
//! commits as it does in production.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One running service.
#[derive(Debug)]
pub struct Service {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
}

/// Starts `kafkit <name>` with `env` on top of ours, and waits until
/// `ready_url` answers 2xx (60 s at most).
pub async fn start(
    name: &'static str,
    env: &[(&str, String)],
    ready_url: &str,
    log_dir: &Path,
) -> anyhow::Result<Service> {
    std::fs::create_dir_all(log_dir)?;
    let log = log_dir.join(format!("{name}.log"));
    let mut env = env.to_vec();
    env.push((
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    ));
    let child = crate::dev::spawn_self(name, &[name], &env, &log, ready_url).await?;
    Ok(Service { name, log, child })
}

impl Service {
    /// SIGTERM, then up to 20 s to drain, then SIGKILL.
    pub async fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{} did not stop within 20 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Service {
    /// Last resort when the demo fails half-way: never leave a service behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
