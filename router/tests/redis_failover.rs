//! The Redis shard on a Redis Cluster whose master is killed: once its
//! replica took over, sessions are written and found again on every slot,
//! and the sessions replicated before the kill are still there. The cluster
//! is private (rim_testkit::redis_cluster), so the kill disturbs no other
//! test. Sessions are not waited for on replicas: a session lost in a
//! failover is written again by the client's next heartbeat or reconnect.

use std::time::Duration;

use rim_redis::{Conn, Target};
use rim_router::{RedisStore, SessionStore};
use rim_testkit::redis_cluster::RedisCluster;
use rim_testkit::services::unique;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_failover_and_the_store_keeps_working() {
    let mut cluster = RedisCluster::start_for_test(3).await;
    let target = Target::Cluster(cluster.seeds());
    let store =
        RedisStore::with_target(&target, Duration::from_secs(600), Duration::from_secs(2)).unwrap();
    let server = unique("comet");
    let before: Vec<(i64, String)> = (0..60).map(|i| (i, unique(&format!("old{i}")))).collect();
    for (mid, key) in &before {
        store.set_key(key, &server).await.unwrap();
        store.add_mid_key(*mid, key, &server).await.unwrap();
    }
    // Make sure the replicas have them: the kill must not race replication.
    let raw = Conn::connect(&target, Duration::from_secs(5))
        .await
        .unwrap();
    for (_, acked) in raw
        .on_masters(redis::cmd("WAIT").arg(1).arg(2000))
        .await
        .unwrap()
    {
        assert_eq!(acked, redis::Value::Int(1));
    }

    let (master, replica) = cluster.master_and_replica_of("mid_0").unwrap();
    cluster.kill(master).unwrap();
    let killed = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster
            .wait_master(replica, Duration::from_secs(30))
            .map(|()| cluster)
    })
    .await
    .unwrap()
    .expect("the replica takes over");

    // New sessions on every slot work again within a deadline.
    let after: Vec<(i64, String)> = (100..160)
        .map(|i| (i, unique(&format!("new{i}"))))
        .collect();
    loop {
        let mut ok = true;
        for (mid, key) in &after {
            ok &= store.set_key(key, &server).await.is_ok()
                && store.add_mid_key(*mid, key, &server).await.is_ok();
        }
        if ok {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the store did not recover"
        );
    }
    for sessions in [&before, &after] {
        let mids: Vec<i64> = sessions.iter().map(|(mid, _)| *mid).collect();
        let keys: Vec<String> = sessions.iter().map(|(_, key)| key.clone()).collect();
        let mut got = store.get_mids(&mids).await.unwrap();
        got.sort();
        let mut want: Vec<(String, String)> =
            keys.iter().map(|k| (k.clone(), server.clone())).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(
            store.get_keys(&keys).await.unwrap(),
            vec![Some(server.clone()); keys.len()]
        );
    }
    drop(cluster);
}
