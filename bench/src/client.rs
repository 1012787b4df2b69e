//! One bench client: connect (TCP or WebSocket, from a chosen source
//! address), authenticate with op 7, then read pushes until told to stop,
//! heartbeating to stay alive.
//!
//! Memory per client is kept small: a TCP client holds no read buffer while
//! idle, a WebSocket client a 4 KiB one; received sequence numbers go into a
//! bitset that stays empty until pushes arrive.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use rim_proto::{Frame, FrameCodec, Op};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

/// Connect plus handshake deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Histogram shards (fewer lock collisions between client tasks).
const SHARDS: usize = 8;

/// Wall clock in nanoseconds since the Unix epoch (the payload timestamp).
pub(crate) fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A new latency histogram in nanoseconds (1 ns to 10 min, 3 significant digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// Counters and histograms every client task writes to.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) ready: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    /// Push frames whose body was not a bench payload.
    pub(crate) foreign: AtomicU64,
    pub(crate) last_receipt_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency: Vec<Mutex<Histogram<u64>>>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            last_receipt_ns: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    pub(crate) fn note_error(&self, e: &anyhow::Error) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().clone()
    }

    /// All delivery latencies merged.
    pub(crate) fn latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.latency {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
        all
    }
}

/// Bitset of the push sequence numbers one client received.
#[derive(Debug, Default)]
pub(crate) struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Inserts `seq`; false if it was already there.
    pub(crate) fn insert(&mut self, seq: u32) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let had = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !had
    }

    pub(crate) fn contains(&self, seq: u32) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// What every client shares: addresses, protocol settings, progress.
#[derive(Debug)]
pub(crate) struct ClientConfig {
    pub(crate) tcp: SocketAddr,
    pub(crate) ws: SocketAddr,
    pub(crate) op: i32,
    pub(crate) heartbeat: Duration,
    pub(crate) progress: ProgressBar,
}

/// One client's identity.
#[derive(Debug)]
pub(crate) struct ClientSpec {
    /// 1-based; also the client's mid.
    pub(crate) index: u32,
    pub(crate) ws: bool,
    pub(crate) room: String,
    pub(crate) source: Option<IpAddr>,
}

/// What a client hands back when it stops.
#[derive(Debug)]
pub(crate) struct ClientOutcome {
    pub(crate) index: u32,
    pub(crate) ready: bool,
    pub(crate) seqs: SeqSet,
}

enum Conn {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// Runs one client until `stop` is cancelled (or it fails / is disconnected).
pub(crate) async fn run(
    spec: ClientSpec,
    cfg: Arc<ClientConfig>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> ClientOutcome {
    let mut outcome = ClientOutcome {
        index: spec.index,
        ready: false,
        seqs: SeqSet::default(),
    };
    let conn = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&spec, &cfg)) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                shared.note_error(&e.context(format!("client {}", spec.index)));
                return outcome;
            }
            Err(_) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                shared.note_error(&anyhow::anyhow!(
                    "client {}: connect and auth took over {CONNECT_TIMEOUT:?}",
                    spec.index
                ));
                return outcome;
            }
        },
        _ = stop.cancelled() => return outcome,
    };
    outcome.ready = true;
    shared.ready.fetch_add(1, Ordering::Relaxed);
    cfg.progress.inc(1);
    let result = read_loop(conn, &spec, &cfg, &shared, &stop, &mut outcome.seqs).await;
    if let Err(e) = result {
        shared.disconnected.fetch_add(1, Ordering::Relaxed);
        shared.note_error(&e.context(format!("client {}", spec.index)));
    }
    outcome
}

fn token(spec: &ClientSpec, op: i32) -> Bytes {
    serde_json::json!({
        "mid": spec.index,
        "key": format!("bench-{}", spec.index),
        "room_id": spec.room,
        "platform": "bench",
        "accepts": [op],
    })
    .to_string()
    .into()
}

/// A TCP connection to `target`, from `source` when given, with Nagle off.
pub(crate) async fn dial(target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
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
pub(crate) async fn ws_upgrade(
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

async fn connect(spec: &ClientSpec, cfg: &ClientConfig) -> anyhow::Result<Conn> {
    let target = if spec.ws { cfg.ws } else { cfg.tcp };
    let stream = dial(target, spec.source).await?;
    let auth = Frame::new(1, Op::Auth, 1, token(spec, cfg.op)).to_bytes();
    if spec.ws {
        let mut ws = ws_upgrade(stream, target).await?;
        ws.send(Message::Binary(auth)).await.context("send auth")?;
        loop {
            let msg = ws
                .next()
                .await
                .context("connection closed before the auth reply")?
                .context("read auth reply")?;
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::from(t.as_str().to_owned()),
                Message::Close(_) => bail!("the server closed the connection during auth"),
                _ => continue,
            };
            let frame = Frame::decode_exact(data, usize::MAX).context("decode auth reply")?;
            if frame.op == Op::AuthReply.code() {
                return Ok(Conn::Ws(Box::new(ws)));
            }
        }
    } else {
        let mut stream = stream;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(&auth).await.context("send auth")?;
        let mut codec = FrameCodec::new(usize::MAX);
        let mut buf = BytesMut::with_capacity(64);
        loop {
            while let Some(frame) = codec.decode(&mut buf).context("decode auth reply")? {
                if frame.op == Op::AuthReply.code() {
                    if !buf.is_empty() {
                        bail!("data after the auth reply before any push");
                    }
                    return Ok(Conn::Tcp(stream));
                }
            }
            buf.reserve(256);
            if stream.read_buf(&mut buf).await.context("read auth reply")? == 0 {
                bail!("connection closed before the auth reply");
            }
        }
    }
}

fn on_frame(frame: Frame, cfg: &ClientConfig, shared: &Shared, seqs: &mut SeqSet) {
    if frame.op == Op::Raw.code() {
        for inner in Frame::batch(frame.body) {
            match inner {
                Ok(f) => on_frame(f, cfg, shared, seqs),
                Err(_) => {
                    shared.foreign.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        return;
    }
    if frame.op != cfg.op {
        return; // heartbeat replies and anything else
    }
    let now = unix_nanos();
    let mut parts = frame.body.split(|b| *b == b':');
    let sent = parts
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|s| s.parse::<u64>().ok());
    let seq = parts
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|s| s.parse::<u32>().ok());
    let (Some(sent), Some(seq)) = (sent, seq) else {
        shared.foreign.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if !seqs.insert(seq) {
        shared.duplicates.fetch_add(1, Ordering::Relaxed);
        return;
    }
    shared.delivered.fetch_add(1, Ordering::Relaxed);
    shared.last_receipt_ns.fetch_max(now, Ordering::Relaxed);
    let shard = (seq as usize) % SHARDS;
    let _ = shared.latency[shard]
        .lock()
        .record(now.saturating_sub(sent).max(1));
}

async fn read_loop(
    conn: Conn,
    spec: &ClientSpec,
    cfg: &ClientConfig,
    shared: &Shared,
    stop: &CancellationToken,
    seqs: &mut SeqSet,
) -> anyhow::Result<()> {
    // Spread heartbeats over the period instead of sending them all at once.
    let period = cfg.heartbeat.max(Duration::from_millis(100));
    let phase = Duration::from_millis(u64::from(spec.index) % period.as_millis().max(1) as u64);
    let mut heartbeat = tokio::time::interval_at(Instant::now() + phase, period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hb = Frame::new(1, Op::Heartbeat, 2, Bytes::new()).to_bytes();
    match conn {
        Conn::Tcp(mut stream) => {
            use tokio::io::AsyncWriteExt;
            let mut codec = FrameCodec::new(usize::MAX);
            let mut buf = BytesMut::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = heartbeat.tick() => {
                        stream.write_all(&hb).await.context("send heartbeat")?;
                    }
                    r = stream.readable() => {
                        r.context("wait for data")?;
                        if buf.capacity() - buf.len() < 1024 {
                            buf.reserve(4096);
                        }
                        match stream.try_read_buf(&mut buf) {
                            Ok(0) => bail!("the server closed the connection"),
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(e) => return Err(e).context("read"),
                        }
                        while let Some(frame) = codec.decode(&mut buf).context("decode push")? {
                            on_frame(frame, cfg, shared, seqs);
                        }
                        if buf.is_empty() {
                            // Give the buffer back while idle.
                            buf = BytesMut::new();
                        }
                    }
                }
            }
        }
        Conn::Ws(mut ws) => loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = heartbeat.tick() => {
                    ws.send(Message::Binary(hb.clone())).await.context("send heartbeat")?;
                }
                msg = ws.next() => {
                    let msg = msg.context("the server closed the connection")?.context("read")?;
                    let data = match msg {
                        Message::Binary(b) => b,
                        Message::Text(t) => Bytes::from(t.as_str().to_owned()),
                        Message::Close(_) => bail!("the server closed the WebSocket"),
                        _ => continue,
                    };
                    let frame = Frame::decode_exact(data, usize::MAX).context("decode push")?;
                    on_frame(frame, cfg, shared, seqs);
                }
            }
        },
    }
}
