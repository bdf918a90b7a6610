//! The operator's error type; every variant has a metric label.

use kube::runtime::finalizer;

/// Failures of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Backend(#[from] crate::gc::BackendError),
    #[error("ChatCluster has no namespace")]
    NoNamespace,
    #[error("Secret {secret} has no key {key}")]
    SecretKey { secret: String, key: String },
    /// Deletion cannot finish yet (pods still stopping, a backend down);
    /// the finalizer stays and the cleanup runs again soon.
    #[error("cleanup waits: {0}")]
    CleanupWaits(String),
    /// The finalizer helper refused the object (no name, say).
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A short, stable label for metrics.
    /// Every [`Error::metric_label`] (the metrics start each at zero).
    pub const METRIC_LABELS: [&'static str; 6] = [
        "kube",
        "backend",
        "no_namespace",
        "secret_key",
        "cleanup_waits",
        "finalizer",
    ];

    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Backend(_) => "backend",
            Error::NoNamespace => "no_namespace",
            Error::SecretKey { .. } => "secret_key",
            Error::CleanupWaits(_) => "cleanup_waits",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// Unwraps what kube's finalizer helper wraps: a reconcile's own error
    /// stays itself, a failed finalizer patch is an API error.
    pub fn from_finalizer(e: finalizer::Error<Error>) -> Error {
        match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => {
                Error::Kube(e)
            }
            e @ (finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer) => {
                Error::Finalizer(e.to_string())
            }
        }
    }
}
