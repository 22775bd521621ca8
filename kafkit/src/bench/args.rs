//! The settings of `kafkit bench`.

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events per publish round.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Records in flight at once in the publish benchmark.
    #[arg(long, default_value_t = 1_000)]
    pub in_flight: usize,
    /// Requests per HTTP round (enough for a p99 of 200 requests).
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// `linger.ms` of both publish paths and of producer-service.
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,
    /// Orders per round of the real job (consumer-service against the raw pipeline).
    #[arg(long, default_value_t = 200_000)]
    pub job_orders: usize,
    /// Records per round of the I/O-bound handler benchmark.
    #[arg(long, default_value_t = 4_000)]
    pub io_records: usize,
    /// Orders timed end to end (one at a time).
    #[arg(long, default_value_t = 200)]
    pub e2e_orders: usize,
    /// Rounds of each side, alternating.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Run only these parts (comma separated): codec, publish, http,
    /// consume, e2e, latency (end-to-end latency and real-job throughput at
    /// each `--fetch-waits-ms`), telemetry (consume and publish with and
    /// without an OTLP endpoint).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "codec,publish,http,consume,e2e,latency,telemetry"
    )]
    pub only: Vec<Part>,
    /// Encode + decode round trips per round of the codec part.
    #[arg(long, default_value_t = 200_000)]
    pub codec_events: usize,
    /// `fetch.wait.max.ms` values the latency part compares.
    #[arg(long, value_delimiter = ',', default_value = "100,50,25,10,5")]
    pub fetch_waits_ms: Vec<u64>,
    /// Orders each consumer-service run of the telemetry part reads.
    #[arg(long, default_value_t = 100_000)]
    pub telemetry_orders: usize,
    /// Events each publish run of the telemetry part sends.
    #[arg(long, default_value_t = 100_000)]
    pub telemetry_events: usize,
    /// Orders each real-job run of the latency part reads.
    #[arg(long, default_value_t = 50_000)]
    pub latency_job_orders: usize,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Codec,
    Publish,
    Http,
    Consume,
    E2e,
    Latency,
    Telemetry,
}
