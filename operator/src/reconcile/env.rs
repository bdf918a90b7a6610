//! Environment variables of the node container: literal values, Secret
//! keys, pod fields and backend URLs (the StatefulSet's and the
//! application settings' alike).

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};

use crate::crd::{BackendRef, SecretKeyRef};

pub(super) fn env(name: &str, value: impl ToString) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

pub(super) fn env_secret(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(super) fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A backend URL as an env var: inline, or from its Secret.
pub(super) fn env_backend(name: &str, b: &BackendRef) -> Option<EnvVar> {
    match (&b.url, &b.url_secret_ref) {
        (_, Some(r)) => Some(env_secret(name, r)),
        (Some(url), None) => Some(env(name, url)),
        (None, None) => None,
    }
}
