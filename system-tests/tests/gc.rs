//! Garbage collection for real: chat-node processes register in a real
//! Redis and declare queues in a real RabbitMQ; nodes are killed; the
//! operator's planner and executor run; the test shows exactly the right
//! queues and keys deleted and the live ones untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use parley_operator::gc::{self, Action, Backends};
use parley_system_tests::{Nodes, amqp_url, eventually, queue_exists, redis_url};
use redis::Commands;

async fn collect(
    nodes: &Nodes,
    replicas: u32,
    pods: &[(u32, &str)],
) -> (Vec<Action>, gc::Collected) {
    let b = nodes.backends();
    let pods: BTreeMap<u32, String> = pods.iter().map(|(o, u)| (*o, u.to_string())).collect();
    let observed = b
        .observe(replicas, Some(nodes.formula()), pods)
        .await
        .unwrap();
    let plan = gc::plan(&observed);
    let done = b.execute(&plan).await.unwrap();
    (plan, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_operator_was_down_retired_nodes_lose_everything_and_live_ones_nothing() {
    let mut nodes = Nodes::new();
    for i in 0..3 {
        nodes.start(i, &format!("uid-{i}")).await;
    }
    let _alice = nodes.session(0, "alice").await;
    let _carol = nodes.session(1, "carol").await;
    let _bob = nodes.session(2, "bob").await;
    // Scaled 3 -> 1 while nobody watched: pods 1 and 2 died without cleanup.
    nodes.kill(1);
    nodes.kill(2);
    nodes.await_unused(1).await;
    nodes.await_unused(2).await;
    nodes.age_heartbeat(1);
    nodes.age_heartbeat(2);
    let (p0, p1, p2) = (nodes.port(0), nodes.port(1), nodes.port(2));

    let (plan, done) = collect(&nodes, 1, &[(0, "uid-0")]).await;
    assert!(done.skipped.is_empty(), "{:?}", done.skipped);
    assert_eq!(done.queues, 2);
    assert!(
        plan.iter().all(|a| a.port() != p0),
        "nothing planned for the live node: {plan:?}"
    );

    let mut r = nodes.redis();
    let ports: BTreeMap<u16, u64> = r.hgetall(nodes.key("ports")).unwrap();
    assert_eq!(ports.keys().copied().collect::<Vec<_>>(), vec![p0]);
    for p in [p1, p2] {
        assert!(
            !r.exists::<_, bool>(nodes.key(&format!("node:{p}")))
                .unwrap()
        );
        assert!(
            !r.exists::<_, bool>(nodes.key(&format!("node:{p}:users")))
                .unwrap()
        );
        assert!(
            !queue_exists(&nodes.cluster, p).await,
            "queue of {p} deleted"
        );
    }
    let bob: BTreeMap<u16, String> = r.hgetall(nodes.key("presence:bob")).unwrap();
    let carol: BTreeMap<u16, String> = r.hgetall(nodes.key("presence:carol")).unwrap();
    assert!(
        bob.is_empty() && carol.is_empty(),
        "presence of gone nodes removed"
    );
    // The live node: registry, details, presence and queue untouched.
    let alice: BTreeMap<u16, String> = r.hgetall(nodes.key("presence:alice")).unwrap();
    assert_eq!(alice, BTreeMap::from([(p0, "uid-0".to_owned())]));
    let instance: String = r
        .hget(nodes.key(&format!("node:{p0}")), "instance")
        .unwrap();
    assert_eq!(instance, "uid-0");
    assert!(queue_exists(&nodes.cluster, p0).await);
    let queues: Vec<u16> = r.smembers(nodes.key("queues")).unwrap();
    assert_eq!(queues, vec![p0]);

    // Level-based: a second pass finds nothing more to do.
    let (plan, _) = collect(&nodes, 1, &[(0, "uid-0")]).await;
    assert!(plan.is_empty(), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_will_come_back_loses_presence_and_count_but_keeps_its_queue() {
    let mut nodes = Nodes::new();
    nodes.start(0, "uid-0").await;
    nodes.start(1, "uid-1").await;
    let _bob = nodes.session(1, "bob").await;
    // The heartbeat records bob's session in the online count.
    let p1 = nodes.port(1);
    let mut r = nodes.redis();
    let ports = nodes.key("ports");
    let counted = eventually(Duration::from_secs(15), async || {
        r.hget::<_, _, Option<u64>>(&ports, p1).ok().flatten() == Some(1)
    })
    .await;
    assert!(counted, "bob's session never reached the online count");
    nodes.kill(1);
    nodes.await_unused(1).await;
    nodes.age_heartbeat(1);

    let (plan, _) = collect(&nodes, 2, &[(0, "uid-0")]).await;
    assert_eq!(
        plan,
        vec![Action::ResetRun {
            port: p1,
            instance: "uid-1".into()
        }]
    );
    let bob: BTreeMap<u16, String> = r.hgetall(nodes.key("presence:bob")).unwrap();
    assert!(bob.is_empty());
    let online: u64 = r.hget(nodes.key("ports"), p1).unwrap();
    assert_eq!(online, 0);
    let ready: String = r.hget(nodes.key(&format!("node:{p1}")), "ready").unwrap();
    assert_eq!(ready, "0");
    assert!(
        queue_exists(&nodes.cluster, p1).await,
        "queue kept for the pod that comes back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_came_back_is_never_touched_even_by_a_wrong_plan() {
    let mut nodes = Nodes::new();
    nodes.start(0, "uid-0").await;
    nodes.start(1, "uid-1a").await;
    let p1 = nodes.port(1);
    // Ordinal 1 dies and comes back as a new run before anyone collects.
    nodes.kill(1);
    nodes.start(1, "uid-1b").await;
    let _bob = nodes.session(1, "bob").await;

    // Whatever the operator believes, the new run survives: the queue has a
    // consumer, and the registry removals compare the old instance id.
    let b = nodes.backends();
    let wrong = vec![
        Action::DeleteQueue { port: p1 },
        Action::RetireRun {
            port: p1,
            instance: "uid-1a".into(),
        },
    ];
    let done = b.execute(&wrong).await.unwrap();
    assert_eq!(done.queues, 0);
    assert_eq!(done.skipped.len(), 2, "queue in use blocks the whole port");
    let retire_old = vec![Action::RetireRun {
        port: p1,
        instance: "uid-1a".into(),
    }];
    let done = b.execute(&retire_old).await.unwrap();
    assert_eq!(done.registry, 0);
    let mut r = nodes.redis();
    let instance: String = r
        .hget(nodes.key(&format!("node:{p1}")), "instance")
        .unwrap();
    assert_eq!(instance, "uid-1b");
    let bob: BTreeMap<u16, String> = r.hgetall(nodes.key("presence:bob")).unwrap();
    assert_eq!(bob, BTreeMap::from([(p1, "uid-1b".to_owned())]));
    assert!(queue_exists(&nodes.cluster, p1).await);
    // And the planner plans nothing for it.
    let (plan, _) = collect(&nodes, 2, &[(0, "uid-0"), (1, "uid-1b")]).await;
    assert!(plan.is_empty(), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_removes_queues_exchange_and_registry_and_honours_retain() {
    let mut nodes = Nodes::new();
    nodes.start(0, "uid-0").await;
    let _alice = nodes.session(0, "alice").await;
    let b = nodes.backends();
    // While the node runs, its queue is in use: the wipe refuses.
    assert!(b.wipe(false).await.is_err());
    nodes.kill(0);
    nodes.await_unused(0).await;
    let mut r = nodes.redis();
    let _: () = r.hset(nodes.key("msg:keep"), "body", "kept").unwrap();
    b.wipe(false).await.unwrap();
    assert!(!queue_exists(&nodes.cluster, nodes.port(0)).await);
    let keys: Vec<String> = r.keys(nodes.key("*")).unwrap();
    assert!(
        keys.iter()
            .all(|k| !k.contains(":ports") && !k.contains(":node:") && !k.contains(":presence:")),
        "{keys:?}"
    );
    assert!(keys.contains(&nodes.key("msg:keep")), "Retain keeps data");
    b.wipe(true).await.unwrap();
    let keys: Vec<String> = r.keys(nodes.key("*")).unwrap();
    assert!(keys.is_empty(), "Delete removes everything: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_keep_one_rabbitmq_connection_and_reopen_it_when_gone() {
    let cluster = format!("gc-conn-{}", std::process::id());
    let b = Backends::new(&cluster, &redis_url(), &amqp_url()).unwrap();
    assert_eq!(b.amqp_connections_opened(), 0, "connects lazily");
    for _ in 0..3 {
        b.rabbit_available().await.unwrap();
    }
    // A plan that touches RabbitMQ (a queue that does not exist) reuses it.
    let done = b
        .execute(&[Action::DeleteQueue { port: 65000 }])
        .await
        .unwrap();
    assert_eq!(done.queues, 1, "a missing queue counts as gone");
    assert_eq!(b.amqp_connections_opened(), 1);
    // Once the connection is gone, the next use opens a new one.
    b.close().await;
    b.rabbit_available().await.unwrap();
    assert_eq!(b.amqp_connections_opened(), 2);
    // A broker that cannot be reached is reported, not hidden by the cache.
    let dead = Backends::new(&cluster, &redis_url(), "amqp://guest:guest@127.0.0.1:1/%2f").unwrap();
    assert!(dead.rabbit_available().await.is_err());
}
