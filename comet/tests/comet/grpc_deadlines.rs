//! [`GrpcLogic`]'s call deadline against logics that accept a connection but
//! never answer: a raw TCP peer that never completes the HTTP/2 handshake, and
//! a real tonic server whose handlers never return. Real sockets, so real time
//! (no paused clock).

use rim_comet::grpc::GrpcLogic;
use rim_comet::LogicClient;
use rim_proto::pb::logic::logic_server::{Logic, LogicServer};
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReply, HeartbeatReq,
    NodesReply, NodesReq, OnlineReply, OnlineReq, ReceiveReply, ReceiveReq,
};
use rim_testkit::deadline::{ends_at_deadline, silent_tcp_peer, TIMEOUT};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A logic whose every RPC never returns.
struct HungLogic;

#[tonic::async_trait]
impl Logic for HungLogic {
    async fn connect(&self, _: Request<ConnectReq>) -> Result<Response<ConnectReply>, Status> {
        std::future::pending().await
    }
    async fn disconnect(
        &self,
        _: Request<DisconnectReq>,
    ) -> Result<Response<DisconnectReply>, Status> {
        std::future::pending().await
    }
    async fn heartbeat(
        &self,
        _: Request<HeartbeatReq>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        std::future::pending().await
    }
    async fn renew_online(&self, _: Request<OnlineReq>) -> Result<Response<OnlineReply>, Status> {
        std::future::pending().await
    }
    async fn receive(&self, _: Request<ReceiveReq>) -> Result<Response<ReceiveReply>, Status> {
        std::future::pending().await
    }
    async fn nodes(&self, _: Request<NodesReq>) -> Result<Response<NodesReply>, Status> {
        std::future::pending().await
    }
}

/// A real tonic server on 127.0.0.1:0 serving [`HungLogic`].
async fn hung_tonic_logic() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogicServer::new(HungLogic))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

async fn check_calls(addrs: &[String], peer: &str) {
    let logic = GrpcLogic::new(addrs, TIMEOUT).unwrap();

    let what = format!("connect against {peer}");
    let req = ConnectReq {
        server: "comet-1".into(),
        cookie: String::new(),
        token: r#"{"mid":1}"#.into(),
    };
    let result = ends_at_deadline(&what, logic.connect(req)).await;
    assert!(result.is_err(), "{what}: {result:?}");

    let what = format!("heartbeat against {peer}");
    let req = HeartbeatReq {
        mid: 1,
        key: "k1".into(),
        server: "comet-1".into(),
    };
    let result = ends_at_deadline(&what, logic.heartbeat(req)).await;
    assert!(result.is_err(), "{what}: {result:?}");
}

#[tokio::test]
async fn grpc_logic_deadline_holds_against_silent_tcp_peer() {
    let addr = silent_tcp_peer().await;
    check_calls(&[addr], "a silent TCP peer").await;
}

#[tokio::test]
async fn grpc_logic_deadline_holds_against_hung_tonic_logic() {
    let addr = hung_tonic_logic().await;
    check_calls(&[addr], "a hung tonic logic").await;
}

#[tokio::test]
async fn grpc_logic_deadline_holds_against_two_hung_logics() {
    let addrs = vec![silent_tcp_peer().await, hung_tonic_logic().await];
    check_calls(&addrs, "a silent TCP peer and a hung tonic logic").await;
}
