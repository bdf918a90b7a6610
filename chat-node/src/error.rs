//! The crate's error type. Protocol-level refusals (`bad_request`,
//! `forbidden`, ...) are values of [`crate::protocol::ProtoError`], not errors
//! here: these are failures of the node itself or of a backend.

/// Failures of the node or of a backend it depends on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The store could not be reached or answered badly.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
