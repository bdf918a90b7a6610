//! What the nodes get of `spec.auth` and `spec.push`: environment
//! variables (secrets by reference, never copied) and the JWT key files
//! and the webhook's CA, mounted from their Secret or ConfigMap. A whole-directory mount (not a
//! `subPath`) so an updated JWKS reaches the running pods, which re-read it.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use parley_cluster::env as var;

use super::env::{env, env_backend, env_secret};
use crate::crd::{ChatCluster, KeyFileRef};

/// Where the JWT public key is mounted, and its file name there.
pub const PUBLIC_KEY_DIR: &str = "/etc/parley/jwt-public-key";
pub const PUBLIC_KEY_FILE: &str = "public.pem";
/// Where the JWKS is mounted, and its file name there.
pub const JWKS_DIR: &str = "/etc/parley/jwt-jwks";
pub const JWKS_FILE: &str = "jwks.json";
/// Where the push webhook's CA is mounted, and its file name there.
pub const PUSH_CA_DIR: &str = "/etc/parley/push-ca";
pub const PUSH_CA_FILE: &str = "ca.pem";

/// The environment of `spec.auth.jwt` and `spec.push.webhook`.
pub fn env_vars(cc: &ChatCluster) -> Vec<EnvVar> {
    let mut e = Vec::new();
    if let Some(jwt) = cc.spec.auth.as_ref().and_then(|a| a.jwt.as_ref()) {
        if let Some(r) = &jwt.secret_ref {
            e.push(env_secret(var::JWT_SECRET, r));
        }
        if jwt.public_key.is_some() {
            e.push(env(
                var::JWT_PUBLIC_KEY,
                format!("{PUBLIC_KEY_DIR}/{PUBLIC_KEY_FILE}"),
            ));
        }
        if jwt.jwks.is_some() {
            e.push(env(var::JWT_JWKS, format!("{JWKS_DIR}/{JWKS_FILE}")));
        }
        if let Some(iss) = &jwt.issuer {
            e.push(env(var::JWT_ISSUER, iss));
        }
        if let Some(aud) = &jwt.audience {
            e.push(env(var::JWT_AUDIENCE, aud));
        }
    }
    if let Some(hook) = cc.spec.push.as_ref().and_then(|p| p.webhook.as_ref()) {
        e.extend(env_backend(var::PUSH_WEBHOOK_URL, &hook.endpoint));
        e.push(env_secret(var::PUSH_WEBHOOK_SECRET, &hook.secret_ref));
        if let Some(s) = hook.retry_seconds {
            e.push(env(var::PUSH_RETRY_S, s));
        }
        if hook.ca.is_some() {
            e.push(env(
                var::PUSH_WEBHOOK_CA,
                format!("{PUSH_CA_DIR}/{PUSH_CA_FILE}"),
            ));
        }
    }
    e
}

/// The volumes and mounts of the JWT key files and the webhook's CA.
pub fn key_files(cc: &ChatCluster) -> (Vec<Volume>, Vec<VolumeMount>) {
    let jwt = cc.spec.auth.as_ref().and_then(|a| a.jwt.as_ref());
    let hook = cc.spec.push.as_ref().and_then(|p| p.webhook.as_ref());
    [
        (
            "jwt-public-key",
            jwt.and_then(|j| j.public_key.as_ref()),
            PUBLIC_KEY_DIR,
            PUBLIC_KEY_FILE,
        ),
        (
            "jwt-jwks",
            jwt.and_then(|j| j.jwks.as_ref()),
            JWKS_DIR,
            JWKS_FILE,
        ),
        (
            "push-ca",
            hook.and_then(|h| h.ca.as_ref()),
            PUSH_CA_DIR,
            PUSH_CA_FILE,
        ),
    ]
    .into_iter()
    .filter_map(|(name, r, dir, file)| Some((volume(name, r?, file), mount(name, dir))))
    .unzip()
}

fn volume(name: &str, r: &KeyFileRef, file: &str) -> Volume {
    let item = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_owned(),
            path: file.to_owned(),
            ..KeyToPath::default()
        }])
    };
    Volume {
        name: name.to_owned(),
        secret: r.secret_ref.as_ref().map(|s| SecretVolumeSource {
            secret_name: Some(s.name.clone()),
            items: item(&s.key),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        config_map: r.config_map_ref.as_ref().map(|c| ConfigMapVolumeSource {
            name: c.name.clone(),
            items: item(&c.key),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, dir: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: dir.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        Auth, BackendRef, ChatClusterSpec, ConfigMapKeyRef, Jwt, Push, SecretKeyRef, Webhook,
    };
    use crate::reconcile::statefulset::build;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::PodSpec;

    fn secret(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }
    }

    fn cc(auth: Option<Auth>, push: Option<Push>) -> ChatCluster {
        let mut cc = ChatCluster::new(
            "chat",
            ChatClusterSpec {
                redis: BackendRef {
                    url: Some("redis://r:6379/0".into()),
                    url_secret_ref: None,
                },
                rabbitmq: BackendRef {
                    url: Some("amqp://mq".into()),
                    url_secret_ref: None,
                },
                auth,
                push,
                ..ChatClusterSpec::default()
            },
        );
        cc.metadata.namespace = Some("ns".into());
        cc
    }

    fn pod(sts: &StatefulSet) -> &PodSpec {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn volume_named<'a>(sts: &'a StatefulSet, name: &str) -> Option<&'a Volume> {
        pod(sts).volumes.iter().flatten().find(|v| v.name == name)
    }

    fn env_of<'a>(sts: &'a StatefulSet, name: &str) -> Option<&'a EnvVar> {
        pod(sts).containers[0]
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
    }

    fn secret_of(e: &EnvVar) -> (&str, &str) {
        let r = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from a Secret");
        (r.name.as_str(), r.key.as_str())
    }

    #[test]
    fn without_auth_or_push_nothing_is_added() {
        let sts = build(&cc(None, None));
        for name in [var::JWT_SECRET, var::JWT_JWKS, var::PUSH_WEBHOOK_URL] {
            assert!(env_of(&sts, name).is_none(), "{name}");
        }
        assert!(pod(&sts).volumes.as_ref().is_none_or(Vec::is_empty));
    }

    #[test]
    fn jwt_secret_comes_from_its_secret_and_key_files_are_mounted() {
        let jwt = Jwt {
            secret_ref: Some(secret("app-jwt", "hs256")),
            public_key: Some(KeyFileRef {
                secret_ref: Some(secret("app-keys", "rsa.pub")),
                config_map_ref: None,
            }),
            jwks: Some(KeyFileRef {
                secret_ref: None,
                config_map_ref: Some(ConfigMapKeyRef {
                    name: "app-jwks".into(),
                    key: "jwks.json".into(),
                }),
            }),
            issuer: Some("https://app.example".into()),
            audience: Some("chat".into()),
        };
        let sts = build(&cc(Some(Auth { jwt: Some(jwt) }), None));
        let e = |n| env_of(&sts, n).unwrap_or_else(|| panic!("{n} not set"));
        assert_eq!(secret_of(e(var::JWT_SECRET)), ("app-jwt", "hs256"));
        assert!(e(var::JWT_SECRET).value.is_none(), "never copied inline");
        assert_eq!(
            e(var::JWT_PUBLIC_KEY).value.as_deref(),
            Some("/etc/parley/jwt-public-key/public.pem")
        );
        assert_eq!(
            e(var::JWT_JWKS).value.as_deref(),
            Some("/etc/parley/jwt-jwks/jwks.json")
        );
        assert_eq!(
            e(var::JWT_ISSUER).value.as_deref(),
            Some("https://app.example")
        );
        assert_eq!(e(var::JWT_AUDIENCE).value.as_deref(), Some("chat"));

        let volumes = pod(&sts).volumes.as_ref().unwrap();
        let pk = volumes.iter().find(|v| v.name == "jwt-public-key").unwrap();
        let s = pk.secret.as_ref().unwrap();
        assert_eq!(s.secret_name.as_deref(), Some("app-keys"));
        let item = &s.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("rsa.pub", "public.pem")
        );
        let jwks = volumes.iter().find(|v| v.name == "jwt-jwks").unwrap();
        assert!(jwks.secret.is_none());
        let c = jwks.config_map.as_ref().unwrap();
        assert_eq!(c.name, "app-jwks");
        assert_eq!(c.items.as_ref().unwrap()[0].path, "jwks.json");
        let mounts = pod(&sts).containers[0].volume_mounts.as_ref().unwrap();
        for (name, dir) in [("jwt-public-key", PUBLIC_KEY_DIR), ("jwt-jwks", JWKS_DIR)] {
            let m = mounts.iter().find(|m| m.name == name).unwrap();
            assert_eq!(m.mount_path, dir);
            assert_eq!(m.read_only, Some(true));
            // A subPath mount would never see an updated JWKS.
            assert!(m.sub_path.is_none());
        }
    }

    #[test]
    fn webhook_url_and_secret_reach_the_nodes() {
        let hook = |endpoint| Push {
            webhook: Some(Webhook {
                endpoint,
                secret_ref: secret("push", "hmac"),
                retry_seconds: Some(60),
                ca: None,
            }),
        };
        let sts = build(&cc(
            None,
            Some(hook(BackendRef {
                url: None,
                url_secret_ref: Some(secret("push", "url")),
            })),
        ));
        assert_eq!(
            secret_of(env_of(&sts, var::PUSH_WEBHOOK_URL).unwrap()),
            ("push", "url")
        );
        assert_eq!(
            secret_of(env_of(&sts, var::PUSH_WEBHOOK_SECRET).unwrap()),
            ("push", "hmac")
        );
        assert_eq!(
            env_of(&sts, var::PUSH_RETRY_S).unwrap().value.as_deref(),
            Some("60")
        );
        let sts = build(&cc(
            None,
            Some(hook(BackendRef {
                url: Some("http://pn.app:8080/hook".into()),
                url_secret_ref: None,
            })),
        ));
        assert_eq!(
            env_of(&sts, var::PUSH_WEBHOOK_URL)
                .unwrap()
                .value
                .as_deref(),
            Some("http://pn.app:8080/hook")
        );
        assert!(env_of(&sts, var::PUSH_WEBHOOK_CA).is_none());
        assert!(volume_named(&sts, "push-ca").is_none());
    }

    #[test]
    fn a_webhook_ca_is_mounted_and_named_to_the_nodes() {
        let mut push = Push {
            webhook: Some(Webhook {
                endpoint: BackendRef {
                    url: Some("https://pn.example/hook".into()),
                    url_secret_ref: None,
                },
                secret_ref: secret("push", "hmac"),
                retry_seconds: None,
                ca: Some(KeyFileRef {
                    secret_ref: None,
                    config_map_ref: Some(ConfigMapKeyRef {
                        name: "pn-ca".into(),
                        key: "bundle.pem".into(),
                    }),
                }),
            }),
        };
        let sts = build(&cc(None, Some(push.clone())));
        assert_eq!(
            env_of(&sts, var::PUSH_WEBHOOK_CA).unwrap().value.as_deref(),
            Some("/etc/parley/push-ca/ca.pem")
        );
        let volume = volume_named(&sts, "push-ca").expect("the CA volume");
        let cm = volume.config_map.as_ref().expect("from the ConfigMap");
        assert_eq!(cm.name, "pn-ca");
        let item = &cm.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("bundle.pem", "ca.pem")
        );
        let mounted = pod(&sts).containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| {
                m.name == "push-ca" && m.mount_path == PUSH_CA_DIR && m.read_only == Some(true)
            });
        assert!(mounted);
        // No CA, no CA volume.
        push.webhook.as_mut().unwrap().ca = None;
        let sts = build(&cc(None, Some(push)));
        assert!(volume_named(&sts, "push-ca").is_none());
    }
}
