//! One client connection, from accept to close: the transports (`tcp`, `ws`)
//! turn a socket into goim frames ([`FrameIo`]) over shared buffers
//! (`buffers`: a read buffer only while a frame arrives, vectored writes),
//! and one shared handler (`handler`) runs the handshake, the op dispatch
//! and the writer over it.
//! On the `tls` and `wss` listeners a TLS handshake ([`tls_handshake`]) comes
//! first; the transports are generic over the byte stream ([`ClientStream`]),
//! so plain and TLS connections run the same code.
//!
//! Each connection is one task: it selects over the next client frame, its
//! session's wake-up (a push, a close, or shutdown, which closes every
//! session) and the heartbeat deadline. Why a connection ended is a
//! [`CloseReason`], logged and counted in one place ([`log_close`]).

mod buffers;
mod handler;
mod tcp;
mod ws;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rim_proto::{Frame, ProtoError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::announce::{AnnounceError, Announcer};
use crate::config::Config;
use crate::hub::Hub;
use crate::im::Acks;
use crate::limits::ConnLimits;
use crate::logic::{LogicCallError, LogicGateway};
use crate::metrics;
use crate::push::Push;
use crate::session::{Closed, Session};
use crate::tls::Tls;

/// What a connection task uses of its comet: the hub, logic, the settings,
/// the limits and the comet's lifecycle. Never the listeners (the comet's
/// `server`), so connection code depends on the registry, not on the node.
pub(crate) struct ConnCtx {
    /// Sessions and rooms.
    pub(crate) hub: Arc<Hub>,
    /// Calls to logic, under `logic_timeout`.
    pub(crate) logic: LogicGateway,
    pub(crate) config: Config,
    /// Connection limits and the frame-rate clock.
    pub(crate) limits: ConnLimits,
    /// Connection tasks and their logic heartbeats.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when the comet shuts down.
    pub(crate) closing: CancellationToken,
    /// The certificate of the `tls` and `wss` listeners, if configured.
    pub(crate) tls: Option<Arc<Tls>>,
    /// IM sessions' device acks, batched to logic.
    pub(crate) acks: Arc<Acks>,
    /// Room announcements before joins.
    pub(crate) rooms: Arc<Announcer>,
    server_id: String,
}

impl ConnCtx {
    /// The context of a comet with `config` (validated) and `tls`.
    pub(crate) fn new(
        config: Config,
        logic: Arc<dyn crate::LogicClient>,
        tls: Option<Arc<Tls>>,
    ) -> ConnCtx {
        let tracker = TaskTracker::new();
        let closing = CancellationToken::new();
        let logic = LogicGateway::new(logic, config.logic_timeout);
        ConnCtx {
            hub: Hub::new(&config, tracker.clone(), closing.clone()),
            rooms: Announcer::new(
                logic.clone(),
                config.server_id(),
                config.room_announce_margin,
                tracker.clone(),
            ),
            logic,
            limits: ConnLimits::new(&config),
            server_id: config.server_id(),
            config,
            tracker,
            closing,
            tls,
            acks: Arc::default(),
        }
    }

    /// The id this comet reports to logic.
    pub(crate) fn server_id(&self) -> &str {
        &self.server_id
    }
}

/// The client transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Raw goim frames over TCP.
    Tcp,
    /// One goim frame per binary (or text) WebSocket message, path `/sub`.
    Ws,
    /// Raw goim frames over TLS.
    Tls,
    /// WebSocket over TLS (WSS), path `/sub`.
    Wss,
}

impl Transport {
    /// Metric label and log field value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Tls => "tls",
            Transport::Wss => "wss",
        }
    }
}

/// A client byte stream: a `TcpStream`, or TLS over one.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

/// Identity of one accepted connection, for logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// Unique per comet process (`conn.id`).
    pub(crate) id: u64,
    /// The client's address (`peer.addr`).
    pub(crate) peer: SocketAddr,
    /// Which listener accepted it.
    pub(crate) transport: Transport,
}

/// Why a connection was closed. goim has no error frame: the socket is just
/// closed, and the reason goes to the log and `rim_comet_disconnects_total`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CloseReason {
    /// The comet is shutting down.
    #[error("comet shutting down")]
    Shutdown,
    /// EOF, or a WebSocket close frame.
    #[error("closed by client")]
    ClientClosed,
    /// No successful auth within `handshake_timeout` of accept (the TLS
    /// handshake and the WebSocket upgrade included).
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The TLS handshake failed: not TLS at all, no common version or
    /// cipher, the client refused the certificate, ...
    #[error("tls handshake failed: {0}")]
    TlsHandshake(io::Error),
    /// Logic refused the token or could not be reached.
    #[error("auth failed: {0}")]
    AuthFailed(LogicCallError),
    /// Malformed header, oversize body, or a WebSocket message that is not
    /// exactly one frame.
    #[error("malformed frame: {0}")]
    BadFrame(ProtoError),
    /// Bad WebSocket framing (oversize message, unmasked frame, ...).
    #[error("websocket protocol error: {0}")]
    WsProtocol(#[from] ws::WsError),
    /// Reading or writing the socket failed (reset, broken pipe, ...).
    #[error("i/o error: {0}")]
    Io(io::Error),
    /// No heartbeat (op 2) within the heartbeat timeout.
    #[error("heartbeat timed out after {0:?}")]
    HeartbeatTimeout(Duration),
    /// A newer connection registered the same key.
    #[error("kicked: same key connected again")]
    Kicked,
    /// The outbound queue was full.
    #[error("slow client: outbound queue full")]
    SlowClient,
    /// A WebSocket upgrade for a path other than `/sub` (answered 404).
    #[error("websocket path {0:?} rejected: only /sub is served")]
    WsPathRejected(String),
    /// The HTTP upgrade to WebSocket failed.
    #[error("websocket upgrade failed: {0}")]
    WsHandshake(tungstenite::Error),
    /// More client frames in one second than `max_frames_per_sec`.
    #[error("more than {0} frames in one second")]
    FrameRate(u32),
    /// The room of op 8 (the token's) or op 12 could not be announced to
    /// logic; neither op has a refusal, so the connection is closed.
    #[error("{0}")]
    RoomAnnounce(AnnounceError),
}

impl CloseReason {
    /// The `reason` label of `rim_comet_disconnects_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            CloseReason::Shutdown => "shutdown",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::HandshakeTimeout(_) => "handshake_timeout",
            CloseReason::TlsHandshake(_) => "tls_handshake_failed",
            CloseReason::AuthFailed(_) => "auth_failed",
            CloseReason::BadFrame(_) => "bad_frame",
            CloseReason::WsProtocol(_) => "ws_protocol",
            CloseReason::Io(_) => "io_error",
            CloseReason::HeartbeatTimeout(_) => "heartbeat_timeout",
            CloseReason::Kicked => "kicked",
            CloseReason::SlowClient => "slow_client",
            CloseReason::WsPathRejected(_) => "ws_path_rejected",
            CloseReason::WsHandshake(_) => "ws_handshake_failed",
            CloseReason::FrameRate(_) => "frame_rate",
            CloseReason::RoomAnnounce(_) => "room_announce_failed",
        }
    }

    /// Ends that happen all the time and need no attention: logged at debug.
    fn is_routine(&self) -> bool {
        matches!(
            self,
            CloseReason::Shutdown | CloseReason::ClientClosed | CloseReason::Io(_)
        )
    }
}

impl From<ProtoError> for CloseReason {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::Io(e) => CloseReason::Io(e),
            other => CloseReason::BadFrame(other),
        }
    }
}

impl From<io::Error> for CloseReason {
    fn from(e: io::Error) -> Self {
        CloseReason::Io(e)
    }
}

impl From<Closed> for CloseReason {
    fn from(closed: Closed) -> Self {
        match closed {
            Closed::Kicked => CloseReason::Kicked,
            Closed::SlowClient => CloseReason::SlowClient,
            Closed::Shutdown => CloseReason::Shutdown,
            // Only the connection task itself sets `Ended`, after its loop.
            Closed::Ended => CloseReason::ClientClosed,
        }
    }
}

/// What a transport read from its client.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A goim frame.
    Frame(Frame),
    /// A frame of the transport itself (a WebSocket ping), whose answer the
    /// transport buffered: the caller flushes it. Counts against the frame
    /// rate like a goim frame.
    Control,
    /// A clean end: EOF, or a WebSocket close.
    End,
}

/// A connection's framed byte stream, as the shared handler sees it.
/// Output is buffered by `queue_*` and written by `flush`.
pub(crate) trait FrameIo: Send {
    /// What the client sent next. Must be cancel-safe: it is polled in
    /// `select!`.
    fn read_frame(&mut self) -> impl Future<Output = Result<Incoming, CloseReason>> + Send;
    /// Buffers a reply to a client frame.
    fn queue_reply(&mut self, frame: &Frame);
    /// Buffers a push.
    fn queue_push(&mut self, push: &Push);
    /// Whether anything is buffered.
    fn has_output(&self) -> bool;
    /// Writes everything buffered (one socket write on TCP when it fits).
    fn flush(&mut self) -> impl Future<Output = Result<(), CloseReason>> + Send;
    /// Ends the transport's side of the conversation before the socket is
    /// dropped (the WebSocket closing handshake); best effort, bounded by
    /// [`FINISH_TIMEOUT`].
    fn finish(&mut self, reason: &CloseReason) -> impl Future<Output = ()> + Send;
}

/// How long a closing connection may spend telling the client why (a
/// WebSocket close frame) before the socket is dropped anyway.
pub(crate) const FINISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Spawns the task serving one accepted connection on the comet's tracker.
/// Each transport gets its own task type, so a TCP connection's task is not
/// sized for the larger WebSocket state, nor a plain one for rustls's.
pub(crate) fn spawn(
    ctx: &Arc<ConnCtx>,
    stream: TcpStream,
    conn: ConnInfo,
    accepted_at: Instant,
) -> tokio::task::JoinHandle<()> {
    metrics::connection_opened(conn.transport.name());
    let opened = Opened;
    let slot = Slot::taken(ctx, conn.peer.ip());
    let deadline = accepted_at + ctx.config.handshake_timeout;
    let ctx_for_task = Arc::clone(ctx);
    match conn.transport {
        Transport::Tcp => ctx.tracker.spawn(tcp::serve(
            ctx_for_task,
            stream,
            conn,
            deadline,
            opened,
            slot,
        )),
        Transport::Ws => ctx.tracker.spawn(ws::serve(
            ctx_for_task,
            stream,
            conn,
            deadline,
            opened,
            slot,
        )),
        Transport::Tls => ctx.tracker.spawn(tcp::serve_tls(
            ctx_for_task,
            stream,
            conn,
            deadline,
            opened,
            slot,
        )),
        Transport::Wss => ctx.tracker.spawn(ws::serve_tls(
            ctx_for_task,
            stream,
            conn,
            deadline,
            opened,
            slot,
        )),
    }
}

/// A connection's slot in the comet's connection limits, given back when it
/// is dropped: held by the handshake, then handed to the session's task
/// ([`Slot::into_session`]), which gives it back when it ends.
pub(crate) struct Slot(Option<(Arc<ConnCtx>, IpAddr)>);

impl Slot {
    /// The slot `admit` took for `ip` (the accept loop did).
    pub(crate) fn taken(ctx: &Arc<ConnCtx>, ip: IpAddr) -> Slot {
        Slot(Some((Arc::clone(ctx), ip)))
    }

    /// The handshake succeeded: the authenticated connection's `Active`
    /// gives the slot back when it is dropped.
    pub(crate) fn into_session(mut self) {
        self.0 = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((ctx, ip)) = self.0.take() {
            ctx.limits.release(ip);
        }
    }
}

/// Frames go out as soon as they are written (replies are small).
fn set_nodelay(stream: &TcpStream, conn: &ConnInfo) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(conn.id = conn.id, peer.addr = %conn.peer, error = %e, "set TCP_NODELAY failed");
    }
}

/// The TLS handshake of a `tls` or `wss` connection, within the connection's
/// handshake deadline, with the certificate loaded now (a later reload does
/// not touch this connection). On failure logs and counts the close.
async fn tls_handshake(
    ctx: &ConnCtx,
    stream: TcpStream,
    conn: &ConnInfo,
    deadline: Instant,
) -> Option<TlsStream<TcpStream>> {
    let reason = match &ctx.tls {
        Some(tls) => {
            let websocket = matches!(conn.transport, Transport::Ws | Transport::Wss);
            let accept = tls.acceptor(websocket).accept(stream);
            tokio::select! {
                biased;
                () = ctx.closing.cancelled() => CloseReason::Shutdown,
                result = tokio::time::timeout_at(deadline, accept) => match result {
                    Ok(Ok(stream)) => return Some(stream),
                    Ok(Err(e)) => tls_error(e),
                    Err(_) => CloseReason::HandshakeTimeout(ctx.config.handshake_timeout),
                },
            }
        }
        // `Comet::serve` refuses TLS listeners without a certificate.
        None => CloseReason::TlsHandshake(io::Error::other("no tls certificate configured")),
    };
    if matches!(
        reason,
        CloseReason::TlsHandshake(_) | CloseReason::HandshakeTimeout(_)
    ) {
        metrics::tls_handshake_failed(conn.transport.name());
    }
    log_close(conn, None, &reason);
    None
}

/// Why a TLS handshake ended early. A client that closes or resets before
/// finishing (a port probe, a client giving up) ends like a plain TCP client
/// that leaves before auth; anything else (rustls reports protocol errors as
/// `InvalidData`) is a failed handshake.
fn tls_error(e: io::Error) -> CloseReason {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => CloseReason::ClientClosed,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => CloseReason::Io(e),
        _ => CloseReason::TlsHandshake(e),
    }
}

/// Held by a connection task: decrements the connection gauge however the
/// task ends (even if it is dropped before it first runs).
pub(crate) struct Opened;

impl Drop for Opened {
    fn drop(&mut self) {
        metrics::connection_closed();
    }
}

/// Logs and counts the end of a connection.
pub(crate) fn log_close(conn: &ConnInfo, session: Option<&Session>, reason: &CloseReason) {
    metrics::disconnect(reason.label());
    let (key, mid) = session.map_or(("", 0), |s| (&*s.key, s.mid));
    macro_rules! log_at {
        ($level:ident) => {
            tracing::$level!(
                conn.id = conn.id,
                peer.addr = %conn.peer,
                transport = conn.transport.name(),
                key,
                mid,
                reason = %reason,
                reason.label = reason.label(),
                "connection closed"
            )
        };
    }
    if reason.is_routine() {
        log_at!(debug);
    } else {
        log_at!(info);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::testing::NoLogic;

    /// An idle connection's memory is mostly its task: tokio allocates the
    /// future plus ~96 bytes of task header, rounded up to 128 bytes. These
    /// bounds keep both the TCP and the WebSocket task at 640 bytes (see
    /// docs/benchmark.md); a dependency update may move them a little.
    #[tokio::test]
    async fn connection_tasks_stay_small() {
        let ctx = Arc::new(ConnCtx::new(Config::default(), Arc::new(NoLogic), None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (s1, _) = listener.accept().await.unwrap();
        let _client2 = TcpStream::connect(addr).await.unwrap();
        let (s2, _) = listener.accept().await.unwrap();
        let conn = ConnInfo {
            id: 1,
            peer: addr,
            transport: Transport::Tcp,
        };
        let slot = || Slot::taken(&ctx, addr.ip());
        let tcp = tcp::serve(Arc::clone(&ctx), s1, conn, Instant::now(), Opened, slot());
        let ws = ws::serve(Arc::clone(&ctx), s2, conn, Instant::now(), Opened, slot());
        let (tcp, ws) = (std::mem::size_of_val(&tcp), std::mem::size_of_val(&ws));
        assert!(tcp <= 544, "TCP connection future is {tcp} bytes");
        assert!(ws <= 544, "WebSocket connection future is {ws} bytes");
    }
}
