//! Chat end to end (docs/protocol.md, "Chat"): IM clients of a standalone
//! rim send messages (op 4) to users and rooms over TCP and WebSocket, and
//! each refusal answers op 5 with its code from its real cause.

mod common;

use std::time::Duration;

use common::{test_config, Rim};
use rim_proto::{Frame, Op};
use rim_testkit::{Client, Token};
use serde_json::{json, Value};

const TRANSPORTS: [bool; 2] = [false, true];

fn body_json(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body).expect("a JSON body")
}

async fn im(rim: &Rim, ws: bool, mid: i64, key: &str, room: &str) -> Client {
    let mut token = Token::im(mid, key);
    token.room_id = room.to_owned();
    Client::connect(rim.addr(ws), ws, &token)
        .await
        .expect("IM client connects")
}

/// Sends op 4 with header seq `seq` and returns op 5's body (frames that
/// arrive first are kept in `others`).
async fn send(client: &mut Client, seq: i32, message: &Value, others: &mut Vec<Frame>) -> Value {
    client
        .send(&Frame::new(1, Op::SendMsg, seq, message.to_string()))
        .await
        .unwrap();
    loop {
        let frame = client.next_frame().await.expect("op 5");
        if frame.op == Op::SendMsgReply.code() {
            assert_eq!(frame.seq, seq, "op 5 echoes the header seq");
            return body_json(&frame);
        }
        others.push(frame);
    }
}

/// The next stored frame's (seq, envelope).
async fn next_message(client: &mut Client, pending: &mut Vec<Frame>) -> (i32, Value) {
    let frame = if pending.is_empty() {
        client.next_frame().await.expect("a message")
    } else {
        pending.remove(0)
    };
    assert_eq!(frame.op, 1000, "{frame:?}");
    (frame.seq, body_json(&frame))
}

#[tokio::test]
async fn peers_talk_and_each_gets_a_copy_in_order() {
    let rim = Rim::start().await;
    for ws in TRANSPORTS {
        let (a, b) = if ws { (11, 12) } else { (1, 2) };
        let mut alice = im(&rim, ws, a, &format!("alice-{ws}"), "").await;
        let mut bob = im(&rim, !ws, b, &format!("bob-{ws}"), "").await;
        let mut seen = Vec::new();
        let msg = json!({"to": b, "op": 1000, "id": "m1", "body": {"text": "hi bob"}});
        assert_eq!(
            send(&mut alice, 7, &msg, &mut seen).await,
            json!({"id": "m1", "code": 0})
        );
        let (seq, envelope) = next_message(&mut bob, &mut Vec::new()).await;
        assert_eq!(seq, 1);
        assert_eq!(envelope["from"], a);
        assert_eq!(envelope["to"], b);
        assert_eq!(envelope["id"], "m1");
        assert_eq!(envelope["body"], json!({"text": "hi bob"}));
        assert!(envelope["ts"].as_i64().unwrap() > 1_700_000_000_000);
        // The sender's other devices see it: it is in the sender's mailbox.
        let (seq, own) = next_message(&mut alice, &mut seen).await;
        assert_eq!((seq, &own), (1, &envelope));
        // A reply, and a resend of m1 (stored once).
        let reply = json!({"to": a, "op": 1000, "id": "r1", "body": "hello alice"});
        assert_eq!(send(&mut bob, 1, &reply, &mut Vec::new()).await["code"], 0);
        assert_eq!(send(&mut alice, 8, &msg, &mut seen).await["code"], 0);
        let (seq, envelope) = next_message(&mut alice, &mut seen).await;
        assert_eq!(
            (seq, &envelope["from"], &envelope["body"]),
            (2, &json!(b), &json!("hello alice"))
        );
        assert!(alice
            .next_frame_within(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none());
        let page = rim
            .http
            .get(&format!("/rim/v1/users/{b}/messages"))
            .await
            .unwrap()
            .json;
        assert_eq!(page["top"], 2, "m1 once, r1 once: {page}");
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn room_messages_go_live_to_the_room_and_are_not_stored() {
    let rim = Rim::start().await;
    let mut a = im(&rim, false, 21, "ra", "live://9").await;
    let mut b = im(&rim, true, 22, "rb", "live://9").await;
    let mut legacy = Client::connect(rim.ws(), true, &Token::new(23, "rc", "live://9"))
        .await
        .unwrap();
    let mut elsewhere = im(&rim, false, 24, "rd", "live://10").await;
    let mut seen = Vec::new();
    let msg = json!({"room": "live://9", "op": 1001, "id": "x", "body": {"text": "hey room"}});
    assert_eq!(
        send(&mut a, 3, &msg, &mut seen).await,
        json!({"id": "x", "code": 0})
    );
    for client in [&mut b, &mut legacy] {
        let push = client.next_push().await.unwrap();
        assert_eq!((push.op, push.seq), (1001, 0));
        let envelope: Value = serde_json::from_slice(&push.body).unwrap();
        assert_eq!(envelope["room"], "live://9");
        assert_eq!(envelope["from"], 21);
        assert_eq!(envelope["body"], json!({"text": "hey room"}));
    }
    assert!(elsewhere
        .next_frame_within(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());
    let cursor = rim.http.get("/rim/v1/users/22/cursor").await.unwrap().json;
    assert_eq!(cursor["top"], 0, "room messages are not stored");
    // Only to the room the session is in.
    let other = json!({"room": "live://10", "op": 1001, "id": "y", "body": 1});
    let reply = send(&mut a, 4, &other, &mut seen).await;
    assert_eq!(reply["code"], 403, "{reply}");
    rim.server.stop().await;
}

#[tokio::test]
async fn every_refusal_answers_its_code() {
    let mut config = test_config();
    config.logic.chat.rate = 1;
    config.logic.chat.burst = 3;
    config.logic.chat.max_body = 100;
    let rim = Rim::start_with(config).await;
    for ws in TRANSPORTS {
        let mid = if ws { 31 } else { 30 };
        let mut c = im(&rim, ws, mid, &format!("k{mid}"), "").await;
        let mut seen = Vec::new();
        for (i, (raw, fragment)) in [
            ("not json".to_owned(), "message"),
            (
                json!({"op": 1000, "id": "a", "body": 1}).to_string(),
                "exactly one of",
            ),
            (
                json!({"to": 2, "group": 3, "op": 1000, "id": "a", "body": 1}).to_string(),
                "exactly one of",
            ),
            (
                json!({"to": 0, "op": 1000, "id": "a", "body": 1}).to_string(),
                "exactly one of",
            ),
            (
                json!({"to": 2, "op": 7, "id": "a", "body": 1}).to_string(),
                "op",
            ),
            (
                json!({"to": 2, "op": 1000, "id": "a b", "body": 1}).to_string(),
                "id",
            ),
            (
                json!({"to": 2, "op": 1000, "id": "a".repeat(41), "body": 1}).to_string(),
                "id",
            ),
            (
                json!({"to": 2, "op": 1000, "id": "a", "body": 1, "from": 5}).to_string(),
                "unknown field",
            ),
            (
                json!({"to": "2", "op": 1000, "id": "a", "body": 1}).to_string(),
                "message",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            c.send(&Frame::new(1, Op::SendMsg, i as i32, raw.clone()))
                .await
                .unwrap();
            let reply = loop {
                let frame = c.next_frame().await.unwrap();
                if frame.op == Op::SendMsgReply.code() {
                    break body_json(&frame);
                }
                seen.push(frame);
            };
            assert_eq!(reply["code"], 400, "{raw}: {reply}");
            assert!(
                reply["reason"].as_str().unwrap().contains(fragment),
                "{raw}: {reply}"
            );
        }
        // 413: a body over chat.max_body.
        let big = json!({"to": 2, "op": 1000, "id": "big", "body": "x".repeat(200)});
        let reply = send(&mut c, 50, &big, &mut seen).await;
        assert_eq!(
            (&reply["code"], &reply["id"]),
            (&json!(413), &json!("big")),
            "{reply}"
        );
        // 429: over the rate (burst 3, 1/s); the refusals above were not counted.
        let mut codes = Vec::new();
        for i in 0..5 {
            let msg = json!({"to": 2, "op": 1000, "id": format!("r{i}"), "body": i});
            codes.push(
                send(&mut c, 60 + i, &msg, &mut seen).await["code"]
                    .as_u64()
                    .unwrap(),
            );
        }
        assert_eq!(codes, [0, 0, 0, 429, 429], "burst 3 then refused");
        // The connection is still fine.
        assert_eq!(c.heartbeat(99).await.unwrap(), 0);
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn sessions_that_are_not_im_keep_goims_op_4_echo() {
    let rim = Rim::start().await;
    let mut c = Client::connect(rim.tcp(), false, &Token::new(40, "plain", ""))
        .await
        .unwrap();
    let msg = json!({"to": 41, "op": 1000, "id": "a", "body": 1}).to_string();
    let reply = c
        .request(Op::SendMsg.code(), 5, msg.as_bytes(), Op::SendMsg.code())
        .await
        .unwrap();
    assert_eq!((reply.op, reply.seq, reply.body.len()), (4, 5, 0));
    let cursor = rim.http.get("/rim/v1/users/41/cursor").await.unwrap().json;
    assert_eq!(cursor["top"], 0);
    rim.server.stop().await;
}

async fn put(rim: &Rim, path: &str, body: &Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .put(format!("http://{}{path}", rim.server.http_addr))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (
        status,
        serde_json::from_str(&reply.text().await.unwrap()).unwrap(),
    )
}

async fn delete_json(rim: &Rim, path: &str, body: &Value) -> (u16, Value) {
    let reply = reqwest::Client::new()
        .delete(format!("http://{}{path}", rim.server.http_addr))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (
        status,
        serde_json::from_str(&reply.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn groups_over_http_and_group_messages_reach_every_member() {
    let mut config = test_config();
    config.logic.chat.group_max_members = 4;
    let rim = Rim::start_with(config).await;
    let (status, reply) = put(
        &rim,
        "/rim/v1/groups/9/members",
        &json!({"mids": [3, 1, 2, 2]}),
    )
    .await;
    assert_eq!((status, &reply), (200, &json!({"mids": [1, 2, 3]})));
    let got = rim.http.get("/rim/v1/groups/9/members").await.unwrap();
    assert_eq!((got.status, &got.json), (200, &json!({"mids": [1, 2, 3]})));
    let mut one = im(&rim, false, 1, "g1", "").await;
    let mut two = im(&rim, true, 2, "g2", "").await;
    let mut outsider = im(&rim, false, 4, "g4", "").await;
    let mut seen = Vec::new();
    let msg = json!({"group": 9, "op": 1000, "id": "hello", "body": {"text": "hi group"}});
    assert_eq!(
        send(&mut one, 1, &msg, &mut seen).await,
        json!({"id": "hello", "code": 0})
    );
    let (seq, envelope) = next_message(&mut two, &mut Vec::new()).await;
    assert_eq!(seq, 1);
    assert_eq!(
        (&envelope["from"], &envelope["group"], &envelope["body"]),
        (&json!(1), &json!(9), &json!({"text": "hi group"}))
    );
    assert!(envelope.get("to").is_none());
    let (_, own) = next_message(&mut one, &mut seen).await;
    assert_eq!(own, envelope, "the sender's copy");
    // The offline member has it in its mailbox.
    let cursor = rim.http.get("/rim/v1/users/3/cursor").await.unwrap().json;
    assert_eq!(cursor["top"], 1);
    // 409 not a member, 404 no such group.
    let reply = send(&mut outsider, 2, &msg, &mut Vec::new()).await;
    assert_eq!(reply["code"], 409, "{reply}");
    let msg99 = json!({"group": 99, "op": 1000, "id": "x", "body": 1});
    assert_eq!(send(&mut one, 3, &msg99, &mut seen).await["code"], 404);
    // The backend sends to the group; members leave; the group's cap.
    let reply = rim
        .http
        .post_json(
            "/rim/v1/groups/9/messages",
            &json!({"op": 1001, "body": {"text": "from the backend"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["accepted"]),
        (200, &json!(3)),
        "{:?}",
        reply.json
    );
    let frame = two.next_frame().await.unwrap();
    assert_eq!((frame.op, frame.seq), (1001, 2));
    assert_eq!(body_json(&frame), json!({"text": "from the backend"}));
    let (status, reply) =
        delete_json(&rim, "/rim/v1/groups/9/members", &json!({"mids": [3]})).await;
    assert_eq!((status, &reply), (200, &json!({"mids": [1, 2]})));
    let (status, reply) = put(
        &rim,
        "/rim/v1/groups/9/members",
        &json!({"mids": [5, 6, 7]}),
    )
    .await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("every member's mailbox"),
        "{reply}"
    );
    // Bad input.
    for (status, reply) in [
        put(&rim, "/rim/v1/groups/0/members", &json!({"mids": [1]})).await,
        put(&rim, "/rim/v1/groups/x/members", &json!({"mids": [1]})).await,
        put(&rim, "/rim/v1/groups/9/members", &json!({"mids": []})).await,
        put(&rim, "/rim/v1/groups/9/members", &json!({"mids": [0]})).await,
        put(&rim, "/rim/v1/groups/9/members", &json!({"mids": ["1"]})).await,
        put(&rim, "/rim/v1/groups/9/members", &json!([1])).await,
    ] {
        assert_eq!((status, &reply["code"]), (400, &json!(400)), "{reply}");
    }
    let got = rim.http.get("/rim/v1/groups/77/members").await.unwrap();
    assert_eq!((got.status, &got.json["code"]), (404, &json!(404)));
    let reply = rim
        .http
        .post_json(
            "/rim/v1/groups/77/messages",
            &json!({"op": 1000, "body": 1}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 404, "{:?}", reply.json);
    rim.server.stop().await;
}

#[tokio::test]
async fn muted_senders_get_403_in_the_muted_scope_until_lifted() {
    let rim = Rim::start().await;
    put(&rim, "/rim/v1/groups/5/members", &json!({"mids": [50, 51]})).await;
    let mut c = im(&rim, false, 50, "m50", "live://m").await;
    let mut seen = Vec::new();
    let peer = json!({"to": 51, "op": 1000, "id": "p", "body": 1});
    let group = json!({"group": 5, "op": 1000, "id": "g", "body": 1});
    let room = json!({"room": "live://m", "op": 1000, "id": "r", "body": 1});
    let (status, reply) = put(
        &rim,
        "/rim/v1/users/50/mute",
        &json!({"until": null, "scope": "group:5"}),
    )
    .await;
    assert_eq!(
        (status, &reply),
        (
            200,
            &json!({"mid": 50, "mutes": [{"scope": "group:5", "until": null}]})
        )
    );
    assert_eq!(send(&mut c, 1, &group, &mut seen).await["code"], 403);
    assert_eq!(send(&mut c, 2, &peer, &mut seen).await["code"], 0);
    assert_eq!(send(&mut c, 3, &room, &mut seen).await["code"], 0);
    put(
        &rim,
        "/rim/v1/users/50/mute",
        &json!({"until": "2999-01-01T00:00:00Z", "scope": "all"}),
    )
    .await;
    for (i, msg) in [&peer, &group, &room].into_iter().enumerate() {
        let reply = send(&mut c, 10 + i as i32, msg, &mut seen).await;
        assert_eq!(reply["code"], 403, "{msg}: {reply}");
        assert!(
            reply["reason"].as_str().unwrap().contains("muted"),
            "{reply}"
        );
    }
    let listed = rim.http.get("/rim/v1/users/50/mute").await.unwrap().json;
    assert_eq!(listed["mutes"].as_array().unwrap().len(), 2, "{listed}");
    // Lift one scope, then the rest.
    let reply = rim
        .http
        .delete("/rim/v1/users/50/mute?scope=all")
        .await
        .unwrap();
    assert_eq!(
        reply.json["mutes"],
        json!([{"scope": "group:5", "until": null}])
    );
    assert_eq!(send(&mut c, 20, &peer, &mut seen).await["code"], 0);
    rim.http.delete("/rim/v1/users/50/mute").await.unwrap();
    assert_eq!(send(&mut c, 21, &group, &mut seen).await["code"], 0);
    // A mute that is over does not hold.
    put(
        &rim,
        "/rim/v1/users/50/mute",
        &json!({"until": "2001-01-01T00:00:00Z", "scope": "all"}),
    )
    .await;
    assert_eq!(send(&mut c, 22, &peer, &mut seen).await["code"], 0);
    for body in [
        json!({"until": null, "scope": "everything"}),
        json!({"until": null, "scope": "group:0"}),
        json!({"until": null, "scope": "room:"}),
        json!({"until": "tomorrow", "scope": "all"}),
        json!({"scope": "all", "extra": 1}),
    ] {
        let (status, reply) = put(&rim, "/rim/v1/users/50/mute", &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
    }
    let reply = rim
        .http
        .delete("/rim/v1/users/50/mute?scope=nope")
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    rim.server.stop().await;
}

#[tokio::test]
async fn the_word_filter_masks_or_rejects_and_picks_up_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "# banned\nbadword\n坏词\n").unwrap();
    let mut config = test_config();
    config.logic.chat.filter.words_file = Some(words.clone());
    config.logic.chat.filter.reload_interval = Duration::from_millis(50);
    config.logic.chat.rate = 1000;
    config.logic.chat.burst = 1000;
    let rim = Rim::start_with(config.clone()).await;
    let mut a = im(&rim, false, 60, "fa", "").await;
    let mut b = im(&rim, true, 61, "fb", "").await;
    let mut seen = Vec::new();
    let msg = json!({"to": 61, "op": 1000, "id": "f1", "body": {"text": "a BadWord and 坏词 here", "n": 1}});
    assert_eq!(send(&mut a, 1, &msg, &mut seen).await["code"], 0);
    let (_, envelope) = next_message(&mut b, &mut Vec::new()).await;
    assert_eq!(
        envelope["body"],
        json!({"text": "a ******* and ** here", "n": 1})
    );
    // The file changes: the new words apply, the old ones no longer.
    std::fs::write(&words, "other\n").unwrap();
    let mut i = 2;
    rim_testkit::poll::eventually(Duration::from_secs(10), Duration::from_millis(20), async || {
        i += 1;
        let msg = json!({"to": 61, "op": 1000, "id": format!("f{i}"), "body": {"text": "badword other"}});
        let reply = send(&mut a, i, &msg, &mut seen).await;
        let (_, envelope) = next_message(&mut b, &mut Vec::new()).await;
        if reply["code"] == 0 && envelope["body"]["text"] == "badword *****" {
            Ok(())
        } else {
            Err(format!("not reloaded yet: {reply} {envelope}"))
        }
    })
    .await;
    rim.server.stop().await;

    // Reject mode: 422 names the word.
    config.logic.chat.filter.action = rim_logic::FilterAction::Reject;
    let rim = Rim::start_with(config).await;
    let mut a = im(&rim, false, 60, "fa2", "").await;
    let msg = json!({"to": 61, "op": 1000, "id": "r1", "body": {"text": "an OTHER word"}});
    let reply = send(&mut a, 1, &msg, &mut Vec::new()).await;
    assert_eq!(reply["code"], 422, "{reply}");
    assert!(
        reply["reason"].as_str().unwrap().contains("other"),
        "{reply}"
    );
    // Only the configured field is looked at.
    let msg = json!({"to": 61, "op": 1000, "id": "r2", "body": {"title": "other"}});
    assert_eq!(send(&mut a, 2, &msg, &mut Vec::new()).await["code"], 0);
    rim.server.stop().await;
}

#[tokio::test]
async fn a_message_sent_before_auth_is_not_sent() {
    let rim = Rim::start().await;
    for ws in TRANSPORTS {
        let mut c = if ws {
            Client::ws(rim.ws()).await
        } else {
            Client::tcp(rim.tcp()).await
        }
        .unwrap();
        let msg = json!({"to": 71, "op": 1000, "id": "early", "body": 1});
        c.send(&Frame::new(1, Op::SendMsg, 1, msg.to_string()))
            .await
            .unwrap();
        c.auth(&Token::im(70, &format!("early-{ws}")))
            .await
            .unwrap();
        assert!(
            c.next_frame_within(Duration::from_millis(200))
                .await
                .unwrap()
                .is_none(),
            "no op 5"
        );
        let cursor = rim.http.get("/rim/v1/users/71/cursor").await.unwrap().json;
        assert_eq!(cursor["top"], 0, "nothing stored");
    }
    rim.server.stop().await;
}
