//! [`Comet`]: the node itself. Owns the buckets, the logic client, the accept
//! loops, the online-report loop and shutdown, and implements the push
//! operations job calls (goim's `goim.comet.Comet`: PushMsg, Broadcast,
//! BroadcastRoom, Rooms).
//!
//! It does not own the gRPC server (the binary wraps these methods), what
//! happens on one connection (`conn`), nor loading and watching the TLS
//! certificate (`tls`; the comet holds it and starts the watch).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq, RoomsReply};
use rim_proto::pb::logic::OnlineReq;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::bucket::Bucket;
use crate::config::Config;
use crate::conn::{self, Transport};
use crate::error::{ConfigError, PushError};
use crate::limits::ConnLimits;
use crate::logic::{LogicClient, LogicError};
use crate::metrics;
use crate::push::{Fanout, Push};
use crate::session::{Closed, Session};
use crate::tls::{self, Tls};

/// Wait before retrying a failed online report (goim-spec 2.7).
const ONLINE_RETRY: Duration = Duration::from_secs(1);
/// First and largest pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The listeners a comet serves; bind them with [`Listeners::bind`] or pass
/// your own (tests bind `127.0.0.1:0`).
#[derive(Debug, Default)]
pub struct Listeners {
    /// Raw TCP goim listeners.
    pub tcp: Vec<TcpListener>,
    /// WebSocket listeners (path `/sub`).
    pub ws: Vec<TcpListener>,
    /// Raw TCP goim over TLS; needs `tls_cert` and `tls_key` in the config.
    pub tls: Vec<TcpListener>,
    /// WebSocket over TLS (path `/sub`); needs `tls_cert` and `tls_key`.
    pub wss: Vec<TcpListener>,
}

impl Listeners {
    /// Binds `config.tcp_bind`, `ws_bind`, `tls_bind` and `wss_bind`.
    pub async fn bind(config: &Config) -> io::Result<Listeners> {
        let mut listeners = Listeners::default();
        for (addrs, bound) in [
            (&config.tcp_bind, &mut listeners.tcp),
            (&config.ws_bind, &mut listeners.ws),
            (&config.tls_bind, &mut listeners.tls),
            (&config.wss_bind, &mut listeners.wss),
        ] {
            for addr in addrs {
                bound.push(bind(addr).await?);
            }
        }
        Ok(listeners)
    }
}

async fn bind(addr: &str) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("bind {addr}: {e}")))
}

/// Connection, IP and room counts of one comet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Authenticated connections (sessions).
    pub connections: u64,
    /// Distinct client IP addresses among them.
    pub ips: u64,
    /// Rooms with at least one local member.
    pub rooms: u64,
}

/// A comet node: buckets of sessions and rooms, fed by client connections
/// and by push requests.
pub struct Comet {
    pub(crate) config: Config,
    server_id: String,
    logic: Arc<dyn LogicClient>,
    buckets: Box<[Bucket]>,
    /// Connection tasks, logic heartbeats and paced broadcasts.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when `serve`'s shutdown token is; everything inside watches it.
    pub(crate) closing: CancellationToken,
    /// The certificate of the `tls` and `wss` listeners, if configured.
    pub(crate) tls: Option<Arc<Tls>>,
    next_conn_id: AtomicU64,
    /// Connection limits and frame-rate clock.
    pub(crate) limits: ConnLimits,
}

impl std::fmt::Debug for Comet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comet")
            .field("server_id", &self.server_id)
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

impl Comet {
    /// Validates `config`, loads the TLS certificate and key if `tls_cert`
    /// and `tls_key` are set ([`ConfigError::Tls`] names a file that cannot
    /// be used) and builds the comet (buckets etc.). Does not bind or spawn
    /// anything.
    pub fn new(config: Config, logic: Arc<dyn LogicClient>) -> Result<Arc<Comet>, ConfigError> {
        config.validate()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            _ => None,
        };
        let buckets = (0..config.buckets).map(|_| Bucket::default()).collect();
        Ok(Arc::new(Comet {
            server_id: config.server_id(),
            limits: ConnLimits::new(&config),
            config,
            logic,
            buckets,
            tracker: TaskTracker::new(),
            closing: CancellationToken::new(),
            tls,
            next_conn_id: AtomicU64::new(1),
        }))
    }

    /// Reads `tls_cert` and `tls_key` again now, whether or not they changed
    /// (for SIGHUP). If they load, new TLS handshakes use them; if not, the
    /// error is returned (and logged) and the previous certificate keeps
    /// serving. Open connections are never affected. Blocks on file I/O.
    /// Fails with [`ConfigError::Invalid`] if the comet has no TLS configured.
    pub fn reload_tls(&self) -> Result<(), ConfigError> {
        let Some(tls) = &self.tls else {
            return Err(ConfigError::Invalid {
                field: "tls_cert",
                reason: "no TLS certificate configured, nothing to reload".to_owned(),
            });
        };
        let result = tls.reload();
        tls.record_reload(&result, "reload_tls");
        result
    }

    /// Whether `tls_cert` and `tls_key` are configured (and were loaded).
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The id this comet reports to logic (`ConnectReq.server`, ...).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// goim `Comet.PushMsg`: queues `proto` for each key's session, if it is
    /// here and accepts `proto_op`. A full session queue disconnects that
    /// session and does not stop the loop over the other keys.
    pub fn push_msg(&self, req: PushMsgReq) -> Result<(), PushError> {
        if req.keys.is_empty() {
            return Err(PushError::Invalid("no keys".to_owned()));
        }
        let proto = req
            .proto
            .ok_or_else(|| PushError::Invalid("proto missing".to_owned()))?;
        ::metrics::counter!(metrics::PUSH_REQUESTS, "kind" => "keys").increment(1);
        let push = Push::encode(proto);
        let capacity = self.config.session_queue;
        let mut fanout = Fanout::default();
        let mut missing = 0;
        for key in &req.keys {
            match self.bucket(key).session(key) {
                Some(session) => fanout.add(session.push(&push, Some(req.proto_op), capacity)),
                None => {
                    debug!(key = %key, op = req.proto_op, "keyed push dropped: no session here");
                    missing += 1;
                }
            }
        }
        metrics::dropped(metrics::DROP_NO_SESSION, missing);
        fanout.record("keys");
        Ok(())
    }

    /// goim `Comet.Broadcast`: queues `proto` for every session accepting
    /// `proto_op`. With `speed <= 0` this walks all buckets before returning.
    /// With `speed > 0` it returns at once and a tracked task walks the
    /// buckets, pausing `sessions in the bucket / speed` seconds after each.
    pub fn broadcast(self: &Arc<Self>, req: BroadcastReq) -> Result<(), PushError> {
        let proto = req
            .proto
            .ok_or_else(|| PushError::Invalid("proto missing".to_owned()))?;
        ::metrics::counter!(metrics::PUSH_REQUESTS, "kind" => "broadcast").increment(1);
        let push = Push::encode(proto);
        let op = req.proto_op;
        if req.speed <= 0 {
            self.broadcast_buckets(&push, op);
            return Ok(());
        }
        let speed = f64::from(req.speed);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            debug!("broadcast outside a runtime: delivering without pacing");
            self.broadcast_buckets(&push, op);
            return Ok(());
        };
        let comet = Arc::clone(self);
        self.tracker.spawn_on(
            async move {
                let mut fanout = Fanout::default();
                for bucket in comet.buckets.iter() {
                    let sessions =
                        bucket.broadcast(&push, op, comet.config.session_queue, &mut fanout);
                    let pause = Duration::from_secs_f64(sessions as f64 / speed);
                    if pause.is_zero() {
                        continue;
                    }
                    tokio::select! {
                        () = comet.closing.cancelled() => {
                            debug!(op, "paced broadcast stopped by shutdown");
                            break;
                        }
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                fanout.record("broadcast");
            },
            &runtime,
        );
        Ok(())
    }

    fn broadcast_buckets(&self, push: &Arc<Push>, op: i32) {
        let mut fanout = Fanout::default();
        for bucket in self.buckets.iter() {
            bucket.broadcast(push, op, self.config.session_queue, &mut fanout);
        }
        fanout.record("broadcast");
    }

    /// goim `Comet.BroadcastRoom`: queues `proto` for every member of the room
    /// in every bucket; room pushes ignore accepts.
    pub fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), PushError> {
        if req.room_id.is_empty() {
            return Err(PushError::Invalid("room id empty".to_owned()));
        }
        let proto = req
            .proto
            .ok_or_else(|| PushError::Invalid("proto missing".to_owned()))?;
        ::metrics::counter!(metrics::PUSH_REQUESTS, "kind" => "room").increment(1);
        let push = Push::encode(proto);
        let mut fanout = Fanout::default();
        for bucket in self.buckets.iter() {
            bucket.broadcast_room(&req.room_id, &push, self.config.session_queue, &mut fanout);
        }
        fanout.record("room");
        Ok(())
    }

    /// goim `Comet.Rooms`: the rooms with local members.
    pub fn rooms(&self) -> RoomsReply {
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        for bucket in self.buckets.iter() {
            bucket.collect(&mut ips, &mut rooms);
        }
        RoomsReply {
            rooms: rooms.into_iter().map(|id| (id.to_string(), true)).collect(),
        }
    }

    /// Connection count, distinct IP count and room count.
    pub fn stats(&self) -> Stats {
        let (mut ips, mut rooms): (HashSet<IpAddr>, HashSet<Arc<str>>) =
            (HashSet::new(), HashSet::new());
        let mut connections = 0;
        for bucket in self.buckets.iter() {
            connections += bucket.session_count() as u64;
            bucket.collect(&mut ips, &mut rooms);
        }
        Stats {
            connections,
            ips: ips.len() as u64,
            rooms: rooms.len() as u64,
        }
    }

    /// Runs the accept loops of all listeners, the online-report loop and,
    /// with TLS listeners, the certificate file watch until `shutdown` is
    /// cancelled; then stops accepting, closes every connection and waits up
    /// to `shutdown_grace` for connection tasks. Call once.
    ///
    /// Fails at once (`InvalidInput`) if TLS listeners are given but the
    /// config has no `tls_cert`/`tls_key`.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let Listeners { tcp, ws, tls, wss } = listeners;
        let with_tls = !tls.is_empty() || !wss.is_empty();
        if with_tls && self.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tls/wss listeners given but no TLS certificate is configured: set comet tls_cert and tls_key",
            ));
        }
        let mut loops = tokio::task::JoinSet::new();
        for (listener, transport) in tcp
            .into_iter()
            .map(|l| (l, Transport::Tcp))
            .chain(ws.into_iter().map(|l| (l, Transport::Ws)))
            .chain(tls.into_iter().map(|l| (l, Transport::Tls)))
            .chain(wss.into_iter().map(|l| (l, Transport::Wss)))
        {
            let addr = listener.local_addr()?;
            info!(listen.addr = %addr, transport = transport.name(), server_id = %self.server_id, "comet listening");
            loops.spawn(Arc::clone(&self).accept_loop(listener, transport));
        }
        loops.spawn(Arc::clone(&self).report_online());
        if let Some(certificate) = self.tls.as_ref().filter(|_| with_tls) {
            let interval = self.config.tls_reload_interval;
            info!(
                tls.cert = %certificate.cert_path().display(),
                reload_interval = ?interval,
                "tls listeners serve this certificate"
            );
            if !interval.is_zero() {
                loops.spawn(tls::watch(
                    Arc::clone(certificate),
                    interval,
                    self.closing.clone(),
                ));
            }
        }

        shutdown.cancelled().await;
        info!(server_id = %self.server_id, "comet shutting down");
        self.closing.cancel();
        // Authenticated connections wait on their session, not on `closing`
        // (one waiter less in every idle connection task): close them all. A
        // session registered after this sees `closing` before its frame loop.
        for bucket in self.buckets.iter() {
            bucket.close_all(Closed::Shutdown);
        }
        while let Some(joined) = loops.join_next().await {
            if let Err(e) = joined {
                warn!(error = %e, "comet loop task failed");
            }
        }
        self.tracker.close();
        let grace = self.config.shutdown_grace;
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => info!("comet stopped: every connection closed"),
            Err(_) => warn!(
                tasks = self.tracker.len(),
                grace = ?grace,
                "comet stopped with connection tasks still running after the grace period"
            ),
        }
        self.sign_off().await;
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, transport: Transport) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = tokio::select! {
                () = self.closing.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    if self.limits.admit(peer.ip()).is_err() {
                        // Counted and logged by `admit`; closed unread.
                        drop(stream);
                        continue;
                    }
                    let accepted_at = Instant::now();
                    let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    let conn = conn::ConnInfo {
                        id,
                        peer,
                        transport,
                    };
                    conn::spawn(&self, stream, conn, accepted_at);
                }
                Err(e) => {
                    ::metrics::counter!(metrics::ACCEPT_ERRORS, "transport" => transport.name())
                        .increment(1);
                    warn!(error = %e, transport = transport.name(), backoff = ?backoff, "accept failed");
                    tokio::select! {
                        () = self.closing.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }

    /// Reports room, connection and IP counts to logic at once and then every
    /// `online_report_interval`, and stores the cluster room counts it gets back.
    async fn report_online(self: Arc<Self>) {
        loop {
            let wait = tokio::select! {
                () = self.closing.cancelled() => return,
                result = self.renew_online() => match result {
                    Ok(()) => {
                        ::metrics::counter!(metrics::ONLINE_REPORTS, "result" => "ok").increment(1);
                        self.config.online_report_interval
                    }
                    Err(e) => {
                        ::metrics::counter!(metrics::ONLINE_REPORTS, "result" => "error").increment(1);
                        warn!(error = %e, retry = ?ONLINE_RETRY, "online report to logic failed");
                        ONLINE_RETRY
                    }
                },
            };
            tokio::select! {
                () = self.closing.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tells logic this comet is gone (an online report with `offline`), so
    /// its report is marked stale now rather than when reports stop coming.
    /// Best effort: a comet that cannot reach logic just goes stale.
    async fn sign_off(&self) {
        let req = OnlineReq {
            server: self.server_id.clone(),
            offline: true,
            ..OnlineReq::default()
        };
        match self
            .call_logic("renew_online", self.logic.renew_online(req))
            .await
        {
            Ok(_) => info!(server_id = %self.server_id, "signed off from logic"),
            Err(e) => {
                warn!(error = %e, "sign-off to logic failed; the online report goes stale instead")
            }
        }
    }

    async fn renew_online(&self) -> Result<(), LogicError> {
        let mut room_count = HashMap::new();
        for bucket in self.buckets.iter() {
            bucket.add_room_counts(&mut room_count);
        }
        let stats = self.stats();
        ::metrics::gauge!(metrics::ROOMS).set(stats.rooms as f64);
        let req = OnlineReq {
            server: self.server_id.clone(),
            room_count,
            conn_count: i64::try_from(stats.connections).unwrap_or(i64::MAX),
            ip_count: i64::try_from(stats.ips).unwrap_or(i64::MAX),
            addrs: self.config.addrs.clone(),
            weight: self.config.weight,
            grpc_addr: self.config.grpc_addr.clone(),
            offline: false,
        };
        let reply = self
            .call_logic("renew_online", self.logic.renew_online(req))
            .await?;
        for bucket in self.buckets.iter() {
            bucket.set_all_online(&reply.all_room_count);
        }
        Ok(())
    }

    // === connection support (used by `conn`) ===

    /// The logic client.
    pub(crate) fn logic(&self) -> &dyn LogicClient {
        &*self.logic
    }

    /// Runs one logic call under `logic_timeout`; failures are counted.
    pub(crate) async fn call_logic<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<T, LogicError>>,
    ) -> Result<T, LogicError> {
        let timeout = self.config.logic_timeout;
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(LogicError::Unavailable(format!(
                "{call} timed out after {timeout:?}"
            ))),
        };
        if result.is_err() {
            metrics::logic_error(call);
        }
        result
    }

    fn bucket(&self, key: &str) -> &Bucket {
        &self.buckets[self.bucket_index(key)]
    }

    fn bucket_index(&self, key: &str) -> usize {
        // FNV-1a: fast and good enough for spreading keys over a few locks;
        // placement is internal to this process.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in key.as_bytes() {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        hash as usize % self.buckets.len()
    }

    /// Registers a freshly authenticated session in its bucket and room,
    /// kicking an older session with the same key.
    pub(crate) fn register(&self, session: &Arc<Session>, room: Option<&str>) {
        let Some(old) = self.bucket(&session.key).put(session, room) else {
            return;
        };
        let lost = old.close(Closed::Kicked);
        metrics::dropped(metrics::DROP_KICKED, lost as u64);
        info!(
            conn.id = session.id,
            key = %session.key,
            mid = session.mid,
            kicked.conn.id = old.id,
            lost,
            "same key connected again: kicking the older connection"
        );
    }

    /// Unregisters a session whose connection ended; true if the key entry
    /// still pointed to it (so logic's mapping is its own to delete).
    pub(crate) fn unregister(&self, session: &Arc<Session>) -> bool {
        self.bucket(&session.key).del(session)
    }

    /// Moves a session to another room (`None`: leave).
    pub(crate) fn change_room(&self, session: &Arc<Session>, room: Option<&str>) {
        self.bucket(&session.key).change_room(session, room);
    }

    /// The online count a heartbeat reply carries for `room`: the cluster
    /// count from logic if known (> 0), else this comet's local count.
    pub(crate) fn room_online(&self, room: &str) -> i32 {
        let mut local: usize = 0;
        let mut all = 0;
        for bucket in self.buckets.iter() {
            if let Some((members, cluster)) = bucket.room_online(room) {
                local += members;
                all = all.max(cluster);
            }
        }
        if all > 0 {
            all
        } else {
            i32::try_from(local).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::NoLogic;
    use rim_proto::pb::protocol::Proto;
    use std::net::Ipv4Addr;

    fn comet(config: Config) -> Arc<Comet> {
        Comet::new(config, Arc::new(NoLogic)).unwrap()
    }

    fn session(comet: &Comet, id: u64, key: &str, accepts: &[i32]) -> Arc<Session> {
        let s = Arc::new(Session::new(
            id,
            key.into(),
            id as i64,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            accepts,
        ));
        comet.register(&s, Some("live://1"));
        s
    }

    fn raw(op: i32, body: &'static [u8]) -> Option<Proto> {
        Some(Proto {
            ver: 1,
            op: 9,
            seq: 0,
            body: rim_proto::encode_raw_push(op, body),
        })
    }

    #[test]
    fn new_rejects_invalid_config() {
        let err = Comet::new(
            Config {
                buckets: 0,
                ..Config::default()
            },
            Arc::new(NoLogic),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                field: "buckets",
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn logic_calls_time_out_as_unavailable() {
        let c = comet(Config {
            logic_timeout: Duration::from_secs(2),
            ..Config::default()
        });
        let started = Instant::now();
        // NoLogic never answers renew_online.
        let err = c.renew_online().await.unwrap_err();
        assert!(matches!(err, LogicError::Unavailable(_)), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn push_requests_are_validated() {
        let c = comet(Config::default());
        let err = c
            .push_msg(PushMsgReq {
                keys: vec![],
                proto_op: 1000,
                proto: raw(1000, b"x"),
            })
            .unwrap_err();
        assert!(matches!(err, PushError::Invalid(_)));
        assert!(c
            .push_msg(PushMsgReq {
                keys: vec!["k".into()],
                proto_op: 1000,
                proto: None,
            })
            .is_err());
        assert!(c
            .broadcast(BroadcastReq {
                proto_op: 1,
                proto: None,
                speed: 0
            })
            .is_err());
        assert!(c
            .broadcast_room(BroadcastRoomReq {
                room_id: String::new(),
                proto: raw(1000, b"x"),
            })
            .is_err());
        assert!(c
            .broadcast_room(BroadcastRoomReq {
                room_id: "r".into(),
                proto: None,
            })
            .is_err());
    }

    #[test]
    fn push_msg_continues_after_a_full_queue() {
        let c = comet(Config {
            session_queue: 1,
            ..Config::default()
        });
        let a = session(&c, 1, "a", &[1000]);
        let b = session(&c, 2, "b", &[1000]);
        let req = |body| PushMsgReq {
            keys: vec!["a".into(), "missing".into(), "b".into()],
            proto_op: 1000,
            proto: raw(1000, body),
        };
        c.push_msg(req(b"1")).unwrap();
        // b's queue is drained; a's is not, so the next push overflows a only.
        assert_eq!(b.take_queue().unwrap().len(), 1);
        c.push_msg(req(b"2")).unwrap();
        assert_eq!(a.take_queue(), Err(Closed::SlowClient));
        let got = b.take_queue().unwrap();
        assert_eq!(got.len(), 1, "the loop went on past the slow session");
        assert_eq!(&got[0].tcp[16..], b"2");
    }

    #[test]
    fn broadcast_filters_on_accepts_room_does_not() {
        let c = comet(Config::default());
        let a = session(&c, 1, "a", &[1000]);
        let b = session(&c, 2, "b", &[2000]);
        c.broadcast(BroadcastReq {
            proto_op: 1000,
            proto: raw(1000, b"x"),
            speed: 0,
        })
        .unwrap();
        assert_eq!(a.take_queue().unwrap().len(), 1);
        assert!(b.take_queue().unwrap().is_empty());
        c.broadcast_room(BroadcastRoomReq {
            room_id: "live://1".into(),
            proto: raw(3000, b"y"),
        })
        .unwrap();
        assert_eq!(a.take_queue().unwrap().len(), 1);
        assert_eq!(b.take_queue().unwrap().len(), 1);
        assert_eq!(
            c.stats(),
            Stats {
                connections: 2,
                ips: 1,
                rooms: 1
            }
        );
        assert_eq!(
            c.rooms().rooms,
            HashMap::from([("live://1".to_owned(), true)])
        );
        assert_eq!(c.room_online("live://1"), 2);
        assert_eq!(c.room_online("live://2"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn paced_broadcast_pauses_fractionally_per_bucket() {
        let c = comet(Config {
            buckets: 2,
            ..Config::default()
        });
        // Find two keys in different buckets.
        let keys: Vec<String> = {
            let mut by_bucket: [Option<String>; 2] = [None, None];
            for i in 0.. {
                let key = format!("k{i}");
                let index = c.bucket_index(&key);
                by_bucket[index].get_or_insert(key);
                if by_bucket.iter().all(Option::is_some) {
                    break;
                }
            }
            by_bucket.into_iter().flatten().collect()
        };
        let first = session(&c, 1, &keys[0], &[1000]);
        let second = session(&c, 2, &keys[1], &[1000]);
        let started = Instant::now();
        // 1 session per bucket at speed 4: 250ms after each bucket.
        c.broadcast(BroadcastReq {
            proto_op: 1000,
            proto: raw(1000, b"x"),
            speed: 4,
        })
        .unwrap();
        tokio::task::yield_now().await;
        assert_eq!(first.take_queue().unwrap().len(), 1);
        assert!(second.take_queue().unwrap().is_empty());
        c.tracker.close();
        c.tracker.wait().await;
        assert_eq!(second.take_queue().unwrap().len(), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }
}
