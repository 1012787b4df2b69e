//! TCP protocol: handshake, replies to every client op, malformed frames,
//! same-key kick, shutdown.

use std::time::Duration;

use rim_comet::Config;

use crate::common::*;

/// Bytes from a hex dump (spaces and `|` ignored).
pub fn hex(dump: &str) -> Vec<u8> {
    let digits: String = dump.chars().filter(char::is_ascii_hexdigit).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn auth_reply_matches_capture() {
    let mut h = Harness::start(config()).await;
    let mut client = TcpClient::connect(h.tcp).await;
    let auth = frame(1, 7, 1, CAPTURE_TCP_AUTH_TOKEN.as_bytes());
    assert_eq!(auth.len(), 114);
    client.send_raw(&auth).await;
    assert_eq!(
        client.read_exact(16).await,
        hex("00 00 00 10 00 10 00 01 00 00 00 08 00 00 00 01")
    );
    let connect = next(&mut h.events.connects).await;
    assert_eq!(connect.server, SERVER_ID);
    assert_eq!(connect.cookie, "");
    assert_eq!(&connect.token[..], CAPTURE_TCP_AUTH_TOKEN.as_bytes());
    assert_eq!(h.comet.hub().stats().connections, 1);
    h.stop().await;
}

#[tokio::test]
async fn heartbeat_reply_carries_room_online() {
    let mut h = Harness::start(config()).await;
    let mut client = TcpClient::connect(h.tcp).await;
    client.auth(CAPTURE_TCP_AUTH_TOKEN).await;
    // Capture: alone in live://1000 -> online 1.
    client
        .send_raw(&hex("00 00 00 10 00 10 00 01 00 00 00 02 00 00 00 02"))
        .await;
    assert_eq!(
        client.read_exact(20).await,
        hex("00 00 00 14 00 10 00 01 00 00 00 03 00 00 00 02 00 00 00 01")
    );
    // Capture: ver 0 heartbeat (goim's benchmark client) is echoed with ver 0.
    client
        .send_raw(&hex("00 00 00 10 00 10 00 00 00 00 00 02 00 00 00 03"))
        .await;
    assert_eq!(
        client.read_exact(20).await,
        hex("00 00 00 14 00 10 00 00 00 00 00 03 00 00 00 03 00 00 00 01")
    );
    // A second member (any bucket) counts.
    let _other = h.tcp_client("other", "live://1000", &[]).await;
    client.send(1, 2, 4, b"").await;
    assert_eq!(client.read_frame().await.body, 2i32.to_be_bytes());
    // No room: 0.
    let mut roomless = h.tcp_client("roomless", "", &[]).await;
    roomless.send(1, 2, 1, b"").await;
    assert_eq!(roomless.read_frame().await.body, 0i32.to_be_bytes());
    h.stop().await;
}

#[tokio::test]
async fn sub_unsub_change_room_replies_and_filtering() {
    let h = Harness::start(config()).await;
    let mut client = TcpClient::connect(h.tcp).await;
    client.auth(CAPTURE_TCP_AUTH_TOKEN).await;

    // Not accepted yet: op 2000 is filtered, the next accepted push arrives first.
    push_keys(&h.comet, &["tcp-key-1"], 2000, b"filtered");
    push_keys(&h.comet, &["tcp-key-1"], 1000, b"accepted");
    assert_eq!(client.read_frame().await.body, b"accepted");

    // Capture: sub 2000,2001 -> op 15 echo.
    client
        .send_raw(&hex(
            "00 00 00 19 00 10 00 01 00 00 00 0e 00 00 00 04 32 30 30 30 2c 32 30 30 31",
        ))
        .await;
    assert_eq!(
        client.read_exact(25).await,
        hex("00 00 00 19 00 10 00 01 00 00 00 0f 00 00 00 04 32 30 30 30 2c 32 30 30 31")
    );
    // Capture: push op 2000 after sub.
    push_keys(&h.comet, &["tcp-key-1"], 2000, b"now-accepted");
    assert_eq!(
        client.read_exact(28).await,
        hex("00 00 00 1c 00 10 00 01 00 00 07 d0 00 00 00 00 6e 6f 77 2d 61 63 63 65 70 74 65 64")
    );
    // Capture: unsub 2000 -> op 17 echo; 2000 is filtered again.
    client
        .send_raw(&hex(
            "00 00 00 14 00 10 00 01 00 00 00 10 00 00 00 05 32 30 30 30",
        ))
        .await;
    assert_eq!(
        client.read_exact(20).await,
        hex("00 00 00 14 00 10 00 01 00 00 00 11 00 00 00 05 32 30 30 30")
    );
    push_keys(&h.comet, &["tcp-key-1"], 2000, b"filtered");
    push_keys(&h.comet, &["tcp-key-1"], 2001, b"still-subbed");
    assert_eq!(client.read_frame().await.body, b"still-subbed");

    // A malformed list is ignored whole but still answered.
    client.send(1, 14, 9, b"3000,x").await;
    assert_eq!(
        client.read_frame().await,
        parse_frame(&frame(1, 15, 9, b"3000,x"))
    );
    push_keys(&h.comet, &["tcp-key-1"], 3000, b"filtered");
    push_keys(&h.comet, &["tcp-key-1"], 1000, b"after");
    assert_eq!(client.read_frame().await.body, b"after");

    // Capture: change room to live://2000 -> op 13 echo.
    client
        .send_raw(&hex(
            "00 00 00 1b 00 10 00 01 00 00 00 0c 00 00 00 06 6c 69 76 65 3a 2f 2f 32 30 30 30",
        ))
        .await;
    assert_eq!(
        client.read_exact(27).await,
        hex("00 00 00 1b 00 10 00 01 00 00 00 0d 00 00 00 06 6c 69 76 65 3a 2f 2f 32 30 30 30")
    );
    push_room(&h.comet, "live://1000", raw_proto(1000, b"old-room"));
    push_room(&h.comet, "live://2000", raw_proto(1000, b"new-room"));
    assert_eq!(client.read_frame().await.body, b"new-room");
    assert_eq!(
        h.comet.hub().rooms().rooms.keys().collect::<Vec<_>>(),
        vec!["live://2000"]
    );

    // Invalid utf-8 room id: replied, room unchanged.
    client.send(1, 12, 10, &[0xff, 0xfe]).await;
    assert_eq!(
        client.read_frame().await,
        parse_frame(&frame(1, 13, 10, &[0xff, 0xfe]))
    );
    push_room(&h.comet, "live://2000", raw_proto(1000, b"same-room"));
    assert_eq!(client.read_frame().await.body, b"same-room");

    // Empty body: leave the room.
    client.send(1, 12, 11, b"").await;
    assert_eq!(
        client.read_frame().await,
        parse_frame(&frame(1, 13, 11, b""))
    );
    assert!(h.comet.hub().rooms().rooms.is_empty());
    push_room(&h.comet, "live://2000", raw_proto(1000, b"gone"));
    push_keys(&h.comet, &["tcp-key-1"], 1000, b"keyed");
    assert_eq!(client.read_frame().await.body, b"keyed");
    h.stop().await;
}

#[tokio::test]
async fn other_ops_go_to_logic_and_are_echoed_empty() {
    let mut h = Harness::start(config()).await;
    let mut client = TcpClient::connect(h.tcp).await;
    client.auth(CAPTURE_TCP_AUTH_TOKEN).await;
    // Capture: op 4 "hello-up" -> op 4, same seq, empty body.
    client
        .send_raw(&hex(
            "00 00 00 18 00 10 00 01 00 00 00 04 00 00 00 07 68 65 6c 6c 6f 2d 75 70",
        ))
        .await;
    assert_eq!(
        client.read_exact(16).await,
        hex("00 00 00 10 00 10 00 01 00 00 00 04 00 00 00 07")
    );
    let received = next(&mut h.events.receives).await;
    assert_eq!(received.mid, 1001);
    let proto = received.proto.unwrap();
    assert_eq!((proto.ver, proto.op, proto.seq), (1, 4, 7));
    assert_eq!(&proto.body[..], b"hello-up");

    // op 7 again, op 0 and a business op are handled the same way.
    for (op, seq) in [(7, 8), (0, 9), (1000, 10)] {
        client.send(3, op, seq, b"x").await;
        assert_eq!(
            client.read_frame().await,
            parse_frame(&frame(3, op, seq, b""))
        );
        let received = next(&mut h.events.receives).await;
        assert_eq!(received.proto.unwrap().op, op);
    }
    h.stop().await;
}

#[tokio::test]
async fn frames_before_auth_are_ignored() {
    let mut h = Harness::start(config()).await;
    let mut client = TcpClient::connect(h.tcp).await;
    // Capture (negative case): heartbeat before auth gets nothing...
    client
        .send_raw(&hex("00 00 00 10 00 10 00 01 00 00 00 02 00 00 00 01"))
        .await;
    client.send(1, 4, 5, b"ignored").await;
    // ...then auth on the same connection is answered with its own seq.
    client
        .send(
            1,
            7,
            2,
            token(1004, "neg-key", "live://1000", &[1000]).as_bytes(),
        )
        .await;
    assert_eq!(
        client.read_exact(16).await,
        hex("00 00 00 10 00 10 00 01 00 00 00 08 00 00 00 02")
    );
    assert!(
        h.events.receives.try_recv().is_err(),
        "pre-auth frames never reach logic"
    );
    h.stop().await;
}

/// protocol.md: a refused token closes the connection (not the handshake
/// timer, which is set far beyond the wait here) without a reply; counted
/// as `auth_failed`.
#[tokio::test(flavor = "current_thread")]
async fn refused_token_closes_without_reply() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(Config {
        handshake_timeout: Duration::from_secs(120),
        ..config()
    })
    .await;
    let mut client = TcpClient::connect(h.tcp).await;
    // Capture: auth with a body that is not JSON -> closed, 0 bytes.
    client
        .send_raw(&hex(
            "00 00 00 18 00 10 00 01 00 00 00 07 00 00 00 01 6e 6f 74 2d 6a 73 6f 6e",
        ))
        .await;
    client.expect_closed().await;
    assert_eq!(&next(&mut h.events.connects).await.token[..], b"not-json");
    assert_eq!(h.comet.hub().stats().connections, 0);
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=auth_failed}"),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_the_connection() {
    let mut h = Harness::start(config()).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Capture: headerLen 15.
        (
            "header length",
            hex("00 00 00 10 00 0f 00 01 00 00 00 07 00 00 00 01"),
        ),
        (
            "negative packLen",
            hex("ff ff ff ff 00 10 00 01 00 00 00 07 00 00 00 01"),
        ),
        (
            "packLen below 16",
            hex("00 00 00 0f 00 10 00 01 00 00 00 07 00 00 00 01"),
        ),
        // 16 + 4097: over max_body, rejected from the header alone.
        (
            "oversize body",
            hex("00 00 10 11 00 10 00 01 00 00 00 04 00 00 00 01"),
        ),
    ];
    for (name, bytes) in &cases {
        // Before auth.
        let mut client = TcpClient::connect(h.tcp).await;
        client.send_raw(bytes).await;
        client.expect_closed().await;
        // After auth: the session is torn down and logic told.
        let mut client = h.tcp_client(name, "live://1", &[]).await;
        client.send_raw(bytes).await;
        client.expect_closed().await;
        let disconnect = next(&mut h.events.disconnects).await;
        assert_eq!(disconnect.key, *name);
    }
    // A body at the limit is fine.
    let mut client = h.tcp_client("big", "", &[]).await;
    client.send(1, 4, 1, &[7u8; 4096]).await;
    assert_eq!(client.read_frame().await, parse_frame(&frame(1, 4, 1, b"")));
    assert_eq!(h.comet.hub().stats().connections, 1);
    h.stop().await;
}

#[tokio::test]
async fn same_key_kicks_the_older_connection() {
    let mut h = Harness::start(config()).await;
    let mut old = h.tcp_client("dup", "live://1", &[1000]).await;
    let mut new = h.tcp_client("dup", "live://1", &[1000]).await;
    // The old connection is closed; logic's mapping (now the new one's) is
    // left alone: teardown talks to logic before closing the socket.
    old.expect_closed().await;
    assert!(h.events.disconnects.try_recv().is_err());
    assert_eq!(h.comet.hub().stats().connections, 1);
    push_keys(&h.comet, &["dup"], 1000, b"to-new");
    assert_eq!(new.read_frame().await.body, b"to-new");
    push_room(&h.comet, "live://1", raw_proto(1000, b"room"));
    assert_eq!(new.read_frame().await.body, b"room");
    // The new one's own close does remove the mapping, once.
    drop(new);
    let disconnect = next(&mut h.events.disconnects).await;
    assert_eq!(
        (
            disconnect.key.as_str(),
            disconnect.mid,
            disconnect.server.as_str()
        ),
        ("dup", 1, SERVER_ID)
    );
    let mut events = h.stop().await;
    assert!(events.disconnects.try_recv().is_err());
}

/// Pushes still queued for the older connection when a newer one takes its
/// key are dropped and counted as `kicked`. The older connection's writer is
/// held in a write its client does not read, so the pushes stay queued.
#[tokio::test(flavor = "current_thread")]
async fn a_kick_counts_what_the_older_connection_still_had_queued() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(config()).await;
    let mut old = h.tcp_client("dup", "", &[1000]).await;
    // 16 MiB: more than the socket buffers hold, so the write blocks.
    push_keys(&h.comet, &["dup"], 1000, &vec![b'x'; 16 << 20]);
    // The first bytes prove the writer is inside that write.
    old.read_exact(16).await;
    for body in [b"q1", b"q2", b"q3"] {
        push_keys(&h.comet, &["dup"], 1000, body);
    }
    let _new = h.tcp_client("dup", "", &[1000]).await;
    assert_eq!(
        recorder.counter("rim_comet_dropped_messages_total{reason=kicked}"),
        3
    );
    old.drain_until_closed().await;
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=kicked}"),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn client_close_tells_logic() {
    let mut h = Harness::start(config()).await;
    let client = h.tcp_client("bye", "live://1", &[]).await;
    drop(client);
    let disconnect = next(&mut h.events.disconnects).await;
    assert_eq!(disconnect.key, "bye");
    assert_eq!(h.comet.hub().stats(), rim_comet::Stats::default());
    h.stop().await;
}

/// Pushes the comet accepted before the shutdown began reach the client
/// before its connection closes. The connection tasks are held inside a
/// logic call (an upstream op 4), so the pushes are still queued when the
/// shutdown interrupts them.
#[tokio::test]
async fn shutdown_writes_what_was_accepted_before_closing() {
    let mut h = Harness::start(config()).await;
    let mut tcp = h.tcp_client("drain-tcp", "", &[1000]).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(2, "drain-ws", "", &[1000])).await;
    next(&mut h.events.connects).await;
    h.logic
        .hold_receives
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tcp.send(1, 4, 1, b"up").await;
    ws.send(1, 4, 1, b"up").await;
    next(&mut h.events.receives).await;
    next(&mut h.events.receives).await;
    for i in 0..50u8 {
        push_keys(&h.comet, &["drain-tcp", "drain-ws"], 1000, &[i]);
    }
    let stopping = tokio::spawn(h.stop());
    for i in 0..50u8 {
        let push = tcp.read_frame().await;
        assert_eq!((push.op, &push.body[..]), (1000, &[i][..]), "tcp push {i}");
        let push = ws.read_frame().await;
        assert_eq!(parse_frame(&push.body).body, [i], "ws push {i}");
    }
    tcp.expect_closed().await;
    // Then the WebSocket close: 1001 going away.
    let (first, payload) = ws.read_ws().await;
    assert_eq!((first, &payload[..2]), (0x88, &1001u16.to_be_bytes()[..]));
    stopping.await.unwrap();
}

/// Every connection, authenticated or still in its handshake, is closed by
/// the shutdown itself: the handshake timer is set far beyond the wait.
#[tokio::test]
async fn shutdown_closes_every_connection() {
    let mut h = Harness::start(Config {
        handshake_timeout: Duration::from_secs(120),
        ..config()
    })
    .await;
    let mut authed = h.tcp_client("a", "live://1", &[]).await;
    let mut pending = TcpClient::connect(h.tcp).await;
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(2, "w", "", &[])).await;
    let mut events = h.stop().await;
    authed.expect_closed().await;
    pending.expect_closed().await;
    assert_eq!(ws.close_status().await, Some((1001, "shutdown".to_owned())));
    let mut keys = vec![events.disconnects.recv().await.unwrap().key];
    keys.push(events.disconnects.recv().await.unwrap().key);
    keys.sort();
    assert_eq!(keys, ["a", "w"]);
}

/// README: at shutdown the comet writes what it accepted to each client for
/// at most 1 s per connection, in parallel. The client here reads nothing
/// while a 16 MiB push is being written to it, so the drain runs out its
/// second and `stop` returns after it, well before `shutdown_grace` (5 s).
/// A push that arrives after the shutdown began is dropped, counted as
/// `session_closed`.
#[tokio::test(start_paused = true)]
async fn shutdown_gives_a_client_that_does_not_read_at_most_1s() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(config()).await;
    let comet = h.comet.clone();
    let mut idle = h.tcp_client("idle", "", &[]).await;
    let mut stuck = Vec::new();
    for key in ["stuck-1", "stuck-2"] {
        let mut client = h.tcp_client(key, "", &[1000]).await;
        push_keys(&comet, &[key], 1000, &vec![b'x'; 16 << 20]);
        // The first bytes prove the writer is inside that write.
        client.read_exact(16).await;
        stuck.push(client);
    }
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(h.stop());
    // A connection with nothing to write closes at once: the shutdown began.
    idle.expect_closed().await;
    push_keys(&comet, &["stuck-1"], 1000, b"too-late");
    assert_eq!(
        recorder.counter("rim_comet_dropped_messages_total{reason=session_closed}"),
        1
    );
    stopping.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1500),
        "stop took {elapsed:?}"
    );
    for mut client in stuck {
        client.drain_until_closed().await;
    }
}
