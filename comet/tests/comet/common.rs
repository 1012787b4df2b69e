//! Test fixtures: a fake logic, a comet served on 127.0.0.1:0, tiny raw goim
//! clients for TCP (plain or over any stream, e.g. TLS) and WebSocket, and
//! testkit's metrics recorder.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rim_comet::{Comet, Config, Listeners, LogicCallError, LogicClient};
use rim_proto::pb::comet::{BroadcastRoomReq, PushMsgReq};
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply, OnlineReq,
    ReceiveReq,
};
use rim_proto::pb::protocol::Proto;
use rim_proto::pb::room::{AnnounceReply, AnnounceReq};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest a test waits for one expected read or event. Paused-time tests use
/// server timeouts well below it.
pub const WAIT: Duration = Duration::from_secs(30);

pub const SERVER_ID: &str = "comet-test";

// === fake logic ===

/// Everything the fake logic was asked, in order, per call.
pub struct Events {
    pub connects: UnboundedReceiver<ConnectReq>,
    pub disconnects: UnboundedReceiver<DisconnectReq>,
    pub heartbeats: UnboundedReceiver<HeartbeatReq>,
    pub receives: UnboundedReceiver<ReceiveReq>,
    pub onlines: UnboundedReceiver<OnlineReq>,
    pub announces: UnboundedReceiver<AnnounceReq>,
}

pub async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a logic call")
        .expect("fake logic dropped")
}

/// A logic that accepts any JSON token `{mid, key, room_id, accepts}`
/// (refusing anything else) and records every call.
pub struct FakeLogic {
    /// `ConnectReply.heartbeat` in nanoseconds (0: use the comet's config).
    pub heartbeat_nanos: i64,
    /// What `renew_online` answers as `all_room_count`.
    pub all_room_count: Mutex<HashMap<String, i32>>,
    /// Fail the next `renew_online` call.
    pub fail_next_online: AtomicBool,
    /// `receive` never answers (the connection stays inside the call).
    pub hold_receives: AtomicBool,
    /// What `announce` answers: `Ok(ttl_ms)` (300 s by default, as rim's
    /// logic with its default `online_stale`) or the error.
    pub announce_answer: Mutex<Result<u64, LogicCallError>>,
    /// While set, each `announce` waits for a permit of `announce_gate`.
    pub hold_announces: AtomicBool,
    pub announce_gate: tokio::sync::Semaphore,
    /// `room_ttl_ms` of `renew_online`'s reply (0, as goim's logic, by default).
    pub room_ttl_ms: AtomicU64,
    next_key: AtomicU64,
    connects: UnboundedSender<ConnectReq>,
    disconnects: UnboundedSender<DisconnectReq>,
    heartbeats: UnboundedSender<HeartbeatReq>,
    receives: UnboundedSender<ReceiveReq>,
    onlines: UnboundedSender<OnlineReq>,
    announces: UnboundedSender<AnnounceReq>,
}

impl FakeLogic {
    pub fn new(heartbeat_nanos: i64) -> (Arc<FakeLogic>, Events) {
        let (connects, connects_rx) = unbounded_channel();
        let (disconnects, disconnects_rx) = unbounded_channel();
        let (heartbeats, heartbeats_rx) = unbounded_channel();
        let (receives, receives_rx) = unbounded_channel();
        let (onlines, onlines_rx) = unbounded_channel();
        let (announces, announces_rx) = unbounded_channel();
        let logic = Arc::new(FakeLogic {
            heartbeat_nanos,
            all_room_count: Mutex::new(HashMap::new()),
            fail_next_online: AtomicBool::new(false),
            hold_receives: AtomicBool::new(false),
            announce_answer: Mutex::new(Ok(300_000)),
            hold_announces: AtomicBool::new(false),
            announce_gate: tokio::sync::Semaphore::new(0),
            room_ttl_ms: AtomicU64::new(0),
            next_key: AtomicU64::new(1),
            connects,
            disconnects,
            heartbeats,
            receives,
            onlines,
            announces,
        });
        let events = Events {
            connects: connects_rx,
            disconnects: disconnects_rx,
            heartbeats: heartbeats_rx,
            receives: receives_rx,
            onlines: onlines_rx,
            announces: announces_rx,
        };
        (logic, events)
    }
}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    mid: i64,
    #[serde(default)]
    key: String,
    #[serde(default)]
    room_id: String,
    #[serde(default)]
    accepts: Vec<i32>,
}

#[async_trait]
impl LogicClient for FakeLogic {
    async fn connect(&self, req: ConnectReq) -> Result<ConnectReply, LogicCallError> {
        let _ = self.connects.send(req.clone());
        let token: Token = serde_json::from_slice(&req.token)
            .map_err(|e| LogicCallError::Refused(format!("bad token: {e}")))?;
        let key = if token.key.is_empty() {
            format!(
                "generated-{}",
                self.next_key.fetch_add(1, Ordering::Relaxed)
            )
        } else {
            token.key
        };
        Ok(ConnectReply {
            mid: token.mid,
            key,
            room_id: token.room_id,
            accepts: token.accepts,
            heartbeat: self.heartbeat_nanos,
            ..Default::default()
        })
    }

    async fn disconnect(&self, req: DisconnectReq) -> Result<DisconnectReply, LogicCallError> {
        let _ = self.disconnects.send(req);
        Ok(DisconnectReply { has: true })
    }

    async fn heartbeat(&self, req: HeartbeatReq) -> Result<(), LogicCallError> {
        let _ = self.heartbeats.send(req);
        Ok(())
    }

    async fn renew_online(&self, req: OnlineReq) -> Result<OnlineReply, LogicCallError> {
        let _ = self.onlines.send(req);
        if self.fail_next_online.swap(false, Ordering::SeqCst) {
            return Err(LogicCallError::Unavailable("test failure".into()));
        }
        Ok(OnlineReply {
            all_room_count: self.all_room_count.lock().unwrap().clone(),
            room_ttl_ms: self.room_ttl_ms.load(Ordering::SeqCst),
        })
    }

    async fn announce(&self, req: AnnounceReq) -> Result<AnnounceReply, LogicCallError> {
        let _ = self.announces.send(req);
        if self.hold_announces.load(Ordering::SeqCst) {
            self.announce_gate.acquire().await.unwrap().forget();
        }
        let answer = self.announce_answer.lock().unwrap().clone();
        answer.map(|ttl_ms| AnnounceReply { ttl_ms })
    }

    async fn receive(&self, req: ReceiveReq) -> Result<(), LogicCallError> {
        let _ = self.receives.send(req);
        if self.hold_receives.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

// === harness ===

pub fn config() -> Config {
    Config {
        server_id: Some(SERVER_ID.to_owned()),
        ..Config::default()
    }
}

/// A comet serving one TCP and one WebSocket listener on 127.0.0.1:0, and
/// one TLS and one WSS listener too if the config has `tls_cert`.
pub struct Harness {
    pub comet: Arc<Comet>,
    pub logic: Arc<FakeLogic>,
    pub events: Events,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
    shutdown: CancellationToken,
    serve: JoinHandle<io::Result<()>>,
}

impl Harness {
    /// Logic answers `ConnectReply.heartbeat = 0`, so the config applies.
    pub async fn start(config: Config) -> Harness {
        Harness::start_with(config, 0).await
    }

    pub async fn start_with(config: Config, heartbeat_nanos: i64) -> Harness {
        let (logic, events) = FakeLogic::new(heartbeat_nanos);
        let comet = Comet::new(config, logic.clone()).expect("valid config");
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tcp_addr, ws_addr) = (tcp.local_addr().unwrap(), ws.local_addr().unwrap());
        let mut listeners = Listeners {
            tcp: vec![tcp],
            ws: vec![ws],
            ..Listeners::default()
        };
        let (mut tls_addr, mut wss_addr) = (None, None);
        if comet.has_tls() {
            let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let wss = TcpListener::bind("127.0.0.1:0").await.unwrap();
            (tls_addr, wss_addr) = (tls.local_addr().ok(), wss.local_addr().ok());
            listeners.tls.push(tls);
            listeners.wss.push(wss);
        }
        let shutdown = CancellationToken::new();
        let serve = tokio::spawn(comet.clone().serve(listeners, shutdown.clone()));
        Harness {
            comet,
            logic,
            events,
            tcp: tcp_addr,
            ws: ws_addr,
            tls: tls_addr,
            wss: wss_addr,
            shutdown,
            serve,
        }
    }

    /// Cancels and waits for `serve` to return.
    pub async fn stop(self) -> Events {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.serve)
            .await
            .expect("serve did not return")
            .expect("serve panicked")
            .expect("serve failed");
        self.events
    }

    /// A connected, authenticated TCP client.
    pub async fn tcp_client(&mut self, key: &str, room: &str, accepts: &[i32]) -> TcpClient {
        let mut client = TcpClient::connect(self.tcp).await;
        client.auth(&token(1, key, room, accepts)).await;
        next(&mut self.events.connects).await;
        client
    }
}

pub fn token(mid: i64, key: &str, room: &str, accepts: &[i32]) -> String {
    serde_json::json!({
        "mid": mid,
        "key": key,
        "room_id": room,
        "platform": "web",
        "accepts": accepts,
    })
    .to_string()
}

/// The 114-byte TCP auth frame of the captures (mid 1001, key tcp-key-1).
pub const CAPTURE_TCP_AUTH_TOKEN: &str = r#"{"mid":1001,"key":"tcp-key-1","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}"#;

// === goim frames ===

/// Encodes a goim frame by hand (independent of rim_proto's encoder).
pub fn frame(ver: i16, op: i32, seq: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&(16 + body.len() as i32).to_be_bytes());
    out.extend_from_slice(&16i16.to_be_bytes());
    out.extend_from_slice(&ver.to_be_bytes());
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub ver: i16,
    pub op: i32,
    pub seq: i32,
    pub body: Vec<u8>,
}

pub fn parse_frame(bytes: &[u8]) -> RawFrame {
    assert!(bytes.len() >= 16, "short frame: {bytes:?}");
    let pack_len = i32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert_eq!(i16::from_be_bytes(bytes[4..6].try_into().unwrap()), 16);
    assert_eq!(pack_len, bytes.len(), "packLen does not match");
    RawFrame {
        ver: i16::from_be_bytes(bytes[6..8].try_into().unwrap()),
        op: i32::from_be_bytes(bytes[8..12].try_into().unwrap()),
        seq: i32::from_be_bytes(bytes[12..16].try_into().unwrap()),
        body: bytes[16..].to_vec(),
    }
}

/// A job-style push: op 9 wrapping one inner frame `{1, op, 0, body}`.
pub fn raw_proto(op: i32, body: &[u8]) -> Proto {
    raw_batch(&[(op, body)])
}

/// A job-style room batch: op 9 wrapping several inner frames.
pub fn raw_batch(frames: &[(i32, &[u8])]) -> Proto {
    let mut inner = Vec::new();
    for (op, body) in frames {
        inner.extend_from_slice(&frame(1, *op, 0, body));
    }
    Proto {
        ver: 1,
        op: 9,
        seq: 0,
        body: Bytes::from(inner),
    }
}

pub fn push_keys(comet: &Comet, keys: &[&str], op: i32, body: &[u8]) {
    comet
        .hub()
        .push_msg(PushMsgReq {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            proto_op: op,
            proto: Some(raw_proto(op, body)),
            ..Default::default()
        })
        .unwrap();
}

pub fn push_room(comet: &Comet, room: &str, proto: Proto) {
    comet
        .hub()
        .broadcast_room(BroadcastRoomReq {
            room_id: room.to_owned(),
            proto: Some(proto),
        })
        .unwrap();
}

// === TCP client ===

/// A raw goim client; `S` is a `TcpStream` or a TLS stream over one.
pub struct TcpClient<S = TcpStream> {
    pub stream: S,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> TcpClient {
        TcpClient {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TcpClient<S> {
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        // TLS may hold back what the socket did not take.
        self.stream.flush().await.unwrap();
    }

    pub async fn send(&mut self, ver: i16, op: i32, seq: i32, body: &[u8]) {
        self.send_raw(&frame(ver, op, seq, body)).await;
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut buf))
            .await
            .expect("timed out reading")
            .expect("read failed");
        buf
    }

    /// Reads one frame and returns its bytes.
    pub async fn read_frame_bytes(&mut self) -> Vec<u8> {
        let mut bytes = self.read_exact(16).await;
        let pack_len = i32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        bytes.extend(self.read_exact(pack_len - 16).await);
        bytes
    }

    pub async fn read_frame(&mut self) -> RawFrame {
        parse_frame(&self.read_frame_bytes().await)
    }

    /// Sends op 7 (ver 1, seq 1) and expects the op 8 reply.
    pub async fn auth(&mut self, token: &str) {
        self.send(1, 7, 1, token.as_bytes()).await;
        assert_eq!(self.read_exact(16).await, frame(1, 8, 1, b""));
    }

    /// Expects the server to close without sending anything more.
    pub async fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("connection still open");
        match read {
            Ok(0) => {}
            Ok(n) => panic!("expected close, got {n} bytes: {:?}", &buf[..n]),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "unexpected error {e}"
            ),
        }
    }

    /// Reads and discards until the server closes; returns the bytes read.
    pub async fn drain_until_closed(&mut self) -> usize {
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("connection still open")
            {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    }
}

// === WebSocket client ===

pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// One client WebSocket frame with full control over the FIN, RSV and
/// opcode bits (`first`) and the masking.
pub fn ws_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&WS_MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ WS_MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

pub struct WsClient {
    pub stream: TcpStream,
}

/// Sends an HTTP request and reads the response head.
async fn http_head(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("timed out reading the HTTP response")
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

impl WsClient {
    /// Upgrades on `path`; `Err(response head)` if the server does not answer 101.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        cookie: Option<&str>,
    ) -> Result<(WsClient, String), String> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{cookie}\r\n"
        );
        let head = http_head(&mut stream, &request).await;
        if head.starts_with("HTTP/1.1 101 ") {
            Ok((WsClient { stream }, head))
        } else {
            Err(head)
        }
    }

    /// Sends one masked WebSocket frame (FIN set).
    pub async fn send_ws(&mut self, opcode: u8, payload: &[u8]) {
        let bytes = ws_frame(0x80 | opcode, payload, true);
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// Sends a goim frame as one binary message.
    pub async fn send(&mut self, ver: i16, op: i32, seq: i32, body: &[u8]) {
        self.send_ws(2, &frame(ver, op, seq, body)).await;
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut buf))
            .await
            .expect("timed out reading")
            .expect("read failed");
        buf
    }

    /// Reads one server WebSocket frame: (first header byte, payload).
    pub async fn read_ws(&mut self) -> (u8, Vec<u8>) {
        let head = self.read_exact(2).await;
        assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
        let len = match head[1] & 0x7f {
            126 => u16::from_be_bytes(self.read_exact(2).await.try_into().unwrap()) as usize,
            127 => u64::from_be_bytes(self.read_exact(8).await.try_into().unwrap()) as usize,
            n => n as usize,
        };
        (head[0], self.read_exact(len).await)
    }

    /// Reads one binary message holding a goim frame.
    pub async fn read_frame(&mut self) -> RawFrame {
        let (first, payload) = self.read_ws().await;
        assert_eq!(first, 0x82, "expected a final binary frame");
        parse_frame(&payload)
    }

    pub async fn auth(&mut self, token: &str) {
        self.send(1, 7, 1, token.as_bytes()).await;
        assert_eq!(self.read_frame().await, parse_frame(&frame(1, 8, 1, b"")));
    }

    /// Reads server frames until the TCP close: (first header byte, payload)
    /// of each. Bytes after the last whole frame are ignored.
    pub async fn frames_until_closed(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut bytes = Vec::new();
        // A reset after the close frame still leaves what was read.
        let _ = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut bytes))
            .await
            .expect("connection still open");
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while let [first, second, tail @ ..] = rest {
            assert_eq!(second & 0x80, 0, "server frames are unmasked");
            let (len, tail) = match second & 0x7f {
                126 if tail.len() >= 2 => (
                    usize::from(u16::from_be_bytes([tail[0], tail[1]])),
                    &tail[2..],
                ),
                127 if tail.len() >= 8 => (
                    u64::from_be_bytes(tail[..8].try_into().unwrap()) as usize,
                    &tail[8..],
                ),
                126 | 127 => break,
                n => (usize::from(n), tail),
            };
            let Some(payload) = tail.get(..len) else {
                break;
            };
            frames.push((*first, payload.to_vec()));
            rest = &tail[len..];
        }
        frames
    }

    /// Reads server frames until the TCP close; returns the close frame's
    /// status code and reason text, if the server sent a close with a code.
    pub async fn close_status(&mut self) -> Option<(u16, String)> {
        let frames = self.frames_until_closed().await;
        let (_, payload) = frames.into_iter().find(|(first, _)| *first == 0x88)?;
        let code = u16::from_be_bytes(payload.get(..2)?.try_into().unwrap());
        let reason = String::from_utf8(payload[2..].to_vec()).expect("close reason is UTF-8");
        Some((code, reason))
    }

    /// Expects the connection to end (a close frame from the server is allowed).
    pub async fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            let read = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("connection still open");
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => assert_eq!(buf[0] & 0x0f, 8, "expected close, got {:?}", &buf[..n]),
            }
        }
    }
}

// === metrics ===

/// Install with `metrics::set_default_local_recorder` in a current-thread test.
pub use rim_testkit::metrics::TestRecorder;
