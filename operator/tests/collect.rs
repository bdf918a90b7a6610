//! Collection against the real Redis and RabbitMQ, without chat-node: the
//! registry, queues and feed consumers are written as a node would
//! write them, then the operator observes, plans and executes.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use parley_cluster::archive::{GROUP, consumer_name};
use parley_cluster::gc::Feed;
use parley_cluster::{Keys, NodeRecord, PortFormula, Registry};
use parley_operator::gc::{self, Action, Backends};
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

/// The archive feed of `cluster` with its group and these consumers (each
/// created idle, holding nothing).
async fn archive_group(
    redis: &mut redis::aio::MultiplexedConnection,
    cluster: &str,
    consumers: &[&str],
) {
    feed_group(redis, cluster, Feed::Archive, consumers).await
}

/// A feed of `cluster` with its group and these consumers, idle.
async fn feed_group(
    redis: &mut redis::aio::MultiplexedConnection,
    cluster: &str,
    feed: Feed,
    consumers: &[&str],
) {
    let stream = feed.stream(&Keys::new(cluster));
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg(feed.group())
        .arg("$")
        .arg("MKSTREAM")
        .query_async(redis)
        .await
        .expect("XGROUP CREATE");
    for c in consumers {
        let _: i64 = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&stream)
            .arg(feed.group())
            .arg(c)
            .query_async(redis)
            .await
            .expect("XGROUP CREATECONSUMER");
    }
}

/// Consumer name -> pending entries, of `cluster`'s archive group.
async fn feed_consumers(cluster: &str) -> BTreeMap<String, u64> {
    consumers_of(cluster, Feed::Archive).await
}

/// Consumer name -> pending entries, of a feed's group.
async fn consumers_of(cluster: &str, feed: Feed) -> BTreeMap<String, u64> {
    let conn =
        parley_cluster::registry::connect(&redis_url(), Duration::from_secs(5)).expect("redis");
    Registry::new(conn, cluster)
        .feed_consumers(feed)
        .await
        .expect("consumers")
        .into_iter()
        .map(|c| (c.name, c.pending))
        .collect()
}

async fn multiplexed() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

#[tokio::test]
async fn feed_consumers_of_gone_runs_go_and_the_rest_stay() {
    let (cluster, neighbour) = (cluster("consumers"), cluster("neighbour"));
    let mut redis = multiplexed().await;
    let (p0, p1, p2) = (F.port(0).unwrap(), F.port(1).unwrap(), F.port(2).unwrap());
    let live = consumer_name(p0, "uid-0");
    let replaced = consumer_name(p0, "uid-0-before");
    let scaled_away = consumer_name(p1, "uid-1");
    let fresh = consumer_name(p2, "uid-2-new");
    archive_group(
        &mut redis,
        &cluster,
        &[&live, &replaced, &scaled_away, &fresh, "backfill", "0:x"],
    )
    .await;
    // The push feed's group names the same runs (and a tool of its own).
    feed_group(
        &mut redis,
        &cluster,
        Feed::Push,
        &[&live, &scaled_away, "push-tool"],
    )
    .await;
    // Another cluster's group holds a consumer of the same name.
    archive_group(&mut redis, &neighbour, &[&scaled_away]).await;
    // Ordinal 2 started after the pods were listed: only its heartbeat says so.
    let conn =
        parley_cluster::registry::connect(&redis_url(), Duration::from_secs(5)).expect("redis");
    Registry::new(conn, &cluster)
        .register_node(&NodeRecord {
            port: p2,
            name: "chat-2".into(),
            address: format!("chat-2:{p2}"),
            ready: false,
            online: 0,
            heartbeat_ms: now_ms(),
            instance: "uid-2-new".into(),
        })
        .await
        .expect("register");

    let b = Backends::new(&cluster, &redis_url(), &amqp_url()).expect("backends");
    let pods: BTreeMap<u32, String> = [(0, "uid-0".to_owned())].into();
    let observed = b.observe(1, Some(F), pods.clone()).await.expect("observe");
    let plan = gc::plan(&observed);
    let done = b.execute(&plan).await.expect("execute");
    let left = feed_consumers(&cluster).await;
    let pushers_left = consumers_of(&cluster, Feed::Push).await;
    let theirs = feed_consumers(&neighbour).await;
    // Level-based: a second pass has no consumer left to delete.
    let again = gc::plan(&b.observe(1, Some(F), pods).await.expect("observe"));
    wipe(&cluster).await;
    wipe(&neighbour).await;

    assert!(done.skipped.is_empty(), "{:?}", done.skipped);
    // Two archive consumers and one push consumer.
    assert_eq!(done.consumers, 3, "{plan:?}");
    assert_eq!(
        left.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["0:x", live.as_str(), fresh.as_str(), "backfill"]
    );
    assert_eq!(
        pushers_left.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![live.as_str(), "push-tool"]
    );
    assert_eq!(theirs.keys().collect::<Vec<_>>(), vec![&scaled_away]);
    assert!(
        again
            .iter()
            .all(|a| !matches!(a, Action::DeleteConsumer { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_gone_runs_archive_consumer_holding_entries_is_kept_until_they_are_acknowledged() {
    let cluster = cluster("pending");
    let mut redis = multiplexed().await;
    let stream = Keys::new(&cluster).archive_stream();
    let port = F.port(1).unwrap();
    let (live, gone) = (
        consumer_name(F.port(0).unwrap(), "uid-0"),
        consumer_name(port, "uid-1"),
    );
    archive_group(&mut redis, &cluster, &[&live]).await;
    for i in 0..3 {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("i")
            .arg(format!("m{i}"))
            .query_async(&mut redis)
            .await
            .expect("XADD");
    }
    // The gone run read three entries and died before acknowledging them.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(&gone)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut redis)
        .await
        .expect("XREADGROUP");

    let b = Backends::new(&cluster, &redis_url(), &amqp_url()).expect("backends");
    let pods: BTreeMap<u32, String> = [(0, "uid-0".to_owned())].into();
    let pass = async || {
        let observed = b.observe(1, Some(F), pods.clone()).await.expect("observe");
        b.execute(&gc::plan(&observed)).await.expect("execute")
    };
    let first = pass().await;
    let second = pass().await;
    let kept = feed_consumers(&cluster).await;
    // A live archiver claims the entries after its claim timeout (0 here)
    // and acknowledges them: now the gone consumer holds nothing.
    let _: redis::Value = redis::cmd("XAUTOCLAIM")
        .arg(&stream)
        .arg(GROUP)
        .arg(&live)
        .arg(0)
        .arg("0")
        .query_async(&mut redis)
        .await
        .expect("XAUTOCLAIM");
    let claimed = feed_consumers(&cluster).await;
    let ids: Vec<String> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async::<Vec<(String, BTreeMap<String, String>)>>(&mut redis)
        .await
        .expect("XRANGE")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let _: u64 = redis::cmd("XACK")
        .arg(&stream)
        .arg(GROUP)
        .arg(&ids)
        .query_async(&mut redis)
        .await
        .expect("XACK");
    let last = pass().await;
    let left = feed_consumers(&cluster).await;
    wipe(&cluster).await;

    for (n, done) in [(1, &first), (2, &second)] {
        assert_eq!(
            done.consumers, 0,
            "pass {n} removed a consumer holding entries"
        );
        assert_eq!(done.skipped.len(), 1, "pass {n}: {:?}", done.skipped);
        let (action, why) = &done.skipped[0];
        assert_eq!(
            action,
            &Action::DeleteConsumer {
                port,
                instance: "uid-1".into()
            }
        );
        assert!(why.starts_with("3 archive entries pending"), "{why}");
    }
    assert_eq!(kept.get(&gone), Some(&3), "{kept:?}");
    assert_eq!(claimed.get(&live), Some(&3), "{claimed:?}");
    assert_eq!(ids.len(), 3);
    assert!(last.skipped.is_empty(), "{:?}", last.skipped);
    assert_eq!(last.consumers, 1);
    assert_eq!(left, BTreeMap::from([(live, 0)]));
}
