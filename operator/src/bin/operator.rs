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
use parley_operator::shutdown::{RECONCILE_GRACE, RELEASE_GRACE, Shutdown};
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
    // First: until a handler is installed, SIGTERM to PID 1 is ignored.
    let shutdown = Shutdown::on_signal();
    let args = Args::parse();
    // One crypto provider for every TLS connection, whatever else the
    // build enabled.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(args, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            eprintln!("parley-operator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, shutdown: Shutdown) -> Result<(), Box<dyn std::error::Error>> {
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
    let namespace = args.namespace.as_deref();
    if !args.leader_election {
        reconcile_until(&ctx, namespace, &shutdown).await;
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
    let leading = tokio::select! {
        r = async { while !*leader.borrow_and_update() { leader.changed().await?; } Ok::<(), tokio::sync::watch::error::RecvError>(()) } => Some(r),
        _ = shutdown.wait() => None,
    };
    match leading {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(e.into()),
        // A standby stops at once; it holds no lease.
        None => {
            release_lease(leader, lease_task).await;
            return Ok(());
        }
    }
    tracing::info!("leading: reconciling");
    let lost = tokio::select! {
        _ = reconcile_until(&ctx, namespace, &shutdown) => false,
        _ = async { while *leader.borrow() { if leader.changed().await.is_err() { break } } } => true,
    };
    if lost {
        // Someone else leads now: stop at once rather than race them.
        return Err("lost the lease".into());
    }
    release_lease(leader, lease_task).await;
    Ok(())
}

/// Runs the controller until shutdown: reconciles in flight get
/// [`RECONCILE_GRACE`] to finish and are dropped after it (every step is
/// idempotent, the next leader starts over); then the kept backend
/// connections are closed.
async fn reconcile_until(ctx: &Arc<Context>, namespace: Option<&str>, shutdown: &Shutdown) {
    tokio::select! {
        _ = controller::run(ctx.clone(), namespace, shutdown.trigger()) => {}
        _ = async { shutdown.wait().await; tokio::time::sleep(RECONCILE_GRACE).await } => {
            tracing::warn!("reconciles still running {RECONCILE_GRACE:?} after the signal: stopped");
        }
    }
    if tokio::time::timeout(RELEASE_GRACE, ctx.close_all())
        .await
        .is_err()
    {
        tracing::warn!("backend connections not closed in time");
    }
}

/// Lets go of the lease (the lease task releases it once nobody listens),
/// waiting at most [`RELEASE_GRACE`], so the next leader need not wait for
/// it to expire.
async fn release_lease(
    leader: tokio::sync::watch::Receiver<bool>,
    lease_task: tokio::task::JoinHandle<
        kube_lease_manager::Result<kube_lease_manager::LeaseManager>,
    >,
) {
    drop(leader);
    match tokio::time::timeout(RELEASE_GRACE, lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "cannot release the lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
        Err(_) => tracing::warn!("lease not released in time; it expires on its own"),
    }
}
