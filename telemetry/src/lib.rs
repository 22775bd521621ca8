//! One telemetry setup for every kafkit binary.
//!
//! `init` installs `tracing` with an OpenTelemetry layer, logs as text (JSON
//! with `LOG_FORMAT=json`), and exports spans over OTLP when an endpoint is
//! configured by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; protocol from
//! `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`, `http/protobuf` (the default) or
//! `http/json`; resource from `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES`). Without an endpoint nothing is exported,
//! nothing complains and no OpenTelemetry spans are built (they cost
//! throughput); records then keep the `traceparent` they were given, so a
//! record's trace id still survives every hop and still shows in the logs. [`metrics`] does the same for metrics, per
//! service, with Prometheus text for `/metrics`; [`context`] moves W3C
//! context between spans and record headers.

#![warn(missing_docs)]

pub mod context;
pub mod metrics;
pub mod sampling;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The environment variables telemetry reads (here or in the OpenTelemetry
/// SDK and exporter), besides those of the services' own settings.
pub const ENVIRONMENT: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "LOG_FORMAT",
    "RUST_LOG",
];

/// How a binary wants its telemetry.
#[derive(Debug, Clone)]
pub struct Options {
    /// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
    pub service_name: String,
    /// Log filter unless `RUST_LOG` says otherwise.
    pub default_filter: String,
    /// Log to stderr (command-line tools) instead of stdout (services).
    pub stderr: bool,
}

/// What `init` installed; `shutdown` (or drop) flushes the spans.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
}

/// The resource every signal of this process carries.
pub fn resource(service_name: &str) -> Resource {
    let builder = Resource::builder();
    if env_set("OTEL_SERVICE_NAME") {
        builder.build()
    } else {
        builder.with_service_name(service_name.to_owned()).build()
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The OTLP endpoint configured for `signal` (`TRACES` or `METRICS`), if any.
pub(crate) fn endpoint(signal: &str) -> Option<String> {
    if sdk_disabled() {
        return None;
    }
    [
        format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"),
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// True when no protocol variable is set: then kafkit picks `http/protobuf`,
/// the OTLP default (the exporter crate would otherwise pick by features).
pub(crate) fn protocol_unset(signal: &str) -> bool {
    !env_set(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
        && !env_set("OTEL_EXPORTER_OTLP_PROTOCOL")
}

fn span_exporter() -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = if protocol_unset("TRACES") {
        builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
    } else {
        builder.build()
    };
    exporter.context("invalid OTLP trace exporter settings")
}

/// Installs the global subscriber, tracer provider and W3C propagator.
/// Call once, inside the tokio runtime (the gRPC exporter needs it).
pub fn init(options: Options) -> anyhow::Result<Telemetry> {
    let resource = resource(&options.service_name);
    let exporting_to = endpoint("TRACES");
    // The sampler the environment asks for, except that a root kafkit
    // already decided to keep is kept (see `sampling`).
    let configured = opentelemetry_sdk::trace::Config::default().sampler;
    let mut provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampling::HonourRootDecisions(configured));
    if exporting_to.is_some() {
        provider = provider.with_batch_exporter(span_exporter()?);
    }
    let tracer_provider = provider.build();
    let tracer = tracer_provider.tracer("kafkit");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());

    // The log filter applies to log lines only; spans of interest are
    // `info` and always reach the OpenTelemetry layer, so trace context
    // flows even when a command logs only warnings.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&options.default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let terminal = if options.stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    // Colour only for a person at a terminal who did not ask for none
    // (https://no-color.org: `NO_COLOR` set and not empty).
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(terminal && !json && !no_color);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match (json, options.stderr) {
        (true, true) => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        (true, false) => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        (false, true) => fmt.with_writer(std::io::stderr).with_filter(filter).boxed(),
        (false, false) => fmt.with_filter(filter).boxed(),
    };
    // Only when spans go somewhere: building OpenTelemetry spans for every
    // record costs throughput (measured in docs/benchmarks.md). Without
    // it the records keep the `traceparent` they were given, so a record's
    // trace id still survives its hops, and logs still show it.
    let sampler = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
    let sampler = sampler.trim();
    // `always_off` keeps no span: none is built.
    let building = exporting_to.is_some() && sampler != "always_off";
    if building {
        context::spans_built(sampler.is_empty() || sampler.starts_with("parentbased_"));
        let ratio = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        if let Some(rule) = sampling::RootRule::from_env(sampler, ratio.as_deref()) {
            sampling::set_root_rule(rule);
        }
    }
    // Per span, only the fields kafkit declares: no source location, thread
    // or busy/idle timings (each an attribute built and exported per
    // record), and no OpenTelemetry context made current at every poll of
    // an instrumented future (kafkit reads a span's context from the span).
    let spans = building.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_context_activation(false)
            .with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .context("a tracing subscriber was already installed")?;
    if let Some(endpoint) = &exporting_to {
        tracing::info!(endpoint, "exporting spans over OTLP");
    }
    Ok(Telemetry { tracer_provider })
}

impl Telemetry {
    /// Exports what is buffered and stops; later spans are dropped.
    pub fn shutdown(&self) {
        if let Err(e) = self.tracer_provider.shutdown() {
            // Already shut down, or the collector did not answer: nothing to do.
            tracing::debug!(error = %e, "span export shutdown");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}
