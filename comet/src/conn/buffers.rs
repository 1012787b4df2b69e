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

    /// A socket stand-in that records every call: how many, which kind, the
    /// bytes taken (in order) and where each slice it was handed lives.
    #[derive(Debug, Default)]
    struct MockWriter {
        /// What `is_write_vectored` reports.
        vectored: bool,
        /// Most bytes one write call takes (`None`: everything it is given).
        limit: Option<usize>,
        /// Write calls answered before the writer reports `Pending`.
        ready_calls: Option<usize>,
        written: Vec<u8>,
        vectored_calls: usize,
        write_calls: usize,
        flushes: usize,
        /// `(address, length)` of every slice passed to a vectored write.
        slices: Vec<(usize, usize)>,
    }

    impl MockWriter {
        fn vectored(limit: Option<usize>) -> MockWriter {
            MockWriter {
                vectored: true,
                limit,
                ..MockWriter::default()
            }
        }

        /// Whether this call must wait (and so takes nothing).
        fn stalled(&self) -> bool {
            self.ready_calls
                .is_some_and(|ready| self.vectored_calls + self.write_calls >= ready)
        }
    }

    impl AsyncWrite for MockWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.stalled() {
                return Poll::Pending;
            }
            this.write_calls += 1;
            let n = this.limit.map_or(buf.len(), |limit| limit.min(buf.len()));
            this.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.stalled() {
                return Poll::Pending;
            }
            this.vectored_calls += 1;
            let mut budget = this.limit.unwrap_or(usize::MAX);
            let mut n = 0;
            for buf in bufs {
                this.slices.push((buf.as_ptr() as usize, buf.len()));
                let take = budget.min(buf.len());
                this.written.extend_from_slice(&buf[..take]);
                budget -= take;
                n += take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// `n` distinct pushes as goim's job encodes them (bodies of varied length).
    fn pushes(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| rim_proto::encode_raw_push(1000, "x".repeat(i % 7).as_bytes()))
            .collect()
    }

    fn queue(bufs: &[Bytes]) -> BufList {
        let mut list = BufList::default();
        for bytes in bufs {
            list.push(bytes.clone());
        }
        list
    }

    #[tokio::test]
    async fn queued_pushes_go_out_in_one_vectored_write() {
        let bufs = pushes(10);
        let mut list = queue(&bufs);
        let mut writer = MockWriter::vectored(None);
        list.write_to(&mut writer).await.unwrap();

        assert_eq!(writer.vectored_calls, 1, "one syscall for the whole burst");
        assert_eq!(writer.write_calls, 0);
        assert_eq!(writer.flushes, 1);
        assert_eq!(writer.written, bufs.concat());
        // Zero-copy: the writer was handed the pushes' own buffers, in order.
        let handed: Vec<(usize, usize)> = bufs
            .iter()
            .map(|b| (b.as_ptr() as usize, b.len()))
            .collect();
        assert_eq!(writer.slices, handed);
        // Everything went out and the slot array was given back.
        assert!(list.is_empty());
        assert_eq!(list.bufs.capacity(), 0);
    }

    #[tokio::test]
    async fn more_buffers_than_iovecs_still_take_one_write() {
        let bufs = pushes(MAX_IOVECS + 1);
        let mut list = queue(&bufs);
        let mut writer = MockWriter::vectored(None);
        list.write_to(&mut writer).await.unwrap();
        // Merged into one buffer rather than split over two calls.
        assert_eq!(writer.vectored_calls, 1);
        assert_eq!(writer.slices.len(), 1);
        assert_eq!(writer.written, bufs.concat());
        assert!(list.is_empty());
    }

    #[tokio::test]
    async fn partial_writes_continue_in_order() {
        let bufs = pushes(9);
        let all = bufs.concat();
        // Limits that split buffers in the middle, at their ends, and take
        // one byte at a time.
        for k in [1, 7, 16, 18, all.len() - 1] {
            let mut list = queue(&bufs);
            let mut writer = MockWriter::vectored(Some(k));
            list.write_to(&mut writer).await.unwrap();
            assert_eq!(writer.written, all, "vectored, {k} bytes per call");
            assert_eq!(writer.vectored_calls, all.len().div_ceil(k), "k = {k}");
            assert_eq!(writer.flushes, 1);
            assert!(list.is_empty());

            // A stream without vectored writes gets one buffer per call.
            let mut list = queue(&bufs);
            let mut writer = MockWriter {
                limit: Some(k),
                ..MockWriter::default()
            };
            list.write_to(&mut writer).await.unwrap();
            assert_eq!(writer.written, all, "plain writes, {k} bytes per call");
            assert_eq!(writer.vectored_calls, 0);
            assert!(list.is_empty());
        }
    }

    #[test]
    fn an_interrupted_write_keeps_the_rest_for_the_next_call() {
        let bufs = pushes(5);
        let all = bufs.concat();
        let mut list = queue(&bufs);
        // Takes 20 bytes (past the first buffer's end), then blocks.
        let mut writer = MockWriter {
            ready_calls: Some(1),
            ..MockWriter::vectored(Some(20))
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        {
            let mut write = std::pin::pin!(list.write_to(&mut writer));
            assert!(write.as_mut().poll(&mut cx).is_pending());
        } // the write is cancelled here
        assert_eq!(writer.flushes, 0);
        assert_eq!(list.remaining(), all.len() - 20);
        assert_eq!(list.chunk(), &all[20..bufs[0].len() + bufs[1].len()]);

        writer.ready_calls = None;
        writer.limit = None;
        {
            let mut write = std::pin::pin!(list.write_to(&mut writer));
            assert!(write.as_mut().poll(&mut cx).is_ready());
        }
        assert_eq!(writer.written, all, "no byte lost or repeated");
        assert_eq!(writer.vectored_calls, 2);
        assert_eq!(writer.flushes, 1);
    }

    #[tokio::test]
    async fn a_writer_taking_nothing_is_an_error() {
        let mut list = queue(&pushes(2));
        let mut writer = MockWriter::vectored(Some(0));
        let err = list.write_to(&mut writer).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        assert_eq!(writer.flushes, 0);
    }

    #[tokio::test]
    async fn one_push_to_two_sessions_shares_its_bytes() {
        use crate::session::Session;
        use std::net::{IpAddr, Ipv4Addr};
        use std::sync::Arc;

        let hub = crate::hub::Hub::new(
            &crate::Config::default(),
            Default::default(),
            Default::default(),
        );
        let session = |id: u64, key: &str| {
            let s = Arc::new(Session::new(
                id,
                key.into(),
                0,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                &[1000],
            ));
            hub.register(&s, None);
            s
        };
        let (a, b) = (session(1, "a"), session(2, "b"));
        let inner = rim_proto::encode_raw_push(1000, b"shared");
        hub.push_msg(rim_proto::pb::comet::PushMsgReq {
            keys: vec!["a".into(), "b".into()],
            proto: Some(rim_proto::pb::protocol::Proto {
                ver: 1,
                op: 9,
                seq: 0,
                body: inner.clone(),
            }),
            proto_op: 1000,
            ..Default::default()
        })
        .unwrap();
        let mut qa = a.take_queue().unwrap();
        let mut qb = b.take_queue().unwrap();
        let (pa, pb) = (qa.pop_front().unwrap(), qb.pop_front().unwrap());
        assert!(qa.is_empty() && qb.is_empty());
        // Encoded once for both recipients.
        assert!(Arc::ptr_eq(&pa, &pb), "each session got its own encoding");
        // TCP: job's body itself, not a copy of it.
        assert_eq!(pa.tcp.as_ptr(), inner.as_ptr());

        // Down to the socket: both connections hand the writer the same
        // memory (a TCP connection queues `push.tcp`, see `TcpIo::queue_push`).
        let mut seen = Vec::new();
        for push in [&pa, &pb] {
            let mut list = BufList::default();
            list.push(push.tcp.clone());
            let mut writer = MockWriter::vectored(None);
            list.write_to(&mut writer).await.unwrap();
            assert_eq!(writer.written, &inner[..]);
            seen.extend(writer.slices);
        }
        let expected = (inner.as_ptr() as usize, inner.len());
        assert_eq!(seen, vec![expected, expected]);
    }
}
