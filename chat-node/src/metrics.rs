//! What a chat operator watches, in Prometheus text format (`/metrics`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::protocol::ErrorCode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// A frame type label (`type="send"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameType {
    pub r#type: &'static str,
}

/// The node's metrics; cheap to clone (every metric is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// WebSocket connections open, authenticated or not.
    pub connections_open: Gauge,
    /// Connections by state: `authenticating`, `active`, `draining`.
    pub sessions: Family<StateLabel, Gauge>,
    pub messages_stored: Counter,
    /// `typing` frames dropped by the per-conversation limit.
    pub typing_dropped: Counter,
    /// `msg` frames queued for local sessions.
    pub messages_delivered: Counter,
    pub errors: Family<CodeLabel, Counter>,
    pub frames_received: Family<FrameType, Counter>,
    /// From a `send` frame arriving to its `sent` reply being written.
    pub send_seconds: Histogram,
    pub bus_errors: Counter,
    /// Events the broker confirmed, and the broker messages they filled.
    pub bus_events: Counter,
    pub bus_messages: Counter,
    pub sessions_stopped_slow: Counter,
    /// Resident memory of the process, read when metrics are scraped.
    pub resident_memory: Gauge,
    /// 1 while `/readyz` would answer ready, read when metrics are scraped.
    pub ready: Gauge,
    /// The drain grace this node gives its sessions.
    pub drain_grace_seconds: Gauge,
    /// When this node started draining (Unix seconds); 0 until it does.
    pub drain_started: Gauge,
    /// This node's archiver.
    pub archiver: crate::store::redis::archiver::ArchiverMetrics,
    /// JWT connect tokens refused (bad signature, claims, revoked jti...).
    pub jwt_refused: Counter,
    /// The offline push webhook.
    pub push: crate::push::PushMetrics,
}

impl Metrics {
    /// The counters a bus updates.
    pub fn bus(&self) -> crate::bus::BusMetrics {
        crate::bus::BusMetrics {
            errors: self.bus_errors.clone(),
            events: self.bus_events.clone(),
            messages: self.bus_messages.clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("chat");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            connections_open: Gauge::default(),
            sessions: Family::default(),
            messages_stored: Counter::default(),
            typing_dropped: Counter::default(),
            messages_delivered: Counter::default(),
            errors: Family::default(),
            frames_received: Family::default(),
            // 0.1 ms .. ~3.3 s
            send_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            bus_errors: Counter::default(),
            bus_events: Counter::default(),
            bus_messages: Counter::default(),
            sessions_stopped_slow: Counter::default(),
            resident_memory: Gauge::default(),
            ready: Gauge::default(),
            drain_grace_seconds: Gauge::default(),
            drain_started: Gauge::default(),
            archiver: Default::default(),
            jwt_refused: Counter::default(),
            push: Default::default(),
        };
        r.register(
            "jwt_refused",
            "JWT connect tokens refused (signature, algorithm, kid, claims, time, revoked jti)",
            m.jwt_refused.clone(),
        );
        r.register(
            "push_webhook",
            "Offline push webhook results: events sent (accepted), attempts retried, events dropped (queue full) and failed (refused for good or out of retry time)",
            m.push.results.clone(),
        );
        r.register(
            "push_queue",
            "Offline push events waiting or in flight",
            m.push.queued.clone(),
        );
        let a = &m.archiver;
        r.register(
            "archive_messages_written",
            "Messages this node's archiver wrote to SQL (a replayed batch counts again)",
            a.archived.clone(),
        );
        r.register(
            "archive_errors",
            "Batches SQL refused (each is retried until it commits)",
            a.errors.clone(),
        );
        r.register(
            "archive_rejected",
            "Messages SQL refused for their data (each time): they stay in Redis, their feed entries pending",
            a.rejected.clone(),
        );
        r.register(
            "archive_trimmed",
            "Archived messages that left Redis (beyond the hot window)",
            a.trimmed.clone(),
        );
        r.register(
            "archive_lag_entries",
            "Messages stored but not yet archived (entries in the archive feed)",
            a.lag_entries.clone(),
        );
        r.register(
            "archive_lag_seconds",
            "Age of the oldest message not yet archived",
            a.lag_seconds.clone(),
        );
        r.register(
            "connections_open",
            "WebSocket connections open",
            m.connections_open.clone(),
        );
        r.register("sessions", "Connections by state", m.sessions.clone());
        r.register(
            "messages_stored",
            "Messages stored",
            m.messages_stored.clone(),
        );
        r.register(
            "typing_dropped",
            "Typing frames dropped by the per-conversation limit",
            m.typing_dropped.clone(),
        );
        r.register(
            "messages_delivered",
            "Message frames queued for local sessions",
            m.messages_delivered.clone(),
        );
        r.register("errors", "Error frames sent, by code", m.errors.clone());
        r.register(
            "frames_received",
            "Client frames received, by type",
            m.frames_received.clone(),
        );
        r.register(
            "send_duration_seconds",
            "Time from send frame to sent reply",
            m.send_seconds.clone(),
        );
        r.register(
            "bus_publish_errors",
            "Deliveries the bus could not publish",
            m.bus_errors.clone(),
        );
        r.register(
            "bus_events_published",
            "Deliveries and kicks the broker confirmed",
            m.bus_events.clone(),
        );
        r.register(
            "bus_messages_published",
            "Broker messages those events were coalesced into",
            m.bus_messages.clone(),
        );
        r.register(
            "sessions_stopped_slow",
            "Sessions closed as too slow: their delivery queue overflowed, or a write to them timed out",
            m.sessions_stopped_slow.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory of the chat-node process",
            m.resident_memory.clone(),
        );
        r.register(
            "ready",
            "1 while the node is ready (what /readyz says), else 0",
            m.ready.clone(),
        );
        r.register(
            "drain_grace_seconds",
            "Seconds a draining node gives its sessions to move",
            m.drain_grace_seconds.clone(),
        );
        r.register(
            "drain_started_timestamp_seconds",
            "When the node started draining (Unix seconds); 0 while it serves",
            m.drain_started.clone(),
        );
        // Every series a query may name exists from the start, at zero: a
        // family with no series is not exposed at all, and a counter's
        // first increment is only a rate when its zero was seen.
        for code in <ErrorCode as strum::IntoEnumIterator>::iter() {
            let _ = m.errors.get_or_create(&CodeLabel { code: code.into() });
        }
        for ty in crate::protocol::client::Command::NAMES {
            let _ = m.frames_received.get_or_create(&FrameType { r#type: ty });
        }
        for result in crate::push::RESULTS {
            let _ = m
                .push
                .results
                .get_or_create(&crate::push::ResultLabel { result });
        }
        for state in SESSION_STATES {
            let _ = m.sessions.get_or_create(&StateLabel { state });
        }
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel { code: code.into() })
            .inc();
    }

    pub fn frame(&self, ty: &'static str) {
        self.frames_received
            .get_or_create(&FrameType { r#type: ty })
            .inc();
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The states of `chat_sessions`: what [`StateGauge`] is given.
pub const SESSION_STATES: [&str; 3] = ["authenticating", "active", "draining"];

/// Counts one connection in one state of `chat_sessions` until dropped.
pub struct StateGauge {
    family: Family<StateLabel, Gauge>,
    state: &'static str,
}

impl StateGauge {
    pub fn new(metrics: &Metrics, state: &'static str) -> Self {
        metrics.sessions.get_or_create(&StateLabel { state }).inc();
        StateGauge {
            family: metrics.sessions.clone(),
            state,
        }
    }
    pub fn set(&mut self, state: &'static str) {
        if state != self.state {
            self.family
                .get_or_create(&StateLabel { state: self.state })
                .dec();
            self.family.get_or_create(&StateLabel { state }).inc();
            self.state = state;
        }
    }
}

impl Drop for StateGauge {
    fn drop(&mut self) {
        self.family
            .get_or_create(&StateLabel { state: self.state })
            .dec();
    }
}

/// Resident memory of this process (Linux: `/proc/self/statm`), in bytes.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
