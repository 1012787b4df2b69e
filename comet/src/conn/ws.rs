//! WebSocket transport (goim-spec 1.9): HTTP upgrade on path `/sub`, then one
//! goim frame per message, over a plain `TcpStream` or TLS (the `wss`
//! listeners). Client binary and text messages are both frames; the server
//! sends binary messages only, one per reply or push.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rim_proto::{Frame, HEADER_LEN};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::handler::{self, Active};
use super::{
    log_close, set_nodelay, tls_handshake, ClientStream, CloseReason, ConnInfo, FrameIo, Opened,
    Slot, FINISH_TIMEOUT,
};
use crate::push::Push;
use crate::server::Comet;

/// The only path served (a query string is allowed).
const PATH: &str = "/sub";
/// tungstenite's eagerly allocated read buffer; it grows for larger messages.
const READ_BUFFER: usize = 256;

/// Upgrades one accepted connection and serves it. The upgrade and the
/// handshake run boxed, like on TCP (see `handler::serve`).
pub(super) fn serve(
    comet: Arc<Comet>,
    stream: TcpStream,
    conn: ConnInfo,
    deadline: Instant,
    opened: Opened,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    set_nodelay(&stream, &conn);
    let handshake = Box::pin(upgraded(comet, stream, conn, deadline, slot));
    handler::serve(handshake, opened)
}

/// Serves one connection accepted on a `wss` listener: the TLS handshake,
/// then the same upgrade and goim code as [`serve`], all boxed and within
/// the deadline.
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
        upgraded(comet, stream, conn, deadline, slot).await
    });
    handler::serve(handshake, opened)
}

/// Upgrades and authenticates; on failure logs the close.
async fn upgraded<S: ClientStream>(
    comet: Arc<Comet>,
    stream: S,
    conn: ConnInfo,
    deadline: Instant,
    slot: Slot,
) -> Option<(Active, WsIo<S>)> {
    let (ws, cookie) = match upgrade(&comet, stream, deadline).await {
        Ok(upgraded) => upgraded,
        Err(reason) => {
            log_close(&conn, None, &reason);
            return None;
        }
    };
    let max_body = comet.config.max_body;
    let io = WsIo {
        ws,
        out: VecDeque::new(),
        max_body,
    };
    handler::establish(comet, io, conn, cookie, deadline, slot).await
}

/// The HTTP upgrade; returns the stream and the `Cookie` header ("" if none).
async fn upgrade<S: ClientStream>(
    comet: &Comet,
    stream: S,
    deadline: Instant,
) -> Result<(WebSocketStream<S>, String), CloseReason> {
    let max_message = HEADER_LEN + comet.config.max_body;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));

    let mut cookie = String::new();
    let mut rejected_path = None;
    // The signature is tungstenite's `Callback`; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() != PATH {
            rejected_path = Some(request.uri().path().to_owned());
            return Err(not_found());
        }
        if let Some(value) = request.headers().get(header::COOKIE) {
            cookie = String::from_utf8_lossy(value.as_bytes()).into_owned();
        }
        Ok(response)
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let ws = tokio::select! {
        biased;
        () = comet.closing.cancelled() => Err(CloseReason::Shutdown),
        result = tokio::time::timeout_at(deadline, upgrade) => match result {
            Ok(Ok(ws)) => Ok(ws),
            Ok(Err(e)) => Err(match rejected_path.take() {
                Some(path) => CloseReason::WsPathRejected(path),
                None => CloseReason::WsHandshake(e),
            }),
            Err(_) => Err(CloseReason::HandshakeTimeout(comet.config.handshake_timeout)),
        },
    }?;
    Ok((ws, cookie))
}

fn not_found() -> ErrorResponse {
    let mut response = ErrorResponse::new(None);
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

pub(super) struct WsIo<S> {
    ws: WebSocketStream<S>,
    out: VecDeque<Bytes>,
    max_body: usize,
}

impl<S> WsIo<S> {
    fn decode(&self, message: Bytes) -> Result<Option<Frame>, CloseReason> {
        Frame::decode_exact(message, self.max_body)
            .map(Some)
            .map_err(CloseReason::from)
    }
}

impl<S: ClientStream> FrameIo for WsIo<S> {
    async fn read_frame(&mut self) -> Result<Option<Frame>, CloseReason> {
        loop {
            // tungstenite answers pings with pongs as part of reading.
            let message = match self.ws.next().await {
                None => return Ok(None),
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(ws_error(e)),
            };
            match message {
                Message::Binary(bytes) => return self.decode(bytes),
                Message::Text(text) => return self.decode(Bytes::from(text)),
                Message::Close(_) => return Ok(None),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    fn queue_reply(&mut self, frame: &Frame) {
        self.out.push_back(frame.to_bytes());
    }

    fn queue_push(&mut self, push: &Push) {
        self.out.push_back(push.ws.clone());
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        // A message leaves `out` only once the sink took it, so a flush
        // cancelled midway (shutdown) can be resumed without a loss.
        while let Some(bytes) = self.out.front() {
            self.ws
                .feed(Message::Binary(bytes.clone()))
                .await
                .map_err(ws_error)?;
            self.out.pop_front();
        }
        self.ws.flush().await.map_err(ws_error)
    }

    async fn finish(&mut self, reason: &CloseReason) {
        let goodbye = async {
            match close_code(reason) {
                // tungstenite queued the reply to the client's close frame
                // (RFC 6455 5.5.1) while reading it: write it.
                None => self.ws.flush().await,
                Some(code) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.label().into(),
                    };
                    self.ws.send(Message::Close(Some(frame))).await
                }
            }
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
    use tungstenite::error::ProtocolError;
    Some(match reason {
        CloseReason::ClientClosed | CloseReason::Io(_) => return None,
        // Never reach a WebSocket: the TLS handshake comes first.
        CloseReason::TlsHandshake(_) => return None,
        CloseReason::WsProtocol(tungstenite::Error::Capacity(_)) => CloseCode::Size,
        CloseReason::WsProtocol(tungstenite::Error::Utf8(_)) => CloseCode::Invalid,
        CloseReason::WsProtocol(tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake,
        )) => return None,
        CloseReason::WsProtocol(_) => CloseCode::Protocol,
        CloseReason::BadFrame(rim_proto::ProtoError::BodyTooLarge { .. }) => CloseCode::Size,
        CloseReason::BadFrame(_) => CloseCode::Unsupported,
        CloseReason::Shutdown => CloseCode::Away,
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

fn ws_error(e: tungstenite::Error) -> CloseReason {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::ClientClosed
        }
        tungstenite::Error::Io(e) => CloseReason::Io(e),
        other => CloseReason::WsProtocol(other),
    }
}
