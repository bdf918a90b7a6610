//! Deletion through reconcile, against the in-memory Kubernetes API (which
//! serves namespaces and records Events here) with the real Redis and
//! RabbitMQ: each branch of the finalizer, the cleanup deadline, Redis
//! down, cleanup policies, per-cluster state dropped.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube_fake_client::ClientBuilder;
use parley_operator::context::Context;
use parley_operator::controller::reconcile;
use parley_operator::crd::{ChatCluster, FINALIZER};
use parley_operator::metrics::Metrics;

mod fixtures;
mod support;

use fixtures::*;

#[tokio::test]
async fn reconciles_keep_backend_connections_and_deletion_drops_them() {
    let client = client_with(vec![chat("keep", 1)], vec![]).await;
    let ctx = ctx(&client);
    for _ in 0..3 {
        run_with(&client, "keep", &ctx).await;
    }
    assert_eq!(ctx.kept_backends(), 1);
    let cc = get_cc(&client, "keep").await;
    let kept = ctx.backends_for(&cc, &redis_url(), &amqp_url()).unwrap();
    assert_eq!(
        kept.amqp_connections_opened(),
        1,
        "three reconciles, one RabbitMQ connection"
    );
    drop(kept);
    // Being deleted (the fake API server deletes at once, so the deletion
    // timestamp is set on the object handed to reconcile): cleanup lets go
    // of the finalizer and of the backends.
    let mut cc = get_cc(&client, "keep").await;
    assert!(cc.finalizers().contains(&FINALIZER.to_owned()));
    cc.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    reconcile(Arc::new(cc), ctx.clone())
        .await
        .expect("reconcile");
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    assert!(
        api.get_opt("keep")
            .await
            .unwrap()
            .is_none_or(|c| c.finalizers().is_empty())
    );
    assert_eq!(ctx.kept_backends(), 0);
    assert_eq!(ctx.tracked_clusters(), 0);
}

#[tokio::test]
async fn deletion_cleans_up_and_releases_the_finalizer() {
    let mut cc = chat("chat", 1);
    cc.metadata.finalizers = Some(vec![FINALIZER.into()]);
    cc.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let cluster = cc.cluster_id();
    let r = redis::Client::open(redis_url()).unwrap();
    let mut conn = r.get_connection().unwrap();
    for (k, f, v) in [
        ("ports", "8750", "2"),
        ("node:8750", "instance", "uid-0"),
        ("presence:alice", "8750", "uid-0"),
        ("msg:1", "body", "hi"),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(format!("chat:{cluster}:{k}"))
            .arg(f)
            .arg(v)
            .query(&mut conn)
            .unwrap();
    }
    let client = client_with(vec![cc], vec![]).await;
    run(&client, "chat").await;
    // Registry gone, data kept (cleanupPolicy Retain).
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("chat:{cluster}:*"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys, vec![format!("chat:{cluster}:msg:1")]);
    // The finalizer is released: the object is gone.
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    assert!(
        api.get_opt("chat")
            .await
            .unwrap()
            .is_none_or(|c| c.finalizers().is_empty())
    );
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
}

#[tokio::test]
async fn deletion_forgets_everything_kept_for_the_cluster() {
    let mut cc = chat("gone", 1);
    cc.spec.rabbitmq.url = Some(dead_amqp());
    let client = client_with(vec![cc], vec![]).await;
    // No deadline: unreachable backends let go at once.
    let ctx = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::ZERO,
    ));
    run_with(&client, "gone", &ctx).await;
    assert_eq!(
        (ctx.tracked_clusters(), ctx.kept_backends()),
        (1, 1),
        "a degraded cluster has a failure count and backends"
    );
    let mut cc = get_cc(&client, "gone").await;
    cc.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    reconcile(Arc::new(cc), ctx.clone())
        .await
        .expect("past the deadline, deletion lets go");
    assert_eq!(
        ctx.tracked_clusters(),
        0,
        "failure count and backends dropped"
    );
}

#[tokio::test]
async fn deletion_lets_go_at_once_while_the_namespace_is_deleted() {
    let cc = being_deleted(chat("chat", 1));
    let cluster = cc.cluster_id();
    seed(&cluster, REGISTRY);
    let namespaces = support::Namespaces::default();
    namespaces.set(NS, true);
    let client = client_in(vec![cc], vec![], namespaces).await;
    // The deadline is far: only the namespace branch can let go now.
    run(&client, "chat").await;
    let left = keys_of(&cluster);
    drop_keys(&cluster);
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    assert!(
        api.get_opt("chat")
            .await
            .unwrap()
            .is_none_or(|c| c.finalizers().is_empty()),
        "the finalizer blocks a namespace deletion"
    );
    assert_eq!(left.len(), REGISTRY.len(), "nothing wiped: {left:?}");
    assert!(
        event_reasons(&client)
            .await
            .contains(&"LeftBehind".to_owned())
    );
}

#[tokio::test]
async fn unreachable_backends_hold_deletion_until_the_deadline_then_let_go() {
    let mut cc = chat("chat", 1);
    cc.spec.rabbitmq.url = Some(dead_amqp());
    let cc = being_deleted(cc);
    let client = client_with(vec![cc.clone()], vec![]).await;
    // Within the deadline: the finalizer stays.
    let waiting = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::from_secs(600),
    ));
    let err = reconcile(Arc::new(cc.clone()), waiting)
        .await
        .expect_err("cleanup waits");
    assert!(
        matches!(err, parley_operator::Error::CleanupWaits(_)),
        "{err}"
    );
    assert!(
        get_cc(&client, "chat")
            .await
            .finalizers()
            .contains(&FINALIZER.to_owned())
    );
    assert!(
        !event_reasons(&client)
            .await
            .contains(&"LeftBehind".to_owned())
    );
    // Past it: recorded and released.
    let late = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::ZERO,
    ));
    reconcile(Arc::new(cc), late).await.expect("lets go");
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    assert!(
        api.get_opt("chat")
            .await
            .unwrap()
            .is_none_or(|c| c.finalizers().is_empty())
    );
    assert!(
        event_reasons(&client)
            .await
            .contains(&"LeftBehind".to_owned())
    );
}

#[tokio::test]
async fn nothing_is_deleted_while_redis_is_down() {
    let mut cc = chat("chat", 1);
    cc.spec.redis.url = Some(format!("redis://127.0.0.1:{}/0", dead_port()));
    let cluster = cc.cluster_id();
    // A retired node's queue sits in RabbitMQ.
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("chat.{cluster}.8770");
    ch.queue_declare(
        queue.as_str().into(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let client = client_with(vec![cc.clone()], vec![]).await;
    run(&client, "chat").await;
    let cc_now = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc_now, "RedisAvailable").0, "False");
    // Deleting it waits too.
    let ctx = ctx(&client);
    let waited = reconcile(Arc::new(being_deleted(cc)), ctx).await;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let ch2 = conn.create_channel().await.unwrap();
    let still = ch2
        .queue_declare(queue.as_str().into(), passive, Default::default())
        .await
        .is_ok();
    let _ = ch2
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "bye".into()).await;
    assert!(
        matches!(waited, Err(parley_operator::Error::CleanupWaits(_))),
        "{waited:?}"
    );
    assert!(still, "a queue was deleted while Redis was down");
}

#[tokio::test]
async fn cleanup_policy_delete_removes_every_key_of_the_cluster() {
    let mut cc = chat("chat", 1);
    cc.spec.cleanup_policy = parley_operator::crd::CleanupPolicy::Delete;
    let cc = being_deleted(cc);
    let cluster = cc.cluster_id();
    seed(&cluster, REGISTRY);
    let client = client_with(vec![cc], vec![]).await;
    run(&client, "chat").await;
    let left = keys_of(&cluster);
    drop_keys(&cluster);
    assert!(left.is_empty(), "{left:?}");
    assert!(
        event_reasons(&client)
            .await
            .contains(&"CleanedUp".to_owned())
    );
}

#[tokio::test]
async fn an_api_error_stopping_the_nodes_still_lets_go_past_the_deadline() {
    let cc = being_deleted(chat("chat", 1));
    // The StatefulSet exists, and scaling it is refused.
    let client = client_with(vec![cc.clone()], vec![]).await;
    let sts = parley_operator::reconcile::statefulset::build(&get_cc(&client, "chat").await);
    drop(client);
    let funcs = kube_fake_client::interceptor::Funcs::new().patch(|ctx| {
        if ctx.patch["spec"]["replicas"] == 0 {
            return Err(kube_fake_client::Error::Internal("scale refused".into()));
        }
        support::json_patch_semantics(&ctx)
    });
    let namespaces = support::Namespaces::default();
    namespaces.set(NS, false);
    let inner = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_interceptor_funcs(funcs)
        .with_object(cc.clone())
        .with_object(sts)
        .build()
        .await
        .expect("fake client");
    let client = support::with_namespaces(inner, namespaces);
    let waiting = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::from_secs(600),
    ));
    let err = reconcile(Arc::new(cc.clone()), waiting)
        .await
        .expect_err("waits within the deadline");
    assert!(err.to_string().contains("cannot stop the nodes"), "{err}");
    let late = Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::ZERO,
    ));
    reconcile(Arc::new(cc), late)
        .await
        .expect("past the deadline it lets go");
}
