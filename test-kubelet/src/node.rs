//! The Node object: created (server-side apply) at start, its status and
//! Ready condition refreshed every [`HEARTBEAT`] so the node lifecycle
//! controller keeps it Ready and does not evict its pods.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Well inside the controller manager's node-monitor grace period (40 s).
pub const HEARTBEAT: Duration = Duration::from_secs(10);

const MANAGER: &str = "parley-test-kubelet";

/// Creates or adopts the Node and reports it Ready once; returns when it
/// became Ready, which later heartbeats keep as the transition time.
pub async fn register(nodes: &Api<Node>, name: &str, host_ip: &str) -> kube::Result<String> {
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "parley.dev/test-kubelet": "true",
            },
        },
    });
    nodes
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await?;
    let since = Timestamp::now().to_string();
    heartbeat(nodes, name, host_ip, &since).await?;
    Ok(since)
}

pub async fn heartbeat(
    nodes: &Api<Node>,
    name: &str,
    host_ip: &str,
    since: &str,
) -> kube::Result<()> {
    let now = Timestamp::now().to_string();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(status(name, host_ip, since, &now)),
        )
        .await?;
    Ok(())
}

/// Refreshes the Node status until `shutdown` fires; a failed beat is logged
/// and retried at the next tick.
pub async fn heartbeat_loop(
    nodes: Api<Node>,
    name: String,
    host_ip: String,
    since: String,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = heartbeat(&nodes, &name, &host_ip, &since).await {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

fn status(name: &str, host_ip: &str, since: &str, now: &str) -> Value {
    let resources = json!({ "cpu": "8", "memory": "32Gi", "pods": "110" });
    let cond = |t: &str, s: &str, reason: &str| json!({ "type": t, "status": s, "reason": reason, "lastHeartbeatTime": now, "lastTransitionTime": since });
    json!({ "status": {
        "conditions": [
            cond("Ready", "True", "KubeletReady"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [
            { "type": "InternalIP", "address": host_ip },
            { "type": "Hostname", "address": name },
        ],
        "capacity": resources,
        "allocatable": resources,
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "parley test kubelet",
            "containerRuntimeVersion": "process://local",
            "kubeletVersion": concat!("parley-test-kubelet/", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    }})
}
