//! Deleting a ChatCluster whose nodes run (issue 14, item 7): real
//! chat-node processes hold the cluster's queues, the operator reconciles
//! against the in-memory Kubernetes API, and a small stand-in for the
//! StatefulSet controller and kubelet stops a node (SIGTERM, then its Pod
//! object is deleted) once the StatefulSet no longer wants it. Deletion must
//! stop the nodes first, then wipe, and let go of the ChatCluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use parley_operator::context::Context;
use parley_operator::controller::reconcile;
use parley_operator::crd::{BackendRef, ChatCluster, ChatClusterSpec, FINALIZER, Ports};
use parley_operator::metrics::Metrics;
use parley_system_tests::{Nodes, amqp_url, queue_exists, redis_url};
use redis::Commands;

#[path = "../../operator/tests/support/mod.rs"]
mod support;

const NS: &str = "chat-ns";

fn chat(nodes: &Nodes) -> ChatCluster {
    let mut cc = ChatCluster::new(
        "chat",
        ChatClusterSpec {
            replicas: 1,
            redis: BackendRef {
                url: Some(redis_url()),
                url_secret_ref: None,
            },
            rabbitmq: BackendRef {
                url: Some(amqp_url()),
                url_secret_ref: None,
            },
            cluster_id: Some(nodes.cluster.clone()),
            ports: Ports {
                base: nodes.base,
                step: 1,
                ..Ports::default()
            },
            ..ChatClusterSpec::default()
        },
    );
    cc.metadata.namespace = Some(NS.into());
    cc.metadata.finalizers = Some(vec![FINALIZER.into()]);
    cc
}

/// The Pod object of ordinal `i`, run `uid`, controlled by `sts`.
fn pod(sts: &StatefulSet, i: u32, uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("chat-{i}")),
            namespace: Some(NS.into()),
            uid: Some(uid.into()),
            labels: sts
                .spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: sts.name_any(),
                uid: sts.uid().unwrap_or_default(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

/// One step of the StatefulSet controller and kubelet: every running node
/// at or above the StatefulSet's replicas is stopped (SIGTERM, drained) and
/// its Pod object deleted.
async fn kubelet(client: &Client, nodes: &mut Nodes) {
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let Ok(Some(s)) = sts.get_opt("chat").await else {
        return;
    };
    let replicas = s.spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as u32;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    for i in nodes.ordinals() {
        if i >= replicas {
            nodes.terminate(i).await;
            let _ = pods
                .delete(&format!("chat-{i}"), &DeleteParams::default())
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_with_running_nodes_stops_them_then_wipes_in_seconds() {
    let mut nodes = Nodes::new();
    let cc = chat(&nodes);
    let client = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_interceptor_funcs(support::api_server_json_patch())
        .with_object(cc)
        .build()
        .await
        .expect("fake client");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        // Far beyond the test's own deadline: only a real cleanup lets go.
        Duration::from_secs(600),
    ));
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    let cc = api.get("chat").await.expect("the ChatCluster");
    reconcile(Arc::new(cc), ctx.clone())
        .await
        .expect("first reconcile");
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS)
        .get("chat")
        .await
        .expect("the StatefulSet was applied");

    // Its pod runs, with a live session.
    nodes.start(0, "uid-0").await;
    let _alice = nodes.session(0, "alice").await;
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pod(&sts, 0, "uid-0"))
        .await
        .expect("pod object");
    let port = nodes.port(0);
    assert!(queue_exists(&nodes.cluster, port).await);

    // kubectl delete chatcluster/chat: reconcile as the controller would
    // (on every change of the pods, or when the retry comes due).
    let mut deleting = api.get("chat").await.expect("the ChatCluster");
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let until = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let released = loop {
        match reconcile(Arc::new(deleting.clone()), ctx.clone()).await {
            Ok(_) => break true,
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > until {
            break false;
        }
        kubelet(&client, &mut nodes).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(released, "deletion still waits after 60 s: {last}");
    assert!(!nodes.running(0), "the node was stopped first");
    let stored = api.get_opt("chat").await.expect("get");
    assert!(stored.is_none_or(|c| !c.finalizers().contains(&FINALIZER.to_owned())));
    assert!(!queue_exists(&nodes.cluster, port).await, "queue deleted");
    let mut r = nodes.redis();
    let left: Vec<String> = r.keys(nodes.key("*")).expect("keys");
    assert!(
        left.iter()
            .all(|k| !k.contains(":ports") && !k.contains(":node:") && !k.contains(":presence:")),
        "registry and presence wiped: {left:?}"
    );
}
