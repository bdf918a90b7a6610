//! What a run measured, as the JSON report says it: throughput, latency
//! percentiles, errors by code, node memory, CPU, and the catch-up phase.
//! Plain data: the counters behind it live in `stats`.

use std::collections::{BTreeMap, HashMap};

use chat_node::protocol::ErrorCode;
use serde::Serialize;

use crate::cpu::CpuUse;

/// Percentiles of a set of latency samples.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `samples` (µs; sorted in place), in ms.
    pub fn from_us(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        let pick = |q: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Latency {
            count: samples.len(),
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: samples.last().map_or(0.0, |m| *m as f64 / 1000.0),
        }
    }
}

/// Memory of one node before and after the sessions connected.
#[derive(Debug, Clone, Serialize)]
pub struct NodeMemory {
    pub node: String,
    pub sessions: usize,
    pub rss_before_bytes: u64,
    pub rss_connected_bytes: u64,
    pub rss_end_bytes: u64,
    /// (connected - before) / sessions: memory each idle session costs.
    pub bytes_per_session: f64,
}

/// The share of a window's messages delivered after it closed beyond which
/// a run is reported as saturated. A run that keeps up delivers all but
/// the last few milliseconds' messages inside the window (well under 1 %
/// of a 20-second window).
pub const SATURATED_LATE_SHARE: f64 = 0.01;

/// Whether a run fell behind: more than [`SATURATED_LATE_SHARE`] of the
/// `delivered` messages sent in the window arrived after it.
pub fn saturated(delivered: u64, delivered_after_window: u64) -> bool {
    delivered > 0 && delivered_after_window as f64 > SATURATED_LATE_SHARE * delivered as f64
}

/// The JSON report of one load-generator process.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: String,
    pub command: String,
    pub nodes: Vec<String>,
    pub users: usize,
    pub devices: usize,
    pub sessions: usize,
    pub connect_seconds: f64,
    pub target_rate: u32,
    pub duration_s: u64,
    pub sent_acked: u64,
    pub sent_per_s: f64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    /// Of `delivered`: messages sent in the window and delivered after it
    /// closed.
    pub delivered_after_window: u64,
    /// More than [`SATURATED_LATE_SHARE`] of the window's messages were
    /// delivered after it: the servers fell behind the offered rate, the
    /// latencies measure the queue, and CPU per message (the window's CPU
    /// over the window's messages) is an underestimate.
    pub saturated: bool,
    pub latency: Latency,
    /// Acknowledged messages' deliveries that never arrived.
    pub lost: u64,
    /// Deliveries beyond one per device.
    pub duplicated: u64,
    pub errors: HashMap<ErrorCode, u64>,
    pub backpressure: u64,
    /// Sessions the node closed during the run, by close code.
    pub sessions_closed: BTreeMap<String, u64>,
    pub node_memory: Vec<NodeMemory>,
    pub generator_rss_bytes: u64,
    /// CPU use over the measuring window of the generator and the watched
    /// processes.
    pub cpu: Vec<CpuUse>,
    /// The catch-up phase, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncReport>,
    /// Members per group in the group scenario (0: one-to-one).
    pub group_size: usize,
    pub groups: usize,
    /// CPU time over the window per delivered `msg` copy, in µs, of each
    /// process in `cpu`.
    pub cpu_us_per_delivered_copy: BTreeMap<String, f64>,
}

/// What the catch-up phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub users: usize,
    pub pages: u64,
    pub entries: u64,
    /// Entries received per second over the whole phase (users one after
    /// another, on one connection each).
    pub entries_per_s: f64,
    /// From sending `sync` to its `synced` reply, per page.
    pub page_latency: Latency,
    /// Acknowledged messages of these users missing from their inboxes.
    pub missing: u64,
    /// Inbox entries seen more than once.
    pub duplicated: u64,
    pub errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let l = Latency::from_us(&mut v);
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Latency::from_us(&mut []).p99_ms, 0.0);
    }

    #[test]
    fn a_run_is_saturated_when_more_than_one_percent_arrives_after_the_window() {
        assert!(!saturated(0, 0));
        assert!(!saturated(200_000, 2_000));
        assert!(saturated(200_000, 2_001));
        assert!(saturated(100, 100));
    }
}
