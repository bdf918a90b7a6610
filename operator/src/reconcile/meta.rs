//! Names, labels and owner references shared by every object a ChatCluster owns.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use parley_cluster::PortFormula;
use serde::Serialize;

use crate::crd::ChatCluster;

/// The field manager of every server-side apply.
pub const MANAGER: &str = "parley-operator";

/// Labels that select a cluster's pods.
pub fn selector_labels(cc: &ChatCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "chat-node".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), cc.name_any()),
    ])
}

/// Labels of everything the operator creates for a cluster.
pub fn labels(cc: &ChatCluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(cc);
    l.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGER.to_owned(),
    );
    l.insert("app.kubernetes.io/part-of".to_owned(), "parley".to_owned());
    l
}

/// The selector as a string, for status and list calls.
pub fn selector_string(cc: &ChatCluster) -> String {
    selector_labels(cc)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of an owned object: name, namespace, labels, owner reference.
pub fn owned_meta(cc: &ChatCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cc.namespace(),
        labels: Some(labels(cc)),
        owner_references: cc.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Name of the headless Service (pod DNS: `<pod>.<this>.<ns>.svc`).
pub fn headless_name(cc: &ChatCluster) -> String {
    format!("{}-nodes", cc.name_any())
}

/// Name of pod `ordinal` (StatefulSet naming).
pub fn pod_name(cc: &ChatCluster, ordinal: u32) -> String {
    format!("{}-{ordinal}", cc.name_any())
}

/// Name of the Secret the operator creates when no admin token is given.
pub fn admin_secret_name(cc: &ChatCluster) -> String {
    format!("{}-admin-token", cc.name_any())
}

/// The cluster's port formula, from `spec.ports`.
pub fn port_formula(cc: &ChatCluster) -> PortFormula {
    PortFormula {
        base: cc.spec.ports.base,
        step: cc.spec.ports.step,
    }
}

/// The port of pod `ordinal`; `None` past 65535 (a spec the validation
/// refuses before anything is built from it).
pub fn node_port(cc: &ChatCluster, ordinal: u32) -> Option<u16> {
    port_formula(cc).port(ordinal)
}

/// The name serde gives a unit variant of a CRD enum: the spelling the
/// schema allows, which is also what Kubernetes fields of the same name
/// take (`ClusterIP`, `IfNotPresent`).
pub fn variant_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        // Only unit variants are passed here; they always serialize to a
        // string. Anything else is a programming error caught by the tests.
        other => unreachable!("not a unit variant: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChatClusterSpec, PullPolicy, ServiceType};

    fn cc() -> ChatCluster {
        let mut cc = ChatCluster::new("chat", ChatClusterSpec::default());
        cc.metadata.namespace = Some("ns".into());
        cc
    }

    #[test]
    fn crd_enums_are_spelled_as_kubernetes_spells_them() {
        assert_eq!(variant_name(&ServiceType::ClusterIP), "ClusterIP");
        assert_eq!(variant_name(&ServiceType::LoadBalancer), "LoadBalancer");
        assert_eq!(variant_name(&PullPolicy::IfNotPresent), "IfNotPresent");
    }

    #[test]
    fn ports_follow_the_shared_formula_and_stop_at_65535() {
        let mut c = cc();
        assert_eq!(node_port(&c, 2), Some(8770));
        c.spec.ports.base = 65530;
        assert_eq!(node_port(&c, 0), Some(65530));
        assert_eq!(node_port(&c, 1), None, "no clamping to 65535");
    }

    #[test]
    fn names_and_selector() {
        let c = cc();
        assert_eq!(headless_name(&c), "chat-nodes");
        assert_eq!(pod_name(&c, 3), "chat-3");
        assert_eq!(admin_secret_name(&c), "chat-admin-token");
        assert_eq!(
            selector_string(&c),
            "app.kubernetes.io/instance=chat,app.kubernetes.io/name=chat-node"
        );
    }
}
