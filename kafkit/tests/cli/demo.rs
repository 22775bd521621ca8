//! `kafkit demo --duration`, run as a user runs it, on a stack that
//! `kafkit dev up` started: the demo exits 0, its final summary matches
//! what the topics hold, it stops the services it started and leaves the
//! stack it did not start running.
#![allow(clippy::unwrap_used)]

use crate::support::kafkit_with_state as kafkit;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;

struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        kafkit(&self.0, &["dev", "down"]);
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// "  name   123" rows of the final summary, by name.
fn final_summary(output: &str) -> BTreeMap<String, usize> {
    let (_, last) = output
        .rsplit_once("Final summary")
        .unwrap_or_else(|| panic!("no final summary in:\n{output}"));
    last.lines()
        .filter_map(|line| {
            let (name, number) = line.trim().rsplit_once(' ')?;
            Some((name.trim().to_owned(), number.parse().ok()?))
        })
        .collect()
}

#[test]
fn demo_with_a_duration_exits_0_and_its_summary_matches_the_topics() {
    let state = std::env::temp_dir().join(format!("kafkit-demo-{}", uuid::Uuid::new_v4()));
    let _down = DownOnDrop(state.clone());
    let port = || devstack::free_port().unwrap().to_string();
    let (broker, registry, http, ops) = (port(), port(), port(), port());
    let stack = ["--broker-port", &broker, "--registry-port", &registry];
    let up = kafkit(&state, &[&["dev", "up"][..], &stack].concat());
    assert!(up.status.success(), "{}", crate::support::text(&up));

    let demo = kafkit(
        &state,
        &[
            &[
                "demo",
                "--duration",
                "25s",
                "--orders",
                "20",
                "--rate",
                "10",
            ][..],
            &["--http-port", &http, "--ops-port", &ops],
            &stack,
        ]
        .concat(),
    );
    let output = crate::support::text(&demo);
    assert!(demo.status.success(), "{output}");
    assert!(output.contains("Every order is settled"), "{output}");
    assert!(output.contains("dlq watch orders.dlq"), "{output}");
    let summary = final_summary(&output);

    let bootstrap = format!("127.0.0.1:{broker}");
    for topic in [
        "orders",
        "orders.retry.1",
        "orders.retry.2",
        "orders.dlq",
        "order-confirmations",
    ] {
        assert_eq!(
            summary.get(topic).copied(),
            Some(crate::support::read_all(&bootstrap, topic).len()),
            "{topic} in the summary vs on the broker:\n{output}"
        );
    }
    let sent = summary["sent (202 Accepted)"];
    assert_eq!(sent, 20, "{output}");
    assert_eq!(summary["orders"], sent);
    let (first, retried, dead) = (
        summary["confirmed on the first try"],
        summary["confirmed after retries"],
        summary["dead-lettered"],
    );
    assert_eq!(first + retried + dead, sent, "{output}");
    assert_eq!(summary["order-confirmations"], first + retried);
    assert_eq!(summary["orders.dlq"], dead);
    // The fixed mix: per ten orders, two recover through the tiers and two die.
    assert_eq!((first, retried, dead), (12, 4, 4), "{output}");
    assert_eq!(summary["unsupported-currency"], 2, "{output}");
    assert_eq!(summary["injected-transient"], 2, "{output}");

    // The services it started are gone; the stack it did not start runs on.
    for port in [&http, &ops] {
        let port: u16 = port.parse().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{port}");
    }
    let status = kafkit(&state, &["dev", "status"]);
    assert_eq!(
        crate::support::text(&status).matches("(answering)").count(),
        2,
        "{}",
        crate::support::text(&status)
    );
}
