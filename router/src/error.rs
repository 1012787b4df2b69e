//! Errors of the session registry.

/// Why a registry operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backing store (Redis, a remote router) could not be reached or failed.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The router was configured without shards.
    #[error("no router shards configured")]
    NoShards,
}
