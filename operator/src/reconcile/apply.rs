//! Applies the objects a ChatCluster owns, each built by a pure function
//! of its own file: server-side apply with one field manager, the admin
//! token Secret created once, per-pod Services of retired ordinals pruned.
//! An object of the same name that this ChatCluster does not control
//! (someone else's Service `foo-0`, say) is never applied over, adopted or
//! pruned: it is reported instead. The PodMonitor is applied only when
//! monitoring is enabled and its CRD is served, and removed when disabled.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::meta::{MANAGER, admin_secret_name, owned_meta, selector_string};
use super::podmonitor::{self, PodMonitor};
use super::{headless, pdb, services, statefulset};
use crate::crd::ChatCluster;
use crate::{Error, Result};

/// What applying the owned objects did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The StatefulSet as the API server holds it (for its rollout
    /// status); `None` when it was refused.
    pub statefulset: Option<StatefulSet>,
    /// Objects left alone because this ChatCluster does not control them.
    pub refused: Vec<String>,
    /// `None`: monitoring disabled; `Some(Err(why))`: enabled but the
    /// PodMonitor cannot be made (its CRD is not installed, or the
    /// operator may not write it).
    pub monitoring: Option<Result<(), MonitoringBlocked>>,
}

/// Why a wanted PodMonitor cannot be applied: the reason and message of
/// the `MonitoringReady` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoringBlocked {
    /// `CRDMissing` or `Forbidden`.
    pub reason: &'static str,
    pub message: String,
}

/// Whether `cc` is the controller of the object with metadata `meta`.
fn controlled_by(meta: &ObjectMeta, cc: &ChatCluster) -> bool {
    let Some(uid) = cc.uid() else {
        return false;
    };
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Server-side apply of one owned object, unless an object of that name
/// exists that `cc` does not control: then `None`, and it is named in
/// `refused`.
async fn apply<K>(
    api: &Api<K>,
    obj: &K,
    cc: &ChatCluster,
    refused: &mut Vec<String>,
) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    if let Some(existing) = api.get_opt(&name).await?
        && !controlled_by(existing.meta(), cc)
    {
        refused.push(format!("{} {name}", K::kind(&())));
        return Ok(None);
    }
    Ok(Some(
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?,
    ))
}

/// Applies every owned object of `cc`.
pub async fn owned_objects(cc: &ChatCluster, client: &kube::Client) -> Result<Applied> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let mut refused = Vec::new();
    if cc.spec.admin_token_secret_ref.is_none() {
        ensure_admin_secret(cc, &Api::namespaced(client.clone(), &ns)).await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    apply(&services, &headless::build(cc), cc, &mut refused).await?;
    let statefulset = apply(
        &Api::<StatefulSet>::namespaced(client.clone(), &ns),
        &statefulset::build(cc),
        cc,
        &mut refused,
    )
    .await?;
    let desired = cc.spec.replicas.max(0) as u32;
    for ordinal in 0..desired {
        if let Some(svc) = services::build(cc, ordinal) {
            apply(&services, &svc, cc, &mut refused).await?;
        }
    }
    prune_services(cc, &services, desired).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        &pdb::build(cc),
        cc,
        &mut refused,
    )
    .await?;
    let monitoring = pod_monitor(cc, &Api::namespaced(client.clone(), &ns), &mut refused).await?;
    Ok(Applied {
        statefulset,
        refused,
        monitoring,
    })
}

/// What the API server's answer to applying the PodMonitor means, when
/// it is an outcome to report rather than a failure to retry: 404, a kind
/// it does not serve (the Prometheus Operator's CRDs are not installed);
/// 403, RBAC without `monitoring.coreos.com` `podmonitors`.
fn monitoring_blocked(e: &kube::Error) -> Option<MonitoringBlocked> {
    let kube::Error::Api(s) = e else { return None };
    let (reason, message) = match s.code {
        404 => (
            "CRDMissing",
            "PodMonitor (monitoring.coreos.com/v1) is not served: install the Prometheus Operator's CRDs to have the nodes scraped".to_owned(),
        ),
        403 => (
            "Forbidden",
            format!(
                "the operator may not write PodMonitors (grant monitoring.coreos.com podmonitors to its ServiceAccount, as the chart's ClusterRole does): {}",
                s.message
            ),
        ),
        _ => return None,
    };
    Some(MonitoringBlocked { reason, message })
}

/// Applies the PodMonitor when monitoring is enabled; deletes ours when
/// it is not. A missing CRD is an outcome, not a failure: the reconcile
/// goes on and the status says so.
async fn pod_monitor(
    cc: &ChatCluster,
    api: &Api<PodMonitor>,
    refused: &mut Vec<String>,
) -> Result<Option<Result<(), MonitoringBlocked>>> {
    if !cc.spec.monitoring.enabled {
        // A get on a kind that is not served is `None` too. A cluster that
        // wants no monitoring never fails on it (an operator without the
        // RBAC for PodMonitors, say): the next reconcile tries again.
        match api.get_opt(&podmonitor::name(cc)).await {
            Ok(Some(pm)) if controlled_by(&pm.metadata, cc) => {
                if let Err(e) = api.delete(&pm.name_any(), &DeleteParams::default()).await {
                    tracing::warn!(error = %e, "cannot delete the PodMonitor");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read the PodMonitor"),
        }
        return Ok(None);
    }
    match apply(api, &podmonitor::build(cc), cc, refused).await {
        Ok(_) => Ok(Some(Ok(()))),
        Err(Error::Kube(e)) => match monitoring_blocked(&e) {
            Some(blocked) => Ok(Some(Err(blocked))),
            None => Err(Error::Kube(e)),
        },
        Err(e) => Err(e),
    }
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

/// Deletes per-pod Services of ordinals at or above `replicas` (only ones
/// this ChatCluster controls).
async fn prune_services(cc: &ChatCluster, services: &Api<Service>, replicas: u32) -> Result<()> {
    let lp = ListParams::default().labels(&format!("{},parley.dev/ordinal", selector_string(cc)));
    for svc in services.list(&lp).await? {
        let ordinal: Option<u32> = svc
            .labels()
            .get("parley.dev/ordinal")
            .and_then(|o| o.parse().ok());
        if ordinal.is_some_and(|o| o >= replicas) && controlled_by(&svc.metadata, cc) {
            services
                .delete(&svc.name_any(), &DeleteParams::default())
                .await?;
        }
    }
    Ok(())
}
