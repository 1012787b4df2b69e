//! Room announcements before joins: a join (op 8 with a room, op 12, op 24)
//! is applied and answered only once logic recorded the room (one call per
//! room for concurrent joins); a failed announce refuses op 24 with 503 and
//! closes the connection on op 8 and op 12; a logic without announcements
//! (goim's) answers joins as before; an online report whose reply carries
//! `room_ttl_ms` confirms the rooms it listed.

use std::sync::atomic::Ordering;

use rim_comet::{Config, LogicCallError};

use crate::common::*;

/// The body of the next frame, as text.
async fn reply(client: &mut TcpClient, op: i32, seq: i32) -> String {
    let frame = client.read_frame().await;
    assert_eq!((frame.op, frame.seq), (op, seq), "{frame:?}");
    String::from_utf8(frame.body).unwrap()
}

/// Whether `room` has a member on the comet.
fn has_members(h: &Harness, room: &str) -> bool {
    h.comet.hub().rooms().rooms.contains_key(room)
}

#[tokio::test]
async fn a_join_is_applied_and_answered_only_after_logic_recorded_the_room() {
    let mut h = Harness::start(config()).await;
    let mut a = h.tcp_client("a", "", &[]).await;
    let mut b = h.tcp_client("b", "", &[]).await;
    h.logic.hold_announces.store(true, Ordering::SeqCst);
    a.send(1, 24, 1, b"live://1").await;
    b.send(1, 24, 2, b"live://1").await;
    let announced = next(&mut h.events.announces).await;
    assert_eq!(announced.server, SERVER_ID);
    assert_eq!(announced.rooms, vec!["live://1".to_owned()]);
    // Inside the call: neither join is applied yet.
    assert!(!has_members(&h, "live://1"));
    h.logic.announce_gate.add_permits(1);
    assert_eq!(reply(&mut a, 25, 1).await, "live://1");
    assert_eq!(reply(&mut b, 25, 2).await, "live://1");
    assert!(has_members(&h, "live://1"));
    // The two concurrent joins shared one call, and a later join needs none.
    let mut c = h.tcp_client("c", "", &[]).await;
    c.send(1, 24, 3, b"live://1").await;
    assert_eq!(reply(&mut c, 25, 3).await, "live://1");
    assert!(
        h.events.announces.try_recv().is_err(),
        "one announce for live://1"
    );
    // A refused join (already in) costs logic nothing.
    a.send(1, 24, 4, b"live://1").await;
    assert!(reply(&mut a, 25, 4).await.contains("409"));
    assert!(h.events.announces.try_recv().is_err());
    push_room(&h.comet, "live://1", raw_proto(1000, b"to-1"));
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.read_frame().await.body, b"to-1");
    }
    // op 12 and the token's room are announced too.
    h.logic.hold_announces.store(false, Ordering::SeqCst);
    a.send(1, 12, 5, b"live://2").await;
    assert_eq!(reply(&mut a, 13, 5).await, "live://2");
    assert_eq!(
        next(&mut h.events.announces).await.rooms,
        vec!["live://2".to_owned()]
    );
    let _d = h.tcp_client("d", "live://3", &[]).await;
    assert_eq!(
        next(&mut h.events.announces).await.rooms,
        vec!["live://3".to_owned()]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failed_announce_refuses_op_24_and_closes_on_op_12_and_op_8() {
    let mut h = Harness::start(config()).await;
    let mut a = h.tcp_client("a", "", &[]).await;
    *h.logic.announce_answer.lock().unwrap() =
        Err(LogicCallError::Unavailable("router down".into()));
    a.send(1, 24, 1, b"live://1").await;
    let refusal: serde_json::Value = serde_json::from_str(&reply(&mut a, 25, 1).await).unwrap();
    assert_eq!(refusal["code"], 503, "{refusal}");
    assert!(!has_members(&h, "live://1"), "a refusal changes nothing");
    // The connection stays: a heartbeat is answered.
    a.send(1, 2, 2, b"").await;
    assert_eq!(a.read_frame().await.op, 3);

    // op 12 has no refusal: the connection is closed.
    a.send(1, 12, 3, b"live://2").await;
    a.expect_closed().await;
    assert!(!has_members(&h, "live://2"));

    // op 8 with a room: no op 8, closed, and logic forgets the session.
    let mut b = TcpClient::connect(h.tcp).await;
    b.send(1, 7, 1, token(2, "b", "live://3", &[]).as_bytes())
        .await;
    b.expect_closed().await;
    next(&mut h.events.connects).await;
    loop {
        let gone = next(&mut h.events.disconnects).await;
        if gone.key == "b" {
            break;
        }
    }

    // Logic answers again: the same joins go through.
    *h.logic.announce_answer.lock().unwrap() = Ok(300_000);
    let mut c = h.tcp_client("c", "live://3", &[]).await;
    c.send(1, 24, 4, b"live://1").await;
    assert_eq!(reply(&mut c, 25, 4).await, "live://1");
    h.stop().await;
}

#[tokio::test]
async fn a_logic_without_announcements_answers_joins_as_before() {
    let mut h = Harness::start(config()).await;
    *h.logic.announce_answer.lock().unwrap() = Err(LogicCallError::Unimplemented("goim".into()));
    let mut a = h.tcp_client("a", "live://1", &[]).await;
    a.send(1, 24, 1, b"live://2").await;
    assert_eq!(reply(&mut a, 25, 1).await, "live://2");
    a.send(1, 12, 2, b"live://3").await;
    assert_eq!(reply(&mut a, 13, 2).await, "live://3");
    // Asked once; not again for a while.
    next(&mut h.events.announces).await;
    assert!(h.events.announces.try_recv().is_err());
    push_room(&h.comet, "live://2", raw_proto(1000, b"joined"));
    assert_eq!(a.read_frame().await.body, b"joined");
    h.stop().await;
}

#[tokio::test]
async fn an_online_report_confirms_the_rooms_it_listed() {
    let mut h = Harness::start(Config {
        online_report_interval: std::time::Duration::from_millis(50),
        ..config()
    })
    .await;
    // Announces confirm nothing beyond the margin (ttl = margin): every
    // join would announce, unless a report confirmed its room.
    let margin = config().room_announce_margin;
    *h.logic.announce_answer.lock().unwrap() = Ok(margin.as_millis() as u64);
    h.logic.room_ttl_ms.store(300_000, Ordering::SeqCst);
    let mut a = h.tcp_client("a", "", &[]).await;
    a.send(1, 24, 1, b"live://1").await;
    assert_eq!(reply(&mut a, 25, 1).await, "live://1");
    next(&mut h.events.announces).await;
    // A report listing live://1, then the next one: the first one's reply
    // (room_ttl_ms) was handled before the next report was sent.
    loop {
        if next(&mut h.events.onlines)
            .await
            .room_count
            .contains_key("live://1")
        {
            break;
        }
    }
    next(&mut h.events.onlines).await;
    let mut b = h.tcp_client("b", "", &[]).await;
    b.send(1, 24, 2, b"live://1").await;
    assert_eq!(reply(&mut b, 25, 2).await, "live://1");
    assert!(
        h.events.announces.try_recv().is_err(),
        "the report confirmed live://1"
    );
    // A room no report listed is still announced.
    b.send(1, 24, 3, b"live://9").await;
    assert_eq!(reply(&mut b, 25, 3).await, "live://9");
    assert_eq!(
        next(&mut h.events.announces).await.rooms,
        vec!["live://9".to_owned()]
    );
    h.stop().await;
}
