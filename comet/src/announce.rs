//! Room announcements: before a join to a room is answered (op 8 with a
//! room, op 12, op 24), this comet makes sure logic recorded it as holding
//! members of that room, so that job, which sends a room push only to the
//! comets on record, finds it (docs/protocol.md, "Rooms").
//!
//! [`Announcer`] remembers, per room, until when its record is known to be
//! alive: the instant the confirming call was sent (an announce, or an
//! online report that listed the room) plus the lifetime logic answered.
//! A join to a room confirmed for more than `room_announce_margin` from now
//! needs no call; otherwise it announces first and waits. Concurrent joins
//! to one room share one call (single flight). The call runs in its own
//! task, so a join that gives up (its connection closed) does not cancel it
//! for the others.
//!
//! A logic that does not serve announcements (goim's, answering
//! `UNIMPLEMENTED`) is logged once and asked again only after
//! [`UNSUPPORTED_RECHECK`]; meanwhile joins are answered at once, as before
//! (a goim job sends every room push to every comet anyway).
//!
//! Not owned here: the joins themselves (`conn::handler`, `hub`), the
//! online report that also confirms rooms (`online`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use rim_proto::pb::room::AnnounceReq;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::logic::{LogicCallError, LogicGateway};
use crate::metrics;

/// How long a logic that answered `UNIMPLEMENTED` is taken not to serve
/// announcements before it is asked again (it may have been upgraded).
pub(crate) const UNSUPPORTED_RECHECK: Duration = Duration::from_secs(60);

/// Why a room could not be announced.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AnnounceError {
    /// Logic refused, failed or did not answer in time.
    #[error("room announce failed: {0}")]
    Logic(LogicCallError),
    /// Logic answered without a lifetime: nothing is known to be recorded.
    #[error("room announce failed: logic answered ttl 0")]
    NoTtl,
    /// The task making the call ended without an answer (shutdown).
    #[error("room announce abandoned")]
    Abandoned,
}

type InFlight = Shared<BoxFuture<'static, Result<(), AnnounceError>>>;

#[derive(Default)]
struct Entry {
    /// The room's record lives at least until then.
    confirmed_until: Option<Instant>,
    /// The announce call in flight, shared by the joins waiting for it.
    in_flight: Option<InFlight>,
}

/// What a join learned about its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    /// The room's record is known to live past the margin: no call.
    Confirmed,
    /// Announced now (or joined a call in flight).
    Called,
    /// Logic does not serve announcements; the join goes ahead as before.
    Unsupported,
}

/// This comet's room announcements.
pub(crate) struct Announcer {
    logic: LogicGateway,
    server_id: String,
    margin: Duration,
    tracker: TaskTracker,
    rooms: Mutex<HashMap<Arc<str>, Entry>>,
    /// Until when logic is taken not to serve announcements.
    unsupported_until: Mutex<Option<Instant>>,
    /// Whether the unsupported logic was logged already (once per process).
    logged_unsupported: AtomicBool,
    /// Whether a lifetime no longer than the margin was logged already.
    logged_short_ttl: AtomicBool,
}

impl Announcer {
    pub(crate) fn new(
        logic: LogicGateway,
        server_id: String,
        margin: Duration,
        tracker: TaskTracker,
    ) -> Arc<Announcer> {
        Arc::new(Announcer {
            logic,
            server_id,
            margin,
            tracker,
            rooms: Mutex::new(HashMap::new()),
            unsupported_until: Mutex::new(None),
            logged_unsupported: AtomicBool::new(false),
            logged_short_ttl: AtomicBool::new(false),
        })
    }

    /// Returns once `room`'s record is known to live past the margin (or
    /// logic does not serve announcements): announces it first if needed,
    /// sharing a call already in flight for it.
    pub(crate) async fn ensure(self: &Arc<Self>, room: &str) -> Result<Announced, AnnounceError> {
        let call = {
            let now = Instant::now();
            if self
                .unsupported_until
                .lock()
                .is_some_and(|until| now < until)
            {
                return Ok(Announced::Unsupported);
            }
            let mut rooms = self.rooms.lock();
            if let Some(entry) = rooms.get(room) {
                if entry
                    .confirmed_until
                    .is_some_and(|until| now + self.margin < until)
                {
                    return Ok(Announced::Confirmed);
                }
            }
            let entry = rooms.entry(Arc::from(room)).or_default();
            match &entry.in_flight {
                Some(call) => call.clone(),
                None => {
                    let call = self.start(Arc::from(room));
                    entry.in_flight = Some(call.clone());
                    call
                }
            }
        };
        call.await?;
        if self.unsupported_until.lock().is_some() {
            return Ok(Announced::Unsupported);
        }
        Ok(Announced::Called)
    }

    /// Starts the announce of `room` in its own task.
    fn start(self: &Arc<Self>, room: Arc<str>) -> InFlight {
        let this = Arc::clone(self);
        let task = self.tracker.spawn(async move { this.announce(room).await });
        async move { task.await.unwrap_or(Err(AnnounceError::Abandoned)) }
            .boxed()
            .shared()
    }

    /// One announce call; records its outcome for the room.
    async fn announce(&self, room: Arc<str>) -> Result<(), AnnounceError> {
        let sent = Instant::now();
        let req = AnnounceReq {
            server: self.server_id.clone(),
            rooms: vec![room.to_string()],
        };
        let result = self
            .logic
            .call("announce", self.logic.client().announce(req))
            .await;
        let outcome = match result {
            Ok(reply) if reply.ttl_ms > 0 => {
                metrics::room_announce("ok");
                let until = self.until(sent, Duration::from_millis(reply.ttl_ms));
                extend(&mut self.rooms.lock(), &room, until);
                *self.unsupported_until.lock() = None;
                Ok(())
            }
            Ok(_) => {
                metrics::room_announce("error");
                Err(AnnounceError::NoTtl)
            }
            Err(LogicCallError::Unimplemented(reason)) => {
                metrics::room_announce("unimplemented");
                *self.unsupported_until.lock() = Some(Instant::now() + UNSUPPORTED_RECHECK);
                if !self.logged_unsupported.swap(true, Ordering::Relaxed) {
                    warn!(reason = %reason, "logic takes no room announcements (goim's logic?): joins are answered without them, so a rim job with [room] targets = \"members\" may miss this comet's new members; use targets = \"all\"");
                }
                Ok(())
            }
            Err(e) => {
                metrics::room_announce("error");
                Err(AnnounceError::Logic(e))
            }
        };
        if let Some(entry) = self.rooms.lock().get_mut(&room) {
            entry.in_flight = None;
        }
        outcome
    }

    /// Notes that the records of `rooms` live until `sent + ttl` (an online
    /// report sent at `sent` refreshed them with lifetime `ttl`); never moves
    /// a room's confirmation back. Forgets rooms whose confirmation lapsed
    /// and that have no call in flight: a report lists every room with
    /// members, so this is where the map is pruned, not on each announce.
    pub(crate) fn confirm(&self, rooms: &[&str], sent: Instant, ttl: Duration) {
        let until = self.until(sent, ttl);
        let now = Instant::now();
        let mut map = self.rooms.lock();
        map.retain(|_, e| e.in_flight.is_some() || e.confirmed_until.is_some_and(|u| u > now));
        for room in rooms {
            extend(&mut map, room, until);
        }
    }

    /// Until when a record written by a call sent at `sent` with lifetime
    /// `ttl` lives; warns once if that lifetime is too short to spare calls.
    fn until(&self, sent: Instant, ttl: Duration) -> Instant {
        if ttl <= self.margin + self.logic.timeout()
            && !self.logged_short_ttl.swap(true, Ordering::Relaxed)
        {
            warn!(
                ttl = ?ttl,
                margin = ?self.margin,
                "room records live no longer than room_announce_margin + logic_timeout: every join announces its room; raise logic's online_stale or lower room_announce_margin"
            );
        }
        sent + ttl
    }

    /// Rooms with an entry (tests).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.rooms.lock().len()
    }
}

/// Moves `room`'s confirmation to `until`, never back.
fn extend(rooms: &mut HashMap<Arc<str>, Entry>, room: &str, until: Instant) {
    match rooms.get_mut(room) {
        Some(entry) => {
            entry.confirmed_until = Some(entry.confirmed_until.map_or(until, |u| u.max(until)));
        }
        None => {
            let entry = Entry {
                confirmed_until: Some(until),
                in_flight: None,
            };
            rooms.insert(Arc::from(room), entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use rim_proto::pb::logic::{
        ConnectReply, ConnectReq, DisconnectReply, DisconnectReq, HeartbeatReq, OnlineReply,
        OnlineReq, ReceiveReq,
    };
    use rim_proto::pb::room::AnnounceReply;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::logic::LogicClient;

    /// A logic whose announces wait for a permit, then answer `answer`.
    struct Gated {
        calls: AtomicUsize,
        gate: Semaphore,
        answer: Mutex<Result<AnnounceReply, LogicCallError>>,
    }

    #[async_trait]
    impl LogicClient for Gated {
        async fn connect(&self, _: ConnectReq) -> Result<ConnectReply, LogicCallError> {
            unreachable!()
        }
        async fn disconnect(&self, _: DisconnectReq) -> Result<DisconnectReply, LogicCallError> {
            unreachable!()
        }
        async fn heartbeat(&self, _: HeartbeatReq) -> Result<(), LogicCallError> {
            unreachable!()
        }
        async fn renew_online(&self, _: OnlineReq) -> Result<OnlineReply, LogicCallError> {
            unreachable!()
        }
        async fn receive(&self, _: ReceiveReq) -> Result<(), LogicCallError> {
            unreachable!()
        }
        async fn announce(&self, req: AnnounceReq) -> Result<AnnounceReply, LogicCallError> {
            assert_eq!(req.server, "c1");
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            self.answer.lock().clone()
        }
    }

    fn announcer(answer: Result<AnnounceReply, LogicCallError>) -> (Arc<Announcer>, Arc<Gated>) {
        let logic = Arc::new(Gated {
            calls: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            answer: Mutex::new(answer),
        });
        let gateway = LogicGateway::new(logic.clone(), Duration::from_secs(5));
        let announcer = Announcer::new(
            gateway,
            "c1".into(),
            Duration::from_secs(60),
            TaskTracker::new(),
        );
        (announcer, logic)
    }

    fn ttl(secs: u64) -> Result<AnnounceReply, LogicCallError> {
        Ok(AnnounceReply {
            ttl_ms: secs * 1000,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_joins_share_one_call_and_later_ones_none() {
        let (announcer, logic) = announcer(ttl(300));
        let joins: Vec<_> = (0..5)
            .map(|_| {
                let a = announcer.clone();
                tokio::spawn(async move { a.ensure("live://1").await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(logic.calls.load(Ordering::SeqCst), 1, "one call in flight");
        for join in &joins {
            assert!(!join.is_finished(), "no join answered before the call");
        }
        logic.gate.add_permits(1);
        for join in joins {
            assert_eq!(join.await.unwrap().unwrap(), Announced::Called);
        }
        // Confirmed for 300 s from the call: no call while 60 s remain ...
        tokio::time::advance(Duration::from_secs(239)).await;
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Confirmed
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 1);
        // ... and a new call once the margin is reached.
        tokio::time::advance(Duration::from_secs(1)).await;
        logic.gate.add_permits(1);
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Called
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 2);
        // Another room has a call of its own.
        logic.gate.add_permits(1);
        announcer.ensure("live://2").await.unwrap();
        assert_eq!(logic.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_fails_every_waiting_join_and_the_next_join_calls_again() {
        let (announcer, logic) = announcer(Err(LogicCallError::Unavailable("down".into())));
        let joins: Vec<_> = (0..3)
            .map(|_| {
                let a = announcer.clone();
                tokio::spawn(async move { a.ensure("live://1").await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        logic.gate.add_permits(1);
        for join in joins {
            assert!(matches!(
                join.await.unwrap(),
                Err(AnnounceError::Logic(LogicCallError::Unavailable(_)))
            ));
        }
        *logic.answer.lock() = ttl(300);
        logic.gate.add_permits(1);
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Called
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 2);
        // A zero ttl confirms nothing: an error too.
        *logic.answer.lock() = ttl(0);
        logic.gate.add_permits(1);
        assert!(matches!(
            announcer.ensure("live://3").await,
            Err(AnnounceError::NoTtl)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_that_gives_up_does_not_cancel_the_call() {
        let (announcer, logic) = announcer(ttl(300));
        let first = {
            let a = announcer.clone();
            tokio::spawn(async move { a.ensure("live://1").await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        let _ = first.await;
        logic.gate.add_permits(1);
        // The call still completes and confirms the room.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Confirmed
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unimplemented_logic_lets_joins_through_and_is_asked_again_later() {
        let (announcer, logic) = announcer(Err(LogicCallError::Unimplemented("goim".into())));
        logic.gate.add_permits(1);
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Unsupported
        );
        // Not asked again for a while, for any room.
        assert_eq!(
            announcer.ensure("live://2").await.unwrap(),
            Announced::Unsupported
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 1);
        // Upgraded meanwhile: asked again after the recheck interval.
        tokio::time::advance(UNSUPPORTED_RECHECK).await;
        *logic.answer.lock() = ttl(300);
        logic.gate.add_permits(1);
        assert_eq!(
            announcer.ensure("live://2").await.unwrap(),
            Announced::Called
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_confirm_their_rooms_and_lapsed_rooms_are_forgotten() {
        let (announcer, logic) = announcer(ttl(300));
        let sent = Instant::now();
        announcer.confirm(&["live://1", "live://2"], sent, Duration::from_secs(300));
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Confirmed
        );
        // An older confirmation does not move it back.
        announcer.confirm(
            &["live://1"],
            sent - Duration::from_secs(100),
            Duration::from_secs(300),
        );
        tokio::time::advance(Duration::from_secs(230)).await;
        assert_eq!(
            announcer.ensure("live://1").await.unwrap(),
            Announced::Confirmed
        );
        assert_eq!(logic.calls.load(Ordering::SeqCst), 0);
        // Past the confirmation, a report that lists only live://1 forgets live://2.
        tokio::time::advance(Duration::from_secs(100)).await;
        announcer.confirm(&["live://1"], Instant::now(), Duration::from_secs(300));
        assert_eq!(announcer.tracked(), 1);
    }
}
