//! The real consumer-service on port 0 against a real broker and registry,
//! with random topic and group names, plus helpers to feed and read topics.
#![allow(dead_code, clippy::unwrap_used)]

use clap::Parser;
use consumer_service::Settings;
use kafkit_events::{CodecSettings, EventCodec, EventHeaders};
use kafkit_messaging::{KafkaSettings, OutgoingRecord, ProducerSettings, Publisher};
use rdkafka::message::Message;
use schema_registry::RunningRegistry;
use shared_events::{OrderItem, OrderPlaced};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

pub use devstack::random_name;

/// A registry whose state lives in `topic` on `bootstrap`, on `listen`.
pub async fn start_registry(bootstrap: &str, topic: &str, listen: SocketAddr) -> RunningRegistry {
    RunningRegistry::on_kafka(bootstrap, topic, listen)
        .await
        .unwrap()
}

/// Names of one test's topics and group.
#[derive(Debug, Clone)]
pub struct Names {
    pub topic: String,
    pub output: String,
    pub group: String,
}

impl Names {
    pub fn new() -> Self {
        Self {
            topic: random_name("orders"),
            output: random_name("confirmations"),
            group: random_name("group"),
        }
    }
    pub fn retry(&self, tier: usize) -> String {
        format!("{}.retry.{tier}", self.topic)
    }
    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.topic)
    }
    /// Every topic a test service uses: main, output, both tiers, DLQ.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.topic.clone(),
            self.output.clone(),
            self.retry(1),
            self.retry(2),
            self.dlq(),
        ]
    }
}

/// How most tests begin: a broker and a registry of their own, a
/// consumer-service with `extra` flags on random names, a feeder.
pub async fn started(extra: &[&str]) -> (Stack, Names, TestService, Feeder) {
    let stack = Stack::start().await;
    let names = Names::new();
    let service = spawn_service(&names, stack.bootstrap(), &stack.registry.url, extra).await;
    let feeder = Feeder::new(stack.bootstrap(), &stack.registry.url);
    (stack, names, service, feeder)
}

/// Creates `topics` with 3 partitions, as a service does at start-up.
pub async fn create_topics(bootstrap: &str, topics: Vec<String>) {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        for topic in topics {
            devstack::ensure_topic(&bootstrap, &topic, 3).unwrap();
        }
    })
    .await
    .unwrap();
}

/// consumer-service as its own process with these `service_args` (quiet).
pub fn start_process(args: &[String]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_consumer-service"))
        .args(&args[1..])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The flags a test service runs with: short retry tiers, 3 attempts.
pub fn service_args(
    names: &Names,
    bootstrap: &str,
    registry_url: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "consumer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        &names.topic,
        "--output-topic",
        &names.output,
        "--group",
        &names.group,
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry_url,
        "--retry-delays-ms",
        "1000,1000",
        "--max-attempts",
        "3",
        "--outage-backoff-ms",
        "200",
        "--outage-backoff-max-ms",
        "1000",
        "--lag-interval-ms",
        "300",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Dynamic members unless the test is about static ones: Tansu holds
    // each static join and sync ~3 s, which only those tests should pay.
    if !extra.contains(&"--group-instance-id") {
        args.extend(["--static-membership".to_owned(), "false".to_owned()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

pub struct TestService {
    pub ops_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestService {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_service(
    names: &Names,
    bootstrap: &str,
    registry_url: &str,
    extra: &[&str],
) -> TestService {
    let settings = Settings::parse_from(service_args(names, bootstrap, registry_url, extra));
    let app = consumer_service::service(settings).build().await.unwrap();
    let ops_url = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestService {
        ops_url,
        stop: Some(stop),
        task: Some(task),
    }
}

pub fn order(sku: &str, currency: &str) -> OrderPlaced {
    OrderPlaced {
        order_id: uuid::Uuid::new_v4().to_string(),
        customer_id: "customer-1".into(),
        items: vec![
            OrderItem {
                sku: sku.into(),
                quantity: 3,
                unit_price_cents: 250,
            },
            OrderItem {
                sku: "EXTRA-1".into(),
                quantity: 1,
                unit_price_cents: 1000,
            },
        ],
        currency: currency.into(),
        placed_at: 1_764_000_000_000,
        note: None,
    }
}

/// Sends events and raw records the way a producer would.
pub struct Feeder {
    pub codec: EventCodec,
    pub publisher: Publisher,
}

impl Feeder {
    pub fn new(bootstrap: &str, registry_url: &str) -> Self {
        Self {
            codec: EventCodec::new(CodecSettings::new(registry_url)).unwrap(),
            publisher: Publisher::new(&KafkaSettings::new(bootstrap), &ProducerSettings::default())
                .unwrap(),
        }
    }

    /// Publishes `order` to `topic`; returns its `ce_id`.
    pub async fn send(&self, topic: &str, order: &OrderPlaced) -> String {
        let headers = EventHeaders::new::<OrderPlaced>("/test");
        let payload = self.codec.encode(topic, order).await.unwrap();
        self.send_raw(topic, order.order_id.as_bytes(), &payload, &headers)
            .await;
        headers.id
    }

    /// Publishes `order` to one partition of `topic`.
    pub async fn send_to(&self, topic: &str, partition: i32, order: &OrderPlaced) {
        let headers = EventHeaders::new::<OrderPlaced>("/test");
        let payload = self.codec.encode(topic, order).await.unwrap();
        let mut record = OutgoingRecord::event(topic, order.order_id.as_bytes(), payload, &headers);
        record.partition = Some(partition);
        self.publisher.publish(&record).await.unwrap();
    }

    pub async fn send_raw(&self, topic: &str, key: &[u8], payload: &[u8], headers: &EventHeaders) {
        let record = OutgoingRecord::event(topic, key, payload.to_vec(), headers);
        self.publisher.publish(&record).await.unwrap();
    }
}

pub use devstack::read::{Read, committed_offsets, read_topic};

pub use schema_registry::testing::Stack;

/// A broker reached only through a proxy that tests can cut or slow down,
/// and a registry (which talks to the broker through the proxy too).
pub struct ProxiedStack {
    pub proxy: devstack::BrokerProxy,
    pub registry: RunningRegistry,
    broker: devstack::Broker,
    dir: std::path::PathBuf,
}

impl ProxiedStack {
    /// Every answer of the broker arrives `response_delay` late. Memory
    /// storage: Tansu 0.6.0's SQLite storage stops taking produce requests
    /// for good after connections with requests in flight are cut (every
    /// later send times out, from any producer), while its memory storage
    /// recovers; the consume engine never reads a record twice for a hold,
    /// so the memory storage's mid-batch fetch (see `devstack::Storage`) is
    /// not in the way.
    pub async fn start(response_delay: Duration) -> Self {
        let dir = std::env::temp_dir().join(random_name("kafkit-broker"));
        // The proxy may stop and start on this port: outside the ephemeral range.
        let proxy_port = devstack::free_port_outside_ephemeral_range().unwrap();
        let options = devstack::BrokerOptions {
            port: devstack::free_port().unwrap(),
            storage: devstack::Storage::Memory,
            dir: dir.clone(),
            detach: false,
            advertised_port: Some(proxy_port),
        };
        let broker = devstack::Broker::start(options.clone()).unwrap_or_else(|e| panic!("{e}"));
        let proxy =
            devstack::BrokerProxy::with_response_delay(proxy_port, options.port, response_delay)
                .await
                .unwrap();
        let registry = start_registry(
            broker.bootstrap_servers(),
            &random_name("_schemas"),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await;
        Self {
            proxy,
            registry,
            broker,
            dir,
        }
    }

    pub fn bootstrap(&self) -> &str {
        self.broker.bootstrap_servers()
    }
}

impl Drop for ProxiedStack {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// One input order as it was produced: its event id and where it landed.
#[derive(Debug, Clone)]
pub struct Sent {
    pub event_id: String,
    pub order: OrderPlaced,
    pub partition: i32,
    pub offset: i64,
}

impl Feeder {
    /// Publishes `orders` to the given partitions of `topic`, all in flight
    /// at once; returns what landed where, in the order given.
    pub async fn send_all(&self, topic: &str, orders: Vec<(i32, OrderPlaced)>) -> Vec<Sent> {
        let mut pending = Vec::new();
        for (partition, order) in orders {
            let headers = EventHeaders::new::<OrderPlaced>("/test");
            let payload = self.codec.encode(topic, &order).await.unwrap();
            let mut record =
                OutgoingRecord::event(topic, order.order_id.as_bytes(), payload, &headers);
            record.partition = Some(partition);
            let delivery = self.publisher.enqueue(&record).unwrap();
            pending.push(async move {
                let delivered = delivery.await.unwrap();
                Sent {
                    event_id: headers.id,
                    order,
                    partition: delivered.partition,
                    offset: delivered.offset,
                }
            });
        }
        futures::future::join_all(pending).await
    }
}

/// An `OrderConfirmed` read back: the input event it answers, its own id,
/// the service that sent it, and when it was made.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub source_event_id: String,
    pub event_id: String,
    pub source: String,
    pub confirmed_at: i64,
    pub order_id: String,
}

pub async fn confirmations(registry_url: &str, records: &[Read]) -> Vec<Confirmation> {
    let codec = EventCodec::new(CodecSettings::new(registry_url)).unwrap();
    let mut out = Vec::new();
    for record in records {
        let confirmed = codec
            .decode::<shared_events::OrderConfirmed>(record.message.payload())
            .await
            .unwrap()
            .event;
        out.push(Confirmation {
            source_event_id: confirmed.source_event_id,
            event_id: record.header("ce_id").unwrap_or_default(),
            source: record.header("ce_source").unwrap_or_default(),
            confirmed_at: confirmed.confirmed_at,
            order_id: confirmed.order_id,
        });
    }
    out
}

impl TestService {
    /// The sum of a metric on the service's `/metrics`, over series with these labels.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.ops_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        kafkit_telemetry::metrics::sum(&text, name, labels)
    }
}

impl Feeder {
    /// Produces exactly these bytes and headers (nothing added) to one
    /// partition of `topic`; returns the offset.
    pub async fn send_exactly(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: Option<Vec<u8>>,
        headers: Vec<(&'static str, Vec<u8>)>,
    ) -> i64 {
        let record = OutgoingRecord {
            topic: topic.to_owned(),
            partition: Some(partition),
            key: Some(key.to_vec()),
            payload,
            headers: headers.into_iter().map(|(n, v)| (n.into(), v)).collect(),
        };
        self.publisher.publish(&record).await.unwrap().offset
    }

    /// An encoded order with its CloudEvents headers plus `extra` headers.
    pub async fn send_with_headers(
        &self,
        topic: &str,
        partition: i32,
        order: &OrderPlaced,
        extra: Vec<(&'static str, Vec<u8>)>,
    ) -> (String, i64) {
        let headers = EventHeaders::new::<OrderPlaced>("/test");
        let payload = self.codec.encode(topic, order).await.unwrap();
        let mut all = headers.to_pairs();
        all.extend(extra);
        let offset = self
            .send_exactly(
                topic,
                partition,
                order.order_id.as_bytes(),
                Some(payload),
                all,
            )
            .await;
        (headers.id, offset)
    }
}
