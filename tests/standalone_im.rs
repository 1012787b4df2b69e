//! Durable messaging end to end (docs/protocol.md, "Durable messaging"): a
//! standalone rim, IM clients over TCP and WebSocket, stored pushes through
//! the HTTP API, sync (ops 18-20), acks (21), read marks (22, 23), and the
//! mailbox API under /rim/v1.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{test_config, Rim};
use rim::config::StoreKind;
use rim_proto::{Frame, Op};
use rim_testkit::{poll, Client, Token};
use serde_json::{json, Value};

const TRANSPORTS: [bool; 2] = [false, true];

fn name(ws: bool) -> &'static str {
    if ws {
        "ws"
    } else {
        "tcp"
    }
}

fn body_json(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body)
        .unwrap_or_else(|e| panic!("op {} body is not JSON: {e}: {:?}", frame.op, frame.body))
}

/// One sync answer: op 19's body, the stored frames, op 20's body.
struct Synced {
    begin: Value,
    frames: Vec<Frame>,
    end: Value,
    /// The header seq op 19 and op 20 carried.
    echo: (i32, i32),
}

impl Synced {
    fn seqs(&self) -> Vec<i32> {
        self.frames.iter().map(|f| f.seq).collect()
    }
}

/// Reads op 19, the frames after it and op 20.
async fn read_sync(client: &mut Client) -> Synced {
    let begin = client.next_frame().await.expect("op 19");
    assert_eq!(
        begin.op,
        Op::SyncBegin.code(),
        "expected op 19, got {begin:?}"
    );
    let mut frames = Vec::new();
    loop {
        let frame = client.next_frame().await.expect("a stored frame or op 20");
        if frame.op == Op::SyncEnd.code() {
            return Synced {
                begin: body_json(&begin),
                frames,
                end: body_json(&frame),
                echo: (begin.seq, frame.seq),
            };
        }
        frames.push(frame);
    }
}

async fn im_client(rim: &Rim, ws: bool, token: &Token) -> Client {
    Client::connect(rim.addr(ws), ws, token)
        .await
        .unwrap_or_else(|e| panic!("{} IM client connects: {e}", name(ws)))
}

/// The next frame, which must be a stored message at `seq` with `body`.
async fn expect_stored(client: &mut Client, seq: i32, body: &str) {
    let frame = client.next_frame().await.expect("a stored frame");
    assert_eq!(
        (frame.op, frame.seq, &frame.body[..]),
        (1000, seq, body.as_bytes()),
        "expected stored message {seq}"
    );
}

#[tokio::test]
async fn stored_pushes_reach_im_sessions_at_dense_seqs_and_other_sessions_with_seq_0() {
    let rim = Rim::start().await;
    for ws in TRANSPORTS {
        let mid = if ws { 11 } else { 10 };
        let mut im = im_client(&rim, ws, &Token::im(mid, &format!("im-{mid}"))).await;
        let mut legacy = im_client(&rim, ws, &Token::new(mid, &format!("legacy-{mid}"), "")).await;
        let id = rim.http.store(&[mid], "m1").await;
        assert_eq!(id.len(), 36, "a UUIDv7 message id: {id}");
        rim.http.store(&[mid], "m2").await;
        // The IM session accepts no op, and still gets stored frames.
        expect_stored(&mut im, 1, "m1").await;
        expect_stored(&mut im, 2, "m2").await;
        for body in ["m1", "m2"] {
            let push = legacy.next_push().await.unwrap();
            assert_eq!(
                (push.op, push.seq, &push.body[..]),
                (1000, 0, body.as_bytes())
            );
        }
        // A push that is not stored keeps seq 0 for IM sessions too, and is
        // filtered by their accepts (none): only the legacy session gets it.
        rim.http
            .push_ok(
                &format!("/goim/push/mids?operation=1000&mids={mid}"),
                "plain",
            )
            .await;
        let push = legacy.next_push().await.unwrap();
        assert_eq!((push.seq, &push.body[..]), (0, &b"plain"[..]));
        assert!(im
            .next_frame_within(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none());
    }
    // goim v1.2 paths store too.
    let reply = rim
        .http
        .post("/1/push?uid=12&store=1&id=v1-a", "v1")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["ret"]),
        (200, &json!(1)),
        "{:?}",
        reply.json
    );
    assert_eq!(reply.json["data"], json!({"id": "v1-a", "accepted": 1}));
    let reply = rim
        .http
        .post("/1/pushs?store=1", r#"{"m":{"text":"x"},"u":[12,13]}"#)
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["data"]["accepted"]),
        (200, &json!(2)),
        "{:?}",
        reply.json
    );
    let history = rim.http.get("/rim/v1/users/12/messages").await.unwrap();
    assert_eq!(history.json["top"], 2, "{:?}", history.json);
    assert_eq!(history.json["messages"][0]["id"], "v1-a");
    assert_eq!(history.json["messages"][1]["body"], json!({"text": "x"}));
    rim.server.stop().await;
}

#[tokio::test]
async fn store_is_refused_where_nothing_is_stored_and_bad_input_gets_a_400() {
    let rim = Rim::start().await;
    for (path, fragment) in [
        (
            "/goim/push/keys?operation=1000&keys=k&store=1",
            "only pushes to users",
        ),
        (
            "/goim/push/room?operation=1000&type=live&room=1&store=1",
            "rooms are not stored",
        ),
        (
            "/goim/push/all?operation=1000&store=1",
            "broadcasts are not stored",
        ),
        ("/1/push/room?rid=live://1&store=1", "rooms are not stored"),
        ("/1/push/all?store=1", "broadcasts are not stored"),
        (
            "/goim/push/keys?operation=1000&keys=k&id=x",
            "only with store=1",
        ),
        (
            "/goim/push/mids?operation=1000&mids=1&id=x",
            "only with store=1",
        ),
        (
            "/goim/push/mids?operation=1000&mids=1&store=2",
            "store: must be 0 or 1",
        ),
        (
            "/goim/push/mids?operation=1000&mids=1&store=1&id=a%20b",
            "id:",
        ),
        ("/goim/push/mids?operation=1000&mids=0&store=1", "anonymous"),
        ("/goim/push/mids?operation=1000&store=1", "at least one mid"),
    ] {
        let reply = rim.http.post(path, "x").await.unwrap();
        assert_eq!(reply.status, 400, "{path}: {:?}", reply.json);
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(fragment), "{path}: {message:?}");
    }
    for (body, fragment) in [
        (json!({"mids": [1], "body": 1}), "missing field `op`"),
        (json!({"mids": [1], "op": 1000}), "missing field `body`"),
        (
            json!({"mids": [], "op": 1000, "body": 1}),
            "at least one mid",
        ),
        (
            json!({"mids": [1], "op": 1000, "body": 1, "extra": 1}),
            "unknown field",
        ),
        (json!({"mids": [1], "op": 1000, "body": 1, "id": ""}), "id:"),
    ] {
        let reply = rim.http.post_json("/rim/v1/messages", &body).await.unwrap();
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.json);
        assert_eq!(reply.json["code"], 400, "{:?}", reply.json);
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(fragment), "{body}: {message:?}");
    }
    let reply = rim.http.post("/rim/v1/messages", "not json").await.unwrap();
    assert_eq!(reply.status, 400, "{:?}", reply.json);
    for path in [
        "/rim/v1/users/x/messages",
        "/rim/v1/users/0/messages",
        "/rim/v1/users/1/messages?limit=0",
        "/rim/v1/users/1/messages?limit=501",
        "/rim/v1/users/1/messages?after=1&before=5",
        "/rim/v1/users/1/messages?before=0",
        "/rim/v1/users/1/messages?after=-1",
        "/rim/v1/users/x/cursor",
    ] {
        let reply = rim.http.get(path).await.unwrap();
        assert_eq!(
            (reply.status, &reply.json["code"]),
            (400, &json!(400)),
            "{path}: {:?}",
            reply.json
        );
    }
    let reply = rim.http.delete("/rim/v1/users/1/messages").await.unwrap();
    assert_eq!(reply.status, 400, "{:?}", reply.json);
    let reply = rim.http.get("/rim/v1/nothing").await.unwrap();
    assert_eq!(
        (reply.status, &reply.json["code"]),
        (404, &json!(404)),
        "{:?}",
        reply.json
    );
    rim.server.stop().await;
}

#[tokio::test]
async fn an_offline_user_syncs_with_since_and_then_goes_live_without_duplicates() {
    let rim = Rim::start().await;
    for ws in TRANSPORTS {
        let mid = if ws { 21 } else { 20 };
        for i in 1..=3 {
            rim.http.store(&[mid], &format!("m{i}")).await;
        }
        let key = format!("dev-{mid}");
        let mut client = im_client(&rim, ws, &Token::im(mid, &key).since(0, None)).await;
        let synced = read_sync(&mut client).await;
        let epoch = synced.begin["epoch"].as_str().unwrap().to_owned();
        assert_eq!(epoch.len(), 8);
        assert_eq!(
            synced.begin,
            json!({"epoch": epoch, "from": 1, "first": 1, "top": 3, "complete": true})
        );
        assert_eq!(synced.seqs(), [1, 2, 3]);
        assert_eq!(&synced.frames[2].body[..], b"m3");
        assert_eq!(synced.end, json!({"last": 3, "more": false}));
        assert_eq!(synced.echo, (0, 0), "a since-sync answers no request");
        rim.http.store(&[mid], "m4").await;
        expect_stored(&mut client, 4, "m4").await;
        drop(client);

        // Reconnect from what it holds: only what is new, then live.
        rim.http.store(&[mid], "m5").await;
        let mut client = im_client(&rim, ws, &Token::im(mid, &key).since(4, Some(&epoch))).await;
        let synced = read_sync(&mut client).await;
        assert_eq!(synced.begin["from"], 5);
        assert_eq!(synced.begin["complete"], true);
        assert_eq!(synced.seqs(), [5]);
        rim.http.store(&[mid], "m6").await;
        expect_stored(&mut client, 6, "m6").await;
        assert!(client
            .next_frame_within(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none());
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn op_18_answers_exactly_what_it_asks_echoes_its_seq_and_refuses_bad_bodies() {
    let rim = Rim::start().await;
    for ws in TRANSPORTS {
        let mid = if ws { 31 } else { 30 };
        let mut client = im_client(&rim, ws, &Token::im(mid, &format!("k-{mid}"))).await;
        for i in 1..=3 {
            rim.http.store(&[mid], &format!("m{i}")).await;
            expect_stored(&mut client, i, &format!("m{i}")).await;
        }
        let epoch = rim
            .http
            .get(&format!("/rim/v1/users/{mid}/cursor"))
            .await
            .unwrap()
            .json["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
        // Already delivered live, and still answered from its seq on.
        let req = json!({"seq": 1, "epoch": epoch}).to_string();
        client
            .send(&Frame::new(1, Op::Sync, 77, req))
            .await
            .unwrap();
        let synced = read_sync(&mut client).await;
        assert_eq!(synced.echo, (77, 77));
        assert_eq!(synced.seqs(), [2, 3]);
        assert_eq!(synced.end, json!({"last": 3, "more": false}));
        // A page limit: more.
        let req = json!({"seq": 0, "epoch": epoch, "limit": 2}).to_string();
        client
            .send(&Frame::new(1, Op::Sync, 78, req))
            .await
            .unwrap();
        let synced = read_sync(&mut client).await;
        assert_eq!(
            (synced.seqs(), &synced.end),
            (vec![1, 2], &json!({"last": 2, "more": true}))
        );
        let req = json!({"seq": 2, "epoch": epoch}).to_string();
        client
            .send(&Frame::new(1, Op::Sync, 79, req))
            .await
            .unwrap();
        let synced = read_sync(&mut client).await;
        assert_eq!(
            (synced.seqs(), &synced.end),
            (vec![3], &json!({"last": 3, "more": false}))
        );
        // Live again after the sync: no seq twice.
        rim.http.store(&[mid], "m4").await;
        expect_stored(&mut client, 4, "m4").await;
        // Another epoch: complete false, from the first message on.
        let req = json!({"seq": 3, "epoch": "zzzzzzzz"}).to_string();
        client
            .send(&Frame::new(1, Op::Sync, 80, req))
            .await
            .unwrap();
        let synced = read_sync(&mut client).await;
        assert_eq!(synced.begin["complete"], false);
        assert_eq!(synced.begin["from"], 1);
        assert_eq!(synced.seqs(), [1, 2, 3, 4]);
        // Malformed bodies: op 20 with a code, no messages, still open.
        for (seq, bad) in [
            (81, "{"),
            (82, r#"{"seq":-1}"#),
            (83, r#"{"seq":1,"limit":501}"#),
        ] {
            client
                .send(&Frame::new(1, Op::Sync, seq, bad))
                .await
                .unwrap();
            let end = client.next_frame().await.unwrap();
            assert_eq!((end.op, end.seq), (Op::SyncEnd.code(), seq), "{bad}");
            let end = body_json(&end);
            assert_eq!(end["code"], 400, "{bad}: {end}");
            assert!(
                end["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{end}"
            );
        }
        assert_eq!(client.heartbeat(90).await.unwrap(), 0);
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn acks_reach_the_cursor_and_read_marks_notify_the_other_devices() {
    let rim = Rim::start().await;
    for ws in TRANSPORTS {
        let mid = if ws { 41 } else { 40 };
        let (ka, kb) = (format!("phone-{mid}"), format!("laptop-{mid}"));
        let mut a = im_client(&rim, ws, &Token::im(mid, &ka)).await;
        let mut b = im_client(&rim, ws, &Token::im(mid, &kb)).await;
        let mut legacy = im_client(&rim, ws, &Token::new(mid, &format!("old-{mid}"), "")).await;
        rim.http.store(&[mid], "m1").await;
        rim.http.store(&[mid], "m2").await;
        for client in [&mut a, &mut b] {
            expect_stored(client, 1, "m1").await;
            expect_stored(client, 2, "m2").await;
        }
        for _ in 0..2 {
            legacy.next_push().await.unwrap();
        }
        a.send(&Frame::new(1, Op::Ack, 0, r#"{"seq":2}"#))
            .await
            .unwrap();
        b.send(&Frame::new(1, Op::Ack, 0, r#"{"seq":1}"#))
            .await
            .unwrap();
        let path = format!("/rim/v1/users/{mid}/cursor");
        let cursor = rim
            .http
            .get_until(&path, |c| {
                c["devices"][&ka]["ack"] == 2 && c["devices"][&kb]["ack"] == 1
            })
            .await;
        assert_eq!(
            (&cursor["first"], &cursor["top"], &cursor["read"]),
            (&json!(1), &json!(2), &json!(0))
        );
        // No reply to an ack.
        assert!(a
            .next_frame_within(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none());

        a.send(&Frame::new(1, Op::Read, 0, r#"{"seq":2}"#))
            .await
            .unwrap();
        let notify = b.next_frame().await.unwrap();
        assert_eq!((notify.op, notify.seq), (Op::Notify.code(), 0));
        assert_eq!(body_json(&notify), json!({"kind": "read", "seq": 2}));
        rim.http.get_until(&path, |c| c["read"] == 2).await;
        // Not to the device that read, not to a session that is not IM.
        assert!(a
            .next_frame_within(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none());
        assert!(legacy
            .next_push_within(Duration::from_millis(50))
            .await
            .unwrap()
            .is_none());
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn history_cursor_and_trim_over_http_with_byte_exact_bodies() {
    let rim = Rim::start().await;
    let reply = rim
        .http
        .post_json(
            "/rim/v1/messages",
            &json!({"mids": [50, 51], "op": 1001, "body": {"text": "hi", "n": [1, 2]}}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.json["accepted"], 2);
    assert_eq!(reply.json["seqs"], json!({"50": 1, "51": 1}));
    let id = reply.json["id"].as_str().unwrap().to_owned();
    // Bodies that are not one JSON text come back as base64.
    let raw: &[u8] = b"\xff\xfe\x00\x01 not json";
    let reply = rim
        .http
        .post(
            "/goim/push/mids?operation=1000&mids=50&store=1",
            raw.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    rim.http.store(&[50], " {\"spaced\": true} ").await;
    rim.http.store(&[50], "\"a string\"").await;

    let page = rim
        .http
        .get("/rim/v1/users/50/messages?after=0&limit=2")
        .await
        .unwrap()
        .json;
    assert_eq!(
        (&page["first"], &page["top"], &page["more"]),
        (&json!(1), &json!(4), &json!(true))
    );
    let m = &page["messages"][0];
    assert_eq!(
        (&m["seq"], &m["id"], &m["op"], &m["from"]),
        (&json!(1), &json!(id), &json!(1001), &json!(0))
    );
    assert_eq!(m["body"], json!({"text": "hi", "n": [1, 2]}));
    assert!(m["ts"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(m.get("body_encoding").is_none());
    let m = &page["messages"][1];
    assert_eq!(m["body_encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(m["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, raw);
    // Newest first; whitespace around JSON is kept (so it is base64).
    let page = rim
        .http
        .get("/rim/v1/users/50/messages?before=5&limit=2")
        .await
        .unwrap()
        .json;
    let seqs: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 3]);
    assert_eq!(page["more"], true);
    assert_eq!(page["messages"][0]["body"], "a string");
    assert_eq!(page["messages"][1]["body_encoding"], "base64");

    // Trim: first moves past it; a client from before the trim is told.
    let reply = rim
        .http
        .delete("/rim/v1/users/50/messages?upto=2")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["first"], &reply.json["top"]),
        (200, &json!(3), &json!(4)),
        "{:?}",
        reply.json
    );
    let page = rim
        .http
        .get("/rim/v1/users/50/messages")
        .await
        .unwrap()
        .json;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    for ws in TRANSPORTS {
        let epoch = page["epoch"].as_str().unwrap();
        let mut client = im_client(
            &rim,
            ws,
            &Token::im(50, &format!("late-{ws}")).since(1, Some(epoch)),
        )
        .await;
        let synced = read_sync(&mut client).await;
        assert_eq!(synced.begin["complete"], false, "{}", synced.begin);
        assert_eq!(
            (&synced.begin["from"], &synced.begin["first"]),
            (&json!(3), &json!(3))
        );
        assert_eq!(synced.seqs(), [3, 4]);
    }
    let cursor = rim.http.get("/rim/v1/users/51/cursor").await.unwrap().json;
    assert_eq!(
        (&cursor["first"], &cursor["top"], &cursor["devices"]),
        (&json!(1), &json!(1), &json!({}))
    );
    // A user never written to.
    let cursor = rim.http.get("/rim/v1/users/999/cursor").await.unwrap().json;
    assert_eq!((&cursor["first"], &cursor["top"]), (&json!(1), &json!(0)));
    rim.server.stop().await;
}

#[tokio::test]
async fn the_same_message_id_is_stored_once_per_user() {
    let rim = Rim::start().await;
    let mut client = im_client(&rim, false, &Token::im(60, "k60")).await;
    for _ in 0..2 {
        let reply = rim
            .http
            .post(
                "/goim/push/mids?operation=1000&mids=60&store=1&id=order-1",
                "once",
            )
            .await
            .unwrap();
        assert_eq!(
            (reply.status, &reply.json["data"]["id"]),
            (200, &json!("order-1"))
        );
    }
    let body = json!({"mids": [60, 61], "op": 1000, "body": "x", "id": "order-1"});
    let reply = rim.http.post_json("/rim/v1/messages", &body).await.unwrap();
    // Mailbox 60 had it; 61 gets it now.
    assert_eq!(
        reply.json["seqs"],
        json!({"60": 1, "61": 1}),
        "{:?}",
        reply.json
    );
    expect_stored(&mut client, 1, "once").await;
    // Re-deliveries of seq 1 are dropped by the connection.
    assert!(client
        .next_frame_within(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());
    let page = rim
        .http
        .get("/rim/v1/users/60/messages")
        .await
        .unwrap()
        .json;
    assert_eq!(page["top"], 1);
    rim.server.stop().await;
}

#[tokio::test]
async fn im_sessions_need_a_user_and_a_store() {
    let rim = Rim::start().await;
    let mut anonymous = Client::tcp(rim.tcp()).await.unwrap();
    anonymous
        .send(&Frame::new(1, Op::Auth, 1, Token::im(0, "").to_json()))
        .await
        .unwrap();
    anonymous
        .expect_closed(Duration::from_secs(5))
        .await
        .unwrap();
    rim.server.stop().await;

    let mut config = test_config();
    config.mailbox.store = StoreKind::None;
    let rim = Rim::start_with(config).await;
    let mut client = Client::tcp(rim.tcp()).await.unwrap();
    client
        .send(&Frame::new(1, Op::Auth, 1, Token::im(5, "k").to_json()))
        .await
        .unwrap();
    client.expect_closed(Duration::from_secs(5)).await.unwrap();
    let reply = rim
        .http
        .post("/goim/push/mids?operation=1000&mids=5&store=1", "x")
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{:?}", reply.json);
    assert!(reply.json["message"]
        .as_str()
        .unwrap()
        .contains("no mailbox store"));
    let reply = rim.http.get("/rim/v1/users/5/cursor").await.unwrap();
    assert_eq!(reply.status, 400, "{:?}", reply.json);
    // Plain pushes still work.
    let mut legacy = Client::connect(rim.tcp(), false, &Token::new(5, "k", ""))
        .await
        .unwrap();
    rim.http
        .push_ok("/goim/push/mids?operation=1000&mids=5", "plain")
        .await;
    assert_eq!(&legacy.next_push().await.unwrap().body[..], b"plain");
    rim.server.stop().await;
}

#[tokio::test]
async fn the_embedded_store_keeps_mailboxes_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = test_config();
        config.mailbox.store = StoreKind::Redb;
        config.mailbox.data = data.path().to_owned();
        config
    };
    let rim = Rim::start_with(config()).await;
    for i in 1..=3 {
        rim.http.store(&[70], &format!("m{i}")).await;
    }
    let before = rim.http.get("/rim/v1/users/70/cursor").await.unwrap().json;
    rim.server.stop().await;

    let rim = Rim::start_with(config()).await;
    let after = rim.http.get("/rim/v1/users/70/cursor").await.unwrap().json;
    assert_eq!(after["epoch"], before["epoch"], "the same history");
    assert_eq!((&after["first"], &after["top"]), (&json!(1), &json!(3)));
    let epoch = after["epoch"].as_str().unwrap();
    let mut client = im_client(&rim, true, &Token::im(70, "k").since(1, Some(epoch))).await;
    let synced = read_sync(&mut client).await;
    assert_eq!(
        (synced.seqs(), &synced.begin["complete"]),
        (vec![2, 3], &json!(true))
    );
    assert_eq!(&synced.frames[1].body[..], b"m3");
    rim.http.store(&[70], "m4").await;
    expect_stored(&mut client, 4, "m4").await;
    rim.server.stop().await;
}

#[tokio::test]
async fn metrics_count_appends_and_syncs() {
    let recorder = rim_testkit::metrics::TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let rim = Rim::start().await;
    rim.http.store(&[80], "m1").await;
    let _ = rim
        .http
        .post("/goim/push/mids?operation=1000&mids=80&store=1&id=dup", "d")
        .await;
    let _ = rim
        .http
        .post("/goim/push/mids?operation=1000&mids=80&store=1&id=dup", "d")
        .await;
    let mut client = im_client(&rim, false, &Token::im(80, "k").since(0, None)).await;
    read_sync(&mut client).await;
    poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || {
            let stored = recorder.counter("rim_mailbox_appends_total{result=stored}");
            let dup = recorder.counter("rim_mailbox_appends_total{result=duplicate}");
            let syncs = recorder.counter("rim_comet_im_syncs_total{result=complete}");
            if (stored, dup, syncs) == (2, 1, 1) {
                Ok(())
            } else {
                Err(format!("stored {stored}, duplicates {dup}, syncs {syncs}"))
            }
        },
    )
    .await;
    rim.server.stop().await;
}
