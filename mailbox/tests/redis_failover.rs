//! A Redis Cluster master killed mid-traffic: its replica takes over and the
//! store keeps appending, and no append it answered is lost. The cluster is
//! private (rim_testkit::redis_cluster: 3 masters, a replica each, AOF with
//! `appendfsync always`), so killing a node disturbs no other test.
//!
//! The store waits for one replica per write (`wait_replicas(1, ..)`):
//! Redis replicates asynchronously, so without it the old master may have
//! answered writes its replica never got, and the failover loses them. With
//! it, a master without a replica refuses writes; the killed node is started
//! again and rejoins as the new master's replica, after which the writes to
//! its slots go through again.
#![cfg(feature = "redis")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rim_mailbox::{Entry, MailboxConfig, MailboxStore, MsgId, RedisStore};
use rim_redis::Target;
use rim_testkit::redis_cluster::RedisCluster;
use rim_testkit::services::unique;
use tokio::time::Instant;

const WRITERS: i64 = 4;
/// Mailboxes per writer; about a third of them sit on the killed master.
const MIDS: i64 = 30;

/// What one writer got answered: (mid, id) -> seq.
type Answered = BTreeMap<(i64, String), u32>;

/// Appends one entry at a time to its mailboxes in turn until `stop`; an
/// entry that fails is sent again (same id) until it is answered, so
/// nothing is skipped. Answers what was answered, the failed attempts, and
/// the longest time one entry took from first try to answer.
async fn writer(
    store: RedisStore,
    writer: i64,
    stop: Arc<AtomicBool>,
) -> (Answered, u32, Duration) {
    let mut answered = Answered::new();
    let mut failures = 0;
    let mut longest = Duration::ZERO;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mid = writer * 1000 + (n as i64 % MIDS);
        let id = format!("w{writer}-{n}");
        let entry = Entry {
            mid,
            id: MsgId::parse(&id).unwrap(),
            op: 1000,
            from: 0,
            ts_ms: 0,
            body: Bytes::from(id.clone()),
            dedupe: true,
        };
        let started = Instant::now();
        let seq = loop {
            match store.append(vec![entry.clone()]).await {
                Ok(appended) => break appended[0].seq,
                Err(e) => {
                    failures += 1;
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "an append failed for 60 s: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        longest = longest.max(started.elapsed());
        answered.insert((mid, id), seq);
        n += 1;
    }
    (answered, failures, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_and_no_answered_append_is_lost() {
    let mut cluster = RedisCluster::start_for_test(3).await;
    let target = Target::Cluster(cluster.seeds());
    let prefix = format!("{}:", unique("rim-failover"));
    let store = RedisStore::connect_to(
        &target,
        &prefix,
        MailboxConfig::default(),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .wait_replicas(1, Duration::from_secs(1));

    // The victim: the master of writer 0's first mailbox.
    let (master, replica) = cluster
        .master_and_replica_of(&format!("{prefix}{{0}}:m"))
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(store.clone(), w, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let killed = Instant::now();
    cluster.kill(master).unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster
            .wait_master(replica, Duration::from_secs(30))
            .map(|()| cluster)
    })
    .await
    .unwrap()
    .expect("the replica takes over");
    let promoted = killed.elapsed();
    // The new master has no replica: writes to its slots wait (and fail)
    // until the old master is back as its replica.
    let mut cluster = cluster;
    let cluster = tokio::task::spawn_blocking(move || {
        let rejoined = cluster
            .restart(master)
            .and_then(|()| cluster.wait_replica_synced(master, Duration::from_secs(30)));
        rejoined.map(|()| cluster)
    })
    .await
    .unwrap()
    .expect("the old master rejoins as a replica");
    let rejoined = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut answered = Answered::new();
    let mut failures = 0;
    let mut longest = Duration::ZERO;
    for w in writers {
        let (a, f, l) = w.await.unwrap();
        answered.extend(a);
        failures += f;
        longest = longest.max(l);
    }
    // Every answered append is stored, at the seq it was given, and each
    // mailbox holds exactly what was answered (dense, nothing twice).
    let mut per_mid: BTreeMap<i64, BTreeMap<u32, String>> = BTreeMap::new();
    for ((mid, id), seq) in &answered {
        per_mid.entry(*mid).or_default().insert(*seq, id.clone());
    }
    let victims = per_mid
        .keys()
        .filter(|mid| {
            cluster
                .master_and_replica_of(&format!("{prefix}{{{mid}}}:m"))
                .is_ok_and(|(m, _)| m == replica)
        })
        .count();
    assert!(victims > 0, "some mailboxes lived on the killed master");
    for (mid, want) in &per_mid {
        let page = store.read(*mid, 0, 100_000, usize::MAX).await.unwrap();
        let got: BTreeMap<u32, String> = page
            .entries
            .iter()
            .map(|e| (e.seq, e.id.as_str().to_owned()))
            .collect();
        assert_eq!(&got, want, "mailbox {mid}");
        assert_eq!(page.top as usize, want.len(), "mailbox {mid} is dense");
    }
    // Shown with --nocapture; docs/benchmark.md quotes a run.
    println!(
        "failover: {} appends answered over {} mailboxes ({victims} on the killed master), \
         {failures} failed attempts; replica promoted after {promoted:?}, old master \
         back as replica after {rejoined:?}; longest single append {longest:?}; 0 lost",
        answered.len(),
        per_mid.len(),
    );
}
