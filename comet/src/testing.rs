//! Test support, for this crate's tests and for other crates' tests and
//! benches (feature `test-util`): a logic that refuses every client, and
//! sessions without a connection for measuring fan-out without sockets.
//! Not part of the supported API.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rim_proto::pb::logic::{
    ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply, OnlineReq,
    ReceiveReq,
};

use crate::hub::Hub;
use crate::logic::{LogicCallError, LogicClient};
use crate::session::Session;

/// A logic for unit tests that register sessions themselves: it refuses
/// every `connect`, accepts the other calls, and never answers an online
/// report (so a comet's report loop stays idle).
pub struct NoLogic;

#[async_trait]
impl LogicClient for NoLogic {
    async fn connect(&self, _: ConnectReq) -> Result<ConnectReply, LogicCallError> {
        Err(LogicCallError::Refused("test".into()))
    }
    async fn disconnect(&self, _: DisconnectReq) -> Result<DisconnectReply, LogicCallError> {
        Ok(DisconnectReply { has: true })
    }
    async fn heartbeat(&self, _: HeartbeatReq) -> Result<(), LogicCallError> {
        Ok(())
    }
    async fn renew_online(&self, _: OnlineReq) -> Result<OnlineReply, LogicCallError> {
        std::future::pending().await
    }
    async fn receive(&self, _: ReceiveReq) -> Result<(), LogicCallError> {
        Ok(())
    }
}

/// A session registered in a hub's buckets (and room) like an
/// authenticated connection's, whose queue nobody drains but [`drain`](Self::drain).
#[derive(Debug)]
pub struct DetachedSession {
    hub: Arc<Hub>,
    session: Arc<Session>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(u64::MAX / 2);

impl DetachedSession {
    /// Registers a session with `key` in `room` (if any), accepting `accepts`.
    pub fn register(hub: &Arc<Hub>, key: &str, room: Option<&str>, accepts: &[i32]) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session::new(
            id,
            Arc::from(key),
            0,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            accepts,
        ));
        hub.register(&session, room);
        DetachedSession {
            hub: Arc::clone(hub),
            session,
        }
    }

    /// Empties the queue; returns how many messages it held (0 once closed).
    pub fn drain(&self) -> usize {
        self.session.take_queue().map_or(0, |q| q.len())
    }
}

impl Drop for DetachedSession {
    fn drop(&mut self) {
        self.hub.unregister(&self.session);
    }
}
