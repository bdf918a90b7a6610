//! One reconcile of a ChatCluster, in the order it runs: [`validate`] the
//! spec (an invalid one is reported, nothing applied), [`apply`] the owned
//! objects, [`observe`] the pods, reach the [`backends`], [`collect`]
//! what gone nodes left, publish the [`status`]. Deletion is [`cleanup`].
//!
//! Each owned object is built by a pure function in its own file
//! ([`headless`], [`statefulset`] (its settings for the application in
//! [`app`], its variables built by [`env`]), [`services`], [`pdb`], [`podmonitor`],
//! names and labels in [`meta`]); [`status`] is computed by a pure function too. This module
//! only sequences the jobs; none of them imports it.

pub(crate) mod app;
pub(crate) mod apply;
pub(crate) mod backends;
pub(crate) mod cleanup;
pub(crate) mod collect;
pub(crate) mod env;
pub(crate) mod headless;
pub(crate) mod meta;
pub(crate) mod observe;
pub(crate) mod pdb;
pub mod podmonitor;
pub(crate) mod services;
pub mod statefulset;
pub(crate) mod status;
pub(crate) mod validate;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use self::status::Observations;
use crate::context::Context;
use crate::crd::ChatCluster;
use crate::{Error, Result};

/// How often a healthy cluster is looked at again (level-based collection).
pub const RESYNC: Duration = Duration::from_secs(30);

/// Reconciles a ChatCluster that is not being deleted; returns whether it
/// is healthy (backends answer, spec valid).
pub async fn apply_cluster(cc: &ChatCluster, ctx: &Context) -> Result<bool> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let pods = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(why) = validate::problem(cc, ctx).await? {
        // Nothing is applied or collected from a spec that cannot work:
        // pods built from it would crash-loop, or reset another cluster's runs.
        tracing::warn!(why = %why, "invalid spec");
        ctx.event(cc, EventType::Warning, "InvalidSpec", &why).await;
        let o = Observations {
            config_error: Some(why),
            pods: observe::list_pods(cc, &pods).await?,
            ..Observations::default()
        };
        publish_status(cc, ctx, &o).await?;
        return Ok(false);
    }
    let mut o = Observations::default();
    let applied = apply::owned_objects(cc, &ctx.client).await?;
    o.monitoring = applied.monitoring.clone();
    o.rolled_out = applied
        .statefulset
        .as_ref()
        .is_some_and(|sts| observe::rolled_out(sts, cc.spec.replicas));
    o.pods = observe::list_pods(cc, &pods).await?;
    if !applied.refused.is_empty() {
        // Someone else's objects sit where ours belong: neither overwrite
        // nor adopt them (they would later be pruned), and collect nothing
        // while the cluster's shape is not ours to judge.
        let why = format!(
            "{} already exist{} and {} not owned by this ChatCluster: rename the ChatCluster or remove {}",
            applied.refused.join(", "),
            if applied.refused.len() == 1 { "s" } else { "" },
            if applied.refused.len() == 1 {
                "is"
            } else {
                "are"
            },
            if applied.refused.len() == 1 {
                "it"
            } else {
                "them"
            },
        );
        tracing::warn!(why = %why, "objects not owned");
        ctx.event(cc, EventType::Warning, "NotOwned", &why).await;
        o.not_owned = Some(why);
        publish_status(cc, ctx, &o).await?;
        return Ok(false);
    }
    match backends::backends(cc, ctx).await {
        Ok(b) => {
            let pods = o.pods.clone();
            collect::collect(cc, ctx, &b, &pods, &mut o).await;
        }
        Err(e) => {
            o.redis = Err(e.to_string());
            o.rabbitmq = Err(e.to_string());
        }
    }

    let healthy = o.redis.is_ok() && o.rabbitmq.is_ok();
    if let Err(why) = o.redis.as_ref().and(o.rabbitmq.as_ref()) {
        ctx.event(
            cc,
            EventType::Warning,
            "BackendUnavailable",
            &format!("nothing is collected: {why}"),
        )
        .await;
    }
    publish_status(cc, ctx, &o).await?;
    Ok(healthy)
}

/// Writes the status computed from `o`.
pub async fn publish_status(cc: &ChatCluster, ctx: &Context, o: &Observations) -> Result<()> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::compute(cc, o, &now);
    ctx.metrics
        .pending_cleanup(&ns, &cc.name_any(), o.pending_cleanup.len());
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &cc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Records the pods of a paused cluster without changing or collecting
/// anything.
pub async fn paused(cc: &ChatCluster, ctx: &Context) -> Result<Action> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let o = Observations {
        pods: observe::list_pods(cc, &Api::namespaced(ctx.client.clone(), &ns)).await?,
        paused: true,
        ..Observations::default()
    };
    publish_status(cc, ctx, &o).await?;
    Ok(Action::requeue(RESYNC))
}
