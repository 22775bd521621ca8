//! `spawn_app()`: the real producer-service on port 0 against a real broker
//! and registry, with a random topic, plus helpers to look at the topic.
#![allow(dead_code, clippy::unwrap_used)]

use clap::Parser;
use producer_service::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schema_registry::RunningRegistry;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

pub use devstack::random_name;

/// A registry of the test's own, its state on `bootstrap`.
pub async fn start_registry(bootstrap: &str) -> RunningRegistry {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    RunningRegistry::on_kafka(bootstrap, &random_name("_schemas"), listen)
        .await
        .unwrap()
}

pub use schema_registry::testing::Stack;

pub struct TestApp {
    pub url: String,
    pub topic: String,
    pub bootstrap: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The service with `extra` flags, on a fresh topic.
pub async fn spawn_app(bootstrap: &str, registry_url: &str, extra: &[&str]) -> TestApp {
    let topic = random_name("orders");
    let mut args = vec![
        "producer-service",
        "--listen",
        "127.0.0.1:0",
        "--topic",
        &topic,
        "--bootstrap-servers",
        bootstrap,
        "--registry-url",
        registry_url,
    ];
    if !extra.contains(&"--produce-timeout-ms") {
        args.extend_from_slice(&["--produce-timeout-ms", "3000"]);
    }
    args.extend_from_slice(extra);
    let app = producer_service::service(Settings::parse_from(args))
        .build()
        .await
        .unwrap();
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        url,
        topic,
        bootstrap: bootstrap.to_owned(),
        client: reqwest::Client::new(),
        stop: Some(stop),
    }
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Status, headers and body of `response`, the body as JSON when it is.
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts an `application/problem+json` answer with `status`.
    pub fn assert_problem(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], serde_json::json!(status));
        assert!(!self.body["detail"].as_str().unwrap().is_empty());
        &self.body
    }

    /// The fields named in a validation problem.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    }
}

pub fn valid_order() -> Value {
    serde_json::json!({
        "customer_id": "customer-42",
        "items": [
            {"sku": "BOOK-1", "quantity": 2, "unit_price_cents": 1999},
            {"sku": "PEN-9", "quantity": 10, "unit_price_cents": 150}
        ],
        "currency": "EUR",
        "note": "gift wrap"
    })
}

impl TestApp {
    /// Starts the graceful shutdown (as SIGTERM does in the binary).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn send(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        key: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// `body` as JSON to `path`, with an `Idempotency-Key` when given.
    async fn post_json(&self, path: &str, body: &Value, key: Option<&str>) -> Reply {
        let bytes = body.to_string().into_bytes();
        self.send(path, "application/json", bytes, key).await
    }

    pub async fn post_order(&self, body: &Value) -> Reply {
        self.post_json("/v1/orders", body, None).await
    }

    pub async fn post_order_with_key(&self, body: &Value, key: &str) -> Reply {
        self.post_json("/v1/orders", body, Some(key)).await
    }

    pub async fn post_batch(&self, body: &Value) -> Reply {
        self.post_json("/v1/orders/batch", body, None).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        let request = self.client.get(format!("{}{path}", self.url));
        Reply::read(request.send().await.unwrap()).await
    }

    /// How many records the topic holds, over all partitions, counted by
    /// reading them all (Tansu 0.6.0's high watermark undercounts records
    /// that arrived in one multi-record batch, so watermarks are not used).
    pub async fn records_on_topic(&self) -> i64 {
        i64::try_from(self.keys_on_topic().await.len()).unwrap()
    }

    /// The key (the order id) of every record on the topic, in no order.
    pub async fn keys_on_topic(&self) -> Vec<String> {
        self.read_keys(0, Duration::ZERO).await
    }

    /// Like [`TestApp::keys_on_topic`], waiting up to `within` for `want`
    /// records before it counts the quiet time (a slow broker answers late).
    pub async fn read_keys(&self, want: usize, within: Duration) -> Vec<String> {
        let quiet = Duration::from_millis(1500);
        devstack::read::read_topic_until_quiet(&self.bootstrap, &self.topic, want, within, quiet)
            .await
            .iter()
            .map(|read| String::from_utf8_lossy(read.key().unwrap_or_default()).into_owned())
            .collect()
    }

    /// The record at `partition`/`offset` of the app's topic.
    pub async fn read_record(&self, partition: i32, offset: i64) -> OwnedMessage {
        let (bootstrap, topic) = (self.bootstrap.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", random_name("reader"))
                .create()
                .unwrap();
            let mut assignment = TopicPartitionList::new();
            assignment
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .unwrap();
            consumer.assign(&assignment).unwrap();
            for _ in 0..40 {
                if let Some(message) = consumer.poll(Duration::from_millis(500)) {
                    return message.unwrap().detach();
                }
            }
            panic!("no record at {topic}/{partition}/{offset}");
        })
        .await
        .unwrap()
    }
}
