//! Many rooms per connection, end to end over real sockets against a
//! standalone rim (docs/protocol.md, "Rooms"): ops 24 to 27 on TCP and
//! WebSocket, room pushes reaching every member once, the online counts of
//! every membership, op 12 still replacing the primary room, and room chat
//! into a joined room.

mod common;

use common::{test_config, Rim};
use rim_proto::Op;
use rim_testkit::{Client, Token};
use serde_json::{json, Value};

/// Sends op 24 (`join`) or op 26 and returns the reply's body, checking
/// the reply's op and seq.
async fn room_op(client: &mut Client, join: bool, seq: i32, room: &[u8]) -> Vec<u8> {
    let (op, reply_op) = if join {
        (Op::JoinRoom, Op::JoinRoomReply)
    } else {
        (Op::LeaveRoom, Op::LeaveRoomReply)
    };
    let reply = client
        .request(op.code(), seq, room, reply_op.code())
        .await
        .unwrap();
    assert_eq!((reply.op, reply.seq, reply.ver), (reply_op.code(), seq, 1));
    reply.body.to_vec()
}

/// Asserts an op 24/26 answer echoing `room`.
async fn done(client: &mut Client, join: bool, seq: i32, room: &str) {
    let body = room_op(client, join, seq, room.as_bytes()).await;
    assert_eq!(
        String::from_utf8_lossy(&body),
        room,
        "join {join} of {room:?} refused"
    );
}

/// Asserts an op 24/26 refusal with `code`.
async fn refused(client: &mut Client, join: bool, seq: i32, room: &[u8], code: u16) {
    let body = room_op(client, join, seq, room).await;
    let json: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("refusal is not JSON ({e}): {body:?}"));
    assert_eq!(json["code"], code, "{json}");
    assert!(
        json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{json}"
    );
}

async fn push_room(rim: &Rim, room: &str, body: &str) {
    rim.http
        .push_ok(
            &format!("/goim/push/room?operation=1000&type=live&room={room}"),
            body.to_owned(),
        )
        .await;
}

/// Broadcasts a marker and asserts it is the next push of each client.
async fn only_marker(rim: &Rim, clients: &mut [&mut Client]) {
    rim.http
        .push_ok("/goim/push/all?operation=1000", "marker")
        .await;
    for client in clients.iter_mut() {
        let push = client.next_push().await.unwrap();
        assert_eq!(&push.body[..], b"marker", "unexpected push {:?}", push.body);
    }
}

async fn next_body(client: &mut Client) -> String {
    let push = client.next_push().await.unwrap();
    String::from_utf8_lossy(&push.body).into_owned()
}

async fn online_rooms(rim: &Rim, rooms: &[&str]) -> Value {
    let query: Vec<String> = rooms.iter().map(|r| format!("rooms={r}")).collect();
    let path = format!("/goim/online/room?type=live&{}", query.join("&"));
    rim.http.get(&path).await.unwrap().json["data"].clone()
}

async fn many_rooms_per_connection(ws: bool) {
    let mut config = test_config();
    config.comet.max_rooms = 2;
    let rim = Rim::start_with(config).await;
    let mut c = Client::connect(rim.addr(ws), ws, &Token::new(1, "c", "live://p"))
        .await
        .unwrap();
    let mut o = Client::connect(rim.addr(!ws), !ws, &Token::new(2, "o", ""))
        .await
        .unwrap();

    done(&mut c, true, 10, "live://a").await;
    refused(&mut c, true, 11, b"live://a", 409).await;
    refused(&mut c, true, 12, b"live://p", 409).await;
    done(&mut c, true, 13, "live://b").await;
    // max_rooms = 2 besides the primary room.
    refused(&mut c, true, 14, b"live://c", 413).await;
    refused(&mut c, true, 15, b"", 400).await;
    refused(&mut c, true, 16, &[b'r'; 257], 400).await;
    refused(&mut c, true, 17, b"\xff\xfe", 400).await;
    refused(&mut c, false, 18, b"live://c", 409).await;
    done(&mut o, true, 19, "live://a").await;

    // Each room reaches its members, each once; live://c has none.
    push_room(&rim, "a", "to-a").await;
    assert_eq!(next_body(&mut c).await, "to-a");
    assert_eq!(next_body(&mut o).await, "to-a");
    push_room(&rim, "b", "to-b").await;
    push_room(&rim, "p", "to-p").await;
    push_room(&rim, "c", "to-c").await;
    assert_eq!(next_body(&mut c).await, "to-b");
    assert_eq!(next_body(&mut c).await, "to-p");
    only_marker(&rim, &mut [&mut c, &mut o]).await;

    // Every membership counts; the heartbeat carries the primary room's.
    assert_eq!(
        online_rooms(&rim, &["a", "b", "p"]).await,
        json!({"a": 2, "b": 1, "p": 1})
    );
    assert_eq!(c.heartbeat(20).await.unwrap(), 1);
    assert_eq!(o.heartbeat(21).await.unwrap(), 0, "o has no primary room");

    // op 12 replaces the primary room only; into a joined room, it stays
    // a member once.
    let reply = c
        .request(
            Op::ChangeRoom.code(),
            22,
            b"live://a",
            Op::ChangeRoomReply.code(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"live://a");
    assert_eq!(c.heartbeat(23).await.unwrap(), 2);
    assert_eq!(
        online_rooms(&rim, &["a", "b", "p"]).await,
        json!({"a": 2, "b": 1, "p": 0})
    );
    // A place is free again (a is the primary room now).
    done(&mut c, true, 24, "live://c").await;
    push_room(&rim, "p", "old-primary").await;
    push_room(&rim, "a", "to-a-again").await;
    assert_eq!(next_body(&mut c).await, "to-a-again");
    assert_eq!(next_body(&mut o).await, "to-a-again");

    // op 26 leaves a joined room, and the primary room.
    done(&mut c, false, 25, "live://b").await;
    refused(&mut c, false, 26, b"live://b", 409).await;
    done(&mut c, false, 27, "live://a").await;
    assert_eq!(c.heartbeat(28).await.unwrap(), 0);
    push_room(&rim, "b", "left-b").await;
    push_room(&rim, "a", "only-o").await;
    push_room(&rim, "c", "still-c").await;
    assert_eq!(next_body(&mut o).await, "only-o");
    assert_eq!(next_body(&mut c).await, "still-c");
    only_marker(&rim, &mut [&mut c, &mut o]).await;
    assert_eq!(
        online_rooms(&rim, &["a", "b", "c", "p"]).await,
        json!({"a": 1, "b": 0, "c": 1, "p": 0})
    );

    // Disconnecting leaves every room: none is left on the comet.
    done(&mut o, true, 29, "live://c").await;
    drop(c);
    drop(o);
    rim.http
        .get_until("/goim/online/total", |j| j["data"]["conn_count"] == 0)
        .await;
    let json = rim.http.get("/1/count?type=room").await.unwrap().json;
    assert_eq!(json["data"], json!([]));
    rim.server.stop().await;
}

#[tokio::test]
async fn many_rooms_per_connection_tcp() {
    many_rooms_per_connection(false).await;
}

#[tokio::test]
async fn many_rooms_per_connection_ws() {
    many_rooms_per_connection(true).await;
}

/// The default cap is 16 rooms besides the primary room, and a connection
/// that joins and leaves rooms many times leaves nothing behind.
#[tokio::test]
async fn default_cap_and_churn() {
    let mut config = test_config();
    // Over 100 requests in a row: no frame rate limit here.
    config.comet.max_frames_per_sec = 0;
    let rim = Rim::start_with(config).await;
    let mut c = Client::connect(rim.tcp(), false, &Token::new(1, "c", "live://p"))
        .await
        .unwrap();
    for round in 0..3 {
        for i in 0..16 {
            done(&mut c, true, i, &format!("live://{round}-{i}")).await;
        }
        refused(
            &mut c,
            true,
            99,
            format!("live://{round}-16").as_bytes(),
            413,
        )
        .await;
        let json = rim.http.get("/goim/online/total").await.unwrap().json;
        assert_eq!(json["data"]["conn_count"], 1);
        let top = rim
            .http
            .get("/goim/online/top?type=live&limit=100")
            .await
            .unwrap()
            .json;
        assert_eq!(top["data"].as_array().map(Vec::len), Some(17), "{top}");
        for i in 0..16 {
            done(&mut c, false, 100 + i, &format!("live://{round}-{i}")).await;
        }
    }
    let top = rim
        .http
        .get("/goim/online/top?type=live&limit=100")
        .await
        .unwrap()
        .json;
    assert_eq!(top["data"], json!([{"room_id": "p", "count": 1}]));
    rim.server.stop().await;
}

/// An IM session sends to a room it joined with op 24, not only to its
/// primary room; a room it left is refused.
#[tokio::test]
async fn chat_reaches_a_joined_room() {
    let rim = Rim::start().await;
    let mut sender = Client::connect(rim.tcp(), false, &Token::im(1, "sender"))
        .await
        .unwrap();
    let mut member = Client::connect(rim.ws(), true, &Token::new(2, "member", "live://9"))
        .await
        .unwrap();
    done(&mut sender, true, 2, "live://9").await;
    let send = |seq: i32, id: &str| {
        (
            seq,
            json!({"room": "live://9", "op": 1000, "id": id, "body": {"text": "hi"}}).to_string(),
        )
    };
    let (seq, body) = send(3, "m1");
    let reply = sender
        .request(
            Op::SendMsg.code(),
            seq,
            body.as_bytes(),
            Op::SendMsgReply.code(),
        )
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(reply["code"], 0, "{reply}");
    let push = member.next_push().await.unwrap();
    let envelope: Value = serde_json::from_slice(&push.body).unwrap();
    assert_eq!(
        (
            &envelope["from"],
            &envelope["room"],
            &envelope["body"]["text"]
        ),
        (&json!(1), &json!("live://9"), &json!("hi"))
    );
    done(&mut sender, false, 4, "live://9").await;
    let (seq, body) = send(5, "m2");
    let reply = sender
        .request(
            Op::SendMsg.code(),
            seq,
            body.as_bytes(),
            Op::SendMsgReply.code(),
        )
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(reply["code"], 403, "{reply}");
    rim.server.stop().await;
}
