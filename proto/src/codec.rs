//! [`FrameCodec`]: goim frames over a byte stream (TCP), for `tokio_util`.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::Header;
use crate::{Frame, ProtoError, HEADER_LEN, MAX_BODY_DEFAULT};

/// Decodes and encodes goim frames, refusing bodies over `max_body` and
/// malformed headers: header length not 16 (goim refuses it too) and packet
/// length below 16, negative included (goim reads those as an empty body;
/// docs/protocol.md, "Frame").
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_body: usize,
}

impl FrameCodec {
    /// A codec accepting bodies up to `max_body` bytes.
    pub fn new(max_body: usize) -> FrameCodec {
        FrameCodec { max_body }
    }

    /// The largest body this codec accepts.
    pub fn max_body(&self) -> usize {
        self.max_body
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(MAX_BODY_DEFAULT)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtoError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = Header::parse(&src[..HEADER_LEN], self.max_body)?;
        let total = HEADER_LEN + header.body_len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(header.body_len).freeze();
        Ok(Some(Frame {
            ver: header.ver,
            op: header.op,
            seq: header.seq,
            body,
        }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        frame.encode(dst);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtoError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtoError> {
        frame.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes};
    use proptest::prelude::*;

    fn header(pack_len: i32, header_len: i16, ver: i16, op: i32, seq: i32) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(pack_len);
        b.put_i16(header_len);
        b.put_i16(ver);
        b.put_i32(op);
        b.put_i32(seq);
        b
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Frame>, ProtoError> {
        let mut codec = FrameCodec::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    #[test]
    fn auth_capture_decodes() {
        // The 114-byte TCP auth frame captured from goim (docs/protocol.md,
        // "Test vectors").
        let token = br#"{"mid":1001,"key":"tcp-key-1","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}"#;
        let mut bytes = header(114, 16, 1, 7, 1);
        bytes.extend_from_slice(token);
        let frames = decode_all(&bytes, 4096).unwrap();
        assert_eq!(frames, vec![Frame::new(1, 7, 1, Bytes::from_static(token))]);
    }

    #[test]
    fn heartbeat_reply_capture_encodes() {
        let req = Frame::new(1, 2, 2, Bytes::new());
        let reply = req.reply(crate::Op::HeartbeatReply, Bytes::from_static(&[0, 0, 0, 1]));
        let mut out = BytesMut::new();
        FrameCodec::default().encode(reply, &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0, 0, 0, 0x14, 0, 0x10, 0, 1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1]
        );
    }

    #[test]
    fn partial_input_waits_for_more() {
        let frame = Frame::new(1, 4, 7, Bytes::from_static(b"hello-up")).to_bytes();
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        for (i, byte) in frame.iter().enumerate() {
            buf.put_u8(*byte);
            let got = codec.decode(&mut buf).unwrap();
            if i + 1 < frame.len() {
                assert!(got.is_none(), "decoded early at byte {i}");
            } else {
                assert_eq!(got.unwrap().body, Bytes::from_static(b"hello-up"));
            }
        }
    }

    // Every malformed header case (docs/protocol.md, "Frame").

    #[test]
    fn header_len_not_16_is_rejected() {
        // Capture: headerLen 15 -> goim closes.
        let err = decode_all(&header(16, 15, 1, 7, 1), 4096).unwrap_err();
        assert!(matches!(err, ProtoError::HeaderLen(15)));
        let err = decode_all(&header(16, 17, 1, 7, 1), 4096).unwrap_err();
        assert!(matches!(err, ProtoError::HeaderLen(17)));
        let err = decode_all(&header(16, 0, 1, 7, 1), 4096).unwrap_err();
        assert!(matches!(err, ProtoError::HeaderLen(0)));
    }

    #[test]
    fn negative_pack_len_is_rejected() {
        // goim v2 TCP does not check this; rim does.
        let err = decode_all(&header(-1, 16, 1, 7, 1), 4096).unwrap_err();
        assert!(matches!(err, ProtoError::PackLen(-1)));
        let err = decode_all(&header(i32::MIN, 16, 1, 7, 1), 4096).unwrap_err();
        assert!(matches!(err, ProtoError::PackLen(i32::MIN)));
    }

    #[test]
    fn pack_len_below_header_is_rejected() {
        for len in [0, 1, 15] {
            let err = decode_all(&header(len, 16, 1, 2, 1), 4096).unwrap_err();
            assert!(matches!(err, ProtoError::PackLen(l) if l == len));
        }
    }

    #[test]
    fn body_over_limit_is_rejected_before_it_arrives() {
        // packLen 4113 = 16 + 4097: over goim's 4096 limit; only the header is sent.
        let err = decode_all(&header(4113, 16, 1, 4, 1), 4096).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::BodyTooLarge {
                len: 4097,
                max: 4096
            }
        ));
        let err = decode_all(&header(i32::MAX, 16, 1, 4, 1), 4096).unwrap_err();
        assert!(matches!(err, ProtoError::BodyTooLarge { .. }));
    }

    #[test]
    fn body_at_limit_is_accepted() {
        let frame = Frame::new(1, 4, 1, Bytes::from(vec![7u8; 4096]));
        let frames = decode_all(&frame.to_bytes(), 4096).unwrap();
        assert_eq!(frames, vec![frame]);
    }

    #[test]
    fn ver_is_not_validated() {
        for ver in [0, 1, 102, -1, i16::MAX] {
            let frames = decode_all(&header(16, 16, ver, 2, 3), 4096).unwrap();
            assert_eq!(frames[0].ver, ver);
        }
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(
            (any::<i16>(), any::<i32>(), any::<i32>(), proptest::collection::vec(any::<u8>(), 0..600)),
            0..8,
        ), split in 0usize..5000) {
            let frames: Vec<Frame> = frames
                .into_iter()
                .map(|(ver, op, seq, body)| Frame::new(ver, op, seq, body))
                .collect();
            let mut wire = BytesMut::new();
            let mut codec = FrameCodec::new(4096);
            for f in &frames {
                codec.encode(f, &mut wire).unwrap();
            }
            // Feed the stream in two arbitrary pieces.
            let split = split.min(wire.len());
            let mut buf = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut codec = FrameCodec::new(64);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = codec.decode(&mut buf) {
                prop_assert!(frame.body.len() <= 64);
            }
            let _ = Frame::decode_exact(Bytes::from(bytes.clone()), 64);
            for f in Frame::batch(Bytes::from(bytes)) {
                if f.is_err() { break; }
            }
        }
    }
}
