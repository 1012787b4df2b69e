//! The comet's view of logic: the calls a comet makes (goim's `goim.logic.Logic`).
//!
//! Standalone mode implements [`LogicClient`] with a direct call into the logic
//! component; the distributed mode implements it with a tonic client. The
//! comet code above it is the same in both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::im::{AckReq, ReadReq, SendReply, SendReq, SyncReply, SyncReq};
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply, OnlineReq,
    ReceiveReq,
};
use rim_proto::pb::room::{AnnounceReply, AnnounceReq};

/// Why a call to logic failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogicCallError {
    /// Logic refused the request (bad token, key owned by someone else, ...).
    /// For `connect` the client is disconnected with this reason logged.
    #[error("refused by logic: {0}")]
    Refused(String),
    /// Logic could not be reached or failed internally; the call may be retried.
    #[error("logic unavailable: {0}")]
    Unavailable(String),
    /// Logic does not serve this call (an older logic, or goim's: gRPC
    /// `UNIMPLEMENTED`).
    #[error("not served by logic: {0}")]
    Unimplemented(String),
}

/// Calls from a comet to logic. Every call must finish within a bounded time;
/// implementations apply their own deadline and report it as `Unavailable`.
#[async_trait]
pub trait LogicClient: Send + Sync + 'static {
    /// Authenticates a client's op 7 token and records its session.
    async fn connect(&self, req: ConnectReq) -> Result<ConnectReply, LogicCallError>;
    /// Removes a session's mapping when its connection ends.
    async fn disconnect(&self, req: DisconnectReq) -> Result<DisconnectReply, LogicCallError>;
    /// Refreshes a session's mapping TTL (called rarely, on client heartbeats).
    async fn heartbeat(&self, req: HeartbeatReq) -> Result<(), LogicCallError>;
    /// Reports this comet's room counts; returns the cluster-wide room counts.
    async fn renew_online(&self, req: OnlineReq) -> Result<OnlineReply, LogicCallError>;
    /// Hands an upstream client frame (op 4 and other non-protocol ops) to logic.
    async fn receive(&self, req: ReceiveReq) -> Result<(), LogicCallError>;

    /// Records that this comet is about to admit members to `req.rooms`
    /// (`rim.room.Rooms/Announce`), answering only once logic stored the
    /// records, with their lifetime. A logic that does not serve it answers
    /// [`LogicCallError::Unimplemented`] (the default here, as goim's does).
    async fn announce(&self, _req: AnnounceReq) -> Result<AnnounceReply, LogicCallError> {
        Err(LogicCallError::Unimplemented(
            "this logic takes no room announcements".into(),
        ))
    }

    /// IM sessions' op 18: a page of the user's mailbox (`rim.im.Im/Sync`).
    /// A logic without mailboxes refuses it.
    async fn sync(&self, _req: SyncReq) -> Result<SyncReply, LogicCallError> {
        Err(LogicCallError::Refused(
            "this logic keeps no mailboxes".into(),
        ))
    }

    /// IM sessions' op 21, batched: device acks (`rim.im.Im/Ack`).
    async fn ack(&self, _req: AckReq) -> Result<(), LogicCallError> {
        Err(LogicCallError::Refused(
            "this logic keeps no mailboxes".into(),
        ))
    }

    /// IM sessions' op 22: the user's read mark (`rim.im.Im/Read`); logic
    /// tells the user's other IM sessions.
    async fn read(&self, _req: ReadReq) -> Result<(), LogicCallError> {
        Err(LogicCallError::Refused(
            "this logic keeps no mailboxes".into(),
        ))
    }

    /// IM sessions' op 4: a message the client sends (`rim.im.Im/Send`);
    /// the reply is op 5's body.
    async fn send(&self, _req: SendReq) -> Result<SendReply, LogicCallError> {
        Err(LogicCallError::Refused(
            "this logic keeps no mailboxes".into(),
        ))
    }
}

/// The comet's handle on logic: the client, and the deadline every call runs
/// under (config `logic_timeout`). Failed calls are counted by name.
#[derive(Clone)]
pub(crate) struct LogicGateway {
    client: Arc<dyn LogicClient>,
    timeout: Duration,
}

impl LogicGateway {
    pub(crate) fn new(client: Arc<dyn LogicClient>, timeout: Duration) -> LogicGateway {
        LogicGateway { client, timeout }
    }

    /// The deadline of every call.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client, to build a call for [`LogicGateway::call`].
    pub(crate) fn client(&self) -> &dyn LogicClient {
        &*self.client
    }

    /// Runs one logic call under the deadline; a timeout is `Unavailable`.
    pub(crate) async fn call<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<T, LogicCallError>>,
    ) -> Result<T, LogicCallError> {
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(LogicCallError::Unavailable(format!(
                "{call} timed out after {timeout:?}"
            ))),
        };
        if result.is_err() {
            crate::metrics::logic_error(call);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::testing::NoLogic;

    #[tokio::test(start_paused = true)]
    async fn logic_calls_time_out_as_unavailable() {
        let logic = LogicGateway::new(Arc::new(NoLogic), Duration::from_secs(2));
        let started = Instant::now();
        // NoLogic never answers renew_online.
        let err = logic
            .call(
                "renew_online",
                logic.client().renew_online(OnlineReq::default()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, LogicCallError::Unavailable(_)), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
