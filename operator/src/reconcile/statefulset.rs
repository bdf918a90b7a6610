//! The StatefulSet: stable pod names give stable ordinals, which give
//! stable ports (base + ordinal x step). Configuration reaches the nodes by
//! the environment names of DESIGN.md.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use parley_cluster::env as var;

use super::env::{env, env_backend, env_field, env_secret};
use super::meta::{
    admin_secret_name, headless_name, labels, owned_meta, selector_labels, variant_name,
};
use crate::crd::{ChatCluster, SecretKeyRef};

/// Extra seconds a pod gets to terminate beyond the drain grace (deregister,
/// close the bus, flush).
pub const TERMINATION_MARGIN_S: i64 = 15;

/// Name of the container port serving /healthz, /readyz and /metrics (the
/// PodMonitor scrapes it by name).
pub const HEALTH_PORT_NAME: &str = "health";

/// The admin token's Secret key: the spec's, or the one the operator makes.
pub fn admin_token_ref(cc: &ChatCluster) -> SecretKeyRef {
    cc.spec
        .admin_token_secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: admin_secret_name(cc),
            key: "token".to_owned(),
        })
}

/// The advertise template: the spec's, else the pod's headless DNS name.
pub fn advertise(cc: &ChatCluster) -> String {
    cc.spec.expose.advertise.clone().unwrap_or_else(|| {
        format!(
            "{{pod}}.{}.{}.svc:{{port}}",
            headless_name(cc),
            cc.namespace().unwrap_or_else(|| "default".to_owned())
        )
    })
}

fn container_env(cc: &ChatCluster) -> Vec<EnvVar> {
    let s = &cc.spec;
    let mut e = vec![
        env(var::CLUSTER, cc.cluster_id()),
        env(var::BASE_PORT, s.ports.base),
        env(var::PORT_STEP, s.ports.step),
        env(var::HEALTH_PORT, s.ports.health),
        env(var::BIND, "0.0.0.0"),
        env(var::ADVERTISE, advertise(cc)),
        env(var::DRAIN_GRACE_S, s.drain_grace_seconds),
        // The run's instance id: the pod UID, so collection can tell a pod
        // that came back from its predecessor.
        env_field(var::INSTANCE_ID, "metadata.uid"),
        env_secret(var::ADMIN_TOKEN, &admin_token_ref(cc)),
    ];
    e.extend(env_backend(var::REDIS_URL, &s.redis));
    e.extend(env_backend(var::AMQP_URL, &s.rabbitmq));
    if let Some(a) = &s.archive {
        e.extend(env_backend(var::ARCHIVE_URL, &a.database));
        let window = [
            (var::HOT_MESSAGES, a.hot_messages.map(u64::from)),
            (var::HOT_SECONDS, a.hot_seconds.map(u64::from)),
            (var::ARCHIVE_MAX_LAG, a.max_lag),
        ];
        e.extend(window.iter().filter_map(|(k, v)| v.map(|v| env(k, v))));
    }
    let c = &s.chat;
    let limits = [
        (var::MAX_FRAME_BYTES, c.max_frame_bytes),
        (var::MAX_BODY_BYTES, c.max_body_bytes),
        (var::IDLE_TIMEOUT_S, c.idle_timeout_seconds),
        (var::AUTH_TIMEOUT_S, c.auth_timeout_seconds),
        (var::RATE_PER_S, c.rate_per_second),
        (var::RATE_BURST, c.rate_burst),
        (var::INBOX_RETENTION_DAYS, c.inbox_retention_days),
        (var::INBOX_RETENTION_ENTRIES, c.inbox_retention_entries),
        (var::TOKEN_TTL_S, c.token_ttl_seconds),
        (var::DRAIN_RATE, c.drain_rate),
        (var::MAX_GROUP_MEMBERS, c.max_group_members),
        (var::RECALL_WINDOW_S, c.recall_window_seconds),
    ];
    e.extend(limits.iter().filter_map(|(k, v)| v.map(|v| env(k, v))));
    e.extend(super::app::env_vars(cc));
    if let Some(level) = &s.log_level {
        e.push(env("RUST_LOG", level));
    }
    e
}

fn probe(cc: &ChatCluster, path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(cc.spec.ports.health)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

pub fn build(cc: &ChatCluster) -> StatefulSet {
    let s = &cc.spec;
    let (volumes, mounts) = super::app::key_files(cc);
    let container = Container {
        name: "chat-node".to_owned(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.as_ref().map(variant_name),
        env: Some(container_env(cc)),
        // The chat port differs per pod (base + ordinal x step), which a pod
        // template cannot say; the per-pod Services target it by number.
        ports: Some(vec![ContainerPort {
            name: Some(HEALTH_PORT_NAME.to_owned()),
            container_port: i32::from(s.ports.health),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe(cc, "/healthz", 10, 3)),
        readiness_probe: Some(probe(cc, "/readyz", 5, 2)),
        resources: s.resources.clone(),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    StatefulSet {
        metadata: owned_meta(cc, cc.name_any()),
        spec: Some(StatefulSetSpec {
            replicas: Some(s.replicas),
            service_name: Some(headless_name(cc)),
            // Chat nodes do not depend on each other: start and stop together.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cc)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cc)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    termination_grace_period_seconds: Some(
                        i64::from(s.drain_grace_seconds) + TERMINATION_MARGIN_S,
                    ),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    node_selector: s.node_selector.clone(),
                    tolerations: s.tolerations.clone(),
                    affinity: s.affinity.clone(),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Archive, BackendRef, ChatClusterSpec, PullPolicy};

    fn cc() -> ChatCluster {
        let mut cc = ChatCluster::new(
            "chat",
            ChatClusterSpec {
                redis: BackendRef {
                    url: Some("redis://r:6379/0".into()),
                    url_secret_ref: None,
                },
                rabbitmq: BackendRef {
                    url: None,
                    url_secret_ref: Some(SecretKeyRef {
                        name: "mq".into(),
                        key: "url".into(),
                    }),
                },
                ..ChatClusterSpec::default()
            },
        );
        cc.metadata.namespace = Some("ns".into());
        cc
    }

    fn container(sts: &StatefulSet) -> &Container {
        &sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn env_var<'a>(sts: &'a StatefulSet, name: &str) -> &'a EnvVar {
        container(sts)
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} not set"))
    }

    #[test]
    fn nodes_get_the_cluster_id_ports_and_backends_by_the_shared_names() {
        let sts = build(&cc());
        assert_eq!(
            env_var(&sts, var::CLUSTER).value.as_deref(),
            Some("ns_chat")
        );
        assert_eq!(env_var(&sts, var::BASE_PORT).value.as_deref(), Some("8750"));
        assert_eq!(env_var(&sts, var::PORT_STEP).value.as_deref(), Some("10"));
        assert_eq!(
            env_var(&sts, var::REDIS_URL).value.as_deref(),
            Some("redis://r:6379/0")
        );
        let amqp = env_var(&sts, var::AMQP_URL);
        let from = amqp
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((from.name.as_str(), from.key.as_str()), ("mq", "url"));
        let uid = env_var(&sts, var::INSTANCE_ID);
        assert_eq!(
            uid.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.uid"
        );
        assert_eq!(
            env_var(&sts, var::ADVERTISE).value.as_deref(),
            Some("{pod}.chat-nodes.ns.svc:{port}")
        );
    }

    #[test]
    fn unset_limits_are_left_to_the_node_and_set_ones_passed() {
        let mut c = cc();
        assert!(
            container(&build(&c))
                .env
                .iter()
                .flatten()
                .all(|e| e.name != var::MAX_BODY_BYTES)
        );
        c.spec.chat.max_body_bytes = Some(8192);
        assert_eq!(
            env_var(&build(&c), var::MAX_BODY_BYTES).value.as_deref(),
            Some("8192")
        );
        c.spec.chat.max_group_members = Some(50);
        c.spec.chat.recall_window_seconds = Some(0);
        assert_eq!(
            env_var(&build(&c), var::MAX_GROUP_MEMBERS).value.as_deref(),
            Some("50")
        );
        assert_eq!(
            env_var(&build(&c), var::RECALL_WINDOW_S).value.as_deref(),
            Some("0")
        );
    }

    #[test]
    fn pods_drain_within_their_grace_and_pull_as_asked() {
        let mut c = cc();
        c.spec.drain_grace_seconds = 40;
        c.spec.image_pull_policy = Some(PullPolicy::IfNotPresent);
        let sts = build(&c);
        let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(40 + TERMINATION_MARGIN_S)
        );
        assert_eq!(
            container(&sts).image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(
            sts.spec.as_ref().unwrap().service_name.as_deref(),
            Some("chat-nodes")
        );
    }

    fn names(sts: &StatefulSet) -> Vec<&str> {
        container(sts)
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect()
    }

    #[test]
    fn without_an_archive_no_archive_setting_is_passed() {
        let sts = build(&cc());
        let archive_vars = [
            var::ARCHIVE_URL,
            var::ARCHIVER,
            var::HOT_MESSAGES,
            var::HOT_SECONDS,
            var::ARCHIVE_MAX_LAG,
        ];
        assert!(
            names(&sts).iter().all(|n| !archive_vars.contains(n)),
            "{:?}",
            names(&sts)
        );
    }

    #[test]
    fn the_archive_url_comes_from_its_secret_and_the_window_as_set() {
        let mut c = cc();
        c.spec.archive = Some(Archive {
            database: BackendRef {
                url: None,
                url_secret_ref: Some(SecretKeyRef {
                    name: "archive".into(),
                    key: "url".into(),
                }),
            },
            hot_messages: Some(500),
            hot_seconds: Some(3600),
            max_lag: Some(2_000_000),
        });
        let sts = build(&c);
        let url = env_var(&sts, var::ARCHIVE_URL);
        assert_eq!(url.value, None, "no URL in the pod spec");
        let from = url
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((from.name.as_str(), from.key.as_str()), ("archive", "url"));
        assert_eq!(from.optional, Some(false));
        assert_eq!(
            env_var(&sts, var::HOT_MESSAGES).value.as_deref(),
            Some("500")
        );
        assert_eq!(
            env_var(&sts, var::HOT_SECONDS).value.as_deref(),
            Some("3600")
        );
        assert_eq!(
            env_var(&sts, var::ARCHIVE_MAX_LAG).value.as_deref(),
            Some("2000000")
        );
    }

    #[test]
    fn an_inline_archive_url_is_passed_and_unset_window_left_to_the_node() {
        let mut c = cc();
        c.spec.archive = Some(Archive {
            database: BackendRef {
                url: Some("postgres://db/chat".into()),
                url_secret_ref: None,
            },
            ..Archive::default()
        });
        let sts = build(&c);
        assert_eq!(
            env_var(&sts, var::ARCHIVE_URL).value.as_deref(),
            Some("postgres://db/chat")
        );
        let n = names(&sts);
        assert!(
            [var::HOT_MESSAGES, var::HOT_SECONDS, var::ARCHIVE_MAX_LAG]
                .iter()
                .all(|v| !n.contains(v)),
            "{n:?}"
        );
    }
}
