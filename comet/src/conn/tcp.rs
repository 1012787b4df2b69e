//! Raw TCP transport: goim frames straight on the byte stream, a plain
//! `TcpStream` or TLS over one (the `tls` listeners).
//!
//! Reads go through `FrameCodec` with a small initial buffer; writes gather
//! everything buffered into one vectored write (pushes are shared `Bytes`,
//! never copied; with TLS, rustls encrypts from the same slices).

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use rim_proto::{Frame, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use super::{
    handler, set_nodelay, tls_handshake, ClientStream, CloseReason, ConnInfo, FrameIo, Opened, Slot,
};
use crate::push::Push;
use crate::server::Comet;

/// Initial read buffer; it grows only for larger frames.
const READ_BUFFER: usize = 256;
/// Buffers tokio's `write_all_buf` passes to one vectored write.
const MAX_IOVECS: usize = 64;

/// Serves one accepted TCP connection. The task's future holds the boxed
/// handshake until it is done, then only what the frame loop needs.
pub(super) fn serve(
    comet: Arc<Comet>,
    stream: TcpStream,
    conn: ConnInfo,
    deadline: Instant,
    opened: Opened,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    set_nodelay(&stream, &conn);
    let io = TcpIo::new(stream, comet.config.max_body);
    let handshake = Box::pin(handler::establish(
        comet,
        io,
        conn,
        String::new(),
        deadline,
        slot,
    ));
    handler::serve(handshake, opened)
}

/// Serves one connection accepted on a `tls` listener: the TLS handshake, then
/// the same goim code as [`serve`]. Both run boxed, within the deadline.
pub(super) fn serve_tls(
    comet: Arc<Comet>,
    stream: TcpStream,
    conn: ConnInfo,
    deadline: Instant,
    opened: Opened,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    set_nodelay(&stream, &conn);
    let handshake = Box::pin(async move {
        let stream = tls_handshake(&comet, stream, &conn, deadline).await?;
        let io = TcpIo::new(stream, comet.config.max_body);
        handler::establish(comet, io, conn, String::new(), deadline, slot).await
    });
    handler::serve(handshake, opened)
}

pub(super) struct TcpIo<S> {
    framed: FramedRead<S, FrameCodec>,
    out: BufList,
}

impl<S> TcpIo<S> {
    fn new(stream: S, max_body: usize) -> TcpIo<S> {
        TcpIo {
            framed: FramedRead::with_capacity(stream, FrameCodec::new(max_body), READ_BUFFER),
            out: BufList::default(),
        }
    }
}

impl<S: ClientStream> FrameIo for TcpIo<S> {
    async fn read_frame(&mut self) -> Result<Option<Frame>, CloseReason> {
        match self.framed.next().await {
            None => Ok(None),
            Some(Ok(frame)) => Ok(Some(frame)),
            Some(Err(e)) => Err(e.into()),
        }
    }

    fn queue_reply(&mut self, frame: &Frame) {
        self.out.push(frame.to_bytes());
    }

    fn queue_push(&mut self, push: &Push) {
        // op 9: the body (complete inner frames) goes out verbatim.
        self.out.push(push.tcp.clone());
    }

    fn has_output(&self) -> bool {
        self.out.has_remaining()
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        // A vectored write takes at most MAX_IOVECS buffers; beyond that, one
        // copy into a single buffer still beats several syscalls.
        self.out.coalesce_over(MAX_IOVECS);
        self.framed
            .get_mut()
            .write_all_buf(&mut self.out)
            .await
            .map_err(CloseReason::Io)?;
        // A no-op on a `TcpStream`; TLS may still hold records that the
        // socket did not take.
        self.framed
            .get_mut()
            .flush()
            .await
            .map_err(CloseReason::Io)?;
        // Give back the slot array; an idle connection keeps no buffers.
        self.out = BufList::default();
        Ok(())
    }

    async fn finish(&mut self, _reason: &CloseReason) {
        // goim has no goodbye frame on TCP: the close itself is the message.
    }
}

/// A queue of buffers read as one, so a burst goes out in one vectored write.
#[derive(Debug, Default)]
struct BufList {
    bufs: VecDeque<Bytes>,
    remaining: usize,
}

impl BufList {
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.remaining += bytes.len();
            self.bufs.push_back(bytes);
        }
    }
}

impl BufList {
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
    use futures_util::FutureExt;
    use tokio::io::AsyncReadExt;

    /// TLS keeps records the socket did not take and sends them on the next
    /// write or flush; a `BufWriter` holds everything the same way.
    #[tokio::test]
    async fn flush_sends_what_the_stream_buffers() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut io = TcpIo::new(tokio::io::BufWriter::new(server), 4096);
        let reply = Frame {
            ver: 1,
            op: 8,
            seq: 1,
            body: Bytes::new(),
        };
        io.queue_reply(&reply);
        io.flush().await.unwrap();
        let mut got = vec![0; 16];
        let read = client.read_exact(&mut got).now_or_never();
        assert!(matches!(read, Some(Ok(16))), "reply still buffered");
        assert_eq!(got, reply.to_bytes());
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
