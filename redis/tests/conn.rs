//! [`Conn`] against the test Redis and the test Redis Cluster
//! (`RIM_TEST_REDIS`, `RIM_TEST_REDIS_CLUSTER`; scripts/services.sh): a
//! batch over many slots answers in its order, `WAIT` is checked, scans and
//! per-node commands reach every master. And a cluster test run without the
//! cluster fails, loudly.

use std::time::Duration;

use redis::Value;
use rim_redis::{Batch, Conn, Target};
use rim_testkit::services::unique;

const TIMEOUT: Duration = Duration::from_secs(5);

rim_testkit::on_redis_node_and_cluster!(
    a_batch_over_many_slots_answers_in_order,
    wait_counts_the_replicas,
    scans_and_node_commands_reach_every_master,
);

async fn a_batch_over_many_slots_answers_in_order(target: Target) {
    let conn = Conn::connect(&target, TIMEOUT).await.unwrap();
    let prefix = unique("rim-redis-batch");
    let key = |i: usize| format!("{prefix}:{{{i}}}");
    let mut writes = Batch::new();
    for i in 0..200 {
        // Two commands per key, in order: the second sees the first.
        writes.push(
            key(i),
            redis::cmd("SET")
                .arg(key(i))
                .arg(i)
                .arg("EX")
                .arg(60)
                .clone(),
        );
        writes.push(key(i), redis::cmd("INCR").arg(key(i)).clone());
    }
    let replies = conn.run(&writes).await.unwrap();
    assert_eq!(replies.len(), 400);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[1], Value::Int(i as i64 + 1), "key {i}");
    }
    let mut reads = Batch::new();
    for i in (0..200).rev() {
        reads.push(key(i), redis::cmd("GET").arg(key(i)).clone());
    }
    let values: Vec<String> =
        redis::from_redis_value(Value::Array(conn.run(&reads).await.unwrap())).unwrap();
    let want: Vec<String> = (0..200).rev().map(|i| (i + 1).to_string()).collect();
    assert_eq!(values, want);
    // A server error fails the batch.
    let mut bad = Batch::new();
    bad.push(key(0), redis::cmd("HGET").arg(key(0)).arg("f").clone());
    assert!(conn.run(&bad).await.is_err(), "WRONGTYPE is an error");
    assert!(conn.run(&Batch::new()).await.unwrap().is_empty());
}

/// The test Redis has no replica and every master of the test cluster has
/// one: `WAIT 1` passes on the cluster, and fails the batch on the node.
async fn wait_counts_the_replicas(target: Target) {
    let conn = Conn::connect(&target, TIMEOUT).await.unwrap();
    let prefix = unique("rim-redis-wait");
    let mut batch = Batch::new();
    for i in 0..20 {
        let key = format!("{prefix}:{{{i}}}");
        batch.push(
            &key,
            redis::cmd("SET").arg(&key).arg(i).arg("EX").arg(60).clone(),
        );
    }
    batch.wait_replicas(1, Duration::from_millis(300));
    let replicated = conn.run(&batch).await;
    let single = conn
        .wait_replicas(format!("{prefix}:{{0}}"), 1, Duration::from_millis(300))
        .await;
    if target.is_cluster() {
        assert_eq!(
            replicated.unwrap().len(),
            20,
            "the WAIT replies are not answers"
        );
        single.unwrap();
    } else {
        let e = replicated.unwrap_err();
        assert!(e.to_string().contains("0 of 1 replicas"), "{e}");
        assert!(single.is_err());
    }
    batch.wait_replicas(0, Duration::ZERO);
    assert_eq!(conn.run(&batch).await.unwrap().len(), 20);
}

async fn scans_and_node_commands_reach_every_master(target: Target) {
    let conn = Conn::connect(&target, TIMEOUT).await.unwrap();
    let prefix = unique("rim-redis-scan");
    let mut batch = Batch::new();
    for i in 0..50 {
        let key = format!("{prefix}:{i}");
        batch.push(
            &key,
            redis::cmd("SET").arg(&key).arg(i).arg("EX").arg(60).clone(),
        );
    }
    conn.run(&batch).await.unwrap();
    let mut found = conn.scan(&format!("{prefix}:*")).await.unwrap();
    found.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("{prefix}:{i}")).collect();
    want.sort();
    assert_eq!(found, want);
    let masters = conn.on_masters(&redis::cmd("PING")).await.unwrap();
    let nodes = conn.on_every_node(&redis::cmd("PING")).await.unwrap();
    if target.is_cluster() {
        assert_eq!((masters.len(), nodes.len()), (3, 6), "{nodes:?}");
    } else {
        assert_eq!((masters.len(), nodes.len()), (1, 1));
    }
}

/// A test that needs the cluster, run where `RIM_TEST_REDIS_CLUSTER` is
/// not set (and no opt-out), fails and says what is missing.
#[test]
fn a_cluster_test_without_the_cluster_fails_loudly() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster::a_batch_over_many_slots_answers_in_order",
        ])
        .env_remove("RIM_TEST_REDIS_CLUSTER")
        .env_remove("RIM_SKIP_SERVICES")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "passed without its cluster:\n{text}");
    assert!(text.contains("RIM_TEST_REDIS_CLUSTER is not set"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}
