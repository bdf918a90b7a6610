//! Shutdown: SIGTERM (what the kubelet sends) or Ctrl-C, caught from the
//! start of the process, so the operator stops whatever it is doing (even
//! waiting for the lease) and exits within a few seconds. The binary
//! sequences the stop; this module only tells everyone it has begun.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{oneshot, watch};

/// How long running reconciles get to finish after the signal before they
/// are dropped.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(3);
/// How long releasing the lease and closing connections may take.
pub const RELEASE_GRACE: Duration = Duration::from_secs(3);

/// Whether shutdown has begun; cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Starts listening for SIGTERM and Ctrl-C. Call first thing: until a
    /// handler is installed, a process running as PID 1 (in a container)
    /// ignores SIGTERM.
    pub fn on_signal() -> Shutdown {
        let (tx, shutdown) = Shutdown::manual();
        // Installed here, not in the task, so no signal is missed between
        // this call and the task's first poll.
        let term = terminate();
        tokio::spawn(async move {
            signal(term).await;
            tracing::info!("shutdown signal received");
            let _ = tx.send(true);
        });
        shutdown
    }

    /// A shutdown triggered by sending `true` (for tests and embedders).
    pub fn manual() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx })
    }

    /// Resolves once shutdown has begun (or nobody can trigger it any more).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// The same, as the `Send + Sync` future kube's controller takes for a
    /// graceful shutdown.
    pub fn trigger(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let (tx, rx) = oneshot::channel::<()>();
        let this = self.clone();
        tokio::spawn(async move {
            this.wait().await;
            let _ = tx.send(());
        });
        rx.map(|_| ())
    }
}

#[cfg(unix)]
type Terminate = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Terminate = Option<()>;

/// The SIGTERM handler (installed at once), if it can be installed.
fn terminate() -> Terminate {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(term) => Some(term),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// SIGTERM or Ctrl-C, whichever comes first.
async fn signal(term: Terminate) {
    #[cfg(unix)]
    if let Some(mut term) = term {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    #[cfg(not(unix))]
    let _ = term;
    let _ = tokio::signal::ctrl_c().await;
}
