//! Room pushes in the distributed mode go only to the comets holding the
//! room's members (issue 14, section 2), without losing the guarantee that a
//! client whose join was answered before a push was accepted receives it.
//! Every component is the built `rim` binary in its own process, on the
//! suite's real Kafka-protocol broker.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{redis_cluster_services, services, unique, Cluster, Options};
use parking_lot::Mutex;
use rim_proto::Op;
use rim_testkit::{poll, Client, Token};
use tokio::time::Instant;

/// Where each race room has members: comet indexes (comet 3 holds none).
const ROOMS: [&[usize]; 6] = [&[0, 1], &[1, 2], &[0, 2], &[0], &[1], &[2]];
/// Clients per (room, comet).
const PER_PAIR: usize = 4;
/// Room pushes in the race, spread over the rooms in turn.
const PUSHES: usize = 150;
/// How long the joins and the pushes race.
const RACE: Duration = Duration::from_millis(3000);

/// A client's join: its room and when the comet's op 25 reached it.
struct Joined {
    name: String,
    room: usize,
    answered: Instant,
    received: Arc<Mutex<BTreeSet<String>>>,
}

/// A room push: its room, its body, and the instant before its HTTP request.
struct Pushed {
    room: usize,
    body: String,
    sent: Instant,
}

/// A TCP forwarder to `target` that holds every chunk `delay` in each
/// direction, in order: a slow network between the race's comets and logic,
/// so that an announce takes longer than a push through Kafka, and a join
/// answered before its announce landed would lose the pushes that follow.
async fn slow_link(target: String, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (from_client, to_client) = inbound.into_split();
                let (from_target, to_target) = outbound.into_split();
                tokio::join!(
                    delayed(from_client, to_target, delay),
                    delayed(from_target, to_client, delay),
                );
            });
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// The sum of the samples of `name` (every label set) on a `/metrics` page.
async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Room push calls comet `i` took (`rim_comet_push_requests_total{kind="room"}`).
async fn room_calls(c: &Cluster, i: usize) -> f64 {
    let url = format!("http://{}/metrics", c.comets[i].addr("metrics"));
    metric(&url, "rim_comet_push_requests_total{kind=\"room\"}").await
}

fn room_id(room: usize) -> String {
    format!("race://{room}")
}

/// A connected client (no room yet) that joins `room` after `delay` with
/// op 24, notes when the answer came, then keeps every push it receives.
async fn racer(
    c: &Cluster,
    comet: usize,
    name: String,
    room: usize,
    delay: Duration,
) -> tokio::task::JoinHandle<Joined> {
    let mut client = Client::connect(c.comet_tcp(comet), false, &Token::new(0, &name, ""))
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let reply = client
            .request(
                Op::JoinRoom.code(),
                1,
                room_id(room).as_bytes(),
                Op::JoinRoomReply.code(),
            )
            .await
            .unwrap();
        let answered = Instant::now();
        assert_eq!(&reply.body[..], room_id(room).as_bytes(), "{name}");
        let received = Arc::new(Mutex::new(BTreeSet::new()));
        let keep = received.clone();
        tokio::spawn(async move {
            while let Ok(push) = client.next_push().await {
                keep.lock()
                    .insert(String::from_utf8_lossy(&push.body).into_owned());
            }
        });
        Joined {
            name,
            room,
            answered,
            received,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_pushes_reach_every_member_joined_before_them_and_only_comets_with_members() {
    let Some((kafka, _)) = services() else {
        return;
    };
    let mut o = Options::new(&kafka);
    // The race's comets are added below, behind a slow link to logic.
    o.comets = 0;
    o.wait_for_job = false;
    // Reports every 2 s: a room joined without an announce would reach the
    // records only with its comet's next report, seconds after the join,
    // and the pushes between would be lost (the race below sees it).
    o.report_interval = "2s";
    // Comet 3's records (through logic 2) live 12 s; the job counts a report
    // fresh for 8 s, so a record never lapses while its comet's report
    // looks fresh (the rule docs/protocol.md states). 8 s leaves the race's
    // comets, which report every 2 s over a slow link, room for a loaded
    // machine: a report seen as stale would be sent every room's pushes.
    o.comet_ttl = "8s";
    let mut c = Cluster::start("rooms", o).await;
    // Each comet -> logic call takes at least 2 x 400 ms: longer than a
    // push takes from the HTTP API through Kafka to the job's lookup.
    let link = slow_link(c.logic.addr("grpc"), Duration::from_millis(400)).await;
    for _ in 0..3 {
        c.add_comet_with(&link, "").await;
    }
    let logic2 = c.add_logic_with("online_stale = \"12s\"").await;
    let quiet = c
        .add_comet_with(
            &logic2.addr("grpc"),
            "logic_timeout = \"1s\"\nroom_announce_margin = \"10s\"",
        )
        .await;
    c.wait_for_comets(4).await;

    // Phase 1: clients join rooms (op 24) on comets 0 to 2 while room
    // pushes go out; the first join of a room on a comet announces it.
    let mut racers = Vec::new();
    let mut n = 0;
    for (room, comets) in ROOMS.iter().enumerate() {
        for &comet in comets.iter() {
            for _ in 0..PER_PAIR {
                // Spread over the race, the first ones at once.
                let delay = RACE * (n % 25) as u32 / 25;
                let name = format!("r{room}c{comet}n{n}");
                racers.push(racer(&c, comet, name, room, delay));
                n += 1;
            }
        }
    }
    // Connected together (each connect crosses the slow link).
    let tasks = futures_util::future::join_all(racers).await;
    let race_start = Instant::now();
    let mut pushed = Vec::new();
    for i in 0..PUSHES {
        let room = i % ROOMS.len();
        let body = format!("{}-{i}", room_id(room));
        let sent = Instant::now();
        c.http
            .push_ok(
                &format!("/goim/push/room?operation=1000&type=race&room={room}"),
                body.clone(),
            )
            .await;
        pushed.push(Pushed { room, body, sent });
        // Pushes over the whole race, joins in between.
        let due = race_start + RACE * (i + 1) as u32 / PUSHES as u32;
        tokio::time::sleep_until(due).await;
    }
    let mut joined = Vec::new();
    for task in tasks {
        joined.push(task.await.unwrap());
    }
    // Every client gets every push of its room sent after its join was
    // answered, and nothing of other rooms.
    let expected: HashMap<String, BTreeSet<String>> = joined
        .iter()
        .map(|j| {
            let want = pushed
                .iter()
                .filter(|p| p.room == j.room && p.sent > j.answered)
                .map(|p| p.body.clone())
                .collect();
            (j.name.clone(), want)
        })
        .collect();
    let must: usize = expected.values().map(BTreeSet::len).sum();
    assert!(
        must > PUSHES,
        "the race should leave most clients many pushes to receive: {must}"
    );
    poll::eventually(
        Duration::from_secs(60),
        Duration::from_millis(100),
        async || {
            for j in &joined {
                let got = j.received.lock().clone();
                let prefix = format!("{}-", room_id(j.room));
                if let Some(other) = got.iter().find(|b| !b.starts_with(&prefix)) {
                    panic!("{} got {other}, a push of another room", j.name);
                }
                let missing: Vec<&String> = expected[&j.name].difference(&got).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "{} (joined {:?} after the race began) misses {missing:?}",
                        j.name,
                        j.answered - race_start
                    ));
                }
            }
            Ok(())
        },
    )
    .await;
    // The comet without members got no room push at all; the others did.
    assert_eq!(
        room_calls(&c, quiet).await,
        0.0,
        "a comet with no member of any room is not called"
    );
    for i in 0..3 {
        assert!(room_calls(&c, i).await > 0.0, "comet {i}");
    }
    let job = format!("http://{}/metrics", c.job.addr("metrics"));
    // No batch went to more comets than its room has members on (2).
    let batches = metric(&job, "rim_job_room_batch_comets_count").await;
    assert!(batches > 0.0);
    assert_eq!(
        metric(&job, "rim_job_room_batch_comets_bucket{le=\"2\"}").await,
        batches,
        "every batch went to at most 2 comets"
    );
    assert!(metric(&job, "rim_job_room_lookups_total{result=\"ok\"}").await > 0.0);
    assert_eq!(
        metric(&job, "rim_job_room_lookups_total{result=\"failed\"}").await,
        0.0
    );

    // Phase 2: a member on the quiet comet is found through its record ...
    let mut member = Client::connect(c.comet_tcp(quiet), false, &Token::new(0, "q", ""))
        .await
        .unwrap();
    let reply = member
        .request(
            Op::JoinRoom.code(),
            1,
            b"race://0",
            Op::JoinRoomReply.code(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"race://0");
    c.http
        .push_ok(
            "/goim/push/room?operation=1000&type=race&room=0",
            "recorded",
        )
        .await;
    assert_eq!(&member.next_push().await.unwrap().body[..], b"recorded");
    // ... and once its logic stops relaying its reports, the record lapses
    // while the comet lives on: its report is stale, so it still gets the
    // room's pushes (fail open).
    logic2.signal("-STOP");
    let routers = c.routers_client();
    let quiet_id = c.comets[quiet].addr("server_id");
    poll::eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let servers = routers.room_servers(&["race://0".to_owned()]).await;
            match servers {
                Ok(s) if !s[0].contains(&quiet_id) => Ok(()),
                other => Err(format!(
                    "{quiet_id}'s record of race://0 still there: {other:?}"
                )),
            }
        },
    )
    .await;
    c.http
        .push_ok("/goim/push/room?operation=1000&type=race&room=0", "stale")
        .await;
    assert_eq!(&member.next_push().await.unwrap().body[..], b"stale");
    logic2.signal("-CONT");
}

/// Member-aware room pushes (`[job.room] targets = "members"`, the
/// default) with the room records on the suite's Redis Cluster: a member's
/// join is recorded there, the job's lookup finds it, and the push reaches
/// the member while the other comet is not called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_push_reaches_its_member_through_room_records_on_a_redis_cluster() {
    let Some((kafka, seeds)) = redis_cluster_services().await else {
        return;
    };
    let mut o = Options::on_redis_cluster(&kafka, seeds);
    // A comet whose report looks stale gets every room push (fail open):
    // room for a loaded machine before comet 2's report would.
    o.comet_ttl = "8s";
    let c = Cluster::start("rc-room", o).await;
    // A room of this test's own: the cluster is shared.
    let room = unique("r");
    let room_key = format!("rc://{room}");
    let mut member = Client::connect(c.comet_tcp(0), false, &Token::new(0, "", ""))
        .await
        .unwrap();
    let reply = member
        .request(
            Op::JoinRoom.code(),
            1,
            room_key.as_bytes(),
            Op::JoinRoomReply.code(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.body[..], room_key.as_bytes());
    // Comet 2 holds a client, in no room: without the records it would be
    // called too.
    let _other = Client::connect(c.comet_ws(1), true, &Token::new(0, "", ""))
        .await
        .unwrap();
    // The record is in the Redis Cluster, naming the member's comet only.
    let mut redis = c.redis_cluster().await;
    let record: Vec<String> = rim_redis::redis::cmd("ZRANGE")
        .arg(format!("rim_room:{{{room_key}}}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        record,
        [c.comets[0].addr("server_id")],
        "{room_key}'s record"
    );

    c.http
        .push_ok(
            &format!("/goim/push/room?operation=1000&type=rc&room={room}"),
            "to-members",
        )
        .await;
    let push = member
        .next_push_within(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the member gets the room push");
    assert_eq!(&push.body[..], b"to-members");
    assert!(
        room_calls(&c, 0).await > 0.0,
        "the member's comet was called"
    );
    assert_eq!(
        room_calls(&c, 1).await,
        0.0,
        "a comet with no member of the room is not called"
    );
    let job = format!("http://{}/metrics", c.job.addr("metrics"));
    assert!(metric(&job, "rim_job_room_lookups_total{result=\"ok\"}").await > 0.0);
    assert_eq!(
        metric(&job, "rim_job_room_lookups_total{result=\"failed\"}").await,
        0.0
    );
}
