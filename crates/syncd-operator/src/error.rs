//! Reconcile errors. Each has a stable code: the metric label and the Event reason.

use crate::build::BuildError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call; transient, retried with backoff.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// The spec cannot be built; waits for a change.
    #[error("invalid SyncCluster: {0}")]
    Build(#[from] BuildError),
    /// The SyncCluster has no namespace (it is namespaced; this is a bug upstream).
    #[error("the SyncCluster has no namespace")]
    MissingNamespace,
}

impl Error {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::Build(e) => e.code(),
            Error::MissingNamespace => "missing_namespace",
        }
    }
}
