//! [`Push`]: one server push, encoded once and shared by every recipient.
//!
//! goim's job hands the comet a `goim.protocol.Proto`. When its op is 9 (Raw),
//! the body already holds complete frames: TCP clients get those bytes
//! verbatim, WebSocket clients get the proto as one op 9 frame (docs/protocol.md, "Pushes").
//! Any other op is encoded as a normal frame for both transports.

use std::sync::Arc;

use bytes::Bytes;
use rim_proto::pb::protocol::Proto;
use rim_proto::{Frame, Op};

use crate::metrics;
use crate::ws_frame;

/// The encoded bytes of one push, for each transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Push {
    /// Written to TCP sessions.
    pub(crate) tcp: Bytes,
    /// Written to WebSocket sessions: one binary message (the WebSocket
    /// frame header included), the same bytes for every recipient.
    pub(crate) ws: Bytes,
}

impl Push {
    /// Encodes `proto` once; the result is shared by `Arc` among recipients.
    pub(crate) fn encode(proto: Proto) -> Arc<Push> {
        let push = if proto.op == Op::Raw.code() {
            // Only the low 16 bits of `ver` go on the wire (goim keeps int32).
            let ws = ws_frame::binary(&Frame::new(
                proto.ver as i16,
                Op::Raw,
                0,
                proto.body.clone(),
            ));
            Push {
                tcp: proto.body,
                ws,
            }
        } else {
            // One buffer: the WebSocket header, then the frame TCP gets.
            let frame = Frame::from(proto);
            let ws = ws_frame::binary(&frame);
            Push {
                tcp: ws.slice(ws.len() - frame.encoded_len()..),
                ws,
            }
        };
        Arc::new(push)
    }
}

/// What happened to one push offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueue {
    /// The message is queued for the writer.
    Queued,
    /// The session does not accept this op (keyed and broadcast pushes only).
    NotAccepted,
    /// The session is closing; the message was dropped (the caller counts it).
    Closed,
    /// The queue was full: the session is now closed as a slow client; the
    /// lost messages are already logged and counted.
    Overflow,
    /// An IM session's gate took the stored frame: held for a running sync,
    /// dropped as a seq already sent, or left in the mailbox (counted as
    /// `rim_comet_im_stored_frames_total`).
    Merged,
}

/// Outcome counts of one fan-out, recorded once when it ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fanout {
    /// Messages queued.
    pub(crate) queued: u64,
    /// Recipients that do not accept the op.
    pub(crate) filtered: u64,
    /// Recipients already closing (message dropped).
    pub(crate) closed: u64,
    /// Recipients disconnected as slow clients (logged and counted already).
    pub(crate) overflowed: u64,
}

impl Fanout {
    /// Adds one recipient's outcome.
    pub(crate) fn add(&mut self, outcome: Enqueue) {
        match outcome {
            Enqueue::Queued => self.queued += 1,
            Enqueue::NotAccepted => self.filtered += 1,
            Enqueue::Closed => self.closed += 1,
            Enqueue::Overflow => self.overflowed += 1,
            Enqueue::Merged => {}
        }
    }

    /// Records the counts under `kind` (`keys`, `broadcast`, `room`).
    pub(crate) fn record(&self, kind: &'static str) {
        if self.queued > 0 {
            ::metrics::counter!(metrics::ENQUEUED_MESSAGES, "kind" => kind).increment(self.queued);
        }
        if self.filtered > 0 {
            ::metrics::counter!(metrics::FILTERED_MESSAGES, "kind" => kind)
                .increment(self.filtered);
        }
        if self.closed > 0 {
            tracing::debug!(
                kind,
                recipients = self.closed,
                "push dropped for sessions that are closing"
            );
            metrics::dropped(metrics::DROP_SESSION_CLOSED, self.closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rim_proto::encode_raw_push;

    #[test]
    fn raw_push_is_bare_on_tcp_and_wrapped_on_ws() {
        // goim's bytes for a keyed push of "hi", operation 1000
        // (docs/protocol.md, "Test vectors").
        let inner = encode_raw_push(1000, b"hi");
        let push = Push::encode(Proto {
            ver: 1,
            op: 9,
            seq: 0,
            body: inner.clone(),
        });
        assert_eq!(push.tcp, inner);
        // A binary WebSocket message of 34 bytes: one op 9 frame.
        assert_eq!(push.ws.len(), 2 + 34);
        assert_eq!(&push.ws[..2], &[0x82, 34]);
        assert_eq!(
            &push.ws[2..18],
            &[0, 0, 0, 0x22, 0, 0x10, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(&push.ws[18..], &inner[..]);
    }

    #[test]
    fn other_ops_are_one_frame_for_both() {
        let push = Push::encode(Proto {
            ver: 1,
            op: 1000,
            seq: 5,
            body: Bytes::from_static(b"hi"),
        });
        assert_eq!(&push.ws[..2], &[0x82, 18]);
        assert_eq!(push.tcp, push.ws[2..]);
        assert_eq!(
            &push.tcp[..],
            &[0, 0, 0, 0x12, 0, 0x10, 0, 1, 0, 0, 0x03, 0xE8, 0, 0, 0, 5, b'h', b'i']
        );
    }
}
