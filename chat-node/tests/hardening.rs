//! Defects a review and an independent run found (issue "Hardening"),
//! each shown with real clients against a running node, on both stores.

mod common;

use common::slow_link::SlowLink;
use common::{Backend, Client, TestNode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

both_stores!(
    oversized_inbox_syncs_in_pages_within_the_reply_budget,
    oversized_history_pages_within_the_reply_budget,
    sessions_end_when_their_token_expires,
);

/// The next text frame, raw, with its length.
async fn recv_raw(c: &mut Client) -> String {
    loop {
        let m = tokio::time::timeout(common::WAIT, c.ws.next())
            .await
            .expect("a frame within the wait")
            .expect("connection open")
            .expect("frame reads");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// 50 messages of 4096 control characters: 24 KiB each once JSON-escaped,
/// 1.2 MB in all, over the 1 MiB reply budget (and far over the 256 KiB
/// write buffer that used to drop the connection).
const HEAVY: usize = 50;

async fn heavy_inbox(node: &TestNode) -> (Client, Client) {
    let mut bob = node.session("bob").await;
    let body = "\u{1}".repeat(4096);
    for i in 0..HEAVY {
        bob.send_text("alice", &format!("h-{i}"), &body).await;
    }
    // Alice was offline: it is all in her inbox.
    let alice = node.session("alice").await;
    (alice, bob)
}

async fn oversized_inbox_syncs_in_pages_within_the_reply_budget(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let (mut alice, _bob) = heavy_inbox(&node).await;
    let mut after = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        alice
            .send(json!({"type":"sync","after":after,"limit":1000}))
            .await;
        let raw = recv_raw(&mut alice).await;
        assert!(raw.len() <= 1 << 20, "a page of {} bytes", raw.len());
        let r: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(r["type"], "synced", "{r}");
        pages += 1;
        for e in r["entries"].as_array().unwrap() {
            // Whole messages: pages cut between entries, never inside one.
            assert_eq!(e["msg"]["body"].as_str().unwrap().len(), 4096);
            seen.push(e["pts"].as_u64().unwrap());
        }
        after = *seen.last().unwrap();
        if !r["more"].as_bool().unwrap() {
            break;
        }
    }
    assert!(pages >= 2, "1.2 MB fits no single page");
    assert_eq!(seen, (1..=HEAVY as u64).collect::<Vec<_>>());
    // The connection is still alive and well.
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");
    node.stop().await;
}

async fn oversized_history_pages_within_the_reply_budget(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let (mut alice, _bob) = heavy_inbox(&node).await;
    let mut before: Option<u64> = None;
    let mut seqs = Vec::new();
    let mut pages = 0;
    loop {
        let mut q = json!({"type":"history","with":"bob","limit":200});
        if let Some(b) = before {
            q["before"] = json!(b);
        }
        alice.send(q).await;
        let raw = recv_raw(&mut alice).await;
        assert!(raw.len() <= 1 << 20, "a page of {} bytes", raw.len());
        let r: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(r["type"], "history", "{r}");
        pages += 1;
        let page: Vec<u64> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        // The newest messages of what is left, ascending.
        assert!(page.windows(2).all(|w| w[1] == w[0] + 1), "{page:?}");
        before = page.first().copied();
        seqs.splice(0..0, page);
        if !r["more"].as_bool().unwrap() {
            break;
        }
    }
    assert!(pages >= 2);
    assert_eq!(seqs, (1..=HEAVY as u64).collect::<Vec<_>>());
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_redis_timeout_is_still_delivered_live() {
    // The node talks to Redis through a relay that can hold replies back.
    let redis_addr = "127.0.0.1:6379".parse().unwrap();
    let link = SlowLink::start(redis_addr).await;
    let cluster = common::unique_cluster("late");
    let url = format!("redis://{}/0", link.addr);
    let node = TestNode::start_in(Backend::Redis, &cluster, Some(url), |c| {
        c.redis_timeout_ms = 300
    })
    .await;
    let mut alice = node.session("alice").await;
    let mut bob = node.session("bob").await;
    // The send reaches Redis and is stored; its reply comes too late.
    link.hold_replies();
    let r = alice
        .request(json!({"type":"send","id":"c-late","to":"bob","kind":"text","body":"late"}))
        .await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["code"], "unavailable");
    assert_eq!(r["id"], "c-late");
    assert!(
        !r["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "a timeout cannot promise that: {r}"
    );
    link.release();
    // The client retries, as told: the store recognises the id, and bob,
    // who got nothing live, gets it now.
    let retry = alice.send_text("bob", "c-late", "late").await;
    let live = bob.recv().await;
    assert_eq!(live["type"], "msg", "{live}");
    assert_eq!(live["msg"]["id"], retry["msg"]["id"]);
    assert_eq!(live["pts"], 1);
    // Stored once.
    assert_eq!(bob.sync_all(0).await.len(), 1);
    node.stop().await;
    common::delete_cluster_keys(&common::redis_url(), &cluster);
}

async fn sessions_end_when_their_token_expires(b: Backend) {
    let node = TestNode::start(b, |c| c.token_ttl_s = 2).await;
    let mut alice = node.session("alice").await;
    let (frames, code) = alice.closed().await;
    assert_eq!(
        frames,
        vec![json!({"type":"kicked","reason":"token_expired"})]
    );
    assert_eq!(code, Some(4002));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_kick_was_lost_ends_at_its_next_token_check() {
    let node = TestNode::start(Backend::Redis, |c| c.session_check_s = 1).await;
    let token = node.token("alice", "web").await;
    let mut alice = Client::connect(node.addr, &token).await.expect_connected();
    // The token goes as a revocation on another node would take it, but no
    // kick ever reaches this node.
    let hash = chat_node::ids::token_hash(&token);
    let mut r = redis::Client::open(common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let gone: i64 = redis::cmd("DEL")
        .arg(format!("chat:{}:token:{hash}", node.cluster))
        .query(&mut r)
        .unwrap();
    assert_eq!(gone, 1, "the token is stored under its hash");
    let (frames, code) = alice.closed().await;
    assert_eq!(
        frames,
        vec![json!({"type":"kicked","reason":"token_revoked"})]
    );
    assert_eq!(code, Some(4002));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_whose_kick_cannot_reach_other_nodes_is_an_error() {
    // A broker that is not there: the node serves, but reaches no other node.
    let dead = common::cluster::free_port();
    let node = TestNode::start(Backend::Redis, |c| {
        c.amqp_url = Some(format!("amqp://guest:guest@127.0.0.1:{dead}/%2f"))
    })
    .await;
    let token = node.token("alice", "web").await;
    // Presence says alice has a session on another node.
    let mut r = redis::Client::open(common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("chat:{}:presence:alice", node.cluster))
        .arg(9999)
        .arg("elsewhere")
        .query(&mut r)
        .unwrap();
    assert_eq!(node.revoke(&token).await, 503);
    // The token itself is gone all the same.
    let refused = Client::connect(node.addr, &token).await.0.connected;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    node.stop().await;
}

/// Sends raw bytes on a new TCP connection and returns what comes back
/// within `wait` (until the server closes or the wait ends).
async fn raw_http(addr: std::net::SocketAddr, request: &str, wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_whose_body_never_comes_holds_nothing() {
    let node = TestNode::start(Backend::Memory, |c| c.http_header_timeout_s = 1).await;
    let wait = std::time::Duration::from_secs(5);
    // Without the admin token: refused before a byte of the body is read.
    let r = raw_http(
        node.addr,
        "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
        wait,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // With it, but silent: cut off at the deadline.
    let started = tokio::time::Instant::now();
    let r = raw_http(
        node.addr,
        &format!(
            "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 2000000\r\n\r\n",
            common::ADMIN
        ),
        wait,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(started.elapsed() < wait);
    // Too large a body is refused by size.
    let big = "x".repeat(10_000);
    let r = raw_http(
        node.addr,
        &format!(
            "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
            common::ADMIN,
            big.len()
        ),
        wait,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limits_get_503_and_others_go_on() {
    for per_ip in [false, true] {
        let node = TestNode::start(Backend::Memory, |c| {
            if per_ip {
                c.max_connections_per_ip = 2;
            } else {
                c.max_connections = 2;
            }
        })
        .await;
        let wait = std::time::Duration::from_secs(5);
        let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        // Two WebSocket sessions hold both places (the token requests'
        // connections may take a moment to close on the node's side).
        let tokens = [
            node.token("alice", "web").await,
            node.token("bob", "web").await,
        ];
        let mut held = Vec::new();
        for t in &tokens {
            held.push(
                common::eventually("a place for a session", wait, async || {
                    let c = Client::try_connect(node.addr, t).await?;
                    Some(c.expect_connected())
                })
                .await,
            );
        }
        let mut alice = held.remove(0);
        let r = raw_http(node.addr, health, wait).await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.contains("too many connections"), "{r}");
        // The sessions inside the limit are untouched.
        assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");
        // A place frees when a session leaves.
        drop(alice);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let r = raw_http(node.addr, health, wait).await;
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no place freed: {r}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        node.stop().await;
    }
}

both_stores!(
    sessions_per_user_are_capped_per_node,
    pages_cost_rate_tokens_by_size
);

async fn sessions_per_user_are_capped_per_node(b: Backend) {
    let node = TestNode::start(b, |c| c.max_sessions_per_user = 2).await;
    let _a1 = node.session("alice").await;
    let _a2 = node.session("alice").await;
    let token = node.token("alice", "web").await;
    let mut third = Client::connect(node.addr, &token).await.0;
    assert_eq!(third.connected["code"], "forbidden", "{}", third.connected);
    let (_, code) = third.closed().await;
    assert_eq!(code, Some(4003));
    // Another user is not affected.
    let mut bob = node.session("bob").await;
    assert_eq!(bob.request(json!({"type":"ping"})).await["type"], "pong");
    node.stop().await;
}

async fn pages_cost_rate_tokens_by_size(b: Backend) {
    let node = TestNode::start(b, |c| {
        c.rate_per_s = 1;
        c.rate_burst = 20;
    })
    .await;
    let mut alice = node.session("alice").await;
    // 1 + 1000/100 = 11 tokens of the 20.
    let r = alice
        .request(json!({"type":"sync","after":0,"limit":1000,"rid":"s1"}))
        .await;
    assert_eq!(r["type"], "synced", "{r}");
    // The second page does not fit in what is left...
    let r = alice
        .request(json!({"type":"sync","after":0,"limit":1000,"rid":"s2"}))
        .await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("rate_limited")),
        "{r}"
    );
    assert_eq!(r["rid"], "s2");
    // ...but a ping (one token) still does.
    assert_eq!(alice.request(json!({"type":"ping"})).await["type"], "pong");
    node.stop().await;
}
