//! The comet's view of logic: the calls a comet makes (goim's `goim.logic.Logic`).
//!
//! Standalone mode implements [`LogicClient`] with a direct call into the logic
//! component; the distributed mode implements it with a tonic client. The
//! comet code above it is the same in both.

use async_trait::async_trait;
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply, OnlineReq,
    ReceiveReq,
};

/// Why a call to logic failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogicError {
    /// Logic refused the request (bad token, key owned by someone else, ...).
    /// For `connect` the client is disconnected with this reason logged.
    #[error("refused by logic: {0}")]
    Refused(String),
    /// Logic could not be reached or failed internally; the call may be retried.
    #[error("logic unavailable: {0}")]
    Unavailable(String),
}

/// Calls from a comet to logic. Every call must finish within a bounded time;
/// implementations apply their own deadline and report it as `Unavailable`.
#[async_trait]
pub trait LogicClient: Send + Sync + 'static {
    /// Authenticates a client's op 7 token and records its session.
    async fn connect(&self, req: ConnectReq) -> Result<ConnectReply, LogicError>;
    /// Removes a session's mapping when its connection ends.
    async fn disconnect(&self, req: DisconnectReq) -> Result<DisconnectReply, LogicError>;
    /// Refreshes a session's mapping TTL (called rarely, on client heartbeats).
    async fn heartbeat(&self, req: HeartbeatReq) -> Result<(), LogicError>;
    /// Reports this comet's room counts; returns the cluster-wide room counts.
    async fn renew_online(&self, req: OnlineReq) -> Result<OnlineReply, LogicError>;
    /// Hands an upstream client frame (op 4 and other non-protocol ops) to logic.
    async fn receive(&self, req: ReceiveReq) -> Result<(), LogicError>;
}

/// A logic for unit tests that register sessions themselves: it refuses
/// every `connect`, accepts the other calls, and never answers an online
/// report (so a comet's report loop stays idle).
#[cfg(test)]
pub(crate) struct NoLogic;

#[cfg(test)]
#[async_trait]
impl LogicClient for NoLogic {
    async fn connect(&self, _: ConnectReq) -> Result<ConnectReply, LogicError> {
        Err(LogicError::Refused("test".into()))
    }
    async fn disconnect(&self, _: DisconnectReq) -> Result<DisconnectReply, LogicError> {
        Ok(DisconnectReply { has: true })
    }
    async fn heartbeat(&self, _: HeartbeatReq) -> Result<(), LogicError> {
        Ok(())
    }
    async fn renew_online(&self, _: OnlineReq) -> Result<OnlineReply, LogicError> {
        std::future::pending().await
    }
    async fn receive(&self, _: ReceiveReq) -> Result<(), LogicError> {
        Ok(())
    }
}
