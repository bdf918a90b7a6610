//! Deletion: the ChatCluster is going away and kube's finalizer helper
//! holds it until [`cleanup`] returns. First stops the nodes (their queues
//! have consumers while they run, and a queue in use is never deleted):
//! scales the StatefulSet to 0 and waits for its pods to be gone. Then
//! removes the cluster's queues, exchange and registry (and with cleanup
//! policy Delete, all its data).
//! Never wedges a namespace: when the namespace is going away, or the
//! backends stay unreachable past the deadline, it records what was left
//! (Event `LeftBehind`) and lets go.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::instrument;

use super::backends::backends;
use super::meta::{MANAGER, pod_name};
use super::observe::list_pods;
use crate::context::Context;
use crate::crd::{ChatCluster, CleanupPolicy};
use crate::{Error, Result};

/// How soon a cleanup that waits is looked at again.
pub const RETRY: Duration = Duration::from_secs(10);

/// Cleans up after `cc`; `Ok` lets the finalizer go, [`Error::CleanupWaits`]
/// keeps it (until the deadline).
#[instrument(skip_all, fields(name = %cc.name_any(), namespace = %cc.namespace().unwrap_or_default()))]
pub async fn cleanup(cc: &ChatCluster, ctx: &Context) -> Result<Action> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let cluster = cc.cluster_id();
    let namespace_going = match Api::<Namespace>::all(ctx.client.clone()).get_opt(&ns).await {
        Ok(Some(n)) => n.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        // Cannot tell (no permission, say): clean up as usual; the deadline
        // still keeps the finalizer from wedging anything.
        Err(e) => {
            tracing::debug!(error = %e, "cannot read namespace");
            false
        }
    };
    let outcome = if namespace_going {
        Err(format!("namespace {ns} is being deleted"))
    } else if let Some(running) = stop_nodes(cc, ctx, &ns)
        .await
        // An API error here waits like an unreachable backend: the
        // deadline still lets go.
        .unwrap_or_else(|e| Some(format!("cannot stop the nodes: {e}")))
    {
        Err(running)
    } else {
        match backends(cc, ctx).await {
            Ok(b) => b
                .wipe(cc.spec.cleanup_policy == CleanupPolicy::Delete)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    match outcome {
        Ok(done) => {
            ctx.metrics.collected("queue", done.queues);
            ctx.metrics.collected("registry", done.registry);
            ctx.metrics.collected("consumer", done.consumers);
            let kept = match cc.spec.cleanup_policy {
                CleanupPolicy::Retain => {
                    "; messages, inboxes and tokens are kept (cleanupPolicy Retain)"
                }
                CleanupPolicy::Delete => {
                    "; messages, inboxes and tokens deleted (cleanupPolicy Delete)"
                }
            };
            ctx.event(
                cc,
                EventType::Normal,
                "CleanedUp",
                &format!("removed queues, exchange and registry of cluster {cluster}{kept}"),
            )
            .await;
        }
        Err(why) => {
            if !namespace_going && waited(cc) < ctx.cleanup_deadline {
                return Err(Error::CleanupWaits(why));
            }
            let note = format!(
                "left behind the queues chat.{cluster}.*, exchange chat.{cluster} and keys chat:{cluster}:* ({why}); \
                 the next reconcile of a ChatCluster with cluster id {cluster} sweeps them"
            );
            ctx.event(cc, EventType::Warning, "LeftBehind", &note).await;
        }
    }
    ctx.forget(cc).await;
    ctx.metrics.forget(&ns, &cc.name_any());
    Ok(Action::await_change())
}

/// Scales the StatefulSet to 0; `Some(what)` while its pods still exist
/// (each pod going away triggers a reconcile: the controller watches them).
async fn stop_nodes(cc: &ChatCluster, ctx: &Context, ns: &str) -> Result<Option<String>> {
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let scale = serde_json::json!({"spec": {"replicas": 0}});
    match sts
        .patch(
            &cc.name_any(),
            &PatchParams {
                field_manager: Some(MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&scale),
        )
        .await
    {
        Ok(_) => {}
        // No StatefulSet (never made, or already gone): nothing to scale.
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let pods = list_pods(cc, &Api::<Pod>::namespaced(ctx.client.clone(), ns)).await?;
    Ok((!pods.is_empty()).then(|| {
        let names: Vec<String> = pods.iter().map(|p| pod_name(cc, p.ordinal)).collect();
        format!("waiting for the nodes to stop: {}", names.join(", "))
    }))
}

/// How long ago the ChatCluster was marked for deletion.
fn waited(cc: &ChatCluster) -> Duration {
    let deleted_at = cc.metadata.deletion_timestamp.as_ref().map(|t| t.0);
    deleted_at.map_or(Duration::ZERO, |t| {
        let secs = k8s_openapi::jiff::Timestamp::now()
            .duration_since(t)
            .as_secs();
        Duration::from_secs(secs.max(0) as u64)
    })
}
