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
