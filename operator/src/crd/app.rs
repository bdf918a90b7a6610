//! The parts of the spec the application's own backend shares with the
//! cluster: the keys of the JWT connect tokens it mints (`spec.auth`) and
//! the webhook it hears offline messages on (`spec.push`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BackendRef, SecretKeyRef};

/// How users log in besides tokens from the nodes' `/v1/tokens`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// JWT connect tokens signed by the application's backend (PROTOCOL.md
    /// "JWT connect tokens"): an HS256 secret, an RS256/ES256 public key,
    /// a JWKS, or several of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
}

/// The keys and required claims of JWT connect tokens.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.secretRef) || has(self.publicKey) || has(self.jwks)", "message": "set at least one of secretRef, publicKey and jwks"}]))]
pub struct Jwt {
    /// Secret key holding the HS256 shared secret (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// PEM public key (RSA for RS256, P-256 for ES256), mounted into the
    /// pods as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<KeyFileRef>,
    /// JWKS document (keys chosen by `kid`), mounted into the pods as a
    /// file; the nodes re-read it when the Secret or ConfigMap changes, so
    /// keys rotate without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<KeyFileRef>,
    /// When set, tokens must carry this `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// A key of a Secret or of a ConfigMap (set exactly one), mounted as a file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.secretRef) != has(self.configMapRef)", "message": "set exactly one of secretRef and configMapRef"}]))]
pub struct KeyFileRef {
    /// A key of a Secret in the ChatCluster's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// A key of a ConfigMap in the ChatCluster's namespace (public keys
    /// are not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// A key of a ConfigMap in the ChatCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where the nodes hand messages for offline users.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Push {
    /// The offline push webhook (DESIGN.md "Offline push"): a signed POST
    /// per message stored for a user with no live session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

/// The offline push webhook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The receiver: `url` or `urlSecretRef` (set exactly one), an
    /// `http://` or `https://` URL with a host.
    #[serde(flatten)]
    pub endpoint: BackendRef,
    /// Secret key holding the HMAC-SHA256 key of `X-Parley-Signature`.
    pub secret_ref: SecretKeyRef,
    /// PEM certificate authorities an `https` receiver is checked against
    /// (a private CA), mounted into the pods as a file. Unset: the Mozilla
    /// root certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<KeyFileRef>,
    /// Seconds a push is retried with backoff before it counts as failed
    /// (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub retry_seconds: Option<u32>,
}
