//! Reconcile against an in-memory Kubernetes API (kube-fake-client: server-
//! side apply, status subresource, selectors), with the real Redis and
//! RabbitMQ of the machine as the cluster's backends. The tests check what
//! the API ends up holding, not the calls made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use parley_operator::context::Context;
use parley_operator::controller::reconcile;
use parley_operator::crd::{BackendRef, ChatCluster, ChatClusterSpec, FINALIZER, PAUSE_ANNOTATION};
use parley_operator::metrics::Metrics;

mod support;

const NS: &str = "chat-ns";

fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}
fn amqp_url() -> String {
    std::env::var("CHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A cluster id of its own for each test (random: tests run in parallel,
/// and in several processes).
fn unique(tag: &str) -> String {
    format!("{tag}-{:016x}", rand::random::<u64>())
}

fn chat(name: &str, replicas: i32) -> ChatCluster {
    let spec = ChatClusterSpec {
        replicas,
        image: "parley/chat-node:test".into(),
        redis: BackendRef {
            url: Some(redis_url()),
            url_secret_ref: None,
        },
        rabbitmq: BackendRef {
            url: Some(amqp_url()),
            url_secret_ref: None,
        },
        cluster_id: Some(unique("op")),
        ..ChatClusterSpec::default()
    };
    let mut cc = ChatCluster::new(name, spec);
    cc.metadata.namespace = Some(NS.into());
    cc
}

async fn client_with(objects: Vec<ChatCluster>, pods: Vec<Pod>) -> Client {
    let namespaces = support::Namespaces::default();
    namespaces.set(NS, false);
    client_in(objects, pods, namespaces).await
}

/// The double with these objects, serving `namespaces`, recording Events.
async fn client_in(
    objects: Vec<ChatCluster>,
    pods: Vec<Pod>,
    namespaces: support::Namespaces,
) -> Client {
    let mut b = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_resource::<k8s_openapi::api::events::v1::Event>()
        .with_interceptor_funcs(support::api_server_json_patch());
    for o in objects {
        b = b.with_object(o);
    }
    for p in pods {
        b = b.with_object(p);
    }
    let client = b.build().await.expect("fake client");
    support::with_namespaces(client, namespaces)
}

/// The reasons of the Events recorded in the namespace.
async fn event_reasons(client: &Client) -> Vec<String> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

fn ctx(client: &Client) -> Arc<Context> {
    Arc::new(Context::new(
        client.clone(),
        Metrics::default(),
        Duration::from_secs(600),
    ))
}

async fn get_cc(client: &Client, name: &str) -> ChatCluster {
    Api::<ChatCluster>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

/// Runs reconcile on the current object, as the controller would: again
/// after the finalizer was added (the controller sees that change as an
/// event of its own).
async fn run(client: &Client, name: &str) {
    run_with(client, name, &ctx(client)).await;
}

async fn run_with(client: &Client, name: &str, ctx: &Arc<Context>) {
    let cc = get_cc(client, name).await;
    let had_finalizer = cc.finalizers().contains(&FINALIZER.to_owned());
    reconcile(Arc::new(cc), ctx.clone())
        .await
        .expect("reconcile");
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    if let Some(cc) = api.get_opt(name).await.expect("get")
        && !had_finalizer
        && cc.finalizers().contains(&FINALIZER.to_owned())
    {
        reconcile(Arc::new(cc), ctx.clone())
            .await
            .expect("reconcile");
    }
}

async fn list<K>(client: &Client) -> Vec<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let mut items = Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    items.sort_by_key(|o| o.name_any());
    items
}

fn env_of(sts: &StatefulSet) -> BTreeMap<String, String> {
    let c = &sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    c.env
        .iter()
        .flatten()
        .map(|e| {
            let v = e.value.clone().unwrap_or_else(|| {
                let src = e.value_from.as_ref().unwrap();
                if let Some(f) = &src.field_ref {
                    format!("field:{}", f.field_path)
                } else {
                    let s = src.secret_key_ref.as_ref().unwrap();
                    format!("secret:{}/{}", s.name, s.key)
                }
            });
            (e.name.clone(), v)
        })
        .collect()
}

fn cond(cc: &ChatCluster, ty: &str) -> (String, String) {
    let c = cc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap();
    (c.status.clone(), c.reason.clone())
}

fn pod(cc_name: &str, ordinal: u32, uid: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{cc_name}-{ordinal}")),
            namespace: Some(NS.into()),
            uid: Some(uid.into()),
            labels: Some(
                [
                    ("app.kubernetes.io/name".to_owned(), "chat-node".to_owned()),
                    ("app.kubernetes.io/instance".to_owned(), cc_name.to_owned()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: cc_name.into(),
                uid: format!("sts-{cc_name}"),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test]
async fn reconcile_creates_every_owned_object_with_stable_ports() {
    let client = client_with(vec![chat("chat", 3)], vec![]).await;
    run(&client, "chat").await;

    let cc = get_cc(&client, "chat").await;
    assert!(cc.finalizers().contains(&FINALIZER.to_owned()));

    let stss: Vec<StatefulSet> = list(&client).await;
    assert_eq!(stss.len(), 1);
    let sts = &stss[0];
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("chat-nodes"));
    let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("ChatCluster", "chat", Some(true))
    );
    let env = env_of(sts);
    assert_eq!(env["CHAT_CLUSTER"], cc.cluster_id());
    assert_eq!(env["CHAT_BASE_PORT"], "8750");
    assert_eq!(env["CHAT_PORT_STEP"], "10");
    assert_eq!(env["CHAT_HEALTH_PORT"], "9090");
    assert_eq!(env["CHAT_REDIS_URL"], redis_url());
    assert_eq!(env["CHAT_AMQP_URL"], amqp_url());
    assert_eq!(env["CHAT_INSTANCE_ID"], "field:metadata.uid");
    assert_eq!(env["CHAT_ADMIN_TOKEN"], "secret:chat-admin-token/token");
    assert_eq!(env["CHAT_ADVERTISE"], "{pod}.chat-nodes.chat-ns.svc:{port}");
    let pod_spec = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod_spec.termination_grace_period_seconds, Some(15 + 15));
    let c = &pod_spec.containers[0];
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(
        (
            sc.run_as_non_root,
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation
        ),
        (Some(true), Some(true), Some(false))
    );

    let services: Vec<Service> = list(&client).await;
    let names: Vec<String> = services.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, vec!["chat-0", "chat-1", "chat-2", "chat-nodes"]);
    let ports: Vec<i32> = services[..3]
        .iter()
        .map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port)
        .collect();
    assert_eq!(ports, vec![8750, 8760, 8770]);
    assert_eq!(
        services[3].spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );
    assert_eq!(
        services[1].spec.as_ref().unwrap().type_.as_deref(),
        Some("ClusterIP")
    );

    let pdbs: Vec<PodDisruptionBudget> = list(&client).await;
    assert_eq!(pdbs.len(), 1);
    let secrets: Vec<Secret> = list(&client).await;
    assert_eq!(secrets[0].name_any(), "chat-admin-token");
    assert_eq!(secrets[0].data.as_ref().unwrap()["token"].0.len(), 48);

    let status = cc.status.as_ref().unwrap();
    assert_eq!(
        status.selector,
        "app.kubernetes.io/instance=chat,app.kubernetes.io/name=chat-node"
    );
    assert_eq!(status.nodes.len(), 3);
    assert_eq!(cond(&cc, "Ready").0, "False");
    assert_eq!(cond(&cc, "Progressing").0, "True");
    assert_eq!(cond(&cc, "RedisAvailable").0, "True");
    assert_eq!(cond(&cc, "RabbitMQAvailable").0, "True");

    // A second reconcile changes nothing and keeps the admin token.
    let token = secrets[0].data.as_ref().unwrap()["token"].clone();
    run(&client, "chat").await;
    let secrets: Vec<Secret> = list(&client).await;
    assert_eq!(secrets[0].data.as_ref().unwrap()["token"], token);
}

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
async fn scale_changes_and_drift_are_put_right() {
    let client = client_with(vec![chat("chat", 3)], vec![]).await;
    run(&client, "chat").await;
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    // kubectl scale: the spec changes.
    api.patch(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1, "image": "parley/chat-node:v2"}})),
    )
    .await
    .unwrap();
    // Someone edits the StatefulSet by hand.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    sts_api
        .patch(
            "chat",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    run(&client, "chat").await;
    let sts = sts_api.get("chat").await.unwrap();
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("parley/chat-node:v2")
    );
    let services: Vec<Service> = list(&client).await;
    let names: Vec<String> = services.iter().map(|s| s.name_any()).collect();
    assert_eq!(
        names,
        vec!["chat-0", "chat-nodes"],
        "per-pod services of retired ordinals are removed"
    );
}

#[tokio::test]
async fn status_reflects_pods() {
    let client = client_with(
        vec![chat("chat", 2)],
        vec![
            pod("chat", 0, "uid-0", true),
            pod("chat", 1, "uid-1", false),
        ],
    )
    .await;
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    let st = cc.status.as_ref().unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (2, 1));
    assert_eq!(cond(&cc, "Ready").0, "False");
    // Both pods ready: Ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut p1 = pods.get("chat-1").await.unwrap();
    p1.status = pod("chat", 1, "uid-1", true).status;
    pods.replace_status("chat-1", &Default::default(), &p1)
        .await
        .unwrap();
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cc.status.as_ref().unwrap().ready_replicas, 2);
}

#[tokio::test]
async fn a_paused_cluster_is_left_alone() {
    let mut cc = chat("chat", 2);
    cc.metadata.annotations = Some([(PAUSE_ANNOTATION.to_owned(), "true".to_owned())].into());
    let client = client_with(vec![cc], vec![]).await;
    run(&client, "chat").await;
    assert!(list::<StatefulSet>(&client).await.is_empty());
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc, "Paused"), ("True".into(), "AnnotationSet".into()));
}

#[tokio::test]
async fn an_invalid_spec_is_reported_degraded() {
    let mut cc = chat("chat", 1);
    cc.spec.redis = BackendRef::default();
    let client = client_with(vec![cc], vec![]).await;
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc, "Degraded"), ("True".into(), "InvalidSpec".into()));
}

#[tokio::test]
async fn unreachable_backends_degrade_and_delete_nothing() {
    let mut cc = chat("chat", 1);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cc.spec.rabbitmq.url = Some(format!("amqp://guest:guest@127.0.0.1:{dead}/%2f"));
    let cluster = cc.cluster_id();
    // A retired node's registry entry sits in Redis.
    let r = redis::Client::open(redis_url()).unwrap();
    let mut conn = r.get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("chat:{cluster}:ports"))
        .arg(8770)
        .arg(0)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("chat:{cluster}:node:8770"))
        .arg("instance")
        .arg("gone")
        .query(&mut conn)
        .unwrap();
    let client = client_with(vec![cc], vec![pod("chat", 0, "uid-0", true)]).await;
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc, "RabbitMQAvailable").0, "False");
    assert_eq!(
        cond(&cc, "Degraded"),
        ("True".into(), "BackendUnavailable".into())
    );
    let pending = &cc.status.as_ref().unwrap().pending_cleanup;
    assert!(pending.iter().any(|p| p.contains("8770")), "{pending:?}");
    let still: bool = redis::cmd("HEXISTS")
        .arg(format!("chat:{cluster}:ports"))
        .arg(8770)
        .query(&mut conn)
        .unwrap();
    assert!(still, "nothing deleted while RabbitMQ is down");
    let _: () = redis::cmd("DEL")
        .arg(format!("chat:{cluster}:ports"))
        .arg(format!("chat:{cluster}:node:8770"))
        .query(&mut conn)
        .unwrap();
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

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A RabbitMQ URL nothing answers on.
fn dead_amqp() -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", dead_port())
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
async fn only_pods_the_statefulset_controls_count() {
    // Pods that carry the selector labels but belong to no StatefulSet of
    // ours: one with a huge ordinal, one that would shadow ordinal 1.
    let mut stray = pod("chat", 100, "uid-stray", true);
    stray.metadata.owner_references = None;
    let mut shadow = pod("chat", 1, "uid-shadow", true);
    shadow.metadata.owner_references = None;
    let client = client_with(
        vec![chat("chat", 1)],
        vec![pod("chat", 0, "uid-0", true), stray, shadow],
    )
    .await;
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    let st = cc.status.as_ref().unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (1, 1));
    let ordinals: Vec<u32> = st.nodes.iter().map(|n| n.ordinal).collect();
    assert_eq!(ordinals, vec![0]);
}

/// Reconciles ChatCluster `name` among `objects` and returns its Degraded
/// condition's reason and message; asserts nothing was applied for it.
async fn refused(ccs: Vec<ChatCluster>, secrets: Vec<Secret>, name: &str) -> (String, String) {
    let mut b = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_resource::<k8s_openapi::api::events::v1::Event>()
        .with_interceptor_funcs(support::api_server_json_patch());
    for o in ccs {
        b = b.with_object(o);
    }
    for s in secrets {
        b = b.with_object(s);
    }
    let client = b.build().await.expect("fake client");
    run(&client, name).await;
    let cc = get_cc(&client, name).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    assert!(
        sts.get_opt(name).await.unwrap().is_none(),
        "a StatefulSet was made from an invalid spec"
    );
    let d = cc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(d.status, "True", "{d:?}");
    assert!(
        event_reasons(&client).await.contains(&d.reason),
        "no {} Event",
        d.reason
    );
    (d.reason, d.message)
}

#[tokio::test]
async fn default_cluster_ids_that_break_the_rule_are_refused() {
    for name in ["chat.v2", &"c".repeat(60)] {
        let mut cc = chat(name, 1);
        cc.spec.cluster_id = None;
        let (reason, message) = refused(vec![cc], vec![], name).await;
        assert_eq!(reason, "InvalidSpec");
        assert!(message.contains("spec.clusterId"), "{message}");
    }
}

#[tokio::test]
async fn ports_past_65535_are_refused() {
    let mut cc = chat("chat", 7);
    cc.spec.ports.base = 65000;
    cc.spec.ports.step = 100;
    let (reason, message) = refused(vec![cc], vec![], "chat").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("65535"), "{message}");
}

#[tokio::test]
async fn a_health_port_that_is_a_chat_port_is_refused() {
    let mut cc = chat("chat", 2);
    cc.spec.ports.health = 8760;
    let (reason, message) = refused(vec![cc], vec![], "chat").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("8760"), "{message}");
}

#[tokio::test]
async fn an_admin_token_with_a_trailing_newline_is_refused() {
    let mut cc = chat("chat", 1);
    cc.spec.admin_token_secret_ref = Some(parley_operator::crd::SecretKeyRef {
        name: "admin".into(),
        key: "token".into(),
    });
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("admin".into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [(
                "token".to_owned(),
                k8s_openapi::ByteString(b"s3cret\n".to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    let (reason, message) = refused(vec![cc], vec![secret], "chat").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("whitespace"), "{message}");
}

#[tokio::test]
async fn a_second_chatcluster_with_the_same_cluster_id_is_refused() {
    let first = chat("first", 1);
    let mut second = chat("second", 1);
    second.spec.cluster_id = first.spec.cluster_id.clone();
    let older = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
    let newer = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
    let mut first = first;
    first.metadata.creation_timestamp = Some(older);
    second.metadata.creation_timestamp = Some(newer);
    let (reason, message) = refused(vec![first, second], vec![], "second").await;
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("first"), "{message}");
}

#[tokio::test]
async fn objects_someone_else_made_are_neither_overwritten_nor_adopted() {
    // Service chat-0 exists and is not ours; nor is chat-4 (which even
    // carries our labels, as if left over from scaling down).
    let theirs = |name: &str, labels: BTreeMap<String, String>| Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Service::default()
    };
    let ours_labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name", "chat-node"),
        ("app.kubernetes.io/instance", "chat"),
        ("parley.dev/ordinal", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let client = ClientBuilder::new()
        .with_resource::<ChatCluster>()
        .with_status_subresource::<ChatCluster>()
        .with_interceptor_funcs(support::api_server_json_patch())
        .with_object(chat("chat", 2))
        .with_object(theirs(
            "chat-0",
            [("app".to_owned(), "web".to_owned())].into(),
        ))
        .with_object(theirs("chat-4", ours_labels))
        .with_resource::<k8s_openapi::api::events::v1::Event>()
        .build()
        .await
        .expect("fake client");
    run(&client, "chat").await;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    for name in ["chat-0", "chat-4"] {
        let svc = services.get_opt(name).await.unwrap();
        let svc = svc.unwrap_or_else(|| panic!("{name} was deleted"));
        assert!(svc.metadata.owner_references.is_none(), "{name} adopted");
        assert_eq!(
            svc.spec.unwrap().ports.unwrap()[0].port,
            80,
            "{name} overwritten"
        );
    }
    // Ours are applied; the conflict is reported.
    assert!(services.get_opt("chat-1").await.unwrap().is_some());
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc, "Degraded"), ("True".into(), "NotOwned".into()));
    let message = &cc
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(message.contains("Service chat-0"), "{message}");
    assert!(
        event_reasons(&client)
            .await
            .contains(&"NotOwned".to_owned())
    );
}

/// Writes hash fields under `chat:<cluster>:`.
fn seed(cluster: &str, entries: &[(&str, &str, &str)]) {
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    for (k, f, v) in entries {
        let _: () = redis::cmd("HSET")
            .arg(format!("chat:{cluster}:{k}"))
            .arg(f)
            .arg(v)
            .query(&mut conn)
            .unwrap();
    }
}

/// Every key of `cluster`, sorted.
fn keys_of(cluster: &str) -> Vec<String> {
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("chat:{cluster}:*"))
        .query(&mut conn)
        .unwrap();
    keys.sort();
    keys
}

fn drop_keys(cluster: &str) {
    let keys = keys_of(cluster);
    if keys.is_empty() {
        return;
    }
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
}

/// `cc` as the controller sees it once `kubectl delete` ran.
fn being_deleted(mut cc: ChatCluster) -> ChatCluster {
    cc.metadata.finalizers = Some(vec![FINALIZER.into()]);
    cc.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    cc
}

const REGISTRY: &[(&str, &str, &str)] = &[
    ("ports", "8750", "2"),
    ("node:8750", "instance", "uid-0"),
    ("presence:alice", "8750", "uid-0"),
    ("msg:1", "body", "hi"),
];

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
async fn a_paused_cluster_collects_nothing_until_unpaused() {
    let mut cc = chat("chat", 1);
    cc.metadata.finalizers = Some(vec![FINALIZER.into()]);
    cc.metadata.annotations = Some([(PAUSE_ANNOTATION.to_owned(), "true".to_owned())].into());
    let cluster = cc.cluster_id();
    // A node scaled away long ago left its registry entry (no heartbeat).
    seed(
        &cluster,
        &[("ports", "8770", "0"), ("node:8770", "instance", "gone")],
    );
    let client = client_with(vec![cc], vec![pod("chat", 0, "uid-0", true)]).await;
    run(&client, "chat").await;
    let paused = keys_of(&cluster);
    // The same cluster, unpaused, collects it: the test can fail.
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    api.patch(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {PAUSE_ANNOTATION: null}}})),
    )
    .await
    .unwrap();
    run(&client, "chat").await;
    let unpaused = keys_of(&cluster);
    drop_keys(&cluster);
    assert!(
        paused.contains(&format!("chat:{cluster}:node:8770")),
        "collected while paused: {paused:?}"
    );
    assert!(
        !unpaused.contains(&format!("chat:{cluster}:node:8770")),
        "not collected once unpaused: {unpaused:?}"
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
