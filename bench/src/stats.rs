//! The live counters of one run, filled by the sessions' readers while the
//! traffic flows, and the exactly-once check over them.

use std::collections::{BTreeMap, HashMap, HashSet};

use chat_node::protocol::ErrorCode;

/// The maps the readers touch for every frame, keyed by message id:
/// foldhash rather than SipHash (the ids come from the nodes under test,
/// not from an adversary), a measurable part of the generator's CPU.
pub type IdMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Shared counters of one run (behind a mutex: a few operations per frame).
#[derive(Debug, Default)]
pub struct Stats {
    /// End-to-end latencies (send to `msg`) of messages sent in the window, in µs.
    pub latencies_us: Vec<u64>,
    /// Deliveries seen per message id.
    pub deliveries: IdMap<u32>,
    /// Acknowledged message ids with how many deliveries each must get.
    pub acked: IdMap<u32>,
    /// `msg` frames received inside the measuring window.
    pub delivered_in_window: u64,
    /// Sends acknowledged inside the measuring window.
    pub acked_in_window: u64,
    /// Of `delivered_in_window`: messages sent in the window whose `msg`
    /// arrived after it closed (the servers' work on them fell outside the
    /// CPU measured over the window).
    pub delivered_after_window: u64,
    /// `error` frames received, by code.
    pub errors: HashMap<ErrorCode, u64>,
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
            deliveries: IdMap::with_capacity_and_hasher(messages, Default::default()),
            acked: IdMap::with_capacity_and_hasher(messages, Default::default()),
            ..Default::default()
        }
    }
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
