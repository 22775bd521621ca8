//! `kafkit dev up | status | check | down`, run as a user runs them:
//! the real binary, on free ports, with its own state directory.
#![allow(clippy::unwrap_used)]

use crate::support::{kafkit_with_state as kafkit, text};
use std::path::Path;
use std::process::Command;

fn pid_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap().starts_with('Z'))
}

fn pids(state: &Path) -> Vec<String> {
    let stack: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("dev/stack.json")).unwrap()).unwrap();
    ["broker", "registry"]
        .iter()
        .map(|k| stack[k]["pid"].to_string())
        .collect()
}

/// Runs `dev down` when the test ends, passed or failed, so no broker outlives it.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        kafkit(self.0, &["dev", "down"]);
        std::fs::remove_dir_all(self.0).ok();
    }
}

#[test]
fn up_is_idempotent_check_round_trips_and_down_stops_only_what_up_started() {
    let state = std::env::temp_dir().join(format!("kafkit-state-{}", uuid::Uuid::new_v4()));
    // The broker is killed and started again on this port (see free_port_outside_ephemeral_range).
    let broker_port = devstack::free_port_outside_ephemeral_range()
        .unwrap()
        .to_string();
    let registry_port = devstack::free_port().unwrap().to_string();
    let ports = [
        "--broker-port",
        &broker_port,
        "--registry-port",
        &registry_port,
    ];
    let _cleanup = StopOnDrop(&state);

    let up = kafkit(&state, &[&["dev", "up"][..], &ports].concat());
    assert!(up.status.success(), "{}", text(&up));
    assert!(
        text(&up).contains(&format!("kafka:           127.0.0.1:{broker_port}")),
        "{}",
        text(&up)
    );
    let first = pids(&state);
    assert!(first.iter().all(|p| pid_alive(p)), "{first:?}");

    let again = kafkit(&state, &[&["dev", "up", "--env"][..], &ports].concat());
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already running"), "{}", text(&again));
    assert_eq!(pids(&state), first, "a second up starts nothing new");
    // With --env, standard output is the export line alone: fit for eval.
    let exported = String::from_utf8(again.stdout.clone()).unwrap();
    assert_eq!(
        exported.trim_end(),
        format!(
            "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{broker_port} SCHEMA_REGISTRY_URL=http://127.0.0.1:{registry_port}"
        ),
        "{}",
        text(&again)
    );
    let evaluated = Command::new("bash")
        .args([
            "-c",
            &format!("eval \"{exported}\" && echo \"$KAFKA_BOOTSTRAP_SERVERS\""),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&evaluated.stdout).trim(),
        format!("127.0.0.1:{broker_port}")
    );

    let status = kafkit(&state, &["dev", "status"]);
    assert_eq!(
        text(&status).matches("(answering)").count(),
        2,
        "{}",
        text(&status)
    );

    let check = kafkit(
        &state,
        &[&["dev", "check", "--topic", "demo-orders"][..], &ports].concat(),
    );
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("subject demo-orders-value, version 1"),
        "{}",
        text(&check)
    );
    assert!(text(&check).contains("round trip OK"), "{}", text(&check));

    // A broker that died lost its memory storage, schemas included: `up`
    // starts a new one and restarts the registry so the two agree again.
    Command::new("kill")
        .args(["-KILL", &first[0]])
        .status()
        .unwrap();
    let recovered = kafkit(&state, &[&["dev", "up"][..], &ports].concat());
    assert!(recovered.status.success(), "{}", text(&recovered));
    assert!(
        text(&recovered).contains("restarted too"),
        "{}",
        text(&recovered)
    );
    let second = pids(&state);
    assert!(
        second.iter().zip(&first).all(|(new, old)| new != old),
        "{second:?} vs {first:?}"
    );
    let check = kafkit(
        &state,
        &[&["dev", "check", "--topic", "demo-orders"][..], &ports].concat(),
    );
    assert!(text(&check).contains("round trip OK"), "{}", text(&check));

    let down = kafkit(&state, &["dev", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        first.iter().all(|p| !pid_alive(p)),
        "both processes stopped"
    );
    let down_again = kafkit(&state, &["dev", "down"]);
    assert!(
        text(&down_again).contains("Nothing to stop"),
        "{}",
        text(&down_again)
    );
}

#[test]
fn up_refuses_a_port_taken_by_someone_else() {
    let state = std::env::temp_dir().join(format!("kafkit-state-{}", uuid::Uuid::new_v4()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let up = kafkit(&state, &["dev", "up", "--broker-port", &port]);
    assert!(!up.status.success());
    assert!(
        text(&up).contains(&format!("port {port} is taken")),
        "{}",
        text(&up)
    );
    std::fs::remove_dir_all(&state).ok();
}
