//! Room fan-out: the comet's cost of putting one room message (a batch of
//! `B` messages, as job's room batcher sends) into the queues of `N` member
//! sessions, the work behind `Hub::broadcast_room`. Sessions have no
//! connection here (see `rim_comet::testing`); their queues are emptied
//! between iterations, outside the measured time. What the connection tasks
//! then spend writing is measured end to end by `rim bench room`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rim_comet::testing::{DetachedSession, NoLogic};
use rim_comet::{Comet, Config};
use rim_proto::pb::comet::BroadcastRoomReq;
use rim_proto::pb::protocol::Proto;
use rim_proto::{encode_raw_push, Op, PUSH_VER};

/// A room batch of `batch` 32-byte messages, framed as job frames it.
fn room_request(batch: usize) -> BroadcastRoomReq {
    let mut body = Vec::new();
    for _ in 0..batch {
        body.extend_from_slice(&encode_raw_push(1000, &Bytes::from_static(&[7u8; 32])));
    }
    BroadcastRoomReq {
        room_id: "live://bench".into(),
        proto: Some(Proto {
            ver: PUSH_VER.into(),
            op: Op::Raw.code(),
            seq: 0,
            body: Bytes::from(body),
        }),
    }
}

fn room_fan_out(c: &mut Criterion) {
    let comet = Comet::new(
        Config {
            session_queue: 1 << 20,
            ..Config::default()
        },
        Arc::new(NoLogic),
    )
    .expect("valid config");
    let mut group = c.benchmark_group("broadcast_room");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(20);
    for sessions in [1_000usize, 10_000] {
        let members: Vec<DetachedSession> = (0..sessions)
            .map(|i| {
                DetachedSession::register(comet.hub(), &format!("k{i}"), Some("live://bench"), &[])
            })
            .collect();
        for batch in [1usize, 20] {
            let request = room_request(batch);
            // Deliveries: every session gets every message of the batch.
            group.throughput(Throughput::Elements((sessions * batch) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("batch{batch}"), sessions),
                &request,
                |b, request| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            let start = tokio::time::Instant::now();
                            comet
                                .hub()
                                .broadcast_room(request.clone())
                                .expect("valid request");
                            spent += start.elapsed();
                            for member in &members {
                                member.drain();
                            }
                        }
                        spent
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, room_fan_out);
criterion_main!(benches);
