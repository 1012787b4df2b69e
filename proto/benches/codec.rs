//! Codec micro-benchmarks: decoding client frames and encoding pushes.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rim_proto::{encode_raw_push, Frame, FrameCodec};
use tokio_util::codec::Decoder;

fn decode(c: &mut Criterion) {
    let frame = Frame::new(1, 2, 1, Bytes::new()).to_bytes();
    let mut stream = BytesMut::new();
    for _ in 0..1000 {
        stream.extend_from_slice(&frame);
    }
    let stream = stream.freeze();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("heartbeat_x1000", |b| {
        b.iter(|| {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Ok(Some(_)) = codec.decode(&mut buf) {
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let body = vec![b'x'; 64];
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_push_64b", |b| b.iter(|| encode_raw_push(1000, &body)));
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
