//! Session operations per second through the router's [`RedisStore`], on
//! one Redis and on a Redis Cluster (the suite's, `RIM_TEST_REDIS` and
//! `RIM_TEST_REDIS_CLUSTER` from `scripts/services.sh env`; a missing one
//! is skipped with a note): 64 tasks registering sessions (`set_key` and
//! `add_mid_key`, what a client's connect costs the shards), and lookups of
//! 100 users at once (`get_mids`, a push to 100 mids). docs/benchmark.md
//! ("Redis Cluster") has figures and the command.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rim_redis::Target;
use rim_router::{RedisStore, SessionStore};
use tokio::time::Instant;

/// Sessions registered per measured round, over all tasks.
const ROUND: usize = 2048;
const TASKS: usize = 64;
const MIDS: usize = 100;

fn targets() -> Vec<(&'static str, Target)> {
    let mut out = Vec::new();
    match std::env::var("RIM_TEST_REDIS") {
        Ok(url) if !url.is_empty() => out.push(("node", Target::Node(url))),
        _ => eprintln!("RIM_TEST_REDIS not set: no single-node figures"),
    }
    match std::env::var("RIM_TEST_REDIS_CLUSTER") {
        Ok(seeds) if !seeds.is_empty() => out.push((
            "cluster",
            Target::Cluster(seeds.split(',').map(str::to_owned).collect()),
        )),
        _ => eprintln!("RIM_TEST_REDIS_CLUSTER not set: no cluster figures"),
    }
    out
}

/// Sessions live 60 s: the bench writes 100k of them into the suite's Redis.
fn store(runtime: &tokio::runtime::Runtime, target: &Target) -> Arc<RedisStore> {
    // The connection's background task needs the runtime.
    let _runtime = runtime.enter();
    Arc::new(
        RedisStore::with_target(target, Duration::from_secs(60), Duration::from_secs(5)).unwrap(),
    )
}

fn register(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("redis_register");
    group.throughput(Throughput::Elements(ROUND as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, target) in targets() {
        let store = store(&runtime, &target);
        group.bench_function(BenchmarkId::new(name, TASKS), |b| {
            b.iter_custom(|rounds| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for round in 0..rounds {
                        let mut tasks = Vec::with_capacity(TASKS);
                        for t in 0..TASKS {
                            let store = Arc::clone(&store);
                            tasks.push(tokio::spawn(async move {
                                for i in 0..ROUND / TASKS {
                                    let mid = (t * 100_000 + i) as i64;
                                    let key = format!("rim-bench-{round}-{t}-{i}");
                                    store.set_key(&key, "comet-1").await.unwrap();
                                    store.add_mid_key(mid, &key, "comet-1").await.unwrap();
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

fn lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("redis_get_mids");
    group.throughput(Throughput::Elements(MIDS as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, target) in targets() {
        let store = store(&runtime, &target);
        let mids: Vec<i64> = (0..MIDS as i64).map(|m| 9_000_000 + m).collect();
        runtime.block_on(async {
            for mid in &mids {
                store
                    .add_mid_key(*mid, &format!("rim-bench-{mid}"), "comet-1")
                    .await
                    .unwrap();
            }
        });
        group.bench_function(BenchmarkId::new(name, MIDS), |b| {
            b.iter(|| {
                let found = runtime.block_on(store.get_mids(&mids)).unwrap();
                assert_eq!(found.len(), MIDS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, register, lookup);
criterion_main!(benches);
