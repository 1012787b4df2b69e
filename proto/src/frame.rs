//! [`Frame`]: one goim frame, and its byte encoding.
//!
//! ```text
//! offset size field      (all big-endian)
//!      0    4 packLen    16 + body length
//!      4    2 headerLen  always 16
//!      6    2 ver
//!      8    4 op
//!     12    4 seq
//!     16    n body
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{pb, Op, ProtoError};

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 16;
/// goim v2's maximum client body (`MaxBodySize`, 4096 bytes).
pub const MAX_BODY_DEFAULT: usize = 4096;
/// `ver` of server-originated pushes (goim v2's job uses 1).
pub const PUSH_VER: i16 = 1;

/// One goim frame.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frame {
    /// Protocol version; never validated, echoed in replies.
    pub ver: i16,
    /// Operation code (see [`Op`]).
    pub op: i32,
    /// Client-chosen sequence id, echoed in replies.
    pub seq: i32,
    /// Opaque payload.
    pub body: Bytes,
}

/// The fields of a validated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) body_len: usize,
    pub(crate) ver: i16,
    pub(crate) op: i32,
    pub(crate) seq: i32,
}

impl Header {
    /// Reads and validates the 16 header bytes at the start of `buf`.
    /// `buf` must hold at least [`HEADER_LEN`] bytes.
    pub(crate) fn parse(mut buf: &[u8], max_body: usize) -> Result<Header, ProtoError> {
        if buf.len() < HEADER_LEN {
            return Err(ProtoError::Truncated(buf.len()));
        }
        let pack_len = buf.get_i32();
        let header_len = buf.get_i16();
        let ver = buf.get_i16();
        let op = buf.get_i32();
        let seq = buf.get_i32();
        if header_len != HEADER_LEN as i16 {
            return Err(ProtoError::HeaderLen(header_len));
        }
        if pack_len < HEADER_LEN as i32 {
            return Err(ProtoError::PackLen(pack_len));
        }
        // pack_len >= 16 here, so the subtraction and cast are exact.
        let body_len = (pack_len as usize) - HEADER_LEN;
        if body_len > max_body {
            return Err(ProtoError::BodyTooLarge {
                len: body_len,
                max: max_body,
            });
        }
        Ok(Header {
            body_len,
            ver,
            op,
            seq,
        })
    }
}

impl Frame {
    /// A frame with the given fields.
    pub fn new(ver: i16, op: impl Into<i32>, seq: i32, body: impl Into<Bytes>) -> Frame {
        Frame {
            ver,
            op: op.into(),
            seq,
            body: body.into(),
        }
    }

    /// A reply to this frame: same `ver` and `seq`, the given op and body.
    pub fn reply(&self, op: Op, body: Bytes) -> Frame {
        Frame {
            ver: self.ver,
            op: op.code(),
            seq: self.seq,
            body,
        }
    }

    /// The frame's operation as an [`Op`].
    pub fn op(&self) -> Op {
        Op::from(self.op)
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the encoded frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        put_header(dst, self.body.len(), self.ver, self.op, self.seq);
        dst.put_slice(&self.body);
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut dst);
        dst.freeze()
    }

    /// Decodes a buffer that must hold exactly one frame (a WebSocket message).
    pub fn decode_exact(mut buf: Bytes, max_body: usize) -> Result<Frame, ProtoError> {
        let header = Header::parse(&buf, max_body)?;
        let declared = HEADER_LEN + header.body_len;
        if declared != buf.len() {
            return Err(ProtoError::LengthMismatch {
                declared,
                actual: buf.len(),
            });
        }
        buf.advance(HEADER_LEN);
        Ok(Frame {
            ver: header.ver,
            op: header.op,
            seq: header.seq,
            body: buf,
        })
    }

    /// Iterates over the frames concatenated in `buf` (the body of an op 9
    /// frame, or a TCP stream chunk holding whole frames). No body limit.
    pub fn batch(buf: Bytes) -> BatchIter {
        BatchIter { buf }
    }
}

/// Writes a 16-byte header for a body of `body_len` bytes.
pub(crate) fn put_header(dst: &mut BytesMut, body_len: usize, ver: i16, op: i32, seq: i32) {
    // Server-side bodies are bounded far below 2 GiB by every producer in rim
    // (HTTP body limit); saturate instead of wrapping if that ever changes.
    let pack_len = i32::try_from(HEADER_LEN + body_len).unwrap_or(i32::MAX);
    dst.put_i32(pack_len);
    dst.put_i16(HEADER_LEN as i16);
    dst.put_i16(ver);
    dst.put_i32(op);
    dst.put_i32(seq);
}

/// Encodes a server push as goim's job does: `{ver 1, op, seq 0, body}`.
pub fn encode_raw_push(op: i32, body: &[u8]) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN + body.len());
    put_header(&mut dst, body.len(), PUSH_VER, op, 0);
    dst.put_slice(body);
    dst.freeze()
}

/// Iterator over concatenated frames; see [`Frame::batch`].
#[derive(Debug)]
pub struct BatchIter {
    buf: Bytes,
}

impl Iterator for BatchIter {
    type Item = Result<Frame, ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let header = match Header::parse(&self.buf, usize::MAX) {
            Ok(h) => h,
            Err(e) => {
                self.buf.clear();
                return Some(Err(e));
            }
        };
        let total = HEADER_LEN + header.body_len;
        if self.buf.len() < total {
            let actual = self.buf.len();
            self.buf.clear();
            return Some(Err(ProtoError::LengthMismatch {
                declared: total,
                actual,
            }));
        }
        let mut frame = self.buf.split_to(total);
        frame.advance(HEADER_LEN);
        Some(Ok(Frame {
            ver: header.ver,
            op: header.op,
            seq: header.seq,
            body: frame,
        }))
    }
}

impl From<pb::protocol::Proto> for Frame {
    /// Only the low 16 bits of `ver` go on the wire, as in goim.
    fn from(p: pb::protocol::Proto) -> Frame {
        Frame {
            ver: p.ver as i16,
            op: p.op,
            seq: p.seq,
            body: p.body,
        }
    }
}

impl From<Frame> for pb::protocol::Proto {
    fn from(f: Frame) -> pb::protocol::Proto {
        pb::protocol::Proto {
            ver: i32::from(f.ver),
            op: f.op,
            seq: f.seq,
            body: f.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_push_matches_goim_bytes() {
        // goim's bytes for a keyed push of "hi" with operation 1000, as a TCP
        // client gets it: {ver 1, op 1000, seq 0, "hi"}.
        let bytes = encode_raw_push(1000, b"hi");
        assert_eq!(
            &bytes[..],
            &[0, 0, 0, 0x12, 0, 0x10, 0, 1, 0, 0, 0x03, 0xE8, 0, 0, 0, 0, b'h', b'i']
        );
    }

    #[test]
    fn ws_wrapped_push_matches_goim_bytes() {
        let inner = encode_raw_push(1000, b"hi");
        let outer = Frame::new(PUSH_VER, Op::Raw, 0, inner.clone()).to_bytes();
        assert_eq!(outer.len(), 34);
        assert_eq!(
            &outer[..16],
            &[0, 0, 0, 0x22, 0, 0x10, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(&outer[16..], &inner[..]);
    }

    #[test]
    fn decode_exact_rejects_length_mismatch() {
        let mut bytes = BytesMut::from(&encode_raw_push(1000, b"hi")[..]);
        bytes.put_u8(0);
        let err = Frame::decode_exact(bytes.freeze(), 4096).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::LengthMismatch {
                declared: 18,
                actual: 19
            }
        ));
        let short = encode_raw_push(1000, b"hi").slice(..17);
        assert!(matches!(
            Frame::decode_exact(short, 4096),
            Err(ProtoError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Frame::decode_exact(Bytes::from_static(&[0, 0, 0]), 4096),
            Err(ProtoError::Truncated(3))
        ));
    }

    #[test]
    fn batch_iterates_room_capture() {
        // As captured from goim (docs/protocol.md, "Test vectors"): three room
        // pushes arrive as one 54-byte TCP write, frames back to back.
        let mut all = BytesMut::new();
        for body in [b"m0", b"m1", b"m2"] {
            all.extend_from_slice(&encode_raw_push(1000, body));
        }
        assert_eq!(all.len(), 54);
        let frames: Vec<Frame> = Frame::batch(all.freeze())
            .collect::<Result<_, _>>()
            .unwrap();
        let bodies: Vec<&[u8]> = frames.iter().map(|f| &f.body[..]).collect();
        assert_eq!(bodies, vec![&b"m0"[..], b"m1", b"m2"]);
        assert!(frames
            .iter()
            .all(|f| f.op == 1000 && f.seq == 0 && f.ver == 1));
    }

    #[test]
    fn pb_conversion_keeps_low_ver_bits() {
        let p = pb::protocol::Proto {
            ver: 0x1_0002,
            op: 9,
            seq: 3,
            body: Bytes::from_static(b"x"),
        };
        let f = Frame::from(p);
        assert_eq!(f.ver, 2);
        let back = pb::protocol::Proto::from(f);
        assert_eq!(back.ver, 2);
    }
}
