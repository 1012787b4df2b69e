//! Room pushes with many comets (issue 14, section 2): comet calls and job
//! CPU per room push, every comet (`[job.room] targets = "all"`) against
//! the comets holding members (`"members"`, with the membership lookup in
//! an in-memory router shard, or in a real Redis used directly as the
//! router shard: `RIM_TEST_REDIS`, and `RIM_TEST_REDIS_CLUSTER` when set).
//!
//! 50 comets are tonic servers in this process that count and accept
//! `goim.comet.Comet` calls; 1,000 rooms each have members on 2 comets. A
//! round dispatches one push to every room (no two pushes of a room in
//! flight, so each push is one batch) and waits for every delivery. Job
//! runs on a runtime of its own (threads named `job`), the comets on
//! another (`comet`); job's CPU is the `job` threads' user + system time
//! from `/proc/self/task/*/stat` over the measured rounds (the gRPC
//! clients, the batchers, the routines and the lookups' Redis connection
//! all run there).
//!
//! `cargo bench -p rim-job --bench rooms` (docs/benchmark.md, "Rooms sent
//! only where their members are"). `ROOMS_BENCH_ROUNDS` (default 10) sets
//! the measured rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rim_job::grpc::GrpcComet;
use rim_job::{Config, Job, RoomConfig, RoomDirectory, RoomTargets};
use rim_proto::pb::comet::comet_server::{Comet as CometRpc, CometServer};
use rim_proto::pb::comet::{
    BroadcastReply, BroadcastReq, BroadcastRoomReply, BroadcastRoomReq, PushMsgReply, PushMsgReq,
    PushMsgsReply, PushMsgsReq, RoomsReply, RoomsReq,
};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_redis::Target;
use rim_router::{MemoryStore, RedisStore, Router, SessionStore};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

const COMETS: usize = 50;
const ROOMS: usize = 1000;
/// Comets holding members of each room.
const PER_ROOM: usize = 2;
const WARMUP_ROUNDS: usize = 2;

/// A comet that counts and accepts every call.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicU64>,
}

#[async_trait]
impl CometRpc for Counting {
    async fn push_msg(&self, _: Request<PushMsgReq>) -> Result<Response<PushMsgReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(PushMsgReply {}))
    }
    async fn push_msgs(&self, _: Request<PushMsgsReq>) -> Result<Response<PushMsgsReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(PushMsgsReply::default()))
    }
    async fn broadcast(
        &self,
        _: Request<BroadcastReq>,
    ) -> Result<Response<BroadcastReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(BroadcastReply {}))
    }
    async fn broadcast_room(
        &self,
        _: Request<BroadcastRoomReq>,
    ) -> Result<Response<BroadcastRoomReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(BroadcastRoomReply {}))
    }
    async fn rooms(&self, _: Request<RoomsReq>) -> Result<Response<RoomsReply>, Status> {
        Ok(Response::new(RoomsReply::default()))
    }
}

/// The room directory of a case: `None` for `targets = "all"`.
enum Store {
    All,
    Memory,
    Redis(Target),
}

impl Store {
    fn name(&self) -> String {
        match self {
            Store::All => "all".into(),
            Store::Memory => "members, memory shard".into(),
            Store::Redis(t) if t.is_cluster() => "members, Redis Cluster shard".into(),
            Store::Redis(_) => "members, Redis shard".into(),
        }
    }
}

/// User + system time of this process's threads named `name`, from
/// `/proc/self/task/*/stat` (in clock ticks of 10 ms, Linux's USER_HZ).
fn thread_cpu(name: &str) -> Duration {
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(name) {
            continue;
        }
        // After the comm: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
    }
    Duration::from_millis(ticks * 10)
}

fn room_push(room: usize) -> PushMsg {
    PushMsg {
        r#type: Type::Room as i32,
        operation: 1000,
        room: format!("bench://{room}"),
        msg: Bytes::from_static(b"room bench message body"),
        ..PushMsg::default()
    }
}

/// The comets (by index) holding members of `room`.
fn holders(room: usize) -> impl Iterator<Item = usize> {
    (0..PER_ROOM).map(move |i| (room + i * 7) % COMETS)
}

async fn directory(store: &Store, ids: &[String]) -> Option<Arc<Router>> {
    let shard: Arc<dyn SessionStore> = match store {
        Store::All => return None,
        Store::Memory => Arc::new(MemoryStore::new(Duration::from_secs(600))),
        Store::Redis(target) => Arc::new(
            RedisStore::with_target(target, Duration::from_secs(600), Duration::from_secs(2))
                .expect("redis target"),
        ),
    };
    let router = Router::new(vec![("r1".to_owned(), shard)]).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let rooms: Vec<String> = (0..ROOMS)
            .filter(|r| holders(*r).any(|c| c == i))
            .map(|r| format!("bench://{r}"))
            .collect();
        router
            .announce_rooms(id, &rooms, Duration::from_secs(600))
            .await
            .expect("room records written");
    }
    Some(Arc::new(router))
}

struct Figures {
    calls_per_push: f64,
    cpu_per_push: Duration,
    wall_per_round: Duration,
}

fn run_case(store: &Store, rounds: usize, comets: &[(String, String, Counting)]) -> Figures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("job")
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let targets = match store {
            Store::All => RoomTargets::All,
            _ => RoomTargets::Members,
        };
        let job = Job::new(Config {
            room: RoomConfig {
                targets,
                ..RoomConfig::default()
            },
            ..Config::default()
        });
        let ids: Vec<String> = comets.iter().map(|(id, _, _)| id.clone()).collect();
        for (id, addr, _) in comets {
            let client =
                GrpcComet::new(addr, Duration::from_secs(2), Duration::from_secs(5)).unwrap();
            job.add_comet(id, Arc::new(client));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        job.note_reports(
            ids.iter().map(|id| (id.as_str(), now)),
            Duration::from_secs(3600),
        );
        if let Some(router) = directory(store, &ids).await {
            let router: Arc<dyn RoomDirectory> = router;
            job.set_room_directory(router);
        }
        let round = || async {
            let mut deliveries = Vec::with_capacity(ROOMS);
            for room in 0..ROOMS {
                deliveries.push(job.dispatch(room_push(room)).await.unwrap());
            }
            for delivery in deliveries {
                delivery.await.expect("delivered");
            }
        };
        for _ in 0..WARMUP_ROUNDS {
            round().await;
        }
        let calls = |comets: &[(String, String, Counting)]| -> u64 {
            comets
                .iter()
                .map(|(_, _, c)| c.calls.load(Ordering::Relaxed))
                .sum()
        };
        let calls_before = calls(comets);
        let cpu_before = thread_cpu("job");
        let start = Instant::now();
        for _ in 0..rounds {
            round().await;
        }
        let wall = start.elapsed();
        let cpu = thread_cpu("job").saturating_sub(cpu_before);
        let pushes = (rounds * ROOMS) as u32;
        let made = calls(comets) - calls_before;
        job.shutdown().await;
        Figures {
            calls_per_push: made as f64 / f64::from(pushes),
            cpu_per_push: cpu / pushes,
            wall_per_round: wall / rounds as u32,
        }
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick {
        1
    } else {
        std::env::var("ROOMS_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(10)
    };
    let comet_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("comet")
        .enable_all()
        .build()
        .unwrap();
    let comets: Vec<(String, String, Counting)> = comet_runtime.block_on(async {
        let mut comets = Vec::new();
        for i in 0..COMETS {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let comet = Counting::default();
            let server = CometServer::new(comet.clone());
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(server)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            comets.push((format!("bench-comet-{i}"), addr, comet));
        }
        comets
    });
    let mut stores = vec![Store::All, Store::Memory];
    match std::env::var("RIM_TEST_REDIS") {
        Ok(url) if !url.is_empty() => stores.push(Store::Redis(Target::Node(url))),
        _ => eprintln!("RIM_TEST_REDIS not set: no Redis figures"),
    }
    if let Ok(seeds) = std::env::var("RIM_TEST_REDIS_CLUSTER") {
        if !seeds.is_empty() {
            stores.push(Store::Redis(Target::Cluster(
                seeds.split(',').map(str::to_owned).collect(),
            )));
        }
    }
    println!(
        "{COMETS} comets, {ROOMS} rooms with members on {PER_ROOM} comets each, {rounds} rounds of one push per room"
    );
    println!(
        "{:<30} {:>15} {:>18} {:>14}",
        "targets", "calls / push", "job CPU / push", "wall / round"
    );
    for store in &stores {
        let f = run_case(store, rounds, &comets);
        println!(
            "{:<30} {:>15.2} {:>15.1} µs {:>11.1} ms",
            store.name(),
            f.calls_per_push,
            f.cpu_per_push.as_secs_f64() * 1e6,
            f.wall_per_round.as_secs_f64() * 1e3
        );
    }
    drop(comet_runtime);
}
