//! Sessions without a connection, for benchmarks (`benches/broadcast.rs`)
//! that measure fan-out into session queues without sockets and connection
//! tasks in the way. Not part of the supported API.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::server::Comet;
use crate::session::Session;

/// A session registered in a comet's buckets (and room) like an
/// authenticated connection's, whose queue nobody drains but [`drain`](Self::drain).
#[derive(Debug)]
pub struct DetachedSession {
    comet: Arc<Comet>,
    session: Arc<Session>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(u64::MAX / 2);

impl DetachedSession {
    /// Registers a session with `key` in `room` (if any), accepting `accepts`.
    pub fn register(comet: &Arc<Comet>, key: &str, room: Option<&str>, accepts: &[i32]) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session::new(
            id,
            Arc::from(key),
            0,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            accepts,
        ));
        comet.register(&session, room);
        DetachedSession {
            comet: Arc::clone(comet),
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
        self.comet.unregister(&self.session);
    }
}
