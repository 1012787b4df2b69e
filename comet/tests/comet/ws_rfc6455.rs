//! WebSocket framing rules of RFC 6455 that a server must enforce: every
//! violation fails the connection (a close frame with 1002/1007/1009 where
//! the stream allows it, then the TCP close), is counted as
//! `rim_comet_disconnects_total{reason="ws_protocol"}`, and leaves the comet
//! serving others. Also the parts a server must do: reassemble fragmented
//! messages, answer a close with a close, a ping with a pong.

use crate::common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "current_thread")]
async fn protocol_violations_fail_the_connection() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let h = Harness::start(config()).await;
    let auth = frame(1, 7, 1, token(1, "rfc", "", &[]).as_bytes());
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        // 5.1: a server MUST close on an unmasked client frame.
        ("unmasked frame", ws_frame(0x82, &auth, false), Some(1002)),
        // 5.2: opcodes 3-7 and 0xB-0xF are reserved.
        (
            "reserved data opcode 3",
            ws_frame(0x83, b"x", true),
            Some(1002),
        ),
        (
            "reserved data opcode 7",
            ws_frame(0x87, b"x", true),
            Some(1002),
        ),
        (
            "reserved control opcode 0xB",
            ws_frame(0x8b, b"", true),
            Some(1002),
        ),
        (
            "reserved control opcode 0xF",
            ws_frame(0x8f, b"", true),
            Some(1002),
        ),
        // 5.2: RSV bits without a negotiated extension.
        ("rsv1 set", ws_frame(0xc2, &auth, true), Some(1002)),
        ("rsv3 set", ws_frame(0x92, &auth, true), Some(1002)),
        // 5.4: control frames must not be fragmented.
        ("fragmented ping", ws_frame(0x09, b"p", true), Some(1002)),
        // 5.5: control frame payloads are at most 125 bytes.
        (
            "ping over 125 bytes",
            ws_frame(0x89, &[b'p'; 126], true),
            Some(1002),
        ),
        // 5.4: a continuation frame needs a message to continue.
        ("lone continuation", ws_frame(0x80, &auth, true), Some(1002)),
        // 5.6/8.1: a text message must be UTF-8.
        (
            "text not utf-8",
            ws_frame(0x81, &[0xff, 0xfe, 0xfd], true),
            Some(1007),
        ),
        // 10.4: a message larger than rim accepts (16 + max_body).
        (
            "oversize message",
            ws_frame(0x82, &[0u8; 16 + 4097], true),
            Some(1009),
        ),
    ];
    for (name, bytes, code) in &cases {
        let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
        ws.stream.write_all(bytes).await.unwrap();
        // The reason text is the `reason` label (protocol.md).
        let expected = code.map(|code| (code, "ws_protocol".to_owned()));
        assert_eq!(ws.close_status().await, expected, "{name}");
    }
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=ws_protocol}"),
        cases.len() as u64
    );
    // A message that declares 2^63 bytes is refused from its header alone.
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&WS_MASK);
    ws.stream.write_all(&huge).await.unwrap();
    assert_eq!(
        ws.close_status().await,
        Some((1009, "ws_protocol".to_owned()))
    );

    // The comet still serves.
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "after", "", &[])).await;
    h.stop().await;
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    let h = Harness::start(config()).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    let auth = frame(1, 7, 1, token(1, "frag", "", &[]).as_bytes());
    let (a, rest) = auth.split_at(5);
    let (b, c) = rest.split_at(rest.len() / 2);
    // Binary start without FIN, a ping between the fragments (allowed: 5.4),
    // a continuation, then the final continuation.
    let mut bytes = ws_frame(0x02, a, true);
    bytes.extend(ws_frame(0x89, b"mid", true));
    bytes.extend(ws_frame(0x00, b, true));
    bytes.extend(ws_frame(0x80, c, true));
    ws.stream.write_all(&bytes).await.unwrap();
    let mut saw_pong = false;
    loop {
        let (first, payload) = ws.read_ws().await;
        if first == 0x8a {
            assert_eq!(payload, b"mid");
            saw_pong = true;
            continue;
        }
        assert_eq!(first, 0x82);
        assert_eq!(parse_frame(&payload), parse_frame(&frame(1, 8, 1, b"")));
        break;
    }
    // The pong is written no later than the reply that follows it.
    assert!(saw_pong, "ping inside a fragmented message got no pong");
    h.stop().await;
}

#[tokio::test]
async fn close_is_answered_with_a_close_echoing_the_code() {
    let mut h = Harness::start(config()).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "closer", "", &[])).await;
    // 5.5.1: the endpoint answers a close frame with a close frame (echoing
    // the status code), then the server closes the TCP connection.
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    ws.stream
        .write_all(&ws_frame(0x88, &body, true))
        .await
        .unwrap();
    assert_eq!(ws.close_status().await.map(|(code, _)| code), Some(1000));
    assert_eq!(next(&mut h.events.disconnects).await.key, "closer");
    h.stop().await;
}

#[tokio::test]
async fn close_before_auth_is_answered_too() {
    let h = Harness::start(config()).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.stream
        .write_all(&ws_frame(0x88, &1001u16.to_be_bytes(), true))
        .await
        .unwrap();
    assert_eq!(ws.close_status().await.map(|(code, _)| code), Some(1001));
    h.stop().await;
}

/// Pings are answered, but count against the frame rate like goim frames:
/// a ping flood is closed with 1008.
#[tokio::test(flavor = "current_thread")]
async fn a_ping_flood_is_closed_by_the_frame_rate() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let h = Harness::start(rim_comet::Config {
        max_frames_per_sec: 5,
        ..config()
    })
    .await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "pinger", "", &[])).await;
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.extend(ws_frame(0x89, b"p", true));
    }
    ws.stream.write_all(&flood).await.unwrap();
    assert_eq!(
        ws.close_status().await,
        Some((1008, "frame_rate".to_owned()))
    );
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=frame_rate}"),
        1
    );
    h.stop().await;
}
