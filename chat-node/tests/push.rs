//! The offline push webhook (DESIGN.md, "Offline push") against a real
//! HTTP receiver started by each test: who gets a push, what it carries and
//! how it is signed, retries with a stable event id, and a receiver that
//! hangs costing sends nothing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, StatusCode};
use common::{Backend, STEP, TestNode, eventually, metric_value};
use serde_json::{Value, json};

const SECRET: &str = "webhook-secret";

/// What the receiver does with request number `n` (0-based).
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Fail,
    Refuse,
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hook {
    headers: HeaderMap,
    body: String,
}

impl Hook {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the webhook body is JSON")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Hook>>>);

impl Received {
    fn all(&self) -> Vec<Hook> {
        self.0.lock().unwrap().clone()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Starts a receiver on 127.0.0.1:0 answering request `n` with `answer(n)`.
async fn receiver(answer: fn(usize) -> Answer) -> (SocketAddr, Received) {
    let got = Received::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let n = {
                    let mut v = state.0.lock().unwrap();
                    v.push(Hook { headers, body });
                    v.len() - 1
                };
                match answer(n) {
                    Answer::Ok => StatusCode::NO_CONTENT,
                    Answer::Fail => StatusCode::SERVICE_UNAVAILABLE,
                    Answer::Refuse => StatusCode::BAD_REQUEST,
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        StatusCode::OK
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got)
}

async fn node_pushing_to(
    b: Backend,
    hook: SocketAddr,
    tweak: impl FnOnce(&mut chat_node::Config),
) -> TestNode {
    TestNode::start(b, |c| {
        c.push_webhook_url = Some(format!("http://{hook}/hook"));
        c.push_webhook_secret = Some(SECRET.into());
        tweak(c);
    })
    .await
}

/// Checks `X-Parley-Signature` independently of the node's code.
fn assert_signed(h: &Hook) {
    let sig = h.header("x-parley-signature");
    let hex_sig = sig.strip_prefix("sha256=").expect("sha256= signature");
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let bytes = hex::decode(hex_sig).expect("hex signature");
    assert!(
        hmac::verify(&key, h.body.as_bytes(), &bytes).is_ok(),
        "signature {sig} does not match body {}",
        h.body
    );
}

async fn metrics(node: &TestNode) -> String {
    node.get("/metrics").await.1
}

both_stores!(
    only_receivers_with_no_live_session_get_a_signed_push,
    group_members_offline_get_a_push_each,
);

async fn only_receivers_with_no_live_session_get_a_signed_push(b: Backend) {
    let (hook, got) = receiver(|_| Answer::Ok).await;
    let node = node_pushing_to(b, hook, |_| {}).await;
    let mut alice = node.session("alice").await;
    let sent = alice.send_text("bob", "c-1", "hi bob").await;
    let id = sent["msg"]["id"].as_str().unwrap().to_owned();
    let first = eventually("the push for bob arrives", STEP, async || {
        got.all().into_iter().next()
    })
    .await;
    assert_signed(&first);
    assert_eq!(first.header("content-type"), "application/json");
    assert_eq!(first.header("x-parley-event"), format!("{id}:bob"));
    let body = first.json();
    assert_eq!(body["id"], format!("{id}:bob"));
    assert_eq!(body["type"], "offline_message");
    assert_eq!(body["user"], "bob");
    assert_eq!(body["msg"], sent["msg"]);
    assert_eq!(body["unread"], 1);

    // A retried send (same client id) is not pushed again; nor is a
    // message to oneself.
    alice.send_text("bob", "c-1", "hi bob").await;
    alice.send_text("alice", "c-2", "note to self").await;
    // Bob online: no push for what reaches his session.
    let mut bob = node.session("bob").await;
    alice.send_text("bob", "c-3", "you are here").await;
    assert_eq!(bob.recv().await["type"], "msg");
    // Then bob leaves; the next message is pushed again.
    drop(bob);
    eventually("bob's presence is gone", STEP, async || {
        let before = got.len();
        let r = alice
            .request(json!({"type":"send","id": format!("probe-{}", rand::random::<u32>()),"to":"bob","kind":"text","body":"probe"}))
            .await;
        assert_eq!(r["type"], "sent", "{r}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        (got.len() > before).then_some(())
    })
    .await;
    let users: Vec<Value> = got.all().iter().map(|h| h.json()["user"].clone()).collect();
    assert!(users.iter().all(|u| u == "bob"), "{users:?}");
    let bodies: Vec<String> = got
        .all()
        .iter()
        .map(|h| h.json()["msg"]["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies[0], "hi bob");
    assert!(
        !bodies
            .iter()
            .any(|b| b == "you are here" || b == "note to self"),
        "{bodies:?}"
    );
    // Counted once the receiver's answer is read.
    eventually("every push counted as sent", STEP, async || {
        let m = metrics(&node).await;
        (metric_value(&m, r#"chat_push_webhook_total{result="sent"}"#) == Some(got.len() as f64))
            .then_some(())
    })
    .await;
}

async fn group_members_offline_get_a_push_each(b: Backend) {
    let (hook, got) = receiver(|_| Answer::Ok).await;
    let node = node_pushing_to(b, hook, |_| {}).await;
    let mut alice = node.session("alice").await;
    let _carol = node.session("carol").await;
    let r = alice
        .request(json!({"type":"group_create","name":"Team","members":["bob","carol","dave"]}))
        .await;
    assert_eq!(r["type"], "group", "{r}");
    let group = r["group"]["id"].as_str().unwrap().to_owned();
    let r = alice
        .request(json!({"type":"send","id":"g-1","group": group,"kind":"text","body":"hello team"}))
        .await;
    assert_eq!(r["type"], "sent", "{r}");
    let pushes = eventually("pushes for bob and dave", STEP, async || {
        let all = got.all();
        (all.len() >= 2).then_some(all)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut users: Vec<String> = got
        .all()
        .iter()
        .map(|h| h.json()["user"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    // Not carol (online), not alice (the sender), and no push for the
    // group's creation (a system message, not a send).
    assert_eq!(users, ["bob", "dave"]);
    for h in &pushes {
        assert_signed(h);
        let body = h.json();
        assert_eq!(body["msg"]["group"], group);
        assert_eq!(body["msg"]["body"], "hello team");
        assert_eq!(
            body["id"],
            format!(
                "{}:{}",
                r["msg"]["id"].as_str().unwrap(),
                body["user"].as_str().unwrap()
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_with_the_same_event_and_body() {
    // 503 twice, then accepted.
    let (hook, got) = receiver(|n| if n < 2 { Answer::Fail } else { Answer::Ok }).await;
    let node = node_pushing_to(Backend::Memory, hook, |_| {}).await;
    let mut alice = node.session("alice").await;
    alice.send_text("bob", "c-1", "retry me").await;
    let hooks = eventually("three attempts", STEP, async || {
        let all = got.all();
        (all.len() >= 3).then_some(all)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(got.len(), 3, "no attempt after the accepted one");
    for (n, h) in hooks.iter().enumerate() {
        assert_signed(h);
        assert_eq!(h.body, hooks[0].body, "same body on every attempt");
        assert_eq!(
            h.header("x-parley-event"),
            hooks[0].header("x-parley-event")
        );
        assert_eq!(h.header("x-parley-attempt"), (n + 1).to_string());
    }
    let m = eventually("the accepted attempt counted", STEP, async || {
        let m = metrics(&node).await;
        let done = metric_value(&m, r#"chat_push_webhook_total{result="sent"}"#) == Some(1.0)
            && metric_value(&m, "chat_push_queue") == Some(0.0);
        done.then_some(m)
    })
    .await;
    assert_eq!(
        metric_value(&m, r#"chat_push_webhook_total{result="retried"}"#),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_past_its_retry_time_fails_and_a_4xx_is_not_retried() {
    let (hook, got) = receiver(|_| Answer::Fail).await;
    let node = node_pushing_to(Backend::Memory, hook, |c| c.push_retry_s = 1).await;
    let mut alice = node.session("alice").await;
    alice.send_text("bob", "c-1", "never accepted").await;
    eventually("the push is given up", STEP, async || {
        let m = metrics(&node).await;
        (metric_value(&m, r#"chat_push_webhook_total{result="failed"}"#) == Some(1.0)).then_some(())
    })
    .await;
    let attempts = got.len();
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(got.len(), attempts, "nothing after giving up");

    // A 400 is final: one attempt, counted failed, never retried.
    let (hook, got) = receiver(|_| Answer::Refuse).await;
    let node = node_pushing_to(Backend::Memory, hook, |_| {}).await;
    let mut alice = node.session("alice").await;
    alice.send_text("bob", "c-1", "refused").await;
    eventually("the refusal counted", STEP, async || {
        let m = metrics(&node).await;
        (metric_value(&m, r#"chat_push_webhook_total{result="failed"}"#) == Some(1.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1, "a 4xx is not retried");
    let m = metrics(&node).await;
    assert_eq!(
        metric_value(&m, r#"chat_push_webhook_total{result="retried"}"#),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_neither_slows_sends_nor_grows_the_queue() {
    let (hook, got) = receiver(|_| Answer::Hang).await;
    let node = node_pushing_to(Backend::Redis, hook, |c| {
        c.push_queue = 5;
        c.push_concurrency = 2;
        c.push_timeout_ms = 600_000;
    })
    .await;
    let mut alice = node.session("alice").await;
    // Baseline: sends to bob while he is online (no push at all).
    let mut bob = node.session("bob").await;
    let mut baseline = Vec::new();
    for n in 0..20 {
        let t = Instant::now();
        alice.send_text("bob", &format!("b-{n}"), "online").await;
        baseline.push(t.elapsed());
        bob.recv().await;
    }
    drop(bob);
    eventually("bob is offline", STEP, async || {
        let before = got.len();
        alice
            .send_text("bob", &format!("probe-{}", rand::random::<u32>()), "probe")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        (got.len() > before).then_some(())
    })
    .await;
    // Now every send makes a push to a receiver that never answers.
    let mut hung = Vec::new();
    for n in 0..50 {
        let t = Instant::now();
        alice.send_text("bob", &format!("h-{n}"), "offline").await;
        hung.push(t.elapsed());
    }
    baseline.sort();
    hung.sort();
    let p50 = |v: &[Duration]| v[v.len() / 2];
    println!(
        "send round trip, receiver online: p50 {:?} max {:?}; offline with a hanging webhook: p50 {:?} max {:?}",
        p50(&baseline),
        baseline.last().unwrap(),
        p50(&hung),
        hung.last().unwrap()
    );
    // Sends are not held by the webhook (each attempt would hang for ten
    // minutes): the slowest is still far below one attempt's deadline and
    // the median is of the same order as without pushes.
    assert!(*hung.last().unwrap() < Duration::from_secs(2), "{hung:?}");
    assert!(
        p50(&hung) < p50(&baseline) * 10 + Duration::from_millis(50),
        "{hung:?} vs {baseline:?}"
    );
    // Bounded: at most 5 pushes pending; the others are dropped and counted.
    let m = metrics(&node).await;
    assert_eq!(metric_value(&m, "chat_push_queue"), Some(5.0), "{m}");
    let dropped = metric_value(&m, r#"chat_push_webhook_total{result="dropped"}"#).unwrap();
    assert!(dropped >= 45.0, "{dropped}");
    assert!(
        got.len() <= 2,
        "at most push_concurrency requests in flight: {}",
        got.len()
    );
    // Still serving: a second user's session opens and gets its messages.
    let mut carol = node.session("carol").await;
    alice.send_text("carol", "c-1", "hi").await;
    assert_eq!(carol.recv().await["type"], "msg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_settings_are_checked_at_start() {
    use chat_node::{Config, Server};
    use clap::Parser;
    for args in [
        vec!["--push-webhook-url", "http://127.0.0.1:1/hook"],
        vec![
            "--push-webhook-url",
            "https://example.com/hook",
            "--push-webhook-secret",
            "s",
        ],
        vec![
            "--push-webhook-url",
            "nonsense",
            "--push-webhook-secret",
            "s",
        ],
    ] {
        let mut cfg = Config::parse_from(["chat-node"].into_iter().chain(args.iter().copied()));
        cfg.port = Some(0);
        cfg.health_port = 0;
        cfg.bind = "127.0.0.1".parse().unwrap();
        let err = Server::bind(cfg).await.err();
        assert!(
            matches!(err, Some(chat_node::Error::Config(_))),
            "{args:?}: {err:?}"
        );
    }
}
