//! [`GrpcComet`]'s call deadline against comets that accept a connection but
//! never answer: a raw TCP peer that never completes the HTTP/2 handshake, and
//! a real tonic server whose handlers (push and health) never return. Real
//! sockets, so real time (no paused clock).

use rim_job::grpc::GrpcComet;
use rim_job::CometClient;
use rim_proto::pb::comet::comet_server::{Comet, CometServer};
use rim_proto::pb::comet::{
    BroadcastReply, BroadcastReq, BroadcastRoomReply, BroadcastRoomReq, PushMsgReply, PushMsgReq,
    PushMsgsReply, PushMsgsReq, RoomsReply, RoomsReq,
};
use rim_testkit::deadline::{ends_at_deadline, silent_tcp_peer, TIMEOUT};
use tokio::net::TcpListener;
use tonic::codegen::tokio_stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// A comet whose every RPC never returns.
struct HungComet;

#[tonic::async_trait]
impl Comet for HungComet {
    async fn push_msg(&self, _: Request<PushMsgReq>) -> Result<Response<PushMsgReply>, Status> {
        std::future::pending().await
    }
    async fn broadcast(
        &self,
        _: Request<BroadcastReq>,
    ) -> Result<Response<BroadcastReply>, Status> {
        std::future::pending().await
    }
    async fn broadcast_room(
        &self,
        _: Request<BroadcastRoomReq>,
    ) -> Result<Response<BroadcastRoomReply>, Status> {
        std::future::pending().await
    }
    async fn rooms(&self, _: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
        std::future::pending().await
    }
    async fn push_msgs(&self, _: Request<PushMsgsReq>) -> Result<Response<PushMsgsReply>, Status> {
        std::future::pending().await
    }
}

/// A `grpc.health.v1.Health` that never answers.
struct HungHealth;

#[tonic::async_trait]
impl Health for HungHealth {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        std::future::pending().await
    }

    type WatchStream = tokio_stream::Pending<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        std::future::pending().await
    }
}

/// A real tonic server on 127.0.0.1:0 serving [`HungComet`] and
/// [`HungHealth`].
async fn hung_tonic_comet() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(HungHealth))
            .add_service(CometServer::new(HungComet))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

async fn check_calls(addr: &str, peer: &str) {
    let comet = GrpcComet::new(addr, TIMEOUT, TIMEOUT).unwrap();

    let what = format!("push_msg against {peer}");
    let req = PushMsgReq {
        keys: vec!["k1".into()],
        proto_op: 9,
        proto: None,
        ..Default::default()
    };
    let result = ends_at_deadline(&what, comet.push_msg(req.clone())).await;
    assert!(result.is_err(), "{what}: {result:?}");

    let what = format!("push_msgs against {peer}");
    let result = ends_at_deadline(&what, comet.push_msgs(vec![req.clone(), req])).await;
    assert!(result.is_err(), "{what}: {result:?}");

    let what = format!("serving() against {peer}");
    let serving = ends_at_deadline(&what, comet.serving("c1")).await;
    assert!(!serving, "{what}: reported serving");
}

#[tokio::test]
async fn grpc_comet_deadline_holds_against_silent_tcp_peer() {
    let addr = silent_tcp_peer().await;
    check_calls(&addr, "a silent TCP peer").await;
}

#[tokio::test]
async fn grpc_comet_deadline_holds_against_hung_tonic_comet() {
    let addr = hung_tonic_comet().await;
    check_calls(&addr, "a hung tonic comet").await;
}

/// A push call runs under the call deadline, not the (shorter) connect
/// deadline: `rim job` gives a comet its `push_timeout` even when that is
/// longer than `connect_timeout`. Health checks keep the connect deadline.
#[tokio::test]
async fn push_calls_get_the_call_deadline_not_the_connect_deadline() {
    let addr = hung_tonic_comet().await;
    let connect = TIMEOUT / 3;
    let comet = GrpcComet::new(&addr, connect, TIMEOUT).unwrap();
    let req = PushMsgReq {
        keys: vec!["k1".into()],
        proto_op: 9,
        proto: None,
        ..Default::default()
    };
    let what = "push_msg with a 100 ms connect and a 300 ms call deadline";
    let result = ends_at_deadline(what, comet.push_msg(req)).await;
    assert!(result.is_err(), "{what}: {result:?}");
    let started = tokio::time::Instant::now();
    assert!(!comet.serving("c1").await);
    let probe = started.elapsed();
    assert!(
        probe < TIMEOUT,
        "a health check took {probe:?}: it must end at the {connect:?} connect deadline"
    );
}
