//! End-to-end over real sockets: a standalone rim, goim clients on TCP and
//! WebSocket, pushes through every HTTP endpoint (goim v1 and v2).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{test_config, Rim};
use rim_proto::{Frame, Op};
use rim_testkit::{Client, Token};

/// Broadcasts a marker and asserts it is the next (and only) thing `client`
/// receives: proves that nothing meant for others reached it.
async fn assert_only_marker(rim: &Rim, clients: &mut [&mut Client]) {
    rim.http
        .push_ok("/goim/push/all?operation=1000", "marker")
        .await;
    for client in clients.iter_mut() {
        let push = client.next_push().await.expect("marker arrives");
        assert_eq!(
            &push.body[..],
            b"marker",
            "received a push meant for someone else"
        );
    }
}

async fn keyed_push_reaches_only_its_target(ws: bool) {
    let rim = Rim::start().await;
    let mut a = Client::connect(rim.addr(ws), ws, &Token::new(1, "key-a", "live://1"))
        .await
        .unwrap();
    let mut b = Client::connect(rim.addr(ws), ws, &Token::new(2, "key-b", "live://1"))
        .await
        .unwrap();

    rim.http
        .push_ok("/goim/push/keys?operation=1000&keys=key-a", "to-a")
        .await;
    let push = a.next_push().await.unwrap();
    assert_eq!((push.ver, push.op, push.seq), (1, 1000, 0));
    assert_eq!(&push.body[..], b"to-a");

    rim.http
        .push_ok("/goim/push/mids?operation=1001&mids=2", "to-b")
        .await;
    let push = b.next_push().await.unwrap();
    assert_eq!((push.op, &push.body[..]), (1001, &b"to-b"[..]));

    assert_only_marker(&rim, &mut [&mut a, &mut b]).await;
    rim.server.stop().await;
}

#[tokio::test]
async fn keyed_push_reaches_only_its_target_tcp() {
    keyed_push_reaches_only_its_target(false).await;
}

#[tokio::test]
async fn keyed_push_reaches_only_its_target_ws() {
    keyed_push_reaches_only_its_target(true).await;
}

#[tokio::test]
async fn tcp_push_bytes_match_goim_capture() {
    let rim = Rim::start().await;
    let mut c = Client::connect(
        rim.tcp(),
        false,
        &Token::new(1001, "tcp-key-1", "live://1000"),
    )
    .await
    .unwrap();
    rim.http
        .push_ok(
            "/goim/push/keys?operation=1000&keys=tcp-key-1",
            "push-to-key",
        )
        .await;
    let bytes = c.read_exact_tcp(27).await.unwrap();
    let expected: [u8; 27] = [
        0x00, 0x00, 0x00, 0x1b, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00,
        0x00, b'p', b'u', b's', b'h', b'-', b't', b'o', b'-', b'k', b'e', b'y',
    ];
    assert_eq!(&bytes[..], &expected[..]);
    rim.server.stop().await;
}

#[tokio::test]
async fn ws_push_is_one_op9_message_matching_goim_capture() {
    let rim = Rim::start().await;
    let mut c = Client::connect(rim.ws(), true, &Token::new(1002, "ws-key-1", "live://1000"))
        .await
        .unwrap();
    rim.http
        .push_ok(
            "/goim/push/keys?operation=1000&keys=ws-key-1",
            "push-to-key",
        )
        .await;
    let msg = c.read_ws_message().await.unwrap();
    let mut expected = vec![
        0x00, 0x00, 0x00, 0x2b, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00,
        0x00, 0x00,
    ];
    expected.extend_from_slice(b"push-to-key");
    assert_eq!(&msg[..], &expected[..]);
    rim.server.stop().await;
}

#[tokio::test]
async fn room_push_reaches_members_only_without_accepts_filtering() {
    let rim = Rim::start().await;
    // The TCP member accepts nothing: room pushes are not filtered.
    let mut t = Token::new(1, "tcp-member", "live://1000");
    t.accepts.clear();
    let mut tcp_member = Client::connect(rim.tcp(), false, &t).await.unwrap();
    let mut ws_member = Client::connect(rim.ws(), true, &Token::new(2, "ws-member", "live://1000"))
        .await
        .unwrap();
    let mut outsider = Client::connect(rim.tcp(), false, &Token::new(3, "outsider", "live://2000"))
        .await
        .unwrap();

    rim.http
        .push_ok(
            "/goim/push/room?operation=1002&type=live&room=1000",
            r#"{"room":"msg"}"#,
        )
        .await;
    for c in [&mut tcp_member, &mut ws_member] {
        let push = c.next_push().await.unwrap();
        assert_eq!((push.op, &push.body[..]), (1002, &br#"{"room":"msg"}"#[..]));
    }
    // v1 room push: rid is the room id verbatim.
    rim.http
        .push_v1_ok("/1/push/room?rid=live://2000&operation=1000", "v1-room")
        .await;
    let push = outsider.next_push().await.unwrap();
    assert_eq!(&push.body[..], b"v1-room");

    // Room pushes arrive in order.
    for i in 0..20 {
        rim.http
            .push_ok(
                "/goim/push/room?operation=1000&type=live&room=1000",
                format!("m{i}"),
            )
            .await;
    }
    for c in [&mut tcp_member, &mut ws_member] {
        for i in 0..20 {
            let push = c.next_push().await.unwrap();
            assert_eq!(push.body, Bytes::from(format!("m{i}")));
        }
    }
    // tcp_member accepts no op, so only the WS member and the outsider see the broadcast marker.
    assert_only_marker(&rim, &mut [&mut ws_member, &mut outsider]).await;
    tcp_member
        .expect_no_push(Duration::from_millis(200))
        .await
        .unwrap();
    rim.server.stop().await;
}

/// A token without a room, accepting exactly `accepts`.
fn token(mid: i64, key: &str, accepts: &[i32]) -> Token {
    let mut t = Token::new(mid, key, "");
    t.accepts = accepts.to_vec();
    t
}

#[tokio::test]
async fn broadcast_honours_accepts() {
    let rim = Rim::start().await;
    let mut c10 = Client::connect(rim.tcp(), false, &token(10, "k10", &[1000]))
        .await
        .unwrap();
    // c13 accepts 2000 only: the subject of accepts filtering.
    let mut c13 = Client::connect(rim.ws(), true, &token(13, "k13", &[2000]))
        .await
        .unwrap();

    rim.http
        .push_ok("/goim/push/all?operation=2000&speed=100", "only-13")
        .await;
    let push = c13.next_push().await.unwrap();
    assert_eq!((push.op, &push.body[..]), (2000, &b"only-13"[..]));
    rim.http
        .push_ok("/goim/push/mids?operation=1000&mids=10&mids=13", "only-10")
        .await;
    let push = c10.next_push().await.unwrap();
    assert_eq!((push.op, &push.body[..]), (1000, &b"only-10"[..]));

    // c10 did not get "only-13".
    assert_only_marker(&rim, &mut [&mut c10]).await;
    // c13 did not get "only-10"; its marker is a 2000 broadcast.
    rim.http
        .push_ok("/goim/push/all?operation=2000", "marker-2000")
        .await;
    assert_eq!(&c13.next_push().await.unwrap().body[..], b"marker-2000");
    rim.server.stop().await;
}

/// The next push of `client` is `(op, body)`.
async fn expect_push(client: &mut Client, who: &str, op: i32, body: &[u8]) {
    let push = client
        .next_push()
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(
        (push.op, &push.body[..], push.seq),
        (op, body, 0),
        "{who} got {:?}",
        push.body
    );
}

/// A goim v1 client, as goim v1's benchmark client is: its op 7 body is the
/// bare decimal uid, it names no accepts and no room; every v1 push reaches
/// it, unfiltered (v1 had no accepts), and it is in room "1" as goim v1's
/// logic put it.
async fn goim_v1_client_end_to_end(ws: bool) {
    let rim = Rim::start().await;
    let mut v1 = Client::tcp(rim.tcp()).await.unwrap();
    let reply = v1.auth_body("4242").await.unwrap();
    assert_eq!((reply.op, reply.seq, reply.body.len()), (8, 1, 0));
    let mut v1_ws = if ws {
        Client::ws(rim.ws()).await.unwrap()
    } else {
        Client::tcp(rim.tcp()).await.unwrap()
    };
    v1_ws.auth_body("4243").await.unwrap();
    // A v2 client accepting only 2000: a v1 broadcast reaches it as well.
    let mut v2 = Client::connect(rim.tcp(), false, &token(7, "v2", &[2000]))
        .await
        .unwrap();

    // /1/push uses op 5 by default, as goim v1 did.
    rim.http.push_v1_ok("/1/push?uid=4242", "v1-uid").await;
    expect_push(&mut v1, "v1", 5, b"v1-uid").await;
    rim.http
        .push_v1_ok("/1/pushs", r#"{"m":{"hello":1},"u":[4242,4243]}"#)
        .await;
    expect_push(&mut v1, "v1", 5, br#"{"hello":1}"#).await;
    expect_push(&mut v1_ws, "v1_ws", 5, br#"{"hello":1}"#).await;
    rim.http.push_v1_ok("/1/push/room?rid=1", "v1-room").await;
    expect_push(&mut v1, "v1", 5, b"v1-room").await;
    expect_push(&mut v1_ws, "v1_ws", 5, b"v1-room").await;
    rim.http.push_v1_ok("/1/push/all", "v1-all").await;
    for (client, who) in [(&mut v1, "v1"), (&mut v1_ws, "v1_ws"), (&mut v2, "v2")] {
        expect_push(client, who, 5, b"v1-all").await;
    }
    // A stored v1 push reaches the live client too (seq 0: it is no IM session).
    let reply = rim
        .http
        .post("/1/push?uid=4243&store=1&operation=1001", "v1-stored")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["ret"]),
        (200, &1.into()),
        "{:?}",
        reply.json
    );
    expect_push(&mut v1_ws, "v1_ws", 1001, b"v1-stored").await;
    // goim v2's API keeps filtering: the v1 clients accept nothing.
    rim.http
        .push_ok(
            "/goim/push/mids?operation=1000&mids=4242&mids=4243",
            "v2-mids",
        )
        .await;
    rim.http
        .push_ok("/goim/push/all?operation=5", "v2-all")
        .await;
    rim.http.push_v1_ok("/1/push/all", "marker").await;
    for (client, who) in [(&mut v1, "v1"), (&mut v1_ws, "v1_ws"), (&mut v2, "v2")] {
        expect_push(client, who, 5, b"marker").await;
    }

    // Both are counted in room "1", and a heartbeat carries its count.
    assert_eq!(v1.heartbeat(2).await.unwrap(), 2);
    let json = rim.http.get("/1/count?type=room").await.unwrap().json;
    assert_eq!(
        json["data"],
        serde_json::json!([{"RoomId": "1", "Count": 2}])
    );
    rim.server.stop().await;
}

#[tokio::test]
async fn goim_v1_client_end_to_end_tcp() {
    goim_v1_client_end_to_end(false).await;
}

#[tokio::test]
async fn goim_v1_client_end_to_end_ws() {
    goim_v1_client_end_to_end(true).await;
}

#[tokio::test]
async fn a_token_that_is_neither_json_nor_a_decimal_uid_is_refused() {
    let rim = Rim::start().await;
    for body in ["4242x", " 4242", "4242.0", "99999999999999999999"] {
        let mut c = Client::tcp(rim.tcp()).await.unwrap();
        assert!(c.auth_body(body).await.is_err(), "{body:?} was accepted");
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn multi_key_push_reaches_every_listed_key_only() {
    let rim = Rim::start().await;
    let mut a = Client::connect(rim.tcp(), false, &Token::new(21, "multi-a", "live://1"))
        .await
        .unwrap();
    let mut b = Client::connect(rim.ws(), true, &Token::new(22, "multi-b", "live://1"))
        .await
        .unwrap();
    // Not listed, though it accepts the op, is in the same room and has a's
    // mid: only the listed keys are targets.
    let mut c = Client::connect(rim.tcp(), false, &Token::new(21, "multi-c", "live://1"))
        .await
        .unwrap();

    rim.http
        .push_ok(
            "/goim/push/keys?operation=1000&keys=multi-a&keys=multi-b",
            "to-a-and-b",
        )
        .await;
    for client in [&mut a, &mut b] {
        let push = client.next_push().await.unwrap();
        assert_eq!((push.ver, push.op, push.seq), (1, 1000, 0));
        assert_eq!(&push.body[..], b"to-a-and-b");
    }
    // Each listed key got it once, and c not at all.
    assert_only_marker(&rim, &mut [&mut a, &mut b, &mut c]).await;
    rim.server.stop().await;
}

#[tokio::test]
async fn auth_without_key_gets_a_server_key_and_mid_pushes_reach_it() {
    let rim = Rim::start().await;
    let mut c = Client::connect(rim.ws(), true, &Token::new(77, "", ""))
        .await
        .unwrap();
    let mut d = Client::connect(rim.tcp(), false, &Token::new(77, "", ""))
        .await
        .unwrap();
    rim.http
        .push_ok("/goim/push/mids?operation=1000&mids=77", "both")
        .await;
    assert_eq!(&c.next_push().await.unwrap().body[..], b"both");
    assert_eq!(&d.next_push().await.unwrap().body[..], b"both");
    rim.server.stop().await;
}

async fn sub_unsub_and_room_change(ws: bool) {
    let rim = Rim::start().await;
    let mut c = Client::connect(rim.addr(ws), ws, &Token::new(1, "k", "live://1000"))
        .await
        .unwrap();

    // Op 2000 is not accepted yet.
    rim.http
        .push_ok("/goim/push/keys?operation=2000&keys=k", "dropped")
        .await;
    let reply = c
        .request(Op::Sub.code(), 4, b"2000,2001", Op::SubReply.code())
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"2000,2001");
    rim.http
        .push_ok("/goim/push/keys?operation=2000&keys=k", "now-accepted")
        .await;
    assert_eq!(&c.next_push().await.unwrap().body[..], b"now-accepted");

    let reply = c
        .request(Op::Unsub.code(), 5, b"2000", Op::UnsubReply.code())
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"2000");
    rim.http
        .push_ok("/goim/push/keys?operation=2000&keys=k", "dropped-again")
        .await;
    rim.http
        .push_ok("/goim/push/keys?operation=2001&keys=k", "still-2001")
        .await;
    assert_eq!(&c.next_push().await.unwrap().body[..], b"still-2001");

    let reply = c
        .request(
            Op::ChangeRoom.code(),
            6,
            b"live://2000",
            Op::ChangeRoomReply.code(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"live://2000");
    rim.http
        .push_ok(
            "/goim/push/room?operation=1000&type=live&room=1000",
            "old-room",
        )
        .await;
    rim.http
        .push_ok(
            "/goim/push/room?operation=1000&type=live&room=2000",
            "new-room",
        )
        .await;
    assert_eq!(&c.next_push().await.unwrap().body[..], b"new-room");

    // Other ops are echoed with the same op and seq and an empty body.
    let reply = c
        .request(Op::SendMsg.code(), 7, b"hello-up", Op::SendMsg.code())
        .await
        .unwrap();
    assert!(reply.body.is_empty());
    assert_eq!((reply.ver, reply.seq), (1, 7));

    assert_only_marker(&rim, &mut [&mut c]).await;
    rim.server.stop().await;
}

#[tokio::test]
async fn sub_unsub_and_room_change_tcp() {
    sub_unsub_and_room_change(false).await;
}

#[tokio::test]
async fn sub_unsub_and_room_change_ws() {
    sub_unsub_and_room_change(true).await;
}

#[tokio::test]
async fn same_key_reconnect_kicks_the_old_session() {
    let rim = Rim::start().await;
    let mut old = Client::connect(rim.tcp(), false, &Token::new(5, "dup", "live://9"))
        .await
        .unwrap();
    let mut new = Client::connect(rim.ws(), true, &Token::new(5, "dup", "live://9"))
        .await
        .unwrap();
    old.expect_closed(Duration::from_secs(5)).await.unwrap();
    // The kicked session's teardown must not delete the new session's mapping.
    rim.http
        .push_ok("/goim/push/keys?operation=1000&keys=dup", "to-new")
        .await;
    assert_eq!(&new.next_push().await.unwrap().body[..], b"to-new");
    rim.http
        .push_ok("/goim/push/mids?operation=1000&mids=5", "mid-to-new")
        .await;
    assert_eq!(&new.next_push().await.unwrap().body[..], b"mid-to-new");
    rim.server.stop().await;
}

#[tokio::test]
async fn heartbeat_reply_carries_room_online_count() {
    // With no online report yet, the reply counts the room's members on this
    // comet, exactly. (With the test's 50 ms reports, a report taken between
    // two joins would answer the cluster count of that moment instead.)
    let mut config = test_config();
    config.comet.online_report_interval = Duration::from_secs(3600);
    let rim = Rim::start_with(config).await;
    let mut a = Client::connect(rim.tcp(), false, &Token::new(1, "a", "live://1000"))
        .await
        .unwrap();
    assert_eq!(a.heartbeat(2).await.unwrap(), 1);
    let mut b = Client::connect(rim.ws(), true, &Token::new(2, "b", "live://1000"))
        .await
        .unwrap();
    let _c = Client::connect(rim.tcp(), false, &Token::new(3, "c", "live://other"))
        .await
        .unwrap();
    assert_eq!(b.heartbeat(1).await.unwrap(), 2);
    let mut lonely = Client::connect(rim.tcp(), false, &Token::new(4, "d", ""))
        .await
        .unwrap();
    assert_eq!(lonely.heartbeat(9).await.unwrap(), 0);
    rim.server.stop().await;
}

/// Standalone answers the online counts from the comet's live state: a
/// client counts as soon as it is authenticated, although the comet's only
/// online report so far is the one it sent at start, with no connection.
#[tokio::test]
async fn standalone_online_counts_are_live() {
    let mut config = test_config();
    config.comet.online_report_interval = Duration::from_secs(3600);
    let rim = Rim::start_with(config).await;
    let json = rim.http.get("/goim/online/total").await.unwrap().json;
    assert_eq!(
        json["data"],
        serde_json::json!({"ip_count": 0, "conn_count": 0})
    );

    let mut a = Client::connect(rim.tcp(), false, &Token::new(1, "a", "live://1"))
        .await
        .unwrap();
    let json = rim.http.get("/goim/online/total").await.unwrap().json;
    assert_eq!(
        json["data"],
        serde_json::json!({"ip_count": 1, "conn_count": 1})
    );
    let json = rim
        .http
        .get("/goim/online/top?type=live&limit=5")
        .await
        .unwrap()
        .json;
    assert_eq!(
        json["data"],
        serde_json::json!([{"room_id": "1", "count": 1}])
    );
    // A room joined with op 24 counts at once too.
    let reply = a
        .request(
            Op::JoinRoom.code(),
            3,
            b"live://2",
            Op::JoinRoomReply.code(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"live://2");
    let json = rim
        .http
        .get("/goim/online/room?type=live&rooms=1&rooms=2")
        .await
        .unwrap()
        .json;
    assert_eq!(json["data"], serde_json::json!({"1": 1, "2": 1}));
    let json = rim.http.get("/1/count?type=server").await.unwrap().json;
    assert_eq!(
        json["data"],
        serde_json::json!([{"Server": "comet-test", "Count": 1}])
    );

    // Gone once its connection is torn down (after the client's close).
    drop(a);
    rim.http
        .get_until("/goim/online/total", |j| j["data"]["conn_count"] == 0)
        .await;
    let json = rim
        .http
        .get("/goim/online/top?type=live&limit=5")
        .await
        .unwrap()
        .json;
    assert_eq!(json["data"], serde_json::json!([]));
    rim.server.stop().await;
}

#[tokio::test]
async fn online_endpoints_and_v1_count_aggregate_sessions() {
    let rim = Rim::start().await;
    let _a = Client::connect(rim.tcp(), false, &Token::new(1, "a", "live://1000"))
        .await
        .unwrap();
    let _b = Client::connect(rim.ws(), true, &Token::new(2, "b", "live://1000"))
        .await
        .unwrap();
    let _c = Client::connect(rim.tcp(), false, &Token::new(3, "c", "liveshow://1"))
        .await
        .unwrap();
    let _d = Client::connect(rim.tcp(), false, &Token::new(4, "d", ""))
        .await
        .unwrap();

    let json = rim
        .http
        .get_until("/goim/online/room?type=live&rooms=1000&rooms=404", |j| {
            j["data"]["1000"] == 2
        })
        .await;
    assert_eq!(json["code"], 0);
    assert_eq!(json["data"]["404"], 0);

    let json = rim
        .http
        .get("/goim/online/top?type=live&limit=10")
        .await
        .unwrap()
        .json;
    assert_eq!(
        json["data"],
        serde_json::json!([{"room_id": "1000", "count": 2}])
    );

    let json = rim
        .http
        .get_until("/goim/online/total", |j| j["data"]["conn_count"] == 4)
        .await;
    assert_eq!(json["data"]["ip_count"], 1);

    let json = rim.http.get("/1/count?type=room").await.unwrap().json;
    assert_eq!(json["ret"], 1);
    let rooms = json["data"].as_array().unwrap();
    assert!(
        rooms.contains(&serde_json::json!({"RoomId": "live://1000", "Count": 2})),
        "{rooms:?}"
    );
    let json = rim.http.get("/1/count?type=server").await.unwrap().json;
    assert_eq!(
        json["data"],
        serde_json::json!([{"Server": "comet-test", "Count": 4}])
    );

    let json = rim.http.get("/goim/nodes/instances").await.unwrap().json;
    assert_eq!(json["data"][0]["hostname"], "comet-test");
    let json = rim
        .http
        .get("/goim/nodes/weighted?platform=web")
        .await
        .unwrap()
        .json;
    assert_eq!(json["data"]["tcp_port"], 3101);
    assert_eq!(json["data"]["heartbeat"], 240);
    rim.server.stop().await;
}

#[tokio::test]
async fn server_del_forgets_the_comets_sessions() {
    let rim = Rim::start().await;
    let mut c = Client::connect(rim.tcp(), false, &Token::new(8, "k8", ""))
        .await
        .unwrap();
    rim.http
        .push_v1_ok("/1/server/del?server=comet-test", "")
        .await;
    // The registry no longer routes keyed pushes to that comet.
    rim.http
        .push_ok("/goim/push/mids?operation=1000&mids=8", "lost-route")
        .await;
    assert_only_marker(&rim, &mut [&mut c]).await;
    rim.server.stop().await;
}

#[tokio::test]
async fn upstream_op_before_auth_is_ignored_then_auth_works() {
    let rim = Rim::start().await;
    let mut c = Client::tcp(rim.tcp()).await.unwrap();
    c.send(&Frame::new(1, Op::Heartbeat, 1, Bytes::new()))
        .await
        .unwrap();
    assert!(c
        .recv_within(Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());
    let reply = c
        .auth(&Token::new(1004, "neg-key", "live://1000"))
        .await
        .unwrap();
    assert_eq!((reply.ver, reply.seq, reply.body.len()), (1, 1, 0));
    rim.server.stop().await;
}

/// README (`logic.api.open`): a standalone without tokens serves loopback
/// clients only. The rule reads the peer address the HTTP server records
/// (`ConnectInfo`) and refuses a request without one, so this push from
/// 127.0.0.1 over a real socket is served only if the server records it.
#[tokio::test]
async fn default_push_api_serves_a_loopback_client_over_the_socket() {
    let config = test_config();
    assert_eq!(config.logic.api.open, None, "the default access rule");
    assert!(
        config.logic.api.tokens.is_empty(),
        "the default access rule"
    );
    let rim = Rim::start_with(config).await;
    let mut c = Client::connect(rim.tcp(), false, &Token::new(1, "local", ""))
        .await
        .unwrap();
    let reply = rim
        .http
        .post("/goim/push/keys?operation=1000&keys=local", "from-loopback")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, &reply.json["code"]),
        (200, &serde_json::json!(0)),
        "a loopback client of a default standalone: {:?}",
        reply.json
    );
    assert_eq!(&c.next_push().await.unwrap().body[..], b"from-loopback");
    rim.server.stop().await;
}

/// Push bodies are opaque bytes (as in goim): a body that is not UTF-8
/// reaches the client exactly as sent, through every push path.
async fn binary_body_arrives_byte_for_byte(ws: bool) {
    const BODY: [u8; 4] = [0xff, 0xfe, 0x00, 0x01];
    let rim = Rim::start().await;
    let mut c = Client::connect(rim.addr(ws), ws, &Token::new(7, "bin", "live://bin"))
        .await
        .unwrap();
    for path in [
        "/goim/push/keys?operation=1000&keys=bin",
        "/goim/push/mids?operation=1000&mids=7",
        "/goim/push/room?operation=1000&type=live&room=bin",
        "/goim/push/all?operation=1000",
    ] {
        rim.http.push_ok(path, BODY.to_vec()).await;
        let push = c.next_push().await.unwrap();
        assert_eq!((push.op, &push.body[..]), (1000, &BODY[..]), "{path}");
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn binary_body_arrives_byte_for_byte_tcp() {
    binary_body_arrives_byte_for_byte(false).await;
}

#[tokio::test]
async fn binary_body_arrives_byte_for_byte_ws() {
    binary_body_arrives_byte_for_byte(true).await;
}

/// docs/protocol.md: a client asking for a key that is live for another
/// user's connection is refused, and the owner stays connected (goim moved
/// the key and kicked the owner).
#[tokio::test]
async fn another_users_live_key_is_refused_and_the_owner_keeps_it() {
    let rim = Rim::start().await;
    let mut owner = Client::connect(rim.tcp(), false, &Token::new(1, "k", "live://1"))
        .await
        .unwrap();
    let newcomer = Frame::new(1, Op::Auth, 1, Token::new(2, "k", "live://1").to_json());
    // Closed without op 8, well within the 8 s handshake timeout.
    let within = Duration::from_secs(2);
    let mut tcp = Client::tcp(rim.tcp()).await.unwrap();
    tcp.send(&newcomer).await.unwrap();
    match tcp.recv_within(within).await {
        Ok(Some(rim_testkit::Incoming::Closed)) => {}
        other => panic!("tcp newcomer: expected a close without op 8, got {other:?}"),
    }
    let mut ws = Client::ws(rim.ws()).await.unwrap();
    ws.send(&newcomer).await.unwrap();
    let close = ws.expect_ws_close(within).await.unwrap();
    assert_eq!((close.code, close.reason.as_str()), (1008, "auth_failed"));

    // The owner was not kicked: it still heartbeats and receives.
    owner
        .heartbeat(2)
        .await
        .expect("the owner still heartbeats");
    rim.http
        .push_ok("/goim/push/keys?operation=1000&keys=k", "to-owner")
        .await;
    let push = owner.next_push().await.unwrap();
    assert_eq!(&push.body[..], b"to-owner");
    rim.http
        .push_ok("/goim/push/mids?operation=1000&mids=1", "to-mid-1")
        .await;
    assert_eq!(&owner.next_push().await.unwrap().body[..], b"to-mid-1");
    rim.server.stop().await;
}
