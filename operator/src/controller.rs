//! The controller: watches ChatClusters and what they own (and their pods),
//! runs [`reconcile`] for each, retries failures with backoff.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::crd::ChatCluster;
use crate::gc::{BackendError, Backends};
use crate::metrics::Metrics;
use crate::{Error, reconcile as rec};

/// Everything a reconcile needs: the only way dependencies reach it, so tests
/// can hand it an API double.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// How long deletion waits for unreachable backends before letting go.
    pub cleanup_deadline: Duration,
    /// Consecutive failed or degraded reconciles per cluster, for backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// The backends of each ChatCluster (by namespace/name), kept between
    /// reconciles so their connections are reused.
    backends: std::sync::Mutex<std::collections::HashMap<String, Arc<Backends>>>,
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
            failures: Default::default(),
            backends: Default::default(),
        }
    }

    /// The kept backends of the ChatCluster `key` (namespace/name), made
    /// anew when its cluster id or backend addresses changed.
    pub fn backends_for(
        &self,
        key: &str,
        cluster: &str,
        redis_url: &str,
        amqp_url: &str,
    ) -> Result<Arc<Backends>, BackendError> {
        let mut kept = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = kept.get(key)
            && b.is_for(cluster, redis_url, amqp_url)
        {
            return Ok(b.clone());
        }
        let b = Arc::new(Backends::new(cluster, redis_url, amqp_url)?);
        if let Some(old) = kept.insert(key.to_owned(), b.clone()) {
            tokio::spawn(async move { old.close().await });
        }
        Ok(b)
    }

    /// The ChatCluster `key` is gone: close and drop its backends.
    pub async fn forget_backends(&self, key: &str) {
        let old = self
            .backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        if let Some(old) = old {
            old.close().await;
        }
    }

    /// How many ChatClusters have backends kept.
    pub fn kept_backends(&self) -> usize {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The retry delay after one more failure of `key`: 5 s doubling to 5
    /// minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    /// `key` reconciled cleanly: the next failure starts over.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
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

/// Reconciles one ChatCluster.
pub async fn reconcile(cc: Arc<ChatCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    if cc.metadata.deletion_timestamp.is_some() {
        return rec::cleanup(&cc, &ctx).await;
    }
    if cc.paused() {
        return rec::paused(&cc, &ctx).await;
    }
    rec::ensure_finalizer(&cc, &Api::namespaced(ctx.client.clone(), &ns)).await?;
    let healthy = rec::apply_cluster(&cc, &ctx).await?;
    // Degraded (a backend down, an invalid spec) is retried with backoff too.
    Ok(if healthy {
        ctx.succeeded(&key(&cc));
        Action::requeue(rec::RESYNC)
    } else {
        Action::requeue(ctx.backoff(&key(&cc)))
    })
}

/// Logs, counts, reports (as an Event) and retries a failed reconcile,
/// backing off while it keeps failing.
pub fn error_policy(cc: Arc<ChatCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cc.name_any(), error = %error, "reconcile failed");
    ctx.metrics.error(error);
    let delay = ctx.backoff(&key(&cc));
    let note = error.to_string();
    tokio::spawn(async move {
        ctx.event(&cc, EventType::Warning, "ReconcileFailed", &note)
            .await;
    });
    Action::requeue(delay)
}

/// 5 s after the first failure, doubling, at most 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

fn key(cc: &ChatCluster) -> String {
    format!("{}/{}", cc.namespace().unwrap_or_default(), cc.name_any())
}

/// Runs the controller until the stream ends (on a shutdown signal).
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=parley-operator");
    Controller::new(
        api::<ChatCluster>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, namespace), managed.clone())
    .owns(api::<Service>(&client, namespace), managed.clone())
    .owns(
        api::<PodDisruptionBudget>(&client, namespace),
        managed.clone(),
    )
    // Pods are owned by the StatefulSet, not by us: map them by label,
    // so a pod going away triggers collection at once.
    .watches(api::<Pod>(&client, namespace), managed, |pod: Pod| {
        let name = pod.labels().get("app.kubernetes.io/instance").cloned();
        let ns = pod.namespace();
        name.zip(ns)
            .map(|(n, ns)| ObjectRef::<ChatCluster>::new(&n).within(&ns))
    })
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "controller event");
        }
    })
    .await;
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
