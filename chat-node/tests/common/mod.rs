//! Test harness: real chat-node servers (in-process on 127.0.0.1:0, or as
//! child processes), real WebSocket clients, real Redis. Each node gets its
//! own `CHAT_CLUSTER`, so tests run in parallel and delete what they wrote.

#![allow(dead_code)] // each test binary uses part of the harness

pub mod cluster;
pub mod http;
pub mod redis_server;
pub mod slow_link;
pub mod sql_server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_node::{Config, Server};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const ADMIN: &str = "test-admin-token";
/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long one step of the harness (an HTTP request, a handshake, a node
/// start or stop) may take: past it the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// `f`, or a panic naming `what` if it is not done within `limit`.
pub async fn within<T>(
    what: impl std::fmt::Display,
    limit: Duration,
    f: impl Future<Output = T>,
) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Asks `probe` again and again (every 50 ms) until it yields a value; a
/// panic naming `what` once `limit` has passed. For conditions that the
/// machine's load decides when they come true, never how.
pub async fn eventually<T>(
    what: impl std::fmt::Display,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(v) = within(&what, left.max(Duration::from_millis(1)), probe()).await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one series (`name` or `name{label="v"}`, exactly as the
/// node writes it) in Prometheus or OpenMetrics text; `None` if absent.
/// Whole-line parsing, so `x 1` is not found in `x 10` or `x_total 1`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The Redis the tests use (started by scripts/services.sh).
pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Which store a node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// A cluster id no other test uses: 64 random bits, so parallel tests and
/// test processes never meet (a pid or the clock can repeat).
pub fn unique_cluster(tag: &str) -> String {
    format!("t-{tag}-{:016x}", rand::random::<u64>())
}

/// Deletes every Redis key of a cluster. Runs in `Drop`s, where no async
/// timeout reaches: a Redis that hangs (a test may stop it) costs a few
/// seconds, never the whole run.
pub fn delete_cluster_keys(url: &str, cluster: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let limit = Duration::from_secs(2);
    let Ok(mut conn) = client.get_connection_with_timeout(limit) else {
        return;
    };
    if conn.set_read_timeout(Some(limit)).is_err() || conn.set_write_timeout(Some(limit)).is_err() {
        return;
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("chat:{cluster}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

/// Issues a token for `user` through the admin API of the node at `base`
/// (`http://host:port`); panics unless it answers 201.
pub async fn issue_token(http: &http::Http, base: &str, user: &str, platform: &str) -> String {
    let r = http
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"user": user, "platform": platform}))
        .send()
        .await
        .expect("token request");
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "token for {user}: {v}");
    v["token"].as_str().unwrap().to_owned()
}

/// A node running in this process.
pub struct TestNode {
    pub addr: SocketAddr,
    pub cluster: String,
    pub backend: Backend,
    pub redis_url: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), chat_node::Error>>>,
    http: crate::common::http::Http,
}

impl TestNode {
    /// Starts a node with test defaults, changed by `tweak`.
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestNode {
        let cluster = unique_cluster("n");
        let redis = (backend == Backend::Redis).then(redis_url);
        Self::start_in(backend, &cluster, redis, tweak).await
    }

    /// Starts a node of an existing cluster (same Redis, same keys).
    pub async fn start_in(
        backend: Backend,
        cluster: &str,
        redis_url: Option<String>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestNode {
        let mut cfg = Config::parse_from(["chat-node"]);
        cfg.cluster = cluster.to_owned();
        cfg.redis_url = redis_url.clone();
        cfg.admin_token = Some(ADMIN.to_owned());
        cfg.bind = "127.0.0.1".parse().unwrap();
        cfg.port = Some(0);
        cfg.health_port = 0;
        cfg.drain_grace_s = 1;
        cfg.redis_timeout_ms = 500;
        tweak(&mut cfg);
        let server = within("node start", STEP, Server::bind(cfg))
            .await
            .expect("node binds");
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestNode {
            addr,
            cluster: cluster.to_owned(),
            backend,
            redis_url,
            shutdown: Some(tx),
            task: Some(task),
            http: crate::common::http::Http::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Issues a token through the admin API.
    pub async fn token(&self, user: &str, platform: &str) -> String {
        issue_token(&self.http, &self.url(""), user, platform).await
    }

    pub async fn revoke(&self, token: &str) -> u16 {
        self.http
            .delete(self.url(&format!("/v1/tokens/{token}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub fn http(&self) -> &crate::common::http::Http {
        &self.http
    }

    /// A connected session of `user` on a fresh token.
    pub async fn session(&self, user: &str) -> Client {
        let token = self.token(user, "web").await;
        Client::connect(self.addr, &token).await.expect_connected()
    }

    /// Stops the node (drain) and waits for it.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = within("node stop (drain)", STEP, task).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(url) = &self.redis_url {
            delete_cluster_keys(url, &self.cluster);
        }
    }
}

/// A WebSocket client speaking the protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `connected` frame, once connected.
    pub connected: Value,
}

/// How a connection attempt went.
pub struct Connecting(pub Client);

impl Connecting {
    pub fn expect_connected(self) -> Client {
        assert_eq!(
            self.0.connected["type"], "connected",
            "{}",
            self.0.connected
        );
        self.0
    }
}

impl Client {
    /// Opens `/ws` without sending anything.
    pub async fn open(addr: SocketAddr) -> Client {
        let (ws, _) = within(
            "ws handshake",
            STEP,
            connect_async(format!("ws://{addr}/ws")),
        )
        .await
        .expect("ws connects");
        Client {
            ws,
            connected: Value::Null,
        }
    }

    /// Like [`Client::connect`], but `None` when the node refuses the
    /// WebSocket handshake (say, over a connection limit).
    pub async fn try_connect(addr: SocketAddr, token: &str) -> Option<Connecting> {
        let (ws, _) = within(
            "ws handshake",
            STEP,
            connect_async(format!("ws://{addr}/ws")),
        )
        .await
        .ok()?;
        let mut c = Client {
            ws,
            connected: Value::Null,
        };
        c.send(json!({"type": "connect", "token": token, "device": "test"}))
            .await;
        c.connected = c.recv().await;
        Some(Connecting(c))
    }

    /// Opens `/ws` and sends `connect`; `connected` holds the first reply.
    pub async fn connect(addr: SocketAddr, token: &str) -> Connecting {
        let mut c = Client::open(addr).await;
        c.send(json!({"type": "connect", "token": token, "device": "test"}))
            .await;
        c.connected = c.recv().await;
        Connecting(c)
    }

    pub fn user(&self) -> &str {
        self.connected["user"].as_str().unwrap()
    }
    pub fn pts(&self) -> u64 {
        self.connected["pts"].as_u64().unwrap()
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(Message::Text(v.to_string().into())).await;
    }

    pub async fn send_raw(&mut self, m: Message) {
        within("ws send", STEP, self.ws.send(m))
            .await
            .expect("ws send");
    }

    /// The next text frame as JSON; panics on anything else or on timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("connection open")
                .expect("frame reads");
            match m {
                Message::Text(t) => return serde_json::from_str(&t).expect("frame is JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Sends a request and returns the next text frame, or `None` once the
    /// connection is gone (or nothing comes within a harness step): for
    /// traffic that outlives a node a test kills.
    pub async fn try_request(&mut self, v: Value) -> Option<Value> {
        tokio::time::timeout(STEP, self.ws.send(Message::Text(v.to_string().into())))
            .await
            .ok()?
            .ok()?;
        loop {
            match tokio::time::timeout(STEP, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Sends a request and returns the next frame.
    pub async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.recv().await
    }

    /// Sends a text message; returns the `sent` reply.
    pub async fn send_text(&mut self, to: &str, id: &str, body: &str) -> Value {
        let r = self
            .request(json!({"type": "send", "id": id, "to": to, "kind": "text", "body": body}))
            .await;
        assert_eq!(r["type"], "sent", "{r}");
        r
    }

    /// Asserts that no text frame arrives for `dur`.
    pub async fn expect_silence(&mut self, dur: Duration) {
        match tokio::time::timeout(dur, self.ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Text(t)))) => panic!("unexpected frame {t}"),
            Ok(other) => panic!("unexpected event {other:?}"),
        }
    }

    /// Waits for the server's close frame; returns its code. Text frames
    /// before it are returned too.
    pub async fn closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within the wait")
            {
                Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(c))) => return (frames, c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }

    /// Syncs everything after `after`, following `more`.
    pub async fn sync_all(&mut self, after: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let r = self
                .request(json!({"type": "sync", "after": after, "limit": 1000}))
                .await;
            assert_eq!(r["type"], "synced", "{r}");
            let entries = r["entries"].as_array().unwrap().clone();
            if let Some(last) = entries.last() {
                after = last["pts"].as_u64().unwrap();
            }
            out.extend(entries);
            if !r["more"].as_bool().unwrap() {
                return out;
            }
        }
    }
}

/// Runs a test body once per store.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name($crate::common::Backend::Memory).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$name($crate::common::Backend::Redis).await
                }
            }
        )*
    };
}

/// Messages [`slow_consumer`] sends.
pub const SLOW_CONSUMER_MESSAGES: u64 = 400;

/// How many messages [`slow_consumer`]'s sender may be ahead of the reading
/// device: no more than the smallest session queue a caller runs with (4
/// deliveries, 240 kB), so the reader's queue cannot overflow, while the
/// 400 × 60 kB the stuck device is sent overflow its queue and the socket
/// buffers under it.
pub const SLOW_CONSUMER_WINDOW: usize = 4;

/// `alice` sends large messages to bob; bob has a session that never reads
/// (`stuck`) and one that does (`reader`). The reading device gets every
/// message, the stuck one is closed with 1013 before it got them all, and
/// the reader's connection is unharmed. alice keeps at most
/// [`SLOW_CONSUMER_WINDOW`] messages ahead of the reader, so the reader is
/// never the slow one however busy the machine is (without the window a
/// test process starved of CPU reads slower than the node sends, and the
/// node rightly cuts the reader off too).
/// The caller checks `chat_sessions_stopped_slow_total` is 1.
/// The nodes run with a small outbound queue, a large rate limit and
/// frames of 60 kB allowed.
pub async fn slow_consumer(mut alice: Client, mut stuck: Client, mut reader: Client) {
    let body = "x".repeat(60_000);
    let n = SLOW_CONSUMER_MESSAGES as usize;
    let (read, mut progress) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        for i in 0..n {
            let f = reader.recv().await;
            assert_eq!(f["type"], "msg");
            read.send_replace(i + 1);
        }
        reader
    });
    for i in 0..n {
        within(
            "the reader keeps up with the window",
            Duration::from_secs(30),
            progress.wait_for(|&got| got + SLOW_CONSUMER_WINDOW > i),
        )
        .await
        .expect("the reader is running");
        let r = alice
            .request(
                json!({"type":"send","id":format!("m{i}"),"to":"bob","kind":"text","body":body}),
            )
            .await;
        assert_eq!(r["type"], "sent");
    }
    let mut reader = within(
        "the reader gets every message",
        Duration::from_secs(30),
        reading,
    )
    .await
    .unwrap();
    let (frames, code) = until_close(&mut stuck).await;
    // 1013, or a dropped connection when the close frame itself could not
    // be written into the full socket (the callers check the node counted
    // the session as too slow).
    assert!(matches!(code, Some(1013) | None), "closed with {code:?}");
    assert!(frames < n, "{frames} frames reached the stuck session");
    assert_eq!(reader.request(json!({"type":"ping"})).await["type"], "pong");
}

/// Reads frames until the close; returns how many text frames came first.
pub async fn until_close(c: &mut Client) -> (usize, Option<u16>) {
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.ws.next())
            .await
            .expect("close arrives")
        {
            Some(Ok(Message::Text(_))) => n += 1,
            Some(Ok(Message::Close(f))) => return (n, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (n, None),
        }
    }
}
