//! Several chat-node processes as one chat service: cross-node delivery,
//! devices spread over nodes, a node killed during traffic, drain, a node
//! restarting on its ordinal, route and registry after a kill.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Client;
use common::cluster::Cluster;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(500);

/// Receives `n` `msg` frames; returns them.
async fn recv_msgs(c: &mut Client, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let f = c.recv().await;
        assert_eq!(f["type"], "msg", "{f}");
        out.push(f);
    }
    out
}

fn field(frames: &[Value], f: impl Fn(&Value) -> Value) -> Vec<Value> {
    frames.iter().map(f).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_to_every_device_in_order() {
    let cluster = Cluster::start(3).await;
    let mut alice0 = cluster.session(0, "alice").await;
    let mut alice1 = cluster.session(1, "alice").await;
    let mut alice2 = cluster.session(2, "alice").await;
    let mut bob1 = cluster.session(1, "bob").await;
    let mut bob2 = cluster.session(2, "bob").await;

    for i in 1..=30 {
        alice0
            .send_text("bob", &format!("a{i}"), &format!("m{i}"))
            .await;
    }
    let want: Vec<Value> = (1..=30).map(|i| json!(format!("m{i}"))).collect();
    for c in [&mut bob1, &mut bob2, &mut alice1, &mut alice2] {
        let got = recv_msgs(c, 30).await;
        assert_eq!(field(&got, |f| f["msg"]["body"].clone()), want);
        assert_eq!(
            field(&got, |f| f["pts"].clone()),
            (1..=30).map(|i| json!(i)).collect::<Vec<_>>()
        );
    }
    // Bob answers from node 2: every device of alice hears it, and bob's
    // device on node 1.
    let sent = bob2.send_text("alice", "b1", "hi from 2").await;
    assert_eq!(sent["msg"]["seq"], 31);
    for c in [&mut alice0, &mut alice1, &mut alice2, &mut bob1] {
        let f = c.recv().await;
        assert_eq!(
            (f["msg"]["seq"].as_u64(), f["pts"].as_u64()),
            (Some(31), Some(31))
        );
    }
    for c in [&mut alice0, &mut alice1, &mut alice2, &mut bob1, &mut bob2] {
        c.expect_silence(QUIET).await;
    }
    // Node 0 sent its 30 messages on to nodes 1 and 2, where both bob and
    // alice have devices: the broker confirmed every event (30 sends x 2
    // users x 2 nodes), coalesced into at most as many broker messages, and
    // nothing was dropped.
    let events = cluster.metric(0, "chat_bus_events_published_total").await;
    let messages = cluster.metric(0, "chat_bus_messages_published_total").await;
    assert_eq!(events, 120.0);
    assert!(
        (2.0..=events).contains(&messages),
        "{messages} broker messages"
    );
    assert_eq!(
        cluster.metric(0, "chat_bus_publish_errors_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_order_is_the_same_on_every_device_and_node() {
    let cluster = Cluster::start(3).await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    let mut watchers = [
        cluster.session(2, "alice").await,
        cluster.session(2, "bob").await,
    ];
    // Both write at once, from different nodes.
    let a = tokio::spawn(async move {
        for i in 0..20 {
            alice
                .send(json!({"type":"send","id":format!("a{i}"),"to":"bob","kind":"text","body":format!("a{i}")}))
                .await;
        }
        alice
    });
    let b = tokio::spawn(async move {
        for i in 0..20 {
            bob.send(json!({"type":"send","id":format!("b{i}"),"to":"alice","kind":"text","body":format!("b{i}")}))
                .await;
        }
        bob
    });
    let (_a, _b) = (
        common::within("alice's sends", common::STEP, a)
            .await
            .unwrap(),
        common::within("bob's sends", common::STEP, b)
            .await
            .unwrap(),
    );
    // Live frames may arrive from two nodes interleaved; ordered by seq they
    // must be the same conversation everywhere, gap-free.
    let mut views = Vec::new();
    for w in watchers.iter_mut() {
        let mut by_seq = BTreeMap::new();
        for f in recv_msgs(w, 40).await {
            by_seq.insert(f["msg"]["seq"].as_u64().unwrap(), f["msg"]["id"].clone());
        }
        assert_eq!(
            by_seq.keys().copied().collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>()
        );
        views.push(by_seq.into_values().collect::<Vec<_>>());
    }
    assert_eq!(views[0], views[1]);
    // History read on each node agrees with that order.
    for i in 0..3 {
        let mut c = cluster.session(i, "bob").await;
        let h = c
            .request(json!({"type":"history","with":"alice","limit":200}))
            .await;
        assert_eq!(
            field(h["messages"].as_array().unwrap(), |m| m["id"].clone()),
            views[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_and_leaves_the_route() {
    let mut cluster = Cluster::start(3).await;
    let mut alice = cluster.session(0, "alice").await;
    let bob_token = cluster.token(2, "bob").await;
    let mut bob = Client::connect(cluster.addr(2), &bob_token)
        .await
        .expect_connected();

    let mut last_pts = 0;
    let mut seen: Vec<u64> = Vec::new();
    for i in 1..=60 {
        alice
            .send_text("bob", &format!("k{i}"), &format!("m{i}"))
            .await;
        if i == 20 {
            // Bob's device processes what arrived so far, then its node dies.
            for f in recv_msgs(&mut bob, 20).await {
                last_pts = f["pts"].as_u64().unwrap();
                seen.push(f["msg"]["seq"].as_u64().unwrap());
            }
            cluster.kill(2).await;
        }
    }
    let killed_at = Instant::now();
    // Every send was acknowledged (send_text asserts `sent`). Bob comes back
    // on another node and syncs from his last pts.
    let (node, mut bob) = cluster.reconnect(&bob_token, &[2]).await;
    assert_ne!(node, 2);
    for e in bob.sync_all(last_pts).await {
        seen.push(e["msg"]["seq"].as_u64().unwrap());
    }
    assert_eq!(
        seen,
        (1..=60).collect::<Vec<_>>(),
        "every message exactly once, in order"
    );

    // Within 15 s of the kill the dead node is neither routed to nor ready.
    loop {
        let (_, nodes) = cluster.get_json(0, "/v1/nodes").await;
        let dead = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["port"] == cluster.ports[2])
            .cloned();
        let (status, route) = cluster.get_json(1, "/v1/route").await;
        assert_eq!(status, 200);
        let routed_dead = route["address"] == format!("127.0.0.1:{}", cluster.ports[2]);
        if dead.is_some_and(|d| d["ready"] == false) && !routed_dead {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(16),
            "dead node still offered: {nodes} {route}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..20 {
        let (_, route) = cluster.get_json(0, "/v1/route").await;
        assert_ne!(route["address"], format!("127.0.0.1:{}", cluster.ports[2]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_sessions_to_other_nodes() {
    // A grace long enough to see the draining node still registered (not
    // ready) before it deregisters.
    let mut cluster = Cluster::start_with_drain_grace(3, 6).await;
    let mut alice = cluster.session(0, "alice").await;
    let bob_token = cluster.token(1, "bob").await;
    let mut bob = Client::connect(cluster.addr(1), &bob_token)
        .await
        .expect_connected();
    alice.send_text("bob", "d1", "before").await;
    let last = recv_msgs(&mut bob, 1).await[0]["pts"].as_u64().unwrap();
    // Load the other two nodes, so that node 1 is the least loaded: the
    // route then leaves it only because it drains.
    let mut extra = Vec::new();
    for (i, user) in [(0, "carol"), (2, "dave"), (2, "erin")] {
        extra.push(cluster.session(i, user).await);
    }
    let draining = format!("127.0.0.1:{}", cluster.ports[1]);
    common::eventually("route to the least loaded node", common::STEP, async || {
        let (status, route) = cluster.get_json(0, "/v1/route").await;
        (status == 200 && route["address"] == draining.as_str()).then_some(())
    })
    .await;

    cluster.signal(1, "-TERM");
    let told = bob.recv().await;
    assert_eq!(told["type"], "reconnect", "{told}");
    assert_eq!(told["reason"], "draining");
    // The frame names a live node other than the draining one.
    let others = [0, 2].map(|i| json!(format!("127.0.0.1:{}", cluster.ports[i])));
    assert!(others.contains(&told["address"]), "{told}");
    // The draining node is soon no longer routed to, because it says it is
    // not ready (node 0 learns it through the registry) while it is still
    // registered, and then never again.
    let port = json!(cluster.ports[1]);
    common::eventually(
        "the draining node listed not ready, and not routed to",
        common::WAIT,
        async || {
            let (_, nodes) = cluster.get_json(0, "/v1/nodes").await;
            let listed = nodes
                .as_array()?
                .iter()
                .find(|n| n["port"] == port)?
                .clone();
            let (status, route) = cluster.get_json(0, "/v1/route").await;
            (listed["ready"] == false && status == 200 && route["address"] != draining.as_str())
                .then_some(())
        },
    )
    .await;
    for _ in 0..10 {
        let (_, route) = cluster.get_json(0, "/v1/route").await;
        assert_ne!(route["address"], draining.as_str());
    }
    drop(extra);
    alice.send_text("bob", "d2", "during").await;
    // Bob follows the advice: leaves, reconnects elsewhere, syncs.
    let _ = common::within(
        "ws close",
        common::STEP,
        futures_util::SinkExt::close(&mut bob.ws),
    )
    .await;
    let (node, mut bob) = cluster.reconnect(&bob_token, &[1]).await;
    assert_ne!(node, 1);
    alice.send_text("bob", "d3", "after").await;
    let live = recv_msgs(&mut bob, 1).await;
    assert_eq!(live[0]["msg"]["body"], "after");
    let synced = bob.sync_all(last).await;
    assert_eq!(
        field(&synced, |e| e["msg"]["body"].clone()),
        vec![json!("during"), json!("after")]
    );

    assert!(
        cluster.wait_exit(1, Duration::from_secs(10)).await,
        "drained node exits 0"
    );
    // Node 0 reads the registry at most once a second.
    wait_deregistered(&cluster, cluster.ports[1]).await;
    // A node with no sessions drains at once, and deregisters too.
    cluster.signal(2, "-TERM");
    assert!(cluster.wait_exit(2, Duration::from_secs(10)).await);
    wait_deregistered(&cluster, cluster.ports[2]).await;
}

/// Waits until node 0's `/v1/nodes` no longer lists `port`.
async fn wait_deregistered(cluster: &Cluster, port: u16) {
    common::eventually(
        format!("node {port} deregistered"),
        common::WAIT,
        async || {
            let (_, nodes) = cluster.get_json(0, "/v1/nodes").await;
            nodes
                .as_array()?
                .iter()
                .all(|n| n["port"] != port)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarting_on_its_ordinal_hands_out_no_stale_deliveries() {
    let mut cluster = Cluster::start(2).await;
    let mut alice = cluster.session(0, "alice").await;
    let bob_token = cluster.token(1, "bob").await;
    let bob = Client::connect(cluster.addr(1), &bob_token)
        .await
        .expect_connected();
    drop(bob);
    // Bob's node dies with his presence still pointing at it; alice writes.
    let bob = Client::connect(cluster.addr(1), &bob_token)
        .await
        .expect_connected();
    cluster.kill(1).await;
    drop(bob);
    for i in 1..=5 {
        alice
            .send_text("bob", &format!("s{i}"), &format!("m{i}"))
            .await;
    }
    // Same ordinal, same port, same queue, new run.
    cluster.spawn(1);
    cluster.wait_ready(1).await;
    let mut bob = Client::connect(cluster.addr(1), &bob_token)
        .await
        .expect_connected();
    assert_eq!(bob.pts(), 5);
    bob.expect_silence(Duration::from_secs(1)).await;
    assert_eq!(bob.sync_all(0).await.len(), 5);
    // Live delivery to the new run works.
    alice.send_text("bob", "s6", "m6").await;
    assert_eq!(recv_msgs(&mut bob, 1).await[0]["pts"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_during_traffic_loses_nothing() {
    let mut rabbit = common::cluster::PrivateRabbit::start().await;
    let cluster = Cluster::start_with(2, &rabbit.url()).await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    for i in 1..=10 {
        alice
            .send_text("bob", &format!("r{i}"), &format!("m{i}"))
            .await;
    }
    let last = recv_msgs(&mut bob, 10).await[9]["pts"].as_u64().unwrap();

    rabbit.kill().await;
    // Both nodes notice and say so.
    for i in 0..2 {
        let mut status = 200;
        for _ in 0..100 {
            status = cluster.get_json(i, "/readyz").await.0;
            if status == 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 503, "node {i} still ready without its bus");
    }
    // Sends are still stored and acknowledged; live delivery waits.
    for i in 11..=20 {
        alice
            .send_text("bob", &format!("r{i}"), &format!("m{i}"))
            .await;
    }

    rabbit.restart().await;
    cluster.wait_ready(0).await;
    cluster.wait_ready(1).await;
    for i in 21..=30 {
        alice
            .send_text("bob", &format!("r{i}"), &format!("m{i}"))
            .await;
    }
    // Live delivery is back: exactly the messages sent after the restart.
    let live = recv_msgs(&mut bob, 10).await;
    assert_eq!(
        field(&live, |f| f["msg"]["body"].clone()),
        (21..=30)
            .map(|i| json!(format!("m{i}")))
            .collect::<Vec<_>>()
    );
    bob.expect_silence(QUIET).await;
    // And sync fills in what the outage kept from him, exactly once.
    let synced = bob.sync_all(last).await;
    assert_eq!(
        field(&synced, |e| e["pts"].clone()),
        (11..=30).map(|i| json!(i)).collect::<Vec<_>>()
    );
}

/// Deletes the cluster's exchange, or node `queue_of`'s queue, from
/// outside, as an operator or a mistaken admin might, while the nodes run.
async fn delete_from_broker(cluster: &Cluster, queue_of: Option<usize>) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    use parley_cluster::names::{exchange_name, queue_name};
    let conn = lapin::Connection::connect(&cluster.amqp, lapin::ConnectionProperties::default())
        .await
        .expect("admin connection to RabbitMQ");
    let ch = conn.create_channel().await.expect("admin channel");
    match queue_of {
        None => {
            let exchange = exchange_name(&cluster.cluster);
            ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .expect("exchange deleted");
        }
        Some(i) => {
            let queue = queue_name(&cluster.cluster, cluster.ports[i]);
            ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .expect("queue deleted");
        }
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Alice (node 0) writes to bob (node 1) until bob hears one live, within
/// 30 s; then every further delivery crosses, in order, and nothing is
/// lost from the inbox. Returns how many sends it took.
async fn deliveries_resume(cluster: &Cluster, alice: &mut Client, bob: &mut Client) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = 0;
    loop {
        probes += 1;
        alice
            .send_text("bob", &format!("p{probes}"), &format!("probe {probes}"))
            .await;
        if let Ok(f) = tokio::time::timeout(Duration::from_millis(500), bob.recv()).await {
            assert_eq!(f["type"], "msg", "{f}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing crossed to node 1 within 30 s ({probes} sends)"
        );
    }
    for i in 1..=5 {
        alice
            .send_text("bob", &format!("y{i}"), &format!("after {i}"))
            .await;
    }
    let mut bodies = Vec::new();
    while bodies.last() != Some(&json!("after 5")) {
        bodies.push(recv_msgs(bob, 1).await[0]["msg"]["body"].clone());
    }
    assert_eq!(
        bodies[bodies.len().saturating_sub(5)..],
        (1..=5)
            .map(|i| json!(format!("after {i}")))
            .collect::<Vec<_>>()
    );
    bob.expect_silence(QUIET).await;
    for i in 0..2 {
        assert_eq!(cluster.get_json(i, "/readyz").await.0, 200, "node {i}");
    }
    probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_cross_nodes_again_after_the_exchange_is_deleted_under_them() {
    let cluster = Cluster::start(2).await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    alice.send_text("bob", "x0", "before").await;
    assert_eq!(recv_msgs(&mut bob, 1).await[0]["msg"]["body"], "before");

    // Node 0's next publish goes to a missing exchange, and the broker
    // closes its publishing channel (404); node 1's binding went with the
    // exchange.
    delete_from_broker(&cluster, None).await;
    let probes = deliveries_resume(&cluster, &mut alice, &mut bob).await;
    // What did not cross live is in bob's inbox: every message, once.
    assert_eq!(bob.sync_all(0).await.len(), 1 + probes + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_cross_nodes_again_after_a_nodes_queue_is_deleted_under_it() {
    let cluster = Cluster::start(2).await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    alice.send_text("bob", "x0", "before").await;
    assert_eq!(recv_msgs(&mut bob, 1).await[0]["msg"]["body"], "before");

    // The broker cancels node 1's consumer; node 1 connects again and
    // declares its queue back.
    delete_from_broker(&cluster, Some(1)).await;
    let probes = deliveries_resume(&cluster, &mut alice, &mut bob).await;
    assert_eq!(bob.sync_all(0).await.len(), 1 + probes + 5);
}

/// The arguments an earlier version declared node queues with: a message
/// TTL and a length cap, no byte bound.
fn earlier_queue_arguments() -> lapin::types::FieldTable {
    use lapin::types::{AMQPValue, FieldTable};
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongUInt(60_000));
    args.insert("x-max-length".into(), AMQPValue::LongUInt(100_000));
    args
}

/// The arguments a node declares its queue with now: those and at most
/// 64 MiB of messages.
fn queue_arguments() -> lapin::types::FieldTable {
    let mut args = earlier_queue_arguments();
    args.insert(
        "x-max-length-bytes".into(),
        lapin::types::AMQPValue::LongUInt(64 << 20),
    );
    args
}

/// Declares `queue` durable with `args` on a channel of its own; the reply
/// code when the broker refuses.
async fn declare_with(
    conn: &lapin::Connection,
    queue: &str,
    args: lapin::types::FieldTable,
) -> Result<u32, u16> {
    let ch = conn.create_channel().await.expect("admin channel");
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    match ch.queue_declare(queue.into(), durable, args).await {
        Ok(q) => {
            let _ = ch.close(200, "done".into()).await;
            Ok(q.consumer_count())
        }
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => Err(amqp.get_id()),
            other => panic!("declare of {queue}: {other:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_over_its_queue_from_an_earlier_version_once_unused() {
    use parley_cluster::names::queue_name;
    let mut cluster = Cluster::start(2).await;
    cluster.kill(1).await;
    let queue = queue_name(&cluster.cluster, cluster.ports[1]);
    let admin = lapin::Connection::connect(&cluster.amqp, lapin::ConnectionProperties::default())
        .await
        .expect("admin connection to RabbitMQ");
    // Node 1's queue as an earlier version left it, with a run of that
    // version still consuming it.
    let ch = admin.create_channel().await.expect("admin channel");
    ch.queue_delete(queue.as_str().into(), Default::default())
        .await
        .expect("queue deleted");
    assert_eq!(
        declare_with(&admin, &queue, earlier_queue_arguments()).await,
        Ok(0)
    );
    let no_ack = lapin::options::BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let earlier_run = admin.create_channel().await.expect("consumer channel");
    // Held: lapin cancels a consumer that is dropped.
    let _consumer = earlier_run
        .basic_consume(
            queue.as_str().into(),
            "earlier-run".into(),
            no_ack,
            Default::default(),
        )
        .await
        .expect("consume");

    // The new node runs but leaves a queue in use alone: not ready, and the
    // queue is as it was.
    cluster.spawn(1);
    common::eventually(
        "node 1 answers /healthz",
        Duration::from_secs(30),
        async || (cluster.get_json_lenient(1, "/healthz").await.0 == 200).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ready, body) = cluster.get_json_lenient(1, "/readyz").await;
    assert_eq!(ready, 503, "{body}");
    assert_eq!(
        declare_with(&admin, &queue, earlier_queue_arguments()).await,
        Ok(1)
    );

    // Once the earlier run is gone, the node deletes the queue and declares
    // it with its own arguments (the byte bound): the earlier ones are now
    // refused, and deliveries cross to it.
    earlier_run
        .close(200, "gone".into())
        .await
        .expect("consumer closed");
    cluster.wait_ready(1).await;
    assert_eq!(declare_with(&admin, &queue, queue_arguments()).await, Ok(1));
    assert_eq!(
        declare_with(&admin, &queue, earlier_queue_arguments()).await,
        Err(406)
    );
    let _ = admin.close(200, "bye".into()).await;
    cluster.wait_registered().await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    let probes = deliveries_resume(&cluster, &mut alice, &mut bob).await;
    assert_eq!(bob.sync_all(0).await.len(), probes + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_kicks_its_sessions_on_every_node() {
    let cluster = Cluster::start(3).await;
    let phone = cluster.token(0, "alice").await;
    let laptop = cluster.token(0, "alice").await;
    // The revoked token's sessions live on nodes 1 and 2; another token of
    // the same user, on node 2 too, stays.
    let mut on1 = Client::connect(cluster.addr(1), &phone)
        .await
        .expect_connected();
    let mut on2 = Client::connect(cluster.addr(2), &phone)
        .await
        .expect_connected();
    let mut other = Client::connect(cluster.addr(2), &laptop)
        .await
        .expect_connected();

    // Revoked through node 0, which holds none of them.
    let r = common::http::Http::new()
        .delete(cluster.url(0, &format!("/v1/tokens/{phone}")))
        .bearer_auth(common::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for c in [&mut on1, &mut on2] {
        let (frames, code) = c.closed().await;
        assert_eq!(
            frames,
            vec![json!({"type":"kicked","reason":"token_revoked"})]
        );
        assert_eq!(code, Some(4002));
    }
    assert_eq!(other.request(json!({"type":"ping"})).await["type"], "pong");
    // And it opens no new session anywhere.
    for i in 0..3 {
        let c = Client::connect(cluster.addr(i), &phone).await;
        assert_eq!(c.0.connected["code"], "unauthorized", "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_a_broker_that_stops_answering_go_unready_then_recover() {
    let rabbit = common::cluster::PrivateRabbit::start().await;
    let cluster = Cluster::start_with(2, &rabbit.url()).await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    alice.send_text("bob", "x0", "before").await;
    assert_eq!(recv_msgs(&mut bob, 1).await[0]["msg"]["body"], "before");

    // Sockets stay open, nothing answers: no error reaches the nodes, and
    // the broker's heartbeat (60 s) is far off. The next topology refresh
    // goes unanswered, and each node says it has no bus.
    rabbit.signal("-STOP");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut still_ready = vec![0, 1];
    while !still_ready.is_empty() && Instant::now() < deadline {
        let mut left = Vec::new();
        for i in still_ready {
            if cluster.get_json(i, "/readyz").await.0 != 503 {
                left.push(i);
            }
        }
        still_ready = left;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the broker go on before judging: clean-up needs it to answer.
    rabbit.signal("-CONT");
    assert!(
        still_ready.is_empty(),
        "nodes {still_ready:?} still ready 30 s after their broker stopped answering"
    );
    cluster.wait_ready(0).await;
    cluster.wait_ready(1).await;
    let probes = deliveries_resume(&cluster, &mut alice, &mut bob).await;
    assert_eq!(bob.sync_all(0).await.len(), 1 + probes + 5);
}

/// A session that does not read, on another node than the sender: closed
/// with 1013 when deliveries from the bus overflow its queue, while bob's
/// other device on that node gets every message. The queue holds at least
/// what one broker message can carry for a session (512 events, 4 MiB):
/// deliveries arrive from the bus a broker message at a time, and a smaller
/// queue cuts off a device that reads, too (seen with a queue of 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_session_across_nodes_is_closed_1013_and_others_go_on() {
    let settings = |_| {
        vec![
            ("CHAT_OUTBOUND_QUEUE", "512".to_owned()),
            ("CHAT_RATE_PER_S", "10000".to_owned()),
            ("CHAT_RATE_BURST", "10000".to_owned()),
            ("CHAT_MAX_BODY_BYTES", "60000".to_owned()),
            ("CHAT_MAX_FRAME_BYTES", "200000".to_owned()),
        ]
    };
    let c = Cluster::start_with_env(2, &common::cluster::amqp_url(), settings).await;
    let alice = c.session(0, "alice").await;
    let stuck = c.session(1, "bob").await;
    let reader = c.session(1, "bob").await;
    common::slow_consumer(alice, stuck, reader).await;
    assert_eq!(c.metric(1, "chat_sessions_stopped_slow_total").await, 1.0);
    let back = c.session(1, "bob").await;
    assert_eq!(back.pts(), common::SLOW_CONSUMER_MESSAGES);
}
