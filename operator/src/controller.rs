//! The controller: watches ChatClusters and what they own (and their pods),
//! runs [`reconcile`] for each under kube's finalizer helper, retries
//! failures with backoff.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::instrument;

use crate::context::Context;
use crate::crd::{ChatCluster, FINALIZER};
use crate::reconcile::{self as rec, cleanup};
use crate::{Error, Result};

/// Reconciles one ChatCluster: a paused one is only observed; otherwise
/// the finalizer helper adds the finalizer, then applies, or cleans up and
/// lets go when the ChatCluster is being deleted.
#[instrument(skip_all, fields(name = %cc.name_any(), namespace = cc.namespace().unwrap_or_default()))]
pub async fn reconcile(cc: Arc<ChatCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer();
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    if cc.paused() && cc.metadata.deletion_timestamp.is_none() {
        return rec::paused(&cc, &ctx).await;
    }
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer::finalizer(&api, FINALIZER, cc, |event| async {
        match event {
            Finalizer::Apply(cc) => {
                let healthy = rec::apply_cluster(&cc, &ctx).await?;
                // Degraded (a backend down, an invalid spec) is retried with
                // backoff too.
                Ok(if healthy {
                    ctx.succeeded(&cc);
                    Action::requeue(rec::RESYNC)
                } else {
                    Action::requeue(ctx.backoff(&cc))
                })
            }
            Finalizer::Cleanup(cc) => cleanup::cleanup(&cc, &ctx).await,
        }
    })
    .await
    .map_err(Error::from_finalizer)
}

/// Logs, counts, reports (as an Event) and retries a failed reconcile,
/// backing off while it keeps failing. A cleanup that waits (for pods to
/// stop, for a backend) is no failure: it is looked at again soon.
pub fn error_policy(cc: Arc<ChatCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::CleanupWaits(why) = error {
        tracing::info!(name = %cc.name_any(), why = %why, "cleanup waits");
        return Action::requeue(cleanup::RETRY);
    }
    tracing::warn!(name = %cc.name_any(), error = %error, "reconcile failed");
    ctx.metrics.error(error);
    let delay = ctx.backoff(&cc);
    let note = error.to_string();
    tokio::spawn(async move {
        ctx.event(&cc, EventType::Warning, "ReconcileFailed", &note)
            .await;
    });
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves and the reconciles in
/// flight have finished (the caller bounds how long that may take).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
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
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "controller event");
        }
    })
    .await;
}
