//! WebSocket transport (docs/protocol.md, "Session" and "How a WebSocket
//! connection ends"): HTTP upgrade on path `/sub`, then one
//! goim frame per message, over a plain `TcpStream` or TLS (the `wss`
//! listeners). Client binary and text messages are both frames; the server
//! sends binary messages only, one per reply or push.
//!
//! The upgrade request is parsed and answered with tungstenite's handshake
//! functions; the framing after it is rim's own (`codec`), so an idle
//! WebSocket connection keeps no buffers, like a TCP one.

mod codec;

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use rim_proto::{Frame, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tungstenite::error::CapacityError;
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::http::header;
use tungstenite::protocol::frame::coding::{CloseCode, Control};

pub(crate) use self::codec::WsError;
use self::codec::{WsCodec, WsIn};
use super::buffers::{BufList, Reader};
use super::handler::{self, Active};
use super::{
    log_close, set_nodelay, tls_handshake, ClientStream, CloseReason, ConnCtx, ConnInfo, FrameIo,
    Incoming, Opened, Slot, FINISH_TIMEOUT,
};
use crate::push::Push;
use crate::ws_frame::{binary, close_frame, control};

/// The only path served (a query string is allowed).
const PATH: &str = "/sub";
/// Largest upgrade request (request line and headers) accepted.
const MAX_REQUEST: usize = 16 * 1024;

/// Upgrades one accepted connection and serves it. The upgrade and the
/// handshake run boxed, like on TCP (see `handler::serve`).
pub(super) fn serve(
    ctx: Arc<ConnCtx>,
    stream: TcpStream,
    conn: ConnInfo,
    deadline: Instant,
    opened: Opened,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    set_nodelay(&stream, &conn);
    let handshake = Box::pin(upgraded(ctx, stream, conn, deadline, slot));
    handler::serve(handshake, opened)
}

/// Serves one connection accepted on a `wss` listener: the TLS handshake,
/// then the same upgrade and goim code as [`serve`], all boxed and within
/// the deadline.
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
        upgraded(ctx, stream, conn, deadline, slot).await
    });
    handler::serve(handshake, opened)
}

/// Upgrades and authenticates; on failure logs the close.
async fn upgraded<S: ClientStream>(
    ctx: Arc<ConnCtx>,
    stream: S,
    conn: ConnInfo,
    deadline: Instant,
    slot: Slot,
) -> Option<(Active, WsIo<S>)> {
    let (io, cookie) = match upgrade(&ctx, stream, deadline).await {
        Ok(upgraded) => upgraded,
        Err(reason) => {
            log_close(&conn, None, &reason);
            return None;
        }
    };
    handler::establish(ctx, io, conn, cookie, deadline, slot).await
}

/// The HTTP upgrade, within the handshake deadline; returns the transport
/// and the `Cookie` header ("" if none). A request for another path is
/// answered 404, a malformed one 400, both with `Connection: close`.
async fn upgrade<S: ClientStream>(
    ctx: &ConnCtx,
    mut stream: S,
    deadline: Instant,
) -> Result<(WsIo<S>, String), CloseReason> {
    let answer = async {
        let (request, buffered) = read_request(&mut stream).await?;
        let path = request.uri().path();
        if path != PATH {
            refuse(&mut stream, "404 Not Found", "only /sub is served").await;
            return Err(CloseReason::WsPathRejected(path.to_owned()));
        }
        let response = match create_response(&request) {
            Ok(response) => response,
            Err(e) => {
                refuse(&mut stream, "400 Bad Request", &e.to_string()).await;
                return Err(CloseReason::WsHandshake(e));
            }
        };
        let mut head = Vec::with_capacity(160);
        write_response(&mut head, &response).map_err(CloseReason::WsHandshake)?;
        stream.write_all(&head).await?;
        // TLS may still hold the records.
        stream.flush().await?;
        let cookie = request
            .headers()
            .get(header::COOKIE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        Ok((buffered, cookie))
    };
    let (buffered, cookie) = tokio::select! {
        biased;
        () = ctx.closing.cancelled() => Err(CloseReason::Shutdown),
        result = tokio::time::timeout_at(deadline, answer) => match result {
            Ok(answered) => answered,
            Err(_) => Err(CloseReason::HandshakeTimeout(ctx.config.handshake_timeout)),
        },
    }?;
    let io = WsIo {
        reader: Reader::new(
            stream,
            WsCodec::new(HEADER_LEN + ctx.config.max_body),
            buffered,
        ),
        out: BufList::default(),
        client_close: None,
    };
    Ok((io, cookie))
}

/// Reads the upgrade request; returns it and what the client sent after it
/// (its first frames).
async fn read_request<S: ClientStream>(stream: &mut S) -> Result<(Request, BytesMut), CloseReason> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(CloseReason::ClientClosed);
        }
        match Request::try_parse(&buf) {
            Ok(Some((len, request))) => {
                // Frames the client sent right behind the request; none (the
                // usual case) must not keep the request's buffer alive.
                let rest = buf.split_off(len);
                let rest = if rest.is_empty() {
                    BytesMut::new()
                } else {
                    rest
                };
                return Ok((request, rest));
            }
            Ok(None) if buf.len() < MAX_REQUEST => {}
            Ok(None) => {
                refuse(stream, "431 Request Header Fields Too Large", "").await;
                return Err(CloseReason::WsHandshake(tungstenite::Error::Capacity(
                    CapacityError::MessageTooLong {
                        size: buf.len(),
                        max_size: MAX_REQUEST,
                    },
                )));
            }
            Err(e) => {
                refuse(stream, "400 Bad Request", &e.to_string()).await;
                return Err(CloseReason::WsHandshake(e));
            }
        }
    }
}

/// Answers a request that is not upgraded; best effort (the connection is
/// closed next anyway).
async fn refuse<S: ClientStream>(stream: &mut S, status: &str, message: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{message}",
        message.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
}

pub(super) struct WsIo<S> {
    reader: Reader<S, WsCodec>,
    out: BufList,
    /// The client's close frame: its status code, echoed in the server's
    /// close (RFC 6455 5.5.1). `None` while the client has not closed.
    client_close: Option<Option<u16>>,
}

impl<S: ClientStream> FrameIo for WsIo<S> {
    async fn read_frame(&mut self) -> Result<Incoming, CloseReason> {
        Ok(match self.reader.next().await? {
            None => Incoming::End,
            Some(WsIn::Message(bytes)) => {
                let max_body = self.reader.codec().max_message() - HEADER_LEN;
                Incoming::Frame(Frame::decode_exact(bytes, max_body)?)
            }
            Some(WsIn::Ping(payload)) => {
                self.out.push(control(Control::Pong, &payload));
                Incoming::Control
            }
            Some(WsIn::Close(code)) => {
                self.client_close = Some(code);
                Incoming::End
            }
        })
    }

    fn queue_reply(&mut self, frame: &Frame) {
        self.out.push(binary(frame));
    }

    fn queue_push(&mut self, push: &Push) {
        self.out.push(push.ws.clone());
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

    async fn finish(&mut self, reason: &CloseReason) {
        let frame = match (reason, self.client_close) {
            // The reply to the client's close echoes its code (5.5.1).
            (CloseReason::ClientClosed, Some(Some(code))) => Some(close_frame(code, "")),
            (CloseReason::ClientClosed, Some(None)) => Some(control(Control::Close, &[])),
            _ => close_code(reason).map(|code| close_frame(code.into(), reason.label())),
        };
        let goodbye = async {
            if let Some(frame) = frame {
                self.out.push(frame);
                self.out.write_to(self.reader.stream_mut()).await?;
            }
            // Over TLS: close_notify, then (as on plain TCP) the FIN.
            self.reader.stream_mut().shutdown().await
        };
        // A client that cannot take the frame (gone, or not reading) only
        // delays its own close, by at most FINISH_TIMEOUT.
        let _ = tokio::time::timeout(FINISH_TIMEOUT, goodbye).await;
    }
}

/// The close code sent when the server ends a connection for `reason`;
/// `None` when there is nothing to announce (the client closed, or the
/// socket failed).
fn close_code(reason: &CloseReason) -> Option<CloseCode> {
    Some(match reason {
        CloseReason::ClientClosed | CloseReason::Io(_) => return None,
        // Never reach a WebSocket: the TLS handshake comes first.
        CloseReason::TlsHandshake(_) => return None,
        CloseReason::WsProtocol(e) => e.close_code(),
        CloseReason::BadFrame(rim_proto::ProtoError::BodyTooLarge { .. }) => CloseCode::Size,
        CloseReason::BadFrame(_) => CloseCode::Unsupported,
        CloseReason::Shutdown => CloseCode::Away,
        // The server could not do its part (1011 internal error).
        CloseReason::RoomAnnounce(_) => CloseCode::Error,
        CloseReason::SlowClient
        | CloseReason::Kicked
        | CloseReason::AuthFailed(_)
        | CloseReason::HandshakeTimeout(_)
        | CloseReason::HeartbeatTimeout(_)
        | CloseReason::FrameRate(_) => CloseCode::Policy,
        // Never reach a connected WebSocket.
        CloseReason::WsPathRejected(_) | CloseReason::WsHandshake(_) => return None,
    })
}
