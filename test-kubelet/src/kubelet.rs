//! The main loop: register the Node, watch every pod, bind unscheduled
//! pods to this node (the local control plane has no scheduler) and give
//! each pod bound here a [`worker`] of its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{node, worker};

/// Runs until `shutdown` fires or the watch ends. On shutdown the pods'
/// processes are killed (dropped with their workers); the pod objects stay.
pub async fn run(ctx: Arc<worker::Ctx>, shutdown: CancellationToken) -> kube::Result<()> {
    let node_name = ctx.settings.node_name.clone();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let since = node::register(&nodes, &node_name, &ctx.host_ip).await?;
    tracing::info!(node = %node_name, "node registered");
    tokio::spawn(node::heartbeat_loop(
        nodes,
        node_name.clone(),
        ctx.host_ip.clone(),
        since,
        shutdown.clone(),
    ));

    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    // The pods seen in the current (re)list.
    let mut listed = HashSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            event = events.try_next() => match event {
                Ok(Some(watcher::Event::InitApply(pod))) => {
                    listed.insert(pod.uid().unwrap_or_default());
                    on_pod(&ctx, pod, &mut workers, &mut tasks).await;
                }
                Ok(Some(watcher::Event::Apply(pod))) => {
                    on_pod(&ctx, pod, &mut workers, &mut tasks).await;
                }
                Ok(Some(watcher::Event::Delete(pod))) => {
                    if let Some(tx) = workers.remove(&pod.uid().unwrap_or_default()) {
                        tx.send_replace(None);
                    }
                }
                Ok(Some(watcher::Event::Init)) => listed.clear(),
                // A relist: pods deleted while the watch was down are gone.
                Ok(Some(watcher::Event::InitDone)) => {
                    workers.retain(|uid, tx| listed.contains(uid) || {
                        tx.send_replace(None);
                        false
                    });
                }
                Ok(None) => break,
                Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
            },
        }
    }
    // Abort the workers before their senders go, so none mistakes shutdown
    // for deletion and finalizes its pod.
    tasks.shutdown().await;
    drop(workers);
    Ok(())
}

async fn on_pod(
    ctx: &Arc<worker::Ctx>,
    pod: Pod,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    tasks: &mut JoinSet<()>,
) {
    let ours = ctx.settings.node_name.as_str();
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        None | Some("") if pod.metadata.deletion_timestamp.is_none() => bind(ctx, &pod, ours).await,
        Some(n) if n == ours => {
            let uid = pod.uid().unwrap_or_default();
            if let Some(tx) = workers.get(&uid) {
                tx.send_replace(Some(pod));
            } else {
                let (tx, rx) = watch::channel(Some(pod));
                workers.insert(uid, tx);
                tasks.spawn(worker::run(ctx.clone(), rx));
            }
        }
        _ => {}
    }
}

/// Binds an unscheduled pod to this node, as a scheduler would.
async fn bind(ctx: &worker::Ctx, pod: &Pod, node: &str) {
    let (name, ns) = (pod.name_any(), pod.namespace().unwrap_or_default());
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(node.to_owned()),
            ..ObjectReference::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => tracing::info!(pod = %name, namespace = %ns, node, "pod bound"),
        // Bound meanwhile (by us, on an earlier event, or by another kubelet).
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, namespace = %ns, error = %e, "binding failed"),
    }
}
