//! Pushes: bytes on the wire, accepts filtering, slow clients.

use rim_comet::Config;
use rim_proto::pb::comet::{BroadcastReq, PushMsgReq};
use tokio::net::TcpSocket;

use crate::common::*;
use crate::tcp::hex;

#[tokio::test(flavor = "current_thread")]
async fn keyed_push_is_the_bare_inner_frame_on_tcp() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let h = Harness::start(config()).await;
    let mut client = TcpClient::connect(h.tcp).await;
    client.auth(CAPTURE_TCP_AUTH_TOKEN).await;
    // Capture: push by key, operation 1000, body "push-to-key".
    push_keys(&h.comet, &["tcp-key-1"], 1000, b"push-to-key");
    assert_eq!(
        client.read_exact(27).await,
        hex("00 00 00 1b 00 10 00 01 00 00 03 e8 00 00 00 00 70 75 73 68 2d 74 6f 2d 6b 65 79")
    );
    // Capture: a room batch of three arrives as three back-to-back frames.
    push_room(
        &h.comet,
        "live://1000",
        raw_batch(&[(1000, b"m0"), (1000, b"m1"), (1000, b"m2")]),
    );
    assert_eq!(
        client.read_exact(54).await,
        hex("00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 6d 30 \
             00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 6d 31 \
             00 00 00 12 00 10 00 01 00 00 03 e8 00 00 00 00 6d 32")
    );
    // A non-Raw proto is written as one normal frame.
    h.comet
        .hub()
        .push_msg(PushMsgReq {
            keys: vec!["tcp-key-1".into()],
            proto_op: 1001,
            proto: Some(rim_proto::pb::protocol::Proto {
                ver: 1,
                op: 1001,
                seq: 0,
                body: bytes::Bytes::from_static(b"plain"),
            }),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        client.read_frame().await,
        parse_frame(&frame(1, 1001, 0, b"plain"))
    );
    // Unknown keys are skipped (counted), the others still get it.
    push_keys(&h.comet, &["nobody", "tcp-key-1"], 1000, b"again");
    assert_eq!(client.read_frame().await.body, b"again");
    assert_eq!(
        recorder.counter("rim_comet_dropped_messages_total{reason=no_session}"),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn broadcast_filters_on_accepts() {
    let mut h = Harness::start(config()).await;
    let mut a = h.tcp_client("a", "", &[1000]).await;
    let mut b = h.tcp_client("b", "", &[2000]).await;
    let broadcast = |op: i32, body: &'static [u8]| BroadcastReq {
        proto_op: op,
        proto: Some(raw_proto(op, body)),
        speed: 0,
        unfiltered: false,
    };
    h.comet.hub().broadcast(broadcast(1000, b"for-a")).unwrap();
    h.comet.hub().broadcast(broadcast(2000, b"for-b")).unwrap();
    // Capture: broadcast body "broadcast", operation 1000 (25 bytes).
    h.comet
        .hub()
        .broadcast(broadcast(1000, b"broadcast"))
        .unwrap();
    assert_eq!(a.read_frame().await.body, b"for-a");
    assert_eq!(
        a.read_exact(25).await,
        hex("00 00 00 19 00 10 00 01 00 00 03 e8 00 00 00 00 62 72 6f 61 64 63 61 73 74")
    );
    assert_eq!(b.read_frame().await.body, b"for-b");
    // Paced broadcast (speed > 0) arrives too.
    h.comet
        .hub()
        .broadcast(BroadcastReq {
            speed: 1000,
            ..broadcast(2000, b"paced")
        })
        .unwrap();
    assert_eq!(b.read_frame().await.body, b"paced");
    h.stop().await;
}

#[tokio::test]
async fn room_push_ignores_accepts() {
    let mut h = Harness::start(config()).await;
    let mut member = h.tcp_client("m", "live://9", &[1000]).await;
    let mut outsider = h.tcp_client("o", "live://8", &[3000]).await;
    push_room(&h.comet, "live://9", raw_proto(3000, b"not-in-accepts"));
    let got = member.read_frame().await;
    assert_eq!(
        (got.op, got.body.as_slice()),
        (3000, &b"not-in-accepts"[..])
    );
    // The outsider's next frame is its own room's push, not live://9's.
    push_room(&h.comet, "live://8", raw_proto(3000, b"own-room"));
    assert_eq!(outsider.read_frame().await.body, b"own-room");
    h.stop().await;
}

#[tokio::test]
async fn slow_client_is_disconnected_and_others_get_everything() {
    let recorder = TestRecorder::default();
    // Current-thread runtime: every comet task reports to this recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(Config {
        session_queue: 8,
        ..config()
    })
    .await;

    // The slow client never reads; a small receive buffer fills its socket soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = TcpClient {
        stream: socket.connect(h.tcp).await.unwrap(),
    };
    slow.auth(&token(7, "slow", "live://big", &[])).await;
    next(&mut h.events.connects).await;
    let mut fast = h.tcp_client("fast", "live://big", &[]).await;

    let body = vec![b'x'; 64 * 1024];
    let mut sent = 0u32;
    let mut extra_after_kick = 0;
    while extra_after_kick < 20 {
        assert!(sent < 2000, "the slow client was never disconnected");
        let mut message = sent.to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        push_room(&h.comet, "live://big", raw_proto(1000, &message));
        let got = fast.read_frame().await;
        assert_eq!(
            got.body[..4],
            sent.to_be_bytes(),
            "fast client missed a message"
        );
        sent += 1;
        if h.comet.hub().stats().connections == 1 {
            extra_after_kick += 1;
        }
    }
    let disconnect = next(&mut h.events.disconnects).await;
    assert_eq!(disconnect.key, "slow");
    assert_eq!(
        recorder.counter("rim_comet_slow_client_disconnects_total"),
        1
    );
    let dropped = recorder.counter("rim_comet_dropped_messages_total{reason=slow_client}");
    assert!(
        dropped >= 9,
        "queue (8) + the overflowing message are counted, got {dropped}"
    );
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=slow_client}"),
        1
    );
    // The slow client got a prefix of the stream, then the close.
    let received = slow.drain_until_closed().await;
    let frame_len = 16 + 4 + body.len();
    assert!(received < sent as usize * frame_len);
    h.stop().await;
}

#[tokio::test]
async fn queued_pushes_are_coalesced_and_ordered() {
    let mut h = Harness::start(config()).await;
    let mut client = h.tcp_client("k", "live://1", &[1000]).await;
    // Queued without yielding: the writer drains them together, in order.
    for i in 0..50u8 {
        if i % 2 == 0 {
            push_keys(&h.comet, &["k"], 1000, &[i]);
        } else {
            push_room(&h.comet, "live://1", raw_proto(1000, &[i]));
        }
    }
    for i in 0..50u8 {
        assert_eq!(client.read_frame().await.body, [i]);
    }
    h.stop().await;
}

/// A push that arrives while the writer is stuck in a write (the client is
/// not reading) must go out once the write completes, without any further
/// push or client frame to wake the connection.
#[tokio::test]
async fn a_push_during_a_blocked_write_is_not_forgotten() {
    let mut h = Harness::start(Config {
        session_queue: 1024,
        ..config()
    })
    .await;
    let mut client = h.tcp_client("blocked", "", &[1000]).await;
    // 16 MiB: more than the socket buffers hold, so the write blocks.
    let big = vec![b'x'; 16 << 20];
    push_keys(&h.comet, &["blocked"], 1000, &big);
    // The first bytes arriving prove the writer is in that write; it stays
    // blocked while the client reads nothing more.
    let header = client.read_exact(16).await;
    push_keys(&h.comet, &["blocked"], 1000, b"after-1");
    push_keys(&h.comet, &["blocked"], 1000, b"after-2");
    let pack_len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    assert_eq!(pack_len, 16 + big.len());
    client.read_exact(big.len()).await;
    for expected in [&b"after-1"[..], b"after-2"] {
        let frame = client.read_frame().await;
        assert_eq!(frame.body, expected);
    }
    h.stop().await;
}

/// Pushes still queued when a connection ends are dropped and counted as
/// `connection_closed`. The writer is held in a write the client does not
/// read, so the pushes behind it stay queued; then the client goes away.
#[tokio::test(flavor = "current_thread")]
async fn pushes_queued_when_a_connection_ends_are_counted() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut h = Harness::start(config()).await;
    let mut client = h.tcp_client("leaving", "", &[1000]).await;
    // 16 MiB: more than the socket buffers hold, so the write blocks.
    push_keys(&h.comet, &["leaving"], 1000, &vec![b'x'; 16 << 20]);
    client.read_exact(16).await;
    for body in [b"q1", b"q2", b"q3"] {
        push_keys(&h.comet, &["leaving"], 1000, body);
    }
    // Closing with unread bytes resets the connection: the write fails.
    drop(client);
    assert_eq!(next(&mut h.events.disconnects).await.key, "leaving");
    assert_eq!(
        recorder.counter("rim_comet_dropped_messages_total{reason=connection_closed}"),
        3
    );
    h.stop().await;
}

/// rim's `PushMsgs` over real gRPC: the pushes of one call reach their
/// sessions in call order, exactly as separate `PushMsg` calls would, and a
/// malformed push is named in the reply without failing the others.
#[tokio::test]
async fn push_msgs_over_grpc_applies_each_in_order_and_names_the_refused() {
    use rim_proto::pb::comet::comet_client::CometClient;
    use rim_proto::pb::comet::{PushMsgsReq, PushRefused};

    let mut h = Harness::start(config()).await;
    let mut a = h.tcp_client("a", "", &[1000]).await;
    let mut b = h.tcp_client("b", "", &[1000]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(rim_comet::grpc::serve(
        h.comet.clone(),
        listener,
        stop.clone(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = CometClient::new(channel);
    let push = |keys: &[&str], body: &[u8]| PushMsgReq {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        proto_op: 1000,
        proto: Some(raw_proto(1000, body)),
        ..Default::default()
    };
    let pushes = vec![
        push(&["a"], b"1"),
        push(&["a", "b"], b"2"),
        // No keys: refused, as PushMsg refuses it.
        push(&[], b"x"),
        push(&["b"], b"3"),
        push(&["a"], b"4"),
    ];
    let reply = client
        .push_msgs(PushMsgsReq { pushes })
        .await
        .expect("push_msgs answered")
        .into_inner();
    assert_eq!(
        reply.refused,
        vec![PushRefused {
            index: 2,
            reason: "no keys".into()
        }]
    );
    for expected in [&b"1"[..], b"2", b"4"] {
        assert_eq!(a.read_frame().await.body, expected);
    }
    for expected in [&b"2"[..], b"3"] {
        assert_eq!(b.read_frame().await.body, expected);
    }
    stop.cancel();
    served.await.unwrap().unwrap();
    h.stop().await;
}
