//! What the parts share: the sample order, rates and their medians, the
//! registry's request counter.

use anyhow::Context;
use shared_events::OrderPlaced;
use std::time::Duration;

pub(crate) fn order() -> OrderPlaced {
    OrderPlaced {
        customer_id: "bench-customer".into(),
        ..crate::dev::check::sample_order()
    }
}

pub(crate) async fn registry_requests(url: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix("schema_registry_requests_total "))
        .and_then(|n| n.trim().parse().ok())
        .context("the registry's /metrics has no request counter")
}

/// CPU time (user + system) a process has used so far, from `/proc`.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every platform kafkit runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// A rate and the CPU it cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub per_second: f64,
    /// CPU microseconds per record of the process doing the job.
    pub cpu_us: f64,
}

impl Rate {
    pub(crate) fn new(count: usize, took: Duration, cpu: Option<Duration>) -> Self {
        Self {
            per_second: count as f64 / took.as_secs_f64(),
            cpu_us: cpu.map_or(f64::NAN, |c| c.as_secs_f64() * 1e6 / count as f64),
        }
    }
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Per-round ratios `a[i] / b[i]`.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

pub fn rates(of: &[Rate]) -> Vec<f64> {
    of.iter().map(|r| r.per_second).collect()
}

pub fn cpu(of: &[Rate]) -> Vec<f64> {
    of.iter().map(|r| r.cpu_us).collect()
}
