//! The PodMonitor of `spec.monitoring`, against the API double: with the
//! Prometheus Operator's CRD served (the double knows the kind) and
//! without it (the double answers 404, as an API server does for a kind it
//! does not serve).

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use parley_operator::crd::ChatCluster;
use parley_operator::reconcile::podmonitor::PodMonitor;
use serde_json::json;

mod fixtures;
mod support;

use fixtures::*;

/// The double holding `cc`; `crd`: it serves PodMonitors.
async fn client_with_monitoring(cc: ChatCluster, crd: bool) -> Client {
    let namespaces = support::Namespaces::default();
    namespaces.set(NS, false);
    let mut b = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_resource::<k8s_openapi::api::events::v1::Event>()
        .with_interceptor_funcs(support::api_server_json_patch())
        .with_object(cc);
    if crd {
        b = b.with_resource::<PodMonitor>();
    }
    support::with_namespaces(b.build().await.expect("fake client"), namespaces)
}

fn monitored(name: &str) -> ChatCluster {
    let mut cc = chat(name, 3);
    cc.spec.monitoring.enabled = true;
    cc.spec.monitoring.labels = [("release".to_owned(), "prometheus".to_owned())].into();
    cc.spec.monitoring.interval = Some("15s".into());
    cc
}

fn message(cc: &ChatCluster, ty: &str) -> String {
    cc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == ty))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn monitoring_creates_a_pod_monitor_scraping_every_nodes_health_port() {
    let cc = monitored("chat");
    let cluster_id = cc.cluster_id();
    let client = client_with_monitoring(cc, true).await;
    run(&client, "chat").await;

    let pms: Vec<PodMonitor> = list(&client).await;
    assert_eq!(pms.len(), 1);
    let pm = &pms[0];
    assert_eq!(pm.name_any(), "chat-nodes");
    let owner = &pm.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ChatCluster", Some(true))
    );
    assert_eq!(pm.labels()["release"], "prometheus");
    assert_eq!(pm.labels()["app.kubernetes.io/instance"], "chat");

    // The selector is the StatefulSet's, the port the pod template's.
    let sts = &list::<StatefulSet>(&client).await[0];
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(pm.spec.selector, spec.selector);
    let ep = &pm.spec.pod_metrics_endpoints[0];
    let port = &spec.template.spec.as_ref().unwrap().containers[0]
        .ports
        .as_ref()
        .unwrap()[0];
    assert_eq!(Some(ep.port.as_str()), port.name.as_deref());
    assert_eq!(port.container_port, 9090);
    assert_eq!(ep.path, "/metrics");
    assert_eq!(ep.interval.as_deref(), Some("15s"));
    let fixed: Vec<(String, String)> = ep
        .relabelings
        .iter()
        .map(|r| (r.target_label.clone(), r.replacement.clone()))
        .collect();
    assert_eq!(
        fixed,
        vec![
            ("chatcluster".to_owned(), "chat".to_owned()),
            ("cluster_id".to_owned(), cluster_id)
        ]
    );

    let cc = get_cc(&client, "chat").await;
    assert_eq!(
        cond(&cc, "MonitoringReady"),
        ("True".into(), "PodMonitorApplied".into())
    );
}

#[tokio::test]
async fn without_the_prometheus_operator_crds_the_condition_says_so() {
    let client = client_with_monitoring(monitored("chat"), false).await;
    // Does not fail: `run` expects every reconcile to succeed.
    run(&client, "chat").await;

    let cc = get_cc(&client, "chat").await;
    assert_eq!(
        cond(&cc, "MonitoringReady"),
        ("False".into(), "CRDMissing".into())
    );
    assert!(
        message(&cc, "MonitoringReady").contains("install the Prometheus Operator's CRDs"),
        "{}",
        message(&cc, "MonitoringReady")
    );
    // Everything else was applied as usual.
    assert_eq!(list::<StatefulSet>(&client).await.len(), 1);
    assert_eq!(cond(&cc, "Degraded").0, "False");
}

#[tokio::test]
async fn disabling_monitoring_removes_the_pod_monitor_and_the_condition() {
    let client = client_with_monitoring(monitored("chat"), true).await;
    run(&client, "chat").await;
    assert_eq!(list::<PodMonitor>(&client).await.len(), 1);

    Api::<ChatCluster>::namespaced(client.clone(), NS)
        .patch(
            "chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"monitoring": {"enabled": false}}})),
        )
        .await
        .unwrap();
    run(&client, "chat").await;

    assert!(list::<PodMonitor>(&client).await.is_empty());
    let cc = get_cc(&client, "chat").await;
    let types: Vec<&str> = cc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert!(!types.contains(&"MonitoringReady"), "{types:?}");
}

#[tokio::test]
async fn clusters_without_monitoring_reconcile_as_before() {
    // No PodMonitor kind served and none wanted: no condition, no failure.
    let client = client_with_monitoring(chat("chat", 1), false).await;
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    assert!(
        cc.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "MonitoringReady")
    );
}

/// `inner` behind an API server whose RBAC forbids this operator
/// PodMonitors: every request on them is answered 403, as the API server
/// answers a ServiceAccount without the verb.
fn forbidding_pod_monitors(inner: Client) -> Client {
    let svc = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        let inner = inner.clone();
        async move {
            if !req.uri().path().contains("/podmonitors") {
                return inner.send(req).await;
            }
            let body = json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "podmonitors.monitoring.coreos.com is forbidden: User \"system:serviceaccount:parley-system:parley-operator\" cannot get resource \"podmonitors\"",
                "reason": "Forbidden", "code": 403
            });
            hyper::Response::builder()
                .status(403)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.to_string().into_bytes()))
                .map_err(|e| kube::Error::Service(Box::new(e)))
        }
    });
    Client::new(svc, "default")
}

#[tokio::test]
async fn an_operator_forbidden_pod_monitors_says_so_and_reconciles_the_rest() {
    let client = forbidding_pod_monitors(client_with_monitoring(monitored("chat"), true).await);
    // Does not fail: `run` expects every reconcile to succeed.
    run(&client, "chat").await;

    let cc = get_cc(&client, "chat").await;
    assert_eq!(
        cond(&cc, "MonitoringReady"),
        ("False".into(), "Forbidden".into())
    );
    assert!(
        message(&cc, "MonitoringReady").contains("grant monitoring.coreos.com podmonitors"),
        "{}",
        message(&cc, "MonitoringReady")
    );
    assert_eq!(list::<StatefulSet>(&client).await.len(), 1);
    assert_eq!(cond(&cc, "Degraded").0, "False");
}
