//! Metrics through OpenTelemetry, per service: read as Prometheus text for
//! `/metrics`, and exported over OTLP when an endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._METRICS_ENDPOINT`, every
//! `OTEL_METRIC_EXPORT_INTERVAL` ms, 60 s by default).
//!
//! Each service builds its own pipeline rather than a process-global one,
//! so two services in one test process keep separate counts.

use anyhow::Context as _;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

/// Bucket bounds for durations in seconds, as the semantic conventions
/// advise (the SDK's defaults are meant for milliseconds).
pub const SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// One service's meter provider: Prometheus text for `/metrics`, OTLP
/// export when an endpoint is configured.
#[derive(Debug, Clone)]
pub struct MetricsPipeline {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

impl MetricsPipeline {
    /// A pipeline for the service `service_name` (unless
    /// `OTEL_SERVICE_NAME` names it), with a periodic OTLP exporter when
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is set and `OTEL_SDK_DISABLED` is not `true`.
    pub fn new(service_name: &str) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .context("failed to build the Prometheus reader")?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(crate::resource(service_name))
            .with_reader(prometheus);
        if crate::endpoint("METRICS").is_some() {
            let exporter = opentelemetry_otlp::MetricExporter::builder();
            let exporter = if crate::protocol_unset("METRICS") {
                exporter
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .build()
            } else {
                exporter.build()
            }
            .context("invalid OTLP metric exporter settings")?;
            builder = builder.with_periodic_exporter(exporter);
        }
        Ok(Self {
            provider: builder.build(),
            registry,
        })
    }

    /// A meter for the instrumentation scope `scope`: the library that
    /// records, e.g. `kafkit-runtime`.
    pub fn meter(&self, scope: &'static str) -> Meter {
        self.provider.meter(scope)
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding gathered metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Exports what is pending over OTLP and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "metric export shutdown");
        }
    }
}

/// The sum of every series of `name` in Prometheus `text` whose labels
/// include all of `labels` (for tests and benchmarks reading `/metrics`).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            let matches = (series.is_empty() || series.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;

    #[test]
    fn counters_and_histograms_render_as_prometheus_text_with_units() {
        let pipeline = MetricsPipeline::new("test-service").unwrap_or_else(|e| panic!("{e}"));
        let meter = pipeline.meter("test");
        let sent = meter
            .u64_counter("messaging.client.sent.messages")
            .with_unit("{message}")
            .build();
        sent.add(3, &[KeyValue::new("messaging.destination.name", "orders")]);
        let duration = meter
            .f64_histogram("messaging.process.duration")
            .with_unit("s")
            .with_boundaries(SECONDS_BUCKETS.to_vec())
            .build();
        duration.record(0.25, &[]);
        let text = pipeline.render();
        assert!(
            text.contains(
                r#"messaging_client_sent_messages_total{messaging_destination_name="orders"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains("messaging_process_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"messaging_process_duration_seconds_bucket{le="0.25"} 1"#)
                && text.contains(r#"messaging_process_duration_seconds_bucket{le="0.1"} 0"#),
            "seconds buckets: {text}"
        );
        assert_eq!(
            sum(
                &text,
                "messaging_client_sent_messages_total",
                &[("messaging_destination_name", "orders")]
            ),
            3.0
        );
        assert_eq!(
            sum(
                &text,
                "messaging_client_sent_messages_total",
                &[("messaging_destination_name", "other")]
            ),
            0.0
        );
        assert_eq!(
            sum(&text, "messaging_process_duration_seconds_count", &[]),
            1.0
        );
        pipeline.shutdown();
    }
}
