//! The headless Service: stable DNS names for the pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{headless_name, owned_meta, selector_labels};
use crate::crd::ChatCluster;

pub fn build(cc: &ChatCluster) -> Service {
    Service {
        metadata: owned_meta(cc, headless_name(cc)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(cc)),
            // Pods are addressable while they start and drain.
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("health".to_owned()),
                port: i32::from(cc.spec.ports.health),
                target_port: Some(IntOrString::Int(i32::from(cc.spec.ports.health))),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
