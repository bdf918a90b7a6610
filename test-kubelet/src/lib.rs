//! A kubelet for tests: it stands in for a node of a local control plane
//! (`scripts/control-plane.sh up`) and runs each chat-node pod as a local
//! `chat-node` process.
//!
//! # Layout
//!
//! - [`kubelet`]: the main loop. Registers the Node, watches every pod,
//!   binds unscheduled ones to this node (there is no scheduler) and hands
//!   each of its own pods to a worker.
//! - [`node`]: the Node object and its heartbeat (Ready condition in status).
//! - [`worker`]: one task per pod: start, probe, restart, stop, finalize.
//! - [`env`](mod@env): a container's environment, resolved as a kubelet would
//!   (values, `secretKeyRef`, `configMapKeyRef`, `fieldRef`).
//! - [`process`]: spawning a pod's process and stopping it (SIGTERM, then
//!   SIGKILL after the grace period).
//! - [`probe`]: the readiness probe's HTTP GET.
//! - [`status`]: pod status documents, built by pure functions.
//! - [`addr`]: each pod gets its own loopback address, so pods that all
//!   listen on the same fixed ports do not collide.

pub mod addr;
pub mod env;
pub mod kubelet;
pub mod node;
pub mod probe;
pub mod process;
pub mod status;
pub mod worker;

use std::path::PathBuf;

/// What the kubelet was told on its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Node's name.
    pub node_name: String,
    /// Pods whose (only) container image starts with this are run.
    pub chat_node_image_prefix: String,
    /// The program run for such a pod.
    pub chat_node_bin: PathBuf,
    /// Where each pod's stdout and stderr go, one file per pod.
    pub log_dir: PathBuf,
    /// Given to every pod as KUBERNETES_SERVICE_HOST/PORT: the local control
    /// plane's `kubernetes` Service has no endpoints.
    pub apiserver_host: String,
    pub apiserver_port: u16,
}
