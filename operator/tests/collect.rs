//! Collection against the real Redis and RabbitMQ, without chat-node: the
//! registry and queues are written as a node would write them, then the
//! operator observes, plans and executes.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use parley_cluster::{NodeRecord, PortFormula, Registry};
use parley_operator::gc::{self, Backends};
use redis::AsyncCommands;

fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}
fn amqp_url() -> String {
    std::env::var("CHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

const F: PortFormula = PortFormula {
    base: 8750,
    step: 10,
};

fn cluster(tag: &str) -> String {
    format!(
        "collect-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Removes every key of `cluster`.
async fn wipe(cluster: &str) {
    let b = Backends::new(cluster, &redis_url(), &amqp_url()).expect("backends");
    let _ = b.wipe(true).await;
}

#[tokio::test]
async fn a_run_that_registered_after_the_pods_were_listed_is_not_collected() {
    let cluster = cluster("fresh");
    let conn =
        parley_cluster::registry::connect(&redis_url(), Duration::from_secs(5)).expect("redis");
    let registry = Registry::new(conn, &cluster);
    // Ordinal 1 just started (scale-up the operator has not seen yet): its
    // pod was not in the list, its run registered a moment later.
    let port = F.port(1).expect("port");
    registry
        .register_node(&NodeRecord {
            port,
            name: "chat-1".into(),
            address: format!("chat-1:{port}"),
            ready: true,
            online: 0,
            heartbeat_ms: now_ms(),
            instance: "uid-1-new".into(),
        })
        .await
        .expect("register");
    let b = Backends::new(&cluster, &redis_url(), &amqp_url()).expect("backends");
    let pods: BTreeMap<u32, String> = [(0, "uid-0".to_owned())].into();
    let observed = b.observe(1, Some(F), pods).await.expect("observe");
    let plan = gc::plan(&observed);
    b.execute(&plan).await.expect("execute");
    let nodes = registry.nodes().await.expect("nodes");
    wipe(&cluster).await;
    assert!(
        nodes
            .iter()
            .any(|n| n.port == port && n.instance == "uid-1-new"),
        "a run with a fresh heartbeat was collected: {plan:?}"
    );
}

#[tokio::test]
async fn a_queue_the_broker_refuses_to_show_is_kept_and_remembered() {
    let cluster = cluster("locked");
    let port = F.port(3).expect("port");
    // The queue exists, but exclusive to another connection: a passive
    // declare is refused with RESOURCE_LOCKED (405), not NOT_FOUND.
    let other = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("rabbitmq");
    let ch = other.create_channel().await.expect("channel");
    let queue = parley_cluster::names::queue_name(&cluster, port);
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("declare");
    let mut redis = redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let queues = format!("chat:{cluster}:queues");
    let _: () = redis.sadd(&queues, port).await.expect("sadd");

    // Scaled to 0: the port is gone for good, its queue should go.
    let b = Backends::new(&cluster, &redis_url(), &amqp_url()).expect("backends");
    let observed = b
        .observe(0, Some(F), BTreeMap::new())
        .await
        .expect("observe");
    let plan = gc::plan(&observed);
    let outcome = b.execute(&plan).await;
    let remembered: bool = redis.sismember(&queues, port).await.expect("sismember");
    let _ = other.close(200, "bye".into()).await;
    wipe(&cluster).await;
    assert!(
        outcome.is_err(),
        "the refused declare was taken for a missing queue"
    );
    assert!(remembered, "the port was forgotten while its queue exists");
}
