//! Ports to the outside world, each a trait with a built-in local default (SPEC §8):
//! [`agent`] (script, command; real CLIs next), [`tracker`], [`forge`], [`notifier`].
//!
//! Invariant: adapters touch neither the store nor the engine; they turn outside formats into
//! domain values at the edge, and spawn nothing themselves (the runner does).

pub mod agent;
pub mod forge;
pub mod notifier;
pub mod tracker;
pub mod webhook;

/// Errors at the adapter boundary.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{0}")]
    Config(String),
    #[error("io error on {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("git: {0}")]
    Git(#[from] baton_runner::GitError),
    /// The operation may succeed if tried again (network, lock, busy).
    #[error("transient: {0}")]
    Transient(String),
    #[error("{0}")]
    Rejected(String),
}

impl AdapterError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, AdapterError::Transient(_))
    }
}
