//! Collection during a reconcile: check both backends answer, read the
//! registry for status, plan what gone nodes left ([`crate::gc::plan`]) and
//! carry it out only while both backends answer.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::instrument;

use super::meta::port_formula;
use super::status::{Observations, PodInfo, RegistryEntry};
use crate::context::Context;
use crate::crd::ChatCluster;
use crate::gc::{self, Backends};

/// Checks the backends, collects what gone nodes left (only when both
/// answer), and records in `o` what status needs.
#[instrument(skip_all, fields(name = %cc.name_any(), namespace = %cc.namespace().unwrap_or_default(), cluster = %b.cluster))]
pub async fn collect(
    cc: &ChatCluster,
    ctx: &Context,
    b: &Backends,
    pods: &[PodInfo],
    o: &mut Observations,
) {
    o.redis = b.redis_available().await.map_err(|e| e.to_string());
    o.rabbitmq = b.rabbit_available().await.map_err(|e| e.to_string());
    if o.redis.is_err() {
        return;
    }
    if let Ok(nodes) = b.registry().await {
        o.registry = nodes
            .into_iter()
            .map(|n| RegistryEntry {
                port: n.port,
                address: n.address,
                ready: n.ready,
                online: n.online,
            })
            .collect();
    }
    let pod_uids: BTreeMap<u32, String> = pods.iter().map(|p| (p.ordinal, p.uid.clone())).collect();
    let observed = match b
        .observe(
            cc.spec.replicas.max(0) as u32,
            Some(port_formula(cc)),
            pod_uids,
        )
        .await
    {
        Ok(obs) => obs,
        Err(e) => {
            o.redis = Err(e.to_string());
            return;
        }
    };
    let plan = gc::plan(&observed);
    if plan.is_empty() {
        return;
    }
    let cluster = cc.cluster_id();
    if o.rabbitmq.is_err() {
        // Nothing is deleted while a backend is down; say what waits.
        o.pending_cleanup = plan.iter().map(|a| a.describe(&cluster)).collect();
        return;
    }
    match b.execute(&plan).await {
        Ok(done) => {
            ctx.metrics.collected("queue", done.queues);
            ctx.metrics.collected("registry", done.registry);
            ctx.metrics.collected("presence", done.presence);
            ctx.metrics.collected("consumer", done.consumers);
            o.pending_cleanup = done
                .skipped
                .iter()
                .map(|(a, why)| format!("{} ({why})", a.describe(&cluster)))
                .collect();
            let collected: Vec<String> = plan
                .iter()
                .filter(|a| !done.skipped.iter().any(|(s, _)| s == *a))
                .map(|a| a.describe(&cluster))
                .collect();
            if !collected.is_empty() {
                tracing::info!(collected = ?collected, "collected after gone nodes");
                ctx.event(
                    cc,
                    EventType::Normal,
                    "Collected",
                    &format!("removed {}", collected.join("; ")),
                )
                .await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "collection failed");
            o.pending_cleanup = plan.iter().map(|a| a.describe(&cluster)).collect();
            ctx.event(cc, EventType::Warning, "CollectionFailed", &e.to_string())
                .await;
        }
    }
}
