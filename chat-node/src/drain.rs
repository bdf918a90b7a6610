//! Leaving a node without a reconnect storm. On SIGTERM every session is
//! told `reconnect`, but not at the same instant: the node hands out one
//! slot per session, at most `drain_rate` per second, spread over the
//! grace period (EMQX evacuates at a bounded rate for the same reason),
//! and names in each frame the node to go to, so clients need not all ask
//! `/v1/route` at once. Targets are filled like water: each slot goes to
//! the live node with the fewest sessions counting the ones this drain
//! already sent there. A session keeps being served until its slot; every
//! session still open at the end of the grace is closed (4009).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::shutdown::{Listener, Signal};
use crate::store::NodeRecord;

/// A node's drain: the signal, and the pacing of its `reconnect` frames.
pub struct Drain {
    signal: Signal,
    started: OnceLock<Instant>,
    next_slot: AtomicU64,
    rate: u32,
    grace: Duration,
    /// (address, sessions it has, counting the ones sent there).
    targets: Mutex<Vec<(String, u64)>>,
}

impl Drain {
    pub fn new(rate: u32, grace: Duration) -> Self {
        Drain {
            signal: Signal::default(),
            started: OnceLock::new(),
            next_slot: AtomicU64::new(0),
            rate: rate.max(1),
            grace,
            targets: Mutex::new(Vec::new()),
        }
    }

    /// Starts the drain, sending sessions to `nodes` (the registry as now:
    /// this node and nodes not live are left out).
    pub fn start(&self, nodes: &[NodeRecord], self_port: u16, now_ms: u64) {
        let mut targets: Vec<(String, u64)> = nodes
            .iter()
            .filter(|n| n.port != self_port && n.live(now_ms))
            .map(|n| (n.address.clone(), n.online))
            .collect();
        targets.sort();
        *self.targets.lock().unwrap_or_else(|p| p.into_inner()) = targets;
        let _ = self.started.set(Instant::now());
        self.signal.set();
    }

    pub fn is_draining(&self) -> bool {
        self.signal.is_set()
    }

    pub fn listen(&self) -> Listener {
        self.signal.listen()
    }

    /// When the drain ends: every session still open is closed then.
    pub fn deadline(&self) -> Instant {
        self.started.get().copied().unwrap_or_else(Instant::now) + self.grace
    }

    /// The next session's slot: when to tell it, and where to send it.
    pub fn slot(&self) -> (Instant, Option<String>) {
        let start = self.started.get().copied().unwrap_or_else(Instant::now);
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let at = start + Duration::from_secs_f64(n as f64 / f64::from(self.rate));
        (at.min(self.deadline()), self.target())
    }

    /// The least-loaded target, counting this slot against it.
    fn target(&self) -> Option<String> {
        let mut t = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let best = t.iter_mut().min_by_key(|(_, load)| *load)?;
        best.1 += 1;
        Some(best.0.clone())
    }

    /// Sessions the grace can pace at this rate; beyond that the rest are
    /// closed at the deadline without a paced `reconnect`.
    pub fn capacity(&self) -> u64 {
        (self.grace.as_secs_f64() * f64::from(self.rate)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16, address: &str, online: u64, ready: bool) -> NodeRecord {
        NodeRecord {
            port,
            name: format!("chat-{port}"),
            address: address.into(),
            ready,
            online,
            heartbeat_ms: 1_000,
            instance: "i".into(),
        }
    }

    #[tokio::test]
    async fn slots_are_paced_and_capped_at_the_grace() {
        let d = Drain::new(100, Duration::from_secs(2));
        d.start(&[], 8750, 1_000);
        let (first, _) = d.slot();
        let (second, _) = d.slot();
        assert_eq!(second - first, Duration::from_millis(10));
        for _ in 0..1_000 {
            d.slot();
        }
        // Past what the grace can pace: told at the deadline.
        assert_eq!(d.slot().0, d.deadline());
        assert_eq!(d.capacity(), 200);
    }

    #[tokio::test]
    async fn sessions_fill_the_least_loaded_live_nodes_first() {
        let d = Drain::new(500, Duration::from_secs(15));
        let nodes = [
            node(8750, "self:8750", 0, true),
            node(8760, "a:8760", 10, true),
            node(8770, "b:8770", 12, true),
            node(8780, "dead:8780", 0, false),
        ];
        d.start(&nodes, 8750, 1_000);
        let sent: Vec<String> = (0..6).map(|_| d.slot().1.unwrap()).collect();
        // a takes two to catch up with b, then they alternate.
        assert_eq!(sent.iter().filter(|a| *a == "a:8760").count(), 4);
        assert_eq!(sent.iter().filter(|a| *a == "b:8770").count(), 2);
        assert!(sent.iter().all(|a| a != "self:8750" && a != "dead:8780"));
    }

    #[tokio::test]
    async fn with_no_other_node_there_is_no_address() {
        let d = Drain::new(500, Duration::from_secs(15));
        d.start(&[node(8750, "self:8750", 3, true)], 8750, 1_000);
        assert_eq!(d.slot().1, None);
    }
}
