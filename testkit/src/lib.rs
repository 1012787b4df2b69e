//! Dev-only test kit: a goim wire-protocol client over TCP and WebSocket, and
//! the test support several crates share.
//!
//! The client ([`Client`]) is used by rim's end-to-end tests and tools. It
//! speaks exactly what a goim client speaks: op 7 auth with the JSON token,
//! op 2 heartbeats, and it unwraps op 9 pushes on WebSocket the way goim's
//! `client.js` does.
//!
//! Shared test support:
//! - [`metrics`]: a metrics recorder to read counters and histograms.
//! - [`poll`]: waiting, up to a deadline, for something that happens eventually.
//! - [`services`]: the suite's Kafka, Redis and Redis Cluster, for tests that need them,
//!   and [`on_redis_node_and_cluster!`], which runs a Redis test on both.
//! - [`redis_cluster`]: a private Redis Cluster, for tests that kill a node.
//! - [`deadline`]: silent peers, and the check that a call's deadline fired.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rim_proto::{Frame, FrameCodec, Op};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::codec::Decoder;

pub mod deadline;
pub mod metrics;
pub mod poll;
pub mod redis_cluster;
pub mod services;

/// Default wait for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(10);

/// The op 7 token of goim v2.
#[derive(Debug, Clone, Default)]
pub struct Token {
    /// User id (0: anonymous).
    pub mid: i64,
    /// Connection key ("" lets the server choose one).
    pub key: String,
    /// Room to join ("" for none).
    pub room_id: String,
    /// Client platform, e.g. "web".
    pub platform: String,
    /// Ops accepted for keyed and broadcast pushes.
    pub accepts: Vec<i32>,
    /// rim: an IM session (`"im": true`).
    pub im: bool,
    /// rim: the token's `since` (seq, epoch).
    pub since: Option<(u32, Option<String>)>,
}

impl Token {
    /// A token for `mid` with `key`, in `room`, accepting 1000–1002 like goim's examples.
    pub fn new(mid: i64, key: &str, room: &str) -> Token {
        Token {
            mid,
            key: key.to_owned(),
            room_id: room.to_owned(),
            platform: "web".to_owned(),
            accepts: vec![1000, 1001, 1002],
            im: false,
            since: None,
        }
    }

    /// An IM session's token for `mid` with `key`, accepting nothing (stored
    /// frames need no accepts).
    pub fn im(mid: i64, key: &str) -> Token {
        Token {
            mid,
            key: key.to_owned(),
            platform: "web".to_owned(),
            im: true,
            ..Token::default()
        }
    }

    /// This token with `since` (seq, epoch).
    pub fn since(mut self, seq: u32, epoch: Option<&str>) -> Token {
        self.since = Some((seq, epoch.map(str::to_owned)));
        self
    }

    /// The token's JSON text.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::json!({
            "mid": self.mid,
            "key": self.key,
            "room_id": self.room_id,
            "platform": self.platform,
            "accepts": self.accepts,
        });
        if self.im {
            json["im"] = true.into();
        }
        if let Some((seq, epoch)) = &self.since {
            json["since"] = serde_json::json!({"seq": seq});
            if let Some(epoch) = epoch {
                json["since"]["epoch"] = epoch.as_str().into();
            }
        }
        json.to_string()
    }
}

enum Transport {
    Tcp { stream: TcpStream, buf: BytesMut },
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

/// What one read from the server produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A frame (TCP: one frame of the stream; WS: the frame of one message).
    Frame(Frame),
    /// The server closed the connection.
    Closed,
}

/// The close frame a WebSocket server sent: its status code and reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (RFC 6455 section 7.4), e.g. 1008.
    pub code: u16,
    /// The reason text ("" when the frame carried none).
    pub reason: String,
}

/// A goim client connection.
pub struct Client {
    transport: Transport,
    /// Inner frames of an op 9 message not yet handed out by [`Client::next_push`].
    pending: VecDeque<Frame>,
    codec: FrameCodec,
    /// The server's WebSocket close frame, once read (with or without a status).
    close_frame: Option<Option<CloseFrame>>,
}

impl Client {
    /// Connects over raw TCP.
    pub async fn tcp(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("tcp connect {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Client::from_transport(Transport::Tcp {
            stream,
            buf: BytesMut::new(),
        }))
    }

    /// Connects over WebSocket to `ws://addr/sub`.
    pub async fn ws(addr: SocketAddr) -> Result<Client> {
        Client::ws_path(addr, "/sub").await
    }

    /// Connects over WebSocket to the given path (to test path checks).
    pub async fn ws_path(addr: SocketAddr, path: &str) -> Result<Client> {
        let url = format!("ws://{addr}{path}");
        let (ws, _response) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .with_context(|| format!("websocket connect {url}"))?;
        Ok(Client::from_transport(Transport::Ws(Box::new(ws))))
    }

    fn from_transport(transport: Transport) -> Client {
        Client {
            transport,
            pending: VecDeque::new(),
            // Server-to-client frames have no size limit in goim.
            codec: FrameCodec::new(usize::MAX - rim_proto::HEADER_LEN),
            close_frame: None,
        }
    }

    /// Whether this client speaks WebSocket.
    pub fn is_ws(&self) -> bool {
        matches!(self.transport, Transport::Ws(_))
    }

    /// Sends one frame (WS: as one binary message).
    pub async fn send(&mut self, frame: &Frame) -> Result<()> {
        self.send_raw(frame.to_bytes()).await
    }

    /// Sends raw bytes (TCP: into the stream; WS: as one binary message).
    pub async fn send_raw(&mut self, bytes: Bytes) -> Result<()> {
        match &mut self.transport {
            Transport::Tcp { stream, .. } => {
                stream.write_all(&bytes).await?;
                Ok(())
            }
            Transport::Ws(ws) => {
                ws.send(Message::Binary(bytes)).await?;
                Ok(())
            }
        }
    }

    /// Reads the next frame or the close, waiting at most [`WAIT`].
    pub async fn recv(&mut self) -> Result<Incoming> {
        self.recv_within(WAIT)
            .await?
            .ok_or_else(|| anyhow!("nothing received within {WAIT:?}"))
    }

    /// Reads the next frame or the close; `None` if nothing arrived within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Incoming>> {
        match tokio::time::timeout(wait, self.read_one()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn read_one(&mut self) -> Result<Incoming> {
        match &mut self.transport {
            Transport::Tcp { stream, buf } => loop {
                if let Some(frame) = self.codec.decode(buf)? {
                    return Ok(Incoming::Frame(frame));
                }
                let n = match stream.read_buf(buf).await {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(e.into()),
                };
                if n == 0 {
                    if buf.has_remaining() {
                        bail!(
                            "connection closed inside a frame ({} bytes left)",
                            buf.len()
                        );
                    }
                    return Ok(Incoming::Closed);
                }
            },
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    None => return Ok(Incoming::Closed),
                    Some(Err(e)) => {
                        use tokio_tungstenite::tungstenite::Error as E;
                        return match e {
                            E::ConnectionClosed | E::AlreadyClosed | E::Protocol(_) | E::Io(_) => {
                                Ok(Incoming::Closed)
                            }
                            other => Err(other.into()),
                        };
                    }
                    Some(Ok(Message::Binary(data))) => {
                        return Ok(Incoming::Frame(Frame::decode_exact(data, usize::MAX - 16)?))
                    }
                    Some(Ok(Message::Text(text))) => {
                        bail!("server sent a text message: {text}")
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.close_frame = Some(frame.map(|frame| CloseFrame {
                            code: frame.code.into(),
                            reason: frame.reason.as_str().to_owned(),
                        }));
                        return Ok(Incoming::Closed);
                    }
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// Reads the next frame; fails on close or timeout.
    pub async fn recv_frame(&mut self) -> Result<Frame> {
        match self.recv().await? {
            Incoming::Frame(f) => Ok(f),
            Incoming::Closed => bail!("connection closed while a frame was expected"),
        }
    }

    /// Sends op 7 with the token (ver 1, seq 1) and waits for op 8.
    pub async fn auth(&mut self, token: &Token) -> Result<Frame> {
        self.auth_body(token.to_json()).await
    }

    /// Sends op 7 with `body` as it is (ver 1, seq 1), e.g. goim v1's bare
    /// decimal user id, and waits for op 8.
    pub async fn auth_body(&mut self, body: impl Into<Bytes>) -> Result<Frame> {
        self.send(&Frame::new(1, Op::Auth, 1, body.into())).await?;
        let reply = self.recv_frame().await?;
        if reply.op != Op::AuthReply.code() {
            bail!("expected auth reply (op 8), got op {}", reply.op);
        }
        Ok(reply)
    }

    /// Connects over TCP or WS and authenticates.
    pub async fn connect(addr: SocketAddr, ws: bool, token: &Token) -> Result<Client> {
        let mut client = if ws {
            Client::ws(addr).await?
        } else {
            Client::tcp(addr).await?
        };
        client.auth(token).await?;
        Ok(client)
    }

    /// Sends a heartbeat and returns the online count of the reply.
    /// Pushes that arrive first are kept for [`Client::next_push`].
    pub async fn heartbeat(&mut self, seq: i32) -> Result<i32> {
        self.send(&Frame::new(1, Op::Heartbeat, seq, Bytes::new()))
            .await?;
        let reply = self.reply_to(Op::HeartbeatReply, seq).await?;
        if reply.body.len() != 4 {
            bail!("heartbeat reply body of {} bytes", reply.body.len());
        }
        Ok(i32::from_be_bytes([
            reply.body[0],
            reply.body[1],
            reply.body[2],
            reply.body[3],
        ]))
    }

    /// Sends `op` with `body` and returns the reply with `reply_op` and the same seq,
    /// keeping pushes that arrive meanwhile.
    pub async fn request(
        &mut self,
        op: i32,
        seq: i32,
        body: &[u8],
        reply_op: i32,
    ) -> Result<Frame> {
        self.send(&Frame::new(1, op, seq, Bytes::copy_from_slice(body)))
            .await?;
        self.reply_to(Op::from(reply_op), seq).await
    }

    async fn reply_to(&mut self, op: Op, seq: i32) -> Result<Frame> {
        loop {
            let frame = self.recv_frame().await?;
            if frame.op == op.code() && frame.seq == seq {
                return Ok(frame);
            }
            self.stash_push(frame)?;
        }
    }

    fn stash_push(&mut self, frame: Frame) -> Result<()> {
        if self.is_ws() {
            if frame.op != Op::Raw.code() {
                bail!("websocket push not wrapped in op 9 (op {})", frame.op);
            }
            for inner in Frame::batch(frame.body) {
                self.pending.push_back(inner?);
            }
        } else {
            self.pending.push_back(frame);
        }
        Ok(())
    }

    /// The next pushed message (TCP: a bare frame; WS: the inner frames of op 9
    /// messages, one at a time), waiting at most `wait`.
    pub async fn next_push_within(&mut self, wait: Duration) -> Result<Option<Frame>> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        match self.recv_within(wait).await? {
            None => Ok(None),
            Some(Incoming::Closed) => bail!("connection closed while a push was expected"),
            Some(Incoming::Frame(frame)) => {
                self.stash_push(frame)?;
                Ok(self.pending.pop_front())
            }
        }
    }

    /// The next frame as a goim client sees the stream: on WebSocket the
    /// frames inside op 9 one at a time, and other frames (replies, IM ops
    /// 19, 20, 23) as they are; on TCP every frame. Pushes stashed by
    /// [`Client::request`] come first. `None` if nothing came within `wait`.
    pub async fn next_frame_within(&mut self, wait: Duration) -> Result<Option<Frame>> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(Some(f));
        }
        match self.recv_within(wait).await? {
            None => Ok(None),
            Some(Incoming::Closed) => bail!("connection closed while a frame was expected"),
            Some(Incoming::Frame(frame)) if self.is_ws() && frame.op == Op::Raw.code() => {
                for inner in Frame::batch(frame.body) {
                    self.pending.push_back(inner?);
                }
                Ok(self.pending.pop_front())
            }
            Some(Incoming::Frame(frame)) => Ok(Some(frame)),
        }
    }

    /// [`Client::next_frame_within`] [`WAIT`]; fails on timeout.
    pub async fn next_frame(&mut self) -> Result<Frame> {
        self.next_frame_within(WAIT)
            .await?
            .ok_or_else(|| anyhow!("no frame within {WAIT:?}"))
    }

    /// The next pushed message; fails after [`WAIT`].
    pub async fn next_push(&mut self) -> Result<Frame> {
        self.next_push_within(WAIT)
            .await?
            .ok_or_else(|| anyhow!("no push within {WAIT:?}"))
    }

    /// Asserts that no push arrives within `wait`.
    pub async fn expect_no_push(&mut self, wait: Duration) -> Result<()> {
        match self.next_push_within(wait).await? {
            None => Ok(()),
            Some(f) => bail!("unexpected push: op {} body {:?}", f.op, f.body),
        }
    }

    /// Waits until the server closes the connection (frames before it are ignored).
    pub async fn expect_closed(&mut self, wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Ok(Some(Incoming::Closed)) | Err(_) => return Ok(()),
                Ok(Some(Incoming::Frame(_))) => continue,
                Ok(None) => bail!("connection still open after {wait:?}"),
            }
        }
    }

    /// The close frame the WebSocket server sent, once a read returned
    /// [`Incoming::Closed`] for it; `None` before that, on TCP, when the
    /// connection ended without a close frame, or when the frame had no status.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.close_frame.as_ref()?.as_ref()
    }

    /// Waits at most `wait` for the server to close the WebSocket and returns
    /// its close frame. Fails if a frame arrives first, if the connection is
    /// still open after `wait`, or if it ended without a close frame carrying
    /// a status (or the client speaks TCP).
    pub async fn expect_ws_close(&mut self, wait: Duration) -> Result<CloseFrame> {
        if !self.is_ws() {
            bail!("expect_ws_close on a tcp client");
        }
        match self.recv_within(wait).await? {
            None => bail!("connection still open after {wait:?}"),
            Some(Incoming::Frame(frame)) => {
                bail!("frame (op {}) before the close", frame.op)
            }
            Some(Incoming::Closed) => match &self.close_frame {
                Some(Some(frame)) => Ok(frame.clone()),
                Some(None) => bail!("close frame without a status code"),
                None => bail!("connection ended without a close frame"),
            },
        }
    }

    /// Reads raw bytes from a TCP connection until `n` bytes arrived (for byte-exact checks).
    pub async fn read_exact_tcp(&mut self, n: usize) -> Result<Bytes> {
        let Transport::Tcp { stream, buf } = &mut self.transport else {
            bail!("read_exact_tcp on a websocket client");
        };
        while buf.len() < n {
            let read = tokio::time::timeout(WAIT, stream.read_buf(buf))
                .await
                .context("timed out reading raw bytes")??;
            if read == 0 {
                bail!("closed after {} of {n} bytes", buf.len());
            }
        }
        Ok(buf.split_to(n).freeze())
    }

    /// Reads the next WebSocket binary message's payload as is.
    pub async fn read_ws_message(&mut self) -> Result<Bytes> {
        let Transport::Ws(ws) = &mut self.transport else {
            bail!("read_ws_message on a tcp client");
        };
        loop {
            let msg = tokio::time::timeout(WAIT, ws.next())
                .await
                .context("timed out waiting for a websocket message")?
                .ok_or_else(|| anyhow!("websocket closed"))??;
            match msg {
                Message::Binary(data) => return Ok(data),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => bail!("unexpected websocket message {other:?}"),
            }
        }
    }
}
