//! The job's view of a comet: the push calls of goim's `goim.comet.Comet`,
//! and rim's `PushMsgs` (many keyed pushes in one call).
//!
//! Standalone mode implements [`CometClient`] with a direct call into the
//! in-process comet; the distributed mode with a tonic client.

use async_trait::async_trait;
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};

/// Why a comet did not accept a push.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CometCallError {
    /// The request was malformed (no keys, no proto, empty room); retrying will not help.
    #[error("invalid push request: {0}")]
    Invalid(String),
    /// The comet could not be reached or timed out; the push may be retried.
    #[error("comet unavailable: {0}")]
    Unavailable(String),
    /// The comet does not serve the call (`push_msgs` on goim's comet or an
    /// older rim comet): nothing was applied; send each push with `push_msg`.
    #[error("comet does not serve this call")]
    Unsupported,
}

/// Push calls from job to one comet. `Ok` means the comet accepted the push:
/// it has put the frame into the queue of every target session it holds
/// (sessions whose queue was full are disconnected and counted, not retried).
#[async_trait]
pub trait CometClient: Send + Sync + 'static {
    /// Push to the given connection keys on this comet (filtered by accepts).
    async fn push_msg(&self, req: PushMsgReq) -> Result<(), CometCallError>;
    /// rim's batch: each of `reqs` applied in order, exactly as `push_msg`
    /// would apply it. `Ok` holds one entry per push: `None` applied,
    /// `Some(reason)` refused as malformed. `Err` means none was applied
    /// (`Unsupported`: the comet does not serve the call) or, for
    /// `Unavailable`, that the call's outcome is unknown, as for `push_msg`.
    async fn push_msgs(&self, reqs: Vec<PushMsgReq>)
        -> Result<Vec<Option<String>>, CometCallError>;
    /// Push to every connection on this comet that accepts `protoOp`.
    async fn broadcast(&self, req: BroadcastReq) -> Result<(), CometCallError>;
    /// Push to every member of a room on this comet (no accepts filtering).
    async fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), CometCallError>;
}
