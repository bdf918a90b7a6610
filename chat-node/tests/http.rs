//! The HTTP side of a node: tokens, probes, metrics, route and nodes.

mod common;

use common::{ADMIN, Backend, Client, TestNode};
use serde_json::{Value, json};

both_stores!(
    token_issue_checks_admin_and_input,
    probes_and_metrics_answer,
    route_and_nodes_list_this_node,
);

async fn token_issue_checks_admin_and_input(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    let post = |auth: Option<&'static str>, body: String| {
        let mut r = node.http().post(node.url("/v1/tokens")).body(body);
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        r.send()
    };
    let good = json!({"user":"alice","platform":"ios"}).to_string();
    assert_eq!(post(None, good.clone()).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("wrong"), good.clone()).await.unwrap().status(),
        401
    );
    for bad in [
        "not json".to_owned(),
        json!({"user":"alice"}).to_string(),
        json!({"user":"al ice","platform":"ios"}).to_string(),
        json!({"user":"alice","platform":"iOS"}).to_string(),
        json!({"user":"alice","platform":"a".repeat(17)}).to_string(),
        json!({"user":"","platform":"ios"}).to_string(),
    ] {
        let r = post(Some(ADMIN), bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad_request");
    }
    let r = post(Some(ADMIN), good).await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["user"].as_str(), v["platform"].as_str()),
        (Some("alice"), Some("ios"))
    );
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("ios."));
    let week = 7 * 24 * 3600 * 1000;
    let expires = v["expires_at"].as_u64().unwrap();
    let now = chat_node::ids::now_ms();
    assert!(
        expires > now + week - 60_000 && expires <= now + week,
        "{expires}"
    );
    // The token works.
    let c = Client::connect(node.addr, token).await.expect_connected();
    assert_eq!(c.user(), "alice");
    node.stop().await;
}

async fn probes_and_metrics_answer(b: Backend) {
    let node = TestNode::start(b, |_| {}).await;
    assert_eq!(node.get("/healthz").await.0, 200);
    assert_eq!(node.get("/readyz").await.0, 200);
    let mut alice = node.session("alice").await;
    alice.send_text("bob", "m1", "hi").await;
    alice.send(json!({"type":"nope"})).await;
    alice.recv().await;
    let (status, text) = node.get("/metrics").await;
    assert_eq!(status, 200);
    for (series, want) in [
        ("chat_connections_open", 1.0),
        ("chat_sessions{state=\"active\"}", 1.0),
        ("chat_messages_stored_total", 1.0),
        ("chat_errors_total{code=\"bad_request\"}", 1.0),
        ("chat_frames_received_total{type=\"send\"}", 1.0),
        ("chat_send_duration_seconds_count", 1.0),
    ] {
        assert_eq!(
            common::metric_value(&text, series),
            Some(want),
            "{series} in:\n{text}"
        );
    }
    // A plain GET on /ws is not a WebSocket handshake.
    assert_eq!(node.get("/ws").await.0, 426);
    node.stop().await;
}

async fn route_and_nodes_list_this_node(b: Backend) {
    let node = TestNode::start(b, |c| c.advertise = Some("chat.example:{port}".into())).await;
    // The first heartbeat registers the node at start.
    let mut route = (0, String::new());
    for _ in 0..50 {
        route = node.get("/v1/route").await;
        if route.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(route.0, 200, "{}", route.1);
    let v: Value = serde_json::from_str(&route.1).unwrap();
    assert_eq!(v["address"], format!("chat.example:{}", node.addr.port()));
    assert_eq!(v["node"], "chat-0");
    let (status, body) = node.get("/v1/nodes").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["port"], node.addr.port());
    assert_eq!(list[0]["ready"], true);
    assert_eq!(list[0]["online"], 0);
    node.stop().await;
}

/// Every string a Redis key holds, whatever its type (names included).
fn redis_strings(conn: &mut redis::Connection, key: &str) -> Vec<String> {
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).unwrap();
    let cmd = match kind.as_str() {
        "string" => redis::cmd("GET").arg(key).clone(),
        "hash" => redis::cmd("HGETALL").arg(key).clone(),
        "set" => redis::cmd("SMEMBERS").arg(key).clone(),
        "list" => redis::cmd("LRANGE").arg(key).arg(0).arg(-1).clone(),
        "zset" => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).clone(),
        other => panic!("{key}: a {other} this test cannot read"),
    };
    let value: redis::Value = cmd.query(conn).unwrap();
    let mut out = vec![key.to_owned()];
    collect_strings(&value, &mut out);
    out
}

fn collect_strings(v: &redis::Value, out: &mut Vec<String>) {
    match v {
        redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => out.push(s.clone()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|i| collect_strings(i, out))
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            collect_strings(k, out);
            collect_strings(v, out);
        }),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_hashed_never_in_the_clear() {
    use sha2::{Digest, Sha256};
    let node = TestNode::start(Backend::Redis, |_| {}).await;
    let token = node.token("alice", "ios").await;
    let secret = token
        .strip_prefix("ios.")
        .expect("a token starts with its platform");
    // A session on it, so whatever a session stores is there too.
    let _alice = Client::connect(node.addr, &token).await.expect_connected();

    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("chat:{}:*", node.cluster))
        .query(&mut conn)
        .unwrap();
    let hashed = format!(
        "chat:{}:token:{}",
        node.cluster,
        hex::encode(Sha256::digest(token.as_bytes()))
    );
    assert!(keys.contains(&hashed), "no {hashed} among {keys:?}");
    let user: Option<String> = redis::cmd("HGET")
        .arg(&hashed)
        .arg("user")
        .query(&mut conn)
        .unwrap();
    assert_eq!(user.as_deref(), Some("alice"));
    for key in &keys {
        for s in redis_strings(&mut conn, key) {
            assert!(
                !s.contains(secret),
                "{key} holds the token in the clear: {s}"
            );
        }
    }
    node.stop().await;
}
