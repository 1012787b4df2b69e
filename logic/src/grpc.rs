//! The logic gRPC services that comets call in the distributed mode:
//! `goim.logic.Logic` (goim's names and field numbers), rim's `rim.im.Im`
//! (IM sessions' sync, acks and read marks) and `rim.room.Rooms` (room
//! announcements before a join), thin shells over [`Logic`]'s methods.

use std::sync::Arc;

use async_trait::async_trait;
use rim_proto::pb::im::im_server::{Im as ImRpc, ImServer};
use rim_proto::pb::im::{
    AckReply, AckReq, ReadReply, ReadReq, SendReply, SendReq, SyncReply, SyncReq,
};
use rim_proto::pb::logic::logic_server::{Logic as LogicRpc, LogicServer};
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReply, HeartbeatReq,
    NodesReply, NodesReq, OnlineReply, OnlineReq, ReceiveReply, ReceiveReq,
};
use rim_proto::pb::room::rooms_server::{Rooms as RoomsRpc, RoomsServer};
use rim_proto::pb::room::{AnnounceReply, AnnounceReq};
use tonic::{Request, Response, Status};

use crate::{Logic, LogicError};

/// `goim.logic.Logic` over a [`Logic`].
#[derive(Clone)]
pub struct LogicService {
    logic: Arc<Logic>,
}

impl LogicService {
    /// The tonic server for `logic` (gzip accepted, as goim's comets send it).
    pub fn server(logic: Arc<Logic>) -> LogicServer<LogicService> {
        LogicServer::new(LogicService { logic })
    }
}

/// `rim.im.Im` over a [`Logic`].
#[derive(Clone)]
pub struct ImService {
    logic: Arc<Logic>,
}

impl ImService {
    /// The tonic server for `logic`'s IM calls.
    pub fn server(logic: Arc<Logic>) -> ImServer<ImService> {
        ImServer::new(ImService { logic })
    }
}

/// `rim.room.Rooms` over a [`Logic`].
#[derive(Clone)]
pub struct RoomsService {
    logic: Arc<Logic>,
}

impl RoomsService {
    /// The tonic server for `logic`'s room announcements.
    pub fn server(logic: Arc<Logic>) -> RoomsServer<RoomsService> {
        RoomsServer::new(RoomsService { logic })
    }
}

#[async_trait]
impl RoomsRpc for RoomsService {
    async fn announce(&self, req: Request<AnnounceReq>) -> Result<Response<AnnounceReply>, Status> {
        Ok(Response::new(
            self.logic.announce_rooms(req.into_inner()).await?,
        ))
    }
}

#[async_trait]
impl ImRpc for ImService {
    async fn sync(&self, req: Request<SyncReq>) -> Result<Response<SyncReply>, Status> {
        Ok(Response::new(self.logic.sync(req.into_inner()).await?))
    }

    async fn ack(&self, req: Request<AckReq>) -> Result<Response<AckReply>, Status> {
        self.logic.ack(req.into_inner()).await?;
        Ok(Response::new(AckReply {}))
    }

    async fn read(&self, req: Request<ReadReq>) -> Result<Response<ReadReply>, Status> {
        self.logic.read(req.into_inner()).await?;
        Ok(Response::new(ReadReply {}))
    }

    async fn send(&self, req: Request<SendReq>) -> Result<Response<SendReply>, Status> {
        Ok(Response::new(self.logic.send(req.into_inner()).await))
    }
}

impl From<LogicError> for Status {
    fn from(e: LogicError) -> Status {
        match e {
            LogicError::BadRequest(m) => Status::invalid_argument(m),
            LogicError::Refused(m) => Status::permission_denied(m),
            LogicError::Unavailable(m) => Status::unavailable(m),
            other => Status::internal(other.to_string()),
        }
    }
}

#[async_trait]
impl LogicRpc for LogicService {
    async fn connect(&self, req: Request<ConnectReq>) -> Result<Response<ConnectReply>, Status> {
        Ok(Response::new(self.logic.connect(req.into_inner()).await?))
    }

    async fn disconnect(
        &self,
        req: Request<DisconnectReq>,
    ) -> Result<Response<DisconnectReply>, Status> {
        Ok(Response::new(
            self.logic.disconnect(req.into_inner()).await?,
        ))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatReq>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        Ok(Response::new(self.logic.heartbeat(req.into_inner()).await?))
    }

    async fn renew_online(&self, req: Request<OnlineReq>) -> Result<Response<OnlineReply>, Status> {
        Ok(Response::new(
            self.logic.renew_online(req.into_inner()).await?,
        ))
    }

    async fn receive(&self, req: Request<ReceiveReq>) -> Result<Response<ReceiveReply>, Status> {
        Ok(Response::new(self.logic.receive(req.into_inner()).await?))
    }

    async fn nodes(&self, req: Request<NodesReq>) -> Result<Response<NodesReply>, Status> {
        Ok(Response::new(self.logic.nodes(req.into_inner()).await?))
    }
}

/// Serves the logic gRPC services on `listener` until `shutdown` is cancelled.
pub async fn serve(
    logic: Arc<Logic>,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(LogicService::server(Arc::clone(&logic)))
        .add_service(ImService::server(Arc::clone(&logic)))
        .add_service(RoomsService::server(logic))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
}
