//! The PodDisruptionBudget: voluntary disruptions take one node at a time,
//! so sessions move in small waves.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::meta::{owned_meta, selector_labels};
use crate::crd::ChatCluster;

pub fn build(cc: &ChatCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(cc, cc.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cc)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
