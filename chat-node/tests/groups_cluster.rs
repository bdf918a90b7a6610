//! Groups across chat-node processes over RabbitMQ: a group whose members
//! sit on three nodes, one member's devices on two of them. Every device
//! gets every group frame exactly once, with its user's own `pts`;
//! membership changes, receipts, typing and recall cross nodes the same.

mod common;

use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(500);

async fn next_of(c: &mut Client, ty: &str) -> Value {
    let f = c.recv().await;
    assert_eq!(f["type"], ty, "{f}");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spread_over_three_nodes_gets_everything_once() {
    let cluster = Cluster::start(3).await;
    let mut alice0 = cluster.session(0, "alice").await;
    let mut alice1 = cluster.session(1, "alice").await;
    let mut bob1 = cluster.session(1, "bob").await;
    let mut carol2 = cluster.session(2, "carol").await;

    let r = alice0
        .request(json!({"type":"group_create","name":"Spread","members":["bob","carol","dave"]}))
        .await;
    assert_eq!(r["type"], "group", "{r}");
    let gid = r["group"]["id"].as_str().unwrap().to_owned();
    let conv = format!("g:{gid}");
    for c in [&mut alice1, &mut bob1, &mut carol2] {
        let f = next_of(c, "msg").await;
        assert_eq!(f["msg"]["system"]["event"], "created");
        assert_eq!(f["pts"], 1);
    }

    // carol writes from node 2: every device, on every node, once, in
    // order, numbered in its user's inbox.
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = carol2
            .request(json!({"type":"send","id":format!("c{i}"),"group":gid,"kind":"text","body":format!("m{i}")}))
            .await;
        assert_eq!(r["type"], "sent", "{r}");
        ids.push(r["msg"]["id"].clone());
    }
    for c in [&mut alice0, &mut alice1, &mut bob1] {
        let mut got = Vec::new();
        let mut pts = Vec::new();
        for _ in 0..10 {
            let f = next_of(c, "msg").await;
            got.push(f["msg"]["id"].clone());
            pts.push(f["pts"].as_u64().unwrap());
        }
        assert_eq!(got, ids);
        assert_eq!(pts, (2..=11).collect::<Vec<_>>());
    }
    carol2.expect_silence(QUIET).await;

    // A read on node 0 reaches the other members' nodes.
    let r = alice0
        .request(json!({"type":"read","group":gid,"seq":11}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let receipt = json!({"type":"receipt","conv":conv,"reader":"alice","seq":11});
    for c in [&mut alice1, &mut bob1, &mut carol2] {
        assert_eq!(c.recv().await, receipt);
    }

    // Typing from node 2 reaches alice's devices on nodes 0 and 1.
    carol2.send(json!({"type":"typing","group":gid})).await;
    let typing = json!({"type":"typing","conv":conv,"from":"carol"});
    for c in [&mut alice0, &mut alice1, &mut bob1] {
        assert_eq!(c.recv().await, typing);
    }

    // bob is removed from node 0: he gets that, then nothing more.
    let r = alice0
        .request(json!({"type":"group_remove","group":gid,"users":["bob"]}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    for c in [&mut alice1, &mut bob1, &mut carol2] {
        let f = next_of(c, "msg").await;
        assert_eq!(f["msg"]["system"]["event"], "removed");
    }
    let r = carol2
        .request(json!({"type":"send","id":"late","group":gid,"kind":"text","body":"not for bob"}))
        .await;
    let late = r["msg"]["id"].as_str().unwrap().to_owned();
    for c in [&mut alice0, &mut alice1] {
        assert_eq!(next_of(c, "msg").await["msg"]["id"], late.as_str());
    }

    // carol recalls it: every live device hears, the offline member syncs it.
    let r = carol2.request(json!({"type":"recall","msg":late})).await;
    assert_eq!(r["type"], "ok", "{r}");
    for c in [&mut alice0, &mut alice1] {
        let f = next_of(c, "recalled").await;
        assert_eq!(
            (f["msg"].as_str(), f["by"].as_str()),
            (Some(late.as_str()), Some("carol"))
        );
    }
    bob1.expect_silence(QUIET).await;
    let r = bob1.request(json!({"type":"history","group":gid})).await;
    assert_eq!(r["code"], "forbidden", "{r}");

    let mut dave = cluster.session(1, "dave").await;
    let entries = dave.sync_all(0).await;
    assert_eq!(entries.len(), 14, "created, 10, removed, late, its recall");
    let pts: Vec<u64> = entries.iter().map(|e| e["pts"].as_u64().unwrap()).collect();
    assert_eq!(pts, (1..=14).collect::<Vec<_>>());
    assert_eq!(entries[12]["msg"]["recalled"], true);
    assert_eq!(entries[13]["event"]["msg"], late.as_str());

    // Nothing arrived twice anywhere.
    for c in [&mut alice0, &mut alice1, &mut carol2] {
        c.expect_silence(QUIET).await;
    }
}

/// A group send is published only to the nodes that hold members'
/// sessions: here node 1 (bob), not node 2, which holds only a stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_go_only_to_nodes_holding_members() {
    let cluster = Cluster::start(3).await;
    let mut alice = cluster.session(0, "alice").await;
    let mut bob = cluster.session(1, "bob").await;
    let mut mallory = cluster.session(2, "mallory").await;
    let r = alice
        .request(json!({"type":"group_create","name":"Two","members":["bob","carol"]}))
        .await;
    let gid = r["group"]["id"].as_str().unwrap().to_owned();
    next_of(&mut bob, "msg").await;
    // The creation message went to bob's node too: counted once the broker
    // confirms it, which may be after bob has it.
    let before = common::eventually(
        "the creation's publish confirmed",
        Duration::from_secs(10),
        async || {
            let n = cluster.metric(0, "chat_bus_events_published_total").await;
            (n >= 1.0).then_some(n)
        },
    )
    .await;
    for i in 0..5 {
        let r = alice
            .request(
                json!({"type":"send","id":format!("m{i}"),"group":gid,"kind":"text","body":"x"}),
            )
            .await;
        assert_eq!(r["type"], "sent", "{r}");
        next_of(&mut bob, "msg").await;
    }
    // One event per message, for bob's node; none for node 2, and none
    // for carol, who is offline. (Counted once the broker confirms.)
    common::eventually("the broker confirms", Duration::from_secs(10), async || {
        let n = cluster.metric(0, "chat_bus_events_published_total").await - before;
        (n >= 5.0).then_some(())
    })
    .await;
    mallory.expect_silence(QUIET).await;
    let after = cluster.metric(0, "chat_bus_events_published_total").await;
    assert_eq!(after - before, 5.0);
    assert_eq!(
        cluster.metric(2, "chat_messages_delivered_total").await,
        0.0
    );
}
