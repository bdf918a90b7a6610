//! A container's environment, resolved as a kubelet would.
//!
//! Resolution is split so the interesting part is pure: [`references`]
//! names the Secrets and ConfigMaps a container reads, the caller fetches
//! them, and [`resolve`] builds the environment from the pod and what was
//! fetched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};

/// The chat-node's listen address variable: a pod's `0.0.0.0` means "all of
/// my own interfaces", which here is the pod's loopback address.
const BIND: &str = "CHAT_BIND";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("secret {0:?} not found")]
    SecretMissing(String),
    #[error("key {key:?} not found in secret {name:?}")]
    SecretKeyMissing { name: String, key: String },
    #[error("configmap {0:?} not found")]
    ConfigMapMissing(String),
    #[error("key {key:?} not found in configmap {name:?}")]
    ConfigMapKeyMissing { name: String, key: String },
    #[error("fieldRef {0:?} is not supported by the test kubelet")]
    UnsupportedField(String),
    #[error("env var {0:?}: resourceFieldRef is not supported by the test kubelet")]
    UnsupportedResourceField(String),
}

/// The Secrets and ConfigMaps a container's `env` reads, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    pub secrets: BTreeSet<String>,
    pub config_maps: BTreeSet<String>,
}

pub fn references(c: &Container) -> References {
    let mut refs = References::default();
    for source in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
        if let Some(s) = &source.secret_key_ref {
            refs.secrets.insert(s.name.clone());
        }
        if let Some(m) = &source.config_map_key_ref {
            refs.config_maps.insert(m.name.clone());
        }
    }
    refs
}

/// What [`references`] named, as fetched; a missing name is absent.
#[derive(Debug, Default)]
pub struct Fetched {
    pub secrets: BTreeMap<String, Secret>,
    pub config_maps: BTreeMap<String, ConfigMap>,
}

/// Everything the pod's process is given, in order; later entries win.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub pod_ip: Ipv4Addr,
    pub host_ip: &'a str,
    pub fetched: &'a Fetched,
    pub apiserver_host: &'a str,
    pub apiserver_port: u16,
    /// The pod's ServiceAccount kubeconfig, given as `KUBECONFIG`.
    pub kubeconfig: Option<&'a std::path::Path>,
}

pub fn resolve(i: &Inputs<'_>) -> Result<Vec<(String, String)>, EnvError> {
    let mut out = vec![
        (
            "KUBERNETES_SERVICE_HOST".to_owned(),
            i.apiserver_host.to_owned(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_owned(),
            i.apiserver_port.to_string(),
        ),
        (
            "HOSTNAME".to_owned(),
            i.pod.metadata.name.clone().unwrap_or_default(),
        ),
    ];
    let mut bind_set = false;
    for e in i.container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (_, Some(source)) => match from_source(i, &e.name, source)? {
                Some(v) => v,
                None => continue, // an optional reference that is absent
            },
            (Some(v), None) => v.clone(),
            (None, None) => String::new(),
        };
        let value = if e.name == BIND {
            bind_set = true;
            own_address(&value, i.pod_ip)
        } else {
            value
        };
        out.push((e.name.clone(), value));
    }
    if !bind_set {
        out.push((BIND.to_owned(), i.pod_ip.to_string()));
    }
    if let Some(k) = i.kubeconfig {
        out.push(("KUBECONFIG".to_owned(), k.display().to_string()));
    }
    Ok(out)
}

/// The container's `args` as a kubelet passes them: `$(VAR)` is the
/// value of VAR in `env` (left as written when VAR is not set), `$$` is
/// `$`; and a wildcard listen address (`0.0.0.0`) is the pod's own.
pub fn args(c: &Container, env: &[(String, String)], pod_ip: Ipv4Addr) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    c.args
        .iter()
        .flatten()
        .map(|a| expand(a, &lookup).replace("0.0.0.0", &pod_ip.to_string()))
        .collect()
}

/// Kubernetes' `$(VAR)` expansion.
fn expand<'a>(s: &str, lookup: &impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|t| t.split_once(')'))
            .filter(|(name, _)| !name.is_empty())
        {
            match lookup(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A wildcard listen address stands for the pod's own address.
fn own_address(value: &str, pod_ip: Ipv4Addr) -> String {
    match value {
        "0.0.0.0" | "::" | "[::]" => pod_ip.to_string(),
        other => other.to_owned(),
    }
}

fn from_source(i: &Inputs<'_>, var: &str, s: &EnvVarSource) -> Result<Option<String>, EnvError> {
    if let Some(sel) = &s.secret_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(secret) = i.fetched.secrets.get(&sel.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(EnvError::SecretMissing(sel.name.clone()))
            };
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&sel.key))
            .map(|b| b.0.clone());
        let text = bytes
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&sel.key))
                    .cloned()
            });
        return match text {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(EnvError::SecretKeyMissing {
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &s.config_map_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(cm) = i.fetched.config_maps.get(&sel.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(EnvError::ConfigMapMissing(sel.name.clone()))
            };
        };
        return match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(EnvError::ConfigMapKeyMissing {
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(f) = &s.field_ref {
        return field(i, &f.field_path).map(Some);
    }
    Err(EnvError::UnsupportedResourceField(var.to_owned()))
}

fn field(i: &Inputs<'_>, path: &str) -> Result<String, EnvError> {
    let meta = &i.pod.metadata;
    let spec = i.pod.spec.as_ref();
    let v = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => Some(i.pod_ip.to_string()),
        "status.hostIP" => Some(i.host_ip.to_owned()),
        other => {
            let label = other
                .strip_prefix("metadata.labels['")
                .and_then(|r| r.strip_suffix("']"));
            let annotation = other
                .strip_prefix("metadata.annotations['")
                .and_then(|r| r.strip_suffix("']"));
            match (label, annotation) {
                (Some(k), _) => Some(
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .cloned()
                        .unwrap_or_default(),
                ),
                (_, Some(k)) => Some(
                    meta.annotations
                        .as_ref()
                        .and_then(|a| a.get(k))
                        .cloned()
                        .unwrap_or_default(),
                ),
                _ => return Err(EnvError::UnsupportedField(other.to_owned())),
            }
        }
    };
    Ok(v.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{EnvVar, ObjectFieldSelector, SecretKeySelector};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            ..EnvVar::default()
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value_from: Some(source),
            ..EnvVar::default()
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("chat-0".to_owned()),
                namespace: Some("ns".to_owned()),
                uid: Some("u-1".to_owned()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn container(env: Vec<EnvVar>) -> Container {
        Container {
            name: "c".to_owned(),
            env: Some(env),
            ..Container::default()
        }
    }

    fn run(c: &Container, fetched: &Fetched) -> Result<BTreeMap<String, String>, EnvError> {
        let pod = pod();
        let i = Inputs {
            pod: &pod,
            container: c,
            pod_ip: Ipv4Addr::new(127, 1, 0, 7),
            host_ip: "127.0.0.1",
            fetched,
            apiserver_host: "127.0.0.1",
            apiserver_port: 16443,
            kubeconfig: None,
        };
        resolve(&i).map(|v| v.into_iter().collect())
    }

    fn field_ref(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }
    }

    fn secret_ref(name: &str, key: &str) -> EnvVarSource {
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.to_owned(),
                key: key.to_owned(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }
    }

    #[test]
    fn values_fields_and_the_api_server() {
        let c = container(vec![
            var("CHAT_PORT", "18950"),
            from("CHAT_NODE_NAME", field_ref("metadata.name")),
            from("CHAT_INSTANCE_ID", field_ref("metadata.uid")),
            from("IP", field_ref("status.podIP")),
        ]);
        let env = run(&c, &Fetched::default()).unwrap();
        assert_eq!(env["CHAT_PORT"], "18950");
        assert_eq!(env["CHAT_NODE_NAME"], "chat-0");
        assert_eq!(env["CHAT_INSTANCE_ID"], "u-1");
        assert_eq!(env["IP"], "127.1.0.7");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "127.0.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "16443");
        assert_eq!(
            env["CHAT_BIND"], "127.1.0.7",
            "an unset bind address is the pod's own"
        );
    }

    #[test]
    fn args_expand_variables_and_the_wildcard_address() {
        let mut c = container(vec![]);
        c.args = Some(vec![
            "--http=0.0.0.0:8080".to_owned(),
            "--namespace=$(POD_NAMESPACE)".to_owned(),
            "$(UNSET) $$(POD_NAMESPACE) $x".to_owned(),
        ]);
        let env = vec![("POD_NAMESPACE".to_owned(), "chat".to_owned())];
        assert_eq!(
            args(&c, &env, Ipv4Addr::new(127, 1, 0, 7)),
            vec![
                "--http=127.1.0.7:8080",
                "--namespace=chat",
                "$(UNSET) $(POD_NAMESPACE) $x"
            ]
        );
    }

    #[test]
    fn a_wildcard_bind_is_the_pods_own_address() {
        let env = run(
            &container(vec![var("CHAT_BIND", "0.0.0.0")]),
            &Fetched::default(),
        )
        .unwrap();
        assert_eq!(env["CHAT_BIND"], "127.1.0.7");
    }

    #[test]
    fn secrets_are_read_and_a_missing_one_is_an_error() {
        let c = container(vec![from("CHAT_ADMIN_TOKEN", secret_ref("admin", "token"))]);
        assert_eq!(references(&c).secrets, BTreeSet::from(["admin".to_owned()]));
        assert_eq!(
            run(&c, &Fetched::default()),
            Err(EnvError::SecretMissing("admin".to_owned()))
        );
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "token".to_owned(),
                ByteString(b"s3cret".to_vec()),
            )])),
            ..Secret::default()
        };
        let fetched = Fetched {
            secrets: BTreeMap::from([("admin".to_owned(), secret)]),
            ..Fetched::default()
        };
        assert_eq!(run(&c, &fetched).unwrap()["CHAT_ADMIN_TOKEN"], "s3cret");
    }
}
