//! [`Logic`]: the logic service state and the `goim.logic.Logic` operations
//! comets call (connect, disconnect, heartbeat, receive, nodes; renew_online
//! lives in `online.rs`, pushes in `push.rs`).
//!
//! The methods take and return the generated protobuf types so that the
//! standalone mode (in-process calls) and a tonic service share one code path.
//! The transport (tonic, in-process) is not this module's concern.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rim_proto::pb::logic::{
    Backoff, ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReply,
    HeartbeatReq, NodesReply, NodesReq, ReceiveReply, ReceiveReq,
};
use rim_router::Router;
use tracing::{debug, info, warn};

use crate::auth::Authenticator;
use crate::balancer::{Balancer, MAX_NODES};
use crate::chat::SendRate;
use crate::groups::MuteCache;
use crate::hooks::Hooks;
use crate::online::OnlineState;
use crate::WordFilter;
use rim_queue::PushQueue;

use crate::{Config, LogicError, Mailbox};

/// The wall clock in Unix seconds; injectable so that tests control staleness.
pub(crate) type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The logic service: session registry access, online aggregation, node
/// balancing and push publishing. Shared as `Arc<Logic>` by the HTTP API and
/// the comet-facing service.
pub struct Logic {
    pub(crate) config: Config,
    pub(crate) router: Router,
    pub(crate) queue: Arc<dyn PushQueue>,
    pub(crate) online: OnlineState,
    // A plain mutex: picks are short, synchronous and never cross an await.
    pub(crate) balancer: Mutex<Balancer>,
    pub(crate) clock: Clock,
    /// Verifies client tokens (`config.auth`).
    pub(crate) auth: Authenticator,
    /// Stored messages; `None` stores nothing (`store=1` answers 400).
    pub(crate) mailbox: Option<Mailbox>,
    /// Per-user send rates of chat messages.
    pub(crate) send_rate: SendRate,
    /// Users' mutes, cached briefly.
    pub(crate) mutes: MuteCache,
    /// The word filter of sent messages.
    pub(crate) filter: Arc<WordFilter>,
    /// The backend hooks (`config.hooks`).
    pub(crate) hooks: Hooks,
}

impl std::fmt::Debug for Logic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logic")
            .field("config", &self.config)
            .field("router", &self.router)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Logic {
    /// A logic service over a session registry and a push queue. The config
    /// should have passed [`Config::validate`].
    pub fn new(config: Config, router: Router, queue: Arc<dyn PushQueue>) -> Arc<Logic> {
        Logic::with_clock(config, router, queue, None, Arc::new(system_clock))
    }

    /// [`Logic::new`] with mailboxes: stored pushes, the mailbox API and IM
    /// sessions.
    pub fn with_mailbox(
        config: Config,
        router: Router,
        queue: Arc<dyn PushQueue>,
        mailbox: Mailbox,
    ) -> Arc<Logic> {
        Logic::with_clock(config, router, queue, Some(mailbox), Arc::new(system_clock))
    }

    pub(crate) fn with_clock(
        config: Config,
        router: Router,
        queue: Arc<dyn PushQueue>,
        mailbox: Option<Mailbox>,
        clock: Clock,
    ) -> Arc<Logic> {
        let auth = Authenticator::from_config(&config.auth);
        let send_rate = SendRate::new(&config.chat);
        // The binary loads the filter once before starting (a words file
        // that cannot be read stops it with that error); here a failure can
        // only be a file that changed since: log it and filter nothing until
        // the next reload.
        let filter = WordFilter::load(&config.chat.filter).unwrap_or_else(|e| {
            tracing::error!(error = %e, "word filter not loaded; messages pass unfiltered until it reloads");
            WordFilter::unloaded(&config.chat.filter)
        });
        let hooks = Hooks::from_config(&config.hooks);
        Arc::new(Logic {
            filter: Arc::new(filter),
            send_rate,
            mutes: MuteCache::default(),
            hooks,
            auth,
            config,
            router,
            queue,
            online: OnlineState::default(),
            balancer: Mutex::new(Balancer::default()),
            clock,
            mailbox,
        })
    }

    /// The configuration this service runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The word filter of sent messages (to reload on SIGHUP and watch).
    pub fn filter(&self) -> &Arc<WordFilter> {
        &self.filter
    }

    /// The session registry.
    pub fn router(&self) -> &Router {
        &self.router
    }

    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Wall-clock Unix milliseconds, for message timestamps.
    pub(crate) fn now_ms(&self) -> i64 {
        crate::groups::unix_ms(SystemTime::now())
    }

    /// Admits a connection (goim `Connect`): verifies the token (per
    /// `config.auth`), picks a key when the client gave none, refuses a key
    /// that is live for another user, and records mid → key → comet.
    pub async fn connect(&self, req: ConnectReq) -> Result<ConnectReply, LogicError> {
        let token = match self.auth.authenticate(&req.token, self.now()) {
            Ok(token) => token,
            Err(reason) => return Err(refuse(&req.server, 0, "", reason)),
        };
        if token.im && token.mid == 0 {
            return Err(refuse(
                &req.server,
                0,
                &token.key,
                "im: an anonymous session (mid 0) has no mailbox".into(),
            ));
        }
        if token.im && self.mailbox.is_none() {
            return Err(refuse(
                &req.server,
                token.mid,
                &token.key,
                "im: this server stores no messages (no mailbox store)".into(),
            ));
        }
        let key = if token.key.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            if let Err(err) = self.check_key_owner(token.mid, &token.key).await {
                if !matches!(err, LogicError::Refused(_)) {
                    metrics::counter!("rim_logic_connects_total", "result" => "error").increment(1);
                    return Err(err);
                }
                return Err(refuse(&req.server, token.mid, &token.key, err.to_string()));
            }
            token.key
        };
        if let Err(err) = self.router.add_mapping(token.mid, &key, &req.server).await {
            metrics::counter!("rim_logic_connects_total", "result" => "error").increment(1);
            return Err(err.into());
        }
        metrics::counter!("rim_logic_connects_total", "result" => "ok").increment(1);
        debug!(
            mid = token.mid,
            key = %key,
            room = %token.room_id,
            server = %req.server,
            platform = %token.platform,
            "connected"
        );
        Ok(ConnectReply {
            mid: token.mid,
            key,
            room_id: token.room_id,
            accepts: token.accepts,
            heartbeat: self.config.heartbeat_timeout_nanos(),
            im: token.im,
            since: token
                .since
                .filter(|_| token.im)
                .map(|since| rim_proto::pb::logic::Since {
                    seq: since.seq,
                    epoch: since.epoch.unwrap_or_default(),
                }),
        })
    }

    /// A client-chosen key may replace a live session (the comet holding it
    /// closes the old connection) only when that session is the same user's:
    /// goim let anyone who knew a key kick its owner off and take its pushes.
    /// Anonymous (mid 0) clients own no keys, so they never take a live one.
    ///
    /// Check then add is not atomic: two users racing for the same fresh key
    /// can both pass; the later mapping wins, as in goim.
    async fn check_key_owner(&self, mid: i64, key: &str) -> Result<(), LogicError> {
        let servers = self.router.servers_by_keys(&[key.to_owned()]).await?;
        if servers.first().is_none_or(Option::is_none) {
            return Ok(());
        }
        if mid != 0 {
            let own = self.router.keys_by_mids(&[mid]).await?;
            if own.iter().any(|(k, _)| k == key) {
                return Ok(());
            }
        }
        Err(LogicError::Refused(format!(
            "key {key:?} belongs to another user's live connection"
        )))
    }
    /// Forgets a connection (goim `Disconnect`) unless its key now belongs to
    /// a newer session on another comet. `has` says whether the key record
    /// was removed.
    pub async fn disconnect(&self, req: DisconnectReq) -> Result<DisconnectReply, LogicError> {
        let has = self
            .router
            .del_mapping(req.mid, &req.key, &req.server)
            .await?;
        metrics::counter!("rim_logic_disconnects_total").increment(1);
        debug!(mid = req.mid, key = %req.key, server = %req.server, has, "disconnected");
        Ok(DisconnectReply { has })
    }

    /// Refreshes a connection's mapping (goim `Heartbeat`), re-adding it if it
    /// expired meanwhile.
    pub async fn heartbeat(&self, req: HeartbeatReq) -> Result<HeartbeatReply, LogicError> {
        let alive = self
            .router
            .expire_mapping(req.mid, &req.key, &req.server)
            .await?;
        metrics::counter!("rim_logic_heartbeats_total").increment(1);
        if !alive {
            debug!(mid = req.mid, key = %req.key, server = %req.server, "heartbeat re-added an expired mapping");
        }
        Ok(HeartbeatReply {})
    }

    /// Takes an upstream client message (goim `Receive`): like goim, logic only
    /// logs and counts it; business backends receive client messages by other means.
    pub async fn receive(&self, req: ReceiveReq) -> Result<ReceiveReply, LogicError> {
        let (op, len) = req.proto.as_ref().map_or((0, 0), |p| (p.op, p.body.len()));
        metrics::counter!("rim_logic_receives_total").increment(1);
        info!(
            mid = req.mid,
            op,
            body_len = len,
            "upstream message received"
        );
        Ok(ReceiveReply {})
    }

    /// The comet nodes a client should connect to (goim `Nodes`): ports,
    /// heartbeat, backoff and up to five comets picked by weight.
    pub async fn nodes(&self, req: NodesReq) -> Result<NodesReply, LogicError> {
        // Clients bootstrap from this answer: a registry hiccup degrades it to
        // the last known comets (or the default domain), it does not fail it.
        if let Err(err) = self.ensure_online_fresh().await {
            warn!(error = %err, "nodes: online refresh failed, answering from the last known comets");
        }
        let node = &self.config.node;
        let picked = self.balancer.lock().pick(MAX_NODES);
        let mut nodes: Vec<String> = if req.platform == "web" {
            picked
                .into_iter()
                .map(|p| format!("{}{}", p.hostname, node.host_domain))
                .collect()
        } else {
            picked.into_iter().flat_map(|p| p.addrs).collect()
        };
        if nodes.is_empty() {
            nodes.push(node.default_domain.clone());
        }
        let backoff = &self.config.backoff;
        Ok(NodesReply {
            domain: node.default_domain.clone(),
            tcp_port: i32::from(node.tcp_port),
            ws_port: i32::from(node.ws_port),
            wss_port: i32::from(node.wss_port),
            heartbeat: i32::try_from(node.heartbeat.as_secs()).unwrap_or(i32::MAX),
            nodes,
            backoff: Some(Backoff {
                max_delay: backoff.max_delay,
                base_delay: backoff.base_delay,
                factor: backoff.factor,
                jitter: backoff.jitter,
            }),
            heartbeat_max: node.heartbeat_max,
        })
    }
}

/// Counts and logs a refused connect; the comet closes the connection
/// without a reply (goim's protocol has no error frame).
fn refuse(server: &str, mid: i64, key: &str, reason: String) -> LogicError {
    metrics::counter!("rim_logic_connects_total", "result" => "refused").increment(1);
    info!(server = %server, mid, key = %key, reason = %reason, "connect refused");
    LogicError::Refused(reason)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use rim_proto::pb::logic::PushMsg;
    use rim_queue::InProcessQueue;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A test clock in Unix seconds, set by hand.
    #[derive(Clone, Default)]
    pub(crate) struct ManualClock(Arc<AtomicI64>);

    impl ManualClock {
        pub(crate) fn set(&self, secs: i64) {
            self.0.store(secs, Ordering::SeqCst);
        }
        pub(crate) fn clock(&self) -> Clock {
            let now = self.0.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        }
    }

    /// A logic over the real in-memory router and in-process queue.
    pub(crate) fn logic_with(
        config: Config,
        capacity: usize,
    ) -> (Arc<Logic>, mpsc::Receiver<PushMsg>, ManualClock) {
        let (queue, rx) = InProcessQueue::new(capacity, Duration::from_millis(50));
        let clock = ManualClock::default();
        clock.set(1_700_000_000);
        let router = Router::memory(&rim_router::Config::default());
        (
            Logic::with_clock(config, router, Arc::new(queue), None, clock.clock()),
            rx,
            clock,
        )
    }

    pub(crate) fn logic() -> (Arc<Logic>, mpsc::Receiver<PushMsg>, ManualClock) {
        logic_with(Config::default(), 64)
    }

    fn connect_req(server: &str, token: &str) -> ConnectReq {
        ConnectReq {
            server: server.into(),
            cookie: String::new(),
            token: Bytes::copy_from_slice(token.as_bytes()),
        }
    }

    #[tokio::test]
    async fn connect_with_key_records_the_mapping() {
        let (logic, _rx, _) = logic();
        let reply = logic
            .connect(connect_req(
                "comet-1",
                r#"{"mid":7,"key":"k7","room_id":"live://1","platform":"ios","accepts":[1000,1001]}"#,
            ))
            .await
            .unwrap();
        assert_eq!(
            reply,
            ConnectReply {
                mid: 7,
                key: "k7".into(),
                room_id: "live://1".into(),
                accepts: vec![1000, 1001],
                heartbeat: 480_000_000_000,
                ..Default::default()
            }
        );
        assert_eq!(
            logic.router.keys_by_mids(&[7]).await.unwrap(),
            vec![("k7".to_string(), "comet-1".to_string())]
        );
    }

    #[tokio::test]
    async fn connect_without_key_generates_a_uuid() {
        let (logic, _rx, _) = logic();
        let a = logic
            .connect(connect_req("c", r#"{"mid":1}"#))
            .await
            .unwrap();
        let b = logic.connect(connect_req("c", "{}")).await.unwrap();
        for reply in [&a, &b] {
            let uuid = uuid::Uuid::parse_str(&reply.key).unwrap();
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(reply.heartbeat, 8 * 60 * 1_000_000_000);
        }
        assert_ne!(a.key, b.key);
        assert_eq!(b.mid, 0);
        // The anonymous session is still routable by key.
        assert_eq!(
            logic
                .router
                .servers_by_keys(std::slice::from_ref(&b.key))
                .await
                .unwrap(),
            vec![Some("c".to_string())]
        );
    }

    #[tokio::test]
    async fn invalid_tokens_are_refused() {
        let recorder = rim_testkit::metrics::TestRecorder::default();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let (logic, _rx, _) = logic();
        let tokens = ["", "not json", r#"{"mid":"x"}"#, r#"{"mid":1.5}"#, "[1]"];
        for token in tokens {
            let err = logic.connect(connect_req("c", token)).await.unwrap_err();
            match err {
                LogicError::Refused(message) => {
                    assert!(message.starts_with("invalid token: "), "{message}")
                }
                other => panic!("{token:?}: expected Refused, got {other:?}"),
            }
        }
        // Every refusal is counted, as a refusal.
        assert_eq!(
            recorder.counter("rim_logic_connects_total{result=refused}"),
            tokens.len() as u64
        );
        assert_eq!(recorder.counter("rim_logic_connects_total{result=ok}"), 0);
        assert_eq!(
            recorder.counter("rim_logic_connects_total{result=error}"),
            0
        );
    }

    #[track_caller]
    fn assert_refused(result: Result<ConnectReply, LogicError>, expect: &str) {
        match result {
            Err(LogicError::Refused(message)) => {
                assert!(
                    message.contains(expect),
                    "{message:?} should contain {expect:?}"
                )
            }
            other => panic!("expected Refused({expect:?}), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn another_user_cannot_take_a_live_key() {
        let (logic, mut rx, _) = logic();
        logic
            .connect(connect_req("c1", r#"{"mid":1,"key":"k1"}"#))
            .await
            .unwrap();
        // goim would move k1 to mid 2 and kick mid 1 off.
        let stolen = logic
            .connect(connect_req("c2", r#"{"mid":2,"key":"k1"}"#))
            .await;
        assert_refused(stolen, "belongs to another user");
        let anonymous = logic.connect(connect_req("c2", r#"{"key":"k1"}"#)).await;
        assert_refused(anonymous, "belongs to another user");
        assert_eq!(
            logic.router.servers_by_keys(&["k1".into()]).await.unwrap(),
            vec![Some("c1".to_string())]
        );
        assert!(logic.router.keys_by_mids(&[2]).await.unwrap().is_empty());

        // The owner reconnecting with its key (to another comet) is the
        // legitimate same-key takeover.
        logic
            .connect(connect_req("c3", r#"{"mid":1,"key":"k1"}"#))
            .await
            .unwrap();
        logic
            .push_mids(1000, &[1], Bytes::from_static(b"hi"))
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().server, "c3");

        // Once the owner is gone, the key is free again.
        logic
            .disconnect(DisconnectReq {
                mid: 1,
                key: "k1".into(),
                server: "c3".into(),
            })
            .await
            .unwrap();
        let reply = logic
            .connect(connect_req("c2", r#"{"mid":2,"key":"k1"}"#))
            .await
            .unwrap();
        assert_eq!((reply.mid, reply.key.as_str()), (2, "k1"));
    }

    #[tokio::test]
    async fn an_anonymous_live_key_is_not_taken_either() {
        let (logic, _rx, _) = logic();
        logic
            .connect(connect_req("c1", r#"{"key":"anon"}"#))
            .await
            .unwrap();
        for token in [r#"{"key":"anon"}"#, r#"{"mid":5,"key":"anon"}"#] {
            assert_refused(
                logic.connect(connect_req("c2", token)).await,
                "belongs to another user",
            );
        }
    }

    #[tokio::test]
    async fn jwt_mode_takes_the_mid_from_the_verified_token() {
        use crate::auth::tests::{hs256, hs256_config, NOW};
        use serde_json::json;
        let config = Config {
            auth: hs256_config(),
            ..Config::default()
        };
        let (logic, _rx, clock) = logic_with(config, 4);
        clock.set(NOW);
        let jwt = hs256(&json!({"sub": "8", "exp": NOW + 60, "room": "live://8"}));
        let body = json!({"token": jwt, "mid": 1, "key": "k8", "room_id": "live://1"});
        let reply = logic
            .connect(connect_req("c", &body.to_string()))
            .await
            .unwrap();
        assert_eq!(
            (reply.mid, reply.key.as_str(), reply.room_id.as_str()),
            (8, "k8", "live://8")
        );
        // The goim token that trust mode believes is refused.
        assert_refused(
            logic
                .connect(connect_req("c", r#"{"mid":1,"key":"k1"}"#))
                .await,
            "no \"token\" field",
        );
        // The same JWT once expired (past the 30 s leeway) is refused.
        clock.set(NOW + 91);
        assert_refused(logic.connect(connect_req("c", &jwt)).await, "expired");
        // Another user's valid JWT cannot take k8.
        let other = hs256(&json!({"sub": "9", "exp": NOW + 600}));
        let body = json!({"token": other, "key": "k8"});
        assert_refused(
            logic.connect(connect_req("c", &body.to_string())).await,
            "belongs to another user",
        );
    }

    #[tokio::test]
    async fn heartbeat_value_follows_config() {
        let mut config = Config::default();
        config.node.heartbeat = Duration::from_secs(30);
        config.node.heartbeat_max = 3;
        let (logic, _rx, _) = logic_with(config, 4);
        let reply = logic.connect(connect_req("c", "{}")).await.unwrap();
        assert_eq!(reply.heartbeat, 90_000_000_000);
    }

    #[tokio::test]
    async fn disconnect_leaves_a_newer_session_alone() {
        let (logic, mut rx, _) = logic();
        logic
            .connect(connect_req("old", r#"{"mid":3,"key":"k"}"#))
            .await
            .unwrap();
        // The client reconnects with the same key to another comet before the
        // old comet reports the disconnect.
        logic
            .connect(connect_req("new", r#"{"mid":3,"key":"k"}"#))
            .await
            .unwrap();
        let reply = logic
            .disconnect(DisconnectReq {
                mid: 3,
                key: "k".into(),
                server: "old".into(),
            })
            .await
            .unwrap();
        assert!(!reply.has);
        logic
            .push_mids(1000, &[3], Bytes::from_static(b"hi"))
            .await
            .unwrap();
        let record = rx.recv().await.unwrap();
        assert_eq!(record.server, "new");
        assert_eq!(record.keys, vec!["k".to_string()]);

        let reply = logic
            .disconnect(DisconnectReq {
                mid: 3,
                key: "k".into(),
                server: "new".into(),
            })
            .await
            .unwrap();
        assert!(reply.has);
        assert!(logic.router.keys_by_mids(&[3]).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_keeps_and_restores_the_mapping() {
        let (queue, _rx) = InProcessQueue::new(4, Duration::from_secs(1));
        let router = Router::memory(&rim_router::Config {
            expire: Duration::from_secs(10),
        });
        let logic = Logic::new(Config::default(), router, Arc::new(queue));
        logic
            .connect(connect_req("c", r#"{"mid":9,"key":"k9"}"#))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(logic.router.keys_by_mids(&[9]).await.unwrap().is_empty());
        logic
            .heartbeat(HeartbeatReq {
                mid: 9,
                key: "k9".into(),
                server: "c".into(),
            })
            .await
            .unwrap();
        assert_eq!(logic.router.keys_by_mids(&[9]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn receive_only_acknowledges() {
        let (logic, mut rx, _) = logic();
        let req = ReceiveReq {
            mid: 1,
            proto: Some(rim_proto::pb::protocol::Proto {
                ver: 1,
                op: 4,
                seq: 1,
                body: Bytes::from_static(b"up"),
            }),
        };
        assert_eq!(logic.receive(req).await.unwrap(), ReceiveReply {});
        assert!(rx.try_recv().is_err());
        logic.receive(ReceiveReq::default()).await.unwrap();
    }

    fn online_req(server: &str, conns: i64, weight: i32) -> rim_proto::pb::logic::OnlineReq {
        rim_proto::pb::logic::OnlineReq {
            server: server.into(),
            room_count: Default::default(),
            conn_count: conns,
            ip_count: conns,
            addrs: vec![
                format!("{server}.example:3101"),
                format!("{server}.example:3102"),
            ],
            weight,
            grpc_addr: String::new(),
            offline: false,
        }
    }

    #[tokio::test]
    async fn nodes_without_comets_fall_back_to_the_default_domain() {
        let (logic, _rx, _) = logic();
        let reply = logic
            .nodes(NodesReq {
                platform: "web".into(),
                client_ip: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            reply,
            NodesReply {
                domain: "conn.goim.io".into(),
                tcp_port: 3101,
                ws_port: 3102,
                wss_port: 3103,
                heartbeat: 240,
                nodes: vec!["conn.goim.io".into()],
                backoff: Some(Backoff {
                    max_delay: 300,
                    base_delay: 3,
                    factor: 1.8,
                    jitter: 1.3
                }),
                heartbeat_max: 2,
            }
        );
    }

    #[tokio::test]
    async fn nodes_web_gets_hostnames_others_get_addrs() {
        let config = Config {
            online_refresh: Duration::ZERO,
            ..Config::default()
        };
        let (logic, _rx, clock) = logic_with(config, 4);
        logic.renew_online(online_req("c1", 0, 1)).await.unwrap();
        logic.renew_online(online_req("c2", 0, 1)).await.unwrap();
        let web = NodesReq {
            platform: "web".into(),
            client_ip: String::new(),
        };
        let reply = logic.nodes(web.clone()).await.unwrap();
        assert_eq!(
            reply.nodes,
            vec!["c1.goim.io".to_string(), "c2.goim.io".to_string()]
        );
        // Each pick credits the top comet with a connection. Halves round
        // down as in goim, so c1 also wins the second pick's tie; then c2 leads.
        logic.nodes(web).await.unwrap();
        let ios = logic
            .nodes(NodesReq {
                platform: "ios".into(),
                client_ip: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            ios.nodes,
            vec![
                "c2.example:3101".to_string(),
                "c2.example:3102".to_string(),
                "c1.example:3101".to_string(),
                "c1.example:3102".to_string(),
            ]
        );

        // Stale reports vanish from the nodes answer.
        clock.set(1_700_000_000 + 301);
        let reply = logic
            .nodes(NodesReq {
                platform: "web".into(),
                client_ip: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(reply.nodes, vec!["conn.goim.io".to_string()]);
    }
}
