//! WebSocket framing after the upgrade (RFC 6455 section 5), on rim's own
//! buffers: client frames are parsed with tungstenite's [`FrameHeader`],
//! checked, unmasked and reassembled here ([`WsCodec`]). Server frames are
//! written by `crate::ws_frame`.
//!
//! Owning this layer (rather than keeping a tungstenite stream per
//! connection) is what lets an idle WebSocket connection hold no read or
//! write buffer, like a TCP one (docs/benchmark.md).

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use tokio_tungstenite::tungstenite;
use tokio_util::codec::Decoder;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::conn::CloseReason;

/// Largest payload of a control frame (5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// What a client sent, as the connection sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsIn {
    /// A complete binary or text message (text already checked for UTF-8).
    Message(Bytes),
    /// A ping; its payload goes back in the pong.
    Ping(Bytes),
    /// A close frame: its status code, if it had one.
    Close(Option<u16>),
}

/// A client frame that breaks RFC 6455; the connection is failed with the
/// close code of [`WsError::close_code`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("client frame not masked")]
    Unmasked,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("control frame payload of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new message before the fragmented one was finished")]
    ExpectedContinuation,
    #[error("text message is not valid utf-8")]
    InvalidUtf8,
    #[error("message of {size} bytes or more (at most {max})")]
    TooLarge { size: u64, max: usize },
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    #[error("close frame with status code {0}, which a client may not send")]
    CloseCodeInvalid(u16),
    #[error("invalid frame header: {0}")]
    Header(tungstenite::Error),
}

impl WsError {
    /// The close code that tells the client why (7.4.1).
    pub(crate) fn close_code(&self) -> CloseCode {
        match self {
            WsError::TooLarge { .. } => CloseCode::Size,
            WsError::InvalidUtf8 => CloseCode::Invalid,
            _ => CloseCode::Protocol,
        }
    }
}

/// Decodes client frames into [`WsIn`]s: binary and text messages of at
/// most `max_message` bytes (fragments reassembled), pings, and the close.
/// Pongs are dropped.
#[derive(Debug)]
pub(crate) struct WsCodec {
    max_message: usize,
    /// A fragmented message being reassembled: whether it is text, and its
    /// bytes so far. Boxed: rare, and the codec lives in every connection.
    #[allow(clippy::box_collection)]
    partial: Option<Box<(bool, BytesMut)>>,
}

impl WsCodec {
    pub(crate) fn new(max_message: usize) -> WsCodec {
        WsCodec {
            max_message,
            partial: None,
        }
    }

    /// The largest message accepted.
    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }

    /// Checks a parsed header against the codec's state; returns the
    /// payload length, which then fits in memory.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<usize, WsError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::ReservedBits);
        }
        if header.mask.is_none() {
            return Err(WsError::Unmasked);
        }
        let size = match header.opcode {
            OpCode::Control(_) if !header.is_final => return Err(WsError::FragmentedControl),
            OpCode::Control(_) if len > MAX_CONTROL_PAYLOAD => {
                return Err(WsError::ControlTooLong(len))
            }
            OpCode::Control(_) => len,
            OpCode::Data(Data::Continue) => match &self.partial {
                None => return Err(WsError::UnexpectedContinuation),
                Some(partial) => (partial.1.len() as u64).saturating_add(len),
            },
            OpCode::Data(_) if self.partial.is_some() => return Err(WsError::ExpectedContinuation),
            OpCode::Data(_) => len,
        };
        if size > self.max_message as u64 {
            return Err(WsError::TooLarge {
                size,
                max: self.max_message,
            });
        }
        // At most max_message (or 125), so it fits.
        Ok(len as usize)
    }
}

impl Decoder for WsCodec {
    type Item = WsIn;
    type Error = CloseReason;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WsIn>, CloseReason> {
        loop {
            let mut cursor = Cursor::new(&src[..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::InvalidOpcode(op),
                )) => return Err(WsError::ReservedOpcode(op).into()),
                Err(e) => return Err(WsError::Header(e).into()),
            };
            let header_len = cursor.position() as usize;
            let len = self.check(&header, len)?;
            if src.len() < header_len + len {
                src.reserve(header_len + len - src.len());
                return Ok(None);
            }
            let _ = src.split_to(header_len);
            let mut payload = src.split_to(len);
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            let text = match header.opcode {
                OpCode::Control(Control::Ping) => return Ok(Some(WsIn::Ping(payload.freeze()))),
                OpCode::Control(Control::Close) => return close(&payload).map(Some),
                // Unsolicited pongs are allowed and mean nothing (5.5.3);
                // reserved opcodes failed in `parse`.
                OpCode::Control(_) => continue,
                OpCode::Data(Data::Continue) => {
                    let Some(mut partial) = self.partial.take() else {
                        // `check` refused it already.
                        return Err(WsError::UnexpectedContinuation.into());
                    };
                    partial.1.extend_from_slice(&payload);
                    if !header.is_final {
                        self.partial = Some(partial);
                        continue;
                    }
                    let (text, so_far) = *partial;
                    payload = so_far;
                    text
                }
                OpCode::Data(data) => {
                    let text = data == Data::Text;
                    if !header.is_final {
                        self.partial = Some(Box::new((text, payload)));
                        continue;
                    }
                    text
                }
            };
            if text && std::str::from_utf8(&payload).is_err() {
                return Err(WsError::InvalidUtf8.into());
            }
            return Ok(Some(WsIn::Message(payload.freeze())));
        }
    }
}

/// Parses a close frame's payload: empty, or a status code a client may
/// send followed by a UTF-8 reason (5.5.1, 7.4).
fn close(payload: &[u8]) -> Result<WsIn, CloseReason> {
    let code = match payload {
        [] => return Ok(WsIn::Close(None)),
        [_] => return Err(WsError::CloseTooShort.into()),
        [hi, lo, reason @ ..] => {
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::InvalidUtf8.into());
            }
            u16::from_be_bytes([*hi, *lo])
        }
    };
    if !CloseCode::from(code).is_allowed() {
        return Err(WsError::CloseCodeInvalid(code).into());
    }
    Ok(WsIn::Close(Some(code)))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn decode_all(codec: &mut WsCodec, bytes: &[u8]) -> Vec<WsIn> {
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut src).unwrap() {
            out.push(item);
        }
        assert!(src.is_empty());
        out
    }

    #[test]
    fn messages_arrive_byte_by_byte() {
        let mut codec = WsCodec::new(1000);
        let wire = client_frame(0x82, &[7; 300]);
        let mut src = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            src.put_u8(*byte);
            let item = codec.decode(&mut src).unwrap();
            assert_eq!(item.is_some(), i == wire.len() - 1);
            if let Some(item) = item {
                assert_eq!(item, WsIn::Message(Bytes::from(vec![7; 300])));
            }
        }
    }

    #[test]
    fn fragments_are_joined_around_control_frames() {
        let mut codec = WsCodec::new(1000);
        let mut wire = client_frame(0x01, b"he");
        wire.extend(client_frame(0x89, b"p"));
        wire.extend(client_frame(0x8a, b"unsolicited pong"));
        wire.extend(client_frame(0x00, b"ll"));
        wire.extend(client_frame(0x80, b"o"));
        wire.extend(client_frame(0x88, &[0x03, 0xe8, b'o', b'k']));
        assert_eq!(
            decode_all(&mut codec, &wire),
            [
                WsIn::Ping(Bytes::from_static(b"p")),
                WsIn::Message(Bytes::from_static(b"hello")),
                WsIn::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn violations_have_their_close_codes() {
        let cases: [(&str, Vec<u8>, u16); 7] = [
            (
                "2-byte close code 1005",
                client_frame(0x88, &[0x03, 0xed]),
                1002,
            ),
            ("close code 999", client_frame(0x88, &[0x03, 0xe7]), 1002),
            ("1-byte close", client_frame(0x88, &[3]), 1002),
            (
                "close reason not utf-8",
                client_frame(0x88, &[3, 0xe8, 0xff]),
                1007,
            ),
            (
                "text then binary",
                [client_frame(0x01, b"a"), client_frame(0x82, b"b")].concat(),
                1002,
            ),
            (
                "fragments over the limit",
                [client_frame(0x02, &[0; 600]), client_frame(0x80, &[0; 500])].concat(),
                1009,
            ),
            (
                "text fragments not utf-8",
                [
                    client_frame(0x01, &[0xe2, 0x82]),
                    client_frame(0x80, &[0x28]),
                ]
                .concat(),
                1007,
            ),
        ];
        for (name, wire, code) in cases {
            let mut codec = WsCodec::new(1000);
            let mut src = BytesMut::from(&wire[..]);
            let err = loop {
                match codec.decode(&mut src) {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{name}: accepted"),
                    Err(e) => break e,
                }
            };
            let CloseReason::WsProtocol(e) = err else {
                panic!("{name}: {err}");
            };
            assert_eq!(u16::from(e.close_code()), code, "{name}: {e}");
        }
    }
}
