//! The `Context`: everything a reconcile needs, and the only way its
//! dependencies reach it, so tests can hand it an API double. It also keeps
//! the per-cluster state that lives between reconciles (failure counts for
//! backoff, backend connections), dropped when a cluster is deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use crate::crd::ChatCluster;
use crate::gc::{BackendError, Backends};
use crate::metrics::Metrics;

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// How long deletion waits for unreachable backends before letting go.
    pub cleanup_deadline: Duration,
    /// Per ChatCluster (by namespace/name): state kept between reconciles.
    clusters: Mutex<HashMap<String, ClusterState>>,
}

/// What the operator remembers about one ChatCluster between reconciles.
#[derive(Default)]
struct ClusterState {
    /// Consecutive failed or degraded reconciles, for backoff.
    failures: u32,
    /// Its backends, kept so their connections are reused.
    backends: Option<Arc<Backends>>,
}

/// Which ChatCluster per-cluster state belongs to: `namespace/name`.
pub fn cluster_key(cc: &ChatCluster) -> String {
    format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any())
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, cleanup_deadline: Duration) -> Context {
        let reporter = Reporter {
            controller: "parley-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            cleanup_deadline,
            clusters: Mutex::default(),
        }
    }

    fn clusters(&self) -> MutexGuard<'_, HashMap<String, ClusterState>> {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept backends of `cc`, made anew when its cluster id or backend
    /// addresses changed.
    pub fn backends_for(
        &self,
        cc: &ChatCluster,
        redis_url: &str,
        amqp_url: &str,
    ) -> Result<Arc<Backends>, BackendError> {
        let cluster = cc.cluster_id();
        let mut clusters = self.clusters();
        let state = clusters.entry(cluster_key(cc)).or_default();
        if let Some(b) = &state.backends
            && b.is_for(&cluster, redis_url, amqp_url)
        {
            return Ok(b.clone());
        }
        let b = Arc::new(Backends::new(&cluster, redis_url, amqp_url)?);
        if let Some(old) = state.backends.replace(b.clone()) {
            tokio::spawn(async move { old.close().await });
        }
        Ok(b)
    }

    /// `cc` is gone: drop everything kept for it and close its backends.
    pub async fn forget(&self, cc: &ChatCluster) {
        let state = self.clusters().remove(&cluster_key(cc));
        if let Some(b) = state.and_then(|s| s.backends) {
            b.close().await;
        }
    }

    /// The operator stops: close every kept backend connection.
    pub async fn close_all(&self) {
        let kept: Vec<Arc<Backends>> = self
            .clusters()
            .drain()
            .filter_map(|(_, s)| s.backends)
            .collect();
        for b in kept {
            b.close().await;
        }
    }

    /// How many ChatClusters the operator keeps state for.
    pub fn tracked_clusters(&self) -> usize {
        self.clusters().len()
    }

    /// How many ChatClusters have backends kept.
    pub fn kept_backends(&self) -> usize {
        self.clusters()
            .values()
            .filter(|s| s.backends.is_some())
            .count()
    }

    /// The retry delay after one more failure of `cc`: 5 s doubling to 5
    /// minutes.
    pub fn backoff(&self, cc: &ChatCluster) -> Duration {
        let mut clusters = self.clusters();
        let state = clusters.entry(cluster_key(cc)).or_default();
        state.failures = state.failures.saturating_add(1);
        backoff_delay(state.failures)
    }

    /// `cc` reconciled cleanly: the next failure starts over.
    pub fn succeeded(&self, cc: &ChatCluster) {
        if let Some(state) = self.clusters().get_mut(&cluster_key(cc)) {
            state.failures = 0;
        }
    }

    /// Publishes a Kubernetes Event on the ChatCluster (best effort).
    pub async fn event(&self, cc: &ChatCluster, type_: EventType, reason: &str, note: &str) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &cc.object_ref(&())).await {
            tracing::debug!(error = %e, "cannot publish event");
        }
    }
}

/// 5 s after the first failure, doubling, at most 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let d: Vec<u64> = (1..=9).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(d, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
