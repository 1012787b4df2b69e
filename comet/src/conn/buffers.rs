//! The transports' byte buffers, shared by TCP and WebSocket.
//!
//! - [`Reader`]: decodes client frames from a read buffer that exists only
//!   while a frame is arriving. An idle connection (most of them, most of
//!   the time) keeps no read buffer; a frame costs one extra small read
//!   after an idle spell.
//! - [`BufList`]: everything queued for the client, read as one buffer, so a
//!   burst goes out in one vectored write. Pushes are shared `Bytes`, never
//!   copied; with TLS, rustls encrypts from the same slices.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;
use tokio_util::io::{poll_read_buf, poll_write_buf};

/// The read buffer's size once a frame starts arriving; it grows only for
/// larger frames.
const READ_BUFFER: usize = 256;
/// Buffers one vectored write takes.
const MAX_IOVECS: usize = 64;

/// Decodes a byte stream into items with a read buffer that is released
/// whenever it is empty after an item, and sized for a whole small frame
/// once a partial one arrived. While idle it holds at most a few bytes.
#[derive(Debug)]
pub(super) struct Reader<S, C> {
    stream: S,
    codec: C,
    buf: BytesMut,
}

impl<S, C> Reader<S, C> {
    /// `buffered`: bytes already read from `stream` (after an HTTP upgrade).
    pub(super) fn new(stream: S, codec: C, buffered: BytesMut) -> Reader<S, C> {
        Reader {
            stream,
            codec,
            buf: buffered,
        }
    }

    pub(super) fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub(super) fn codec(&self) -> &C {
        &self.codec
    }
}

impl<S: AsyncRead + Unpin, C: Decoder> Reader<S, C>
where
    C::Error: From<io::Error>,
{
    /// The next item; `None` at EOF between items. Cancel-safe: bytes read
    /// stay in the buffer. (A hand-written poll, so the future is no bigger
    /// than a reference: it lives in every idle connection's task.)
    pub(super) fn next(&mut self) -> impl Future<Output = Result<Option<C::Item>, C::Error>> + '_ {
        std::future::poll_fn(move |cx| self.poll_next(cx))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<C::Item>, C::Error>> {
        loop {
            if !self.buf.is_empty() {
                if let Some(item) = self.codec.decode(&mut self.buf)? {
                    if self.buf.is_empty() {
                        // The item may still share the allocation; it is
                        // freed with the item.
                        self.buf = BytesMut::new();
                    }
                    return Poll::Ready(Ok(Some(item)));
                }
                if self.buf.capacity() < READ_BUFFER {
                    self.buf.reserve(READ_BUFFER - self.buf.len());
                }
            }
            self.buf.reserve(1);
            let read = ready!(poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf))?;
            if read == 0 {
                if self.buf.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                let eof = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a frame",
                );
                return Poll::Ready(Err(eof.into()));
            }
        }
    }
}

/// A queue of buffers read as one.
#[derive(Debug, Default)]
pub(super) struct BufList {
    bufs: VecDeque<Bytes>,
    remaining: usize,
}

impl BufList {
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.remaining += bytes.len();
            self.bufs.push_back(bytes);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Writes everything queued, in as few syscalls as the stream allows,
    /// and flushes the stream (TLS may hold records the socket did not
    /// take). Cancel-safe: what was written is gone from the list, the rest
    /// stays for the next call. (A hand-written poll, so the future stays
    /// two references: it lives in a connection's task while a write waits.)
    pub(super) fn write_to<'a, S: AsyncWrite + Unpin>(
        &'a mut self,
        stream: &'a mut S,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        std::future::poll_fn(move |cx| self.poll_write_to(stream, cx))
    }

    fn poll_write_to<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        // A vectored write takes at most MAX_IOVECS buffers; beyond that, one
        // copy into a single buffer still beats several syscalls.
        self.coalesce_over(MAX_IOVECS);
        while self.has_remaining() {
            if ready!(poll_write_buf(Pin::new(&mut *stream), cx, self))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
        ready!(Pin::new(stream).poll_flush(cx))?;
        // Give back the slot array; an idle connection keeps no buffers.
        *self = BufList::default();
        Poll::Ready(Ok(()))
    }

    /// Merges everything into one buffer if there are more than `max` buffers.
    fn coalesce_over(&mut self, max: usize) {
        if self.bufs.len() <= max {
            return;
        }
        let mut merged = BytesMut::with_capacity(self.remaining);
        for bytes in self.bufs.drain(..) {
            merged.extend_from_slice(&bytes);
        }
        self.bufs = VecDeque::from([merged.freeze()]);
    }
}

impl Buf for BufList {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.bufs.front().map_or(&[], |b| &b[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        self.remaining = self.remaining.saturating_sub(cnt);
        while cnt > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.bufs.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, buf) in dst.iter_mut().zip(&self.bufs) {
            *slot = IoSlice::new(buf);
            filled += 1;
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rim_proto::{Frame, FrameCodec};
    use tokio::io::AsyncWriteExt;

    fn heartbeat(seq: i32) -> Frame {
        Frame::new(1, rim_proto::Op::Heartbeat, seq, Bytes::new())
    }

    #[tokio::test]
    async fn read_buffer_is_released_between_frames() {
        let (client, server) = tokio::io::duplex(1024);
        let mut client = client;
        let mut reader = Reader::new(server, FrameCodec::new(4096), BytesMut::new());
        let wire = heartbeat(1).to_bytes();
        client.write_all(&wire[..8]).await.unwrap();
        let next = tokio::spawn(async move {
            let frame = reader.next().await.unwrap();
            (reader, frame)
        });
        tokio::task::yield_now().await;
        client.write_all(&wire[8..]).await.unwrap();
        let (mut reader, frame) = next.await.unwrap();
        assert_eq!(frame, Some(heartbeat(1)));
        assert_eq!(
            reader.buf.capacity(),
            0,
            "kept its read buffer after a frame"
        );
        drop(client);
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn bytes_read_before_are_decoded_first() {
        let buffered = BytesMut::from(&heartbeat(1).to_bytes()[..]);
        let more = heartbeat(2).to_bytes();
        let mut reader = Reader::new(&more[..], FrameCodec::new(4096), buffered);
        assert_eq!(reader.next().await.unwrap(), Some(heartbeat(1)));
        assert_eq!(reader.next().await.unwrap(), Some(heartbeat(2)));
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        let wire = heartbeat(1).to_bytes();
        let mut reader = Reader::new(&wire[..10], FrameCodec::new(4096), BytesMut::new());
        assert!(reader.next().await.is_err());
    }

    #[test]
    fn buf_list_reads_across_buffers() {
        let mut list = BufList::default();
        list.push(Bytes::from_static(b"abc"));
        list.push(Bytes::new());
        list.push(Bytes::from_static(b"de"));
        assert_eq!(list.remaining(), 5);
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(list.chunks_vectored(&mut slices), 2);
        list.advance(2);
        assert_eq!(list.chunk(), b"c");
        list.advance(2);
        assert_eq!(list.chunk(), b"e");
        assert_eq!(list.copy_to_bytes(1), Bytes::from_static(b"e"));
        assert!(!list.has_remaining());
        assert_eq!(list.chunk(), b"");
    }

    #[test]
    fn buf_list_coalesces_past_the_iovec_limit() {
        let mut list = BufList::default();
        for byte in 0..10u8 {
            list.push(Bytes::from(vec![byte; 2]));
        }
        list.coalesce_over(10);
        assert_eq!(list.bufs.len(), 10);
        list.coalesce_over(4);
        assert_eq!(list.bufs.len(), 1);
        assert_eq!(list.remaining(), 20);
        let all = list.copy_to_bytes(20);
        assert_eq!(&all[..4], &[0, 0, 1, 1]);
    }
}
