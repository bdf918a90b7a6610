//! The PodMonitor (Prometheus Operator, `monitoring.coreos.com/v1`) that
//! has every node's `/metrics` scraped on the health port, each series
//! labelled with the ChatCluster's name and cluster id, so one Prometheus
//! tells clusters apart. Built only when `spec.monitoring.enabled`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{headless_name, owned_meta, selector_labels};
use crate::crd::ChatCluster;

/// The label every node's series carries: the ChatCluster's name.
pub const CLUSTER_LABEL: &str = "chatcluster";
/// The label every node's series carries: the cluster id (Redis and
/// RabbitMQ prefix), which stays the same across a rename.
pub const CLUSTER_ID_LABEL: &str = "cluster_id";

/// The part of the Prometheus Operator's PodMonitor the operator sets (the
/// API server keeps the fields of other managers).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// The pods scraped.
    pub selector: LabelSelector,
    /// How each pod is scraped.
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// One scraped port of each pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// Name of the container port.
    pub port: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabelings: Vec<Relabeling>,
}

/// A relabeling of the scraped target: here always a fixed value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Relabeling {
    pub target_label: String,
    pub replacement: String,
    pub action: String,
}

/// Name of the PodMonitor (the headless Service's: both are "the nodes").
pub fn name(cc: &ChatCluster) -> String {
    headless_name(cc)
}

/// The PodMonitor of `cc`: its pods' `health` port (the one port of the
/// pod template: see `statefulset.rs`), `/metrics`.
pub fn build(cc: &ChatCluster) -> PodMonitor {
    let m = &cc.spec.monitoring;
    let mut meta = owned_meta(cc, name(cc));
    if let Some(labels) = meta.labels.as_mut() {
        // The operator's own labels win: they say who owns the object.
        for (k, v) in &m.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let fixed = |label: &str, value: String| Relabeling {
        target_label: label.to_owned(),
        replacement: value,
        action: "replace".to_owned(),
    };
    PodMonitor {
        metadata: meta,
        spec: PodMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(selector_labels(cc)),
                ..LabelSelector::default()
            },
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: super::statefulset::HEALTH_PORT_NAME.to_owned(),
                path: "/metrics".to_owned(),
                interval: m.interval.clone(),
                relabelings: vec![
                    fixed(CLUSTER_LABEL, cc.name_any()),
                    fixed(CLUSTER_ID_LABEL, cc.cluster_id()),
                ],
            }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatClusterSpec;

    #[test]
    fn scrapes_the_health_port_of_the_clusters_pods_with_its_labels() {
        let mut cc = ChatCluster::new("chat", ChatClusterSpec::default());
        cc.metadata.namespace = Some("ns".into());
        cc.spec.monitoring.enabled = true;
        cc.spec.monitoring.labels = [
            ("release".to_owned(), "prometheus".to_owned()),
            ("app.kubernetes.io/name".to_owned(), "mine".to_owned()),
        ]
        .into();
        let pm = build(&cc);
        assert_eq!(pm.name_any(), "chat-nodes");
        let labels = pm.labels();
        assert_eq!(labels["release"], "prometheus");
        assert_eq!(labels["app.kubernetes.io/name"], "chat-node", "ours win");
        assert_eq!(pm.spec.selector.match_labels, Some(selector_labels(&cc)));
        let ep = &pm.spec.pod_metrics_endpoints[0];
        assert_eq!((ep.port.as_str(), ep.path.as_str()), ("health", "/metrics"));
        let fixed: Vec<(&str, &str)> = ep
            .relabelings
            .iter()
            .map(|r| (r.target_label.as_str(), r.replacement.as_str()))
            .collect();
        assert_eq!(
            fixed,
            vec![("chatcluster", "chat"), ("cluster_id", "ns_chat")]
        );
    }
}
