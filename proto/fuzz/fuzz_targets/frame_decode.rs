//! `FrameCodec` (the TCP path) on arbitrary bytes arriving in arbitrary pieces.
//!
//! Input: `max_body` (u16 BE), a chunking seed (u8), then the stream.
//! Asserts: decoding never panics; every body is at most `max_body`;
//! re-encoding each decoded frame gives exactly the bytes it consumed; and
//! the frames and the error (if any) do not depend on how the stream was cut.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rim_proto::{Frame, FrameCodec};
use tokio_util::codec::Decoder;

/// What a connection sees: the frames, then whether the stream was refused.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    failed: bool,
}

/// Feeds `stream` to a fresh codec in pieces of the given sizes (cycled),
/// checking each decoded frame against the bytes it consumed.
fn decode(stream: &[u8], max_body: usize, pieces: &[usize]) -> Outcome {
    let mut codec = FrameCodec::new(max_body);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut frames = Vec::new();
    let mut sizes = pieces.iter().cycle();
    while fed < stream.len() {
        let n = (*sizes.next().unwrap()).clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.body.len() <= max_body, "body over the limit");
                    let now = fed - buf.len();
                    assert_eq!(&frame.to_bytes()[..], &stream[consumed..now]);
                    consumed = now;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(consumed, fed - buf.len(), "None consumed bytes");
                    break;
                }
                Err(_) => {
                    return Outcome {
                        frames,
                        failed: true,
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        failed: false,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max_body = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let seed = usize::from(data[2]);
    let stream = &data[3..];
    let whole = decode(stream, max_body, &[usize::MAX]);
    let bytewise = decode(stream, max_body, &[1]);
    let uneven = decode(stream, max_body, &[seed % 17 + 1, seed + 1, 3, 16]);
    assert_eq!(whole, bytewise);
    assert_eq!(whole, uneven);
});
