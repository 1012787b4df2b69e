//! [`RemoteStore`]'s call deadline against routers that accept a connection
//! but never answer: a raw TCP peer that never completes the HTTP/2 handshake,
//! and a real tonic server whose handlers never return. Real sockets, so real
//! time (no paused clock).

use rim_proto::pb::router as pb;
use rim_proto::pb::router::router_server::{Router, RouterServer};
use rim_router::grpc::RemoteStore;
use rim_router::SessionStore;
use rim_testkit::deadline::{ends_at_deadline, silent_tcp_peer, TIMEOUT};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A router whose every RPC never returns.
struct HungRouter;

#[tonic::async_trait]
impl Router for HungRouter {
    async fn set_key(&self, _: Request<pb::SetKeyReq>) -> Result<Response<pb::Empty>, Status> {
        std::future::pending().await
    }
    async fn expire_key(&self, _: Request<pb::KeyReq>) -> Result<Response<pb::BoolReply>, Status> {
        std::future::pending().await
    }
    async fn del_key(&self, _: Request<pb::DelKeyReq>) -> Result<Response<pb::BoolReply>, Status> {
        std::future::pending().await
    }
    async fn get_keys(
        &self,
        _: Request<pb::GetKeysReq>,
    ) -> Result<Response<pb::GetKeysReply>, Status> {
        std::future::pending().await
    }
    async fn add_mid_key(
        &self,
        _: Request<pb::AddMidKeyReq>,
    ) -> Result<Response<pb::Empty>, Status> {
        std::future::pending().await
    }
    async fn expire_mid(&self, _: Request<pb::MidReq>) -> Result<Response<pb::BoolReply>, Status> {
        std::future::pending().await
    }
    async fn del_mid_key(
        &self,
        _: Request<pb::DelMidKeyReq>,
    ) -> Result<Response<pb::BoolReply>, Status> {
        std::future::pending().await
    }
    async fn get_mids(
        &self,
        _: Request<pb::GetMidsReq>,
    ) -> Result<Response<pb::GetMidsReply>, Status> {
        std::future::pending().await
    }
    async fn put_online(
        &self,
        _: Request<pb::ServerOnline>,
    ) -> Result<Response<pb::Empty>, Status> {
        std::future::pending().await
    }
    async fn online(&self, _: Request<pb::Empty>) -> Result<Response<pb::OnlineReply>, Status> {
        std::future::pending().await
    }
    async fn del_server(
        &self,
        _: Request<pb::ServerReq>,
    ) -> Result<Response<pb::CountReply>, Status> {
        std::future::pending().await
    }
    async fn announce_rooms(
        &self,
        _: Request<pb::AnnounceRoomsReq>,
    ) -> Result<Response<pb::Empty>, Status> {
        std::future::pending().await
    }
    async fn room_servers(
        &self,
        _: Request<pb::RoomServersReq>,
    ) -> Result<Response<pb::RoomServersReply>, Status> {
        std::future::pending().await
    }
}

/// A real tonic server on 127.0.0.1:0 serving [`HungRouter`].
async fn hung_tonic_router() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RouterServer::new(HungRouter))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

async fn check_calls(addr: &str, peer: &str) {
    let store = RemoteStore::new(addr, TIMEOUT).unwrap();

    let what = format!("get_mids against {peer}");
    let result = ends_at_deadline(&what, store.get_mids(&[1, 2])).await;
    assert!(result.is_err(), "{what}: {result:?}");

    let what = format!("online against {peer}");
    let result = ends_at_deadline(&what, store.online()).await;
    assert!(result.is_err(), "{what}: {result:?}");

    // The room calls run under the same deadline (a job's lookup then
    // sends the batch to every comet; a comet's announce refuses the join).
    let rooms = ["live://1".to_owned()];
    let what = format!("room_servers against {peer}");
    let result = ends_at_deadline(&what, store.room_servers(&rooms)).await;
    assert!(result.is_err(), "{what}: {result:?}");
    let what = format!("announce_rooms against {peer}");
    let ttl = std::time::Duration::from_secs(60);
    let result = ends_at_deadline(&what, store.announce_rooms("c1", &rooms, ttl)).await;
    assert!(result.is_err(), "{what}: {result:?}");
}

#[tokio::test]
async fn remote_store_deadline_holds_against_silent_tcp_peer() {
    let addr = silent_tcp_peer().await;
    check_calls(&addr, "a silent TCP peer").await;
}

#[tokio::test]
async fn remote_store_deadline_holds_against_hung_tonic_router() {
    let addr = hung_tonic_router().await;
    check_calls(&addr, "a hung tonic router").await;
}
