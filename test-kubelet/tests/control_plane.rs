//! The test kubelet against a real API server. Ignored unless asked for,
//! with `PARLEY_TEST_KUBECONFIG` naming a cluster's kubeconfig (CI does not
//! start a control plane yet):
//!
//! ```sh
//! PARLEY_TEST_KUBECONFIG=$(scripts/control-plane.sh up) \
//!     cargo test -p parley-test-kubelet --test control_plane -- --ignored
//! ```
//!
//! The pod's "chat-node" is a stub script serving HTTP with Python on the
//! pod's `CHAT_BIND` and `CHAT_HEALTH_PORT`, so no chat-node build is needed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

const STUB: &str = r#"#!/bin/sh
echo "name=$CHAT_NODE_NAME uid=$CHAT_INSTANCE_ID api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT bind=$CHAT_BIND"
echo "args=$*"
echo "kubeconfig=$KUBECONFIG"
exec python3 -m http.server --bind "$CHAT_BIND" "$CHAT_HEALTH_PORT"
"#;

async fn client(kubeconfig: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn pod(name: &str, node: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "chat-node",
                "image": image,
                "args": ["--listen=0.0.0.0:1", "$(CHAT_HEALTH_PORT)"],
                "env": [
                    { "name": "CHAT_HEALTH_PORT", "value": "8080" },
                    { "name": "CHAT_BIND", "value": "0.0.0.0" },
                    { "name": "CHAT_NODE_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "CHAT_INSTANCE_ID", "valueFrom": { "fieldRef": { "fieldPath": "metadata.uid" } } },
                ],
                "readinessProbe": { "httpGet": { "path": "/", "port": 8080 }, "periodSeconds": 1 },
            }],
        },
    }))
    .expect("pod")
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `within`.
async fn eventually<T, F: AsyncFnMut() -> Option<T>>(within: Duration, what: &str, mut f: F) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs a control plane: PARLEY_TEST_KUBECONFIG=$(scripts/control-plane.sh up)"]
async fn a_chat_node_pod_runs_goes_ready_and_stops_when_deleted() {
    let kubeconfig = std::env::var("PARLEY_TEST_KUBECONFIG")
        .expect("PARLEY_TEST_KUBECONFIG names the control plane's kubeconfig");
    let client = client(&kubeconfig).await;
    // The API server's port, which the kubelet passes on to its pods.
    let api_port = Kubeconfig::read_from(&kubeconfig)
        .expect("kubeconfig")
        .clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.as_deref()?.rsplit(':').next()?.parse::<u16>().ok())
        .expect("the kubeconfig names the API server's port");
    let id = std::process::id();
    let node = format!("kl-test-{id}");
    let dir = std::env::temp_dir().join(format!("parley-test-kubelet-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let stub = dir.join("chat-node-stub");
    std::fs::write(&stub, STUB).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let logs = dir.join("logs");
    let kubelet = tokio::process::Command::new(env!("CARGO_BIN_EXE_test-kubelet"))
        .args(["--node-name", &node, "--address-block", "200"])
        .arg("--run")
        .arg(format!("parley/chat-node={}", stub.display()))
        .arg("--state-dir")
        .arg(dir.join("pods"))
        .arg("--apiserver-port")
        .arg(api_port.to_string())
        .arg("--log-dir")
        .arg(&logs)
        .env("KUBECONFIG", &kubeconfig)
        // Its log stays in `dir` (kept when the test fails).
        .stdout(std::fs::File::create(dir.join("kubelet.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("kubelet.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("test-kubelet starts");

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let (chat, other) = (format!("kl-chat-{id}"), format!("kl-other-{id}"));
    pods.create(
        &PostParams::default(),
        &pod(&chat, &node, "parley/chat-node:test"),
    )
    .await
    .unwrap();
    pods.create(&PostParams::default(), &pod(&other, &node, "nginx:1.27"))
        .await
        .unwrap();

    let ready = eventually(Duration::from_secs(30), "the chat pod Ready", async || {
        let p = pods.get(&chat).await.ok()?;
        let s = p.status?;
        let ready = s
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && s.phase.as_deref() == Some("Running")).then_some(s.pod_ip?)
    })
    .await;
    assert_eq!(ready, "127.200.0.1");
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| name_has(p, &chat))
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("name={chat} uid=")), "{text}");
    assert!(
        text.contains(&format!("api=127.0.0.1:{api_port} bind=127.200.0.1")),
        "{text}"
    );
    assert!(text.contains("args=--listen=127.200.0.1:1 8080"), "{text}");
    // The pod's process is its ServiceAccount to the API server.
    let kubeconfig = text
        .lines()
        .find_map(|l| l.strip_prefix("kubeconfig="))
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| panic!("the pod got no KUBECONFIG: {text}"));
    let as_pod = self::client(kubeconfig).await;
    let review: SelfSubjectReview = Api::all(as_pod)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("the pod's token authenticates");
    let user = review.status.and_then(|s| s.user_info?.username);
    assert_eq!(
        user.as_deref(),
        Some("system:serviceaccount:default:default")
    );

    let failed = eventually(
        Duration::from_secs(30),
        "the other pod Failed",
        async || {
            let s = pods.get(&other).await.ok()?.status?;
            (s.phase.as_deref() == Some("Failed")).then_some(s)
        },
    )
    .await;
    assert_eq!(failed.reason.as_deref(), Some("UnsupportedImage"));
    assert!(failed.message.unwrap_or_default().contains("nginx:1.27"));

    pods.delete(&chat, &DeleteParams::default()).await.unwrap();
    pods.delete(&other, &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(15), "both pods finalized", async || {
        let a = pods.get_opt(&chat).await.ok()?;
        let b = pods.get_opt(&other).await.ok()?;
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    let refused = tokio::net::TcpStream::connect(("127.200.0.1", 8080))
        .await
        .is_err();
    assert!(refused, "the pod's process still serves after its deletion");
    assert!(
        !Path::new(kubeconfig).exists(),
        "the pod's credentials outlive it"
    );

    drop(kubelet);
    let nodes: Api<Node> = Api::all(client);
    let _ = nodes.delete(&node, &DeleteParams::default()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn name_has(p: &Path, s: &str) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(s))
}
