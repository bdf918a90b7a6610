//! # parley system tests
//!
//! Tests that cross programs, kept out of the crates they test so that no
//! crate's dependency tree carries another program (the operator's tests
//! must not compile a WebSocket client or the chat server):
//!
//! - `tests/gc.rs`: chat-node processes register in the real Redis and
//!   declare queues in the real RabbitMQ, hold real WebSocket sessions, and
//!   are killed; the operator's collection then removes exactly what the
//!   gone runs left.
//! - `tests/e2e.rs`: the operator against a real Kubernetes cluster
//!   (ignored unless a kubeconfig and the `PARLEY_E2E_*` variables are set).
//!
//! - `tests/deletion.rs`: deleting a ChatCluster whose nodes run: the
//!   operator (against the API double) stops them, then wipes.
//! - `tests/monitoring.rs`: every metric the chart's dashboard and alerts
//!   use exists on a live chat-node and operator; and a real Prometheus
//!   scraping both fires an alert when its cause is produced.
//!
//! The library holds what the tests share: chat-node processes of one
//! cluster on 127.0.0.1, with real sessions, and checks on RabbitMQ.

pub mod chat;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use parley_cluster::PortFormula;
use parley_operator::gc::Backends;

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}
/// The RabbitMQ the tests use.
pub fn amqp_url() -> String {
    std::env::var("CHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The chat-node binary, built once per test process.
fn chat_node_bin() -> std::path::PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-q", "-p", "chat-node", "--bin", "chat-node"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(ok.success(), "chat-node builds");
    });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| root.join("target"));
    target.join("debug").join("chat-node")
}

pub use parley_cluster::testing::free_port;

/// Three consecutive free ports.
pub fn free_base() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base < 60000
            && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

/// chat-node processes of one cluster; port of ordinal i = base + i.
pub struct Nodes {
    pub cluster: String,
    pub base: u16,
    procs: BTreeMap<u32, Child>,
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes::new()
    }
}

impl Nodes {
    /// A new cluster id and free ports; no node runs yet.
    pub fn new() -> Nodes {
        // Random: tests run in parallel, and in several processes.
        let cluster = format!("gc-{:016x}", rand::random::<u64>());
        Nodes {
            cluster,
            base: free_base(),
            procs: BTreeMap::new(),
        }
    }
    pub fn port(&self, ordinal: u32) -> u16 {
        self.base + ordinal as u16
    }
    pub fn formula(&self) -> PortFormula {
        PortFormula {
            base: self.base,
            step: 1,
        }
    }
    /// Starts ordinal `i` as run `uid` and waits until it is registered ready.
    pub async fn start(&mut self, i: u32, uid: &str) {
        self.start_with(i, uid, &[]).await;
    }
    /// [`Nodes::start`] with more environment (`CHAT_ARCHIVE_URL`, say),
    /// which wins over the defaults.
    pub async fn start_with(&mut self, i: u32, uid: &str, env: &[(&str, String)]) {
        let child = Command::new(chat_node_bin())
            .env("CHAT_CLUSTER", &self.cluster)
            .env("CHAT_REDIS_URL", redis_url())
            .env("CHAT_AMQP_URL", amqp_url())
            .env("CHAT_ADMIN_TOKEN", "admin")
            .env("CHAT_ORDINAL", i.to_string())
            .env("CHAT_BASE_PORT", self.base.to_string())
            .env("CHAT_PORT_STEP", "1")
            .env("CHAT_HEALTH_PORT", "0")
            .env("CHAT_BIND", "127.0.0.1")
            .env("CHAT_INSTANCE_ID", uid)
            .env("CHAT_DRAIN_GRACE_S", "1")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.procs.insert(i, child);
        let key = format!("chat:{}:node:{}", self.cluster, self.port(i));
        let mut conn = redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap();
        for _ in 0..100 {
            let (ready, instance): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("ready")
                .arg("instance")
                .query(&mut conn)
                .unwrap();
            if ready.as_deref() == Some("1") && instance.as_deref() == Some(uid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {i} never registered ready");
    }
    /// Whether ordinal `i` runs.
    pub fn running(&self, i: u32) -> bool {
        self.procs.contains_key(&i)
    }
    /// Ordinals that run.
    pub fn ordinals(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }
    /// SIGTERM, as the kubelet stops a pod, and waits (at most 30 s, then
    /// SIGKILL) for the node to drain and exit.
    pub async fn terminate(&mut self, i: u32) {
        let Some(mut c) = self.procs.remove(&i) else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        for _ in 0..300 {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    /// Time passes for ordinal `i` (killed): its last heartbeat is set past
    /// the stale window, as if the operator had been down longer than that.
    /// Collection leaves runs with a fresh heartbeat alone.
    pub fn age_heartbeat(&self, i: u32) {
        let mut r = self.redis();
        let _: () = redis::cmd("HSET")
            .arg(self.key(&format!("node:{}", self.port(i))))
            .arg("heartbeat_ms")
            .arg(0)
            .query(&mut r)
            .expect("age heartbeat");
    }
    /// SIGKILL: the node leaves everything behind.
    pub fn kill(&mut self, i: u32) {
        let mut c = self.procs.remove(&i).unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }
    /// A WebSocket session of `user` on ordinal `i` (leaves presence there).
    pub async fn session(&self, i: u32, user: &str) -> Session {
        let port = self.port(i);
        let r = token(port, user).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .unwrap();
        use futures_util::{SinkExt, StreamExt};
        let connect = serde_json::json!({"type":"connect","token": r}).to_string();
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            connect.into(),
        ))
        .await
        .unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert!(reply.to_text().unwrap().contains("connected"));
        Session(Some(ws))
    }
    pub fn backends(&self) -> Backends {
        Backends::new(&self.cluster, &redis_url(), &amqp_url()).unwrap()
    }
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
    pub fn key(&self, k: &str) -> String {
        format!("chat:{}:{k}", self.cluster)
    }
}

/// A WebSocket session, closed on drop.
pub struct Session(
    Option<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
);
impl Drop for Session {
    fn drop(&mut self) {
        self.0.take();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.procs.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Leave nothing behind: wipe everything of this test cluster.
        let cluster = self.cluster.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let b = Backends::new(&cluster, &redis_url(), &amqp_url()).unwrap();
                let _ = b.wipe(true).await;
            });
        })
        .join();
    }
}

/// A token of `user` from the node on `port` (admin token `admin`).
pub async fn token(port: u16, user: &str) -> String {
    // A tiny HTTP/1.1 POST, to keep the operator's test dependencies lean.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({"user": user, "platform": "web"}).to_string();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "POST /v1/tokens HTTP/1.1\r\nhost: x\r\nauthorization: Bearer admin\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let json = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// Whether RabbitMQ has the queue of `port` of `cluster`.
pub async fn queue_exists(cluster: &str, port: u16) -> bool {
    use lapin::options::QueueDeclareOptions;
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = format!("chat.{cluster}.{port}");
    let exists = ch
        .queue_declare(q.as_str().into(), passive, Default::default())
        .await
        .is_ok();
    let _ = conn.close(200, "bye".into()).await;
    exists
}

/// Consumers of the queue of `port` of `cluster` (`None`: no such queue).
pub async fn queue_consumers(cluster: &str, port: u16) -> Option<u32> {
    use lapin::options::QueueDeclareOptions;
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("rabbitmq");
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = format!("chat.{cluster}.{port}");
    let consumers = ch
        .queue_declare(q.as_str().into(), passive, Default::default())
        .await
        .ok()
        .map(|q| q.consumer_count());
    let _ = conn.close(200, "bye".into()).await;
    consumers
}

/// Waits (at most `deadline`) for `check`; whether it came true.
pub async fn eventually(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Nodes {
    /// Waits until the broker has noticed that the (killed) node on
    /// ordinal `i` is gone: its queue has no consumer any more.
    pub async fn await_unused(&self, i: u32) {
        let (cluster, port) = (self.cluster.clone(), self.port(i));
        let unused = eventually(Duration::from_secs(15), async || {
            queue_consumers(&cluster, port).await.is_none_or(|c| c == 0)
        })
        .await;
        assert!(
            unused,
            "the queue of node {i} still has a consumer 15 s after it died"
        );
    }
}
