//! Errors the comet reports to its callers: configuration errors (from
//! [`crate::Comet::new`]) and push-request errors (from the push methods, which
//! the gRPC layer maps to `InvalidArgument`).
//!
//! Why a single connection was closed is not an error returned to anyone; it
//! is logged and counted where the connection ends (`conn` module).

use std::path::PathBuf;

/// The configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CometConfigError {
    /// A field holds a value outside its allowed range.
    #[error("invalid comet config field `{field}`: {reason}")]
    Invalid {
        /// The field's name in the TOML file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS certificate or key file named by `tls_cert` / `tls_key`
    /// cannot be read or used (at start, or on a reload).
    #[error("comet {field} {}: {reason}", path.display())]
    Tls {
        /// `tls_cert` or `tls_key`.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A push request was rejected before any session saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The request is malformed (no keys, no proto, empty room id).
    #[error("invalid push request: {0}")]
    Invalid(String),
}
