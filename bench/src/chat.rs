//! `rim bench chat`: client-to-client messages (rim's chat, issue 12). IM
//! sessions send op 4 `{"to" | "room", "op", "id", "body"}`; the server
//! answers op 5 `{"id", "code"}` (echoing the header seq) and delivers the
//! envelope `{"from", "to" | "room", "id", "ts", "body"}` with op = the
//! message's op.
//!
//! - `--chat-mode peer`: `-c` clients in pairs, sender i → receiver P + i
//!   (P = c / 2 pairs); every message the server accepted (op 5 code 0)
//!   must reach its receiver exactly once.
//! - `--chat-mode room`: `-c` clients in one room; mids 1..=--senders send
//!   `{"room"}` messages; every accepted message must reach every member
//!   (the sender too).
//!
//! The senders share `--rate` (messages per second, in total), each on its
//! own fixed schedule, with at most `--window` op 4 awaiting their op 5: a
//! tick that finds the window full is skipped (counted), so a high rate
//! measures the most the server accepts. The body is the send time
//! (`"<unix nanos>"`), the id `<run tag>-<n>` (the tag keeps ids unique across
//! runs: a resent id is stored once) and op 4's header seq is n.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rim_proto::{Frame, FrameCodec, Op};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::client::{dial, new_histogram, unix_nanos, ws_upgrade, SeqSet};
use super::procfs;
use super::report::{fmt_lat, latency_json, latency_svg, per_sec, Settings};
use super::run::{resolve, Probe};
use super::BenchArgs;

/// What `rim bench chat` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChatMode {
    /// One-to-one: -c clients in pairs, sender i to receiver c/2 + i.
    Peer,
    /// One room: -c members, --senders of them send to the room.
    Room,
}

impl ChatMode {
    fn name(self) -> &'static str {
        match self {
            ChatMode::Peer => "peer",
            ChatMode::Room => "room",
        }
    }
}

/// Connect plus handshake deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Latency histogram shards.
const SHARDS: usize = 8;
/// Room senders when --senders is not given.
const DEFAULT_ROOM_SENDERS: u32 = 20;
/// The comet's default `max_frames_per_sec`; a sender above it is cut off.
const COMET_FRAMES_PER_SEC: f64 = 50.0;

/// Counters and histograms every client writes to.
#[derive(Debug)]
struct Shared {
    ready: AtomicU64,
    failed: AtomicU64,
    disconnected: AtomicU64,
    /// op 4 sent.
    sent: AtomicU64,
    /// Send ticks skipped because the window was full.
    skipped: AtomicU64,
    /// op 5 with code 0.
    accepted: AtomicU64,
    /// op 5 with another code.
    refused: AtomicU64,
    /// First arrivals at an intended recipient.
    delivered: AtomicU64,
    duplicates: AtomicU64,
    /// Peer: the sender's own copy (its mailbox holds what it sent).
    own_copies: AtomicU64,
    /// Frames of the message op that are not this run's messages.
    foreign: AtomicU64,
    last_receipt_ns: AtomicU64,
    codes: Mutex<BTreeMap<i64, u64>>,
    first_error: Mutex<Option<String>>,
    latency: Vec<Mutex<Histogram<u64>>>,
    reply_latency: Vec<Mutex<Histogram<u64>>>,
}

impl Shared {
    fn new() -> Shared {
        let shards = || (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect();
        Shared {
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            own_copies: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            last_receipt_ns: AtomicU64::new(0),
            codes: Mutex::new(BTreeMap::new()),
            first_error: Mutex::new(None),
            latency: shards(),
            reply_latency: shards(),
        }
    }

    fn note_error(&self, e: &anyhow::Error) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }

    fn merged(shards: &[Mutex<Histogram<u64>>]) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in shards {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
        all
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What every client shares.
#[derive(Debug)]
struct Plan {
    mode: ChatMode,
    tcp: SocketAddr,
    ws: SocketAddr,
    op: i32,
    heartbeat: Duration,
    /// `TYPE://0`, the room every client joins.
    room: String,
    /// Keeps message ids unique across runs against one server.
    tag: String,
    /// Peer: pairs; room: sending members.
    senders: u32,
    /// Between one sender's messages.
    interval: Duration,
    duration: Duration,
    window: usize,
    progress: ProgressBar,
}

/// One client's identity and role.
#[derive(Debug)]
struct Spec {
    mid: u32,
    ws: bool,
    source: Option<IpAddr>,
    /// 0-based index among the senders, if it sends.
    sender: Option<u32>,
}

/// What a client hands back.
#[derive(Debug)]
struct Outcome {
    mid: u32,
    ready: bool,
    /// n of the messages it sent that op 5 accepted.
    accepted: Vec<u32>,
    /// Per sender index (peer: its partner only, index 0): the n received.
    received: Vec<SeqSet>,
}

/// op 5's body.
#[derive(Debug, Deserialize)]
struct Reply {
    code: i64,
}

/// The delivered envelope (the fields the bench reads).
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    from: u64,
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    body: &'a str,
}

enum Io {
    Tcp {
        stream: TcpStream,
        buf: BytesMut,
        codec: FrameCodec,
    },
    Ws(Box<WebSocketStream<TcpStream>>),
}

impl Io {
    async fn send(&mut self, frame: Bytes) -> anyhow::Result<()> {
        match self {
            Io::Tcp { stream, .. } => {
                use tokio::io::AsyncWriteExt;
                stream.write_all(&frame).await.context("write")
            }
            Io::Ws(ws) => ws.send(Message::Binary(frame)).await.context("write"),
        }
    }

    /// Reads at least one frame into `out`, op 9 bodies flattened.
    /// Cancel-safe: nothing is consumed before the only await completes.
    async fn read(&mut self, out: &mut Vec<Frame>) -> anyhow::Result<()> {
        match self {
            Io::Tcp { stream, buf, codec } => loop {
                let before = out.len();
                while let Some(frame) = codec.decode(buf).context("decode frame")? {
                    flatten(frame, out)?;
                }
                if out.len() > before {
                    return Ok(());
                }
                stream.readable().await.context("wait for data")?;
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8192);
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

/// One client's life: connect, then read, heartbeat and (a sender) send on
/// its schedule until `stop`.
struct Client {
    spec: Spec,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    /// op 4 awaiting op 5: n → sent at.
    in_flight: HashMap<u32, Instant>,
    accepted: Vec<u32>,
    received: Vec<SeqSet>,
}

impl Client {
    fn outcome(self, ready: bool) -> Outcome {
        Outcome {
            mid: self.spec.mid,
            ready,
            accepted: self.accepted,
            received: self.received,
        }
    }

    async fn run(
        mut self,
        mut start: watch::Receiver<Option<Instant>>,
        stop: CancellationToken,
    ) -> Outcome {
        let connected = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, self.connect()) => {
                r.unwrap_or_else(|_| Err(anyhow::anyhow!("connect and auth took over {CONNECT_TIMEOUT:?}")))
            }
            _ = stop.cancelled() => return self.outcome(false),
        };
        let (mut io, mut frames) = match connected {
            Ok(c) => c,
            Err(e) => {
                bump(&self.shared.failed);
                self.shared
                    .note_error(&e.context(format!("client {}", self.spec.mid)));
                return self.outcome(false);
            }
        };
        bump(&self.shared.ready);
        self.plan.progress.inc(1);
        let result = self.serve(&mut io, &mut frames, &mut start, &stop).await;
        if let Err(e) = result {
            if !stop.is_cancelled() {
                bump(&self.shared.disconnected);
                self.shared
                    .note_error(&e.context(format!("client {}", self.spec.mid)));
            }
        }
        self.outcome(true)
    }

    async fn connect(&mut self) -> anyhow::Result<(Io, Vec<Frame>)> {
        let plan = Arc::clone(&self.plan);
        let target = if self.spec.ws { plan.ws } else { plan.tcp };
        let stream = dial(target, self.spec.source).await?;
        let mut io = if self.spec.ws {
            Io::Ws(Box::new(ws_upgrade(stream, target).await?))
        } else {
            Io::Tcp {
                stream,
                buf: BytesMut::new(),
                codec: FrameCodec::new(usize::MAX),
            }
        };
        let mut token = json!({
            "mid": self.spec.mid,
            "key": format!("chat-{}-{}", plan.tag, self.spec.mid),
            "platform": "bench",
            "im": true,
        });
        if plan.mode == ChatMode::Room {
            token["room_id"] = json!(plan.room);
        }
        io.send(Frame::new(1, Op::Auth, 1, Bytes::from(token.to_string())).to_bytes())
            .await
            .context("send auth")?;
        let mut frames = Vec::new();
        loop {
            io.read(&mut frames).await.context("read the auth reply")?;
            if let Some(at) = frames.iter().position(|f| f.op == Op::AuthReply.code()) {
                // On TCP later frames may come in the same read.
                let rest = frames.split_off(at + 1);
                return Ok((io, rest));
            }
            frames.clear();
        }
    }

    /// The op 4 body prefix up to the id, for this sender's target.
    fn target_json(&self, sender: u32) -> String {
        match self.plan.mode {
            ChatMode::Peer => format!(
                "{{\"to\":{},\"op\":{}",
                self.plan.senders + sender + 1,
                self.plan.op
            ),
            ChatMode::Room => format!(
                "{{\"room\":{},\"op\":{}",
                Value::String(self.plan.room.clone()),
                self.plan.op
            ),
        }
    }

    async fn serve(
        &mut self,
        io: &mut Io,
        frames: &mut Vec<Frame>,
        start: &mut watch::Receiver<Option<Instant>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let plan = Arc::clone(&self.plan);
        let period = plan.heartbeat.max(Duration::from_millis(100));
        let phase =
            Duration::from_millis(u64::from(self.spec.mid) % period.as_millis().max(1) as u64);
        let mut heartbeat = tokio::time::interval_at(Instant::now() + phase, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hb = Frame::new(1, Op::Heartbeat, 0, Bytes::new()).to_bytes();
        for frame in std::mem::take(frames) {
            self.on_frame(frame);
        }
        let prefix = self.spec.sender.map(|s| self.target_json(s));
        // (next send, end of sending) once the start is known.
        let mut schedule: Option<(Instant, Instant)> = None;
        let mut waiting = prefix.is_some();
        let mut n: u32 = 0;
        loop {
            let next_send = async {
                match schedule {
                    Some((next, _)) => tokio::time::sleep_until(next).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = io.read(frames) => {
                    r?;
                    for frame in frames.drain(..) {
                        self.on_frame(frame);
                    }
                }
                _ = heartbeat.tick() => io.send(hb.clone()).await.context("send heartbeat")?,
                r = start.changed(), if waiting => {
                    if r.is_err() {
                        waiting = false;
                        continue;
                    }
                    if let (Some(t0), Some(s)) = (*start.borrow(), self.spec.sender) {
                        waiting = false;
                        // Senders spread evenly over one interval.
                        let offset = plan.interval.mul_f64(f64::from(s) / f64::from(plan.senders));
                        schedule = Some((t0 + offset, t0 + plan.duration));
                    }
                }
                () = next_send => {
                    let Some((next, end)) = schedule else { continue };
                    let Some(prefix) = prefix.as_deref() else { continue };
                    let now = Instant::now();
                    // Ticks missed entirely (the bench was late) are skipped.
                    let mut due = next;
                    while due + plan.interval <= now {
                        due += plan.interval;
                        bump(&self.shared.skipped);
                    }
                    if self.in_flight.len() >= plan.window {
                        bump(&self.shared.skipped);
                    } else {
                        n += 1;
                        let body = format!(
                            "{prefix},\"id\":\"{}-{n}\",\"body\":\"{}\"}}",
                            plan.tag,
                            unix_nanos()
                        );
                        let seq = i32::try_from(n).unwrap_or(i32::MAX);
                        self.in_flight.insert(n, Instant::now());
                        io.send(Frame::new(1, Op::SendMsg, seq, Bytes::from(body)).to_bytes())
                            .await
                            .context("send op 4")?;
                        bump(&self.shared.sent);
                    }
                    let next = due + plan.interval;
                    schedule = (next < end).then_some((next, end));
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        if frame.op == Op::SendMsgReply.code() {
            self.on_reply(&frame);
        } else if frame.op == self.plan.op {
            self.on_message(&frame);
        }
        // Heartbeat replies and anything else: ignored.
    }

    fn on_reply(&mut self, frame: &Frame) {
        let shared = &*self.shared;
        let Ok(n) = u32::try_from(frame.seq) else {
            bump(&shared.foreign);
            return;
        };
        let Some(sent) = self.in_flight.remove(&n) else {
            bump(&shared.foreign);
            return;
        };
        let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = shared.reply_latency[self.spec.mid as usize % SHARDS]
            .lock()
            .record(nanos.max(1));
        let code = serde_json::from_slice::<Reply>(&frame.body).map_or(-1, |r| r.code);
        if code == 0 {
            self.accepted.push(n);
            bump(&shared.accepted);
        } else {
            bump(&shared.refused);
            *shared.codes.lock().entry(code).or_default() += 1;
        }
    }

    fn on_message(&mut self, frame: &Frame) {
        let now = unix_nanos();
        let shared = &*self.shared;
        let Ok(env) = serde_json::from_slice::<Envelope>(&frame.body) else {
            bump(&shared.foreign);
            return;
        };
        let n = env
            .id
            .rsplit_once('-')
            .filter(|(tag, _)| *tag == self.plan.tag)
            .and_then(|(_, n)| n.parse::<u32>().ok());
        let sent = env.body.parse::<u64>().ok();
        let (Some(n), Some(sent)) = (n, sent) else {
            bump(&shared.foreign);
            return;
        };
        let from = u32::try_from(env.from).unwrap_or(0);
        let index = match self.plan.mode {
            ChatMode::Peer => {
                if Some(from) == self.spec.mid.checked_sub(self.plan.senders) && from > 0 {
                    0
                } else if from == self.spec.mid {
                    bump(&shared.own_copies);
                    return;
                } else {
                    bump(&shared.foreign);
                    return;
                }
            }
            ChatMode::Room => {
                if from == 0 || from > self.plan.senders {
                    bump(&shared.foreign);
                    return;
                }
                from as usize - 1
            }
        };
        let Some(set) = self.received.get_mut(index) else {
            bump(&shared.foreign);
            return;
        };
        if !set.insert(n) {
            bump(&shared.duplicates);
            return;
        }
        bump(&shared.delivered);
        let _ = shared.latency[self.spec.mid as usize % SHARDS]
            .lock()
            .record(now.saturating_sub(sent).max(1));
        shared.last_receipt_ns.fetch_max(now, Ordering::Relaxed);
    }
}

/// Runs `rim bench chat`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mode = args.chat_mode;
    let n = args.connections;
    if !(0.0..=1.0).contains(&args.ws_ratio) {
        bail!("--ws-ratio must be between 0 and 1");
    }
    if args.ramp_rate <= 0.0 || args.rate <= 0.0 {
        bail!("--ramp-rate and --rate must be positive");
    }
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let senders = match mode {
        ChatMode::Peer => {
            if args.senders.is_some() {
                bail!("--chat-mode peer: the senders are half of -c (pairs); leave out --senders");
            }
            if n < 2 || !n.is_multiple_of(2) {
                bail!("--chat-mode peer needs an even -c of at least 2 (sender, receiver pairs)");
            }
            n / 2
        }
        ChatMode::Room => {
            let s = args.senders.unwrap_or(DEFAULT_ROOM_SENDERS);
            if s == 0 || s > n {
                bail!("--senders must be between 1 and -c ({n})");
            }
            s
        }
    };
    let per_sender = args.rate / f64::from(senders);
    if per_sender > COMET_FRAMES_PER_SEC * 0.9 {
        eprintln!(
            "warning: {per_sender:.1} messages/s per sender; the comet cuts off a connection \
             over comet.max_frames_per_sec (default 50): use more clients"
        );
    }
    let tcp = resolve(&args.tcp, "tcp").await?;
    let ws = resolve(&args.ws, "ws").await?;

    let want = u64::from(n) + 256;
    let limit = rlimit::increase_nofile_limit(want.max(65_536)).context("raise RLIMIT_NOFILE")?;
    if limit < want {
        bail!(
            "RLIMIT_NOFILE is {limit} (the hard limit), but {n} clients need about {want}; \
             raise the hard limit (ulimit -Hn) or use fewer clients"
        );
    }
    let probe = Probe {
        pid: args.server_pid.map(|p| p.to_string()),
        ticks: procfs::clock_ticks(),
    };
    let before_connect = probe.sample()?;

    let loopback = |a: SocketAddr| matches!(a.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let sources = if args.source_addrs > 0 && loopback(tcp) && loopback(ws) {
        usize::from(args.source_addrs.min(250))
    } else {
        0
    };
    let progress = ProgressBar::new(u64::from(n));
    progress.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:40}] {pos}/{len} conns ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.set_message("connecting");
    let plan = Arc::new(Plan {
        mode,
        tcp,
        ws,
        op: args.operation,
        heartbeat: args.heartbeat,
        room: format!("{}://0", args.room_type),
        tag: format!("b{:x}", unix_nanos() % (1 << 48)),
        senders,
        interval: Duration::from_secs_f64(1.0 / per_sender),
        duration: args.duration,
        window: args.window as usize,
        progress: progress.clone(),
    });
    let shared = Arc::new(Shared::new());
    let stop = CancellationToken::new();
    let (start_tx, start_rx) = watch::channel(None);
    let mut clients: Vec<JoinHandle<Outcome>> = Vec::with_capacity(n as usize);
    let ramp_start = Instant::now();
    for i in 1..=n {
        let due = ramp_start + Duration::from_secs_f64(f64::from(i - 1) / args.ramp_rate);
        tokio::time::sleep_until(due).await;
        let ws_client =
            (f64::from(i) * args.ws_ratio).floor() != (f64::from(i - 1) * args.ws_ratio).floor();
        let source = (sources > 0).then(|| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + ((i as usize - 1) % sources) as u8,
            ))
        });
        let sender = (i <= senders).then(|| i - 1);
        let sets = match mode {
            ChatMode::Peer => usize::from(i > senders),
            ChatMode::Room => senders as usize,
        };
        let client = Client {
            spec: Spec {
                mid: i,
                ws: ws_client,
                source,
                sender,
            },
            plan: plan.clone(),
            shared: shared.clone(),
            in_flight: HashMap::new(),
            accepted: Vec::new(),
            received: (0..sets).map(|_| SeqSet::default()).collect(),
        };
        clients.push(tokio::spawn(client.run(start_rx.clone(), stop.clone())));
    }
    drop(start_rx);
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    while count(&shared.ready) + count(&shared.failed) < u64::from(n)
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    let ready = count(&shared.ready);
    let failed = count(&shared.failed);
    progress.finish_with_message("connected");
    eprintln!("{ready} of {n} IM clients connected in {ramp_secs:.1}s ({failed} failed)");
    if let Some(e) = shared.first_error.lock().clone() {
        eprintln!("first client error: {e}");
    }
    if ready == 0 {
        bail!("no client could connect; is rim running at --tcp/--ws?");
    }
    tokio::time::sleep(args.settle).await;
    let after_connect = probe.sample()?;

    // Send phase.
    let bench_start = procfs::sample("self", probe.ticks).ok();
    let push_start_unix = unix_nanos();
    let t0 = Instant::now();
    eprintln!(
        "{senders} senders, {:.0} messages/s in total ({per_sender:.2}/s each), for {:?}",
        args.rate, args.duration
    );
    let _ = start_tx.send(Some(t0));
    let status = ProgressBar::new_spinner();
    while t0.elapsed() < args.duration {
        status.set_message(format!(
            "sent {} accepted {} delivered {}",
            count(&shared.sent),
            count(&shared.accepted),
            count(&shared.delivered)
        ));
        status.tick();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    status.finish_and_clear();
    let send_secs = t0.elapsed().as_secs_f64();
    eprintln!("draining for {:?}", args.drain);
    tokio::time::sleep(args.drain).await;
    let after_push = probe.sample()?;
    let bench_end = procfs::sample("self", probe.ticks).ok();
    stop.cancel();
    let mut outcomes = Vec::with_capacity(clients.len());
    for c in clients {
        outcomes.push(c.await.context("client task")?);
    }

    // Losses: every accepted message at every recipient that connected.
    let mut accepted_by: Vec<Vec<u32>> = vec![Vec::new(); senders as usize];
    for o in &outcomes {
        if o.mid <= senders {
            accepted_by[o.mid as usize - 1] = o.accepted.clone();
        }
    }
    let mut expected = 0u64;
    let mut lost = 0u64;
    let mut recipients_short = 0u64;
    let mut unconfirmed = 0u64;
    for o in outcomes.iter().filter(|o| o.ready) {
        let from: Vec<usize> = match mode {
            ChatMode::Peer if o.mid > senders => vec![(o.mid - senders) as usize - 1],
            ChatMode::Peer => Vec::new(),
            ChatMode::Room => (0..senders as usize).collect(),
        };
        let mut short = false;
        for (k, s) in from.iter().enumerate() {
            let set = match mode {
                ChatMode::Peer => o.received.first(),
                ChatMode::Room => o.received.get(k),
            };
            let Some(set) = set else { continue };
            for &m in &accepted_by[*s] {
                expected += 1;
                if !set.contains(m) {
                    lost += 1;
                    short = true;
                }
            }
        }
        recipients_short += u64::from(short);
    }
    let delivered = count(&shared.delivered);
    // Arrivals of messages whose op 5 did not say accepted (or never came).
    let confirmed_delivered = expected - lost;
    if delivered > confirmed_delivered {
        unconfirmed = delivered - confirmed_delivered;
    }

    let latency = Shared::merged(&shared.latency);
    let reply_latency = Shared::merged(&shared.reply_latency);
    let last = count(&shared.last_receipt_ns);
    let delivery_secs = if last > push_start_unix {
        (last - push_start_unix) as f64 / 1e9
    } else {
        send_secs
    };
    let cpu_ns = after_connect
        .zip(after_push)
        .map(|(a, b)| b.cpu_ns.saturating_sub(a.cpu_ns));
    let cpu_per_delivery = cpu_ns
        .filter(|_| delivered > 0)
        .map(|ns| (ns as f64 / delivered as f64).round());
    let bench_cpu_ms = bench_start
        .zip(bench_end)
        .map(|(a, b)| b.cpu_ns.saturating_sub(a.cpu_ns) / 1_000_000);
    let codes: BTreeMap<String, u64> = shared
        .codes
        .lock()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let sent = count(&shared.sent);
    let accepted = count(&shared.accepted);
    let refused = count(&shared.refused);
    let unanswered = sent.saturating_sub(accepted + refused);
    let duplicates = count(&shared.duplicates);
    let disconnected = count(&shared.disconnected);

    let mut failures = Vec::new();
    for (what, v) in [
        ("lost", lost),
        ("duplicates", duplicates),
        ("op 5 with a code other than 0", refused),
        ("op 4 without op 5", unanswered),
        ("clients dropped during the run", disconnected),
        ("clients that could not connect", failed),
    ] {
        if v > 0 {
            failures.push(format!("{v} {what}"));
        }
    }

    let json = json!({
        "scenario": "chat",
        "mode": mode.name(),
        "connections": ready,
        "connections_failed": failed,
        "disconnected": disconnected,
        "senders": senders,
        "rate": args.rate,
        "window": args.window,
        "ramp_s": ramp_secs,
        "send_s": send_secs,
        "sent": sent,
        "skipped": count(&shared.skipped),
        "accepted": accepted,
        "refused": refused,
        "codes": codes,
        "unanswered": unanswered,
        "sent_per_sec": per_sec(sent, send_secs),
        "accepted_per_sec": per_sec(accepted, send_secs),
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "recipients_missing_messages": recipients_short,
        "duplicates": duplicates,
        "unconfirmed_delivered": unconfirmed,
        "own_copies": count(&shared.own_copies),
        "foreign": count(&shared.foreign),
        "delivered_per_sec": per_sec(delivered, delivery_secs),
        "latency_us": latency_json(&latency),
        "reply_latency_us": latency_json(&reply_latency),
        "server_rss_before_kb": before_connect.map(|s| s.rss_kb),
        "server_rss_connected_kb": after_connect.map(|s| s.rss_kb),
        "server_rss_kb": after_push.map(|s| s.rss_kb),
        "server_cpu_push_ms": cpu_ns.map(|ns| ns / 1_000_000),
        "server_cpu_ns_per_delivery": cpu_per_delivery,
        "bench_rss_kb": bench_end.map(|s| s.rss_kb),
        "bench_cpu_push_ms": bench_cpu_ms,
        "failures": failures,
        "first_error": shared.first_error.lock().clone(),
        "settings": Settings::from_args(&args),
    });

    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut rows: Vec<(&str, String)> = vec![
        ("scenario", format!("chat --chat-mode {}", mode.name())),
        (
            "connections",
            format!("{ready} IM ({failed} failed, {disconnected} dropped during the run)"),
        ),
        ("ramp", format!("{ramp_secs:.1} s")),
        (
            "op 4",
            format!(
                "{sent} sent by {senders} senders in {send_secs:.1} s ({} skipped: window full or late)",
                count(&shared.skipped)
            ),
        ),
        (
            "op 5",
            format!("{accepted} accepted (code 0), {refused} other codes {codes:?}, {unanswered} unanswered"),
        ),
        ("accepted/s", format!("{}", per_sec(accepted, send_secs))),
        (
            "delivered",
            format!(
                "{delivered} of {expected} expected, {lost} lost ({recipients_short} recipients), \
                 {duplicates} duplicates, {unconfirmed} unconfirmed{}",
                if mode == ChatMode::Peer {
                    format!(", {} own copies", count(&shared.own_copies))
                } else {
                    String::new()
                }
            ),
        ),
        (
            "delivered/s",
            format!("{}", per_sec(delivered, delivery_secs)),
        ),
        ("latency", fmt_lat(&latency)),
        ("op 4 → op 5", fmt_lat(&reply_latency)),
        (
            "server cpu",
            opt(cpu_ns.map(|ns| {
                format!(
                    "{} ms during send+drain, {} ns per delivery",
                    ns / 1_000_000,
                    opt(cpu_per_delivery.map(|v| v.to_string()))
                )
            })),
        ),
        (
            "bench",
            format!(
                "rss {} KB, cpu {} ms during send+drain",
                opt(bench_end.map(|s| s.rss_kb.to_string())),
                opt(bench_cpu_ms.map(|v| v.to_string()))
            ),
        ),
    ];
    if let Some(e) = json["first_error"].as_str() {
        rows.push(("first error", e.to_owned()));
    }
    for (k, v) in rows {
        println!("{k:>14}  {v}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("write --json {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        let series = [
            (
                "delivery (op 4 sent to recipient's receipt)",
                "#1f77b4",
                &latency,
            ),
            ("op 4 to op 5", "#ff7f0e", &reply_latency),
        ];
        let svg = latency_svg(
            &format!(
                "rim bench chat --chat-mode {}: latency by percentile ({ready} clients)",
                mode.name()
            ),
            &series,
        );
        std::fs::write(path, svg).with_context(|| format!("write --chart {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if !failures.is_empty() {
        bail!("chat check failed: {}", failures.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_read_without_copying() {
        let body = br#"{"from":3,"to":4,"id":"bab-17","ts":1,"body":"123"}"#;
        let env: Envelope = serde_json::from_slice(body).expect("envelope");
        assert_eq!((env.from, env.id, env.body), (3, "bab-17", "123"));
        assert!(serde_json::from_slice::<Envelope>(br#"{"from":3,"id":"x","body":{}}"#).is_err());
    }
}
