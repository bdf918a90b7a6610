//! Several chat-node processes on 127.0.0.1, one Redis and one RabbitMQ:
//! start them, kill them, restart them; clean up every key and queue.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{ADMIN, Client, delete_cluster_keys, redis_url, unique_cluster};

/// The RabbitMQ the tests use (started by scripts/services.sh).
pub fn amqp_url() -> String {
    std::env::var("CHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub use parley_cluster::testing::free_port;

/// Deletes a cluster's exchange and the queues of the given ports.
pub async fn delete_cluster_bus(url: &str, cluster: &str, ports: &[u16]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for p in ports {
            let q = format!("chat.{cluster}.{p}");
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let x = format!("chat.{cluster}");
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// A cluster of chat-node processes.
pub struct Cluster {
    pub cluster: String,
    pub ports: Vec<u16>,
    pub amqp: String,
    /// `CHAT_DRAIN_GRACE_S` of every node.
    procs: Vec<Option<Child>>,
    /// Extra environment of each node (over the defaults of `spawn`).
    env: Vec<Vec<(String, String)>>,
    http: crate::common::http::Http,
}

impl Cluster {
    /// Starts `n` nodes (ordinals 0..n) and waits until each is ready.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, &amqp_url()).await
    }

    pub async fn start_with(n: usize, amqp: &str) -> Cluster {
        Self::start_with_env(n, amqp, |_| vec![]).await
    }

    /// Starts `n` nodes that drain for `grace_s` seconds on SIGTERM.
    pub async fn start_with_drain_grace(n: usize, grace_s: u64) -> Cluster {
        Self::start_with_env(n, &amqp_url(), |_| {
            vec![("CHAT_DRAIN_GRACE_S", grace_s.to_string())]
        })
        .await
    }

    /// Starts `n` nodes, node `i` with the extra environment `env(i)` (over
    /// the defaults of `spawn`).
    pub async fn start_with_env(
        n: usize,
        amqp: &str,
        env: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> Cluster {
        let mut c = Cluster {
            cluster: unique_cluster("c"),
            ports: (0..n).map(|_| free_port()).collect(),
            amqp: amqp.to_owned(),
            procs: (0..n).map(|_| None).collect(),
            env: (0..n)
                .map(|i| env(i).into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                .collect(),
            http: crate::common::http::Http::new(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i).await;
        }
        c.wait_registered().await;
        c
    }

    /// Waits until every running node is listed ready by `/v1/nodes`.
    pub async fn wait_registered(&self) {
        let running: Vec<u16> = (0..self.ports.len())
            .filter(|i| self.procs[*i].is_some())
            .map(|i| self.ports[i])
            .collect();
        let any = (0..self.ports.len())
            .find(|i| self.procs[*i].is_some())
            .expect("a node runs");
        for _ in 0..100 {
            let (_, nodes) = self.get_json(any, "/v1/nodes").await;
            let ready: Vec<u16> = nodes
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["ready"] == true)
                .filter_map(|n| n["port"].as_u64().map(|p| p as u16))
                .collect();
            if running.iter().all(|p| ready.contains(p)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nodes never all registered ready");
    }

    /// Sets `key` in node `i`'s extra environment, for its next start.
    pub fn set_env(&mut self, i: usize, key: &str, value: impl Into<String>) {
        let env = &mut self.env[i];
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.into()));
    }

    /// Starts (or restarts) node `i` on its port with its ordinal.
    pub fn spawn(&mut self, i: usize) {
        let port = self.ports[i];
        let child = Command::new(env!("CARGO_BIN_EXE_chat-node"))
            .env("CHAT_CLUSTER", &self.cluster)
            .env("CHAT_REDIS_URL", redis_url())
            .env("CHAT_AMQP_URL", &self.amqp)
            .env("CHAT_ADMIN_TOKEN", ADMIN)
            .env("CHAT_ORDINAL", i.to_string())
            .env("CHAT_PORT", port.to_string())
            .env("CHAT_HEALTH_PORT", "0")
            .env("CHAT_BIND", "127.0.0.1")
            .env("CHAT_ADVERTISE", "127.0.0.1:{port}")
            .env("CHAT_DRAIN_GRACE_S", "2")
            .env("CHAT_REDIS_TIMEOUT_MS", "1000")
            .env(
                "RUST_LOG",
                std::env::var("TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(self.env[i].iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("chat-node starts");
        self.procs[i] = Some(child);
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[i]))
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[i])
    }

    /// Waits (up to a minute: a node reconnecting to a restarted broker
    /// backs off, and the machine may be busy with other brokers) until
    /// node `i` answers `/readyz` 200.
    pub async fn wait_ready(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = self.http.get(self.url(i, "/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {i} never became ready");
    }

    /// GET on node `i`, as JSON.
    pub async fn get_json(&self, i: usize, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(i, path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A series (`name` or `name{label="v"}`) from node `i`'s `/metrics`.
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let r = self.http.get(self.url(i, "/metrics")).send().await.unwrap();
        let text = r.text().await.unwrap();
        super::metric_value(&text, name)
            .unwrap_or_else(|| panic!("no {name} in the metrics of node {i}:\n{text}"))
    }

    pub async fn token(&self, i: usize, user: &str) -> String {
        crate::common::issue_token(&self.http, &self.url(i, ""), user, "web").await
    }

    /// A session of `user` on node `i`.
    pub async fn session(&self, i: usize, user: &str) -> Client {
        let token = self.token(i, user).await;
        Client::connect(self.addr(i), &token)
            .await
            .expect_connected()
    }

    /// Sends a signal (`-KILL`, `-TERM`) to node `i`.
    pub fn signal(&mut self, i: usize, sig: &str) {
        let child = self.procs[i].as_ref().expect("node running");
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for node `i` to exit; returns whether it exited cleanly.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> bool {
        let mut child = self.procs[i].take().expect("node running");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills node `i` at once (no drain, no cleanup).
    pub async fn kill(&mut self, i: usize) {
        self.signal(i, "-KILL");
        self.wait_exit(i, Duration::from_secs(5)).await;
    }

    /// Reconnects like a client whose node went away: ask any live node for
    /// a route; when the routed node refuses (it may be dead but not yet
    /// stale), try the ready nodes of `/v1/nodes`, least loaded first.
    pub async fn reconnect(&self, user_token: &str, avoid: &[usize]) -> (usize, Client) {
        for _ in 0..100 {
            for i in (0..self.ports.len()).filter(|i| !avoid.contains(i)) {
                let mut candidates: Vec<u16> = Vec::new();
                let (status, route) = self.get_json_lenient(i, "/v1/route").await;
                if status == 200 {
                    candidates.extend(route["address"].as_str().and_then(port_of));
                }
                let (status, nodes) = self.get_json_lenient(i, "/v1/nodes").await;
                if status == 200 {
                    let mut ready: Vec<&Value> = nodes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|n| n["ready"] == true)
                        .collect();
                    ready.sort_by_key(|n| n["online"].as_u64());
                    candidates.extend(
                        ready
                            .iter()
                            .filter_map(|n| n["address"].as_str().and_then(port_of)),
                    );
                }
                for port in candidates {
                    let Some(j) = self.ports.iter().position(|p| *p == port) else {
                        continue;
                    };
                    if avoid.contains(&j) {
                        continue;
                    }
                    let probe =
                        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"));
                    if super::within("ws handshake", super::STEP, probe)
                        .await
                        .is_ok()
                    {
                        let c = Client::connect(self.addr(j), user_token)
                            .await
                            .expect_connected();
                        return (j, c);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no node to reconnect to");
    }

    /// Like `get_json`, but a node that does not answer is a 0 status.
    pub async fn get_json_lenient(&self, i: usize, path: &str) -> (u16, Value) {
        match self.http.get(self.url(i, path)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }
}

fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
        delete_cluster_keys(&redis_url(), &self.cluster);
        let (amqp, cluster, ports) = (self.amqp.clone(), self.cluster.clone(), self.ports.clone());
        // Drop runs inside the test's runtime: clean the bus on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                // Bounded: a broker that hangs must not hang the test's drop.
                let cleanup = delete_cluster_bus(&amqp, &cluster, &ports);
                let _ = rt.block_on(async { tokio::time::timeout(super::STEP, cleanup).await });
            }
        })
        .join();
    }
}

/// A RabbitMQ broker of the test's own, on its own port, that the test can
/// crash and restart without disturbing other tests. Its data directory
/// persists across restarts (durable exchange and queues come back).
pub struct PrivateRabbit {
    pub port: u16,
    dir: std::path::PathBuf,
    wrapper: Option<Child>,
}

impl PrivateRabbit {
    pub async fn start() -> PrivateRabbit {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("parley-rabbit-{port}"));
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(dir.join("plugins"), "[].\n").unwrap();
        let mut r = PrivateRabbit {
            port,
            dir,
            wrapper: None,
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the broker and waits until it accepts connections.
    pub async fn restart(&mut self) {
        // Debian's wrapper drops root to the `rabbitmq` user: give it the directory.
        let _ = Command::new("chown")
            .arg("-R")
            .arg("rabbitmq:")
            .arg(&self.dir)
            .status();
        let d = &self.dir;
        let child = Command::new("rabbitmq-server")
            .env(
                "RABBITMQ_NODENAME",
                format!("parley{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server is installed (scripts/services.sh installs it)");
        self.wrapper = Some(child);
        for _ in 0..240 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("private RabbitMQ did not start");
    }

    /// Sends a signal to the Erlang VM (`-STOP` makes the broker stop
    /// answering with its sockets open, `-CONT` lets it go on).
    pub fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).expect("broker pid file");
        let ok = Command::new("kill")
            .args([sig, pid.trim()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Crashes the broker (SIGKILL of the Erlang VM).
    pub async fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        if let Some(mut w) = self.wrapper.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("private RabbitMQ did not stop");
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        if let Some(mut w) = self.wrapper.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
