//! The operator's error type; every variant has a metric label.

/// Failures of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Backend(#[from] crate::gc::execute::BackendError),
    #[error("ChatCluster has no namespace")]
    NoNamespace,
    #[error("Secret {secret} has no key {key}")]
    SecretKey { secret: String, key: String },
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Backend(_) => "backend",
            Error::NoNamespace => "no_namespace",
            Error::SecretKey { .. } => "secret_key",
        }
    }
}
