//! [`GrpcComet`] against real tonic comets: rim's `PushMsgs` falls back to
//! goim's `PushMsg` for a comet that does not serve it, and health checks
//! have a connection of their own, so pushes holding every HTTP/2 stream
//! the comet allows do not delay them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rim_job::grpc::GrpcComet;
use rim_job::{CometClient, Config, Job};
use rim_proto::pb::comet::comet_server::{Comet, CometServer};
use rim_proto::pb::comet::{
    BroadcastReply, BroadcastReq, BroadcastRoomReply, BroadcastRoomReq, PushMsgReply, PushMsgReq,
    PushMsgsReply, PushMsgsReq, RoomsReply, RoomsReq,
};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_proto::Frame;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A comet as goim's (or an older rim's) looks from job: `PushMsg` works,
/// `PushMsgs` is answered `UNIMPLEMENTED`, as tonic and grpc-go answer a
/// method a server does not have. `hang` makes `push_msg` never answer.
#[derive(Default)]
struct OldComet {
    bodies: Mutex<Vec<Bytes>>,
    batch_calls: AtomicUsize,
    hang: bool,
    pushed: Notify,
}

/// The served side of a shared [`OldComet`].
struct Served(Arc<OldComet>);

impl std::ops::Deref for Served {
    type Target = OldComet;
    fn deref(&self) -> &OldComet {
        &self.0
    }
}

#[tonic::async_trait]
impl Comet for Served {
    async fn push_msg(&self, req: Request<PushMsgReq>) -> Result<Response<PushMsgReply>, Status> {
        self.pushed.notify_one();
        if self.hang {
            std::future::pending::<()>().await;
        }
        let body = req.into_inner().proto.map(|p| p.body).unwrap_or_default();
        for frame in Frame::batch(body) {
            let frame = frame.map_err(|e| Status::invalid_argument(e.to_string()))?;
            self.bodies.lock().push(frame.body);
        }
        Ok(Response::new(PushMsgReply {}))
    }
    async fn push_msgs(&self, _: Request<PushMsgsReq>) -> Result<Response<PushMsgsReply>, Status> {
        self.batch_calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::unimplemented(""))
    }
    async fn broadcast(
        &self,
        _: Request<BroadcastReq>,
    ) -> Result<Response<BroadcastReply>, Status> {
        Ok(Response::new(BroadcastReply {}))
    }
    async fn broadcast_room(
        &self,
        _: Request<BroadcastRoomReq>,
    ) -> Result<Response<BroadcastRoomReply>, Status> {
        Ok(Response::new(BroadcastRoomReply {}))
    }
    async fn rooms(&self, _: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
        Ok(Response::new(RoomsReply::default()))
    }
}

/// Serves `comet` (and a health service saying comet `id` is serving) on
/// 127.0.0.1:0, at most `streams` concurrent HTTP/2 streams per connection.
async fn serve(comet: Arc<OldComet>, id: &str, streams: u32) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(
            rim_proto::comet_health_name(id),
            tonic_health::ServingStatus::Serving,
        )
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(streams)
            .add_service(health_service)
            .add_service(CometServer::new(Served(comet)))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

fn push(body: &'static [u8]) -> PushMsg {
    PushMsg {
        r#type: Type::Push.into(),
        operation: 1000,
        server: "c1".into(),
        keys: vec!["k".into()],
        msg: Bytes::from_static(body),
        ..PushMsg::default()
    }
}

/// A new job and an old comet: the pushes a worker would batch reach the
/// comet one `PushMsg` each, in order, and the refusal is remembered (one
/// `PushMsgs` attempt for several rounds of pushes).
#[tokio::test]
async fn a_comet_without_push_msgs_gets_one_push_msg_per_push() {
    let comet = Arc::new(OldComet::default());
    let addr = serve(comet.clone(), "c1", 100).await;
    let client = GrpcComet::new(&addr, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    let job = Job::new(Config {
        routines: 1,
        ..Config::default()
    });
    job.add_comet("c1", Arc::new(client) as Arc<dyn CometClient>);
    let mut expected = Vec::new();
    for round in 0..3 {
        let mut deliveries = Vec::new();
        for i in 0..4 {
            let body: &'static [u8] = format!("r{round}-{i}").leak().as_bytes();
            expected.push(Bytes::from_static(body));
            deliveries.push(job.dispatch(push(body)).await.unwrap());
        }
        for delivery in deliveries {
            assert_eq!(delivery.await, Ok(()));
        }
    }
    assert_eq!(*comet.bodies.lock(), expected);
    assert_eq!(
        comet.batch_calls.load(Ordering::SeqCst),
        1,
        "PushMsgs asked once, then remembered as unsupported"
    );
}

/// Pushes hold the only HTTP/2 stream the comet allows; a health check
/// still answers at once, on its own connection.
#[tokio::test]
async fn health_checks_do_not_wait_behind_pushes() {
    let comet = Arc::new(OldComet {
        hang: true,
        ..OldComet::default()
    });
    let addr = serve(comet.clone(), "c1", 1).await;
    let probe = Duration::from_secs(2);
    let client = GrpcComet::new(&addr, probe, Duration::from_secs(60)).unwrap();
    let pushing = client.clone();
    let held = tokio::spawn(async move {
        let req = PushMsgReq {
            keys: vec!["k".into()],
            proto_op: 1000,
            ..PushMsgReq::default()
        };
        pushing.push_msg(req).await
    });
    tokio::time::timeout(Duration::from_secs(30), comet.pushed.notified())
        .await
        .expect("the push reached the comet");
    let started = tokio::time::Instant::now();
    assert!(
        client.serving("c1").await,
        "a health check behind a push holding the comet's only stream timed out"
    );
    assert!(started.elapsed() < probe);
    held.abort();
}
