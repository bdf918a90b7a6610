//! The parley operator binary: flags, logging, leader election, then the
//! controller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use kube::CustomResourceExt;
use kube_lease_manager::LeaseManagerBuilder;
use parley_operator::context::Context;
use parley_operator::controller;
use parley_operator::crd::ChatCluster;
use parley_operator::metrics::Metrics;
use tracing_subscriber::EnvFilter;

/// Reconciles ChatCluster resources into chat-node StatefulSets.
#[derive(Debug, Parser)]
#[command(name = "parley-operator", version)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "OPERATOR_HTTP", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Take part in leader election (run two replicas safely).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a deleted ChatCluster waits for unreachable backends before letting go.
    #[arg(long, env = "CLEANUP_DEADLINE_S", default_value_t = 600)]
    cleanup_deadline_s: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("parley-operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await?;
    // Refuse to start without the CRD, with the fix in the message.
    let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        kube::Api::all(client.clone());
    if crds.get_opt(ChatCluster::crd_name()).await?.is_none() {
        return Err("the ChatCluster CRD is not installed; install it with: kubectl apply -f crds/chatcluster.yaml (or the Helm chart)".into());
    }
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(parley_operator::http::serve(
        args.http,
        metrics.clone(),
        ready.clone(),
    ));
    ready.store(true, Ordering::Relaxed);

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        Duration::from_secs(args.cleanup_deadline_s),
    ));
    if !args.leader_election {
        controller::run(ctx, args.namespace.as_deref()).await;
        return Ok(());
    }
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("parley-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, "parley-operator")
        .with_namespace(&args.lease_namespace)
        .with_identity(&identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    tracing::info!(identity = %identity, "waiting for the lease");
    while !*leader.borrow_and_update() {
        leader.changed().await?;
    }
    tracing::info!("leading: reconciling");
    tokio::select! {
        _ = controller::run(ctx, args.namespace.as_deref()) => {}
        _ = async { while *leader.borrow() { if leader.changed().await.is_err() { break } } } => {
            // Someone else leads now: stop at once rather than race them.
            return Err("lost the lease".into());
        }
    }
    drop(leader);
    let _ = lease_task.await;
    Ok(())
}
