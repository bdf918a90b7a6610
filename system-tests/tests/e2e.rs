//! The operator end to end, through the doors users use, against a real
//! Kubernetes API server: `helm install` of the chart (the operator runs as
//! its ServiceAccount, with the chart's RBAC), `kubectl apply` of a
//! ChatCluster, clients chatting across nodes through `/v1/route`, the
//! operator's Lease handed from a deleted leader to its standby,
//! `kubectl scale` down (drained sessions reconnect and sync, the retired
//! nodes' queues, registry entries and presence go) and up, a rolling spec
//! change, a ChatCluster the CRD's CEL rule refuses, `kubectl delete` and
//! `helm uninstall`.
//!
//! Run it with `scripts/e2e.sh`: it starts the local control plane and the
//! test kubelet (or uses the cluster `KUBECONFIG` names) and sets what this
//! reads. Ignored by a plain `cargo test`, which has no cluster.
//!
//! Pods are reached at their IPs: the nodes advertise
//! `<pod>.<headless service>.<namespace>.svc:<port>`, which this test
//! resolves as cluster DNS would, to the pod's IP (from the pod's status).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use parley_system_tests::chat::{Chat, http};
use parley_system_tests::eventually;
use serde_json::{Value, json};

const NAME: &str = "chat";
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/parley-operator");
/// Base port and step of the ChatCluster (the CRD's defaults).
const BASE: u16 = 8750;
const STEP: u16 = 10;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Runs a program; its stdout, or its stderr as the error.
async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .await
        .expect("stdin written");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} still runs after 300 s"))
        .expect("output");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    if out.status.success() {
        Ok(text(out.stdout))
    } else {
        Err(format!("{}{}", text(out.stdout), text(out.stderr)))
    }
}

async fn kubectl(args: &[&str]) -> Result<String, String> {
    run("kubectl", args, None).await
}

/// Polls `check` every 200 ms for at most `limit`; panics naming `what`.
async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One run of the suite: its namespace, release and backends.
struct Suite {
    client: Client,
    ns: String,
    release: String,
    cluster_id: String,
    redis: redis::Client,
    amqp_url: String,
    admin: String,
}

impl Suite {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `kubectl get chat`, as a user reads it: the row's columns by header.
    async fn get_chat(&self) -> BTreeMap<String, String> {
        let out = kubectl(&["get", "chat", NAME, "-n", &self.ns])
            .await
            .expect("kubectl get chat");
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let row: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        header
            .iter()
            .zip(row.iter().chain(std::iter::repeat(&"")))
            .map(|(h, v)| ((*h).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Waits until `kubectl get chat` shows `n` ready of `n`.
    async fn ready(&self, n: usize) -> BTreeMap<String, String> {
        let want = n.to_string();
        wait_for(
            &format!("kubectl get chat showing READY {n}"),
            Duration::from_secs(180),
            async || {
                let row = self.get_chat().await;
                let ready = row.get("REPLICAS") == Some(&want) && row.get("READY") == Some(&want);
                // Every pod of the ChatCluster ready, and no other left.
                let (total, up) = self.chat_pods().await?;
                (ready && up == n && total == n).then_some(row)
            },
        )
        .await
    }

    /// The ChatCluster's pods: how many exist, and how many of them are
    /// ready and not being deleted.
    async fn chat_pods(&self) -> Option<(usize, usize)> {
        let pods = self.pods().list(&Default::default()).await.ok()?;
        let chat: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("chat-"))
            })
            .collect();
        let up = chat
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .count();
        Some((chat.len(), up))
    }

    /// The address of `pod`'s WebSocket port, as cluster DNS resolves it.
    async fn pod_addr(&self, pod: &str, port: u16) -> Option<SocketAddr> {
        let p = self.pods().get_opt(pod).await.ok()??;
        let ip = p.status?.pod_ip?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    }

    /// `host:port` a node advertises, resolved.
    async fn resolve(&self, address: &str) -> SocketAddr {
        if let Ok(a) = address.parse() {
            return a;
        }
        let (host, port) = address.rsplit_once(':').expect("host:port");
        let port: u16 = port.parse().expect("port");
        let pod = host.split('.').next().expect("a pod name");
        self.pod_addr(pod, port)
            .await
            .unwrap_or_else(|| panic!("{address}: no such pod, or no IP yet"))
    }

    /// `GET /v1/route` on a ready node; the address it answers, resolved.
    async fn route(&self) -> SocketAddr {
        wait_for("a route", Duration::from_secs(60), async || {
            for i in 0..3u16 {
                let Some(at) = self.pod_addr(&format!("chat-{i}"), BASE + i * STEP).await else {
                    continue;
                };
                if let Some((200, v)) = http(at, "GET", "/v1/route", None, None).await
                    && let Some(a) = v["address"].as_str()
                {
                    return Some(self.resolve(a).await);
                }
            }
            None
        })
        .await
    }

    /// A token for `user`, from a node's `/v1/tokens`.
    async fn token(&self, user: &str) -> String {
        let at = self.route().await;
        let body = json!({"user": user, "platform": "web"});
        let (status, v) = http(at, "POST", "/v1/tokens", Some(&self.admin), Some(&body))
            .await
            .expect("POST /v1/tokens answers");
        assert_eq!(status, 201, "{v}");
        v["token"].as_str().expect("a token").to_owned()
    }

    /// A session of `user` on the node `/v1/route` names.
    async fn session(&self, user: &str, token: &str) -> Chat {
        let at = self.route().await;
        Chat::connect(at, user, token).await
    }

    async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let mut r = self
            .redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut r)
                .await
                .expect("scan");
            keys.extend(page);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    async fn queue_exists(&self, port: u16) -> bool {
        use lapin::options::QueueDeclareOptions;
        let conn =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await
                .expect("rabbitmq");
        let ch = conn.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = format!("chat.{}.{port}", self.cluster_id);
        let exists = ch
            .queue_declare(q.as_str().into(), passive, Default::default())
            .await
            .is_ok();
        let _ = conn.close(200, "bye".into()).await;
        exists
    }

    /// What ordinal `i`'s node leaves in Redis and RabbitMQ: its registry
    /// field, details, presence entries and queue.
    async fn leftovers(&self, i: u16) -> Vec<String> {
        let port = BASE + i * STEP;
        let mut found = Vec::new();
        let mut r = self
            .redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let c = &self.cluster_id;
        let registered: bool = redis::cmd("HEXISTS")
            .arg(format!("chat:{c}:ports"))
            .arg(port)
            .query_async(&mut r)
            .await
            .expect("hexists");
        if registered {
            found.push(format!("chat:{c}:ports field {port}"));
        }
        let details: bool = redis::cmd("EXISTS")
            .arg(format!("chat:{c}:node:{port}"))
            .query_async(&mut r)
            .await
            .expect("exists");
        if details {
            found.push(format!("chat:{c}:node:{port}"));
        }
        for key in self.redis_keys(&format!("chat:{c}:presence:*")).await {
            let on: bool = redis::cmd("HEXISTS")
                .arg(&key)
                .arg(port)
                .query_async(&mut r)
                .await
                .expect("hexists");
            if on {
                found.push(format!("{key} field {port}"));
            }
        }
        if self.queue_exists(port).await {
            found.push(format!("queue chat.{c}.{port}"));
        }
        found
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// alice's side: sends each message until it is `sent`, reconnecting
/// through `/v1/route` when her node goes (a retry keeps its id, so the
/// node stores it once).
struct Sender {
    chat: Chat,
    token: String,
    sent: u32,
}

impl Sender {
    async fn send(&mut self, s: &Suite, to: &[String], phase: &str) {
        let id = format!("{phase}-{}", self.sent);
        for user in to {
            let frame = json!({"type": "send", "id": format!("{id}-{user}"), "to": user, "kind": "text", "body": id});
            let mut tries = 0;
            loop {
                match self.chat.request(frame.clone()).await {
                    Some(r) if r["type"] == "sent" => break,
                    // A live delivery or a drain notice, not the reply: the
                    // reply follows.
                    Some(r) if r["type"] == "msg" || r["type"] == "reconnect" => {
                        if let Some(r) = self.reply().await {
                            assert_eq!(r["type"], "sent", "{r}");
                            break;
                        }
                    }
                    Some(r) if r["type"] == "error" && r["code"] == "unavailable" => {}
                    Some(r) => panic!("send {frame}: {r}"),
                    None => {}
                }
                tries += 1;
                assert!(tries < 60, "{frame} never sent");
                tokio::time::sleep(Duration::from_millis(250)).await;
                self.chat = s.session("alice", &self.token).await;
            }
        }
        self.sent += 1;
    }

    /// Reads past non-replies to the reply of the request in flight.
    async fn reply(&mut self) -> Option<Value> {
        loop {
            let f = self.chat.recv().await?;
            if f["type"] != "msg" && f["type"] != "reconnect" {
                return Some(f);
            }
        }
    }
}

/// Each receiver's inbox holds every message sent to it (by body: the
/// sender's message number), once.
async fn every_message_once(s: &Suite, receivers: &[(String, String)], expect: &BTreeSet<String>) {
    for (user, token) in receivers {
        let mut c = s.session(user, token).await;
        let ids: Vec<String> = c
            .sync_all(0)
            .await
            .iter()
            .filter_map(|e| e["msg"]["body"].as_str().map(str::to_owned))
            .collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{user} got a message twice: {ids:?}"
        );
        let missing: Vec<_> = expect.difference(&unique).collect();
        assert!(missing.is_empty(), "{user} lacks {missing:?}");
    }
}

/// Whatever the outcome, the run leaves no release or namespace behind on
/// the cluster (a failed run against a long-lived cluster, too).
struct Cleanup {
    ns: String,
    release: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            let _ = std::process::Command::new(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        quiet(
            "helm",
            &[
                "uninstall",
                &self.release,
                "--namespace",
                &self.ns,
                "--ignore-not-found",
            ],
        );
        quiet(
            "kubectl",
            &[
                "delete",
                "namespace",
                &self.ns,
                "--ignore-not-found",
                "--wait=false",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: run scripts/e2e.sh"]
async fn helm_install_apply_chat_scale_roll_delete_uninstall() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.expect("a kubeconfig");
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xffffff);
    let ns = format!("parley-e2e-{suffix}");
    let release = "parley".to_owned();
    let pods_redis = setting("PARLEY_E2E_REDIS_URL", "redis://127.0.0.1:6379/0");
    let pods_amqp = setting(
        "PARLEY_E2E_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let test_redis = setting("PARLEY_E2E_TEST_REDIS_URL", &pods_redis);
    let test_amqp = setting("PARLEY_E2E_TEST_AMQP_URL", &pods_amqp);
    let operator_image = setting("PARLEY_E2E_OPERATOR_IMAGE", "parley/operator:e2e");
    let image = setting("PARLEY_E2E_IMAGE", "parley/chat-node:e2e");
    let (repo, tag) = operator_image.rsplit_once(':').expect("image repo:tag");
    let _cleanup = Cleanup {
        ns: ns.clone(),
        release: release.clone(),
    };

    // helm install: the chart's CRD, RBAC, ServiceAccount and Deployment;
    // --wait returns once the operator pod is ready.
    let started = Instant::now();
    run(
        "helm",
        &[
            "install",
            &release,
            CHART,
            "--namespace",
            &ns,
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
            "--set",
            &format!("image.repository={repo}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "fullnameOverride=parley-operator",
            "--set",
            "replicas=2",
            "--set",
            "cleanupDeadlineSeconds=30",
            "--set",
            "logLevel=debug",
        ],
        None,
    )
    .await
    .expect("helm install");
    eprintln!("e2e: helm install done in {:?}", started.elapsed());
    // The operator is its ServiceAccount, with what the chart grants: its
    // namespace's ChatClusters, not other namespaces' Secrets.
    let sa = format!("system:serviceaccount:{ns}:parley-operator");
    let can = async |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &sa];
        all.extend_from_slice(args);
        kubectl(&all).await.is_ok()
    };
    assert!(can(&["patch", "chatclusters.parley.dev", "-n", &ns]).await);
    assert!(!can(&["get", "secrets", "-n", "default"]).await);
    assert!(!can(&["create", "pods", "-n", &ns]).await);
    let operator_pods = kubectl(&[
        "get",
        "pods",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/name=parley-operator",
        "-o",
        "jsonpath={.items[*].spec.serviceAccountName}",
    ])
    .await
    .expect("kubectl get pods");
    assert_eq!(
        operator_pods.split_whitespace().collect::<Vec<_>>(),
        ["parley-operator", "parley-operator"]
    );

    // A ChatCluster the CRD's CEL rule refuses: both url and urlSecretRef.
    let bad = format!(
        "apiVersion: parley.dev/v1alpha1\nkind: ChatCluster\nmetadata: {{name: bad, namespace: {ns}}}\nspec:\n  image: {image}\n  redis: {{url: \"{pods_redis}\", urlSecretRef: {{name: r, key: url}}}}\n  rabbitmq: {{url: \"{pods_amqp}\"}}\n"
    );
    let refused = run("kubectl", &["apply", "-f", "-"], Some(&bad))
        .await
        .expect_err("the API server refuses a ChatCluster against the CEL rule");
    assert!(
        refused.contains("set exactly one of url and urlSecretRef"),
        "{refused}"
    );

    // kubectl apply
    let manifest = |burst: u32| {
        format!(
            "apiVersion: parley.dev/v1alpha1\nkind: ChatCluster\nmetadata: {{name: {NAME}, namespace: {ns}}}\nspec:\n  replicas: 3\n  image: {image}\n  redis: {{url: \"{pods_redis}\"}}\n  rabbitmq: {{url: \"{pods_amqp}\"}}\n  drainGraceSeconds: 5\n  cleanupPolicy: Delete\n  chat: {{rateBurst: {burst}}}\n"
        )
    };
    run("kubectl", &["apply", "-f", "-"], Some(&manifest(100)))
        .await
        .expect("kubectl apply");
    let started = Instant::now();
    let admin_secret: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut s = Suite {
        client: client.clone(),
        ns: ns.clone(),
        release: release.clone(),
        cluster_id: format!("{ns}_{NAME}"),
        redis: redis::Client::open(test_redis.as_str()).expect("redis url"),
        amqp_url: test_amqp.clone(),
        admin: String::new(),
    };
    let row = s.ready(3).await;
    eprintln!("e2e: READY 3 in {:?}: {row:?}", started.elapsed());
    assert!(
        row.get("ONLINE").is_some_and(|o| o.parse::<u64>().is_ok()),
        "{row:?}"
    );
    let secret = admin_secret
        .get(&format!("{NAME}-admin-token"))
        .await
        .expect("the operator made the admin token Secret");
    s.admin = String::from_utf8(secret.data.expect("data")["token"].0.clone()).expect("utf-8");

    // Clients chat across nodes: a receiver on each node, alice through
    // /v1/route.
    let mut receivers = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..3u16 {
        let user = format!("r{i}");
        let token = s.token(&user).await;
        let at = s
            .pod_addr(&format!("chat-{i}"), BASE + i * STEP)
            .await
            .expect("pod address");
        sessions.push(Chat::connect(at, &user, &token).await);
        receivers.push((user, token));
    }
    let to: Vec<String> = receivers.iter().map(|(u, _)| u.clone()).collect();
    let alice_token = s.token("alice").await;
    let mut alice = Sender {
        chat: s.session("alice", &alice_token).await,
        token: alice_token,
        sent: 0,
    };
    let mut expect = BTreeSet::new();
    for _ in 0..3 {
        expect.insert(format!("live-{}", alice.sent));
        alice.send(&s, &to, "live").await;
    }
    for (i, c) in sessions.iter_mut().enumerate() {
        let mut got = 0;
        while got < 3 {
            let f = c.recv().await.unwrap_or_else(|| panic!("r{i} receives"));
            if f["type"] == "msg" {
                got += 1;
            }
        }
    }
    wait_for(
        "ONLINE counts the sessions",
        Duration::from_secs(60),
        async || {
            let online: u64 = s.get_chat().await.get("ONLINE")?.parse().ok()?;
            (online >= 4).then_some(())
        },
    )
    .await;

    // Leader election: of the two operator replicas one holds the Lease;
    // deleting its pod hands the Lease to the other (the leader releases it
    // on SIGTERM), which then does the reconciling below.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = async || {
        leases
            .get_opt("parley-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    };
    let leader = wait_for("a Lease holder", Duration::from_secs(60), holder).await;
    assert!(leader.starts_with("parley-operator-"), "{leader}");
    kubectl(&["delete", "pod", &leader, "-n", &ns])
        .await
        .expect("kubectl delete pod");
    // The new holder is the standby or the replacement pod the ReplicaSet
    // starts: either way a pod that runs and becomes ready.
    let next = wait_for(
        "the Lease handed to a live, ready replica",
        Duration::from_secs(60),
        async || {
            let h = holder().await.filter(|h| *h != leader)?;
            let pod = s.pods().get_opt(&h).await.ok()??;
            (pod.metadata.deletion_timestamp.is_none() && is_ready(&pod)).then_some(h)
        },
    )
    .await;
    eprintln!("e2e: the Lease went from {leader} to {next}");

    // kubectl scale down: the sessions of nodes 1 and 2 are told to
    // reconnect, do so through /v1/route and sync; alice keeps sending.
    kubectl(&["scale", &format!("chat/{NAME}"), "-n", &ns, "--replicas=1"])
        .await
        .expect("kubectl scale");
    let mut retired = sessions.split_off(1);
    for (k, c) in retired.iter_mut().enumerate() {
        let told = wait_for("the drain notice", Duration::from_secs(60), async || {
            let f = c.recv().await?;
            (f["type"] == "reconnect").then_some(f)
        })
        .await;
        assert_eq!(told["reason"], "draining", "r{}: {told}", k + 1);
    }
    for _ in 0..5 {
        expect.insert(format!("scale-{}", alice.sent));
        alice.send(&s, &to, "scale").await;
    }
    drop(retired);
    let pods = s.pods();
    wait_for(
        "pods chat-1 and chat-2 gone",
        Duration::from_secs(120),
        async || {
            let a = pods.get_opt("chat-1").await.ok()?;
            let b = pods.get_opt("chat-2").await.ok()?;
            (a.is_none() && b.is_none()).then_some(())
        },
    )
    .await;
    let gone = Instant::now();
    for i in 1..3u16 {
        let collected = eventually(Duration::from_secs(5), async || {
            s.leftovers(i).await.is_empty()
        })
        .await;
        assert!(
            collected,
            "5 s after its pod, node {i} left {:?}",
            s.leftovers(i).await
        );
    }
    eprintln!(
        "e2e: retired nodes collected {:?} after their pods",
        gone.elapsed()
    );
    assert!(
        s.leftovers(0).await.len() >= 3,
        "the live node keeps its registry and queue"
    );
    s.ready(1).await;
    every_message_once(&s, &receivers, &expect).await;

    // Scale back up.
    kubectl(&["scale", &format!("chat/{NAME}"), "-n", &ns, "--replicas=3"])
        .await
        .expect("kubectl scale");
    s.ready(3).await;
    for _ in 0..3 {
        expect.insert(format!("up-{}", alice.sent));
        alice.send(&s, &to, "up").await;
    }
    every_message_once(&s, &receivers, &expect).await;

    // A spec change rolls the pods one at a time, and nothing is lost
    // meanwhile: at most one pod is ever not ready.
    run("kubectl", &["apply", "-f", "-"], Some(&manifest(200)))
        .await
        .expect("kubectl apply (changed)");
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), &ns);
    let roll_started = Instant::now();
    let mut fewest_ready = 3;
    loop {
        expect.insert(format!("roll-{}", alice.sent));
        alice.send(&s, &to, "roll").await;
        let (_, ready) = s.chat_pods().await.expect("pods");
        fewest_ready = fewest_ready.min(ready);
        let set = sts.get(NAME).await.expect("statefulset");
        let st = set.status.expect("status");
        let rolled = st.update_revision.is_some()
            && st.current_revision == st.update_revision
            && st.updated_replicas == Some(3)
            && st.ready_replicas == Some(3);
        if rolled && roll_started.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(
            roll_started.elapsed() < Duration::from_secs(300),
            "the roll never finished: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fewest_ready >= 2,
        "{fewest_ready} of 3 pods ready at one point in the roll"
    );
    eprintln!(
        "e2e: rolled in {:?}, {} messages during it",
        roll_started.elapsed(),
        expect.iter().filter(|i| i.starts_with("roll")).count()
    );
    s.ready(3).await;
    every_message_once(&s, &receivers, &expect).await;
    drop(alice);

    // kubectl delete: done in seconds, nothing left in Redis or RabbitMQ.
    let started = Instant::now();
    kubectl(&[
        "delete",
        &format!("chat/{NAME}"),
        "-n",
        &ns,
        "--timeout=120s",
    ])
    .await
    .expect("kubectl delete");
    let took = started.elapsed();
    eprintln!("e2e: kubectl delete took {took:?}");
    assert!(
        took < Duration::from_secs(30),
        "kubectl delete took {took:?}"
    );
    let keys = s.redis_keys(&format!("chat:{}:*", s.cluster_id)).await;
    assert!(keys.is_empty(), "left in Redis: {keys:?}");
    for i in 0..3 {
        assert!(
            !s.queue_exists(BASE + i * STEP).await,
            "queue of node {i} left"
        );
    }

    run(
        "helm",
        &["uninstall", &s.release, "--namespace", &ns, "--wait"],
        None,
    )
    .await
    .expect("helm uninstall");
    let left = kubectl(&[
        "get",
        "deploy,sa,role,rolebinding",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/instance=parley",
        "-o",
        "name",
    ])
    .await
    .expect("kubectl get");
    assert!(left.trim().is_empty(), "helm uninstall left {left}");
}
