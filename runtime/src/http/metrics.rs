//! The metrics of a service that takes requests over HTTP and publishes
//! events, through OpenTelemetry: served as Prometheus text at
//! `GET /metrics` and exported over OTLP when configured. Names follow the
//! HTTP and messaging semantic conventions.

use kafkit_telemetry::metrics::{MetricsPipeline, SECONDS_BUCKETS};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use std::time::Duration;

/// HTTP server and event-send metrics of one service; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    pipeline: MetricsPipeline,
    /// `http.server.request.duration{http.request.method, http.route, http.response.status_code}`, seconds
    request_duration: Histogram<f64>,
    /// `http.server.active_requests{http.request.method, http.route}`
    active_requests: UpDownCounter<i64>,
    /// `messaging.client.sent.messages{messaging.destination.name, error.type}`:
    /// events sent; `error.type` (unavailable, rejected) on those not taken.
    sent: Counter<u64>,
    /// `messaging.client.operation.duration{messaging.destination.name}`:
    /// encode + send until the broker's answer, seconds.
    send_duration: Histogram<f64>,
    /// `kafkit.idempotency.evicted`: remembered answers dropped for room.
    idempotency_evicted: Counter<u64>,
}

impl HttpMetrics {
    /// The metrics of the service called `service_name` (its resource name).
    pub fn new(service_name: &str) -> anyhow::Result<Self> {
        let pipeline = MetricsPipeline::new(service_name)?;
        // The instrumentation scope is the library that records.
        let meter = pipeline.meter("kafkit-runtime");
        Ok(Self {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("HTTP requests by route and status")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            active_requests: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("HTTP requests being served")
                .build(),
            sent: meter
                .u64_counter("messaging.client.sent.messages")
                .with_unit("{message}")
                .with_description("Events sent to Kafka; error.type on those not taken")
                .build(),
            send_duration: meter
                .f64_histogram("messaging.client.operation.duration")
                .with_unit("s")
                .with_description("Encode and send one event until the broker answers")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            idempotency_evicted: meter
                .u64_counter("kafkit.idempotency.evicted")
                .with_unit("{answer}")
                .with_description(
                    "Idempotency-Key answers dropped before their window ended, to stay within IDEMPOTENCY_MAX_BYTES",
                )
                .build(),
            pipeline,
        })
    }

    fn http(method: &str, route: &str) -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route.to_owned()),
        ]
    }

    /// A request began (`http.server.active_requests` + 1).
    pub fn request_started(&self, method: &str, route: &str) {
        self.active_requests.add(1, &Self::http(method, route));
    }

    /// A request ended: its duration by method, route and status.
    pub fn request_finished(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.active_requests.add(-1, &Self::http(method, route));
        let mut attributes = Self::http(method, route);
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        self.request_duration
            .record(took.as_secs_f64(), &attributes);
    }

    /// One event sent to `topic`: taken (`error` None) or not, and how long it took.
    /// One event sent to `topic`: its duration, and `error.type` when it was not taken.
    pub fn event_sent(&self, topic: &str, error: Option<&'static str>, took: Duration) {
        let mut attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", topic.to_owned()),
            KeyValue::new("messaging.operation.name", "send"),
        ];
        self.send_duration.record(took.as_secs_f64(), &attributes);
        if let Some(error) = error {
            attributes.push(KeyValue::new("error.type", error));
        }
        self.sent.add(1, &attributes);
    }

    /// Remembered answers dropped early to stay within the store's bytes.
    pub fn idempotency_evicted(&self, count: usize) {
        if count > 0 {
            self.idempotency_evicted.add(count as u64, &[]);
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.pipeline.render()
    }

    /// Exports what is pending (OTLP) and stops.
    pub fn shutdown(&self) {
        self.pipeline.shutdown();
    }
}
