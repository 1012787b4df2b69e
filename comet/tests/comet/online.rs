//! The online-report loop: counts sent to logic, cluster counts applied.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rim_comet::{Config, Stats};
use tokio::time::Instant;

use crate::common::*;

#[tokio::test(start_paused = true)]
async fn reports_counts_and_applies_cluster_counts() {
    let mut h = Harness::start(Config {
        addrs: vec!["203.0.113.7:3101".into()],
        weight: 3,
        ..config()
    })
    .await;
    // The first report goes out at once.
    let started = Instant::now();
    let first = next(&mut h.events.onlines).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(first.server, SERVER_ID);
    assert!(first.room_count.is_empty());

    let mut a = h.tcp_client("a", "live://1000", &[]).await;
    let _b = h.tcp_client("b", "live://1000", &[]).await;
    let _c = h.tcp_client("c", "live://2000", &[]).await;
    assert_eq!(
        h.comet.hub().stats(),
        Stats {
            connections: 3,
            ips: 1,
            rooms: 2
        }
    );
    h.logic
        .all_room_count
        .lock()
        .unwrap()
        .insert("live://1000".into(), 42);

    let report = next(&mut h.events.onlines).await;
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(
        report.room_count,
        HashMap::from([("live://1000".to_owned(), 2), ("live://2000".to_owned(), 1)])
    );
    assert_eq!((report.conn_count, report.ip_count), (3, 1));
    assert_eq!(report.addrs, ["203.0.113.7:3101"]);
    assert_eq!(report.weight, 3);

    // The loop is sequential: once the next report is asked for, the previous
    // reply has been applied. The heartbeat now carries the cluster count.
    next(&mut h.events.onlines).await;
    a.send(1, 2, 1, b"").await;
    assert_eq!(a.read_frame().await.body, 42i32.to_be_bytes());

    // A room absent from logic's reply falls back to the local count.
    h.logic.all_room_count.lock().unwrap().clear();
    next(&mut h.events.onlines).await;
    next(&mut h.events.onlines).await;
    a.send(1, 2, 2, b"").await;
    assert_eq!(a.read_frame().await.body, 2i32.to_be_bytes());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_report_is_retried_after_a_second() {
    let mut h = Harness::start(config()).await;
    next(&mut h.events.onlines).await;
    h.logic.fail_next_online.store(true, Ordering::SeqCst);
    let failing = next(&mut h.events.onlines).await;
    let failed_at = Instant::now();
    let retry = next(&mut h.events.onlines).await;
    assert_eq!(failed_at.elapsed(), Duration::from_secs(1));
    assert_eq!(failing.server, retry.server);
    h.stop().await;
}
