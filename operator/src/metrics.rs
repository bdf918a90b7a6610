//! Operator metrics: reconciles, errors, durations, collections by kind.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// A ChatCluster. Not `namespace`: Prometheus gives the scraped operator's
/// own namespace that name, and would rename this one `exported_namespace`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub chatcluster_namespace: String,
    pub chatcluster: String,
}

/// The kinds of `collected`.
pub const COLLECTED_KINDS: [&str; 4] = ["queue", "registry", "presence", "consumer"];

/// The operator's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabel, Counter>,
    pub duration: Histogram,
    /// Things collected from the backends: `queue`, `registry`, `presence`,
    /// `consumer` (of the archive feed).
    pub collected: Family<KindLabel, Counter>,
    /// Things waiting to be collected, per ChatCluster (its
    /// `status.pendingCleanup`): an alert fires when they stay.
    pub pending_cleanup: Family<ClusterLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("parley_operator");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            reconciles: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            collected: Family::default(),
            pending_cleanup: Family::default(),
        };
        r.register("reconciles", "Reconciles run", m.reconciles.clone());
        r.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            m.errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            m.duration.clone(),
        );
        r.register(
            "collected",
            "Things collected after gone nodes, by kind",
            m.collected.clone(),
        );
        r.register(
            "pending_cleanup",
            "Things waiting to be collected after gone nodes, by ChatCluster",
            m.pending_cleanup.clone(),
        );
        // Every series a query may name exists from the start, at zero (a
        // family with no series is not exposed at all). `pending_cleanup`
        // has one per ChatCluster, once it is reconciled.
        for error in crate::Error::METRIC_LABELS {
            let _ = m.errors.get_or_create(&ErrorLabel { error });
        }
        for kind in COLLECTED_KINDS {
            let _ = m.collected.get_or_create(&KindLabel { kind });
        }
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }
}

impl Metrics {
    /// Counts a reconcile and records its duration when dropped.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    pub fn error(&self, e: &crate::Error) {
        self.errors
            .get_or_create(&ErrorLabel {
                error: e.metric_label(),
            })
            .inc();
    }

    pub fn collected(&self, kind: &'static str, n: u64) {
        if n > 0 {
            self.collected.get_or_create(&KindLabel { kind }).inc_by(n);
        }
    }

    /// Sets what waits to be collected for a ChatCluster.
    pub fn pending_cleanup(&self, namespace: &str, chatcluster: &str, n: usize) {
        self.pending_cleanup
            .get_or_create(&ClusterLabels {
                chatcluster_namespace: namespace.to_owned(),
                chatcluster: chatcluster.to_owned(),
            })
            .set(n as i64);
    }

    /// Forgets a deleted ChatCluster.
    pub fn forget(&self, namespace: &str, chatcluster: &str) {
        self.pending_cleanup.remove(&ClusterLabels {
            chatcluster_namespace: namespace.to_owned(),
            chatcluster: chatcluster.to_owned(),
        });
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's duration on drop.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
