//! Raw TCP transport: goim frames straight on the byte stream, a plain
//! `TcpStream` or TLS over one (the `tls` listeners).
//!
//! Reads go through `FrameCodec` with a read buffer that exists only while a
//! frame arrives; writes gather everything buffered into one vectored write
//! (see `buffers`).

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use rim_proto::{Frame, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::buffers::{BufList, Reader};
use super::{
    handler, set_nodelay, tls_handshake, ClientStream, CloseReason, ConnCtx, ConnInfo, FrameIo,
    Incoming, Opened, Slot, FINISH_TIMEOUT,
};
use crate::push::Push;

/// Serves one accepted TCP connection. The task's future holds the boxed
/// handshake until it is done, then only what the frame loop needs.
pub(super) fn serve(
    ctx: Arc<ConnCtx>,
    stream: TcpStream,
    conn: ConnInfo,
    deadline: Instant,
    opened: Opened,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    set_nodelay(&stream, &conn);
    let io = TcpIo::new(stream, ctx.config.max_body);
    let handshake = Box::pin(handler::establish(
        ctx,
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
    ctx: Arc<ConnCtx>,
    stream: TcpStream,
    conn: ConnInfo,
    deadline: Instant,
    opened: Opened,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    set_nodelay(&stream, &conn);
    let handshake = Box::pin(async move {
        let stream = tls_handshake(&ctx, stream, &conn, deadline).await?;
        let io = TcpIo::new(stream, ctx.config.max_body);
        handler::establish(ctx, io, conn, String::new(), deadline, slot).await
    });
    handler::serve(handshake, opened)
}

pub(super) struct TcpIo<S> {
    reader: Reader<S, FrameCodec>,
    out: BufList,
}

impl<S> TcpIo<S> {
    fn new(stream: S, max_body: usize) -> TcpIo<S> {
        TcpIo {
            reader: Reader::new(stream, FrameCodec::new(max_body), BytesMut::new()),
            out: BufList::default(),
        }
    }
}

impl<S: ClientStream> FrameIo for TcpIo<S> {
    async fn read_frame(&mut self) -> Result<Incoming, CloseReason> {
        match self.reader.next().await? {
            None => Ok(Incoming::End),
            Some(frame) => Ok(Incoming::Frame(frame)),
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
        !self.out.is_empty()
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        self.out
            .write_to(self.reader.stream_mut())
            .await
            .map_err(CloseReason::Io)
    }

    async fn finish(&mut self, _reason: &CloseReason) {
        // goim has no goodbye frame on TCP: the close itself is the message.
        // Over TLS the close is announced (close_notify), so the client can
        // tell it from a truncated stream; on plain TCP this sends the FIN.
        let _ = tokio::time::timeout(FINISH_TIMEOUT, self.reader.stream_mut().shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
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
}
