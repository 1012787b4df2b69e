//! Mailbox appends per second through [`RedisStore`], on one Redis and on
//! a Redis Cluster (the suite's, `RIM_TEST_REDIS` and
//! `RIM_TEST_REDIS_CLUSTER` from `scripts/services.sh env`; a missing one
//! is skipped with a note): 64 producers appending one entry at a time to
//! their own mailboxes (logic's and job's per-message path), and one
//! producer appending batches of 256 entries over 256 mailboxes (job's
//! path for a polled Kafka batch). On the cluster also with
//! `wait_replicas(1)`: each pipeline waits for a replica. 200-byte bodies.
//! docs/benchmark.md ("Redis Cluster") has figures and the command.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rim_mailbox::{Entry, MailboxConfig, MailboxStore, MsgId, RedisStore};
use rim_redis::Target;
use tokio::time::Instant;

/// Appends per measured round, over all producers.
const ROUND: usize = 2048;
const PRODUCERS: usize = 64;
const BATCH: usize = 256;

fn targets() -> Vec<(&'static str, Target, u32)> {
    let mut out = Vec::new();
    match std::env::var("RIM_TEST_REDIS") {
        Ok(url) if !url.is_empty() => out.push(("node", Target::Node(url), 0)),
        _ => eprintln!("RIM_TEST_REDIS not set: no single-node figures"),
    }
    match std::env::var("RIM_TEST_REDIS_CLUSTER") {
        Ok(seeds) if !seeds.is_empty() => {
            let seeds: Vec<String> = seeds.split(',').map(str::to_owned).collect();
            out.push(("cluster", Target::Cluster(seeds.clone()), 0));
            out.push(("cluster_wait1", Target::Cluster(seeds), 1));
        }
        _ => eprintln!("RIM_TEST_REDIS_CLUSTER not set: no cluster figures"),
    }
    out
}

fn entry(mid: i64, body: &Bytes) -> Entry {
    Entry {
        mid,
        id: MsgId::generate(),
        op: 1000,
        from: 0,
        ts_ms: 0,
        body: body.clone(),
        dedupe: true,
    }
}

fn store(runtime: &tokio::runtime::Runtime, target: &Target, replicas: u32) -> Arc<RedisStore> {
    let prefix = format!("rim-bench-{}:", MsgId::generate());
    // Short lives: the bench writes a million keys into the suite's Redis.
    let config = MailboxConfig {
        idle_ttl: Duration::from_secs(60),
        meta_ttl: Duration::from_secs(60),
        idempotency_window: Duration::from_secs(60),
        ..MailboxConfig::default()
    };
    let store = runtime
        .block_on(RedisStore::connect_to(
            target,
            &prefix,
            config,
            Duration::from_secs(5),
        ))
        .unwrap()
        .wait_replicas(replicas, Duration::from_secs(1));
    Arc::new(store)
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body = Bytes::from(vec![b'x'; 200]);
    let mut group = c.benchmark_group("redis_append");
    group.throughput(Throughput::Elements(ROUND as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, target, replicas) in targets() {
        let store = store(&runtime, &target, replicas);
        group.bench_function(BenchmarkId::new(name, PRODUCERS), |b| {
            b.iter_custom(|rounds| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..rounds {
                        let mut tasks = Vec::with_capacity(PRODUCERS);
                        for p in 0..PRODUCERS {
                            let store = Arc::clone(&store);
                            let body = body.clone();
                            tasks.push(tokio::spawn(async move {
                                for _ in 0..ROUND / PRODUCERS {
                                    store.append(vec![entry(p as i64, &body)]).await.unwrap();
                                }
                            }));
                        }
                        for task in tasks {
                            task.await.unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn append_batched(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body = Bytes::from(vec![b'x'; 200]);
    let mut group = c.benchmark_group("redis_append_batched");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, target, replicas) in targets() {
        let store = store(&runtime, &target, replicas);
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| {
                let batch = (0..BATCH).map(|mid| entry(mid as i64, &body)).collect();
                runtime.block_on(store.append(batch)).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, append_batched);
criterion_main!(benches);
