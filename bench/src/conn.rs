//! One client connection on the wire, for every kind of bench client:
//! dialing (from a chosen source address, Nagle off), the WebSocket upgrade
//! at `/sub`, the op 7 → op 8 handshake, frames in and out over TCP or
//! WebSocket with op 9 batches opened, and the heartbeat timer.
//!
//! What the frames mean is not owned here: the goim push client
//! (`client`), the IM client (`im_client`) and the chat client
//! (`chat_client`) each read their own. Memory per connection is kept
//! small: a TCP connection holds no read buffer while idle, a WebSocket one
//! a 4 KiB buffer.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rim_proto::{Frame, FrameCodec, Op};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::codec::Decoder;

/// Connect plus handshake deadline.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how one client connects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    /// The server's TCP or WebSocket client address.
    pub(crate) target: SocketAddr,
    /// WebSocket (`ws://target/sub`) rather than TCP.
    pub(crate) ws: bool,
    /// The local address to connect from; `None`: the kernel chooses.
    pub(crate) source: Option<IpAddr>,
}

/// `connect` under [`CONNECT_TIMEOUT`].
pub(crate) async fn within_timeout<T>(
    connect: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "connect and auth took over {CONNECT_TIMEOUT:?}"
            ))
        })
}

/// A TCP connection to `target`, from `source` when given, with Nagle off.
async fn dial(target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("create socket")?;
    if let Some(src) = source {
        socket
            .bind(SocketAddr::new(src, 0))
            .with_context(|| format!("bind source address {src}"))?;
    }
    let stream = socket
        .connect(target)
        .await
        .with_context(|| format!("connect to {target}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The WebSocket upgrade at `ws://target/sub`, with small buffers.
async fn ws_upgrade(
    stream: TcpStream,
    target: SocketAddr,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{target}/sub"),
        stream,
        Some(config),
    )
    .await
    .with_context(|| format!("WebSocket upgrade at ws://{target}/sub"))?;
    Ok(ws)
}

/// One client connection carrying goim frames.
pub(crate) struct Conn {
    io: Io,
}

enum Io {
    Tcp {
        stream: TcpStream,
        buf: BytesMut,
        codec: FrameCodec,
    },
    Ws(Box<WebSocketStream<TcpStream>>),
}

impl Conn {
    /// Dials `route` and, for WebSocket, upgrades.
    pub(crate) async fn open(route: Route) -> anyhow::Result<Conn> {
        let stream = dial(route.target, route.source).await?;
        let io = if route.ws {
            Io::Ws(Box::new(ws_upgrade(stream, route.target).await?))
        } else {
            Io::Tcp {
                stream,
                buf: BytesMut::new(),
                codec: FrameCodec::new(usize::MAX),
            }
        };
        Ok(Conn { io })
    }

    /// Sends op 7 with `token`, then reads until op 8; answers the frames
    /// that came after op 8 in the same read (on TCP the server's next
    /// frames may).
    pub(crate) async fn auth(&mut self, token: &serde_json::Value) -> anyhow::Result<Vec<Frame>> {
        let auth = Frame::new(1, Op::Auth, 1, Bytes::from(token.to_string()));
        self.send(auth.to_bytes()).await.context("send auth")?;
        let mut frames = Vec::new();
        loop {
            self.read(&mut frames)
                .await
                .context("read the auth reply")?;
            if let Some(at) = frames.iter().position(|f| f.op == Op::AuthReply.code()) {
                return Ok(frames.split_off(at + 1));
            }
            frames.clear();
        }
    }

    /// Writes one encoded frame.
    pub(crate) async fn send(&mut self, frame: Bytes) -> anyhow::Result<()> {
        match &mut self.io {
            Io::Tcp { stream, .. } => stream.write_all(&frame).await.context("write"),
            Io::Ws(ws) => ws.send(Message::Binary(frame)).await.context("write"),
        }
    }

    /// Reads at least one frame into `out`, op 9 bodies flattened.
    /// Cancel-safe: nothing is consumed before the only await completes.
    pub(crate) async fn read(&mut self, out: &mut Vec<Frame>) -> anyhow::Result<()> {
        match &mut self.io {
            Io::Tcp { stream, buf, codec } => loop {
                let before = out.len();
                while let Some(frame) = codec.decode(buf).context("decode frame")? {
                    flatten(frame, out)?;
                }
                if buf.is_empty() {
                    // Give the buffer back while idle.
                    *buf = BytesMut::new();
                }
                if out.len() > before {
                    return Ok(());
                }
                stream.readable().await.context("wait for data")?;
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(4096);
                }
                match stream.try_read_buf(buf) {
                    Ok(0) => bail!("the server closed the connection"),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e).context("read"),
                }
            },
            Io::Ws(ws) => loop {
                let msg = ws
                    .next()
                    .await
                    .context("the server closed the connection")?
                    .context("read")?;
                let data = match msg {
                    Message::Binary(b) => b,
                    Message::Text(t) => Bytes::from(t.as_str().to_owned()),
                    Message::Close(_) => bail!("the server closed the WebSocket"),
                    _ => continue,
                };
                let frame = Frame::decode_exact(data, usize::MAX).context("decode frame")?;
                return flatten(frame, out);
            },
        }
    }
}

fn flatten(frame: Frame, out: &mut Vec<Frame>) -> anyhow::Result<()> {
    if frame.op == Op::Raw.code() {
        for inner in Frame::batch(frame.body) {
            out.push(inner.context("decode a frame inside op 9")?);
        }
    } else {
        out.push(frame);
    }
    Ok(())
}

/// A connection's heartbeat (op 2) timer.
pub(crate) struct Heartbeat {
    interval: Interval,
    frame: Bytes,
}

impl Heartbeat {
    /// Beats every `period` (at least 100 ms), the first one `client` ms
    /// into the period (mod the period), so that clients spread their
    /// heartbeats over it instead of sending them all at once.
    pub(crate) fn new(period: Duration, client: u32) -> Heartbeat {
        let period = period.max(Duration::from_millis(100));
        let phase = Duration::from_millis(u64::from(client) % period.as_millis().max(1) as u64);
        let mut interval = tokio::time::interval_at(Instant::now() + phase, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeat {
            interval,
            frame: Frame::new(1, Op::Heartbeat, 2, Bytes::new()).to_bytes(),
        }
    }

    /// Waits until the next heartbeat is due.
    pub(crate) async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// The encoded op 2 frame.
    pub(crate) fn frame(&self) -> Bytes {
        self.frame.clone()
    }
}
