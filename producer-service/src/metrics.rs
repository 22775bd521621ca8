//! Prometheus metrics of the service, rendered at `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{route,status}`
    pub requests: IntCounterVec,
    /// `http_requests_in_flight`
    pub in_flight: IntGauge,
    /// `events_produced_total{topic}`: acknowledged by the broker.
    pub produced: IntCounterVec,
    /// `events_failed_total{reason}`: not accepted (unavailable, rejected).
    pub failed: IntCounterVec,
    /// `produce_latency_seconds`: encode + send until the broker's acknowledgement.
    pub produce_latency: Histogram,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )?;
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served")?;
        let produced = IntCounterVec::new(
            Opts::new("events_produced_total", "Events acknowledged by the broker"),
            &["topic"],
        )?;
        let failed = IntCounterVec::new(
            Opts::new("events_failed_total", "Events not accepted, by reason"),
            &["reason"],
        )?;
        let produce_latency = Histogram::with_opts(
            HistogramOpts::new(
                "produce_latency_seconds",
                "Encode and produce until acknowledged",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(produced.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(produce_latency.clone()))?;
        Ok(Self {
            registry,
            requests,
            in_flight,
            produced,
            failed,
            produce_latency,
        })
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding gathered metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
