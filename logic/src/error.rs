//! [`LogicError`]: why a logic operation failed, in terms a caller can act on.
//!
//! Messages of `BadRequest`, `Refused` and `Unavailable` are written for the
//! caller and may be returned as they are; `Internal` carries detail that the
//! edges (HTTP, gRPC) log and do not return.

use rim_router::StoreError;

use rim_queue::QueueError;

/// Why a logic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogicError {
    /// The request is malformed or incomplete (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The client was not admitted: bad or refused token (auth fails).
    #[error("{0}")]
    Refused(String),
    /// A dependency (push queue, session store) did not accept or answer the
    /// request; nothing, or only the part named in the message, took effect (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state (HTTP 500); the detail is for logs only.
    #[error("{0}")]
    Internal(String),
}

impl LogicError {
    /// A short, stable label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            LogicError::BadRequest(_) => "bad_request",
            LogicError::Refused(_) => "refused",
            LogicError::Unavailable(_) => "unavailable",
            LogicError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for LogicError {
    fn from(err: StoreError) -> Self {
        // The store's message may carry addresses; log it here and give the
        // caller a message that says what failed, not where.
        tracing::warn!(error = %err, "session store request failed");
        match err {
            StoreError::Unavailable(_) => {
                LogicError::Unavailable("session store unavailable".into())
            }
            StoreError::NoShards => LogicError::Internal(err.to_string()),
        }
    }
}

impl From<QueueError> for LogicError {
    fn from(err: QueueError) -> Self {
        LogicError::Unavailable(format!("message not confirmed: {err}"))
    }
}
