//! A pod's ServiceAccount credentials, as a kubelet projects them: a
//! token from the API server's TokenRequest API bound to the pod, the
//! cluster's CA (the `kube-root-ca.crt` ConfigMap the controller-manager
//! publishes in every namespace) and the namespace.
//!
//! A container reads them from `/var/run/secrets/kubernetes.io/
//! serviceaccount`; a process here cannot have that path to itself, so the
//! files go in a directory of the pod's own, with a kubeconfig naming them
//! (`KUBECONFIG` in the process's environment). kube-rs and client-go
//! both reload a kubeconfig's `tokenFile`, so the kubelet refreshes the
//! token in place, as the real one does, before it expires.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// How long a token is asked for; it is renewed at 80 %, as a kubelet does.
pub const TOKEN_SECONDS: i64 = 3600;

/// Where a pod's credentials are.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// Renew the token after this long.
    pub refresh_after: Duration,
}

/// What the pod's ServiceAccount is, or `None` when it mounts no token
/// (`automountServiceAccountToken: false` on the pod).
pub fn service_account(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec.automount_service_account_token == Some(false) {
        return None;
    }
    Some(
        spec.service_account_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
    )
}

/// Writes (or renews) the pod's token, CA, namespace and kubeconfig in
/// `dir`. `server` is the API server's URL.
pub async fn project(
    client: &Client,
    pod: &Pod,
    account: &str,
    dir: &Path,
    server: &str,
) -> Result<Credentials, String> {
    let ns = pod.namespace().unwrap_or_default();
    let token = token(client, pod, account).await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let ca = maps
        .get_opt("kube-root-ca.crt")
        .await
        .map_err(|e| format!("reading configmap \"kube-root-ca.crt\": {e}"))?
        .and_then(|m| m.data?.remove("ca.crt"))
        .ok_or("configmap \"kube-root-ca.crt\" has no ca.crt yet")?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        // Written whole, then renamed: a reader never sees half a token.
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok::<_, String>(path)
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let token_file = write("token", &token)?;
    let ca_file = write("ca.crt", &ca)?;
    write("namespace", &ns)?;
    let config = kubeconfig(server, &ca_file, &token_file, &ns);
    let kubeconfig = write("kubeconfig", &config.to_string())?;
    Ok(Credentials {
        dir: dir.to_owned(),
        kubeconfig,
        refresh_after: Duration::from_secs(TOKEN_SECONDS as u64 * 4 / 5),
    })
}

/// A token of `account` bound to the pod: it stops working when the pod
/// is deleted.
async fn token(client: &Client, pod: &Pod, account: &str) -> Result<String, String> {
    let accounts: Api<ServiceAccount> =
        Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting a token for serviceaccount {account:?}: {e}"))?;
    issued
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            format!("the token request for serviceaccount {account:?} returned no token")
        })
}

/// A kubeconfig (JSON, which is YAML) for the pod's ServiceAccount.
pub fn kubeconfig(server: &str, ca: &Path, token: &Path, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {
            "server": server,
            "certificate-authority": ca,
        }}],
        "users": [{"name": "serviceaccount", "user": {"tokenFile": token}}],
        "contexts": [{"name": "serviceaccount", "context": {
            "cluster": "cluster",
            "user": "serviceaccount",
            "namespace": namespace,
        }}],
        "current-context": "serviceaccount",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(account: Option<&str>, automount: Option<bool>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                service_account_name: account.map(str::to_owned),
                automount_service_account_token: automount,
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn the_pods_account_or_default_unless_automount_is_off() {
        assert_eq!(
            service_account(&pod(Some("op"), None)).as_deref(),
            Some("op")
        );
        assert_eq!(
            service_account(&pod(None, Some(true))).as_deref(),
            Some("default")
        );
        assert_eq!(service_account(&pod(Some("op"), Some(false))), None);
    }

    #[test]
    fn the_kubeconfig_names_the_token_file_and_ca() {
        let k = kubeconfig(
            "https://127.0.0.1:16443",
            Path::new("/p/ca.crt"),
            Path::new("/p/token"),
            "ns",
        );
        let parsed: kube::config::Kubeconfig = serde_json::from_value(k).unwrap();
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.token_file.as_deref(), Some("/p/token"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:16443"));
        assert_eq!(cluster.certificate_authority.as_deref(), Some("/p/ca.crt"));
        assert_eq!(parsed.current_context.as_deref(), Some("serviceaccount"));
    }
}
