//! What a node writes to its log: events with users and sessions, never a
//! message body or a token (STYLE.md, habit 8). The real binary, on Redis
//! and RabbitMQ, logging everything of its own crates down to `trace`.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::cluster::{amqp_url, delete_cluster_bus, free_port};
use common::{ADMIN, Client, STEP, delete_cluster_keys, eventually, redis_url, within};
use serde_json::json;

/// The shortest piece of a secret that counts as leaked.
const LEAK: usize = 16;

/// The node process; killed when dropped, with its keys and queues.
struct Node {
    child: Child,
    cluster: String,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        delete_cluster_keys(&redis_url(), &self.cluster);
        let (cluster, port) = (self.cluster.clone(), self.port);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let (amqp, ports) = (amqp_url(), [port]);
                let cleanup = delete_cluster_bus(&amqp, &cluster, &ports);
                let _ = rt.block_on(async { tokio::time::timeout(STEP, cleanup).await });
            }
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_message_bodies_and_no_tokens() {
    let port = free_port();
    let cluster = common::unique_cluster("logs");
    let log_path = std::env::temp_dir().join(format!("parley-{cluster}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chat-node"))
        .env("CHAT_CLUSTER", &cluster)
        .env("CHAT_REDIS_URL", redis_url())
        .env("CHAT_AMQP_URL", amqp_url())
        .env("CHAT_ADMIN_TOKEN", ADMIN)
        .env("CHAT_PORT", port.to_string())
        .env("CHAT_HEALTH_PORT", "0")
        .env("CHAT_BIND", "127.0.0.1")
        .env("CHAT_DRAIN_GRACE_S", "1")
        .env("RUST_LOG", "chat_node=trace,parley_cluster=trace,info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("chat-node starts");
    let mut node = Node {
        child,
        cluster,
        port,
    };
    let http = common::http::Http::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually("node ready", STEP, async || {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Secrets and bodies this run makes; none may reach the log.
    let mark = &common::unique_cluster("body")[7..];
    let body = format!("body-{mark}");
    let refused_body = format!("refused-{mark}");
    let alice_token =
        common::issue_token(&http, &format!("http://127.0.0.1:{port}"), "alice", "web").await;
    let bob_token =
        common::issue_token(&http, &format!("http://127.0.0.1:{port}"), "bob", "web").await;
    let unknown_token = format!(
        "web.{:016x}{:016x}{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut alice = Client::connect(addr, &alice_token).await.expect_connected();
    let mut bob = Client::connect(addr, &bob_token).await.expect_connected();
    alice.send_text("bob", "c-1", &body).await;
    assert_eq!(bob.recv().await["msg"]["body"], body.as_str());
    assert_eq!(bob.sync_all(0).await.len(), 1);
    let h = bob.request(json!({"type":"history","with":"alice"})).await;
    assert_eq!(h["messages"][0]["body"], body.as_str());
    // Refused frames: a bad kind, and a body over the limit.
    let e = alice
        .request(json!({"type":"send","id":"c-2","to":"bob","kind":"gif","body":refused_body}))
        .await;
    assert_eq!(e["code"], "bad_request");
    let e = alice
        .request(json!({"type":"send","id":"c-3","to":"bob","kind":"text","body":refused_body.repeat(500)}))
        .await;
    assert_eq!(e["code"], "bad_request");
    // An unknown token, and a revoked one (its session is kicked).
    let (_, code) = Client::connect(addr, &unknown_token).await.0.closed().await;
    assert_eq!(code, Some(4001));
    let r = http
        .delete(format!("{base}/v1/tokens/{alice_token}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(alice.closed().await.1, Some(4002));

    // Drain and exit, so everything the node had to say is written.
    let ok = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = within("node exit", STEP, async {
        loop {
            if let Some(s) = node.child.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(status.success(), "{status:?}");

    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    // The log was captured, with the events around every secret above.
    for event in [
        "chat-node serving",
        "token issued",
        "session opened",
        "token revoked",
    ] {
        assert!(text.contains(event), "no {event:?} in the log:\n{text}");
    }
    for (what, secret) in [
        ("a message body", body.as_str()),
        ("a refused body", refused_body.as_str()),
        ("alice's token", alice_token.as_str()),
        ("bob's token", bob_token.as_str()),
        ("an unknown token", unknown_token.as_str()),
        ("the admin token", ADMIN),
    ] {
        // Any 16 characters of it (64 bits of a token's secret), so that
        // a shortened token or a body cut to fit a line are caught too.
        let bare = secret.split_once('.').map_or(secret, |(_, s)| s);
        for part in bare.as_bytes().windows(LEAK.min(bare.len())) {
            let part = std::str::from_utf8(part).unwrap();
            assert!(!text.contains(part), "{what} in the log ({part}):\n{text}");
        }
    }
}
