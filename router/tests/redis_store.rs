//! The Redis shard against a real redis-server and a real Redis Cluster
//! (started by scripts/services.sh; their addresses come from
//! RIM_TEST_REDIS and RIM_TEST_REDIS_CLUSTER): the behaviour tests run on
//! both. Its timeouts against a Redis that hangs: a silent peer, and the
//! real Redis behind a frozen forwarder.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionLike;
use rim_redis::{Conn, Target};
use rim_router::{RedisStore, ServerOnline, SessionStore};
use rim_testkit::deadline::silent_tcp_peer;
use rim_testkit::services::{self, unique};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

const TTL: i64 = 60;

fn store(target: &Target) -> RedisStore {
    RedisStore::with_target(
        target,
        Duration::from_secs(TTL as u64),
        Duration::from_secs(2),
    )
    .expect("redis url parses")
}

/// A plain connection to look behind the store (a cluster connection on a
/// cluster, which routes each command to its key's node).
async fn raw(target: &Target) -> Conn {
    Conn::connect(target, Duration::from_secs(5)).await.unwrap()
}

async fn ttl(conn: &mut impl ConnectionLike, name: &str) -> i64 {
    redis::cmd("TTL").arg(name).query_async(conn).await.unwrap()
}

/// Lowers the TTL of `name` to 5 s, so a refresh is visible.
async fn lower_ttl(conn: &mut impl ConnectionLike, name: &str) {
    let set: bool = redis::cmd("EXPIRE")
        .arg(name)
        .arg(5)
        .query_async(conn)
        .await
        .unwrap();
    assert!(set, "{name} exists");
    assert!(ttl(conn, name).await <= 5);
}

rim_testkit::on_redis_node_and_cluster!(
    sessions_round_trip_in_goim_layout,
    online_reports_replace_old_rooms_and_list_servers,
    reads_of_many_users_span_slots,
    room_records_live_by_the_redis_clock_one_slot_each,
);

async fn sessions_round_trip_in_goim_layout(target: Target) {
    let store = store(&target);
    store.ping().await.expect("redis answers PING");
    let key = unique("key");
    let mid = (rand_suffix() >> 2) as i64;
    store.set_key(&key, "comet-a").await.unwrap();
    store.add_mid_key(mid, &key, "comet-a").await.unwrap();

    // goim's layout, readable by goim itself.
    let mut conn = raw(&target).await;
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("key_{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw.as_deref(), Some("comet-a"));
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("mid_{mid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(hash, HashMap::from([(key.clone(), "comet-a".to_owned())]));
    // Both expire unless refreshed (a mapping without a TTL outlives its comet).
    let key_ttl = ttl(&mut conn, &format!("key_{key}")).await;
    assert!((1..=TTL).contains(&key_ttl), "key_ ttl {key_ttl}");
    let mid_ttl = ttl(&mut conn, &format!("mid_{mid}")).await;
    assert!((1..=TTL).contains(&mid_ttl), "mid_ ttl {mid_ttl}");

    assert_eq!(
        store
            .get_keys(&[key.clone(), unique("missing")])
            .await
            .unwrap(),
        vec![Some("comet-a".into()), None]
    );
    assert_eq!(
        store.get_mids(&[mid]).await.unwrap(),
        vec![(key.clone(), "comet-a".into())]
    );
    // A heartbeat's refresh puts a lowered TTL back at the configured one.
    lower_ttl(&mut conn, &format!("key_{key}")).await;
    lower_ttl(&mut conn, &format!("mid_{mid}")).await;
    assert!(store.expire_key(&key).await.unwrap());
    assert!(store.expire_mid(mid).await.unwrap());
    let key_ttl = ttl(&mut conn, &format!("key_{key}")).await;
    assert!((TTL - 5..=TTL).contains(&key_ttl), "key_ ttl {key_ttl}");
    let mid_ttl = ttl(&mut conn, &format!("mid_{mid}")).await;
    assert!((TTL - 5..=TTL).contains(&mid_ttl), "mid_ ttl {mid_ttl}");

    // A newer session of the same key on another comet survives the old one's delete.
    store.set_key(&key, "comet-b").await.unwrap();
    store.add_mid_key(mid, &key, "comet-b").await.unwrap();
    assert!(!store.del_key(&key, "comet-a").await.unwrap());
    assert!(!store.del_mid_key(mid, &key, "comet-a").await.unwrap());
    assert_eq!(
        store.get_keys(std::slice::from_ref(&key)).await.unwrap(),
        vec![Some("comet-b".into())]
    );
    assert!(store.del_key(&key, "comet-b").await.unwrap());
    assert!(store.del_mid_key(mid, &key, "comet-b").await.unwrap());
    assert!(store.get_mids(&[mid]).await.unwrap().is_empty());
    assert!(!store.expire_key(&key).await.unwrap());
}

async fn online_reports_replace_old_rooms_and_list_servers(target: Target) {
    let store = store(&target);
    let server = unique("comet");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut report = ServerOnline {
        server: server.clone(),
        room_count: HashMap::from([("live://1".into(), 3), ("live://2".into(), 1)]),
        conn_count: 4,
        ip_count: 2,
        addrs: vec!["127.0.0.1:3101".into()],
        weight: 1,
        updated: now,
        grpc_addr: "127.0.0.1:3109".into(),
    };
    store.put_online(&report).await.unwrap();
    report.room_count = HashMap::from([("live://1".into(), 2)]);
    store.put_online(&report).await.unwrap();
    let all = store.online().await.unwrap();
    let mine: Vec<&ServerOnline> = all.iter().filter(|r| r.server == server).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0], &report, "live://2 emptied and must not linger");
    // A report expires unless the comet reports again (the rewrite keeps the TTL).
    let mut conn = raw(&target).await;
    let report_ttl = ttl(&mut conn, &format!("ol_{server}")).await;
    assert!((1..=TTL).contains(&report_ttl), "ol_ ttl {report_ttl}");

    let key = unique("key");
    store.set_key(&key, &server).await.unwrap();
    assert_eq!(store.del_server(&server).await.unwrap(), 1);
    assert!(store
        .online()
        .await
        .unwrap()
        .iter()
        .all(|r| r.server != server));
    assert_eq!(store.get_keys(&[key]).await.unwrap(), vec![None]);
}

/// Lookups of many users and keys, whose records sit in many slots (on a
/// cluster: on every master), answer them all; `del_server` finds the
/// records of a comet on every master.
async fn reads_of_many_users_span_slots(target: Target) {
    let store = store(&target);
    let base = (rand_suffix() >> 8) as i64;
    let server = unique("comet");
    let mids: Vec<i64> = (0..60).map(|i| base + i).collect();
    let keys: Vec<String> = (0..60).map(|i| unique(&format!("key{i}"))).collect();
    for (mid, key) in mids.iter().zip(&keys) {
        store.set_key(key, &server).await.unwrap();
        store.add_mid_key(*mid, key, &server).await.unwrap();
    }
    if target.is_cluster() {
        // The records really are spread: 60 keys land in all three masters'
        // slot ranges (0-5460, 5461-10922, 10923-16383) all but surely.
        let mut conn = raw(&target).await;
        let mut ranges = std::collections::HashSet::new();
        for key in &keys {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("key_{key}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            ranges.insert(slot * 3 / 16384);
        }
        assert_eq!(ranges.len(), 3, "keys spread over every master");
    }
    let mut want: Vec<(String, String)> =
        keys.iter().map(|k| (k.clone(), server.clone())).collect();
    let mut got = store.get_mids(&mids).await.unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let servers = store.get_keys(&keys).await.unwrap();
    assert_eq!(servers, vec![Some(server.clone()); keys.len()]);

    assert_eq!(store.del_server(&server).await.unwrap(), keys.len() as u64);
    assert_eq!(store.get_keys(&keys).await.unwrap(), vec![None; keys.len()]);
    assert!(store.get_mids(&mids).await.unwrap().is_empty());
}

/// Room membership records: one sorted set per room, hash-tagged by the
/// room (on a cluster the 40 rooms spread over every master), answered in
/// order; a record lives its ttl by Redis's clock, a shorter ttl never
/// shortens it, and the key goes away with its last record.
async fn room_records_live_by_the_redis_clock_one_slot_each(target: Target) {
    let store = store(&target);
    let (a, b, c) = (unique("comet-a"), unique("comet-b"), unique("comet-c"));
    let rooms: Vec<String> = (0..40).map(|i| unique(&format!("live://{i}"))).collect();
    let long = Duration::from_secs(60);
    store.announce_rooms(&a, &rooms, long).await.unwrap();
    store.announce_rooms(&b, &rooms[..20], long).await.unwrap();
    let mut asked = rooms.clone();
    asked.push(unique("live://nobody"));
    let servers = store.room_servers(&asked).await.unwrap();
    assert_eq!(servers.len(), asked.len());
    for (i, mut servers) in servers.into_iter().enumerate() {
        servers.sort();
        let mut want = match i {
            0..=19 => vec![a.clone(), b.clone()],
            20..=39 => vec![a.clone()],
            _ => vec![],
        };
        want.sort();
        assert_eq!(servers, want, "room {i}");
    }
    let mut conn = raw(&target).await;
    let name = format!("rim_room:{{{}}}", rooms[0]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((50_000..=60_000).contains(&pttl), "{name} pttl {pttl}");
    let score: f64 = redis::cmd("ZSCORE")
        .arg(&name)
        .arg(&a)
        .query_async(&mut conn)
        .await
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        (score - now_ms - 60_000.0).abs() < 10_000.0,
        "the score is the record's expiry in Unix ms: {score} vs now {now_ms}"
    );
    if target.is_cluster() {
        let mut ranges = std::collections::HashSet::new();
        for room in &rooms {
            let slot: i64 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(format!("rim_room:{{{room}}}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            ranges.insert(slot * 3 / 16384);
        }
        assert_eq!(ranges.len(), 3, "rooms spread over every master");
    }

    // A short record expires by itself; a shorter ttl leaves a longer record.
    let room = &rooms[0];
    store
        .announce_rooms(&c, std::slice::from_ref(room), Duration::from_millis(300))
        .await
        .unwrap();
    store
        .announce_rooms(&a, std::slice::from_ref(room), Duration::from_millis(1))
        .await
        .unwrap();
    let mut with_c = store
        .room_servers(std::slice::from_ref(room))
        .await
        .unwrap();
    with_c[0].sort();
    let mut want = vec![a.clone(), b.clone(), c.clone()];
    want.sort();
    assert_eq!(with_c[0], want);
    rim_testkit::poll::eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || {
            let servers = store
                .room_servers(std::slice::from_ref(room))
                .await
                .unwrap();
            if servers[0].contains(&c) {
                Err(format!("{c} still listed: {servers:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    let mut left = store
        .room_servers(std::slice::from_ref(room))
        .await
        .unwrap();
    left[0].sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(left[0], want, "the 60 s records stay");

    // A room whose only record expired has no key left.
    let brief = unique("live://brief");
    store
        .announce_rooms(&c, std::slice::from_ref(&brief), Duration::from_millis(200))
        .await
        .unwrap();
    let brief_key = format!("rim_room:{{{brief}}}");
    rim_testkit::poll::eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(&brief_key)
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            if exists == 0 {
                Ok(())
            } else {
                Err(format!("{brief_key} still exists"))
            }
        },
    )
    .await;
    assert_eq!(
        store.room_servers(&[brief]).await.unwrap(),
        vec![Vec::<String>::new()]
    );
}

/// A Redis that lost its scripts (restarted, or a replica promoted) gets
/// them again: the room calls keep working. On a private redis-server, so
/// that flushing its scripts disturbs no other test.
#[tokio::test]
async fn room_scripts_are_loaded_again_when_the_server_lost_them() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _server = KillOnDrop(
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (installed by scripts/services.sh)"),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let target = Target::Node(url.clone());
    rim_testkit::poll::eventually(
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || match Conn::connect(&target, Duration::from_secs(1)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("private redis-server on {port}: {e}")),
        },
    )
    .await;
    let store = store(&target);
    let rooms = vec!["live://1".to_owned()];
    store
        .announce_rooms("c1", &rooms, Duration::from_secs(60))
        .await
        .unwrap();
    let mut conn = raw(&target).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        store.room_servers(&rooms).await.unwrap(),
        vec![vec!["c1".to_owned()]]
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    store
        .announce_rooms("c2", &rooms, Duration::from_secs(60))
        .await
        .unwrap();
    let mut servers = store.room_servers(&rooms).await.unwrap();
    servers[0].sort();
    assert_eq!(servers, vec![vec!["c1".to_owned(), "c2".to_owned()]]);
}

/// A child process killed (and reaped) when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The timeout the hung-Redis tests give the store.
const TIMEOUT: Duration = Duration::from_millis(300);

/// How long a command may take against a Redis that never answers
/// (`RedisStore::new`, router/src/registry/redis.rs): while connecting, each
/// of the 1 + 2 retried attempts times out after `TIMEOUT`, with a backoff of
/// at most 100 + 200 ms plus as much jitter between them; an established
/// connection fails the command after one `TIMEOUT`. Plus 500 ms of slack
/// for a loaded machine. A timeout that stacks or an extra retry overruns it.
const HUNG_BOUND: Duration = Duration::from_millis(3 * 300 + 2 * 300 + 500);

/// Runs `call` and fails the test unless it ended, as an error, within
/// [`HUNG_BOUND`] and not before the store's [`TIMEOUT`] (less timer slack).
async fn fails_within_bound<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, rim_router::StoreError>>,
) -> rim_router::StoreError {
    let started = Instant::now();
    let out = tokio::time::timeout(HUNG_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after {HUNG_BOUND:?}"));
    let elapsed = started.elapsed();
    let err = out.expect_err(what);
    assert!(
        elapsed >= TIMEOUT - Duration::from_millis(50),
        "{what}: failed after {elapsed:?}, before its {TIMEOUT:?} timeout: {err}"
    );
    assert!(err.to_string().contains("redis"), "{what}: {err}");
    err
}

#[tokio::test]
async fn redis_that_never_answers_fails_commands_within_the_bound() {
    // Accepts the connection and never sends a byte, so the connection
    // setup never completes.
    let peer = silent_tcp_peer().await;
    let store = RedisStore::new(
        &format!("redis://{peer}/"),
        Duration::from_secs(60),
        TIMEOUT,
    )
    .unwrap();
    fails_within_bound("set_key", store.set_key("k", "c")).await;
    fails_within_bound("get_keys", store.get_keys(&["k".to_owned()])).await;
}

/// Forwards connections to `target` until `freeze` is cancelled, then
/// forwards nothing more but keeps every connection open: a Redis that hung.
async fn freezable_forwarder(target: String, freeze: CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            let freeze = freeze.clone();
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(&target).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = freeze.cancelled() => std::future::pending().await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn redis_that_hangs_after_connecting_fails_commands_within_the_bound() {
    let Some(url) = services::redis() else { return };
    let rest = url.strip_prefix("redis://").expect("a redis:// URL");
    let (target, db) = rest.split_once('/').unwrap_or((rest, ""));
    let freeze = CancellationToken::new();
    let forwarder = freezable_forwarder(target.to_owned(), freeze.clone()).await;
    let store = RedisStore::new(
        &format!("redis://{forwarder}/{db}"),
        Duration::from_secs(60),
        TIMEOUT,
    )
    .unwrap();
    let key = unique("key");
    store
        .set_key(&key, "comet-a")
        .await
        .expect("redis reachable");

    freeze.cancel();
    fails_within_bound(
        "set_key on a hung connection",
        store.set_key(&key, "comet-b"),
    )
    .await;
    fails_within_bound("get_keys on a hung connection", store.get_keys(&[key])).await;
}

#[tokio::test]
async fn refused_redis_connection_fails_fast_with_a_clear_error() {
    // Port 1 on loopback refuses connections; no service needed for this test.
    let store = RedisStore::new("redis://127.0.0.1:1/", Duration::from_secs(60), TIMEOUT).unwrap();
    let started = Instant::now();
    let err = store.set_key("k", "c").await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(
        started.elapsed() < HUNG_BOUND,
        "took {:?}",
        started.elapsed()
    );
}
