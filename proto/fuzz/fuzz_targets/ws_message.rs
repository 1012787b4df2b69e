//! The WebSocket path: one binary message is one frame (`Frame::decode_exact`),
//! and an op 9 body holds concatenated frames (`Frame::batch`).
//!
//! Input: `max_body` (u16 BE), then the message.
//! Asserts: nothing panics; `decode_exact` accepts exactly the messages whose
//! valid header announces their exact length (body within `max_body`), and
//! re-encodes to the same bytes; `batch` yields frames that re-encode to a
//! prefix of its input and stops after its first error.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rim_proto::{Frame, HEADER_LEN};

/// Whether `msg` is one well-formed frame, computed from the frame rules of
/// docs/protocol.md ("Frame"), not from rim's decoder.
fn is_exact_frame(msg: &[u8], max_body: usize) -> bool {
    if msg.len() < HEADER_LEN {
        return false;
    }
    let pack_len = i32::from_be_bytes([msg[0], msg[1], msg[2], msg[3]]);
    let header_len = i16::from_be_bytes([msg[4], msg[5]]);
    header_len == 16
        && pack_len >= 16
        && usize::try_from(pack_len).is_ok_and(|n| n == msg.len() && n - HEADER_LEN <= max_body)
}

/// Checks `Frame::batch` over `buf`.
fn check_batch(buf: &Bytes) {
    let mut offset = 0;
    let mut iter = Frame::batch(buf.clone());
    for item in iter.by_ref() {
        match item {
            Ok(frame) => {
                let bytes = frame.to_bytes();
                assert_eq!(&bytes[..], &buf[offset..offset + bytes.len()]);
                offset += bytes.len();
            }
            Err(_) => break,
        }
    }
    assert!(iter.next().is_none(), "batch continued after an error");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_body = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let msg = Bytes::copy_from_slice(&data[2..]);
    match Frame::decode_exact(msg.clone(), max_body) {
        Ok(frame) => {
            assert!(is_exact_frame(&msg, max_body), "accepted a bad message");
            assert!(frame.body.len() <= max_body);
            assert_eq!(frame.to_bytes(), msg);
            // What a WebSocket client does with an op 9 push.
            if frame.op == 9 {
                check_batch(&frame.body);
            }
        }
        Err(_) => assert!(!is_exact_frame(&msg, max_body), "refused a good message"),
    }
    check_batch(&msg);
});
