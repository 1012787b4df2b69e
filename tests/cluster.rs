//! The distributed mode, end to end: every component is the built `rim`
//! binary in its own process, connected through the suite's real Kafka-protocol
//! broker (Tansu) and real Redis, and faults are real process kills.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{
    free_port, redis_cluster_services, services, unique, unique_mid, wait_for_job_comets, Cluster,
    Gate, Options, RedisProc,
};
use common::Http;
use parking_lot::Mutex;
use rim_proto::{Frame, Op};
use rim_testkit::{poll, Client, Incoming, Token};
use tokio::process::Command;

const FIRST: Duration = Duration::from_secs(60);

fn opts(kafka: &str) -> Options {
    Options::new(kafka)
}

/// Redis database `n` of the suite's Redis, emptied, as a URL. Each test on
/// the suite's Redis has a database of its own (they run concurrently): 3
/// pushes, 4 cold start, 5 router restart.
fn empty_redis_db(redis: &str, n: u8) -> String {
    let db = format!("{}/{n}", redis.trim_end_matches('/'));
    let flushed = std::process::Command::new("redis-cli")
        .args(["-u", &db, "FLUSHDB"])
        .status()
        .unwrap();
    assert!(flushed.success(), "redis-cli FLUSHDB on {db}");
    db
}

/// Reads pushes until every `expected` body arrived; fails on any other body.
async fn expect_exactly(client: &mut Client, who: &str, expected: &[&str]) {
    let mut missing: HashSet<String> = expected.iter().map(|s| s.to_string()).collect();
    while !missing.is_empty() {
        let push = client
            .next_push_within(FIRST)
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"))
            .unwrap_or_else(|| panic!("{who}: still missing {missing:?}"));
        let body = String::from_utf8_lossy(&push.body).into_owned();
        assert!(
            missing.remove(&body),
            "{who} received {body:?}, which was not meant for it (missing {missing:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_type_reaches_exactly_the_right_clients_through_kafka() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    // Both routers on one Redis (a database of its own, emptied first), as
    // in production: every comet must still be counted once.
    let db = empty_redis_db(&redis, 3);
    let mut o = opts(&kafka);
    o.redis = Some(db);
    let c = Cluster::start("pushes", o).await;
    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(1, "pa", "live://1"))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_ws(1), true, &Token::new(2, "pb", "live://1"))
        .await
        .unwrap();
    let mut d = Client::connect(c.comet_tcp(1), false, &Token::new(3, "pd", "live://2"))
        .await
        .unwrap();
    // e accepts nothing and is in live://1 only through op 24: room pushes
    // through Kafka reach joined rooms, and goim v1's pushes skip accepts.
    let mut e_token = Token::new(5, "pe", "live://3");
    e_token.accepts.clear();
    let mut e = Client::connect(c.comet_tcp(1), false, &e_token)
        .await
        .unwrap();
    let reply = e
        .request(
            Op::JoinRoom.code(),
            2,
            b"live://1",
            Op::JoinRoomReply.code(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"live://1");

    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=pa", "keys-a")
        .await;
    c.http
        .push_ok("/goim/push/mids?operation=1000&mids=2", "mids-b")
        .await;
    c.http
        .push_ok("/goim/push/room?operation=1000&type=live&room=1", "room-1")
        .await;
    c.http
        .push_v1_ok("/1/push?uid=3&operation=1001", "v1-d")
        .await;
    c.http
        .push_v1_ok("/1/pushs?operation=1000", r#"{"m":"v1s","u":[1,3]}"#)
        .await;
    c.http
        .push_v1_ok("/1/push/room?rid=live://2&operation=1000", "v1-room-2")
        .await;
    c.http
        .push_ok("/goim/push/all?operation=1002&speed=10", "all")
        .await;
    c.http
        .push_v1_ok("/1/push/all?operation=1000", "v1-all")
        .await;

    expect_exactly(
        &mut a,
        "a",
        &["keys-a", "room-1", "\"v1s\"", "all", "v1-all"],
    )
    .await;
    expect_exactly(&mut b, "b", &["mids-b", "room-1", "all", "v1-all"]).await;
    expect_exactly(
        &mut d,
        "d",
        &["v1-d", "\"v1s\"", "v1-room-2", "all", "v1-all"],
    )
    .await;
    expect_exactly(&mut e, "e", &["room-1", "v1-all"]).await;
    for (client, who) in [(&mut a, "a"), (&mut b, "b"), (&mut d, "d"), (&mut e, "e")] {
        client
            .expect_no_push(Duration::from_millis(300))
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }

    // Online counts aggregate across both comets, every membership counted.
    c.http
        .get_until("/goim/online/total", |j| j["data"]["conn_count"] == 4)
        .await;
    c.http
        .get_until("/goim/online/room?type=live&rooms=1&rooms=2&rooms=3", |j| {
            j["data"]["1"] == 3 && j["data"]["2"] == 1 && j["data"]["3"] == 1
        })
        .await;
    let instances = c.http.get("/goim/nodes/instances").await.unwrap().json;
    assert_eq!(
        instances["data"].as_array().map(Vec::len),
        Some(2),
        "{instances}"
    );
    // The cluster-wide count reaches clients through the heartbeat reply.
    let mut seq = 10;
    poll::eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let count = a.heartbeat(seq).await.unwrap();
            seq += 1;
            if count == 3 {
                Ok(())
            } else {
                Err(format!(
                    "heartbeat never carried the cluster count (last {count})"
                ))
            }
        },
    )
    .await;

    // Every service exposes what this traffic did on /metrics.
    let logic = format!("http://{}/metrics", c.logic.addr("http"));
    scrape_until(
        &logic,
        &[
            "rim_logic_pushes_total{type=\"keys\"}",
            "rim_logic_pushes_total{type=\"room\"}",
            "rim_logic_kafka_produce_seconds_count",
            "rim_logic_connects_total{result=\"ok\"}",
        ],
    )
    .await;
    let router = format!("http://{}/metrics", c.routers[0].addr("metrics"));
    scrape_until(
        &router,
        &["rim_router_request_seconds_bucket{method=\"add_mid_key\""],
    )
    .await;
    let comet = format!("http://{}/metrics", c.comets[0].addr("metrics"));
    scrape_until(
        &comet,
        &["rim_comet_connections", "rim_comet_enqueued_messages_total"],
    )
    .await;
    let job = format!("http://{}/metrics", c.job.addr("metrics"));
    scrape_until(
        &job,
        &[
            "rim_job_pushes_total{type=\"push\"}",
            "rim_job_pushes_total{type=\"room\"}",
            "rim_job_pushes_total{type=\"broadcast\"}",
            "rim_job_kafka_consume_lag_seconds_count",
            "rim_job_kafka_consumer_lag_messages{",
        ],
    )
    .await;
}

/// Logic and job using the routers' Redis themselves (`[[routers]]
/// redis_url`, no router process on the path): keyed pushes by key and by
/// user, a user on both comets included, reach exactly their clients, and
/// the router processes are never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_pushes_reach_their_clients_with_the_routers_redis_used_directly() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    let db = empty_redis_db(&redis, 6);
    let mut o = opts(&kafka);
    o.redis = Some(db);
    o.direct_redis = true;
    let c = Cluster::start("direct", o).await;
    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(1, "da", "live://1"))
        .await
        .unwrap();
    let mut a2 = Client::connect(c.comet_ws(1), true, &Token::new(1, "da2", "live://1"))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_tcp(1), false, &Token::new(2, "db", "live://1"))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=da&keys=db", "keys")
        .await;
    c.http
        .push_ok("/goim/push/mids?operation=1000&mids=1", "mid-1")
        .await;
    c.http
        .push_ok("/goim/push/mids?operation=1000&mids=1&mids=2", "mids-1-2")
        .await;
    c.http
        .push_v1_ok("/1/push?uid=2&operation=1000", "v1-2")
        .await;
    expect_exactly(&mut a, "a", &["keys", "mid-1", "mids-1-2"]).await;
    expect_exactly(&mut a2, "a2", &["mid-1", "mids-1-2"]).await;
    expect_exactly(&mut b, "b", &["keys", "mids-1-2", "v1-2"]).await;
    for (client, who) in [(&mut a, "a"), (&mut a2, "a2"), (&mut b, "b")] {
        client
            .expect_no_push(Duration::from_millis(300))
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }
    for router in &c.routers {
        let url = format!("http://{}/metrics", router.addr("metrics"));
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(
            !text.contains("rim_router_request_seconds"),
            "a router was called although logic and job use its Redis: {text}"
        );
    }
}

/// Keyed pushes by key and by user, a user on both comets included, reach
/// exactly their clients, with the sessions on the suite's Redis Cluster
/// (keys, mids of their own: the cluster is shared); then the sessions are
/// looked up in the cluster itself. Answers whether any router process
/// was asked (`rim_router_request_seconds` on a router's metrics).
async fn keyed_pushes_on_a_redis_cluster(c: &Cluster) -> bool {
    let (m1, m2) = (unique_mid(), unique_mid());
    let [ka, ka2, kb] = ["a", "a2", "b"].map(|k| unique(&format!("{}-{k}", c.name)));
    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(m1, &ka, ""))
        .await
        .unwrap();
    let mut a2 = Client::connect(c.comet_ws(1), true, &Token::new(m1, &ka2, ""))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_tcp(1), false, &Token::new(m2, &kb, ""))
        .await
        .unwrap();
    c.http
        .push_ok(
            &format!("/goim/push/keys?operation=1000&keys={ka}&keys={kb}"),
            "keys",
        )
        .await;
    c.http
        .push_ok(
            &format!("/goim/push/mids?operation=1000&mids={m1}"),
            "mid-1",
        )
        .await;
    c.http
        .push_ok(
            &format!("/goim/push/mids?operation=1000&mids={m1}&mids={m2}"),
            "mids-1-2",
        )
        .await;
    expect_exactly(&mut a, "a", &["keys", "mid-1", "mids-1-2"]).await;
    expect_exactly(&mut a2, "a2", &["mid-1", "mids-1-2"]).await;
    expect_exactly(&mut b, "b", &["keys", "mids-1-2"]).await;
    for (client, who) in [(&mut a, "a"), (&mut a2, "a2"), (&mut b, "b")] {
        client
            .expect_no_push(Duration::from_millis(300))
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }
    // The sessions are in the Redis Cluster, in goim's layout.
    let (comet1, comet2) = (c.comets[0].addr("server_id"), c.comets[1].addr("server_id"));
    let mut redis = c.redis_cluster().await;
    let cmd = rim_redis::redis::cmd;
    let at: Option<String> = cmd("GET")
        .arg(format!("key_{kb}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(at, Some(comet2.clone()), "key_{kb} in the Redis Cluster");
    let sessions: std::collections::HashMap<String, String> = cmd("HGETALL")
        .arg(format!("mid_{m1}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        sessions,
        [(ka, comet1), (ka2, comet2)].into_iter().collect(),
        "mid_{m1} in the Redis Cluster"
    );
    let mut asked = false;
    for router in &c.routers {
        let url = format!("http://{}/metrics", router.addr("metrics"));
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        asked |= text.contains("rim_router_request_seconds");
    }
    asked
}

/// The routers as processes keeping the sessions on the suite's Redis
/// Cluster (`router.toml` `redis_cluster`): logic and job call them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_pushes_reach_their_clients_with_the_routers_on_a_redis_cluster() {
    let Some((kafka, seeds)) = redis_cluster_services().await else {
        return;
    };
    let c = Cluster::start("rc-keys", Options::on_redis_cluster(&kafka, seeds)).await;
    assert!(
        keyed_pushes_on_a_redis_cluster(&c).await,
        "logic resolves keys through the router processes"
    );
}

/// Logic and job using the routers' Redis Cluster themselves (`[[routers]]
/// redis_cluster`): the same pushes arrive, and no router process is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_pushes_reach_their_clients_with_the_routers_redis_cluster_used_directly() {
    let Some((kafka, seeds)) = redis_cluster_services().await else {
        return;
    };
    let mut o = Options::on_redis_cluster(&kafka, seeds);
    o.direct_redis = true;
    let c = Cluster::start("rc-direct", o).await;
    assert!(
        !keyed_pushes_on_a_redis_cluster(&c).await,
        "a router was called although logic and job use its Redis Cluster"
    );
}

/// Reads `url` until its Prometheus text has a sample starting with each of
/// `wanted` whose value is not 0 (gauges such as the consumer lag may be 0:
/// those are given with a trailing `{` and only need to exist).
async fn scrape_until(url: &str, wanted: &[&str]) {
    poll::eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        async || {
            let text = match reqwest::get(url).await {
                Ok(resp) => resp.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let missing: Vec<&&str> = wanted
                .iter()
                .filter(|w| {
                    !text.lines().any(|l| {
                        l.starts_with(**w)
                            && (w.ends_with('{') || l.rsplit(' ').next().is_some_and(|v| v != "0"))
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{url} lacks {missing:?}:\n{text}"))
            }
        },
    )
    .await
}

/// Collects every push body a client receives, in the background; how the
/// stream ended (if it did) is recorded as the entry `"END: <reason>"`.
fn collect(mut client: Client) -> Arc<Mutex<HashSet<String>>> {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let end = loop {
            match client.next_push_within(Duration::from_secs(600)).await {
                Ok(Some(push)) => {
                    out.lock()
                        .insert(String::from_utf8_lossy(&push.body).into_owned());
                }
                Ok(None) => break "no push for 600 s or connection closed".to_owned(),
                Err(e) => break format!("{e:#}"),
            }
        };
        out.lock().insert(format!("END: {end}"));
    });
    seen
}

async fn wait_for_all(
    seen: &Mutex<HashSet<String>>,
    accepted: &[String],
    who: &str,
    c: &Cluster,
    diagnostics: &dyn Fn() -> String,
) {
    let all_seen = poll::until_ok(
        Duration::from_secs(90),
        Duration::from_millis(100),
        async || {
            let missing: Vec<String> = {
                let seen = seen.lock();
                accepted
                    .iter()
                    .filter(|m| !seen.contains(*m))
                    .cloned()
                    .collect()
            };
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing)
            }
        },
    )
    .await;
    if let Err(missing) = all_seen {
        let mut metrics = String::new();
        for p in c.comets.iter().chain([&c.job]) {
            let url = format!("http://{}/metrics", p.addr("metrics"));
            if let Ok(resp) = reqwest::get(&url).await {
                let text = resp.text().await.unwrap_or_default();
                for line in text.lines().filter(|l| {
                    !l.starts_with('#')
                        && (l.contains("dropped")
                            || l.contains("filtered")
                            || l.contains("enqueued")
                            || l.contains("push_requests")
                            || l.contains("rim_job_comets")
                            || l.contains("sessions"))
                }) {
                    metrics.push_str(&format!("{}: {line}\n", p.name));
                }
            }
        }
        panic!(
            "{who} lost {} accepted messages, e.g. {:?}\nmetrics:\n{metrics}{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            diagnostics()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_killed_mid_stream_and_restarted_loses_nothing() {
    let Some((kafka, _)) = services() else { return };
    let mut c = Cluster::start("killjob", opts(&kafka)).await;
    let x = Client::connect(c.comet_tcp(0), false, &Token::new(10, "kx", "live://k"))
        .await
        .unwrap();
    let y = Client::connect(c.comet_ws(1), true, &Token::new(11, "ky", "live://k"))
        .await
        .unwrap();
    let (seen_x, seen_y) = (collect(x), collect(y));

    let http = c.http.clone();
    let pusher = tokio::spawn(async move {
        let (mut accepted, mut refused) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let body = format!("n{i}");
            let path = if i % 2 == 0 {
                "/goim/push/mids?operation=1000&mids=10&mids=11"
            } else {
                "/goim/push/room?operation=1000&type=live&room=k"
            };
            let reply = http.post(path, body.clone()).await.unwrap();
            if reply.status == 200 {
                accepted.push(body);
            } else {
                refused.push(format!("{body}: {} {}", reply.status, reply.json));
            }
        }
        (accepted, refused)
    });
    // Kill the job once deliveries are flowing.
    poll::eventually(FIRST, Duration::from_millis(20), async || {
        let seen = seen_x.lock().len();
        if seen >= 40 {
            Ok(())
        } else {
            Err(format!("no deliveries before the kill ({seen} of 40)"))
        }
    })
    .await;
    c.job.kill9().await;
    c.restart_job().await;
    let (accepted, refused) = pusher.await.unwrap();
    // Kafka was up throughout and the job is not on the push path: with a
    // 15 s `kafka_timeout` a refusal needs the broker stalled for 15 s. A
    // handful are tolerated (a machine loaded by other suites), no more.
    assert!(
        refused.len() <= 5,
        "logic refused {} pushes while Kafka was up: {refused:?}",
        refused.len()
    );
    let diagnostics = || {
        let mut y_missing: Vec<&String> = {
            let seen = seen_y.lock();
            accepted.iter().filter(|m| !seen.contains(*m)).collect()
        };
        y_missing.truncate(20);
        let ends: Vec<String> = [&seen_x, &seen_y]
            .iter()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .filter(|m| m.starts_with("END"))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        let numbers = |seen: &Mutex<HashSet<String>>| {
            let mut n: Vec<u32> = seen
                .lock()
                .iter()
                .filter_map(|m| m.strip_prefix('n')?.parse().ok())
                .collect();
            n.sort_unstable();
            n
        };
        format!(
            "x saw {:?}\ny saw {:?}\nclient on comet 2 misses e.g. {y_missing:?}\nclient streams ended: {ends:?}\ncomet logs:\n{}\n{}\nrestarted job log:\n{}\nlogic log:\n{}",
            numbers(&seen_x),
            numbers(&seen_y),
            c.comets[0].log(),
            c.comets[1].log(),
            c.job.log(),
            c.logic.log()
        )
    };
    wait_for_all(&seen_x, &accepted, "client on comet 1", &c, &diagnostics).await;
    wait_for_all(&seen_y, &accepted, "client on comet 2", &c, &diagnostics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_comet_does_not_stop_delivery_to_the_others() {
    let Some((kafka, _)) = services() else { return };
    let mut c = Cluster::start("killcomet", opts(&kafka)).await;
    let mut live = Client::connect(c.comet_tcp(0), false, &Token::new(20, "live", "live://d"))
        .await
        .unwrap();
    let _doomed = Client::connect(c.comet_tcp(1), false, &Token::new(21, "doomed", "live://d"))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/room?operation=1000&type=live&room=d", "before")
        .await;
    expect_exactly(&mut live, "live", &["before"]).await;

    let job_metrics = format!("http://{}/metrics", c.job.addr("metrics"));
    const DEAD_COMET: [&str; 2] = ["comet_unavailable", "unknown_comet"];
    let dropped_before = job_drops(&job_metrics, &DEAD_COMET).await;
    c.comets[1].kill9().await;
    let mut expected = Vec::new();
    // Pushes for the dead comet's client: logic still routes them there
    // (the session was never removed), and job must give them up, counted.
    let mut for_the_dead = 0;
    for i in 0..20 {
        let room = format!("room-{i}");
        let key = format!("key-{i}");
        c.http
            .post(
                "/goim/push/room?operation=1000&type=live&room=d",
                room.clone(),
            )
            .await
            .unwrap();
        c.http
            .post("/goim/push/keys?operation=1000&keys=live", key.clone())
            .await
            .unwrap();
        let doomed = c
            .http
            .post(
                "/goim/push/keys?operation=1000&keys=doomed",
                format!("doomed-{i}"),
            )
            .await
            .unwrap();
        if doomed.status == 200 {
            for_the_dead += 1;
        }
        expected.push(room);
        expected.push(key);
    }
    assert!(for_the_dead > 0, "no push for the dead comet was accepted");
    c.http.push_ok("/goim/push/all?operation=1000", "all").await;
    expected.push("all".into());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expect_exactly(&mut live, "live", &expected).await;
    // README: a dead comet's pushes fail at once, counted. The keyed pushes
    // for its client alone are `for_the_dead` drops (room pushes add more
    // while job still knows the comet).
    poll::eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        async || {
            let dropped = job_drops(&job_metrics, &DEAD_COMET).await - dropped_before;
            if dropped >= f64::from(for_the_dead) {
                Ok(())
            } else {
                Err(format!(
                    "job counted {dropped} drops for the dead comet, \
                     expected at least {for_the_dead}"
                ))
            }
        },
    )
    .await;
    // The dead comet's registry entry expires and job forgets it.
    c.wait_for_comets(1).await;
}

/// `rim_job_dropped_total` at `url`, summed over `reasons`.
async fn job_drops(url: &str, reasons: &[&str]) -> f64 {
    let mut sum = 0.0;
    for reason in reasons {
        sum += metric_sum(
            url,
            &format!("rim_job_dropped_total{{reason=\"{reason}\"}}"),
        )
        .await;
    }
    sum
}

/// The sum of the samples at `url` whose name and labels start with
/// `prefix`; 0 when there is none (a counter not yet incremented).
async fn metric_sum(url: &str, prefix: &str) -> f64 {
    let text = match reqwest::get(url).await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A private Tansu broker for tests that stop it.
struct Broker {
    child: tokio::process::Child,
    addr: String,
}

impl Broker {
    async fn start() -> Broker {
        let port = free_port();
        Broker::launch(port, &format!("127.0.0.1:{port}")).await
    }

    /// A broker that advertises an open gate in front of it, so that every
    /// client connection (not only the bootstrap) goes through the gate.
    async fn behind_gate() -> (Broker, Gate) {
        let port = free_port();
        let gate = Gate::closed(&format!("127.0.0.1:{port}")).await;
        gate.open();
        let broker = Broker::launch(port, &gate.addr.to_string()).await;
        (broker, gate)
    }

    /// Starts tansu on `port`, advertising `advertised` (`addr` below).
    async fn launch(port: u16, advertised: &str) -> Broker {
        let tansu =
            std::env::var("RIM_TEST_TANSU").expect("RIM_TEST_TANSU (scripts/services.sh env)");
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &format!("tcp://{advertised}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        let listening = format!("127.0.0.1:{port}");
        poll::until(
            &format!("tansu did not open {listening}"),
            Duration::from_secs(20),
            Duration::from_millis(20),
            async || {
                if tokio::net::TcpStream::connect(&listening).await.is_ok() {
                    return true;
                }
                // A port taken between `free_port` and the bind makes tansu
                // exit; the connect above would then reach the other process.
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("tansu exited ({status}) before opening {listening}");
                }
                false
            },
        )
        .await;
        Broker {
            child,
            addr: advertised.to_owned(),
        }
    }

    fn signal(&self, sig: &str) {
        common::cluster::signal(&self.child, sig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_comet_does_not_stall_delivery_to_the_others() {
    let Some((kafka, _)) = services() else { return };
    // Calls to the hung comet wait a long deadline, so a round that waited
    // for one would take at least that long: the bound below cannot miss it.
    let mut o = opts(&kafka);
    o.push_timeout = "30s";
    // `rim job` bounds every comet call by `connect_timeout` too.
    o.connect_timeout = "30s";
    let c = Cluster::start("hungcomet", o).await;
    let mut live = Client::connect(c.comet_tcp(0), false, &Token::new(30, "hl", "live://h"))
        .await
        .unwrap();
    let _hung = Client::connect(c.comet_tcp(1), false, &Token::new(31, "hh", "live://h"))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/room?operation=1000&type=live&room=h", "before")
        .await;
    expect_exactly(&mut live, "live", &["before"]).await;

    // The second comet stops answering (its calls hang; nothing refuses
    // them), and pushes for both comets keep coming.
    c.comets[1].signal("-STOP");
    let started = tokio::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let sent = tokio::time::Instant::now();
        c.http
            .push_ok(
                "/goim/push/keys?operation=1000&keys=hh",
                format!("hung-{i}"),
            )
            .await;
        c.http
            .push_ok(
                "/goim/push/room?operation=1000&type=live&room=h",
                format!("room-{i}"),
            )
            .await;
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=hl", format!("key-{i}"))
            .await;
        expect_exactly(
            &mut live,
            "live",
            &[&format!("room-{i}"), &format!("key-{i}")],
        )
        .await;
        slowest = slowest.max(sent.elapsed());
    }
    c.comets[1].signal("-CONT");
    // Each round is a few Kafka round trips (about 250 ms on Tansu, seconds
    // on a loaded machine); one that waited for the hung comet takes at
    // least its 30 s call deadline. The log line below shows the job stopped
    // waiting for the hung comet.
    assert!(
        slowest < Duration::from_secs(20),
        "a push to the live comet waited {slowest:?} behind the hung one ({:?} for all)",
        started.elapsed()
    );
    assert!(
        c.job.log().contains("not waiting for them"),
        "the job never stopped pacing rooms on the hung comet:\n{}",
        c.job.log()
    );
}

/// A hung comet whose worker queue is full: each further record for it
/// waits `enqueue_timeout` once and is dropped, counted; the consumer moves
/// on and the live comet's pushes keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_comet_with_a_full_queue_costs_each_record_one_enqueue_timeout() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    // The call to the hung comet does not end during the test, discovery
    // keeps the comet, and its one worker holds two records.
    o.push_timeout = "60s";
    o.connect_timeout = "60s";
    o.comet_ttl = "5m";
    o.routines = 1;
    o.routine_queue = 2;
    o.enqueue_timeout = "500ms";
    // One push per call, so the call in flight holds exactly one record
    // (batched, it would hold whatever was queued when it went out).
    o.push_batch = 1;
    let c = Cluster::start("fullqueue", o).await;
    let mut live = Client::connect(c.comet_tcp(0), false, &Token::new(32, "fl", ""))
        .await
        .unwrap();
    let _hung = Client::connect(c.comet_tcp(1), false, &Token::new(33, "fh", ""))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=fl", "before")
        .await;
    expect_exactly(&mut live, "live", &["before"]).await;
    let job_metrics = format!("http://{}/metrics", c.job.addr("metrics"));

    c.comets[1].signal("-STOP");
    let started = tokio::time::Instant::now();
    // One call in flight and two queued; the other seven find the queue full.
    for i in 0..10 {
        c.http
            .push_ok(
                "/goim/push/keys?operation=1000&keys=fh",
                format!("hung-{i}"),
            )
            .await;
    }
    // The consumer holds the fourth record for the hung comet (the first
    // that finds its queue full) before the live comet's pushes are sent: they
    // come after it whichever partitions the two keys are on.
    poll::eventually(FIRST, Duration::from_millis(20), async || {
        let consumed = metric_sum(&job_metrics, "rim_job_pushes_total{type=\"push\"}").await;
        if consumed >= 5.0 {
            Ok(())
        } else {
            Err(format!(
                "the job did not consume the pushes for the hung comet \
                 ({consumed} keyed pushes of 5)"
            ))
        }
    })
    .await;
    let expected: Vec<String> = (0..5).map(|i| format!("live-{i}")).collect();
    for body in &expected {
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=fl", body.clone())
            .await;
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expect_exactly(&mut live, "live", &expected).await;
    // Seven enqueue timeouts (3.5 s) and a few Kafka round trips; waiting
    // for the hung comet's call (60 s) instead cannot make it.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the live comet's pushes took {:?} behind the hung comet's full queue",
        started.elapsed()
    );
    poll::eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let dropped = job_drops(&job_metrics, &["comet_queue_full"]).await;
            if dropped >= 7.0 {
                Ok(())
            } else {
                Err(format!(
                    "job counted {dropped} records dropped at the full queue, expected 7"
                ))
            }
        },
    )
    .await;
    c.comets[1].signal("-CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_broker_makes_the_push_api_answer_503_and_it_recovers() {
    let Some(_) = services() else { return };
    let broker = Broker::start().await;
    let mut o = opts(&broker.addr);
    o.comets = 1;
    o.kafka_timeout = "3s";
    let c = Cluster::start("broker", o).await;
    let mut client = Client::connect(c.comet_tcp(0), false, &Token::new(30, "bk", ""))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=bk", "before")
        .await;
    expect_exactly(&mut client, "client", &["before"]).await;

    broker.signal("-STOP");
    let started = tokio::time::Instant::now();
    let reply = c
        .http
        .post("/goim/push/keys?operation=1000&keys=bk", "while-down")
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{:?}", reply.json);
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(
        message.contains("not confirmed"),
        "unclear 503 message {message:?}"
    );
    // Answered when the 3 s `kafka_timeout` ran out: not before it (the
    // broker might still have answered), and not after a timeout applied
    // twice (2 s of slack for a loaded machine).
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(5),
        "503 after {waited:?} for a 3 s kafka_timeout"
    );

    broker.signal("-CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    c.http
        .push_until_accepted(
            "/goim/push/keys?operation=1000&keys=bk",
            "after",
            deadline,
            "push API never recovered",
        )
        .await;
    // What was accepted is delivered. The push answered 503 was not confirmed:
    // a produce request already sent to the paused broker may still be
    // written when it resumes, so it may arrive too (the 503 says so).
    loop {
        let push = client
            .next_push_within(FIRST)
            .await
            .unwrap()
            .expect("delivery after recovery");
        match &push.body[..] {
            b"after" => break,
            b"while-down" => continue,
            other => panic!("unexpected push {:?}", String::from_utf8_lossy(other)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_sessions_re_register_on_heartbeat() {
    let Some((kafka, _)) = services() else { return };
    let port = free_port();
    let redis = RedisProc::start(port);
    let mut o = opts(&kafka);
    o.redis = Some(format!("redis://127.0.0.1:{port}/"));
    o.comets = 1;
    o.session_refresh = "1ms";
    let c = Cluster::start("redis", o).await;
    let key = unique("rk");
    let mut client = Client::connect(c.comet_tcp(0), false, &Token::new(40, &key, ""))
        .await
        .unwrap();
    let push = format!("/goim/push/keys?operation=1000&keys={key}");
    c.http.push_ok(&push, "before").await;
    expect_exactly(&mut client, "client", &["before"]).await;

    // Redis comes back empty: the session is unknown until the client's next heartbeat.
    drop(redis);
    let _redis = RedisProc::start(port);
    // The router reconnects on its own; until then the API says the store is
    // unavailable (503), never success.
    poll::until(
        "router never reconnected to redis",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let reply = c.http.post(&push, "lost-route").await.unwrap();
            if reply.status == 200 {
                return true;
            }
            assert_eq!(reply.status, 503, "{:?}", reply.json);
            false
        },
    )
    .await;

    // Each try waits up to 2 s for the push itself: no pause between tries.
    let mut seq = 2;
    poll::until(
        "session never re-registered",
        Duration::from_secs(30),
        Duration::ZERO,
        async || {
            client.heartbeat(seq).await.unwrap();
            seq += 1;
            c.http.push_ok(&push, "after").await;
            let Some(p) = client
                .next_push_within(Duration::from_secs(2))
                .await
                .unwrap()
            else {
                return false;
            };
            assert_eq!(
                &p.body[..],
                b"after",
                "the push sent while the session was unknown arrived"
            );
            true
        },
    )
    .await;
}

/// SIGTERM reaches logic while a push waits for a broker that does not
/// answer: logic answers that request (503, not confirmed) before it exits,
/// rather than dropping the connection under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_logic_answer_a_push_waiting_on_a_stopped_broker() {
    let Some(_) = services() else { return };
    let (broker, gate) = Broker::behind_gate().await;
    let mut o = opts(&broker.addr);
    o.comets = 1;
    o.kafka_timeout = "3s";
    let mut c = Cluster::start("sigterm-logic", o).await;
    let mut client = Client::connect(c.comet_tcp(0), false, &Token::new(51, "stl", ""))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=stl", "before")
        .await;
    expect_exactly(&mut client, "client", &["before"]).await;

    broker.signal("-STOP");
    gate.record();
    let body = unique("in-progress");
    let push = tokio::spawn({
        let (http, body) = (c.http.clone(), body.clone());
        async move {
            http.post("/goim/push/keys?operation=1000&keys=stl", body)
                .await
        }
    });
    // The push is in progress once logic's produce request carrying it went
    // through the gate to the stopped broker.
    poll::until(
        "logic never sent the push to the broker",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || gate.sent_contains(body.as_bytes()),
    )
    .await;
    let (exited, reply) = tokio::join!(c.logic.terminate(), push);
    let reply = reply
        .unwrap()
        .expect("logic answers the push in progress instead of dropping it");
    assert_eq!(reply.status, 503, "{:?}", reply.json);
    let message = reply.json["message"].as_str().unwrap_or("");
    assert!(
        message.contains("not confirmed"),
        "unclear 503 message {message:?}"
    );
    assert!(exited, "logic did not exit cleanly:\n{}", c.logic.log());
    broker.signal("-CONT");
}

/// SIGTERM reaches the job while comet 1 is stopped with pushes queued for
/// it: the job exits within its grace without committing them, so a new job
/// delivers every accepted push once the comet is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_what_a_stopped_comet_did_not_take_to_the_next_job() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    // The calls to the stopped comet are still waiting when the SIGTERM
    // comes (not given up as dropped, which would commit them), and
    // discovery keeps the comet meanwhile. (`rim job` bounds every comet
    // call by `connect_timeout` as well, so both are raised.)
    o.push_timeout = "60s";
    o.connect_timeout = "60s";
    o.comet_ttl = "5m";
    let mut c = Cluster::start("sigterm-job", o).await;
    let stopped = Client::connect(c.comet_tcp(0), false, &Token::new(52, "sj-stopped", ""))
        .await
        .unwrap();
    let live = Client::connect(c.comet_tcp(1), false, &Token::new(53, "sj-live", ""))
        .await
        .unwrap();
    let (seen_stopped, seen_live) = (collect(stopped), collect(live));
    let (mut to_stopped, mut to_live) = (vec!["warm".to_owned()], vec!["warm".to_owned()]);
    c.http
        .push_ok("/goim/push/mids?operation=1000&mids=52&mids=53", "warm")
        .await;
    let none = || String::new();
    wait_for_all(&seen_stopped, &to_stopped, "client on comet 1", &c, &none).await;

    c.comets[0].signal("-STOP");
    for i in 0..20 {
        let (s, l) = (format!("s{i}"), format!("l{i}"));
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=sj-stopped", s.clone())
            .await;
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=sj-live", l.clone())
            .await;
        to_stopped.push(s);
        to_live.push(l);
    }
    // The job consumed (dispatched) all 42 keyed records (the warm-up is one
    // per comet): those for comet 1 are in flight or queued in the job, not
    // waiting in Kafka.
    let job_metrics = format!("http://{}/metrics", c.job.addr("metrics"));
    poll::eventually(FIRST, Duration::from_millis(100), async || {
        let consumed = metric_sum(&job_metrics, "rim_job_pushes_total{type=\"push\"}").await;
        if consumed >= 42.0 {
            Ok(())
        } else {
            Err(format!(
                "the job did not consume the pushes ({consumed} keyed pushes of 42):\n{}",
                c.job.log()
            ))
        }
    })
    .await;
    wait_for_all(&seen_live, &to_live, "client on comet 2", &c, &none).await;
    assert!(
        c.job.terminate().await,
        "job did not exit cleanly:\n{}",
        c.job.log()
    );
    let old_log = c.job.log();
    c.comets[0].signal("-CONT");
    c.restart_job().await;
    let diagnostics = || {
        format!(
            "stopped job's log:\n{old_log}\nnew job's log:\n{}",
            c.job.log()
        )
    };
    wait_for_all(
        &seen_stopped,
        &to_stopped,
        "client on comet 1",
        &c,
        &diagnostics,
    )
    .await;
}

/// SIGTERM reaches a comet while its client is not reading and most of what
/// the comet accepted for it is still queued: the client, reading from then
/// on, gets every push before the connection closes. Then the other
/// processes stop cleanly too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_comet_write_what_it_accepted_to_a_client_that_was_not_reading() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    o.comets = 1;
    let mut c = Cluster::start("sigterm-comet", o).await;
    let mut client = Client::connect(c.comet_tcp(0), false, &Token::new(54, "sc", ""))
        .await
        .unwrap();
    // 9 MiB in all: more than twice what the socket buffers between comet
    // and client hold on loopback (up to `tcp_wmem`'s 4 MiB plus the
    // client's receive buffer), so much of it is still queued in the comet
    // when the SIGTERM comes.
    const N: usize = 24;
    let bodies: Vec<String> = (0..N)
        .map(|i| format!("{i:02}{}", "x".repeat(384 * 1024)))
        .collect();
    for body in &bodies {
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=sc", body.clone())
            .await;
    }
    let comet_metrics = format!("http://{}/metrics", c.comets[0].addr("metrics"));
    poll::eventually(FIRST, Duration::from_millis(100), async || {
        let enqueued = metric_sum(
            &comet_metrics,
            "rim_comet_enqueued_messages_total{kind=\"keys\"}",
        )
        .await;
        if enqueued >= N as f64 {
            Ok(())
        } else {
            Err(format!(
                "the comet never accepted all {N} pushes ({enqueued} enqueued)"
            ))
        }
    })
    .await;

    let read_all = async {
        for (i, body) in bodies.iter().enumerate() {
            let push = client
                .next_push_within(Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("push {i} of {N}: {e:#}"))
                .unwrap_or_else(|| panic!("push {i} of {N} never came"));
            assert!(
                push.body[..] == body.as_bytes()[..],
                "push {i} is not the {i}th body"
            );
        }
        match client.recv_within(Duration::from_secs(10)).await {
            Ok(Some(Incoming::Closed)) => {}
            other => panic!("after the pushes, expected the close, got {other:?}"),
        }
    };
    let (exited, ()) = tokio::join!(c.comets[0].terminate(), read_all);
    assert!(exited, "comet did not exit cleanly:\n{}", c.comets[0].log());

    // The rest of a rolling shutdown: every process exits 0.
    assert!(
        c.job.terminate().await,
        "job did not exit cleanly:\n{}",
        c.job.log()
    );
    assert!(
        c.logic.terminate().await,
        "logic did not exit cleanly:\n{}",
        c.logic.log()
    );
    for r in &mut c.routers {
        assert!(
            r.terminate().await,
            "router did not exit cleanly:\n{}",
            r.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_started_while_logic_is_down_still_finds_the_live_comets() {
    let Some((kafka, _)) = services() else { return };
    let mut c = Cluster::start("logicdown", opts(&kafka)).await;
    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(61, "ld-a", ""))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_ws(1), true, &Token::new(62, "ld-b", ""))
        .await
        .unwrap();
    // Deliveries flow (the job holds its partitions), then the job goes
    // away while the pushes are accepted: they wait in Kafka.
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=ld-a", "warm")
        .await;
    expect_exactly(&mut a, "a", &["warm"]).await;
    assert!(
        c.job.terminate().await,
        "job did not exit cleanly:\n{}",
        c.job.log()
    );
    let mut expected = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (to_a, to_b) = (format!("a{i}"), format!("b{i}"));
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=ld-a", to_a.clone())
            .await;
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=ld-b", to_b.clone())
            .await;
        expected.0.push(to_a);
        expected.1.push(to_b);
    }
    // Logic relays the comets' online reports; with it gone they age past
    // the job's comet TTL (3 s here). This waits for time to pass, not for
    // a server.
    c.logic.kill9().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A new job sees only stale reports; the comets answer its health
    // checks, so it pushes to them (and keeps them) all the same.
    c.restart_job().await;
    let to_a: Vec<&str> = expected.0.iter().map(String::as_str).collect();
    let to_b: Vec<&str> = expected.1.iter().map(String::as_str).collect();
    expect_exactly(&mut a, "a", &to_a).await;
    expect_exactly(&mut b, "b", &to_b).await;
    assert!(
        c.job.log().contains("comet joined on a stale report"),
        "job log:\n{}",
        c.job.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_kafka_down_at_start_then_up_recover_without_restart() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    // Both services sit behind gates that drop every connection: the cluster
    // starts with neither reachable.
    let redis_target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let redis_gate = Gate::closed(&redis_target).await;
    let kafka_gate = Gate::closed(&kafka).await;
    empty_redis_db(&redis, 4);
    let mut o = opts(&kafka_gate.addr.to_string());
    o.redis = Some(format!("redis://{}/4", redis_gate.addr));
    o.wait_for_job = false;
    // Every process starts and becomes ready without its services.
    let c = Cluster::start("coldstart", o).await;

    // Meanwhile: clients are refused (their session cannot be stored): the
    // comet closes the connection without an auth reply, within its 5 s
    // `logic_timeout` and well before its 8 s handshake timeout, at which a
    // hung auth would end. Pushes answer 503. Nothing panics.
    let mut refused = Client::tcp(c.comet_tcp(0)).await.unwrap();
    let token = Token::new(40, "cold", "live://c").to_json();
    refused
        .send(&Frame::new(1, Op::Auth, 1, token))
        .await
        .unwrap();
    match refused.recv_within(Duration::from_secs(6)).await {
        Ok(Some(Incoming::Closed)) => {}
        Ok(Some(Incoming::Frame(f))) => {
            panic!("the comet answered op {} without Redis", f.op)
        }
        Ok(None) => panic!("auth still pending after 6 s without Redis (hung, not refused)"),
        Err(e) => panic!("refused client: {e:#}"),
    }
    let reply = c
        .http
        .post("/goim/push/room?operation=1000&type=live&room=c", "early")
        .await
        .unwrap();
    assert_eq!(reply.status, 503, "{:?}", reply.json);

    redis_gate.open();
    kafka_gate.open();
    // Recovery without a restart: a client gets in, and a push reaches it.
    let deadline = tokio::time::Instant::now() + FIRST;
    let mut client = poll::eventually(FIRST, Duration::from_millis(200), async || {
        Client::connect(c.comet_tcp(0), false, &Token::new(40, "cold", "live://c"))
            .await
            .map_err(|e| format!("no client accepted after Redis came up: {e}"))
    })
    .await;
    c.http
        .push_until_accepted(
            "/goim/push/mids?operation=1000&mids=40",
            "late",
            deadline,
            "pushes still refused after Kafka came up",
        )
        .await;
    expect_exactly(&mut client, "cold", &["late"]).await;
    for name in ["logic", "router1", "job"] {
        let log = match name {
            "logic" => c.logic.log(),
            "job" => c.job.log(),
            _ => c.routers[0].log(),
        };
        assert!(!log.contains("panicked"), "{name} panicked:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comets_logics_and_jobs_join_a_running_cluster() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    o.comets = 1;
    let mut c = Cluster::start("scale", o).await;
    // A comet joins after the job started: the job follows the join.
    let second = c.add_comet().await;
    c.wait_for_comets(2).await;
    // A second logic, and a second job in the same consumer group.
    let logic2 = c.add_logic().await;
    let job2 = c.spawn_job("job2").await;
    wait_for_job_comets(&job2, 2).await;
    // ... which shares the partitions with the first.
    wait_for_log(&job2, "kafka partitions assigned partitions=[", |rest| {
        rest.starts_with(|ch: char| ch.is_ascii_digit())
    })
    .await;
    let http2 = Http::new(logic2.addr("http").parse().unwrap());

    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(70, "sa", "live://s"))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_ws(second), true, &Token::new(71, "sb", "live://s"))
        .await
        .unwrap();
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for i in 0..10 {
        // Every other round through the second logic.
        let http = if i % 2 == 0 { &c.http } else { &http2 };
        http.push_ok("/goim/push/keys?operation=1000&keys=sa", format!("a{i}"))
            .await;
        http.push_ok("/goim/push/mids?operation=1000&mids=71", format!("b{i}"))
            .await;
        http.push_ok(
            "/goim/push/room?operation=1000&type=live&room=s",
            format!("r{i}"),
        )
        .await;
        to_a.extend([format!("a{i}"), format!("r{i}")]);
        to_b.extend([format!("b{i}"), format!("r{i}")]);
    }
    let to_a: Vec<&str> = to_a.iter().map(String::as_str).collect();
    let to_b: Vec<&str> = to_b.iter().map(String::as_str).collect();
    expect_exactly(&mut a, "a", &to_a).await;
    expect_exactly(&mut b, "b", &to_b).await;
    // Both logics count both comets' connections.
    for http in [&c.http, &http2] {
        http.get_until("/goim/online/total", |j| j["data"]["conn_count"] == 2)
            .await;
    }

    // A comet that stops signs off: logic stops listing it at once (not
    // after `online_stale`, 5 min) and the jobs stop pushing to it.
    assert!(
        c.comets[second].terminate().await,
        "comet did not exit cleanly:\n{}",
        c.comets[second].log()
    );
    assert!(
        c.comets[second].log().contains("signed off from logic"),
        "{}",
        c.comets[second].log()
    );
    let instances = c.http.get("/goim/nodes/instances").await.unwrap().json;
    assert_eq!(
        instances["data"].as_array().map(Vec::len),
        Some(1),
        "{instances}"
    );
    // ... and so does every other logic, within its `online_refresh`.
    http2
        .get_until("/goim/nodes/instances", |j| {
            j["data"].as_array().map(Vec::len) == Some(1)
        })
        .await;
    c.wait_for_comets(1).await;
    wait_for_job_comets(&job2, 1).await;
}

/// README: a topic missing when job starts (Kafka was down, or logic has not
/// created it yet) is picked up within 5 s of its creation (librdkafka's
/// default metadata refresh would take 5 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_picks_up_its_topic_within_5s_of_its_creation() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    o.comets = 1;
    let mut c = Cluster::start("newtopic", o).await;
    let mut client = Client::connect(c.comet_tcp(0), false, &Token::new(95, "nt", ""))
        .await
        .unwrap();
    let (topic, group) = (unique("rim-newtopic-late"), unique("rim-newtopic-group"));
    let job = c.spawn_job_on("job-late", &topic, &group).await;
    wait_for_job_comets(&job, 1).await;
    // It asked the broker for the topic and learnt that it does not exist.
    wait_for_log(&job, "Subscribed topic not available", |_| true).await;
    // A logic on the new topic creates it as it starts.
    let logic = c.add_logic_on(&topic).await;
    wait_for_log(&logic, "created push topic", |_| true).await;
    // From the topic's creation (now): 5 s, plus the consumer group's
    // rebalance on a loaded machine.
    let bound = Duration::from_secs(10);
    let assigned = "kafka partitions assigned partitions=[";
    poll::eventually(bound, Duration::from_millis(100), async || {
        let log = job.log();
        if log
            .split(assigned)
            .skip(1)
            .any(|rest| rest.starts_with(|ch: char| ch.is_ascii_digit()))
        {
            Ok(())
        } else {
            Err(format!(
                "the job did not pick up its topic within {bound:?} of its creation:\n{log}"
            ))
        }
    })
    .await;
    let http = Http::new(logic.addr("http").parse().unwrap());
    http.push_ok("/goim/push/keys?operation=1000&keys=nt", "on-new-topic")
        .await;
    expect_exactly(&mut client, "client", &["on-new-topic"]).await;
}

/// Waits until `proc`'s log has `text` followed by something `rest` accepts.
async fn wait_for_log(proc: &common::cluster::Proc, text: &str, rest: impl Fn(&str) -> bool) {
    poll::eventually(FIRST, Duration::from_millis(100), async || {
        let log = proc.log();
        if log.split(text).skip(1).any(&rest) {
            Ok(())
        } else {
            Err(format!("{} never logged {text:?}:\n{log}", proc.name))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_routers_lose_no_session_kept_in_redis() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    let db = empty_redis_db(&redis, 5);
    let mut o = opts(&kafka);
    o.redis = Some(db);
    let mut c = Cluster::start("routers", o).await;
    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(80, "ra", ""))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_ws(1), true, &Token::new(81, "rb", ""))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/mids?operation=1000&mids=80&mids=81", "before")
        .await;
    expect_exactly(&mut a, "a", &["before"]).await;
    expect_exactly(&mut b, "b", &["before"]).await;

    // Both shards are killed and come back on their addresses: the sessions
    // are still found, from Redis, without the clients doing anything.
    c.restart_router(0).await;
    c.restart_router(1).await;
    let deadline = tokio::time::Instant::now() + FIRST;
    c.http
        .push_until_accepted(
            "/goim/push/mids?operation=1000&mids=80&mids=81",
            "after",
            deadline,
            "push after the router restart",
        )
        .await;
    expect_exactly(&mut a, "a", &["after"]).await;
    expect_exactly(&mut b, "b", &["after"]).await;
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=rb", "key-after")
        .await;
    expect_exactly(&mut b, "b", &["key-after"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_static_comet_list_delivers_without_discovery() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    o.static_comets = true;
    // The job has no routers to discover from: only its [[comets]] list.
    let c = Cluster::start("static", o).await;
    let mut a = Client::connect(c.comet_tcp(0), false, &Token::new(90, "sta", "live://t"))
        .await
        .unwrap();
    let mut b = Client::connect(c.comet_tcp(1), false, &Token::new(91, "stb", "live://t"))
        .await
        .unwrap();
    c.http
        .push_ok("/goim/push/keys?operation=1000&keys=stb", "key-b")
        .await;
    c.http
        .push_ok("/goim/push/room?operation=1000&type=live&room=t", "room")
        .await;
    expect_exactly(&mut a, "a", &["room"]).await;
    expect_exactly(&mut b, "b", &["key-b", "room"]).await;
}
