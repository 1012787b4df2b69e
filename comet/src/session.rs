//! [`Session`]: the handle of one authenticated connection (goim's `Channel`),
//! shared between its bucket, its room and its connection task.
//!
//! A session owns the bounded outbound queue and the wake-up of its
//! connection task. Pushes never wait: they append under a short lock and
//! notify; a full queue closes the session as a slow client. The connection
//! task (`conn::handler`) is the only reader of the queue and the only writer
//! of the socket. The queue is a `VecDeque` that allocates only when a message
//! is queued and is taken whole by the writer, so an idle session holds no
//! queue memory.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::time::{Duration, Instant};

use crate::im::{ImGate, Offer, SyncAnswer};
use crate::memberships::Memberships;
use crate::metrics;
use crate::push::{Enqueue, Push};

/// Most ops one session may accept; a sub request that would exceed it is
/// ignored (goim has no limit; this bounds what one client can make us store).
pub(crate) const MAX_ACCEPTS: usize = 1024;

/// Why a session was closed by someone other than its connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// A newer connection registered the same key.
    Kicked,
    /// A push found the outbound queue full.
    SlowClient,
    /// The connection task is tearing down.
    Ended,
    /// The comet is shutting down.
    Shutdown,
}

/// One authenticated connection, as seen by buckets and rooms.
#[derive(Debug)]
pub(crate) struct Session {
    /// Connection id, unique per comet process (log field `conn.id`).
    pub(crate) id: u64,
    /// The connection key logic assigned (unique per cluster).
    pub(crate) key: Arc<str>,
    /// The user id (0 = anonymous).
    pub(crate) mid: i64,
    /// The client's IP address, for the distinct-IP count.
    pub(crate) ip: IpAddr,
    /// An IM session (durable messaging): stored frames go through its
    /// [`ImGate`] and past the accepts filter.
    pub(crate) im: bool,
    state: Mutex<State>,
    /// Wakes the connection task: something was queued, or the session closed.
    /// A flag and one waker (the task is the only waiter), so waiting for it
    /// adds no state to the connection task's future.
    waker: AtomicWaker,
    /// A wake-up not yet seen by the task (like `Notify`'s single permit).
    woken: AtomicBool,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Arc<Push>>,
    /// Sorted, deduplicated.
    accepts: Vec<i32>,
    /// The rooms it is in; changed only under the bucket's write lock.
    rooms: Memberships,
    closed: Option<Closed>,
    /// When logic last confirmed a heartbeat (or the connect) for this session.
    logic_heartbeat_at: Instant,
    logic_heartbeat_pending: bool,
    /// IM sessions only.
    im: Option<ImGate>,
}

impl Session {
    /// A new open session accepting `accepts` (order and duplicates ignored).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn new(id: u64, key: Arc<str>, mid: i64, ip: IpAddr, accepts: &[i32]) -> Session {
        Session::with_im(id, key, mid, ip, accepts, None)
    }

    /// [`Session::new`], an IM session when `im` is given.
    pub(crate) fn with_im(
        id: u64,
        key: Arc<str>,
        mid: i64,
        ip: IpAddr,
        accepts: &[i32],
        im: Option<ImGate>,
    ) -> Session {
        let mut accepts = accepts.to_vec();
        accepts.sort_unstable();
        accepts.dedup();
        accepts.truncate(MAX_ACCEPTS);
        Session {
            id,
            key,
            mid,
            ip,
            im: im.is_some(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                accepts,
                rooms: Memberships::default(),
                closed: None,
                logic_heartbeat_at: Instant::now(),
                logic_heartbeat_pending: false,
                im,
            }),
            waker: AtomicWaker::new(),
            woken: AtomicBool::new(false),
        }
    }

    /// Offers a push. `op` is the accepts filter (`None` for room pushes).
    /// Never blocks; `capacity` is the queue bound in messages.
    pub(crate) fn push(&self, push: &Arc<Push>, op: Option<i32>, capacity: usize) -> Enqueue {
        let state = self.state.lock();
        if let Some(op) = op {
            if state.accepts.binary_search(&op).is_err() {
                return Enqueue::NotAccepted;
            }
        }
        if state.closed.is_some() {
            return Enqueue::Closed;
        }
        self.enqueue(state, push, capacity)
    }

    /// Queues `push` under the held lock, or closes a full session.
    fn enqueue(
        &self,
        mut state: parking_lot::MutexGuard<'_, State>,
        push: &Arc<Push>,
        capacity: usize,
    ) -> Enqueue {
        let (outcome, wake) = self.enqueue_locked(&mut state, push, capacity);
        drop(state);
        if wake {
            self.wake();
        }
        outcome
    }

    /// Queues `push` in `state`; answers whether the task must be woken
    /// (once the lock is released).
    fn enqueue_locked(
        &self,
        state: &mut State,
        push: &Arc<Push>,
        capacity: usize,
    ) -> (Enqueue, bool) {
        if state.queue.len() >= capacity {
            // Everything still queued is lost with this message: the
            // connection is closed instead of delivering a gapped stream.
            let lost = state.queue.len() + 1;
            state.queue = VecDeque::new();
            state.closed = Some(Closed::SlowClient);
            tracing::warn!(
                conn.id = self.id,
                key = %self.key,
                mid = self.mid,
                capacity,
                lost,
                "slow client: outbound queue full, disconnecting"
            );
            metrics::slow_client(lost as u64);
            return (Enqueue::Overflow, true);
        }
        state.queue.push_back(Arc::clone(push));
        // A non-empty queue means a wake-up is already pending or the writer
        // will look at the queue again after its current write.
        (Enqueue::Queued, state.queue.len() == 1)
    }

    /// Offers a live stored frame at `seq` of `epoch` to an IM session,
    /// past the accepts filter: its [`ImGate`] delivers, holds or drops it.
    pub(crate) fn push_stored(
        &self,
        push: &Arc<Push>,
        seq: u32,
        epoch: &str,
        capacity: usize,
    ) -> Enqueue {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return Enqueue::Closed;
        }
        let Some(gate) = state.im.as_mut() else {
            return Enqueue::NotAccepted;
        };
        match gate.offer(seq, epoch, push) {
            Offer::Deliver => {
                metrics::im_frame("delivered");
                self.enqueue(state, push, capacity)
            }
            Offer::Held => {
                metrics::im_frame("held");
                Enqueue::Merged
            }
            Offer::Duplicate => {
                metrics::im_duplicate();
                Enqueue::Merged
            }
            Offer::Deferred => {
                metrics::im_frame("deferred");
                Enqueue::Merged
            }
        }
    }

    /// An IM session's `since` from its token, once.
    pub(crate) fn take_since(&self) -> Option<(u32, String)> {
        self.state.lock().im.as_mut().and_then(ImGate::take_since)
    }

    /// A sync starts: live stored frames are held until it ends.
    pub(crate) fn begin_sync(&self) {
        if let Some(gate) = self.state.lock().im.as_mut() {
            gate.begin_sync();
        }
    }

    /// A sync's page is ready: queues op 19 and the page, op 20, then the
    /// held frames the page did not have. Returns op 20's `more`.
    pub(crate) fn finish_sync(&self, answer: &SyncAnswer, capacity: usize) -> bool {
        let mut state = self.state.lock();
        let Some(gate) = state.im.as_mut() else {
            return false;
        };
        let (more, held) = gate.finish_sync(&answer.epoch, answer.page_last, answer.store_more);
        let end = answer.end(more);
        // One lock for the whole answer: no live frame can come between.
        let mut wake = false;
        for push in answer.page.iter().chain([&end]).chain(held.iter()) {
            if state.closed.is_some() {
                break;
            }
            let (outcome, woken) = self.enqueue_locked(&mut state, push, capacity);
            wake |= woken;
            if outcome != Enqueue::Queued {
                break;
            }
        }
        drop(state);
        if wake {
            self.wake();
        }
        more
    }

    /// A sync failed: queues its op 20 error; the session takes no live
    /// stored frame until the client's next op 18.
    pub(crate) fn fail_sync(&self, end: &Arc<Push>, capacity: usize) {
        let mut state = self.state.lock();
        if let Some(gate) = state.im.as_mut() {
            gate.fail_sync();
        }
        if state.closed.is_none() {
            self.enqueue(state, end, capacity);
        }
    }

    /// Takes everything queued, or says why the session is closed.
    pub(crate) fn take_queue(&self) -> Result<VecDeque<Arc<Push>>, Closed> {
        let mut state = self.state.lock();
        match state.closed {
            // Shutdown: what was accepted before it still goes out, once.
            Some(Closed::Shutdown) if !state.queue.is_empty() => {
                Ok(std::mem::take(&mut state.queue))
            }
            Some(closed) => Err(closed),
            None => Ok(std::mem::take(&mut state.queue)),
        }
    }

    /// Why the session is closed, if it is.
    pub(crate) fn closed(&self) -> Option<Closed> {
        self.state.lock().closed
    }

    /// Closes the session (first reason wins) and wakes its task. Returns the
    /// number of queued messages discarded, for the caller to count.
    ///
    /// A shutdown keeps the queue: the connection task writes what the comet
    /// accepted before it, then closes. Any other close discards the queue
    /// (also one a shutdown left behind).
    pub(crate) fn close(&self, reason: Closed) -> usize {
        let mut state = self.state.lock();
        let first = state.closed.is_none();
        if first {
            state.closed = Some(reason);
        }
        let lost = if reason == Closed::Shutdown {
            0
        } else {
            std::mem::take(&mut state.queue).len()
        };
        drop(state);
        if first {
            self.wake();
        }
        lost
    }

    /// Resolves when the session has been notified (push or close).
    pub(crate) fn notified(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.woken.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A wake between the check and the registration is not lost.
            if self.woken.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Stores a wake-up without waking anyone: the connection task calls it
    /// for a notification it consumed while busy, so its next `notified`
    /// returns at once.
    pub(crate) fn renotify(&self) {
        self.woken.store(true, Ordering::Release);
    }

    /// Stores the wake-up and wakes the connection task if it waits.
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether keyed and broadcast pushes of `op` reach this session.
    #[cfg(test)]
    pub(crate) fn accepts(&self, op: i32) -> bool {
        self.state.lock().accepts.binary_search(&op).is_ok()
    }

    /// Adds ops to the accepts set. Returns false (and changes nothing) if the
    /// set would grow past [`MAX_ACCEPTS`].
    pub(crate) fn sub(&self, ops: &[i32]) -> bool {
        let mut state = self.state.lock();
        let mut merged = state.accepts.clone();
        merged.extend_from_slice(ops);
        merged.sort_unstable();
        merged.dedup();
        if merged.len() > MAX_ACCEPTS {
            return false;
        }
        state.accepts = merged;
        true
    }

    /// Removes ops from the accepts set.
    pub(crate) fn unsub(&self, ops: &[i32]) {
        self.state.lock().accepts.retain(|op| !ops.contains(op));
    }

    /// The primary room's id.
    pub(crate) fn room(&self) -> Option<Arc<str>> {
        self.state.lock().rooms.primary().cloned()
    }

    /// Every room it is in.
    pub(crate) fn rooms(&self) -> Memberships {
        self.state.lock().rooms.clone()
    }

    /// Changes its rooms; callers hold the bucket's write lock and change
    /// the bucket's room maps to match.
    pub(crate) fn update_rooms<R>(&self, change: impl FnOnce(&mut Memberships) -> R) -> R {
        change(&mut self.state.lock().rooms)
    }

    /// Whether a logic heartbeat is due (`interval` since the last confirmed
    /// one and none in flight); if so, marks one in flight.
    pub(crate) fn start_logic_heartbeat(&self, now: Instant, interval: Duration) -> bool {
        let mut state = self.state.lock();
        if state.logic_heartbeat_pending || now < state.logic_heartbeat_at + interval {
            return false;
        }
        state.logic_heartbeat_pending = true;
        true
    }

    /// Records the end of a logic heartbeat; a failed one is retried on the
    /// next client heartbeat.
    pub(crate) fn finish_logic_heartbeat(&self, ok: bool, now: Instant) {
        let mut state = self.state.lock();
        state.logic_heartbeat_pending = false;
        if ok {
            state.logic_heartbeat_at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::net::Ipv4Addr;

    fn session(accepts: &[i32]) -> Session {
        Session::new(1, "k".into(), 7, IpAddr::V4(Ipv4Addr::LOCALHOST), accepts)
    }

    fn push() -> Arc<Push> {
        Arc::new(Push {
            tcp: Bytes::from_static(b"t"),
            ws: Bytes::from_static(b"w"),
        })
    }

    #[test]
    fn accepts_filter_only_when_asked() {
        let s = session(&[1000, 1000, 1001]);
        let p = push();
        assert_eq!(s.push(&p, Some(2000), 4), Enqueue::NotAccepted);
        assert_eq!(s.push(&p, Some(1000), 4), Enqueue::Queued);
        assert_eq!(s.push(&p, None, 4), Enqueue::Queued);
        assert_eq!(s.take_queue().unwrap().len(), 2);
        assert!(s.take_queue().unwrap().is_empty());
    }

    #[test]
    fn sub_and_unsub_change_accepts() {
        let s = session(&[1000]);
        assert!(s.sub(&[2000, 2001]));
        assert!(s.accepts(2000) && s.accepts(2001) && s.accepts(1000));
        s.unsub(&[2000, 1000]);
        assert!(!s.accepts(2000) && !s.accepts(1000) && s.accepts(2001));
        let too_many: Vec<i32> = (0..MAX_ACCEPTS as i32 + 1).collect();
        assert!(!s.sub(&too_many));
        assert!(!s.accepts(0));
    }

    #[test]
    fn full_queue_closes_as_slow_client() {
        let s = session(&[]);
        let p = push();
        for _ in 0..3 {
            assert_eq!(s.push(&p, None, 3), Enqueue::Queued);
        }
        assert_eq!(s.push(&p, None, 3), Enqueue::Overflow);
        assert_eq!(s.take_queue(), Err(Closed::SlowClient));
        assert_eq!(s.push(&p, None, 3), Enqueue::Closed);
        // The first reason wins.
        assert_eq!(s.close(Closed::Kicked), 0);
        assert_eq!(s.closed(), Some(Closed::SlowClient));
    }

    #[test]
    fn close_discards_queue() {
        let s = session(&[]);
        let p = push();
        s.push(&p, None, 8);
        s.push(&p, None, 8);
        assert_eq!(s.close(Closed::Kicked), 2);
        assert_eq!(s.take_queue(), Err(Closed::Kicked));
    }

    #[test]
    fn shutdown_keeps_what_was_accepted_for_one_last_write() {
        let s = session(&[]);
        let p = push();
        s.push(&p, None, 8);
        s.push(&p, None, 8);
        assert_eq!(s.close(Closed::Shutdown), 0);
        // Nothing new is accepted after the shutdown...
        assert_eq!(s.push(&p, None, 8), Enqueue::Closed);
        // ... what was accepted before goes out once, then the close.
        assert_eq!(s.take_queue().unwrap().len(), 2);
        assert_eq!(s.take_queue(), Err(Closed::Shutdown));
        // A teardown after a write that failed counts what was left.
        let t = session(&[]);
        t.push(&p, None, 8);
        t.close(Closed::Shutdown);
        assert_eq!(t.close(Closed::Ended), 1);
        assert_eq!(t.closed(), Some(Closed::Shutdown));
    }

    /// Every connection holds one `Arc<Session>`: keep it small. The rooms
    /// joined with op 24 cost one pointer here (they live in a box only
    /// while there are some); with the 16-byte `Arc` header the allocation
    /// (296 bytes) stays in the same 304-byte glibc chunk as before them.
    #[test]
    fn session_stays_small() {
        let size = std::mem::size_of::<Session>();
        assert!(size <= 280, "Session is {size} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn logic_heartbeat_interval() {
        let s = session(&[]);
        let interval = Duration::from_secs(60);
        assert!(!s.start_logic_heartbeat(Instant::now(), interval));
        tokio::time::advance(interval).await;
        assert!(s.start_logic_heartbeat(Instant::now(), interval));
        // One in flight at a time.
        assert!(!s.start_logic_heartbeat(Instant::now(), interval));
        s.finish_logic_heartbeat(false, Instant::now());
        // A failure is retried on the next client heartbeat.
        assert!(s.start_logic_heartbeat(Instant::now(), interval));
        s.finish_logic_heartbeat(true, Instant::now());
        assert!(!s.start_logic_heartbeat(Instant::now(), interval));
    }
}
