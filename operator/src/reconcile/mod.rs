//! One reconcile of a ChatCluster: apply the owned objects, observe pods
//! and backends, collect what gone nodes left, publish status. Each owned
//! object is built by a pure function in its own file; this module does the
//! I/O around them.

pub mod headless;
pub mod meta;
pub mod pdb;
pub mod services;
pub mod statefulset;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use self::meta::{MANAGER, admin_secret_name, owned_meta, selector_string};
use self::status::{Observations, PodInfo, RegistryEntry};
use crate::controller::Context;
use crate::crd::{BackendRef, ChatCluster, CleanupPolicy, FINALIZER};
use crate::gc::{self, Backends};
use crate::{Error, Result};

/// How often a healthy cluster is looked at again (level-based collection).
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon a cluster with a problem is looked at again.
pub const RETRY: Duration = Duration::from_secs(10);

/// Server-side apply of one owned object.
async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Reconciles a ChatCluster that is not being deleted; returns whether it
/// is healthy (backends answer, spec valid).
pub async fn apply_cluster(cc: &ChatCluster, ctx: &Context) -> Result<bool> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let client = &ctx.client;
    let mut o = Observations {
        config_error: spec_error(cc),
        ..Observations::default()
    };

    if cc.spec.admin_token_secret_ref.is_none() {
        ensure_admin_secret(cc, &Api::namespaced(client.clone(), &ns)).await?;
    }
    apply(
        &Api::<Service>::namespaced(client.clone(), &ns),
        &headless::build(cc),
    )
    .await?;
    let sts = apply(
        &Api::<StatefulSet>::namespaced(client.clone(), &ns),
        &statefulset::build(cc),
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let desired = cc.spec.replicas.max(0) as u32;
    for ordinal in 0..desired {
        if let Some(svc) = services::build(cc, ordinal) {
            apply(&services, &svc).await?;
        }
    }
    prune_services(cc, &services, desired).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        &pdb::build(cc),
    )
    .await?;
    o.rolled_out = rolled_out(&sts, cc.spec.replicas);

    let pods = list_pods(cc, &Api::namespaced(client.clone(), &ns)).await?;
    o.pods = pods.clone();

    if o.config_error.is_none() {
        match backends(cc, ctx, &ns).await {
            Ok(b) => collect(cc, ctx, &b, &pods, &mut o).await,
            Err(e) => {
                o.redis = Err(e.to_string());
                o.rabbitmq = Err(e.to_string());
            }
        }
    }

    let healthy = o.redis.is_ok() && o.rabbitmq.is_ok() && o.config_error.is_none();
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

/// Checks the backends, collects what gone nodes left (only when both
/// answer), and reads the registry for status.
async fn collect(
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
    let formula = meta::port_formula(cc);
    let pod_uids: BTreeMap<u32, String> = pods.iter().map(|p| (p.ordinal, p.uid.clone())).collect();
    let observed = match b
        .observe(cc.spec.replicas.max(0) as u32, Some(formula), pod_uids)
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
                tracing::info!(cluster = %cluster, collected = ?collected, "collected after gone nodes");
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
            tracing::warn!(cluster = %cluster, error = %e, "collection failed");
            o.pending_cleanup = plan.iter().map(|a| a.describe(&cluster)).collect();
            ctx.event(cc, EventType::Warning, "CollectionFailed", &e.to_string())
                .await;
        }
    }
}

/// A spec problem no reconcile can fix.
fn spec_error(cc: &ChatCluster) -> Option<String> {
    let check = |name: &str, b: &BackendRef| match (&b.url, &b.url_secret_ref) {
        (Some(_), Some(_)) => Some(format!("{name}: set url or urlSecretRef, not both")),
        (None, None) => Some(format!("{name}: set url or urlSecretRef")),
        _ => None,
    };
    check("redis", &cc.spec.redis).or_else(|| check("rabbitmq", &cc.spec.rabbitmq))
}

/// Resolves a backend URL (inline or from its Secret).
async fn backend_url(b: &BackendRef, secrets: &Api<Secret>) -> Result<String> {
    if let Some(url) = &b.url {
        return Ok(url.clone());
    }
    let r = b.url_secret_ref.as_ref().ok_or_else(|| Error::SecretKey {
        secret: "(none)".into(),
        key: "(none)".into(),
    })?;
    let secret = secrets.get(&r.name).await?;
    let missing = || Error::SecretKey {
        secret: r.name.clone(),
        key: r.key.clone(),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(missing)?;
    String::from_utf8(value.0.clone()).map_err(|_| missing())
}

/// The cluster's backends, as the operator reaches them (kept in the
/// context between reconciles).
pub async fn backends(cc: &ChatCluster, ctx: &Context, ns: &str) -> Result<Arc<Backends>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let redis = backend_url(&cc.spec.redis, &secrets).await?;
    let amqp = backend_url(&cc.spec.rabbitmq, &secrets).await?;
    Ok(ctx.backends_for(&backends_key(ns, cc), &cc.cluster_id(), &redis, &amqp)?)
}

/// Which ChatCluster kept backends belong to.
fn backends_key(ns: &str, cc: &ChatCluster) -> String {
    format!("{ns}/{}", cc.name_any())
}

/// Creates the admin token Secret if it does not exist; never rotates it.
async fn ensure_admin_secret(cc: &ChatCluster, secrets: &Api<Secret>) -> Result<()> {
    let name = admin_secret_name(cc);
    if secrets.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let mut token = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut token);
    let secret = Secret {
        metadata: owned_meta(cc, name),
        data: Some(
            [(
                "token".to_owned(),
                ByteString(hex::encode(token).into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes per-pod Services of ordinals at or above `replicas`.
async fn prune_services(cc: &ChatCluster, services: &Api<Service>, replicas: u32) -> Result<()> {
    let lp = ListParams::default().labels(&format!("{},parley.dev/ordinal", selector_string(cc)));
    for svc in services.list(&lp).await? {
        let ordinal: Option<u32> = svc
            .labels()
            .get("parley.dev/ordinal")
            .and_then(|o| o.parse().ok());
        if ordinal.is_some_and(|o| o >= replicas) {
            services
                .delete(&svc.name_any(), &DeleteParams::default())
                .await?;
        }
    }
    Ok(())
}

/// Whether the StatefulSet runs the newest template on every pod.
fn rolled_out(sts: &StatefulSet, replicas: i32) -> bool {
    let Some(st) = &sts.status else {
        return replicas == 0;
    };
    st.observed_generation >= sts.metadata.generation
        && st.updated_replicas.unwrap_or(0) >= replicas
        && st.current_revision == st.update_revision
}

/// The cluster's pods with their ordinals, UIDs and readiness.
async fn list_pods(cc: &ChatCluster, pods: &Api<Pod>) -> Result<Vec<PodInfo>> {
    let prefix = format!("{}-", cc.name_any());
    let list = pods
        .list(&ListParams::default().labels(&selector_string(cc)))
        .await?;
    let mut out: Vec<PodInfo> = list
        .into_iter()
        .filter_map(|p| {
            let ordinal = p.name_any().strip_prefix(&prefix)?.parse().ok()?;
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(PodInfo {
                ordinal,
                uid: p.uid()?,
                ready,
            })
        })
        .collect();
    out.sort_by_key(|p| p.ordinal);
    Ok(out)
}

/// Writes the status computed from `o`.
pub async fn publish_status(cc: &ChatCluster, ctx: &Context, o: &Observations) -> Result<()> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::compute(cc, o, &now);
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(
        &cc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Records the pods of a paused cluster without changing anything.
pub async fn paused(cc: &ChatCluster, ctx: &Context) -> Result<Action> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let o = Observations {
        pods: list_pods(cc, &Api::namespaced(ctx.client.clone(), &ns)).await?,
        paused: true,
        ..Observations::default()
    };
    publish_status(cc, ctx, &o).await?;
    Ok(Action::requeue(RESYNC))
}

/// Adds the finalizer if missing (merge patch guarded by resourceVersion).
pub async fn ensure_finalizer(cc: &ChatCluster, api: &Api<ChatCluster>) -> Result<()> {
    if cc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = cc.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    set_finalizers(cc, api, finalizers).await
}

async fn set_finalizers(
    cc: &ChatCluster,
    api: &Api<ChatCluster>,
    finalizers: Vec<String>,
) -> Result<()> {
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": cc.resource_version()}});
    api.patch(
        &cc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}

/// The ChatCluster is being deleted: remove the cluster's queues, exchange
/// and registry (and with policy Delete, all its data), then let go. Never
/// wedges a namespace: when the namespace is going away, or the backends
/// stay unreachable past the deadline, it records what was left and lets go.
pub async fn cleanup(cc: &ChatCluster, ctx: &Context) -> Result<Action> {
    if !cc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<ChatCluster> = Api::namespaced(ctx.client.clone(), &ns);
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
        match backends(cc, ctx, &ns).await {
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
            let deleted_at = cc.metadata.deletion_timestamp.as_ref().map(|t| t.0);
            let waited = deleted_at.map_or(Duration::ZERO, |t| {
                Duration::from_secs(
                    k8s_openapi::jiff::Timestamp::now()
                        .duration_since(t)
                        .as_secs()
                        .max(0) as u64,
                )
            });
            if !namespace_going && waited < ctx.cleanup_deadline {
                tracing::info!(cluster = %cluster, why = %why, "cleanup waits");
                return Ok(Action::requeue(RETRY));
            }
            let note = format!(
                "left behind the queues chat.{cluster}.*, exchange chat.{cluster} and keys chat:{cluster}:* ({why}); \
                 the next reconcile of a ChatCluster with cluster id {cluster} sweeps them"
            );
            ctx.event(cc, EventType::Warning, "LeftBehind", &note).await;
        }
    }
    let remaining: Vec<String> = cc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(cc, &api, remaining).await?;
    ctx.forget_backends(&backends_key(&ns, cc)).await;
    Ok(Action::await_change())
}
