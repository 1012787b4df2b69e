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
        .hub()
        .broadcast(rim_proto::pb::comet::BroadcastReq {
            proto_op: 1000,
            proto: Some(raw_proto(1000, b"broadcast")),
            speed: 0,
            unfiltered: false,
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

/// Sends `request` on a new connection to the WebSocket port and reads until
/// the server closes: (response head, body).
async fn refused_upgrade(h: &Harness, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(h.ws).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // A reset after the answer (the server closes with unread bytes) still
    // leaves what was read.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("connection left open");
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head: {answer:?}"));
    (format!("{head}\r\n"), body.to_owned())
}

/// protocol.md: an upgrade request that is not a valid WebSocket handshake
/// is answered 400 with the reason as a plain-text body, a head over 16 KiB
/// 431, each with `Connection: close`, then closed and counted as
/// `ws_handshake_failed`.
#[tokio::test(flavor = "current_thread")]
async fn malformed_upgrades_are_answered_400() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let h = Harness::start(config()).await;
    let upgrade =
        |version: &str, headers: &str| format!("GET /sub {version}\r\nHost: rim\r\n{headers}\r\n");
    const CONN: &str = "Connection: Upgrade\r\n";
    const UPGRADE: &str = "Upgrade: websocket\r\n";
    const V13: &str = "Sec-WebSocket-Version: 13\r\n";
    let key = format!("Sec-WebSocket-Key: {WS_KEY}\r\n");
    // (case, request, a word the reason must contain)
    let requests = [
        (
            "no key",
            upgrade("HTTP/1.1", &format!("{UPGRADE}{CONN}{V13}")),
            "key",
        ),
        (
            "not a GET",
            "POST /sub HTTP/1.1\r\nHost: rim\r\n\r\n".to_owned(),
            "method",
        ),
        ("not HTTP", "\x16\x03\x01 hello\r\n\r\n".to_owned(), ""),
        (
            "version 12",
            upgrade(
                "HTTP/1.1",
                &format!("{UPGRADE}{CONN}{key}Sec-WebSocket-Version: 12\r\n"),
            ),
            "version",
        ),
        (
            "no Upgrade header",
            upgrade("HTTP/1.1", &format!("{CONN}{key}{V13}")),
            "upgrade",
        ),
        (
            "malformed key",
            upgrade(
                "HTTP/1.1",
                &format!("{UPGRADE}{CONN}Sec-WebSocket-Key: not-a-nonce\r\n{V13}"),
            ),
            "key",
        ),
        (
            "HTTP/1.0",
            upgrade("HTTP/1.0", &format!("{UPGRADE}{CONN}{key}{V13}")),
            "version",
        ),
    ];
    for (case, request, word) in &requests {
        let (head, body) = refused_upgrade(&h, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 400 "), "{case}: {head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{case}: {head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain"),
            "{case}: {head}"
        );
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{case}: {head}"
        );
        assert!(!body.is_empty(), "{case}: no reason in the body");
        assert!(
            body.to_ascii_lowercase().contains(word),
            "{case}: the reason {body:?} does not mention {word:?}"
        );
    }
    // A request head that never ends is cut off at 16 KiB. (Exactly 16 KiB
    // is sent, so the server reads it all and its close is not a reset that
    // could discard the answer.)
    let mut request = b"GET /sub HTTP/1.1\r\nCookie: ".to_vec();
    request.resize(16 * 1024, b'c');
    let (head, _) = refused_upgrade(&h, &request).await;
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=ws_handshake_failed}"),
        requests.len() as u64 + 1
    );
    h.stop().await;
}

/// protocol.md: another path is answered 404 with `Connection: close`, then
/// closed and counted as `ws_path_rejected`.
#[tokio::test(flavor = "current_thread")]
async fn other_paths_are_rejected_with_404() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let h = Harness::start(config()).await;
    let paths = ["/", "/subscribe", "/sub/x"];
    for path in paths {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: rim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let (head, _) = refused_upgrade(&h, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 404 "), "{path}: {head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{path}: {head}");
    }
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=ws_path_rejected}"),
        paths.len() as u64
    );
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

/// protocol.md: a message that is not exactly one well-formed goim frame is
/// closed with 1003, one over 16 + `max_body` bytes with 1009; the reason
/// text is the `reason` label.
#[tokio::test]
async fn bad_messages_close_the_connection() {
    let mut h = Harness::start(config()).await;
    let bad: Vec<(&str, Vec<u8>, (u16, &str))> = vec![
        (
            "trailing bytes",
            {
                let mut f = frame(1, 2, 1, b"");
                f.push(0);
                f
            },
            (1003, "bad_frame"),
        ),
        (
            "truncated",
            frame(1, 4, 1, b"body")[..18].to_vec(),
            (1003, "bad_frame"),
        ),
        (
            "header length",
            hex("00 00 00 10 00 0f 00 01 00 00 00 02 00 00 00 01"),
            (1003, "bad_frame"),
        ),
        // 16 + 4097 bytes: over the message limit, refused by the WebSocket
        // layer from the message header.
        (
            "oversize",
            frame(1, 4, 1, &[0u8; 4097]),
            (1009, "ws_protocol"),
        ),
    ];
    for (name, message, (code, reason)) in &bad {
        let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
        ws.auth(&token(1, name, "", &[])).await;
        next(&mut h.events.connects).await;
        ws.send_ws(2, message).await;
        assert_eq!(
            ws.close_status().await,
            Some((*code, reason.to_string())),
            "{name}"
        );
        assert_eq!(next(&mut h.events.disconnects).await.key, *name);
    }
    // At the limit is fine.
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "max", "", &[])).await;
    ws.send(1, 4, 1, &[0u8; 4096]).await;
    assert_eq!(ws.read_frame().await, parse_frame(&frame(1, 4, 1, b"")));
    h.stop().await;
}

/// protocol.md: a refused token gets no op 8, only a close frame with 1008
/// and the reason `auth_failed`.
#[tokio::test(flavor = "current_thread")]
async fn refused_token_is_closed_with_1008_auth_failed() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    // The handshake timer is out of reach: only the refusal can close.
    let mut h = Harness::start(rim_comet::Config {
        handshake_timeout: std::time::Duration::from_secs(120),
        ..config()
    })
    .await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.send(1, 7, 1, b"not-json").await;
    let frames = ws.frames_until_closed().await;
    let mut close = 1008u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"auth_failed");
    assert_eq!(frames, [(0x88, close)], "only the close frame");
    assert_eq!(&next(&mut h.events.connects).await.token[..], b"not-json");
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=auth_failed}"),
        1
    );
    h.stop().await;
}

/// The older of two WebSocket sessions with the same key is closed with
/// 1008 `kicked`; the newer one keeps the key.
#[tokio::test]
async fn the_kicked_session_is_closed_with_1008_kicked() {
    let mut h = Harness::start(config()).await;
    let (mut old, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    old.auth(&token(1, "twice", "", &[1000])).await;
    next(&mut h.events.connects).await;
    let (mut new, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    new.auth(&token(1, "twice", "", &[1000])).await;
    next(&mut h.events.connects).await;
    assert_eq!(old.close_status().await, Some((1008, "kicked".to_owned())));
    push_keys(&h.comet, &["twice"], 1000, b"to-new");
    assert_eq!(parse_frame(&new.read_frame().await.body).body, b"to-new");
    h.stop().await;
}

/// A WebSocket client whose queue overflows is closed with 1008
/// `slow_client`. The queue is filled before the connection task runs, so
/// nothing is written before the close: the overflow discards the queue
/// (`slow_client`), and a push to the closing session is dropped too
/// (`session_closed`).
#[tokio::test(flavor = "current_thread")]
async fn a_slow_client_is_closed_with_1008_slow_client() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(rim_comet::Config {
        session_queue: 8,
        ..config()
    })
    .await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "slow", "", &[1000])).await;
    next(&mut h.events.connects).await;
    // No await in between: the connection task cannot take the queue.
    for i in 0..10u8 {
        push_keys(&h.comet, &["slow"], 1000, &[i]);
    }
    let frames = ws.frames_until_closed().await;
    let mut close = 1008u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"slow_client");
    assert_eq!(frames, [(0x88, close)], "only the close frame");
    assert_eq!(next(&mut h.events.disconnects).await.key, "slow");
    // 8 queued + the 9th that overflowed.
    assert_eq!(
        recorder.counter("rim_comet_dropped_messages_total{reason=slow_client}"),
        9
    );
    assert_eq!(
        recorder.counter("rim_comet_dropped_messages_total{reason=session_closed}"),
        1
    );
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=slow_client}"),
        1
    );
    h.stop().await;
}

impl WsClient {
    async fn stream_write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }
}
