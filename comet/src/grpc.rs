//! The comet's gRPC side in the distributed mode: the push service
//! `goim.comet.Comet` that job calls ([`CometService`]; goim's calls plus
//! rim's `PushMsgs`, many keyed pushes in one call), and the client for
//! logic's `goim.logic.Logic`, `rim.im.Im` and `rim.room.Rooms`
//! ([`GrpcLogic`]). Both are thin shells over the
//! same code standalone mode calls directly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::comet::comet_server::{Comet as CometRpc, CometServer};
use rim_proto::pb::comet::{
    BroadcastReply, BroadcastReq, BroadcastRoomReply, BroadcastRoomReq, PushMsgReply, PushMsgReq,
    PushMsgsReply, PushMsgsReq, PushRefused, RoomsReply, RoomsReq,
};
use rim_proto::pb::im::im_client::ImClient as ImRpcClient;
use rim_proto::pb::im::{AckReq, ReadReq, SendReply, SendReq, SyncReply, SyncReq};
use rim_proto::pb::logic::logic_client::LogicClient as LogicRpcClient;
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply, OnlineReq,
    ReceiveReq,
};
use rim_proto::pb::room::rooms_client::RoomsClient as RoomsRpcClient;
use rim_proto::pb::room::{AnnounceReply, AnnounceReq};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::{Comet, Hub, LogicCallError, LogicClient, PushError};

/// `goim.comet.Comet` over a comet's [`Hub`].
#[derive(Clone)]
pub struct CometService {
    hub: Arc<Hub>,
}

impl CometService {
    /// The tonic server for `hub`.
    pub fn server(hub: Arc<Hub>) -> CometServer<CometService> {
        CometServer::new(CometService { hub })
    }
}

fn push_status(e: PushError) -> Status {
    match e {
        PushError::Invalid(m) => Status::invalid_argument(m),
    }
}

#[async_trait]
impl CometRpc for CometService {
    async fn push_msg(&self, req: Request<PushMsgReq>) -> Result<Response<PushMsgReply>, Status> {
        self.hub.push_msg(req.into_inner()).map_err(push_status)?;
        Ok(Response::new(PushMsgReply {}))
    }

    /// rim's batch: each push applied in order, exactly as `push_msg`
    /// would; the malformed ones are named in the reply, not failed as a
    /// whole, so job never retries (and duplicates) the applied ones.
    async fn push_msgs(
        &self,
        req: Request<PushMsgsReq>,
    ) -> Result<Response<PushMsgsReply>, Status> {
        let mut refused = Vec::new();
        for (index, push) in req.into_inner().pushes.into_iter().enumerate() {
            if let Err(PushError::Invalid(reason)) = self.hub.push_msg(push) {
                refused.push(PushRefused {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    reason,
                });
            }
        }
        Ok(Response::new(PushMsgsReply { refused }))
    }

    async fn broadcast(
        &self,
        req: Request<BroadcastReq>,
    ) -> Result<Response<BroadcastReply>, Status> {
        self.hub.broadcast(req.into_inner()).map_err(push_status)?;
        Ok(Response::new(BroadcastReply {}))
    }

    async fn broadcast_room(
        &self,
        req: Request<BroadcastRoomReq>,
    ) -> Result<Response<BroadcastRoomReply>, Status> {
        self.hub
            .broadcast_room(req.into_inner())
            .map_err(push_status)?;
        Ok(Response::new(BroadcastRoomReply {}))
    }

    async fn rooms(&self, _req: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
        Ok(Response::new(self.hub.rooms()))
    }
}

/// Serves the comet push service on `listener` until `shutdown` is cancelled,
/// with the standard `grpc.health.v1.Health` beside it: job asks it whether a
/// comet whose online report went stale (logic or Redis unavailable) is
/// still alive before it stops pushing to it. The comet is serving under
/// `goim.comet.Comet` and under [`rim_proto::comet_health_name`] of its id.
pub async fn serve(
    comet: Arc<Comet>,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CometServer<CometService>>().await;
    health
        .set_service_status(
            rim_proto::comet_health_name(comet.server_id()),
            tonic_health::ServingStatus::Serving,
        )
        .await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(CometService::server(Arc::clone(comet.hub())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
}

/// logic reached over gRPC, with a deadline on every call (goim sets none).
/// Several addresses are balanced by tonic's channel.
#[derive(Clone, Debug)]
pub struct GrpcLogic {
    client: LogicRpcClient<Channel>,
    im: ImRpcClient<Channel>,
    rooms: RoomsRpcClient<Channel>,
}

impl GrpcLogic {
    /// A client for the logic instances at `addrs` (`host:port`), connecting
    /// lazily; `timeout` bounds connecting and every call.
    pub fn new(addrs: &[String], timeout: Duration) -> Result<GrpcLogic, LogicCallError> {
        let mut endpoints = Vec::new();
        for addr in addrs {
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| LogicCallError::Unavailable(format!("logic address {addr:?}: {e}")))?
                .connect_timeout(timeout)
                .timeout(timeout);
            endpoints.push(endpoint);
        }
        if endpoints.is_empty() {
            return Err(LogicCallError::Unavailable(
                "no logic address configured".into(),
            ));
        }
        let channel = Channel::balance_list(endpoints.into_iter());
        Ok(GrpcLogic {
            client: LogicRpcClient::new(channel.clone()),
            im: ImRpcClient::new(channel.clone()),
            rooms: RoomsRpcClient::new(channel),
        })
    }
}

fn logic_error(status: Status) -> LogicCallError {
    match status.code() {
        Code::InvalidArgument
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition => LogicCallError::Refused(status.message().to_owned()),
        Code::Unimplemented => LogicCallError::Unimplemented(status.message().to_owned()),
        _ => LogicCallError::Unavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[async_trait]
impl LogicClient for GrpcLogic {
    async fn connect(&self, req: ConnectReq) -> Result<ConnectReply, LogicCallError> {
        Ok(self
            .client
            .clone()
            .connect(req)
            .await
            .map_err(logic_error)?
            .into_inner())
    }

    async fn disconnect(&self, req: DisconnectReq) -> Result<DisconnectReply, LogicCallError> {
        Ok(self
            .client
            .clone()
            .disconnect(req)
            .await
            .map_err(logic_error)?
            .into_inner())
    }

    async fn heartbeat(&self, req: HeartbeatReq) -> Result<(), LogicCallError> {
        self.client
            .clone()
            .heartbeat(req)
            .await
            .map_err(logic_error)?;
        Ok(())
    }

    async fn renew_online(&self, req: OnlineReq) -> Result<OnlineReply, LogicCallError> {
        Ok(self
            .client
            .clone()
            .renew_online(req)
            .await
            .map_err(logic_error)?
            .into_inner())
    }

    async fn receive(&self, req: ReceiveReq) -> Result<(), LogicCallError> {
        self.client
            .clone()
            .receive(req)
            .await
            .map_err(logic_error)?;
        Ok(())
    }

    async fn announce(&self, req: AnnounceReq) -> Result<AnnounceReply, LogicCallError> {
        Ok(self
            .rooms
            .clone()
            .announce(req)
            .await
            .map_err(logic_error)?
            .into_inner())
    }

    async fn sync(&self, req: SyncReq) -> Result<SyncReply, LogicCallError> {
        Ok(self
            .im
            .clone()
            .sync(req)
            .await
            .map_err(logic_error)?
            .into_inner())
    }

    async fn ack(&self, req: AckReq) -> Result<(), LogicCallError> {
        self.im.clone().ack(req).await.map_err(logic_error)?;
        Ok(())
    }

    async fn read(&self, req: ReadReq) -> Result<(), LogicCallError> {
        self.im.clone().read(req).await.map_err(logic_error)?;
        Ok(())
    }

    async fn send(&self, req: SendReq) -> Result<SendReply, LogicCallError> {
        Ok(self
            .im
            .clone()
            .send(req)
            .await
            .map_err(logic_error)?
            .into_inner())
    }
}
