//! One Service per pod, of the type the spec asks for, so clients can reach
//! the node `/v1/route` names.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{node_port, owned_meta, pod_name, variant_name};
use crate::crd::ChatCluster;

/// The Service of pod `ordinal`, named like the pod; `None` for an
/// ordinal without a port.
pub fn build(cc: &ChatCluster, ordinal: u32) -> Option<Service> {
    let pod = pod_name(cc, ordinal);
    let port = i32::from(node_port(cc, ordinal)?);
    let mut meta = owned_meta(cc, pod.clone());
    if !cc.spec.expose.annotations.is_empty() {
        meta.annotations = Some(cc.spec.expose.annotations.clone());
    }
    meta.labels
        .get_or_insert_with(Default::default)
        .insert("parley.dev/ordinal".to_owned(), ordinal.to_string());
    Some(Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(variant_name(&cc.spec.expose.service_type)),
            selector: Some([("statefulset.kubernetes.io/pod-name".to_owned(), pod)].into()),
            ports: Some(vec![ServicePort {
                name: Some("chat".to_owned()),
                port,
                target_port: Some(IntOrString::Int(port)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}
