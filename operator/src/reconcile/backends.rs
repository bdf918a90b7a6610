//! How the operator reaches a cluster's Redis and RabbitMQ: URLs inline or
//! from Secrets, and the connections kept in the [`Context`] between
//! reconciles.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use crate::context::Context;
use crate::crd::{BackendRef, ChatCluster};
use crate::gc::Backends;
use crate::{Error, Result};

/// Resolves a backend URL (inline or from its Secret).
async fn backend_url(b: &BackendRef, secrets: &Api<Secret>) -> Result<String> {
    if let Some(url) = &b.url {
        return Ok(url.clone());
    }
    let r = b.url_secret_ref.as_ref().ok_or_else(|| Error::SecretKey {
        secret: "(none)".into(),
        key: "(none)".into(),
    })?;
    let secret = secrets.get(&r.name).await?;
    let missing = || Error::SecretKey {
        secret: r.name.clone(),
        key: r.key.clone(),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(missing)?;
    String::from_utf8(value.0.clone()).map_err(|_| missing())
}

/// The cluster's backends, as the operator reaches them (kept in the
/// context between reconciles).
pub async fn backends(cc: &ChatCluster, ctx: &Context) -> Result<Arc<Backends>> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let redis = backend_url(&cc.spec.redis, &secrets).await?;
    let amqp = backend_url(&cc.spec.rabbitmq, &secrets).await?;
    Ok(ctx.backends_for(cc, &redis, &amqp)?)
}
