//! What a run measured: latencies, deliveries per message id (for the
//! exactly-once check), errors by code, node memory; and the JSON report.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// Shared counters of one run (behind a mutex: a few operations per frame).
#[derive(Debug, Default)]
pub struct Stats {
    /// End-to-end latencies (send to `msg`) of messages sent in the window, in µs.
    pub latencies_us: Vec<u64>,
    /// Deliveries seen per message id.
    pub deliveries: HashMap<String, u32>,
    /// Acknowledged message ids with how many deliveries each must get.
    pub acked: HashMap<String, u32>,
    /// `msg` frames received inside the measuring window.
    pub delivered_in_window: u64,
    /// Sends acknowledged inside the measuring window.
    pub acked_in_window: u64,
    pub errors: BTreeMap<String, u64>,
    /// Sends that could not be queued because a session's writer was full.
    pub backpressure: u64,
    /// Sessions the node closed during the run, by close code.
    pub closed: BTreeMap<String, u64>,
    /// For the users sampled for the catch-up phase: the acknowledged
    /// messages their inboxes must hold.
    pub inbox_expected: HashMap<String, HashSet<String>>,
}

impl Stats {
    /// Stats sized for about `messages` messages, so the maps never rehash
    /// (a pause that would show up as latency) while traffic runs.
    pub fn with_capacity(messages: usize) -> Stats {
        Stats {
            latencies_us: Vec::with_capacity(messages),
            deliveries: HashMap::with_capacity(messages),
            acked: HashMap::with_capacity(messages),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
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
    pub latency: Latency,
    /// Acknowledged messages' deliveries that never arrived.
    pub lost: u64,
    /// Deliveries beyond one per device.
    pub duplicated: u64,
    pub errors: BTreeMap<String, u64>,
    pub backpressure: u64,
    /// Sessions the node closed during the run, by close code.
    pub sessions_closed: BTreeMap<String, u64>,
    pub node_memory: Vec<NodeMemory>,
    pub generator_rss_bytes: u64,
    /// CPU use over the measuring window of the generator and the watched
    /// processes.
    pub cpu: Vec<super::cpu::CpuUse>,
    /// The catch-up phase, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<super::sync::SyncReport>,
}

/// (lost, duplicated) deliveries of the acknowledged messages.
pub fn exactly_once(stats: &Stats) -> (u64, u64) {
    let mut lost = 0u64;
    let mut dup = 0u64;
    for (id, want) in &stats.acked {
        let got = stats.deliveries.get(id).copied().unwrap_or(0);
        lost += u64::from(want.saturating_sub(got));
        dup += u64::from(got.saturating_sub(*want));
    }
    (lost, dup)
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
    fn loss_and_duplicates_are_counted_per_message() {
        let mut s = Stats::default();
        s.acked.insert("a".into(), 2);
        s.acked.insert("b".into(), 1);
        s.acked.insert("c".into(), 1);
        s.deliveries.insert("a".into(), 1);
        s.deliveries.insert("b".into(), 3);
        assert_eq!(exactly_once(&s), (2, 2));
    }
}
