//! End-to-end: bad input from clients and backends, timeouts, slow clients.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{test_config, Rim};
use rim_proto::{Frame, Op};
use rim_testkit::{Client, Token};

fn header(pack_len: i32, header_len: i16, op: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(pack_len);
    b.put_i16(header_len);
    b.put_i16(1);
    b.put_i32(op);
    b.put_i32(1);
    b.freeze()
}

async fn closes_on(ws: bool, bytes: Bytes) {
    let rim = Rim::start().await;
    let mut c = if ws {
        Client::ws(rim.ws()).await.unwrap()
    } else {
        Client::tcp(rim.tcp()).await.unwrap()
    };
    c.send_raw(bytes).await.unwrap();
    c.expect_closed(Duration::from_secs(5)).await.unwrap();
    rim.server.stop().await;
}

#[tokio::test]
async fn garbage_before_auth_closes() {
    closes_on(
        false,
        Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    closes_on(true, Bytes::from_static(b"\x01\x02\x03")).await;
}

#[tokio::test]
async fn wrong_header_length_closes() {
    closes_on(false, header(16, 15, Op::Auth.code())).await;
    closes_on(true, header(16, 15, Op::Auth.code())).await;
}

#[tokio::test]
async fn oversize_frame_closes() {
    // 16 + 4097 bytes: one over goim's 4096-byte client body limit.
    closes_on(false, header(16 + 4097, 16, Op::Auth.code())).await;
    let big = Frame::new(1, Op::Auth, 1, Bytes::from(vec![b'x'; 5000])).to_bytes();
    closes_on(true, big).await;
}

#[tokio::test]
async fn negative_pack_len_closes() {
    closes_on(false, header(-5, 16, Op::Auth.code())).await;
}

#[tokio::test]
async fn invalid_token_closes_without_reply() {
    let rim = Rim::start().await;
    let mut c = Client::tcp(rim.tcp()).await.unwrap();
    c.send(&Frame::new(1, Op::Auth, 1, Bytes::from_static(b"not-json")))
        .await
        .unwrap();
    // goim has no error frame: the server closes the socket and sends nothing.
    match c.recv().await.unwrap() {
        rim_testkit::Incoming::Closed => {}
        other => panic!("expected close, got {other:?}"),
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn handshake_timeout_closes_silent_connections() {
    let mut config = test_config();
    config.comet.handshake_timeout = Duration::from_millis(300);
    let rim = Rim::start_with(config).await;
    let mut tcp = Client::tcp(rim.tcp()).await.unwrap();
    let mut ws = Client::ws(rim.ws()).await.unwrap();
    tcp.expect_closed(Duration::from_secs(5)).await.unwrap();
    ws.expect_closed(Duration::from_secs(5)).await.unwrap();
    rim.server.stop().await;
}

#[tokio::test]
async fn websocket_path_other_than_sub_is_refused() {
    let rim = Rim::start().await;
    assert!(Client::ws_path(rim.ws(), "/other").await.is_err());
    rim.server.stop().await;
}

#[tokio::test]
async fn malformed_http_requests_get_clear_4xx() {
    let rim = Rim::start().await;
    let cases: &[(&str, u16)] = &[
        ("/goim/push/keys?operation=abc&keys=k", 400),
        ("/goim/push/keys?operation=1000", 400),
        ("/goim/push/mids?operation=1000&mids=x", 400),
        ("/goim/push/room?operation=1000&type=live", 400),
        ("/goim/push/room?operation=0&type=live&room=1", 400),
        ("/goim/push/all", 400),
        ("/1/push?uid=1.5", 400),
        ("/1/push/room", 400),
        ("/nope", 404),
    ];
    for (path, status) in cases {
        let reply = rim.http.post(path, "x").await.unwrap();
        assert_eq!(reply.status, *status, "{path}: {:?}", reply.json);
        let message = reply
            .json
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("");
        assert!(
            !message.is_empty(),
            "{path}: no message in {:?}",
            reply.json
        );
    }
    let reply = rim.http.post("/1/pushs", "{not json").await.unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json["ret"], 65535);
    let reply = rim.http.get("/1/count?type=bogus").await.unwrap();
    assert_eq!(reply.status, 400);
    let reply = rim.http.get("/goim/push/all?operation=1000").await.unwrap();
    assert_eq!(reply.status, 405);
    rim.server.stop().await;
}

#[tokio::test]
async fn oversize_http_body_is_413() {
    let mut config = test_config();
    config.logic.max_body = 1024;
    let rim = Rim::start_with(config).await;
    let reply = rim
        .http
        .post("/goim/push/all?operation=1000", vec![b'x'; 2048])
        .await
        .unwrap();
    assert_eq!(reply.status, 413, "{:?}", reply.json);
    rim.server.stop().await;
}

#[tokio::test]
async fn slow_client_is_disconnected_without_slowing_others() {
    let mut config = test_config();
    config.comet.session_queue = 16;
    let rim = Rim::start_with(config).await;
    // A raw TCP client that authenticates and then never reads again.
    let mut slow = Client::connect(rim.tcp(), false, &Token::new(1, "slow", "live://busy"))
        .await
        .unwrap();
    let mut fast = Client::connect(rim.ws(), true, &Token::new(2, "fast", "live://busy"))
        .await
        .unwrap();

    // 64 KiB messages fill the slow client's socket buffers and then its queue.
    let body = "x".repeat(64 * 1024);
    let total = 200;
    let reader = tokio::spawn(async move {
        for i in 0..total {
            let push = fast
                .next_push()
                .await
                .unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert_eq!(push.body.len(), 64 * 1024);
        }
        fast
    });
    for _ in 0..total {
        rim.http
            .push_ok(
                "/goim/push/room?operation=1000&type=live&room=busy",
                body.clone(),
            )
            .await;
    }
    let _fast = reader.await.unwrap();
    // The slow client was disconnected: after what its buffers held, the stream ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow client never disconnected"
        );
        match slow.recv_within(Duration::from_secs(5)).await {
            Ok(Some(rim_testkit::Incoming::Frame(_))) => received += 1,
            Ok(Some(rim_testkit::Incoming::Closed)) | Err(_) => break,
            Ok(None) => panic!("slow client neither closed nor fed"),
        }
    }
    assert!(
        received < total,
        "slow client got everything ({received}); it was never cut off"
    );
    rim.server.stop().await;
}
