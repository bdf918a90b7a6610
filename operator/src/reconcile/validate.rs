//! Spec validation beyond what the CRD schema can say: problems that
//! would otherwise crash-loop the pods (or let two clusters reset each
//! other's runs) are refused with the `Degraded` condition (reason
//! `InvalidSpec`) and an Event, before anything is applied. [`check`] is
//! pure; the rest reads Secrets (the admin token, an archive URL) and the
//! other ChatClusters.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use parley_cluster::archive::Database;
use parley_cluster::ids::check_cluster_id;

use super::meta::port_formula;
use crate::Result;
use crate::context::Context;
use crate::crd::{BackendRef, ChatCluster, SecretKeyRef};

/// What is wrong with the spec, if anything (first problem found).
pub async fn problem(cc: &ChatCluster, ctx: &Context) -> Result<Option<String>> {
    if let Some(why) = check(cc) {
        return Ok(Some(why));
    }
    if let Some(why) = admin_token_problem(cc, ctx).await? {
        return Ok(Some(why));
    }
    if let Some(why) = archive_secret_problem(cc, ctx).await? {
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
        .or_else(|| {
            let a = cc.spec.archive.as_ref()?;
            backend_ref_problem("archive", &a.database)
                .or_else(|| a.database.url.as_deref().and_then(archive_url_problem))
        })
        .or_else(|| app_problem(cc))
}

/// What the nodes would refuse at start in `spec.auth` and `spec.push`.
fn app_problem(cc: &ChatCluster) -> Option<String> {
    if let Some(jwt) = cc.spec.auth.as_ref().and_then(|a| a.jwt.as_ref()) {
        if jwt.secret_ref.is_none() && jwt.public_key.is_none() && jwt.jwks.is_none() {
            return Some("auth.jwt: set at least one of secretRef, publicKey and jwks".into());
        }
        for (name, f) in [("publicKey", &jwt.public_key), ("jwks", &jwt.jwks)] {
            if let Some(f) = f
                && f.secret_ref.is_some() == f.config_map_ref.is_some()
            {
                return Some(format!(
                    "auth.jwt.{name}: set exactly one of secretRef and configMapRef"
                ));
            }
        }
    }
    let hook = cc.spec.push.as_ref().and_then(|p| p.webhook.as_ref())?;
    if let Some(ca) = &hook.ca
        && ca.secret_ref.is_some() == ca.config_map_ref.is_some()
    {
        return Some("push.webhook.ca: set exactly one of secretRef and configMapRef".into());
    }
    backend_ref_problem("push.webhook", &hook.endpoint).or_else(|| {
        let url = hook.endpoint.url.as_deref()?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Some("push.webhook: the URL must start with http:// or https://".into());
        }
        (hook.ca.is_some() && !url.starts_with("https://"))
            .then(|| "push.webhook.ca is for an https:// URL".to_owned())
    })
}

/// Why the nodes cannot use `url` as their archive, if they cannot. The
/// URL is not repeated (it may hold a password).
fn archive_url_problem(url: &str) -> Option<String> {
    match Database::of_url(url) {
        Some(Database::MySql | Database::Postgres) => None,
        // A file in one pod: each node would have its own, it is lost when
        // the pod is replaced, and the root filesystem is read-only.
        Some(Database::Sqlite) => Some(
            "archive: sqlite:// is a file inside one pod, neither shared by the nodes nor kept \
             when the pod is replaced; use mysql:// (MySQL or MariaDB) or postgres://"
                .to_owned(),
        ),
        None => Some(
            "archive: the URL must start with mysql:// (MySQL or MariaDB) or postgres://"
                .to_owned(),
        ),
    }
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
    let value = match secret_value(cc, ctx, "admin token", r).await? {
        Ok(v) => v,
        Err(why) => return Ok(Some(why)),
    };
    Ok(verbatim_problem(&value).map(|why| {
        format!(
            "admin token in Secret {} key {} {why}; write it without (kubectl create secret generic {} --from-literal={}=...)",
            r.name, r.key, r.name, r.key
        )
    }))
}

/// An archive URL kept in a Secret gets the same checks as one written in
/// the spec, and must be usable verbatim like the admin token.
async fn archive_secret_problem(cc: &ChatCluster, ctx: &Context) -> Result<Option<String>> {
    let Some(r) = cc
        .spec
        .archive
        .as_ref()
        .and_then(|a| a.database.url_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let value = match secret_value(cc, ctx, "archive", r).await? {
        Ok(v) => v,
        Err(why) => return Ok(Some(why)),
    };
    let at = format!("Secret {} key {}", r.name, r.key);
    if let Some(why) = verbatim_problem(&value) {
        return Ok(Some(format!("archive URL in {at} {why}")));
    }
    let url = String::from_utf8_lossy(&value);
    Ok(archive_url_problem(&url).map(|why| format!("{why} (in {at})")))
}

/// The value of Secret key `r`, or why there is none.
async fn secret_value(
    cc: &ChatCluster,
    ctx: &Context,
    what: &str,
    r: &SecretKeyRef,
) -> Result<std::result::Result<Vec<u8>, String>> {
    let ns = cc.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = secrets.get_opt(&r.name).await? else {
        return Ok(Err(format!("{what} Secret {} not found", r.name)));
    };
    match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
        Some(value) => Ok(Ok(value.0.clone())),
        None => Ok(Err(format!(
            "{what} Secret {} has no key {}",
            r.name, r.key
        ))),
    }
}

/// Why a Secret value (a token, a URL) cannot be used verbatim, if it cannot.
fn verbatim_problem(value: &[u8]) -> Option<&'static str> {
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
    use crate::crd::{Archive, ChatClusterSpec, Ports};

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
    fn jwt_without_a_key_and_webhooks_without_http_or_https_are_refused() {
        use crate::crd::{Auth, ConfigMapKeyRef, Jwt, KeyFileRef, Push, Webhook};
        let mut c = cc("ns", "chat");
        c.spec.auth = Some(Auth {
            jwt: Some(Jwt {
                issuer: Some("app".into()),
                ..Jwt::default()
            }),
        });
        assert!(check(&c).unwrap().contains("auth.jwt"));
        let both = KeyFileRef {
            secret_ref: Some(SecretKeyRef {
                name: "s".into(),
                key: "k".into(),
            }),
            config_map_ref: Some(ConfigMapKeyRef {
                name: "c".into(),
                key: "k".into(),
            }),
        };
        c.spec.auth.as_mut().unwrap().jwt.as_mut().unwrap().jwks = Some(both);
        assert!(check(&c).unwrap().contains("auth.jwt.jwks"));
        c.spec.auth.as_mut().unwrap().jwt.as_mut().unwrap().jwks = Some(KeyFileRef {
            secret_ref: None,
            config_map_ref: Some(ConfigMapKeyRef {
                name: "c".into(),
                key: "k".into(),
            }),
        });
        assert_eq!(check(&c), None);

        let hook = |url: &str| Push {
            webhook: Some(Webhook {
                endpoint: BackendRef {
                    url: Some(url.into()),
                    url_secret_ref: None,
                },
                secret_ref: SecretKeyRef {
                    name: "p".into(),
                    key: "hmac".into(),
                },
                retry_seconds: None,
                ca: None,
            }),
        };
        c.spec.push = Some(hook("ftp://pn.example/hook"));
        assert!(check(&c).unwrap().contains("http://"));
        c.spec.push = Some(hook("http://pn:8080/hook"));
        assert_eq!(check(&c), None);
        c.spec.push = Some(hook("https://pn.example/hook"));
        assert_eq!(check(&c), None);
        // A CA: one source, and only for https.
        let ca = KeyFileRef {
            secret_ref: None,
            config_map_ref: Some(ConfigMapKeyRef {
                name: "pn-ca".into(),
                key: "ca.pem".into(),
            }),
        };
        c.spec.push.as_mut().unwrap().webhook.as_mut().unwrap().ca = Some(ca.clone());
        assert_eq!(check(&c), None);
        c.spec.push = Some(hook("http://pn:8080/hook"));
        c.spec.push.as_mut().unwrap().webhook.as_mut().unwrap().ca = Some(ca);
        assert!(check(&c).unwrap().contains("https"));
        c.spec.push.as_mut().unwrap().webhook.as_mut().unwrap().ca = Some(KeyFileRef::default());
        assert!(check(&c).unwrap().contains("push.webhook.ca"));
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
        assert_eq!(verbatim_problem(b"s3cret"), None);
        assert!(verbatim_problem(b"s3cret\n").is_some());
        assert!(verbatim_problem(b" s3cret").is_some());
        assert!(verbatim_problem(b"\n").is_some());
        assert!(verbatim_problem(&[0xff]).is_some());
    }

    fn with_archive(url: Option<&str>, secret: bool) -> ChatCluster {
        let mut c = cc("ns", "chat");
        c.spec.archive = Some(Archive {
            database: BackendRef {
                url: url.map(Into::into),
                url_secret_ref: secret.then(|| SecretKeyRef {
                    name: "archive".into(),
                    key: "url".into(),
                }),
            },
            ..Archive::default()
        });
        c
    }

    #[test]
    fn mysql_and_postgres_archives_pass() {
        for url in ["mysql://u:p@db:3306/chat", "postgres://u:p@db/chat"] {
            assert_eq!(check(&with_archive(Some(url), false)), None, "{url}");
        }
        assert_eq!(check(&with_archive(None, true)), None);
    }

    #[test]
    fn an_archive_needs_exactly_one_of_url_and_secret() {
        assert!(
            check(&with_archive(None, false))
                .unwrap()
                .contains("archive")
        );
        let both = check(&with_archive(Some("mysql://db/chat"), true)).unwrap();
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn sqlite_and_unknown_archive_urls_are_refused_without_the_url() {
        let sqlite = check(&with_archive(Some("sqlite:///data/chat.db"), false)).unwrap();
        assert!(
            sqlite.contains("sqlite://") && sqlite.contains("mysql://"),
            "{sqlite}"
        );
        let other = check(&with_archive(Some("mongodb://u:s3cret@db/chat"), false)).unwrap();
        assert!(other.contains("postgres://"), "{other}");
        assert!(
            !other.contains("s3cret"),
            "the URL's password was repeated: {other}"
        );
        assert!(archive_url_problem("sqlite://chat.db").is_some());
        assert_eq!(archive_url_problem("mysql://db/chat"), None);
    }
}
