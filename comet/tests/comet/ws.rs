//! WebSocket transport: upgrade, exact frames from the captures, op 9 wrapping,
//! path check, message validation, ping and close.

use crate::common::*;
use crate::tcp::hex;

const WS_TOKEN: &str = r#"{"mid":1002,"key":"ws-key-1","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}"#;

#[tokio::test]
async fn upgrade_and_auth_reply_match_capture() {
    let mut h = Harness::start(config()).await;
    let (mut ws, head) = WsClient::connect(h.ws, "/sub", Some("sid=abc; theme=dark"))
        .await
        .unwrap();
    // Capture: the accept key for the RFC 6455 sample nonce. goim writes
    // `Sec-WebSocket-Accept`; tungstenite lowercases header names (HTTP header
    // names are case-insensitive), so compare without case.
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");

    // Capture: the masked auth frame, byte for byte.
    ws.stream_write(&hex(
        "82 f1 11 22 33 44 11 22 33 35 11 32 33 45 11 22 33 43 11 22 33 45 6a 00 5e 2d 75 00 09 75 21 12 \
         01 68 33 49 56 3d 33 18 11 33 62 0f 58 21 68 0f 02 66 3d 00 41 2b 7e 4f 6c 2d 75 00 09 66 7d 4b \
         45 21 2b 0d 1c 75 21 12 03 66 3d 00 43 28 70 56 55 2b 63 4f 11 7e 33 55 56 26 33 0e 11 25 72 41 \
         56 34 65 51 11 7e 4a 13 03 74 21 0e 02 74 21 13 1f 75 21 12 01 19 6c",
    ))
    .await;
    assert_eq!(
        ws.read_exact(18).await,
        hex("82 10 00 00 00 10 00 10 00 01 00 00 00 08 00 00 00 01")
    );
    let connect = next(&mut h.events.connects).await;
    assert_eq!(connect.cookie, "sid=abc; theme=dark");
    assert_eq!(&connect.token[..], WS_TOKEN.as_bytes());
    assert_eq!(connect.server, SERVER_ID);

    // Capture: heartbeat seq 1 -> op 3 with online 1.
    ws.stream_write(&hex(
        "82 90 11 22 33 44 11 22 33 54 11 32 33 45 11 22 33 46 11 22 33 45",
    ))
    .await;
    assert_eq!(
        ws.read_exact(22).await,
        hex("82 14 00 00 00 14 00 10 00 01 00 00 00 03 00 00 00 01 00 00 00 01")
    );

    // Capture: sub 2000 -> op 15 echo.
    ws.stream_write(&hex(
        "82 94 11 22 33 44 11 22 33 50 11 32 33 45 11 22 33 4a 11 22 33 46 23 12 03 74",
    ))
    .await;
    assert_eq!(
        ws.read_exact(22).await,
        hex("82 14 00 00 00 14 00 10 00 01 00 00 00 0f 00 00 00 02 32 30 30 30")
    );
    h.stop().await;
}

#[tokio::test]
async fn pushes_are_wrapped_in_op_9() {
    let h = Harness::start(config()).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(WS_TOKEN).await;
    // Capture: push by key -> one message, op 9 around the 27-byte inner frame.
    push_keys(&h.comet, &["ws-key-1"], 1000, b"push-to-key");
    assert_eq!(
        ws.read_exact(45).await,
        hex("82 2b 00 00 00 2b 00 10 00 01 00 00 00 09 00 00 00 00 \
             00 00 00 1b 00 10 00 01 00 00 03 e8 00 00 00 00 70 75 73 68 2d 74 6f 2d 6b 65 79")
    );
    // Capture: room batch x3 -> one message holding all three.
    push_room(
        &h.comet,
        "live://1000",
        raw_batch(&[(1000, b"m0"), (1000, b"m1"), (1000, b"m2")]),
    );
    assert_eq!(
        ws.read_exact(72).await,
        hex("82 46 00 00 00 46 00 10 00 01 00 00 00 09 00 00 00 00 \
             00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 6d 30 \
             00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 6d 31 \
             00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 6d 32")
    );
    // Capture: broadcast.
    h.comet
        .broadcast(rim_proto::pb::comet::BroadcastReq {
            proto_op: 1000,
            proto: Some(raw_proto(1000, b"broadcast")),
            speed: 0,
        })
        .unwrap();
    assert_eq!(
        ws.read_exact(43).await,
        hex("82 29 00 00 00 29 00 10 00 01 00 00 00 09 00 00 00 00 \
             00 00 00 19 00 10 00 01 00 00 03 e8 00 00 00 00 62 72 6f 61 64 63 61 73 74")
    );
    // Several queued pushes: still one message each.
    push_keys(&h.comet, &["ws-key-1"], 1001, b"a");
    push_keys(&h.comet, &["ws-key-1"], 1001, b"b");
    for body in [b"a", b"b"] {
        let outer = ws.read_frame().await;
        assert_eq!((outer.op, outer.ver, outer.seq), (9, 1, 0));
        assert_eq!(
            parse_frame(&outer.body),
            parse_frame(&frame(1, 1001, 0, body))
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn text_messages_are_frames_too() {
    let mut h = Harness::start(config()).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub?platform=web", None)
        .await
        .unwrap();
    // A goim frame whose bytes are valid UTF-8, sent as a text message.
    ws.send_ws(1, &frame(0x30, 7, 0x30, WS_TOKEN.as_bytes()))
        .await;
    assert_eq!(
        ws.read_frame().await,
        parse_frame(&frame(0x30, 8, 0x30, b""))
    );
    next(&mut h.events.connects).await;
    h.stop().await;
}

/// A client may send its first frames right behind the upgrade request,
/// in the same segment: they are read with the request and not lost.
#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut h = Harness::start(config()).await;
    let mut stream = tokio::net::TcpStream::connect(h.ws).await.unwrap();
    let mut bytes = format!(
        "GET /sub HTTP/1.1\r\nHost: rim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(ws_frame(0x82, &frame(1, 7, 1, WS_TOKEN.as_bytes()), true));
    stream.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let reply = hex("82 10 00 00 00 10 00 10 00 01 00 00 00 08 00 00 00 01");
    while !got.ends_with(&reply) {
        let mut chunk = [0u8; 256];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("no auth reply")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(
        next(&mut h.events.connects).await.token,
        WS_TOKEN.as_bytes()
    );
    h.stop().await;
}

/// An upgrade request that is not a valid WebSocket handshake is answered
/// 400 with the reason, not just dropped.
#[tokio::test]
async fn malformed_upgrades_are_answered_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start(config()).await;
    let requests = [
        // No Sec-WebSocket-Key.
        "GET /sub HTTP/1.1\r\nHost: rim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        // Not a GET.
        "POST /sub HTTP/1.1\r\nHost: rim\r\n\r\n",
        // Not HTTP at all.
        "\x16\x03\x01 hello\r\n\r\n",
    ];
    for request in requests {
        let mut stream = tokio::net::TcpStream::connect(h.ws).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("connection left open")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{request:?}: {answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
    }
    // A request head that never ends is cut off at 16 KiB. (Exactly 16 KiB
    // is sent, so the server reads it all and its close is not a reset that
    // could discard the answer.)
    let mut stream = tokio::net::TcpStream::connect(h.ws).await.unwrap();
    let mut request = b"GET /sub HTTP/1.1\r\nCookie: ".to_vec();
    request.resize(16 * 1024, b'c');
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("connection left open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    h.stop().await;
}

#[tokio::test]
async fn other_paths_are_rejected_with_404() {
    let h = Harness::start(config()).await;
    for path in ["/", "/subscribe", "/sub/x"] {
        let head = match WsClient::connect(h.ws, path, None).await {
            Ok(_) => panic!("{path} was upgraded"),
            Err(head) => head,
        };
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }
    h.stop().await;
}

#[tokio::test]
async fn ping_gets_pong_and_close_ends_the_connection() {
    let mut h = Harness::start(config()).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(WS_TOKEN).await;
    ws.send_ws(9, b"are-you-there").await;
    // The pong goes out with the next write at the latest.
    ws.send(1, 2, 5, b"").await;
    let mut saw_pong = false;
    loop {
        let (first, payload) = ws.read_ws().await;
        if first == 0x8a {
            assert_eq!(payload, b"are-you-there");
            saw_pong = true;
        } else {
            assert_eq!(parse_frame(&payload).op, 3);
            break;
        }
    }
    assert!(saw_pong);
    // Capture: a client close frame ends the connection.
    ws.stream_write(&hex("88 80 11 22 33 44")).await;
    ws.expect_closed().await;
    assert_eq!(next(&mut h.events.disconnects).await.key, "ws-key-1");
    h.stop().await;
}

#[tokio::test]
async fn bad_messages_close_the_connection() {
    let mut h = Harness::start(config()).await;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("trailing bytes", {
            let mut f = frame(1, 2, 1, b"");
            f.push(0);
            f
        }),
        ("truncated", frame(1, 4, 1, b"body")[..18].to_vec()),
        (
            "header length",
            hex("00 00 00 10 00 0f 00 01 00 00 00 02 00 00 00 01"),
        ),
        // 16 + 4097 bytes: over the message limit.
        ("oversize", frame(1, 4, 1, &[0u8; 4097])),
    ];
    for (name, message) in &bad {
        let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
        ws.auth(&token(1, name, "", &[])).await;
        next(&mut h.events.connects).await;
        ws.send_ws(2, message).await;
        ws.expect_closed().await;
        assert_eq!(next(&mut h.events.disconnects).await.key, *name);
    }
    // At the limit is fine.
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "max", "", &[])).await;
    ws.send(1, 4, 1, &[0u8; 4096]).await;
    assert_eq!(ws.read_frame().await, parse_frame(&frame(1, 4, 1, b"")));
    h.stop().await;
}

impl WsClient {
    async fn stream_write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }
}
