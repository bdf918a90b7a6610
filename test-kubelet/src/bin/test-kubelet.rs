//! `test-kubelet`: a kubelet for the local control plane that runs the
//! pods of known images as local processes. See the crate docs for its
//! layout.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Parser;
use parley_test_kubelet::{Program, Settings, addr, kubelet, worker};
use tokio_util::sync::CancellationToken;

/// Registers a Node and runs the pods bound to it as processes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The Node's name.
    #[arg(
        long,
        env = "TEST_KUBELET_NODE_NAME",
        default_value = "parley-test-node"
    )]
    node_name: String,
    /// `IMAGE_PREFIX=PROGRAM`: pods whose container image starts with the
    /// prefix run the program (the longest prefix wins). Repeat for each
    /// image, e.g. `--run parley/chat-node=target/debug/chat-node --run
    /// parley/operator=target/debug/parley-operator`. Any other pod fails.
    #[arg(long = "run", required_unless_present = "podman")]
    programs: Vec<Program>,
    /// Run each pod as a container of its own image with this podman
    /// (images from its local storage; nothing is pulled), instead of as a
    /// process of a `--run` program.
    #[arg(long)]
    podman: Option<PathBuf>,
    /// podman's `--runtime` (an OCI runtime), e.g. scripts/oci-runtime.sh.
    #[arg(long, requires = "podman")]
    oci_runtime: Option<PathBuf>,
    /// One log file per pod, `<namespace>_<name>_<uid>.log`.
    #[arg(long, default_value = "/tmp/parley-test-kubelet/logs")]
    log_dir: PathBuf,
    /// Each pod's ServiceAccount token, CA and kubeconfig, a directory per pod.
    #[arg(long, default_value = "/tmp/parley-test-kubelet/pods")]
    state_dir: PathBuf,
    /// Given to pods as KUBERNETES_SERVICE_HOST.
    #[arg(long, default_value = "127.0.0.1")]
    apiserver_host: String,
    /// Given to pods as KUBERNETES_SERVICE_PORT.
    #[arg(long, default_value_t = 16443)]
    apiserver_port: u16,
    /// Pods get addresses 127.BLOCK.x.y; give each kubelet on a host its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    address_block: u8,
    /// The Node's address and every pod's hostIP.
    #[arg(long, default_value = "127.0.0.1")]
    host_ip: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    // The binary names its TLS crypto provider, as the operator does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = Args::parse();
    let client = kube::Client::try_default().await?;
    let ctx = Arc::new(worker::Ctx {
        client,
        host_ip: a.host_ip,
        addrs: Mutex::new(addr::Pool::new(a.address_block).ok_or("--address-block must not be 0")?),
        settings: Settings {
            node_name: a.node_name,
            programs: a.programs,
            podman: a
                .podman
                .map(|podman| parley_test_kubelet::container::Podman {
                    podman,
                    oci_runtime: a.oci_runtime,
                }),
            log_dir: a.log_dir,
            state_dir: a.state_dir,
            apiserver_host: a.apiserver_host,
            apiserver_port: a.apiserver_port,
        },
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    kubelet::run(ctx, shutdown).await?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
}
