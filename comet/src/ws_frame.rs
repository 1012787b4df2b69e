//! The WebSocket frames the server writes (RFC 6455 section 5): binary
//! messages carrying goim frames, and control frames. Server frames are never
//! masked, so a push's message is encoded once ([`binary`]) and the same bytes
//! go to every WebSocket recipient. Reading client frames is
//! `conn::ws::codec`'s.

use bytes::{BufMut, Bytes, BytesMut};
use rim_proto::Frame;
use tokio_tungstenite::tungstenite;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// A buffer holding an unmasked, final frame header for `len` payload bytes
/// (encoded by tungstenite's `FrameHeader`), with room for the payload.
fn with_header(opcode: OpCode, len: usize) -> BytesMut {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let len64 = len as u64;
    let mut dst = BytesMut::with_capacity(header.len(len64) + len);
    // Writing into memory cannot fail.
    let _ = header.format(len64, &mut (&mut dst).writer());
    dst
}

/// One goim frame as a binary message (how the server sends every reply and
/// push).
pub(crate) fn binary(frame: &Frame) -> Bytes {
    let mut dst = with_header(OpCode::Data(Data::Binary), frame.encoded_len());
    frame.encode(&mut dst);
    dst.freeze()
}

/// A control frame from the server (pong, close); `payload` is at most 125
/// bytes.
pub(crate) fn control(control: Control, payload: &[u8]) -> Bytes {
    let mut dst = with_header(OpCode::Control(control), payload.len());
    dst.put_slice(payload);
    dst.freeze()
}

/// A close frame with `code` and a short `reason`.
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    // A close payload is at most 125 bytes (2 for the code).
    let reason = reason.as_bytes();
    payload.extend_from_slice(&reason[..reason.len().min(123)]);
    control(Control::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_are_unmasked_with_the_shortest_length() {
        let frame = Frame::new(1, rim_proto::Op::AuthReply, 1, Bytes::new());
        let bytes = binary(&frame);
        assert_eq!(&bytes[..2], &[0x82, 16]);
        assert_eq!(&bytes[2..], &frame.to_bytes()[..]);
        let big = Frame::new(1, rim_proto::Op::Raw, 0, Bytes::from(vec![0; 200]));
        let bytes = binary(&big);
        assert_eq!(&bytes[..4], &[0x82, 126, 0, 216]);
        assert_eq!(bytes.len(), 4 + 216);
        assert_eq!(&control(Control::Pong, b"hi")[..], &[0x8a, 2, b'h', b'i']);
        let close = close_frame(1001, &"x".repeat(200));
        assert_eq!(&close[..4], &[0x88, 125, 0x03, 0xe9]);
        assert_eq!(close.len(), 127);
    }
}
