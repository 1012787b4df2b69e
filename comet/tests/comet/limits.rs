//! Abuse limits: connections per comet and per client IP (refused at accept,
//! counted, slots given back however a connection ends) and frames per
//! second per connection (closed, counted, logic told).

use std::time::Duration;

use rim_comet::Config;
use rim_testkit::poll;
use tokio::io::AsyncWriteExt;

use crate::common::*;

/// Connects until the comet takes a connection as far as an auth reply
/// (the previous holder's slot may take a moment to be given back).
async fn connect_when_admitted(h: &Harness, key: &str) -> TcpClient {
    poll::eventually(WAIT, Duration::from_millis(10), async || {
        let mut client = TcpClient::connect(h.tcp).await;
        client
            .send(1, 7, 1, token(1, key, "", &[]).as_bytes())
            .await;
        let mut head = [0u8; 16];
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(WAIT, client.stream.read_exact(&mut head)).await {
            Ok(Ok(16)) => {
                assert_eq!(head.to_vec(), frame(1, 8, 1, b""));
                Ok(client)
            }
            last => Err(format!("never admitted (last try: {last:?})")),
        }
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn connections_per_ip_are_limited_and_slots_come_back() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(Config {
        max_connections_per_ip: 2,
        ..config()
    })
    .await;
    let authed = h.tcp_client("first", "", &[]).await;
    // An unauthenticated connection holds a slot too.
    let pending = TcpClient::connect(h.tcp).await;
    let mut refused = TcpClient::connect(h.tcp).await;
    refused.expect_closed().await;
    // The WebSocket listener counts the same connections: closed before
    // any HTTP answer.
    let mut refused_ws = TcpClient::connect(h.ws).await;
    refused_ws.expect_closed().await;
    assert_eq!(
        recorder.counter("rim_comet_limit_rejections_total{limit=connections_per_ip}"),
        2
    );
    // A session that ends, and a handshake that ends, give their slots back.
    drop(authed);
    assert_eq!(next(&mut h.events.disconnects).await.key, "first");
    let _again = connect_when_admitted(&h, "second").await;
    drop(pending);
    let _third = connect_when_admitted(&h, "third").await;
    h.stop().await;
}

/// Over `max_connections`, a connection is closed at accept, unread (the
/// handshake timer is set far beyond the wait, so only the limit can close
/// it), counted, and never reaches logic; the slot is usable again once the
/// holder leaves.
#[tokio::test(flavor = "current_thread")]
async fn connections_per_comet_are_limited() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(Config {
        max_connections: 1,
        max_connections_per_ip: 0,
        handshake_timeout: Duration::from_secs(120),
        ..config()
    })
    .await;
    let only = h.tcp_client("only", "", &[]).await;
    let mut refused = TcpClient::connect(h.tcp).await;
    // An auth frame the comet must not read: admitted, it would answer op 8.
    // (The write may race the server's close; that is fine.)
    let _ = refused
        .stream
        .write_all(&frame(1, 7, 1, token(2, "refused", "", &[]).as_bytes()))
        .await;
    refused.expect_closed().await;
    assert_eq!(
        recorder.counter("rim_comet_limit_rejections_total{limit=connections}"),
        1
    );
    drop(only);
    assert_eq!(next(&mut h.events.disconnects).await.key, "only");
    let _again = connect_when_admitted(&h, "again").await;
    // Logic saw only the admitted clients.
    while let Ok(connect) = h.events.connects.try_recv() {
        let token: serde_json::Value = serde_json::from_slice(&connect.token).unwrap();
        assert_eq!(token["key"], "again");
    }
    h.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_over_its_frame_rate_is_closed() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(Config {
        max_frames_per_sec: 5,
        ..config()
    })
    .await;
    // Five heartbeats fit in one second; the limit counts per calendar
    // second, so a burst that straddles a second boundary may get ten.
    let mut client = h.tcp_client("chatty", "", &[]).await;
    for seq in 0..20 {
        client.send(1, 2, seq, b"").await;
    }
    let mut replies = 0;
    loop {
        let mut head = [0u8; 20];
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(WAIT, client.stream.read_exact(&mut head)).await {
            Ok(Ok(_)) => replies += 1,
            Ok(Err(_)) => break,
            Err(_) => panic!("connection still open after 20 frames in a second"),
        }
    }
    assert!(replies < 2 * 5, "{replies} heartbeats answered");
    assert_eq!(next(&mut h.events.disconnects).await.key, "chatty");
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=frame_rate}"),
        1
    );
    // A client that keeps to the rate is not touched.
    let mut calm = h.tcp_client("calm", "", &[]).await;
    for seq in 0..4 {
        calm.send(1, 2, seq, b"").await;
        assert_eq!(calm.read_frame().await.op, 3);
    }
    h.stop().await;
}
