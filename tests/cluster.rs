//! The distributed mode, end to end: every component is the built `rim`
//! binary in its own process, connected through the suite's real Kafka-protocol
//! broker (Tansu) and real Redis, and faults are real process kills.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{free_port, services, unique, wait_for_job_comets, Cluster, Gate, Options};
use common::Http;
use parking_lot::Mutex;
use rim_testkit::{Client, Token};
use tokio::process::Command;

const FIRST: Duration = Duration::from_secs(60);

fn opts(kafka: &str) -> Options {
    Options {
        kafka: kafka.to_owned(),
        redis: None,
        comets: 2,
        session_refresh: "5m",
        wait_for_job: true,
        comet_ttl: "3s",
        static_comets: false,
        push_timeout: "2s",
        kafka_timeout: "15s",
    }
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
    for (client, who) in [(&mut a, "a"), (&mut b, "b"), (&mut d, "d")] {
        client
            .expect_no_push(Duration::from_millis(300))
            .await
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }

    // Online counts aggregate across both comets.
    c.http
        .get_until("/goim/online/total", |j| j["data"]["conn_count"] == 3)
        .await;
    c.http
        .get_until("/goim/online/room?type=live&rooms=1&rooms=2", |j| {
            j["data"]["1"] == 2 && j["data"]["2"] == 1
        })
        .await;
    let instances = c.http.get("/goim/nodes/instances").await.unwrap().json;
    assert_eq!(
        instances["data"].as_array().map(Vec::len),
        Some(2),
        "{instances}"
    );
    // The cluster-wide count reaches clients through the heartbeat reply.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seq = 10;
    while a.heartbeat(seq).await.unwrap() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeat never carried the cluster count"
        );
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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

/// Reads `url` until its Prometheus text has a sample starting with each of
/// `wanted` whose value is not 0 (gauges such as the consumer lag may be 0:
/// those are given with a trailing `{` and only need to exist).
async fn scrape_until(url: &str, wanted: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
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
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} lacks {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let missing: Vec<String> = {
            let seen = seen.lock();
            accepted
                .iter()
                .filter(|m| !seen.contains(*m))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        let mut accepted = Vec::new();
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
            }
        }
        accepted
    });
    // Kill the job once deliveries are flowing.
    let deadline = tokio::time::Instant::now() + FIRST;
    while seen_x.lock().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no deliveries before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.job.kill9().await;
    c.restart_job().await;
    let accepted = pusher.await.unwrap();
    // Kafka was up throughout; a few refusals (a broker slowed past logic's
    // deadline by a loaded machine) are allowed, a mostly refused run is not.
    assert!(
        accepted.len() >= 300,
        "logic refused {} pushes while Kafka was up",
        400 - accepted.len()
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

    c.comets[1].kill9().await;
    let started = tokio::time::Instant::now();
    let mut expected = Vec::new();
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
        expected.push(room);
        expected.push(key);
    }
    c.http.push_ok("/goim/push/all?operation=1000", "all").await;
    expected.push("all".into());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expect_exactly(&mut live, "live", &expected).await;
    // Waiting out the dead comet's calls (2 s, retried) for each of these
    // pushes would take minutes; a loaded machine takes seconds.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "delivery to the live comet took {:?}",
        started.elapsed()
    );
    // The dead comet's registry entry expires and job forgets it.
    c.wait_for_comets(1).await;
}

/// A private Tansu broker for tests that stop it.
struct Broker {
    child: tokio::process::Child,
    addr: String,
}

impl Broker {
    async fn start() -> Broker {
        let tansu =
            std::env::var("RIM_TEST_TANSU").expect("RIM_TEST_TANSU (scripts/services.sh env)");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        let addr = format!("127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            // A port taken between `free_port` and the bind makes tansu
            // exit; the connect above would then reach the other process.
            if let Ok(Some(status)) = child.try_wait() {
                panic!("tansu exited ({status}) before opening {addr}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tansu did not open {addr}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Broker { child, addr }
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
    // 3 s of `kafka_timeout`, plus a wide margin for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "503 took {:?}",
        started.elapsed()
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

/// A private redis-server for tests that restart it; killed when dropped,
/// so a failing test does not leave it running.
struct RedisProc(std::process::Child);

impl RedisProc {
    fn start(port: u16) -> RedisProc {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let mut redis = RedisProc(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.0.try_wait() {
                panic!("redis-server exited ({status}) before opening {port}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis did not open {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The port was free when picked, but another process may have taken
        // it since: make sure the server answering is this one.
        let pid = redis_pid(port);
        assert_eq!(
            pid,
            Some(redis.0.id()),
            "port {port} is served by another redis-server"
        );
        redis
    }
}

/// The `process_id` that the redis-server on `port` reports, if it answers.
fn redis_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(at) = text.find("process_id:") {
            let rest = &text[at + "process_id:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return rest[..end].trim().parse().ok();
            }
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = c.http.post(&push, "lost-route").await.unwrap();
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{:?}", reply.json);
        assert!(
            tokio::time::Instant::now() < deadline,
            "router never reconnected to redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seq = 2;
    loop {
        client.heartbeat(seq).await.unwrap();
        seq += 1;
        c.http.push_ok(&push, "after").await;
        if let Some(p) = client
            .next_push_within(Duration::from_secs(2))
            .await
            .unwrap()
        {
            assert_eq!(
                &p.body[..],
                b"after",
                "the push sent while the session was unknown arrived"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session never re-registered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_exits_cleanly_on_sigterm_and_delivers_what_it_accepted() {
    let Some((kafka, _)) = services() else { return };
    let mut o = opts(&kafka);
    o.comets = 1;
    let mut c = Cluster::start("sigterm", o).await;
    let mut client = Client::connect(c.comet_tcp(0), false, &Token::new(50, "st", ""))
        .await
        .unwrap();
    for i in 0..50 {
        c.http
            .push_ok("/goim/push/keys?operation=1000&keys=st", format!("m{i}"))
            .await;
    }
    // Stop order of a rolling shutdown: the API first, then the job (which
    // drains and commits), then the comet, then the routers.
    let started = tokio::time::Instant::now();
    assert!(
        c.logic.terminate().await,
        "logic did not exit cleanly:\n{}",
        c.logic.log()
    );
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expect_exactly(&mut client, "client", &expected).await;
    assert!(
        c.job.terminate().await,
        "job did not exit cleanly:\n{}",
        c.job.log()
    );
    assert!(
        c.job.log().contains("kafka offsets committed"),
        "job log:\n{}",
        c.job.log()
    );
    assert!(
        c.comets[0].terminate().await,
        "comet did not exit cleanly:\n{}",
        c.comets[0].log()
    );
    client.expect_closed(Duration::from_secs(5)).await.unwrap();
    for r in &mut c.routers {
        assert!(
            r.terminate().await,
            "router did not exit cleanly:\n{}",
            r.log()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "shutdown took {:?}",
        started.elapsed()
    );
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

    // Meanwhile: clients are refused (their session cannot be stored) and
    // pushes answer 503, nothing panics.
    let refused = Client::connect(c.comet_tcp(0), false, &Token::new(40, "cold", "live://c")).await;
    assert!(refused.is_err(), "auth succeeded without Redis");
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
    let mut client = loop {
        match Client::connect(c.comet_tcp(0), false, &Token::new(40, "cold", "live://c")).await {
            Ok(client) => break client,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no client accepted after Redis came up: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
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
    c.wait_for_comets(1).await;
    wait_for_job_comets(&job2, 1).await;
}

/// Waits until `proc`'s log has `text` followed by something `rest` accepts.
async fn wait_for_log(proc: &common::cluster::Proc, text: &str, rest: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + FIRST;
    while !proc.log().split(text).skip(1).any(&rest) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never logged {text:?}:\n{}",
            proc.name,
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
