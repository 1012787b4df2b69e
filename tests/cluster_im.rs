//! Durable messaging in the distributed mode, end to end: logic publishes
//! stored messages to their own Kafka topic, job appends them to mailboxes in
//! the suite's real Redis and delivers them, comets merge syncs (read
//! through logic's `rim.im.Im`) with live frames. Faults are real process
//! kills.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{
    free_port, mailbox_prefix, redis_cluster_services, services, unique_mid, Cluster, Options,
    RedisProc,
};
use parking_lot::Mutex;
use rim_proto::{Frame, Op};
use rim_testkit::{poll, Client, Token};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn opts(kafka: &str, redis: &str) -> Options {
    Options {
        mailbox: Some(redis.to_owned()),
        ..Options::new(kafka)
    }
}

fn body_json(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body).expect("a JSON body")
}

/// The next frame within [`WAIT`] (a cluster on two shared cores is slow).
async fn next(client: &mut Client) -> Frame {
    client
        .next_frame_within(WAIT)
        .await
        .expect("a frame")
        .unwrap_or_else(|| panic!("no frame within {WAIT:?}"))
}

async fn expect_stored(client: &mut Client, seq: i32, body: &str) {
    let frame = next(client).await;
    assert_eq!(
        (frame.op, frame.seq, &frame.body[..]),
        (1000, seq, body.as_bytes()),
        "expected stored message {seq}"
    );
}

/// op 19's body, the stored frames' seqs, op 20's body.
async fn read_sync(client: &mut Client) -> (Value, Vec<Frame>, Value) {
    let begin = next(client).await;
    assert_eq!(begin.op, Op::SyncBegin.code(), "{begin:?}");
    let mut frames = Vec::new();
    loop {
        let frame = next(client).await;
        if frame.op == Op::SyncEnd.code() {
            return (body_json(&begin), frames, body_json(&frame));
        }
        frames.push(frame);
    }
}

async fn store(c: &Cluster, mids: &[i64], body: &str) {
    let query: Vec<String> = mids.iter().map(|m| format!("mids={m}")).collect();
    let path = format!("/goim/push/mids?operation=1000&store=1&{}", query.join("&"));
    let reply = c.http.post(&path, body.to_owned()).await.unwrap();
    assert_eq!(reply.status, 200, "{path}: {:?}", reply.json);
    assert_eq!(reply.json["data"]["accepted"], mids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_messages_flow_through_kafka_and_redis_to_im_sessions() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    let c = Cluster::start("im", opts(&kafka, &redis)).await;
    // Two devices of one user, on two comets and both transports.
    let mut phone = Client::connect(c.comet_tcp(0), false, &Token::im(100, "phone"))
        .await
        .unwrap();
    let mut laptop = Client::connect(c.comet_ws(1), true, &Token::im(100, "laptop"))
        .await
        .unwrap();
    // Sessions are registered before op 8; the job finds them at delivery.
    store(&c, &[100], "m1").await;
    store(&c, &[100], "m2").await;
    for device in [&mut phone, &mut laptop] {
        expect_stored(device, 1, "m1").await;
        expect_stored(device, 2, "m2").await;
    }
    // An offline user: stored, then synced on connect.
    for i in 1..=3 {
        store(&c, &[101], &format!("o{i}")).await;
    }
    let history = poll::eventually(WAIT, Duration::from_millis(50), async || {
        let page = c.http.get("/rim/v1/users/101/messages").await.unwrap().json;
        if page["top"] == 3 {
            Ok(page)
        } else {
            Err(format!("mailbox 101 not filled: {page}"))
        }
    })
    .await;
    let epoch = history["epoch"].as_str().unwrap().to_owned();
    let mut late = Client::connect(c.comet_ws(1), true, &Token::im(101, "late").since(0, None))
        .await
        .unwrap();
    let (begin, frames, end) = read_sync(&mut late).await;
    assert_eq!(
        begin,
        json!({"epoch": epoch, "from": 1, "first": 1, "top": 3, "complete": true})
    );
    let seqs: Vec<i32> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(end, json!({"last": 3, "more": false}));
    store(&c, &[101], "o4").await;
    expect_stored(&mut late, 4, "o4").await;

    // Acks reach the cursor; a read mark reaches the other device.
    phone
        .send(&Frame::new(1, Op::Ack, 0, r#"{"seq":2}"#))
        .await
        .unwrap();
    poll::eventually(WAIT, Duration::from_millis(50), async || {
        let cursor = c.http.get("/rim/v1/users/100/cursor").await.unwrap().json;
        if cursor["devices"]["phone"]["ack"] == 2 {
            Ok(())
        } else {
            Err(format!("ack not in the cursor: {cursor}"))
        }
    })
    .await;
    phone
        .send(&Frame::new(1, Op::Read, 0, r#"{"seq":2}"#))
        .await
        .unwrap();
    let notify = next(&mut laptop).await;
    assert_eq!(notify.op, Op::Notify.code());
    assert_eq!(body_json(&notify), json!({"kind": "read", "seq": 2}));

    // An explicit op 18 on WebSocket answers from its seq on, echoing it.
    let req = json!({"seq": 1, "epoch": epoch}).to_string();
    late.send(&Frame::new(1, Op::Sync, 42, req)).await.unwrap();
    let (begin, frames, end) = read_sync(&mut late).await;
    assert_eq!(
        (begin["from"].clone(), end),
        (json!(2), json!({"last": 4, "more": false}))
    );
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [2, 3, 4]);
    // History both ways, and a trim a late client is told about.
    let page = c
        .http
        .get("/rim/v1/users/101/messages?before=4&limit=2")
        .await
        .unwrap()
        .json;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, &page["more"]), (vec![3, 2], &json!(true)));
    let reply = c
        .http
        .delete("/rim/v1/users/101/messages?upto=2")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["first"]),
        (200, &json!(3)),
        "{:?}",
        reply.json
    );
    let mut trimmed = Client::connect(
        c.comet_tcp(0),
        false,
        &Token::im(101, "old").since(1, Some(&epoch)),
    )
    .await
    .unwrap();
    let (begin, frames, _) = read_sync(&mut trimmed).await;
    assert_eq!(
        (&begin["complete"], &begin["first"]),
        (&json!(false), &json!(3)),
        "{begin}"
    );
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [3, 4]);

    // The JSON API, and idempotency across the topic.
    let body = json!({"mids": [100], "op": 1000, "body": "j", "id": "same"});
    for _ in 0..2 {
        let reply = c.http.post_json("/rim/v1/messages", &body).await.unwrap();
        assert_eq!(
            (reply.status, &reply.json["accepted"]),
            (200, &json!(1)),
            "{:?}",
            reply.json
        );
        assert!(
            reply.json.get("seqs").is_none(),
            "job appends after the answer"
        );
    }
    expect_stored(&mut phone, 3, "\"j\"").await;
    assert!(phone
        .next_frame_within(Duration::from_millis(500))
        .await
        .unwrap()
        .is_none());
    let page = c.http.get("/rim/v1/users/100/messages").await.unwrap().json;
    assert_eq!(page["top"], 3, "stored once: {page}");
}

/// Stored messages with the mailboxes (and the sessions) on the suite's
/// Redis Cluster (`[mailbox] redis_cluster`): delivered live to both
/// devices of a user, then a device that was offline syncs what it missed
/// on reconnecting, the seqs dense; the mailbox is in the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_messages_on_a_redis_cluster_go_live_and_a_device_back_online_syncs_them() {
    let Some((kafka, seeds)) = redis_cluster_services().await else {
        return;
    };
    let mut o = Options::on_redis_cluster(&kafka, seeds);
    o.mailbox_on_cluster = true;
    let c = Cluster::start("rc-im", o).await;
    // The mailbox keys have the cluster's own prefix; the session keys do
    // not (goim's names), so the user and the devices (connection keys) are
    // this test's own: sessions of earlier runs outlive their processes.
    let mid = unique_mid();
    let (phone_key, tablet_key) = (format!("{}-phone", c.name), format!("{}-tablet", c.name));
    let mut phone = Client::connect(c.comet_tcp(0), false, &Token::im(mid, &phone_key))
        .await
        .unwrap();
    let mut tablet = Client::connect(c.comet_ws(1), true, &Token::im(mid, &tablet_key))
        .await
        .unwrap();
    store(&c, &[mid], "s1").await;
    expect_stored(&mut phone, 1, "s1").await;
    expect_stored(&mut tablet, 1, "s1").await;
    drop(tablet);
    store(&c, &[mid], "s2").await;
    store(&c, &[mid], "s3").await;
    expect_stored(&mut phone, 2, "s2").await;
    expect_stored(&mut phone, 3, "s3").await;
    let history = c
        .http
        .get(&format!("/rim/v1/users/{mid}/messages"))
        .await
        .unwrap()
        .json;
    assert_eq!(history["top"], 3, "{history}");
    let epoch = history["epoch"].as_str().unwrap().to_owned();
    let mut tablet = Client::connect(
        c.comet_tcp(1),
        false,
        &Token::im(mid, &tablet_key).since(1, Some(&epoch)),
    )
    .await
    .unwrap();
    let (begin, frames, end) = read_sync(&mut tablet).await;
    assert_eq!(
        begin,
        json!({"epoch": epoch, "from": 2, "first": 1, "top": 3, "complete": true})
    );
    let got: Vec<(i32, &[u8])> = frames.iter().map(|f| (f.seq, &f.body[..])).collect();
    assert_eq!(got, [(2, &b"s2"[..]), (3, b"s3")]);
    assert_eq!(end, json!({"last": 3, "more": false}));
    // The messages are in the Redis Cluster, under the cluster's prefix.
    let stream = format!("{}{{{mid}}}:x", mailbox_prefix(&c.topic));
    let mut redis = c.redis_cluster().await;
    let len: u64 = rim_redis::redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(len, 3, "{stream} in the Redis Cluster");
}

/// A client of one user that reconnects now and then with `since`, and
/// checks every connection: seqs strictly increasing (no duplicate, never
/// backwards), and the union over connections gapless.
struct Device {
    mid: i64,
    held: Arc<Mutex<Vec<i32>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_comet_logic_and_redis_killed_under_stored_load_lose_nothing_and_never_repeat_a_seq() {
    const USERS: i64 = 200;
    let Some((kafka, _)) = services() else {
        return;
    };
    // The mailboxes get a Redis of their own, with AOF fsynced on every
    // write, so that it can be killed and restarted in the run.
    let redis_port = free_port();
    let redis_dir = tempfile::tempdir().unwrap();
    let mut redis = RedisProc::start_with(redis_port, Some(redis_dir.path()));
    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let mut c = Cluster::start("imfault", opts(&kafka, &redis_url)).await;
    let logic2 = c.add_logic().await;
    let http2 = common::Http::new(logic2.addr("http").parse().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut devices = Vec::new();
    let mut tasks = Vec::new();
    for mid in 1000..1000 + USERS {
        let device = Device {
            mid,
            held: Arc::default(),
            violations: Arc::default(),
        };
        let addrs = [c.comet_tcp(0), c.comet_tcp(1)];
        let (held, violations, stop) =
            (device.held.clone(), device.violations.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = 0u64;
            let mut epoch: Option<String> = None;
            while !stop.is_cancelled() {
                round += 1;
                let last = held.lock().last().copied().unwrap_or(0);
                let addr = addrs[((mid as u64 + round) % 2) as usize];
                let token = Token::im(mid, &format!("d{mid}")).since(last as u32, epoch.as_deref());
                // Bounded like a real client's connect: a handshake caught in
                // a comet's kill (or a SYN retried on a full backlog) must
                // not keep the device away for minutes.
                let connect = Client::connect(addr, false, &token);
                let Ok(Ok(mut client)) =
                    tokio::time::timeout(Duration::from_secs(5), connect).await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                // Stay connected for a while, then reconnect; a quarter of
                // the devices stay until their comet dies (a job's replay
                // then reaches live connections).
                let stay = if mid % 4 == 0 {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_millis(300 + (mid as u64 * 37 + round * 101) % 1500)
                };
                let until = tokio::time::Instant::now() + stay;
                let mut sent_here: Vec<i32> = Vec::new();
                loop {
                    let wait = until.saturating_duration_since(tokio::time::Instant::now());
                    if wait.is_zero() || stop.is_cancelled() {
                        break;
                    }
                    // Short waits: `stop` is looked at between them.
                    let frame = match client
                        .next_frame_within(wait.min(Duration::from_millis(200)))
                        .await
                    {
                        Ok(Some(frame)) => frame,
                        Ok(None) => continue,
                        Err(_) => break,
                    };
                    if frame.op == Op::SyncBegin.code() {
                        let begin = body_json(&frame);
                        if begin["complete"] != true {
                            violations
                                .lock()
                                .push(format!("mid {mid}: incomplete sync {begin}"));
                        }
                        epoch = begin["epoch"].as_str().map(str::to_owned);
                        continue;
                    }
                    if frame.op == Op::SyncEnd.code() {
                        let end = body_json(&frame);
                        if end["more"] == true {
                            let last = held.lock().last().copied().unwrap_or(0);
                            let req = json!({"seq": last, "epoch": epoch}).to_string();
                            if client.send(&Frame::new(1, Op::Sync, 1, req)).await.is_err() {
                                break;
                            }
                        }
                        continue;
                    }
                    if frame.op != 1000 {
                        continue;
                    }
                    if sent_here.last().is_some_and(|&l| frame.seq <= l) {
                        violations.lock().push(format!(
                            "mid {mid}: seq {} after {:?} on one connection",
                            frame.seq,
                            sent_here.last()
                        ));
                    }
                    sent_here.push(frame.seq);
                    let gap_after = {
                        let mut held = held.lock();
                        let last = held.last().copied().unwrap_or(0);
                        if frame.seq == last + 1 {
                            held.push(frame.seq);
                        }
                        (frame.seq > last + 1).then_some(last)
                    };
                    if let Some(last) = gap_after {
                        // A gap: resync on this connection.
                        let req = json!({"seq": last, "epoch": epoch}).to_string();
                        if client.send(&Frame::new(1, Op::Sync, 2, req)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
        devices.push(device);
    }

    // Stored pushes at about 1k/s (one message to one user per request),
    // from a few writers, through both logics.
    let accepted: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let mut writers = Vec::new();
    let push_stop = tokio_util::sync::CancellationToken::new();
    for w in 0..8i64 {
        let http = if w % 2 == 0 {
            c.http.clone()
        } else {
            http2.clone()
        };
        let (accepted, push_stop) = (accepted.clone(), push_stop.clone());
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            let mut i = 0i64;
            while !push_stop.is_cancelled() {
                tick.tick().await;
                let mid = 1000 + (w * 25 + i) % USERS;
                i += 1;
                let path = format!("/goim/push/mids?operation=1000&mids={mid}&store=1&id=w{w}-{i}");
                match http.post(&path, format!("w{w}-{i}")).await {
                    Ok(reply) if reply.status == 200 => {
                        *accepted.lock().entry(mid).or_default() += 1
                    }
                    _ => {}
                }
            }
        }));
    }
    let total = || accepted.lock().values().sum::<u32>();
    let wait_for = |n: u32| {
        let total = &total;
        async move {
            poll::eventually(WAIT, Duration::from_millis(50), async || {
                if total() >= n {
                    Ok(())
                } else {
                    Err(format!("only {} stored pushes answered", total()))
                }
            })
            .await
        }
    };
    wait_for(1000).await;
    c.job.kill9().await;
    c.restart_job().await;
    wait_for(2500).await;
    c.comets[1].kill9().await;
    wait_for(3500).await;
    // An HTTP-facing logic (the comets use the first one).
    let mut logic2 = logic2;
    logic2.kill9().await;
    wait_for(4500).await;
    // The mailbox Redis, killed and restarted on its AOF: pushes go on
    // being accepted (Kafka holds them; job retries the appends), syncs
    // fail until it is back, and no history is lost (every sync stays
    // `complete`, checked by the devices).
    drop(redis);
    redis = RedisProc::start_with(redis_port, Some(redis_dir.path()));
    wait_for(5500).await;
    push_stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
    let accepted = accepted.lock().clone();

    // Every accepted message is in its mailbox, and every device ends up
    // holding all of its mailbox (clients on the dead comet reconnect to
    // the live one).
    poll::eventually(
        Duration::from_secs(120),
        Duration::from_millis(200),
        async || {
            let mut behind = Vec::new();
            for d in &devices {
                let want = accepted.get(&d.mid).copied().unwrap_or(0);
                let held = d.held.lock().len() as u32;
                if held < want {
                    behind.push(format!("{}: {held} of {want}", d.mid));
                }
            }
            if behind.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} devices behind, e.g. {:?}",
                    behind.len(),
                    &behind[..behind.len().min(5)]
                ))
            }
        },
    )
    .await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    for d in &devices {
        let violations = d.violations.lock();
        assert!(violations.is_empty(), "{violations:?}");
        let held = d.held.lock();
        let dense: Vec<i32> = (1..=held.len() as i32).collect();
        assert_eq!(*held, dense, "mid {}", d.mid);
    }
    // Stored exactly once: a mailbox holds no more than was accepted plus
    // the requests whose answers were cut by the logic kill.
    let mut extra = 0;
    for d in &devices {
        let page = c
            .http
            .get(&format!("/rim/v1/users/{}/cursor", d.mid))
            .await
            .unwrap()
            .json;
        let top = page["top"].as_u64().unwrap() as u32;
        let want = accepted.get(&d.mid).copied().unwrap_or(0);
        assert!(top >= want, "mid {}: top {top} < accepted {want}", d.mid);
        extra += top - want;
    }
    assert!(
        extra <= 16,
        "{extra} stored messages more than answered 200: duplicates?"
    );
    drop(redis);
}

/// The mailbox Redis killed (`kill -9`) and restarted on the same port:
/// with `appendfsync always` nothing is lost and the epoch stays; without
/// persistence the mailboxes are gone, a new epoch starts, and a client
/// syncing from before is told (`complete: false`), never silently reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_mailboxes_with_aof_and_is_signalled_without() {
    let Some((kafka, _)) = services() else { return };
    for aof in [true, false] {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let aof_dir = aof.then(|| dir.path());
        let mut redis = RedisProc::start_with(port, aof_dir);
        let url = format!("redis://127.0.0.1:{port}/");
        let name = if aof { "imaof" } else { "imnoaof" };
        let c = Cluster::start(name, opts(&kafka, &url)).await;
        let mut client = Client::connect(c.comet_tcp(0), false, &Token::im(7, "dev"))
            .await
            .unwrap();
        for i in 1..=3 {
            store(&c, &[7], &format!("a{i}")).await;
            expect_stored(&mut client, i, &format!("a{i}")).await;
        }
        let before = c.http.get("/rim/v1/users/7/cursor").await.unwrap().json;
        let epoch = before["epoch"].as_str().unwrap().to_owned();

        drop(redis);
        // Accepted while Redis is down: Kafka holds it, job retries the append.
        store(&c, &[7], "during").await;
        redis = RedisProc::start_with(port, aof_dir);
        if aof {
            // Nothing lost, same history: the next seq, live.
            expect_stored(&mut client, 4, "during").await;
            store(&c, &[7], "after").await;
            expect_stored(&mut client, 5, "after").await;
            let cursor = c.http.get("/rim/v1/users/7/cursor").await.unwrap().json;
            assert_eq!(
                (&cursor["epoch"], &cursor["top"]),
                (&json!(epoch), &json!(5)),
                "{cursor}"
            );
        } else {
            // A new history: its seq 1 arrives live (the connection's
            // dedup starts over with the epoch), and a sync from the old
            // cursor is told.
            expect_stored(&mut client, 1, "during").await;
            let req = json!({"seq": 3, "epoch": epoch}).to_string();
            client.send(&Frame::new(1, Op::Sync, 9, req)).await.unwrap();
            let (begin, frames, _) = read_sync(&mut client).await;
            assert_eq!(begin["complete"], false, "{begin}");
            assert_ne!(begin["epoch"], json!(epoch));
            assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [1]);
            let mut late = Client::connect(
                c.comet_ws(1),
                true,
                &Token::im(7, "other").since(3, Some(&epoch)),
            )
            .await
            .unwrap();
            let (begin, _, _) = read_sync(&mut late).await;
            assert_eq!(begin["complete"], false, "{begin}");
        }
        drop(redis);
    }
}

/// Sends op 4 with header seq `seq` and returns op 5's body; other frames
/// that arrive first are kept in `others`.
async fn send_msg(
    client: &mut Client,
    seq: i32,
    message: &Value,
    others: &mut Vec<Frame>,
) -> Value {
    client
        .send(&Frame::new(1, Op::SendMsg, seq, message.to_string()))
        .await
        .unwrap();
    loop {
        let frame = next(client).await;
        if frame.op == Op::SendMsgReply.code() {
            assert_eq!(frame.seq, seq);
            return body_json(&frame);
        }
        others.push(frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_chat_one_to_one_and_in_a_room_through_kafka() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    let c = Cluster::start("chat", opts(&kafka, &redis)).await;
    let mut alice_token = Token::im(200, "alice");
    alice_token.room_id = "live://c".into();
    let mut bob_token = Token::im(201, "bob");
    bob_token.room_id = "live://c".into();
    let mut alice = Client::connect(c.comet_tcp(0), false, &alice_token)
        .await
        .unwrap();
    let mut bob = Client::connect(c.comet_ws(1), true, &bob_token)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let msg = json!({"to": 201, "op": 1000, "id": "p1", "body": {"text": "hi"}});
    // Code 0 once Kafka has it; job stores it in both mailboxes.
    assert_eq!(
        send_msg(&mut alice, 5, &msg, &mut seen).await,
        json!({"id": "p1", "code": 0})
    );
    let frame = next(&mut bob).await;
    assert_eq!((frame.op, frame.seq), (1000, 1));
    let envelope = body_json(&frame);
    assert_eq!(
        (&envelope["from"], &envelope["to"], &envelope["body"]),
        (&json!(200), &json!(201), &json!({"text": "hi"}))
    );
    let own = if seen.is_empty() {
        next(&mut alice).await
    } else {
        seen.remove(0)
    };
    assert_eq!((own.op, own.seq), (1000, 1));
    // A room message, live, through the same path as room pushes.
    let msg = json!({"room": "live://c", "op": 1001, "id": "r1", "body": "all"});
    assert_eq!(
        send_msg(&mut bob, 6, &msg, &mut Vec::new()).await["code"],
        0
    );
    let push = next(&mut alice).await;
    assert_eq!((push.op, push.seq), (1001, 0));
    assert_eq!(body_json(&push)["room"], "live://c");
    // A group in Redis: both members get it, each at its next seq.
    let reply = reqwest::Client::new()
        .put(format!(
            "http://{}/rim/v1/groups/77/members",
            c.logic.addr("http")
        ))
        .body(json!({"mids": [200, 201]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let msg = json!({"group": 77, "op": 1000, "id": "g1", "body": "to the group"});
    assert_eq!(
        send_msg(&mut bob, 7, &msg, &mut Vec::new()).await["code"],
        0
    );
    for client in [&mut alice, &mut bob] {
        let frame = next(client).await;
        assert_eq!((frame.op, frame.seq), (1000, 2));
        let envelope = body_json(&frame);
        assert_eq!(
            (&envelope["group"], &envelope["from"]),
            (&json!(77), &json!(201))
        );
    }
    let msg = json!({"group": 78, "op": 1000, "id": "g2", "body": 1});
    assert_eq!(
        send_msg(&mut bob, 8, &msg, &mut Vec::new()).await["code"],
        404
    );
}

/// A mute set through one logic stops a sender whose comet talks to another
/// logic, within a second (the Redis store announces it; the other logic
/// drops its cached mutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_set_on_one_logic_stops_a_sender_on_another_within_a_second() {
    let Some((kafka, redis)) = services() else {
        return;
    };
    let mut c = Cluster::start("mute", opts(&kafka, &redis)).await;
    // The comets call the first logic; the mute goes through a second one.
    let logic2 = c.add_logic().await;
    let http2 = common::Http::new(logic2.addr("http").parse().unwrap());
    let mut sender = Client::connect(c.comet_tcp(0), false, &Token::im(300, "s"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let msg = |i: i32| json!({"to": 301, "op": 1000, "id": format!("m{i}"), "body": i});
    // The first logic has read (and cached) the sender's mutes: none.
    assert_eq!(
        send_msg(&mut sender, 1, &msg(1), &mut seen).await["code"],
        0
    );
    let reply = reqwest::Client::new()
        .put(format!(
            "http://{}/rim/v1/users/300/mute",
            logic2.addr("http")
        ))
        .body(json!({"until": null, "scope": "all"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let muted_at = tokio::time::Instant::now();
    let mut i = 2;
    loop {
        let reply = send_msg(&mut sender, i, &msg(i), &mut seen).await;
        if reply["code"] == 403 {
            break;
        }
        assert_eq!(reply["code"], 0, "{reply}");
        assert!(
            muted_at.elapsed() < Duration::from_secs(1),
            "still sending {:?} after the mute",
            muted_at.elapsed()
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = http2.get("/rim/v1/users/300/mute").await.unwrap().json;
    assert_eq!(listed["mutes"][0]["scope"], "all");
}
