//! End-to-end: bad input from clients and backends, timeouts, slow clients.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{test_config, Rim};
use rim_proto::{Frame, Op};
use rim_testkit::{Client, Incoming, Token};

fn header(pack_len: i32, header_len: i16, op: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(pack_len);
    b.put_i16(header_len);
    b.put_i16(1);
    b.put_i32(op);
    b.put_i32(1);
    b.freeze()
}

/// How soon a refused connection must be closed. The handshake timeout of
/// these tests ([`no_handshake_timeout`]) is far longer, so a server that
/// left a refused connection open would fail instead of being rescued by it.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// A standalone whose handshake timeout (60 s) cannot close a connection
/// within [`CLOSE_WITHIN`].
async fn no_handshake_timeout() -> Rim {
    let mut config = test_config();
    config.comet.handshake_timeout = Duration::from_secs(60);
    Rim::start_with(config).await
}

/// Asserts that `c` is closed within [`CLOSE_WITHIN`] without receiving anything.
async fn closed_without_reply(c: &mut Client, what: &str) {
    match c.recv_within(CLOSE_WITHIN).await {
        Ok(Some(Incoming::Closed)) => {}
        other => panic!("{what}: expected a close within {CLOSE_WITHIN:?}, got {other:?}"),
    }
}

/// Sends `bytes` on raw TCP: the connection is closed at once, silently.
async fn tcp_closes_on(bytes: Bytes) {
    let rim = no_handshake_timeout().await;
    let mut c = Client::tcp(rim.tcp()).await.unwrap();
    c.send_raw(bytes).await.unwrap();
    closed_without_reply(&mut c, "tcp").await;
    rim.server.stop().await;
}

/// Sends `bytes` as one WebSocket message: the server closes at once with
/// `code` and the reason label `reason` (docs/protocol.md).
async fn ws_closes_on(bytes: Bytes, code: u16, reason: &str) {
    let rim = no_handshake_timeout().await;
    let mut c = Client::ws(rim.ws()).await.unwrap();
    c.send_raw(bytes).await.unwrap();
    let close = c.expect_ws_close(CLOSE_WITHIN).await.unwrap();
    assert_eq!((close.code, close.reason.as_str()), (code, reason));
    rim.server.stop().await;
}

#[tokio::test]
async fn garbage_before_auth_closes() {
    tcp_closes_on(Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    // Not one goim frame: 1003 unsupported data.
    ws_closes_on(Bytes::from_static(b"\x01\x02\x03"), 1003, "bad_frame").await;
}

#[tokio::test]
async fn wrong_header_length_closes() {
    tcp_closes_on(header(16, 15, Op::Auth.code())).await;
    ws_closes_on(header(16, 15, Op::Auth.code()), 1003, "bad_frame").await;
}

#[tokio::test]
async fn oversize_frame_closes() {
    // 16 + 4097 bytes: one over goim's 4096-byte client body limit.
    tcp_closes_on(header(16 + 4097, 16, Op::Auth.code())).await;
    let big = Frame::new(1, Op::Auth, 1, Bytes::from(vec![b'x'; 5000])).to_bytes();
    // Refused from its WebSocket header, before the goim frame is read.
    ws_closes_on(big, 1009, "ws_protocol").await;
}

#[tokio::test]
async fn negative_pack_len_closes() {
    tcp_closes_on(header(-5, 16, Op::Auth.code())).await;
}

#[tokio::test]
async fn invalid_token_closes_without_reply() {
    let rim = no_handshake_timeout().await;
    let auth = Frame::new(1, Op::Auth, 1, Bytes::from_static(b"not-json"));
    // goim has no error frame: the server closes the socket and sends nothing.
    let mut tcp = Client::tcp(rim.tcp()).await.unwrap();
    tcp.send(&auth).await.unwrap();
    closed_without_reply(&mut tcp, "tcp").await;
    // WebSocket: no op 8 either, a close frame 1008 with the reason label.
    let mut ws = Client::ws(rim.ws()).await.unwrap();
    ws.send(&auth).await.unwrap();
    let close = ws.expect_ws_close(CLOSE_WITHIN).await.unwrap();
    assert_eq!((close.code, close.reason.as_str()), (1008, "auth_failed"));
    rim.server.stop().await;
}

#[tokio::test]
async fn handshake_timeout_closes_silent_connections() {
    let mut config = test_config();
    config.comet.handshake_timeout = Duration::from_millis(300);
    let rim = Rim::start_with(config).await;
    let mut tcp = Client::tcp(rim.tcp()).await.unwrap();
    let mut ws = Client::ws(rim.ws()).await.unwrap();
    match tcp.recv_within(Duration::from_secs(5)).await {
        Ok(Some(Incoming::Closed)) => {}
        other => panic!("tcp: expected a silent close, got {other:?}"),
    }
    let close = ws.expect_ws_close(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (close.code, close.reason.as_str()),
        (1008, "handshake_timeout")
    );
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
