//! Handshake and heartbeat deadlines, and logic heartbeats, with paused time.

use std::time::Duration;

use rim_comet::Config;
use tokio::time::Instant;

use crate::common::*;

const SEC: i64 = 1_000_000_000;

#[tokio::test(start_paused = true)]
async fn tcp_handshake_times_out_even_with_pre_auth_frames() {
    let h = Harness::start(config()).await;
    let started = Instant::now();
    let mut client = TcpClient::connect(h.tcp).await;
    client.send(1, 2, 1, b"").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Frames other than op 7 do not extend the handshake.
    client.send(1, 2, 2, b"").await;
    client.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(8) && elapsed < Duration::from_secs(9),
        "{elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ws_handshake_timeout_covers_the_upgrade() {
    let h = Harness::start(Config {
        handshake_timeout: Duration::from_secs(3),
        ..config()
    })
    .await;
    let started = Instant::now();
    // Connected, but no HTTP request.
    let mut client = TcpClient::connect(h.ws).await;
    client.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    h.stop().await;
}

/// protocol.md: on WebSocket, a handshake or heartbeat timeout is announced
/// with a close frame, 1008 and the reason label.
#[tokio::test(start_paused = true)]
async fn ws_timeouts_are_closed_with_1008_and_the_reason() {
    let h = Harness::start(Config {
        heartbeat_timeout: Duration::from_secs(20),
        ..config()
    })
    .await;
    // Upgraded, but no op 7: the default 8 s handshake deadline.
    let started = Instant::now();
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    assert_eq!(
        ws.close_status().await,
        Some((1008, "handshake_timeout".to_owned()))
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(8) && elapsed < Duration::from_secs(9),
        "{elapsed:?}"
    );
    // Authenticated, then silent.
    let (mut ws, _) = WsClient::connect(h.ws, "/sub", None).await.unwrap();
    ws.auth(&token(1, "quiet", "", &[])).await;
    let authed = Instant::now();
    assert_eq!(
        ws.close_status().await,
        Some((1008, "heartbeat_timeout".to_owned()))
    );
    let elapsed = authed.elapsed();
    assert!(
        elapsed >= Duration::from_secs(20) && elapsed < Duration::from_secs(21),
        "{elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_from_logic_and_only_op_2_resets_it() {
    let mut h = Harness::start_with(config(), 20 * SEC).await;
    let mut client = h.tcp_client("hb", "live://1", &[]).await;
    let authed = Instant::now();
    tokio::time::sleep(Duration::from_secs(15)).await;
    client.send(1, 2, 1, b"").await;
    assert_eq!(client.read_frame().await.op, 3);
    let reset = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Other ops do not keep the connection alive.
    client.send(1, 4, 2, b"up").await;
    assert_eq!(client.read_frame().await.op, 4);
    client.expect_closed().await;
    let since_reset = reset.elapsed();
    assert!(
        since_reset >= Duration::from_secs(20) && since_reset < Duration::from_secs(21),
        "closed {since_reset:?} after the last heartbeat"
    );
    assert!(authed.elapsed() >= Duration::from_secs(35));
    assert_eq!(next(&mut h.events.disconnects).await.key, "hb");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_falls_back_to_config() {
    let h = Harness::start_with(
        Config {
            heartbeat_timeout: Duration::from_secs(12),
            ..config()
        },
        0,
    )
    .await;
    let mut client = TcpClient::connect(h.tcp).await;
    client.auth(&token(1, "k", "", &[])).await;
    let authed = Instant::now();
    client.expect_closed().await;
    let elapsed = authed.elapsed();
    assert!(
        elapsed >= Duration::from_secs(12) && elapsed < Duration::from_secs(13),
        "{elapsed:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn logic_heartbeat_at_most_once_per_interval() {
    let mut h = Harness::start_with(
        Config {
            logic_heartbeat_interval_min: Duration::from_secs(60),
            logic_heartbeat_interval_max: Duration::from_secs(60),
            ..config()
        },
        600 * SEC,
    )
    .await;
    let mut client = h.tcp_client("k", "", &[]).await;
    beat(&mut client, 1).await; // 25s
    beat(&mut client, 2).await; // 50s
    assert!(h.events.heartbeats.try_recv().is_err());
    beat(&mut client, 3).await; // 75s: due
    let req = next(&mut h.events.heartbeats).await;
    assert_eq!(
        (req.mid, req.key.as_str(), req.server.as_str()),
        (1, "k", SERVER_ID)
    );
    beat(&mut client, 4).await; // 100s: 25s after the last one
    beat(&mut client, 5).await; // 125s
    assert!(h.events.heartbeats.try_recv().is_err());
    beat(&mut client, 6).await; // 150s: due again
    next(&mut h.events.heartbeats).await;
    h.stop().await;
}

/// Waits 25 s, then sends a heartbeat and reads its reply.
async fn beat(client: &mut TcpClient, seq: i32) {
    tokio::time::sleep(Duration::from_secs(25)).await;
    client.send(1, 2, seq, b"").await;
    assert_eq!(client.read_frame().await.op, 3);
}
