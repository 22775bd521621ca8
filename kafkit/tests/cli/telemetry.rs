//! One order's whole story in one trace, exported over OTLP/HTTP to a
//! collector run by this test: producer-service and consumer-service run as
//! their own processes (`kafkit producer-service` / `kafkit consumer-service`),
//! the order fails every attempt, is dead-lettered, is replayed with
//! `kafkit dlq replay`, and dies again. The test checks the span tree, the
//! semantic-convention attributes, the metrics exported over OTLP and that
//! log lines carry the trace id.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use rdkafka::message::{Headers, Message, OwnedMessage};
use schema_registry::RunningRegistry;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the collector received.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

type Shared = Arc<Mutex<Received>>;

async fn traces(State(rx): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    rx.lock().unwrap().traces.push(request);
    ""
}

async fn metrics(State(rx): State<Shared>, body: Bytes) -> &'static str {
    let request = ExportMetricsServiceRequest::decode(body).unwrap();
    rx.lock().unwrap().metrics.push(request);
    ""
}

/// An OTLP/HTTP collector on a free port.
async fn collector() -> (String, Shared) {
    let received = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    text(attributes.iter().find(|kv| kv.key == key)?.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span as the test looks at it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

fn spans(received: &Shared) -> Vec<Seen> {
    let received = received.lock().unwrap();
    let mut out = Vec::new();
    for request in &received.traces {
        for resource_spans in &request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    out.push(Seen {
                        service: service.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref())?)))
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

/// The latest exported value of a sum metric (or a histogram's count) of
/// `service`, over the points with the given attributes.
fn exported_sum(received: &Shared, service: &str, metric: &str, want: &[(&str, &str)]) -> i64 {
    let received = received.lock().unwrap();
    let mut latest = 0;
    for request in &received.metrics {
        for resource_metrics in &request.resource_metrics {
            let name = resource_metrics
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"));
            if name.as_deref() != Some(service) {
                continue;
            }
            let mut total = None;
            for scope in &resource_metrics.scope_metrics {
                for m in scope.metrics.iter().filter(|m| m.name == metric) {
                    if let Some(Data::Histogram(histogram)) = &m.data {
                        for point in &histogram.data_points {
                            let matches = want.iter().all(|(k, v)| {
                                attribute(&point.attributes, k).as_deref() == Some(*v)
                            });
                            if matches {
                                *total.get_or_insert(0) +=
                                    i64::try_from(point.count).unwrap_or(i64::MAX);
                            }
                        }
                        continue;
                    }
                    let Some(Data::Sum(sum)) = &m.data else {
                        continue;
                    };
                    for point in &sum.data_points {
                        let matches = want
                            .iter()
                            .all(|(k, v)| attribute(&point.attributes, k).as_deref() == Some(*v));
                        if matches {
                            let value = match point.value {
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(d)) => d as i64,
                                None => 0,
                            };
                            *total.get_or_insert(0) += value;
                        }
                    }
                }
            }
            // Cumulative temporality: each export holds the running total.
            if let Some(total) = total {
                latest = total;
            }
        }
    }
    latest
}

/// Waits until `topic` holds `want` records (60 s at most).
fn wait_for(bootstrap: &str, topic: &str, want: usize) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = crate::support::read_all(bootstrap, topic);
        if records.len() >= want || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A `kafkit` child process, SIGTERM'd (and so flushed) on stop.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(args: &[&str], env: &[(&str, String)], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafkit"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url} not ready in 60 s");
}

// Multi-threaded: the registry and collector serve while the test blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_and_replayed_order_is_one_trace_with_otlp_metrics_and_logged_ids() {
    let kafka = devstack::TestKafka::start();
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let registry = RunningRegistry::in_memory().await.unwrap();
    let (otlp, received) = collector().await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("orders-{id}");
    let (retry1, retry2, dlq) = (
        format!("{topic}.retry.1"),
        format!("{topic}.retry.2"),
        format!("{topic}.dlq"),
    );
    let group = format!("group-{id}");
    let dir = std::env::temp_dir().join(format!("kafkit-otel-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test".to_owned(),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
            ("SCHEMA_REGISTRY_URL", registry.url.clone()),
            ("ORDERS_TOPIC", topic.clone()),
        ]
    };
    let http_port = devstack::free_port().unwrap();
    let ops_port = devstack::free_port().unwrap();
    let mut producer = Service::start(
        &["producer-service"],
        &[
            otel("producer-service"),
            vec![("PRODUCER_LISTEN", format!("127.0.0.1:{http_port}"))],
        ]
        .concat(),
        dir.join("producer.log"),
    );
    let mut consumer = Service::start(
        &["consumer-service"],
        &[
            otel("consumer-service"),
            vec![
                ("CONSUMER_LISTEN", format!("127.0.0.1:{ops_port}")),
                ("CONSUMER_GROUP", group.clone()),
                ("CONFIRMATIONS_TOPIC", format!("confirmations-{id}")),
                ("FAULTS", "DOOMED:transient".to_owned()),
                ("RETRY_DELAYS_MS", "200,200".to_owned()),
                ("MAX_ATTEMPTS", "3".to_owned()),
            ],
        ]
        .concat(),
        dir.join("consumer.log"),
    );
    wait_ready(&format!("http://127.0.0.1:{http_port}/readyz")).await;
    wait_ready(&format!("http://127.0.0.1:{ops_port}/readyz")).await;

    // Two orders that succeed, then the doomed one.
    let client = reqwest::Client::new();
    for sku in ["BOOK-1", "MUG-2", "DOOMED-3"] {
        let body = serde_json::json!({"customer_id": "c-1", "items": [{"sku": sku, "quantity": 1, "unit_price_cents": 100}], "currency": "EUR"});
        let response = client
            .post(format!("http://127.0.0.1:{http_port}/v1/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    // One more, from a caller whose own trace is not sampled: under the
    // default parent-based sampler no kafkit span is kept for it, and its
    // confirmation carries the caller's trace id, still marked not sampled.
    let unsampled_trace = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::json!({"customer_id": "c-2", "items": [{"sku": "PEN-4", "quantity": 1, "unit_price_cents": 100}], "currency": "EUR"});
    let response = client
        .post(format!("http://127.0.0.1:{http_port}/v1/orders"))
        .header(
            "traceparent",
            format!("00-{unsampled_trace}-00f067aa0ba902b7-00"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let b = bootstrap.clone();
    let confirmations = format!("confirmations-{id}");
    let confirmed = tokio::task::spawn_blocking(move || wait_for(&b, &confirmations, 3))
        .await
        .unwrap();
    let confirmed_traces: Vec<String> = confirmed
        .iter()
        .filter_map(|m| {
            m.headers()?
                .iter()
                .find(|h| h.key == "traceparent")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    let unsampled = confirmed_traces
        .iter()
        .find(|tp| tp.split('-').nth(1) == Some(unsampled_trace.as_str()))
        .unwrap_or_else(|| {
            panic!("no confirmation in trace {unsampled_trace}: {confirmed_traces:?}")
        });
    assert!(unsampled.ends_with("-00"), "{unsampled}");

    let dead = dead_letters(&bootstrap, &dlq, 1).await;
    assert_eq!(dead.len(), 1, "the doomed order is dead-lettered");
    let traceparent = dead[0]
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "traceparent")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("the dead letter keeps its trace context");
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();

    // Replay it (with the fault still on, it dies again).
    let replay = Command::new(env!("CARGO_BIN_EXE_kafkit"))
        .args(["dlq", "replay", &dlq, "--bootstrap-servers", &bootstrap])
        .envs(otel("kafkit"))
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let dead = dead_letters(&bootstrap, &dlq, 2).await;
    assert_eq!(dead.len(), 2, "the replayed order died again");

    // Stopping flushes spans and a last metrics export.
    producer.stop();
    consumer.stop();

    let all = spans(&received);
    assert!(
        all.iter().all(|s| s.trace_id != unsampled_trace),
        "spans were exported for the unsampled caller's trace"
    );
    let trace: Vec<&Seen> = all.iter().filter(|s| s.trace_id == trace_id).collect();
    let by_id: HashMap<&str, &Seen> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    // The chain from the last dead-lettering up to the HTTP request: of the
    // DLQ sends, the one with the longest line of ancestors.
    let ancestors = |span: &Seen| {
        let mut chain = vec![span.clone()];
        while let Some(parent) = by_id.get(chain.last().unwrap().parent.as_str()) {
            chain.push((*parent).clone());
        }
        chain
    };
    let mut chain = trace
        .iter()
        .filter(|s| s.name == format!("send {dlq}"))
        .map(|s| ancestors(s))
        .max_by_key(Vec::len)
        .unwrap_or_else(|| panic!("no DLQ send in trace {trace_id}: {all:#?}"));
    chain.reverse();
    let named: Vec<(String, String)> = chain
        .iter()
        .map(|s| (s.service.clone(), s.name.clone()))
        .collect();
    let hop = |service: &str, name: String| (service.to_owned(), name);
    let expected = vec![
        hop("producer-service", "POST /v1/orders".into()),
        hop("producer-service", format!("send {topic}")),
        hop("consumer-service", format!("process {topic}")),
        hop("consumer-service", format!("send {retry1}")),
        hop("consumer-service", format!("process {retry1}")),
        hop("consumer-service", format!("send {retry2}")),
        hop("consumer-service", format!("process {retry2}")),
        hop("consumer-service", format!("send {dlq}")),
        hop("kafkit", format!("replay {dlq}")),
        hop("kafkit", format!("send {topic}")),
        hop("consumer-service", format!("process {topic}")),
        hop("consumer-service", format!("send {retry1}")),
        hop("consumer-service", format!("process {retry1}")),
        hop("consumer-service", format!("send {retry2}")),
        hop("consumer-service", format!("process {retry2}")),
        hop("consumer-service", format!("send {dlq}")),
    ];
    // The tree, for people reading the test output (--nocapture).
    println!("trace {trace_id}");
    for (depth, span) in chain.iter().enumerate() {
        println!(
            "{:indent$}{} [{}] span {} parent {}",
            "",
            span.name,
            span.service,
            span.span_id,
            if span.parent.is_empty() {
                "-"
            } else {
                &span.parent
            },
            indent = depth * 2
        );
    }
    assert_eq!(named, expected, "span chain of trace {trace_id}");
    assert!(chain[0].parent.is_empty() || chain[0].parent == "0000000000000000");

    // Kinds and semantic-convention attributes.
    assert_eq!(chain[0].kind, SpanKind::Server as i32);
    assert_eq!(chain[0].attributes["http.route"], "/v1/orders");
    assert_eq!(chain[0].attributes["http.response.status_code"], "202");
    let send = &chain[1];
    assert_eq!(send.kind, SpanKind::Producer as i32);
    assert_eq!(send.attributes["messaging.system"], "kafka");
    assert_eq!(send.attributes["messaging.operation.type"], "send");
    assert_eq!(send.attributes["messaging.destination.name"], topic);
    let key = send.attributes["messaging.kafka.message.key"].clone();
    assert_eq!(key.len(), 36, "the order id is the key");
    assert!(send.attributes.contains_key("messaging.kafka.offset"));
    let process = &chain[2];
    assert_eq!(process.kind, SpanKind::Consumer as i32);
    for (attribute, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", topic.as_str()),
        ("messaging.consumer.group.name", group.as_str()),
        ("messaging.kafka.message.key", key.as_str()),
        ("kafkit.outcome", "retried"),
        ("error.type", "injected-transient"),
        ("kafkit.attempt", "1"),
    ] {
        assert_eq!(
            process.attributes.get(attribute).map(String::as_str),
            Some(value),
            "{attribute} on {process:#?}"
        );
    }
    assert!(
        process
            .attributes
            .contains_key("messaging.destination.partition.id")
    );
    assert!(process.attributes.contains_key("messaging.kafka.offset"));
    assert_eq!(chain[6].attributes["kafkit.outcome"], "dead-lettered");
    assert_eq!(chain[6].attributes["kafkit.attempt"], "3");
    assert_eq!(chain[8].kind, SpanKind::Consumer as i32);
    assert_eq!(chain[8].attributes["messaging.destination.name"], dlq);
    assert_eq!(
        chain[10].attributes["kafkit.attempt"], "1",
        "a replay starts over"
    );

    // Metrics over OTLP after: 4 orders + 1 replayed; 3 handled (the
    // unsampled caller's order is counted like any other); the doomed one
    // twice through both tiers and twice dead-lettered.
    let consumed = |stage: &str| {
        exported_sum(
            &received,
            "consumer-service",
            "messaging.client.consumed.messages",
            &[("kafkit.stage", stage)],
        )
    };
    assert_eq!(consumed("main"), 5);
    // A retry record read before it is due is held and read again: reads
    // count every time, processing once.
    assert!(consumed("retry") >= 4, "{}", consumed("retry"));
    let processed = |stage: &str, outcome: &str| {
        exported_sum(
            &received,
            "consumer-service",
            "messaging.process.duration",
            &[("kafkit.stage", stage), ("kafkit.outcome", outcome)],
        )
    };
    assert_eq!(processed("main", "handled"), 3);
    assert_eq!(processed("main", "retried"), 2);
    assert_eq!(processed("retry", "retried"), 2);
    assert_eq!(processed("retry", "dead-lettered"), 2);
    for tier in ["1", "2"] {
        assert_eq!(
            exported_sum(
                &received,
                "consumer-service",
                "kafkit.retries",
                &[
                    ("kafkit.retry.tier", tier),
                    ("error.type", "injected-transient")
                ],
            ),
            2,
            "tier {tier}"
        );
    }
    assert_eq!(
        exported_sum(
            &received,
            "consumer-service",
            "kafkit.dead_letters",
            &[("error.type", "injected-transient")],
        ),
        2
    );
    assert_eq!(
        exported_sum(
            &received,
            "producer-service",
            "messaging.client.sent.messages",
            &[("messaging.destination.name", topic.as_str())],
        ),
        4
    );

    // Log lines inside a span carry its trace id.
    let consumer_log = consumer.log();
    assert!(
        consumer_log
            .lines()
            .any(|line| line.contains(&trace_id) && line.contains("routed a failed record")),
        "no log line with trace {trace_id}:\n{consumer_log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first `count` records of `dlq`, waited for off the runtime.
async fn dead_letters(
    bootstrap: &str,
    dlq: &str,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let (bootstrap, dlq) = (bootstrap.to_owned(), dlq.to_owned());
    tokio::task::spawn_blocking(move || wait_for(&bootstrap, &dlq, count))
        .await
        .unwrap()
}
