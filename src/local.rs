//! In-process adapters: the comet calls logic and job calls the comet by
//! plain function calls in standalone mode, behind the same traits that the
//! distributed mode implements with gRPC clients.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use rim_comet::{Comet, Hub, LogicCallError, LogicClient};
use rim_job::{CometCallError, CometClient};
use rim_logic::{LocalOnline, Logic};
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use rim_proto::pb::im::{AckReq, ReadReq, SendReply, SendReq, SyncReply, SyncReq};
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply, OnlineReq,
    ReceiveReq,
};
use rim_proto::pb::room::{AnnounceReply, AnnounceReq};

/// logic as the comet sees it, in the same process.
pub(crate) struct LocalLogic(pub(crate) Arc<Logic>);

fn logic_error(e: rim_logic::LogicError) -> LogicCallError {
    use rim_logic::LogicError as E;
    match e {
        E::BadRequest(m) | E::Refused(m) => LogicCallError::Refused(m),
        other => LogicCallError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl LogicClient for LocalLogic {
    async fn connect(&self, req: ConnectReq) -> Result<ConnectReply, LogicCallError> {
        self.0.connect(req).await.map_err(logic_error)
    }

    async fn disconnect(&self, req: DisconnectReq) -> Result<DisconnectReply, LogicCallError> {
        self.0.disconnect(req).await.map_err(logic_error)
    }

    async fn heartbeat(&self, req: HeartbeatReq) -> Result<(), LogicCallError> {
        self.0.heartbeat(req).await.map(|_| ()).map_err(logic_error)
    }

    async fn renew_online(&self, req: OnlineReq) -> Result<OnlineReply, LogicCallError> {
        self.0.renew_online(req).await.map_err(logic_error)
    }

    async fn receive(&self, req: ReceiveReq) -> Result<(), LogicCallError> {
        self.0.receive(req).await.map(|_| ()).map_err(logic_error)
    }

    async fn announce(&self, req: AnnounceReq) -> Result<AnnounceReply, LogicCallError> {
        self.0.announce_rooms(req).await.map_err(logic_error)
    }

    async fn sync(&self, req: SyncReq) -> Result<SyncReply, LogicCallError> {
        self.0.sync(req).await.map_err(logic_error)
    }

    async fn ack(&self, req: AckReq) -> Result<(), LogicCallError> {
        self.0.ack(req).await.map_err(logic_error)
    }

    async fn read(&self, req: ReadReq) -> Result<(), LogicCallError> {
        self.0.read(req).await.map_err(logic_error)
    }

    async fn send(&self, req: SendReq) -> Result<SendReply, LogicCallError> {
        Ok(self.0.send(req).await)
    }
}

/// The comet's hub as job sees it, in the same process.
pub(crate) struct LocalComet(pub(crate) Arc<Hub>);

fn comet_error(e: rim_comet::PushError) -> CometCallError {
    match e {
        rim_comet::PushError::Invalid(m) => CometCallError::Invalid(m),
    }
}

#[async_trait]
impl CometClient for LocalComet {
    async fn push_msg(&self, req: PushMsgReq) -> Result<(), CometCallError> {
        self.0.push_msg(req).map_err(comet_error)
    }

    async fn push_msgs(
        &self,
        reqs: Vec<PushMsgReq>,
    ) -> Result<Vec<Option<String>>, CometCallError> {
        Ok(reqs
            .into_iter()
            .map(|req| match self.0.push_msg(req) {
                Ok(()) => None,
                Err(rim_comet::PushError::Invalid(reason)) => Some(reason),
            })
            .collect())
    }

    async fn broadcast(&self, req: BroadcastReq) -> Result<(), CometCallError> {
        self.0.broadcast(req).map_err(comet_error)
    }

    async fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), CometCallError> {
        self.0.broadcast_room(req).map_err(comet_error)
    }
}

/// The comet as logic's online answers see it, in the same process: its
/// live counts. Weak, since the comet holds logic.
pub(crate) struct LocalCometOnline(pub(crate) Weak<Comet>);

impl LocalOnline for LocalCometOnline {
    fn online(&self) -> Option<OnlineReq> {
        self.0.upgrade().map(|comet| comet.online_report())
    }
}
