//! The `ChatCluster` custom resource (group `parley.dev`, version
//! `v1alpha1`, short name `chat`). Every field's `///` doc becomes its
//! description in the generated CRD (`crds/chatcluster.yaml`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod app;
pub use app::{Auth, ConfigMapKeyRef, Jwt, KeyFileRef, Push, Webhook};

/// Annotation that stops reconcile and collection while set to "true".
pub const PAUSE_ANNOTATION: &str = "parley.dev/pause-reconciliation";
/// Finalizer that cleans up the cluster's queues and registry on deletion.
pub const FINALIZER: &str = "parley.dev/cleanup";

/// A horizontally scalable chat service: a StatefulSet of chat-node pods
/// sharing Redis and RabbitMQ.
// Repeated `printcolumn(type_ = ...)` arguments are distinct columns, not
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "parley.dev",
    version = "v1alpha1",
    kind = "ChatCluster",
    namespaced,
    status = "ChatClusterStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "chat",
    category = "parley",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired chat nodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready chat nodes"
    ),
    printcolumn(
        name = "Online",
        type_ = "integer",
        json_path = ".status.online",
        description = "Sessions online"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterSpec {
    /// Number of chat-node pods. Pod N serves on port `ports.base + N x ports.step`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Container image of chat-node.
    #[serde(default = "default_image")]
    pub image: String,

    /// When to pull the image: Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Ports of the chat nodes.
    #[serde(default)]
    pub ports: Ports,

    /// How the nodes reach Redis (messages, inboxes, tokens, registry). Run it with AOF persistence.
    pub redis: BackendRef,

    /// How the nodes reach RabbitMQ (deliveries between nodes).
    pub rabbitmq: BackendRef,

    /// The SQL archive every message goes to; Redis then keeps only each
    /// conversation's recent messages. `url` or `urlSecretRef`: `mysql://`
    /// (MySQL or MariaDB) or `postgres://`; `sqlite://` is refused (a file
    /// inside one pod is neither shared by the nodes nor kept when the pod
    /// is replaced). Unset: no archive, every message stays in Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Archive>,

    /// Secret key holding the bearer token for the nodes' `/v1/tokens` API.
    /// Unset: the operator creates a Secret `<name>-admin-token` with a random one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_secret_ref: Option<SecretKeyRef>,

    /// How clients reach individual nodes.
    #[serde(default)]
    pub expose: Expose,

    /// How users log in besides tokens from `/v1/tokens`: JWTs minted by
    /// the application's backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    /// Where messages for users with no live session are handed to the
    /// application (to send a push notification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,

    /// Chat limits passed to every node.
    #[serde(default)]
    pub chat: ChatSettings,

    /// Seconds a draining node gives its sessions to move before closing them
    /// (4009). Pods get this plus 15 seconds to terminate.
    #[serde(default = "default_drain_grace")]
    #[schemars(range(min = 1, max = 3600))]
    pub drain_grace_seconds: u32,

    /// What happens to messages, inboxes and tokens when the ChatCluster is
    /// deleted. Queues, exchange and registry are always removed.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,

    /// Cluster id that prefixes every Redis key and RabbitMQ name.
    /// Unset: `<namespace>_<name>`. Two ChatClusters must never share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub cluster_id: Option<String>,

    /// Compute resources of each chat-node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity of the pods (spread them over nodes or zones, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Log filter of the nodes (RUST_LOG syntax), e.g. `info` or `chat_node=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,

    /// Scraping of the nodes' `/metrics` by a Prometheus Operator.
    #[serde(default, skip_serializing_if = "Monitoring::is_disabled")]
    pub monitoring: Monitoring,
}

impl Default for ChatClusterSpec {
    /// The same defaults as a manifest that leaves the fields out.
    fn default() -> Self {
        ChatClusterSpec {
            replicas: default_replicas(),
            image: default_image(),
            image_pull_policy: None,
            ports: Ports::default(),
            redis: BackendRef::default(),
            rabbitmq: BackendRef::default(),
            archive: None,
            admin_token_secret_ref: None,
            expose: Expose::default(),
            auth: None,
            push: None,
            chat: ChatSettings::default(),
            drain_grace_seconds: default_drain_grace(),
            cleanup_policy: CleanupPolicy::default(),
            cluster_id: None,
            resources: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            log_level: None,
            monitoring: Monitoring::default(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}
fn default_image() -> String {
    format!("parley/chat-node:{}", env!("CARGO_PKG_VERSION"))
}
fn default_drain_grace() -> u32 {
    15
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Ports of the chat nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// Port of ordinal 0.
    #[serde(default = "default_base")]
    #[schemars(range(min = 1024, max = 65535))]
    pub base: u16,
    /// Distance between the ports of consecutive ordinals.
    #[serde(default = "default_step")]
    #[schemars(range(min = 1, max = 1000))]
    pub step: u16,
    /// Fixed port serving /healthz, /readyz and /metrics on every pod (the probes use it).
    #[serde(default = "default_health")]
    #[schemars(range(min = 1024, max = 65535))]
    pub health: u16,
}

fn default_base() -> u16 {
    8750
}
fn default_step() -> u16 {
    10
}
fn default_health() -> u16 {
    9090
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            base: default_base(),
            step: default_step(),
            health: default_health(),
        }
    }
}

/// A backend URL, given directly or read from a Secret (set exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.url) != has(self.urlSecretRef)", "message": "set exactly one of url and urlSecretRef"}]))]
pub struct BackendRef {
    /// The URL, e.g. `redis://redis:6379/0`, `amqp://user:pass@rabbitmq:5672/%2f`
    /// or `mysql://user:pass@mysql:3306/chat`.
    /// Prefer `urlSecretRef` when it carries a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret key holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// The SQL archive (MySQL or MariaDB, or PostgreSQL): every node writes
/// each message to a feed in Redis in the same step as the message, and
/// archivers on the nodes move the feed into SQL; a message leaves Redis only
/// once it is archived and outside the hot window. Unset settings keep the
/// node defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    /// The database: `url` or `urlSecretRef` (set exactly one), a URL
    /// `mysql://user:pass@host:3306/db` or `postgres://user:pass@host/db`.
    /// `sqlite://` is refused here: a file inside one pod is neither shared
    /// by the nodes nor kept when the pod is replaced.
    #[serde(flatten)]
    pub database: BackendRef,
    /// Messages per conversation Redis keeps (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub hot_messages: Option<u32>,
    /// Seconds a message stays in Redis at least, however many follow it
    /// (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_seconds: Option<u32>,
    /// Feed entries not yet archived beyond which sends are refused with
    /// `unavailable` rather than fill Redis while the database is down
    /// (default 1000000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_lag: Option<u64>,
}

/// A key of a Secret in the ChatCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// How clients reach individual nodes: one Service per pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Expose {
    /// Type of the per-pod Services.
    #[serde(default)]
    pub service_type: ServiceType,
    /// Address a node tells clients to use (`/v1/route`); `{pod}`,
    /// `{ordinal}` and `{port}` are filled in. Unset: the pod's DNS name in
    /// the headless Service, `{pod}.<name>-nodes.<namespace>.svc:{port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Annotations of the per-pod Services (load balancer settings, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Scraping of the nodes by a Prometheus Operator (monitoring.coreos.com).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Create a PodMonitor `<name>-nodes` scraping every node's health port
    /// (`/metrics`). Without the Prometheus Operator's CRDs the condition
    /// `MonitoringReady` says so and nothing else changes.
    #[serde(default)]
    pub enabled: bool,
    /// Labels of the PodMonitor, for a Prometheus whose
    /// `podMonitorSelector` picks monitors by label (`release: prometheus`, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval (`30s`). Unset: the Prometheus's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
}

impl Monitoring {
    fn is_disabled(&self) -> bool {
        *self == Monitoring::default()
    }
}

/// Kubernetes Service type of the per-pod Services.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// Chat limits (PROTOCOL.md); unset ones keep the node defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatSettings {
    /// Largest WebSocket frame in bytes (default 65536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256, max = 16777216))]
    pub max_frame_bytes: Option<u32>,
    /// Largest message body in bytes (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_body_bytes: Option<u32>,
    /// Seconds a silent connection stays open (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub idle_timeout_seconds: Option<u32>,
    /// Seconds a new connection has to send `connect` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub auth_timeout_seconds: Option<u32>,
    /// Frames per second per connection (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_per_second: Option<u32>,
    /// Burst of frames per connection (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_burst: Option<u32>,
    /// Inbox entries younger than this many days are kept (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox_retention_days: Option<u32>,
    /// The newest this-many inbox entries per user are kept (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub inbox_retention_entries: Option<u32>,
    /// Lifetime of issued tokens in seconds (default 604800, 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub token_ttl_seconds: Option<u32>,
    /// Sessions per second a draining node tells to reconnect (default
    /// 500), so the other nodes take a bounded stream of connects.
    /// `drainGraceSeconds` x this should cover the sessions one node holds;
    /// the `DrainCovered` condition says when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub drain_rate: Option<u32>,
    /// Most members of a group, owner included (default 500). Each group
    /// message is written to every member's inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 10000))]
    pub max_group_members: Option<u32>,
    /// Seconds after sending in which the sender may recall a message
    /// (default 120); 0 disables recall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_window_seconds: Option<u32>,
}

/// What to do with the cluster's data when the ChatCluster is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CleanupPolicy {
    /// Keep messages, inboxes and tokens in Redis.
    #[default]
    Retain,
    /// Delete every key of the cluster.
    Delete,
}

/// Observed state of a ChatCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterStatus {
    /// Pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods (for the scale subresource and autoscalers).
    #[serde(default)]
    pub selector: String,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, RedisAvailable, RabbitMQAvailable, Paused.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// One entry per node.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    /// Sessions online across all nodes.
    #[serde(default)]
    pub online: u64,
    /// The cluster id in use.
    #[serde(default)]
    pub cluster_id: String,
    /// What gone nodes left that waits to be collected: while a backend is
    /// down, a queue still has a consumer, or a feed consumer (archive or
    /// push) still holds entries (live nodes claim them after the claim
    /// timeout).
    // Always written, also when empty: the status is sent as a merge patch,
    // which would keep the old list if the field were left out.
    #[serde(default)]
    pub pending_cleanup: Vec<String>,
}

/// One chat node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Pod name.
    pub name: String,
    pub ordinal: u32,
    pub port: u16,
    /// Address clients use for it.
    pub address: String,
    pub ready: bool,
    /// Sessions online on it (from the node registry).
    pub online: u64,
}

/// The CustomResourceDefinition as installed (`crds/chatcluster.yaml`):
/// the derived one, less the `format`s Kubernetes does not know. schemars
/// names Rust's unsigned integers (`uint16`, `uint32`, ...), which the API
/// server accepts with a warning on every apply and then ignores; their
/// bounds stay as `minimum`/`maximum`.
pub fn definition()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut doc = serde_json::to_value(ChatCluster::crd()).expect("a CRD serializes");
    strip_unknown_formats(&mut doc);
    serde_json::from_value(doc).expect("the CRD, less some formats, deserializes")
}

/// The formats of `type: integer` and `number` an API server recognizes.
const KNOWN_NUMBER_FORMATS: [&str; 4] = ["int32", "int64", "float", "double"];

fn strip_unknown_formats(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let numeric = matches!(
                map.get("type").and_then(|t| t.as_str()),
                Some("integer" | "number")
            );
            let unknown = map
                .get("format")
                .and_then(|f| f.as_str())
                .is_some_and(|f| !KNOWN_NUMBER_FORMATS.contains(&f));
            if numeric && unknown {
                map.remove("format");
            }
            map.values_mut().for_each(strip_unknown_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_unknown_formats),
        _ => {}
    }
}

impl ChatCluster {
    /// The cluster id: `spec.clusterId`, else `<namespace>_<name>` (no
    /// Kubernetes name contains `_`, so two clusters cannot collide).
    pub fn cluster_id(&self) -> String {
        self.spec.cluster_id.clone().unwrap_or_else(|| {
            format!(
                "{}_{}",
                self.metadata.namespace.as_deref().unwrap_or("default"),
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// Whether the pause annotation is set.
    pub fn paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSE_ANNOTATION))
            .is_some_and(|v| v == "true")
    }
}

#[cfg(test)]
mod definition_tests {
    use super::*;

    fn formats(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(f) = m.get("format").and_then(|f| f.as_str()) {
                    out.push(f.to_owned());
                }
                m.values().for_each(|v| formats(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_definition_names_only_formats_kubernetes_knows_and_keeps_bounds() {
        use kube::CustomResourceExt;
        let mut derived = Vec::new();
        formats(
            &serde_json::to_value(ChatCluster::crd()).unwrap(),
            &mut derived,
        );
        assert!(derived.iter().any(|f| f == "uint16"), "{derived:?}");
        let doc = serde_json::to_value(definition()).unwrap();
        let mut kept = Vec::new();
        formats(&doc, &mut kept);
        assert!(
            kept.iter()
                .all(|f| KNOWN_NUMBER_FORMATS.contains(&f.as_str()) || f == "date-time"),
            "{kept:?}"
        );
        let base = &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["ports"]["properties"]["base"];
        assert_eq!(base["minimum"], 1024.0, "{base}");
        assert_eq!(base["maximum"], 65535.0, "{base}");
        assert!(base.get("format").is_none(), "{base}");
    }
}
