//! Reconcile against an in-memory Kubernetes API (kube-fake-client: server-
//! side apply, status subresource, selectors), with the real Redis and
//! RabbitMQ of the machine as the cluster's backends: owned objects, status,
//! pause, validation, ownership. The tests check what the API ends up
//! holding, not the calls made. Deletion is in `deletion.rs`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube_fake_client::ClientBuilder;
use parley_operator::crd::{BackendRef, ChatCluster, FINALIZER, PAUSE_ANNOTATION};

mod fixtures;
mod support;

use fixtures::*;

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
async fn unreachable_backends_degrade_and_delete_nothing_until_they_answer() {
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

    // RabbitMQ answers again: the entry is collected, and the list of what
    // waits is emptied (not left as it was by the status merge patch).
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    api.patch(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"rabbitmq": {"url": amqp_url()}}})),
    )
    .await
    .unwrap();
    run(&client, "chat").await;
    let cc = get_cc(&client, "chat").await;
    assert_eq!(cond(&cc, "Degraded").0, "False");
    let pending = &cc.status.as_ref().unwrap().pending_cleanup;
    assert!(pending.is_empty(), "{pending:?}");
    let still: bool = redis::cmd("HEXISTS")
        .arg(format!("chat:{cluster}:ports"))
        .arg(8770)
        .query(&mut conn)
        .unwrap();
    assert!(!still, "collected once both backends answer");
    let _: () = redis::cmd("DEL")
        .arg(format!("chat:{cluster}:ports"))
        .arg(format!("chat:{cluster}:node:8770"))
        .query(&mut conn)
        .unwrap();
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
