//! Stored appends per second through [`RedbStore`]: concurrent producers,
//! each appending one entry at a time to its own mailbox and waiting for the
//! durable answer, as logic does per stored push. Group commit is what makes
//! more producers faster.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rim_mailbox::{Entry, MailboxConfig, MailboxStore, MsgId, RedbStore};
use tokio::time::Instant;

/// Appends per measured round, over all producers.
const ROUND: usize = 2048;

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        runtime
            .block_on(RedbStore::open(dir.path(), MailboxConfig::default()))
            .unwrap(),
    );
    let body = Bytes::from(vec![b'x'; 200]);
    let mut group = c.benchmark_group("redb_append");
    group.throughput(Throughput::Elements(ROUND as u64));
    group.sample_size(10);
    for producers in [1, 16, 64, 256] {
        group.bench_with_input(
            BenchmarkId::from_parameter(producers),
            &producers,
            |b, &producers| {
                b.iter_custom(|rounds| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..rounds {
                            let mut tasks = Vec::with_capacity(producers);
                            for p in 0..producers {
                                let store = Arc::clone(&store);
                                let body = body.clone();
                                tasks.push(tokio::spawn(async move {
                                    for _ in 0..ROUND / producers {
                                        let entry = Entry {
                                            mid: p as i64,
                                            id: MsgId::generate(),
                                            op: 1000,
                                            from: 0,
                                            ts_ms: 0,
                                            body: body.clone(),
                                            dedupe: true,
                                        };
                                        store.append(vec![entry]).await.unwrap();
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
            },
        );
    }
    group.finish();
}

/// One producer appending batches of 256 entries over 256 mailboxes, as
/// the job does with a polled Kafka batch: the writer's cost per entry
/// without waiting for producers.
fn append_batched(c: &mut Criterion) {
    const BATCH: usize = 256;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime
        .block_on(RedbStore::open(dir.path(), MailboxConfig::default()))
        .unwrap();
    let body = Bytes::from(vec![b'x'; 200]);
    let mut group = c.benchmark_group("redb_append_batched");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(BATCH), |b| {
        b.iter(|| {
            let batch = (0..BATCH)
                .map(|mid| Entry {
                    mid: mid as i64,
                    id: MsgId::generate(),
                    op: 1000,
                    from: 0,
                    ts_ms: 0,
                    body: body.clone(),
                    dedupe: true,
                })
                .collect();
            runtime.block_on(store.append(batch)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, append, append_batched);
criterion_main!(benches);
