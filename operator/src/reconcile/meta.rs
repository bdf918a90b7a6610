//! Names, labels and owner references shared by every object a ChatCluster owns.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use parley_cluster::PortFormula;

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
