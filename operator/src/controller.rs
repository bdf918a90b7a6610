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
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::crd::ChatCluster;
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
        }
    }

    /// Publishes a Kubernetes Event on the ChatCluster (best effort).
    pub async fn event(&self, cc: &ChatCluster, type_: EventType, reason: &str, note: &str) {
        rec::record(self, cc, type_, reason, note).await;
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
    rec::apply_cluster(&cc, &ctx).await
}

/// Logs, counts and retries a failed reconcile.
pub fn error_policy(cc: Arc<ChatCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cc.name_any(), error = %error, "reconcile failed");
    ctx.metrics.error(error);
    Action::requeue(Duration::from_secs(15))
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
