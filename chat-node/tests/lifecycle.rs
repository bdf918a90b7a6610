//! Time limits, draining on SIGTERM (the real binary), and a Redis outage
//! with recovery (a private Redis process this test stops and restarts).

mod common;

use parley_cluster::testing::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::redis_server::PrivateRedis;
use common::{ADMIN, Backend, Client, TestNode};
use serde_json::json;

both_stores!(
    no_connect_in_time_closes_4008,
    idle_connections_close_4008,
    drain_sends_reconnect_then_closes_4009
);

async fn no_connect_in_time_closes_4008(b: Backend) {
    let node = TestNode::start(b, |c| c.auth_timeout_s = 1).await;
    let mut c = Client::open(node.addr).await;
    let started = Instant::now();
    let (frames, code) = c.closed().await;
    assert!(frames.is_empty());
    assert_eq!(code, Some(4008));
    assert!(started.elapsed() >= Duration::from_millis(900));
    node.stop().await;
}

async fn idle_connections_close_4008(b: Backend) {
    let node = TestNode::start(b, |c| c.idle_timeout_s = 1).await;
    let mut busy = node.session("alice").await;
    let mut idle = node.session("bob").await;
    let idle_since = Instant::now();
    // Frames of any kind keep a connection alive: busy pings (paced well
    // under the rate limit) for as long as the idle one is open.
    let pinging = async {
        loop {
            assert_eq!(busy.request(json!({"type":"ping"})).await["type"], "pong");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (_, code) = tokio::select! {
        closed = idle.closed() => closed,
        _ = pinging => unreachable!("busy pings until the idle one closes"),
    };
    assert_eq!(code, Some(4008));
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    // Busy has now lived past the idle timeout, and is still open.
    assert_eq!(busy.request(json!({"type":"ping"})).await["type"], "pong");
    node.stop().await;
}

async fn drain_sends_reconnect_then_closes_4009(b: Backend) {
    let health = free_port();
    let node = TestNode::start(b, |c| {
        c.drain_grace_s = 1;
        c.health_port = health;
    })
    .await;
    let addr = node.addr;
    let readyz = format!("http://127.0.0.1:{health}/readyz");
    let ready = |url: String| async move { common::http::get(url).await.map(|r| r.status()) };
    assert_eq!(ready(readyz.clone()).await, Ok(common::http::Status(200)));
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    let stopping = tokio::spawn(node.stop());
    assert_eq!(
        alice.recv().await,
        json!({"type":"reconnect","reason":"draining"})
    );
    assert_eq!(
        bob.recv().await,
        json!({"type":"reconnect","reason":"draining"})
    );
    // While draining: not ready (the health port still answers), no new
    // connections, and the sessions it has still work.
    assert_eq!(ready(readyz).await, Ok(common::http::Status(503)));
    let connecting = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"));
    assert!(
        common::within("ws handshake", common::STEP, connecting)
            .await
            .is_err(),
        "a new connection while draining"
    );
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");
    let (_, code) = alice.closed().await;
    assert_eq!(code, Some(4009));
    assert_eq!(bob.closed().await.1, Some(4009));
    common::within("drain", Duration::from_secs(10), stopping)
        .await
        .unwrap();
    // No new connections once drained.
    let connecting = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"));
    assert!(
        common::within("ws handshake", common::STEP, connecting)
            .await
            .is_err()
    );
}

/// A chat-node child process; killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

async fn wait_ready(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    for _ in 0..100 {
        if let Ok(r) = crate::common::http::get(&url).await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node on {port} never became ready");
}

async fn token(port: u16, user: &str) -> String {
    let base = format!("http://127.0.0.1:{port}");
    common::issue_token(&common::http::Http::new(), &base, user, "web").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_within_the_grace() {
    let port = free_port();
    let health = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_chat-node"))
        .env("CHAT_PORT", port.to_string())
        .env("CHAT_HEALTH_PORT", health.to_string())
        .env("CHAT_BIND", "127.0.0.1")
        .env("CHAT_ADMIN_TOKEN", ADMIN)
        .env("CHAT_DRAIN_GRACE_S", "2")
        .env_remove("CHAT_REDIS_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    wait_ready(port).await;
    assert_eq!(
        crate::common::http::get(format!("http://127.0.0.1:{health}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stays = Client::connect(addr, &token(port, "alice").await)
        .await
        .expect_connected();
    let mut leaves = Client::connect(addr, &token(port, "bob").await)
        .await
        .expect_connected();

    let started = Instant::now();
    signal(&proc.0, "-TERM");
    assert_eq!(
        stays.recv().await,
        json!({"type":"reconnect","reason":"draining"})
    );
    assert_eq!(leaves.recv().await["type"], "reconnect");
    // The health port tells Kubernetes the node is no longer ready.
    let r = crate::common::http::get(format!("http://127.0.0.1:{health}/readyz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // A client that follows the advice leaves at once...
    common::within("ws close", common::STEP, leaves.ws.close(None))
        .await
        .unwrap();
    // ...one that does not is closed at the end of the grace period.
    let (_, code) = stays.closed().await;
    assert_eq!(code, Some(4009));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "closed after {waited:?}"
    );
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "node did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_unavailable_then_recovers() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("parley-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = PrivateRedis::start(port, &dir);
    let url = format!("redis://127.0.0.1:{port}/0");
    let cluster = common::unique_cluster("outage");
    let node = TestNode::start_in(Backend::Redis, &cluster, Some(url), |_| {}).await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    alice.send_text("bob", "before", "one").await;
    bob.recv().await;

    redis.kill();
    let e = alice
        .request(
            json!({"type":"send","id":"during","to":"bob","kind":"text","body":"two","rid":"r"}),
        )
        .await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{e}"
    );
    assert_eq!(
        (e["id"].as_str(), e["rid"].as_str()),
        (Some("during"), Some("r"))
    );
    assert_eq!(
        bob.request(json!({"type":"sync","after":0})).await["code"],
        "unavailable"
    );
    readyz_becomes(&node, 503).await;
    // Connections stay open through the outage.
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");

    redis.restart();
    // The node reconnects by itself; the client retries with the same id.
    let mut sent = None;
    for _ in 0..50 {
        let r = alice
            .request(json!({"type":"send","id":"during","to":"bob","kind":"text","body":"two"}))
            .await;
        if r["type"] == "sent" {
            sent = Some(r);
            break;
        }
        assert_eq!(r["code"], "unavailable", "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent = sent.expect("node recovered after Redis came back");
    assert_eq!(sent["msg"]["seq"], 2);
    readyz_becomes(&node, 200).await;
    assert_eq!(bob.recv().await["msg"]["body"], "two");
    // Exactly the two messages, nothing partial from the failed attempt.
    let entries = bob.sync_all(0).await;
    let bodies: Vec<_> = entries
        .iter()
        .map(|e| e["msg"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["one", "two"]);
    assert_eq!(
        bob.request(json!({"type":"unread"})).await["counts"],
        json!({"alice": 2})
    );
    node.stop().await;
}

/// Waits for `/readyz` to answer `status` (the node reads its backends'
/// readiness at most once a second).
async fn readyz_becomes(node: &TestNode, status: u16) {
    common::eventually(format!("/readyz {status}"), common::WAIT, async || {
        (node.get("/readyz").await.0 == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_gives_unavailable_in_time_then_recovers() {
    let (node, _redis, _alice, _bob) = send_through_a_redis_hang().await;
    readyz_becomes(&node, 200).await;
    // Stored once: the attempts during the hang left one message, not two.
    let mut fresh = node.session("bob").await;
    let bodies: Vec<_> = fresh
        .sync_all(0)
        .await
        .iter()
        .map(|e| e["msg"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["one", "two"]);
    node.stop().await;
}

/// PROTOCOL.md: `unavailable` means "nothing was changed". With a hung (not
/// a dead) Redis the send script is already on its way when the node gives
/// up waiting; Redis runs it once it wakes, so the message is stored after
/// all, and the client's retry with the same id is answered as a duplicate.
/// Its first attempt was delivered to nobody, and this node knows it (it
/// answered that attempt `unavailable`), so the retry is delivered: bob's
/// live session gets it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_retried_after_a_redis_hang_reaches_live_sessions() {
    let (node, _redis, _alice, mut bob) = send_through_a_redis_hang().await;
    assert_eq!(bob.recv().await["msg"]["body"], "two");
    bob.expect_silence(Duration::from_millis(300)).await;
    node.stop().await;
}

/// A node on a private Redis; alice sends "one" to bob, Redis hangs
/// (SIGSTOP: sockets open, nothing answers), alice's send of "two" and
/// bob's sync are answered `unavailable` in time, Redis wakes, and alice
/// retries "two" with the same id until it is `sent`.
async fn send_through_a_redis_hang() -> (TestNode, PrivateRedis, Client, Client) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("parley-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let redis = PrivateRedis::start(port, &dir);
    let url = format!("redis://127.0.0.1:{port}/0");
    let cluster = common::unique_cluster("hung");
    let node = TestNode::start_in(Backend::Redis, &cluster, Some(url), |c| {
        c.redis_timeout_ms = 500
    })
    .await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    alice.send_text("bob", "before", "one").await;
    assert_eq!(bob.recv().await["msg"]["body"], "one");

    // Every request still gets its answer within the wait
    // (CHAT_REDIS_TIMEOUT_MS), not never.
    redis.signal("-STOP");
    let e = alice
        .request(json!({"type":"send","id":"during","to":"bob","kind":"text","body":"two"}))
        .await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("unavailable"), Some("during")),
        "{e}"
    );
    assert_eq!(
        bob.request(json!({"type":"sync","after":0})).await["code"],
        "unavailable"
    );
    readyz_becomes(&node, 503).await;
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");

    redis.signal("-CONT");
    let sent = common::eventually("a send once Redis answers", common::STEP, async || {
        let r = alice
            .request(json!({"type":"send","id":"during","to":"bob","kind":"text","body":"two"}))
            .await;
        if r["type"] != "sent" {
            assert_eq!(r["code"], "unavailable", "{r}");
            return None;
        }
        Some(r)
    })
    .await;
    assert_eq!(sent["msg"]["seq"], 2);
    (node, redis, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tcp_client_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let node = TestNode::start(Backend::Memory, |c| c.http_header_timeout_s = 1).await;
    let mut silent = common::within(
        "connect",
        common::STEP,
        tokio::net::TcpStream::connect(node.addr),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let started = Instant::now();
    // The node closes the socket: read returns 0 (or a reset), not a hang.
    let r = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Meanwhile the node serves others.
    assert_eq!(node.get("/healthz").await.0, 200);
    node.stop().await;
}

/// Node settings for the slow-consumer scenario ([`common::slow_consumer`]).
fn slow_consumer_settings(c: &mut chat_node::Config) {
    c.outbound_queue = 4;
    c.rate_per_s = 10_000;
    c.rate_burst = 10_000;
    c.max_body_bytes = 60_000;
    c.max_frame_bytes = 200_000;
}

async fn a_session_that_does_not_read_is_closed_1013_and_others_go_on(backend: Backend) {
    let node = TestNode::start(backend, slow_consumer_settings).await;
    let alice = node.session("alice").await;
    let stuck = node.session("bob").await; // never reads until the end
    let reader = node.session("bob").await;
    common::slow_consumer(alice, stuck, reader).await;
    common::eventually("counted as too slow", common::STEP, async || {
        let (_, metrics) = node.get("/metrics").await;
        let n = common::metric_value(&metrics, "chat_sessions_stopped_slow_total");
        (n == Some(1.0)).then_some(())
    })
    .await;
    let back = node.session("bob").await;
    assert_eq!(back.pts(), common::SLOW_CONSUMER_MESSAGES);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_does_not_read_is_closed_1013_and_others_go_on_memory() {
    a_session_that_does_not_read_is_closed_1013_and_others_go_on(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_does_not_read_is_closed_1013_and_others_go_on_redis() {
    a_session_that_does_not_read_is_closed_1013_and_others_go_on(Backend::Redis).await;
}
