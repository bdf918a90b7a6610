//! Spec validation beyond what the CRD schema can say: problems that
//! would otherwise crash-loop the pods (or let two clusters reset each
//! other's runs) are refused with the `Degraded` condition (reason
//! `InvalidSpec`) and an Event, before anything is applied. [`check`] is
//! pure; the rest reads the Secret and the other ChatClusters.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use parley_cluster::ids::check_cluster_id;

use super::meta::port_formula;
use crate::Result;
use crate::context::Context;
use crate::crd::{BackendRef, ChatCluster};

/// What is wrong with the spec, if anything (first problem found).
pub async fn problem(cc: &ChatCluster, ctx: &Context) -> Result<Option<String>> {
    if let Some(why) = check(cc) {
        return Ok(Some(why));
    }
    if let Some(why) = admin_token_problem(cc, ctx).await? {
        return Ok(Some(why));
    }
    cluster_id_taken(cc, ctx).await
}

/// The checks that need nothing but the spec.
pub fn check(cc: &ChatCluster) -> Option<String> {
    let id = cc.cluster_id();
    if let Err(e) = check_cluster_id(&id) {
        let hint = if cc.spec.cluster_id.is_none() {
            " (the default is <namespace>_<name>; set spec.clusterId)"
        } else {
            ""
        };
        return Some(format!("{e}{hint}"));
    }
    let replicas = cc.spec.replicas.max(0) as u32;
    let formula = port_formula(cc);
    if let Err(e) = formula.check(replicas) {
        return Some(format!("spec.ports: {e} (replicas {replicas})"));
    }
    let health = cc.spec.ports.health;
    if let Some(n) = formula.ordinal(health).filter(|&n| n < replicas) {
        return Some(format!(
            "spec.ports.health {health} is also the chat port of node {n}"
        ));
    }
    backend_ref_problem("redis", &cc.spec.redis)
        .or_else(|| backend_ref_problem("rabbitmq", &cc.spec.rabbitmq))
}

fn backend_ref_problem(name: &str, b: &BackendRef) -> Option<String> {
    match (&b.url, &b.url_secret_ref) {
        (Some(_), Some(_)) => Some(format!("{name}: set url or urlSecretRef, not both")),
        (None, None) => Some(format!("{name}: set url or urlSecretRef")),
        _ => None,
    }
}

/// The admin token the nodes get from `adminTokenSecretRef` must be usable
/// as it is: the pods read the key verbatim, so a trailing newline (from
/// `echo token | kubectl create secret ... --from-file`) would make every
/// client's `Bearer token` fail.
async fn admin_token_problem(cc: &ChatCluster, ctx: &Context) -> Result<Option<String>> {
    let Some(r) = &cc.spec.admin_token_secret_ref else {
        return Ok(None);
    };
    let ns = cc.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = secrets.get_opt(&r.name).await? else {
        return Ok(Some(format!("admin token Secret {} not found", r.name)));
    };
    let Some(value) = secret.data.as_ref().and_then(|d| d.get(&r.key)) else {
        return Ok(Some(format!(
            "admin token Secret {} has no key {}",
            r.name, r.key
        )));
    };
    Ok(token_problem(&value.0).map(|why| {
        format!(
            "admin token in Secret {} key {} {why}; write it without (kubectl create secret generic {} --from-literal={}=...)",
            r.name, r.key, r.name, r.key
        )
    }))
}

/// Why a token value cannot be used verbatim, if it cannot.
fn token_problem(value: &[u8]) -> Option<&'static str> {
    let Ok(s) = std::str::from_utf8(value) else {
        return Some("is not UTF-8");
    };
    if s.trim().is_empty() {
        Some("is empty")
    } else if s.trim() != s {
        Some("has leading or trailing whitespace (a newline?)")
    } else {
        None
    }
}

/// Two ChatClusters with one cluster id would share every Redis key and
/// queue and collect each other's nodes: the one created first keeps the
/// id (ties broken by namespace/name), the other is refused.
async fn cluster_id_taken(cc: &ChatCluster, ctx: &Context) -> Result<Option<String>> {
    let id = cc.cluster_id();
    let all: Api<ChatCluster> = Api::all(ctx.client.clone());
    let others = match all.list(&ListParams::default()).await {
        Ok(list) => list.items,
        // Watching one namespace, the operator may not list the others:
        // check where it can.
        Err(kube::Error::Api(e)) if e.code == 403 => {
            let ns = cc.namespace().unwrap_or_default();
            Api::<ChatCluster>::namespaced(ctx.client.clone(), &ns)
                .list(&ListParams::default())
                .await?
                .items
        }
        Err(e) => return Err(e.into()),
    };
    let me = rank(cc);
    Ok(others
        .iter()
        .filter(|o| o.uid() != cc.uid() && o.cluster_id() == id)
        .filter(|o| rank(o) < me)
        .min_by_key(|o| rank(o))
        .map(|o| {
            format!(
                "cluster id {id} is already used by ChatCluster {}/{}; set a different spec.clusterId",
                o.namespace().unwrap_or_default(),
                o.name_any()
            )
        }))
}

/// Which of two ChatClusters came first.
fn rank(cc: &ChatCluster) -> (Option<i64>, String, String) {
    (
        cc.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        cc.namespace().unwrap_or_default(),
        cc.name_any(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ChatClusterSpec, Ports};

    fn cc(ns: &str, name: &str) -> ChatCluster {
        let mut cc = ChatCluster::new(
            name,
            ChatClusterSpec {
                redis: BackendRef {
                    url: Some("redis://r".into()),
                    url_secret_ref: None,
                },
                rabbitmq: BackendRef {
                    url: Some("amqp://a".into()),
                    url_secret_ref: None,
                },
                ..ChatClusterSpec::default()
            },
        );
        cc.metadata.namespace = Some(ns.into());
        cc
    }

    #[test]
    fn a_valid_spec_passes() {
        assert_eq!(check(&cc("ns", "chat")), None);
    }

    #[test]
    fn a_default_cluster_id_must_fit_the_rule() {
        let long = check(&cc(
            "a-long-namespace-name-for-a-team",
            "and-a-rather-longer-chat-cluster-name",
        ))
        .unwrap();
        assert!(
            long.contains("63") && long.contains("spec.clusterId"),
            "{long}"
        );
        let dotted = check(&cc("ns", "chat.v2")).unwrap();
        assert!(dotted.contains("chat.v2"), "{dotted}");
        let mut fixed = cc("ns", "chat.v2");
        fixed.spec.cluster_id = Some("chat-v2".into());
        assert_eq!(check(&fixed), None);
    }

    #[test]
    fn every_node_needs_a_port_below_65536() {
        let mut c = cc("ns", "chat");
        c.spec.replicas = 7;
        c.spec.ports = Ports {
            base: 65000,
            step: 100,
            health: 9090,
        };
        assert!(check(&c).unwrap().contains("65535"));
        c.spec.replicas = 6;
        assert_eq!(check(&c), None);
    }

    #[test]
    fn the_health_port_is_no_chat_port() {
        let mut c = cc("ns", "chat");
        c.spec.replicas = 3;
        c.spec.ports.health = 8770;
        assert!(check(&c).unwrap().contains("node 2"));
        c.spec.replicas = 2;
        assert_eq!(check(&c), None, "8770 is no node's port with 2 replicas");
    }

    #[test]
    fn tokens_are_used_verbatim_or_refused() {
        assert_eq!(token_problem(b"s3cret"), None);
        assert!(token_problem(b"s3cret\n").is_some());
        assert!(token_problem(b" s3cret").is_some());
        assert!(token_problem(b"\n").is_some());
        assert!(token_problem(&[0xff]).is_some());
    }
}
