//! Deletion: the ChatCluster is going away and kube's finalizer helper
//! holds it until [`cleanup`] returns. Removes the cluster's queues,
//! exchange and registry (and with cleanup policy Delete, all its data).
//! Never wedges a namespace: when the namespace is going away, or the
//! backends stay unreachable past the deadline, it records what was left
//! (Event `LeftBehind`) and lets go.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::instrument;

use super::backends::backends;
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
    Ok(Action::await_change())
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
