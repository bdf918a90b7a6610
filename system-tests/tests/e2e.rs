//! End to end against a real Kubernetes cluster (kind, k3d, ...). Ignored
//! by default: no API server runs on the machines CI uses. Run with
//!
//! ```sh
//! KUBECONFIG=~/.kube/config \
//! PARLEY_E2E_IMAGE=parley/chat-node:dev \
//! PARLEY_E2E_REDIS_URL=redis://redis.default.svc:6379/0 \
//! PARLEY_E2E_AMQP_URL=amqp://guest:guest@rabbitmq.default.svc:5672/%2f \
//! cargo test -p parley-system-tests --test e2e -- --ignored --nocapture
//! ```
//!
//! The CRD must be installed (`kubectl apply -f crds/chatcluster.yaml`), the
//! image loadable by the cluster (`kind load docker-image ...`), and Redis
//! and RabbitMQ reachable from the pods *and* from where the test runs (the
//! operator runs in-process here; port-forward them and set
//! PARLEY_E2E_OPERATOR_REDIS_URL / PARLEY_E2E_OPERATOR_AMQP_URL if the
//! in-cluster names do not resolve locally).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use parley_operator::context::Context;
use parley_operator::controller;
use parley_operator::crd::{BackendRef, ChatCluster, ChatClusterSpec};
use parley_operator::metrics::Metrics;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("set {name} (see the top of system-tests/tests/e2e.rs)"))
}

async fn wait_for(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and the PARLEY_E2E_* variables, run with --ignored"]
async fn apply_scale_and_delete_a_chat_cluster() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.expect("a kubeconfig");
    let ns_name = format!("parley-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns_name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let ctx = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::from_secs(60),
    ));
    let operator = tokio::spawn({
        let ns_name = ns_name.clone();
        async move { controller::run(ctx, Some(&ns_name), std::future::pending()).await }
    });

    let spec = ChatClusterSpec {
        replicas: 2,
        image: env("PARLEY_E2E_IMAGE"),
        redis: BackendRef {
            url: Some(env("PARLEY_E2E_REDIS_URL")),
            url_secret_ref: None,
        },
        rabbitmq: BackendRef {
            url: Some(env("PARLEY_E2E_AMQP_URL")),
            url_secret_ref: None,
        },
        ..ChatClusterSpec::default()
    };
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns_name);
    api.create(&PostParams::default(), &ChatCluster::new("chat", spec))
        .await
        .unwrap();
    let ready = |n: i32| {
        let api = api.clone();
        async move || {
            api.get("chat")
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| s.ready_replicas == n && s.replicas == n)
        }
    };
    wait_for("2 ready nodes", 300, ready(2)).await;

    // kubectl scale chat/chat --replicas=3, through the scale subresource.
    let scale = serde_json::json!({"spec": {"replicas": 3}});
    api.patch_scale("chat", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    wait_for("3 ready nodes", 300, ready(3)).await;
    let cc = api.get("chat").await.unwrap();
    let ports: Vec<u16> = cc.status.unwrap().nodes.iter().map(|n| n.port).collect();
    assert_eq!(ports, vec![8750, 8760, 8770]);

    api.patch_scale(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for("1 node", 300, ready(1)).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns_name);
    let svc_api = services.clone();
    wait_for("per-pod services pruned", 60, async move || {
        let names: Vec<String> = svc_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|s| s.name_any())
            .collect();
        !names.contains(&"chat-1".to_owned()) && !names.contains(&"chat-2".to_owned())
    })
    .await;

    api.delete("chat", &DeleteParams::default()).await.unwrap();
    let gone_api = api.clone();
    wait_for(
        "the ChatCluster to be gone (finalizer released)",
        120,
        async move || gone_api.get_opt("chat").await.unwrap().is_none(),
    )
    .await;
    operator.abort();
    namespaces
        .delete(&ns_name, &DeleteParams::default())
        .await
        .unwrap();
}
