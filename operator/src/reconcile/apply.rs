//! Applies the objects a ChatCluster owns, each built by a pure function
//! of its own file: server-side apply with one field manager, the admin
//! token Secret created once, per-pod Services of retired ordinals pruned.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::meta::{MANAGER, admin_secret_name, owned_meta, selector_string};
use super::{headless, pdb, services, statefulset};
use crate::crd::ChatCluster;
use crate::{Error, Result};

/// Server-side apply of one owned object.
async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Applies every owned object of `cc`; returns the StatefulSet as the API
/// server holds it (for its rollout status).
pub async fn owned_objects(cc: &ChatCluster, client: &kube::Client) -> Result<StatefulSet> {
    let ns = cc.namespace().ok_or(Error::NoNamespace)?;
    if cc.spec.admin_token_secret_ref.is_none() {
        ensure_admin_secret(cc, &Api::namespaced(client.clone(), &ns)).await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    apply(&services, &headless::build(cc)).await?;
    let sts = apply(
        &Api::<StatefulSet>::namespaced(client.clone(), &ns),
        &statefulset::build(cc),
    )
    .await?;
    let desired = cc.spec.replicas.max(0) as u32;
    for ordinal in 0..desired {
        if let Some(svc) = services::build(cc, ordinal) {
            apply(&services, &svc).await?;
        }
    }
    prune_services(cc, &services, desired).await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        &pdb::build(cc),
    )
    .await?;
    Ok(sts)
}

/// Creates the admin token Secret if it does not exist; never rotates it.
async fn ensure_admin_secret(cc: &ChatCluster, secrets: &Api<Secret>) -> Result<()> {
    let name = admin_secret_name(cc);
    if secrets.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let mut token = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut token);
    let secret = Secret {
        metadata: owned_meta(cc, name),
        data: Some(
            [(
                "token".to_owned(),
                ByteString(hex::encode(token).into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes per-pod Services of ordinals at or above `replicas`.
async fn prune_services(cc: &ChatCluster, services: &Api<Service>, replicas: u32) -> Result<()> {
    let lp = ListParams::default().labels(&format!("{},parley.dev/ordinal", selector_string(cc)));
    for svc in services.list(&lp).await? {
        let ordinal: Option<u32> = svc
            .labels()
            .get("parley.dev/ordinal")
            .and_then(|o| o.parse().ok());
        if ordinal.is_some_and(|o| o >= replicas) {
            services
                .delete(&svc.name_any(), &DeleteParams::default())
                .await?;
        }
    }
    Ok(())
}
