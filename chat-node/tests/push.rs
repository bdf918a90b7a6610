//! The offline push webhook (DESIGN.md, "Offline push") against a real
//! HTTP receiver started by each test: who gets a push, what it carries and
//! how it is signed, retries with a stable event id, a receiver that hangs
//! costing sends nothing, a push in hand when its node is killed delivered
//! by another node, a recalled message never pushed, and https receivers
//! checked against a CA made by the test.

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

/// The receiver's routes: `POST /hook` answers request `n` with `answer(n)`.
fn hook_app(answer: fn(usize) -> Answer, got: Received) -> axum::Router {
    axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = got.clone();
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
    )
}

/// Starts a receiver on 127.0.0.1:0 answering request `n` with `answer(n)`.
async fn receiver(answer: fn(usize) -> Answer) -> (SocketAddr, Received) {
    let got = Received::default();
    let app = hook_app(answer, got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got)
}

/// Starts an https receiver on 127.0.0.1:0 with a certificate for
/// 127.0.0.1 issued by a CA made here; returns the CA's PEM too.
async fn tls_receiver(answer: fn(usize) -> Answer) -> (SocketAddr, Received, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let got = Received::default();
    let app = hook_app(answer, got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, got, ca.pem())
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

/// Waits until `series` of the node's metrics reads `value`.
async fn metric_reaches(node: &TestNode, what: &str, series: &str, value: f64) {
    eventually(what, STEP, async || {
        let m = metrics(node).await;
        (metric_value(&m, series) == Some(value)).then_some(())
    })
    .await;
}

both_stores!(
    only_receivers_with_no_live_session_get_a_signed_push,
    group_members_offline_get_a_push_each,
    a_message_recalled_before_its_push_goes_out_is_not_pushed,
    a_group_send_to_a_nearly_full_feed_pushes_what_fits_and_counts_the_rest,
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
    metric_reaches(
        &node,
        "the push is given up",
        r#"chat_push_webhook_total{result="failed"}"#,
        1.0,
    )
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
    metric_reaches(
        &node,
        "the refusal counted",
        r#"chat_push_webhook_total{result="failed"}"#,
        1.0,
    )
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
        c.push_claim_s = 1300;
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
    let m = eventually("the feed's backlog read", STEP, async || {
        let m = metrics(&node).await;
        (metric_value(&m, "chat_push_queue") == Some(5.0)).then_some(m)
    })
    .await;
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
            "ftp://example.com/hook",
            "--push-webhook-secret",
            "s",
        ],
        // A CA file that is not there, and a CA for a plain http receiver.
        vec![
            "--push-webhook-url",
            "https://example.com/hook",
            "--push-webhook-secret",
            "s",
            "--push-webhook-ca",
            "/nonexistent/ca.pem",
        ],
        vec![
            "--push-webhook-url",
            "http://example.com/hook",
            "--push-webhook-secret",
            "s",
            "--push-webhook-ca",
            "/etc/hostname",
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

async fn a_message_recalled_before_its_push_goes_out_is_not_pushed(b: Backend) {
    // One push at a time; the first attempt hangs until its deadline, so
    // the second message waits in the feed while alice recalls it.
    let (hook, got) = receiver(|n| if n == 0 { Answer::Hang } else { Answer::Ok }).await;
    let node = node_pushing_to(b, hook, |c| {
        c.push_concurrency = 1;
        c.push_timeout_ms = 1500;
        c.push_claim_s = 5;
    })
    .await;
    let mut alice = node.session("alice").await;
    alice.send_text("bob", "c-1", "first").await;
    eventually("the first attempt is under way", STEP, async || {
        (got.len() == 1).then_some(())
    })
    .await;
    let sent = alice.send_text("bob", "c-2", "taken back").await;
    let mid = sent["msg"]["id"].as_str().unwrap().to_owned();
    let r = alice.request(json!({"type":"recall","msg": mid})).await;
    assert_eq!(r["type"], "ok", "{r}");
    metric_reaches(
        &node,
        "the recalled message counted skipped",
        r#"chat_push_webhook_total{result="skipped"}"#,
        1.0,
    )
    .await;
    let bodies: Vec<Value> = got
        .all()
        .iter()
        .map(|h| h.json()["msg"]["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        [json!("first"), json!("first")],
        "the retry, never the recalled message"
    );
    metric_reaches(&node, "the feed is empty", "chat_push_queue", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_in_hand_when_its_node_is_killed_is_delivered_by_another_node() {
    use common::cluster::{Cluster, amqp_url};
    // Node 0 pushes to a receiver that keeps failing; node 1 has no webhook
    // yet. The push for bob is in node 0's hands (pending in the feed) when
    // node 0 is killed; node 1, restarted with a working receiver, claims
    // it after the claim timeout and delivers the same event.
    let (failing, tried) = receiver(|_| Answer::Fail).await;
    let (working, delivered) = receiver(|_| Answer::Ok).await;
    let webhook = |hook: SocketAddr| {
        vec![
            ("CHAT_PUSH_WEBHOOK_URL", format!("http://{hook}/hook")),
            ("CHAT_PUSH_WEBHOOK_SECRET", SECRET.to_owned()),
            ("CHAT_PUSH_TIMEOUT_MS", "500".to_owned()),
            ("CHAT_PUSH_CLAIM_S", "2".to_owned()),
        ]
    };
    let mut c = Cluster::start_with_env(2, &amqp_url(), |i| {
        if i == 0 { webhook(failing) } else { vec![] }
    })
    .await;
    // Through node 0: a node writes push entries only with a webhook.
    let mut alice = c.session(0, "alice").await;
    let sent = alice.send_text("bob", "c-1", "survive a crash").await;
    let id = format!("{}:bob", sent["msg"]["id"].as_str().unwrap());
    eventually("node 0 is retrying the push", STEP, async || {
        (tried.len() >= 2).then_some(())
    })
    .await;
    c.kill(0).await;
    assert!(delivered.all().is_empty());
    for (k, v) in webhook(working) {
        c.set_env(1, k, v);
    }
    c.signal(1, "-TERM");
    assert!(
        c.wait_exit(1, Duration::from_secs(20)).await,
        "node 1 drains"
    );
    c.spawn(1);
    c.wait_ready(1).await;
    let hook = eventually("node 1 delivers the claimed push", STEP, async || {
        delivered.all().into_iter().next()
    })
    .await;
    assert_signed(&hook);
    assert_eq!(hook.header("x-parley-event"), id);
    let first_try = tried.all()[0].json();
    assert_eq!(
        hook.json()["id"],
        first_try["id"],
        "the same event on both nodes"
    );
    assert_eq!(hook.json()["msg"], sent["msg"]);
    eventually("the feed is empty", STEP, async || {
        (c.metric(1, "chat_push_queue").await == 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(delivered.len(), 1, "delivered once");
    assert_eq!(
        c.metric(1, r#"chat_push_webhook_total{result="sent"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_checked_against_the_configured_ca() {
    let (addr, got, ca_pem) = tls_receiver(|_| Answer::Ok).await;
    let url = format!("https://{addr}/hook");
    let ca_file =
        std::env::temp_dir().join(format!("parley-push-ca-{}.pem", rand::random::<u64>()));
    std::fs::write(&ca_file, &ca_pem).unwrap();

    // Against the Mozilla roots the test's CA is unknown: every attempt
    // fails at the handshake, and the push is given up.
    let refused = TestNode::start(Backend::Memory, |c| {
        c.push_webhook_url = Some(url.clone());
        c.push_webhook_secret = Some(SECRET.into());
        c.push_retry_s = 1;
    })
    .await;
    let mut alice = refused.session("alice").await;
    alice.send_text("bob", "c-1", "not to an unknown CA").await;
    metric_reaches(
        &refused,
        "the push is given up",
        r#"chat_push_webhook_total{result="failed"}"#,
        1.0,
    )
    .await;
    assert_eq!(got.len(), 0, "no request reached the receiver");

    // With the CA configured, the push arrives signed.
    let trusting = TestNode::start(Backend::Redis, |c| {
        c.push_webhook_url = Some(url.clone());
        c.push_webhook_secret = Some(SECRET.into());
        c.push_webhook_ca = Some(ca_file.display().to_string());
    })
    .await;
    let mut alice = trusting.session("alice").await;
    let sent = alice.send_text("bob", "c-1", "over TLS").await;
    let hook = eventually("the push arrives over TLS", STEP, async || {
        got.all().into_iter().next()
    })
    .await;
    let _ = std::fs::remove_file(&ca_file);
    assert_signed(&hook);
    assert_eq!(hook.json()["msg"], sent["msg"]);
}

async fn a_group_send_to_a_nearly_full_feed_pushes_what_fits_and_counts_the_rest(b: Backend) {
    // Room for one entry; the receiver never answers, so it stays there.
    let (hook, got) = receiver(|_| Answer::Hang).await;
    let node = node_pushing_to(b, hook, |c| {
        c.push_queue = 1;
        c.push_timeout_ms = 600_000;
        c.push_claim_s = 1300;
    })
    .await;
    let mut alice = node.session("alice").await;
    let r = alice
        .request(json!({"type":"group_create","name":"Team","members":["bob","carol","dave"]}))
        .await;
    let group = r["group"]["id"].as_str().unwrap().to_owned();
    let r = alice
        .request(
            json!({"type":"send","id":"g-1","group": group,"kind":"text","body":"three offline"}),
        )
        .await;
    assert_eq!(r["type"], "sent", "{r}");
    // Three members offline, one entry of room: one pushed, two dropped.
    metric_reaches(
        &node,
        "the two that did not fit counted",
        r#"chat_push_webhook_total{result="dropped"}"#,
        2.0,
    )
    .await;
    metric_reaches(&node, "one entry in the feed", "chat_push_queue", 1.0).await;
    eventually("the one that fit is attempted", STEP, async || {
        (got.len() == 1).then_some(())
    })
    .await;
}
