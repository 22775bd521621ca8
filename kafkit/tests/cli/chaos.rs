//! Chaos: orders over HTTP while consumer-service is SIGKILLed five times
//! and producer-service once, each restarted as a supervisor would (same
//! address, so the same static group member). The client is an ordinary
//! careful one: an `Idempotency-Key` per order, retried until a 202.
//! Every 202 is confirmed, and every order has one confirmation id.
//!
//! Size: `KAFKIT_CHAOS_ORDERS` (default 300).
#![allow(clippy::unwrap_used)]

use crate::support::read_all;
use consumer_service::handler::confirmation_id;
use devstack::free_port_outside_ephemeral_range;
use kafkit_events::{CodecSettings, EventCodec};
use rdkafka::message::{Headers, Message};
use schema_registry::testing::Stack;
use shared_events::OrderConfirmed;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A service run by the `kafkit` binary, restarted with the same arguments.
struct Supervised {
    args: Vec<String>,
    ops: String,
    log: std::path::PathBuf,
    child: Child,
}

impl Supervised {
    async fn start(args: Vec<String>, ops: String) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", name(&args[0])));
        let child = Self::spawn(&args, &log);
        let service = Self {
            args,
            ops,
            log,
            child,
        };
        service.wait_alive().await;
        service
    }

    fn spawn(args: &[String], log: &std::path::Path) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_kafkit"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    async fn wait_alive(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let answer = client
                .get(format!("{}/healthz", self.ops))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} did not come up; see {}",
            self.args[0],
            self.log.display()
        );
    }

    /// SIGKILL, then the same command again.
    async fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(&self.args, &self.log);
        self.wait_alive().await;
    }

    /// Records this process of consumer-service has settled so far.
    async fn settled(&self) -> f64 {
        let Ok(answer) = reqwest::get(format!("{}/metrics", self.ops)).await else {
            return 0.0;
        };
        let text = answer.text().await.unwrap_or_default();
        kafkit_telemetry::metrics::sum(
            &text,
            "messaging_process_duration_seconds_count",
            &[("kafkit_stage", "main")],
        )
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `count` orders, each with its own key, retried (same key, same
/// body) until accepted; returns the accepted order ids.
async fn careful_client(url: String, count: usize, done: Arc<AtomicBool>) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut accepted = Vec::new();
    for i in 0..count {
        let key = name("order");
        let body = serde_json::json!({
            "customer_id": format!("chaos-{i}"),
            "items": [{"sku": "BOOK-1", "quantity": 1, "unit_price_cents": 1000}],
            "currency": "EUR",
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "order {i} never accepted");
            let answer = client
                .post(format!("{url}/v1/orders"))
                .header("idempotency-key", &key)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status() == 202 => {
                    let body: serde_json::Value = answer.json().await.unwrap();
                    accepted.push(body["order_id"].as_str().unwrap().to_owned());
                    break;
                }
                Ok(answer) => assert_eq!(answer.status(), 503, "only 503 while things restart"),
                // Killed under us, or not listening yet.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Paced so the kills land while orders still arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::SeqCst);
    accepted
}

#[tokio::test]
async fn orders_survive_five_consumer_kills_and_a_producer_kill() {
    let count: usize = std::env::var("KAFKIT_CHAOS_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let stack = Stack::start().await;
    let (kafka, registry) = (&stack.kafka, &stack.registry);
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let (topic, output, group) = (name("orders"), name("confirmations"), name("group"));
    // Fixed ports outside the ephemeral range: a restart listens on the same
    // address, and consumer-service's default member id (host and port)
    // stays the same, as a StatefulSet's pod name does.
    let producer_port = free_port_outside_ephemeral_range().unwrap();
    let consumer_port = free_port_outside_ephemeral_range().unwrap();
    let common = |service: &str, port: u16| -> Vec<String> {
        [
            service,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--topic",
            &topic,
            "--bootstrap-servers",
            &bootstrap,
            "--registry-url",
            &registry.url,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let mut producer = Supervised::start(
        common("producer-service", producer_port),
        format!("http://127.0.0.1:{producer_port}"),
    )
    .await;
    let mut consumer_args = common("consumer-service", consumer_port);
    consumer_args.extend(
        [
            "--output-topic",
            &output,
            "--group",
            &group,
            "--retry-delays-ms",
            "500,500",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    let mut consumer =
        Supervised::start(consumer_args, format!("http://127.0.0.1:{consumer_port}")).await;

    let done = Arc::new(AtomicBool::new(false));
    let client = tokio::spawn(careful_client(
        producer.ops.clone(),
        count,
        Arc::clone(&done),
    ));
    let (mut kills, mut while_sending) = (0, 0);
    while kills < 5 {
        // Killed once this process has settled something: mid-stream.
        let deadline = Instant::now() + Duration::from_secs(90);
        while consumer.settled().await < 1.0 && !done.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "consumer-service settled nothing after a restart; see {}",
                consumer.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !done.load(Ordering::SeqCst) {
            while_sending += 1;
        }
        consumer.kill_and_restart().await;
        kills += 1;
        if kills == 3 {
            producer.kill_and_restart().await;
        }
    }
    let accepted = client.await.unwrap();
    eprintln!(
        "{} orders accepted; consumer-service killed {kills} times ({while_sending} while orders were still sent), producer-service once",
        accepted.len()
    );

    // Every accepted order confirmed; one confirmation id per order.
    let codec = EventCodec::new(CodecSettings::new(registry.url.clone())).unwrap();
    let wanted: HashSet<String> = accepted.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut confirmed: HashMap<String, HashSet<String>> = HashMap::new();
    while Instant::now() < deadline {
        confirmed.clear();
        let out = tokio::task::spawn_blocking({
            let (bootstrap, output) = (bootstrap.clone(), output.clone());
            move || read_all(&bootstrap, &output)
        })
        .await
        .unwrap();
        for record in &out {
            let event = codec
                .decode::<OrderConfirmed>(record.payload())
                .await
                .unwrap()
                .event;
            let id = record
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap();
            assert_eq!(id, confirmation_id(&event.source_event_id), "a derived id");
            confirmed.entry(event.order_id).or_default().insert(id);
        }
        if wanted.iter().all(|o| confirmed.contains_key(o)) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|o| !confirmed.contains_key(*o))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted orders never confirmed; see {}",
        missing.len(),
        wanted.len(),
        consumer.log.display()
    );
    for order in &wanted {
        assert_eq!(confirmed[order].len(), 1, "{order}: one confirmation id");
    }
    eprintln!(
        "{} accepted orders confirmed, none missing; {} orders confirmed in all",
        wanted.len(),
        confirmed.len()
    );
}
