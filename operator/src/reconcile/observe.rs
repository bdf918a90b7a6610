//! What the API server shows of a cluster's nodes: its pods (ordinal, UID,
//! readiness) and whether the StatefulSet has rolled out.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::meta::selector_string;
use super::status::PodInfo;
use crate::Result;
use crate::crd::ChatCluster;

/// Whether the StatefulSet runs the newest template on every pod.
pub fn rolled_out(sts: &StatefulSet, replicas: i32) -> bool {
    let Some(st) = &sts.status else {
        return replicas == 0;
    };
    st.observed_generation >= sts.metadata.generation
        && st.updated_replicas.unwrap_or(0) >= replicas
        && st.current_revision == st.update_revision
}

/// Whether the cluster's StatefulSet controls `pod`. The selector labels
/// alone prove nothing: anyone can make a pod that carries them.
fn controlled_by_statefulset(pod: &Pod, cc: &ChatCluster) -> bool {
    pod.owner_references().iter().any(|o| {
        o.controller == Some(true)
            && o.kind == "StatefulSet"
            && o.api_version == "apps/v1"
            && o.name == cc.name_any()
    })
}

/// The pods the cluster's StatefulSet controls, with their ordinals, UIDs
/// and readiness.
pub async fn list_pods(cc: &ChatCluster, pods: &Api<Pod>) -> Result<Vec<PodInfo>> {
    let prefix = format!("{}-", cc.name_any());
    let list = pods
        .list(&ListParams::default().labels(&selector_string(cc)))
        .await?;
    let mut out: Vec<PodInfo> = list
        .into_iter()
        .filter(|p| controlled_by_statefulset(p, cc))
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
