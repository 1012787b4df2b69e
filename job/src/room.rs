//! Room batching: one batcher task per active room, fed by a bounded queue,
//! that merges the room's messages into one op 9 frame per batch and sends it
//! to the comets that hold the room's members (`members`: looked up for
//! every batch; every comet with `[job.room] targets = "all"`).
//!
//! A batch is what is already queued when the batcher takes its first message
//! (up to `room.batch`), plus, only if `room.window` > 0, what arrives within
//! the window. The batcher awaits the comets' outcomes (up to `room.pace`)
//! before taking the next batch, so a quiet room flushes each message at once
//! while messages that arrive during a flush coalesce into the next one (goim
//! instead waits up to `signal` = 1 s for every batch). Per-comet order is kept
//! because each batch of a room goes to the same worker of each comet, so
//! pacing is not needed for order: a batcher waits at most `room.pace` for a
//! batch, and a comet that missed it is "lagging": no room waits for it, nor
//! for room in its queue, until it accepts a batch within `room.pace` again. A
//! hung comet therefore delays the other comets' room deliveries once, by at
//! most `room.pace`, not by its call timeout on every batch until its breaker
//! opens. `room.pace = 0` never waits: batches coalesce only while the room's
//! queue is being filled faster than it is flushed.
//!
//! Idle exit without loss (goim issue #383): producers `try_send` under the
//! map lock; a batcher retires only under that lock with an empty queue,
//! removes its own entry, then closes its queue and still delivers whatever
//! a producer that cloned the sender earlier managed to queue. A producer that
//! finds the queue closed looks the room up again and starts a new batcher.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use parking_lot::Mutex;
use rim_proto::pb::comet::BroadcastRoomReq;
use rim_proto::pb::protocol::Proto;
use rim_proto::{Frame, Op, HEADER_LEN, PUSH_VER};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, RoomConfig};
use crate::delivery::{Ack, Settled};
use crate::members::Members;
use crate::routine::{fan_out, route_hash, CometHandle, Comets, Request};
use crate::{metrics, JobError};

/// How often a send retries after finding its batcher's queue closed. One
/// retry suffices (a retired batcher has left the map); more is a safety net.
const SEND_ATTEMPTS: usize = 4;

/// One room message waiting for its batch.
pub(crate) struct RoomMsg {
    /// Business op of the inner frame.
    pub(crate) op: i32,
    /// Message body.
    pub(crate) body: Bytes,
    /// Resolved when the message's batch was accepted by every comet.
    pub(crate) ack: Ack,
}

/// Logs, counts and resolves one room message that was not delivered.
fn fail(room: &str, msg: RoomMsg, err: JobError) {
    warn!(room, op = msg.op, reason = err.reason(), error = %err, "push dropped");
    metrics::dropped(err.reason(), 1);
    msg.ack.resolve(Err(err));
}

/// The batchers of the active rooms.
pub(crate) struct Rooms {
    map: Mutex<RoomMap>,
    comets: Arc<Comets>,
    /// Which comets a batch goes to.
    members: Arc<Members>,
    config: RoomConfig,
    enqueue_timeout: Duration,
    /// Comets that did not answer a room batch within `room.pace`: batchers
    /// do not wait for them until they answer one.
    lagging: Mutex<HashSet<Arc<str>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    next_id: AtomicU64,
}

#[derive(Default)]
struct RoomMap {
    batchers: HashMap<String, BatcherEntry>,
    closed: bool,
}

struct BatcherEntry {
    /// Tells this batcher from a successor for the same room.
    id: u64,
    tx: mpsc::Sender<RoomMsg>,
}

/// What a look-up under the map lock decided.
enum Lookup {
    Queued,
    Full(mpsc::Sender<RoomMsg>, RoomMsg),
    Closed(RoomMsg),
    Shutdown(RoomMsg),
}

impl Rooms {
    /// No active rooms yet. Batchers run on `tracker`, fan out to `comets`,
    /// and fail what is left when `cancel` fires.
    pub(crate) fn new(
        config: &Config,
        comets: Arc<Comets>,
        members: Arc<Members>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Rooms> {
        Arc::new(Rooms {
            map: Mutex::new(RoomMap::default()),
            comets,
            members,
            config: config.room.clone(),
            enqueue_timeout: config.enqueue_timeout,
            lagging: Mutex::new(HashSet::new()),
            tracker,
            cancel,
            next_id: AtomicU64::new(0),
        })
    }

    /// Queues a message for its room's batcher, starting one if needed;
    /// waits at most the enqueue timeout for room. On failure the message
    /// is failed, logged and counted.
    pub(crate) async fn send(self: &Arc<Self>, room: &str, mut msg: RoomMsg) {
        for _ in 0..SEND_ATTEMPTS {
            match self.lookup(room, msg) {
                Lookup::Queued => return,
                Lookup::Shutdown(m) => return fail(room, m, JobError::Shutdown),
                Lookup::Closed(m) => msg = m,
                Lookup::Full(tx, m) => match tx.send_timeout(m, self.enqueue_timeout).await {
                    Ok(()) => return,
                    Err(SendTimeoutError::Timeout(m)) => {
                        return fail(room, m, JobError::RoomQueueFull(room.to_owned()))
                    }
                    Err(SendTimeoutError::Closed(m)) => msg = m,
                },
            }
        }
        fail(room, msg, JobError::Shutdown);
    }

    /// Tries to queue `msg` under the map lock (so a batcher cannot retire
    /// between the look-up and the send), creating the batcher if needed.
    fn lookup(self: &Arc<Self>, room: &str, msg: RoomMsg) -> Lookup {
        let mut map = self.map.lock();
        if map.closed || self.cancel.is_cancelled() {
            return Lookup::Shutdown(msg);
        }
        if !map.batchers.contains_key(room) {
            let entry = self.spawn_batcher(room);
            map.batchers.insert(room.to_owned(), entry);
        }
        let Some(tx) = map.batchers.get(room).map(|e| &e.tx) else {
            // Inserted just above, under the same lock.
            return Lookup::Shutdown(msg);
        };
        match tx.try_send(msg) {
            Ok(()) => Lookup::Queued,
            Err(TrySendError::Full(msg)) => Lookup::Full(tx.clone(), msg),
            Err(TrySendError::Closed(msg)) => {
                // Only a cancelled batcher leaves a closed queue in the map.
                map.batchers.remove(room);
                Lookup::Closed(msg)
            }
        }
    }

    /// Starts a batcher for `room`. Called under the map lock; spawning does not block.
    fn spawn_batcher(self: &Arc<Self>, room: &str) -> BatcherEntry {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.config.queue);
        let batcher = Batcher {
            rooms: self.clone(),
            room: room.to_owned(),
            id,
            hash: route_hash(room),
            rx,
        };
        let span = info_span!("room", room = %room);
        self.tracker.spawn(batcher.run().instrument(span));
        debug!(room, "room batcher started");
        BatcherEntry { id, tx }
    }

    /// Decides, under the map lock, whether an idle batcher may retire: only
    /// with an empty queue. Removes its entry (unless already replaced).
    fn retire(&self, room: &str, id: u64, rx: &mpsc::Receiver<RoomMsg>) -> bool {
        let mut map = self.map.lock();
        if !rx.is_empty() {
            return false;
        }
        remove_own_entry(&mut map, room, id);
        true
    }

    /// Removes a stopping batcher's entry (unless already replaced).
    fn forget(&self, room: &str, id: u64) {
        remove_own_entry(&mut self.map.lock(), room, id);
    }

    /// Refuses new messages and drops every batcher's sender, so batchers
    /// deliver what is queued and stop.
    pub(crate) fn close(&self) {
        let batchers = {
            let mut map = self.map.lock();
            map.closed = true;
            std::mem::take(&mut map.batchers)
        };
        drop(batchers);
    }

    /// Notes a lagging comet's answer to a room batch sent at `sent`: one
    /// that accepted it within `room.pace` keeps up again and is waited for.
    /// (An answer to a batch that waited behind its backlog does not count,
    /// or a draining comet would be waited for, and found slow, by turns.)
    fn answered(&self, comet: &Arc<str>, outcome: &Result<(), JobError>, sent: Instant) {
        if outcome.is_ok()
            && sent.elapsed() <= self.config.pace
            && self.lagging.lock().remove(comet)
        {
            info!(comet = %comet, "comet takes room batches again");
        }
    }

    /// Rooms with a running batcher.
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.map.lock().batchers.len()
    }

    /// Batchers started so far.
    #[cfg(test)]
    pub(crate) fn started(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }
}

fn remove_own_entry(map: &mut RoomMap, room: &str, id: u64) {
    if map.batchers.get(room).is_some_and(|e| e.id == id) {
        map.batchers.remove(room);
    }
}

/// The batcher task of one room.
struct Batcher {
    rooms: Arc<Rooms>,
    room: String,
    id: u64,
    hash: u64,
    rx: mpsc::Receiver<RoomMsg>,
}

impl Batcher {
    async fn run(mut self) {
        let mut retired = false;
        loop {
            let first = tokio::select! {
                biased;
                _ = self.rooms.cancel.cancelled() => break,
                msg = self.rx.recv() => match msg {
                    Some(msg) => msg,
                    None => {
                        debug!("room batcher stopped");
                        return;
                    }
                },
                _ = tokio::time::sleep(self.rooms.config.idle), if !retired => {
                    if self.rooms.retire(&self.room, self.id, &self.rx) {
                        // From here on producers get `Closed` and start a new
                        // batcher; what they queued before is still drained.
                        retired = true;
                        self.rx.close();
                        debug!("room idle; batcher retiring");
                    }
                    continue;
                }
            };
            let batch = self.collect(first).await;
            self.flush(batch).await;
        }
        // Cancelled: producers now start no batcher; fail what is queued.
        self.rooms.forget(&self.room, self.id);
        self.rx.close();
        while let Some(msg) = self.rx.recv().await {
            fail(&self.room, msg, JobError::Shutdown);
        }
    }

    /// The first message plus what is queued, plus what arrives in the window.
    async fn collect(&mut self, first: RoomMsg) -> Vec<RoomMsg> {
        let started = Instant::now();
        let max = self.rooms.config.batch;
        let mut batch = Vec::with_capacity(max.min(64));
        batch.push(first);
        while batch.len() < max {
            match self.rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        let window = self.rooms.config.window;
        if !window.is_zero() {
            let deadline = started + window;
            while batch.len() < max {
                tokio::select! {
                    biased;
                    _ = self.rooms.cancel.cancelled() => break,
                    msg = self.rx.recv() => match msg {
                        Some(msg) => batch.push(msg),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        batch
    }

    /// Sends one batch to the room's comets and resolves its messages with the outcome.
    async fn flush(&self, batch: Vec<RoomMsg>) {
        let messages = batch.len();
        metrics::room_batch(messages);
        let len = batch.iter().map(|m| HEADER_LEN + m.body.len()).sum();
        let mut body = BytesMut::with_capacity(len);
        for msg in &batch {
            Frame::new(PUSH_VER, msg.op, 0, msg.body.clone()).encode(&mut body);
        }
        let proto = Proto {
            ver: PUSH_VER.into(),
            op: Op::Raw.code(),
            seq: 0,
            body: body.freeze(),
        };
        let all = self.rooms.comets.snapshot();
        // After the batch's pushes were taken from the queue: a join
        // answered before any of them was accepted is on record by now.
        let comets = self.rooms.members.targets(&self.room, &all).await;
        metrics::room_batch_comets(comets.len());
        let outcome = if all.is_empty() {
            let err = JobError::NoComets;
            warn!(room = %self.room, messages, reason = err.reason(), "push dropped");
            metrics::dropped(err.reason(), messages as u64);
            Err(err)
        } else if comets.is_empty() {
            // No comet holds a member: delivered to nobody, as a room
            // nobody is in always was.
            Ok(())
        } else {
            let request = Request::Room(BroadcastRoomReq {
                room_id: self.room.clone(),
                proto: Some(proto),
            });
            let names: Vec<Arc<str>> = comets.iter().map(|c| c.server().clone()).collect();
            let lagging: HashSet<Arc<str>> = {
                let mut lagging = self.rooms.lagging.lock();
                // Comets that were removed are forgotten (not those this
                // batch skips: they lag for every room).
                lagging.retain(|n| all.iter().any(|c| c.server() == n));
                names
                    .iter()
                    .filter(|n| lagging.contains(*n))
                    .cloned()
                    .collect()
            };
            drop(all);
            // A lagging comet's queue gets the batch only if it has room at
            // once: waiting for it would hold every comet's next batch.
            let timeout = self.rooms.enqueue_timeout;
            let enqueue_timeout = |c: &CometHandle| {
                if lagging.contains(c.server()) {
                    Duration::ZERO
                } else {
                    timeout
                }
            };
            let sent = Instant::now();
            let receivers = fan_out(
                &comets,
                self.hash,
                &request,
                messages as u64,
                enqueue_timeout,
            )
            .await;
            drop(comets);
            let mut paced: HashSet<Arc<str>> = names
                .iter()
                .filter(|n| !lagging.contains(*n))
                .cloned()
                .collect();
            let mut waiting: FuturesUnordered<_> =
                names
                    .into_iter()
                    .zip(receivers)
                    .map(|(name, rx)| async move {
                        (name, rx.await.unwrap_or(Err(JobError::Abandoned)))
                    })
                    .collect();
            let mut settled = Settled::default();
            let deadline = sent + self.rooms.config.pace;
            while !paced.is_empty() {
                match tokio::time::timeout_at(deadline, waiting.next()).await {
                    Ok(Some((name, outcome))) => {
                        paced.remove(&name);
                        settled.add(outcome);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // Slow to answer (or hung and not yet detected): the
                        // room's next batch goes out without waiting for these
                        // comets, and no room waits for them until they answer.
                        // Their workers still take the batches in order.
                        warn!(comets = ?paced, "comets slow to take room batches; not waiting for them");
                        self.rooms.lagging.lock().extend(paced.drain());
                    }
                }
            }
            // Comets not waited for may have answered already.
            while let Some(Some((name, outcome))) = waiting.next().now_or_never() {
                self.rooms.answered(&name, &outcome, sent);
                settled.add(outcome);
            }
            if !waiting.is_empty() {
                // The messages resolve once the comets not waited for settle.
                let rooms = self.rooms.clone();
                self.rooms.tracker.spawn(async move {
                    while let Some((name, outcome)) = waiting.next().await {
                        rooms.answered(&name, &outcome, sent);
                        settled.add(outcome);
                    }
                    let outcome = settled.outcome();
                    for msg in batch {
                        msg.ack.resolve(outcome.clone());
                    }
                });
                return;
            }
            settled.outcome()
        };
        for msg in batch {
            msg.ack.resolve(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use rim_proto::encode_raw_push;
    use rim_testkit::metrics::TestRecorder;

    use crate::testing::{room, Call, FakeComet};
    use crate::{Config, Job, JobError, RoomConfig};

    use super::*;

    fn room_job(room_config: RoomConfig, comets: &[(&str, Arc<FakeComet>)]) -> Arc<Job> {
        let job = Job::new(Config {
            room: room_config,
            ..Config::default()
        });
        for (server, comet) in comets {
            job.add_comet(server, comet.clone());
        }
        job
    }

    fn bodies(call: &Call) -> Vec<Bytes> {
        call.frames().into_iter().map(|f| f.body).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_room_flushes_at_once_to_every_comet() {
        let (a, b) = (FakeComet::accepting(), FakeComet::accepting());
        let job = room_job(RoomConfig::default(), &[("a", a.clone()), ("b", b.clone())]);
        let start = Instant::now();
        let delivery = job.dispatch(room("live://1", 1000, "hello")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(Instant::now(), start, "no timer advance: no added latency");
        let expected = Call::Room(BroadcastRoomReq {
            room_id: "live://1".into(),
            proto: Some(Proto {
                ver: 1,
                op: 9,
                seq: 0,
                body: encode_raw_push(1000, b"hello"),
            }),
        });
        assert_eq!(a.calls(), vec![expected.clone()]);
        assert_eq!(b.calls(), vec![expected]);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_arriving_during_a_flush_coalesce_in_order() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (a, gate) = FakeComet::gated();
        let job = room_job(RoomConfig::default(), &[("a", a.clone())]);
        let first = job.dispatch(room("live://1", 1000, "m0")).await.unwrap();
        a.wait_attempts(1).await;
        let mut rest = Vec::new();
        for i in 1..=5 {
            rest.push(
                job.dispatch(room("live://1", 1000 + i, format!("m{i}")))
                    .await
                    .unwrap(),
            );
        }
        gate.add_permits(2);
        assert_eq!(first.await, Ok(()));
        for delivery in rest {
            assert_eq!(delivery.await, Ok(()));
        }
        let calls = a.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(bodies(&calls[0]), vec![Bytes::from("m0")]);
        let second: Vec<Bytes> = (1..=5).map(|i| Bytes::from(format!("m{i}"))).collect();
        assert_eq!(bodies(&calls[1]), second);
        let ops: Vec<i32> = calls[1].frames().iter().map(|f| f.op).collect();
        assert_eq!(ops, vec![1001, 1002, 1003, 1004, 1005]);
        assert_eq!(
            recorder.samples("rim_job_room_batch_messages"),
            vec![1.0, 5.0]
        );
        assert_eq!(recorder.counter("rim_job_pushes_total{type=room}"), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn batch_limit_splits_a_backlog() {
        let (a, gate) = FakeComet::gated();
        let config = RoomConfig {
            batch: 3,
            ..RoomConfig::default()
        };
        let job = room_job(config, &[("a", a.clone())]);
        let mut deliveries = vec![job.dispatch(room("r", 1, "0")).await.unwrap()];
        a.wait_attempts(1).await;
        for i in 1..=7 {
            deliveries.push(job.dispatch(room("r", 1, i.to_string())).await.unwrap());
        }
        gate.add_permits(10);
        for delivery in deliveries {
            assert_eq!(delivery.await, Ok(()));
        }
        let sizes: Vec<usize> = a.calls().iter().map(|c| c.frames().len()).collect();
        assert_eq!(sizes, vec![1, 3, 3, 1]);
        let all: Vec<Bytes> = a.calls().iter().flat_map(bodies).collect();
        let expected: Vec<Bytes> = (0..8).map(|i| Bytes::from(i.to_string())).collect();
        assert_eq!(all, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn window_mode_waits_like_goim() {
        let a = FakeComet::accepting();
        let config = RoomConfig {
            batch: 20,
            window: Duration::from_secs(1),
            ..RoomConfig::default()
        };
        let job = room_job(config, &[("a", a.clone())]);

        // A lone message waits for the window.
        let start = Instant::now();
        let lone = job.dispatch(room("r", 1, "lone")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert!(a.calls().is_empty());
        assert_eq!(lone.await, Ok(()));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        assert_eq!(a.calls().len(), 1);

        // 20 messages flush at once; the 5 after them wait for their window.
        let start = Instant::now();
        let mut deliveries = Vec::new();
        for i in 0..25 {
            deliveries.push(job.dispatch(room("r", 1, format!("{i}"))).await.unwrap());
        }
        let mut deliveries = deliveries.into_iter();
        for delivery in deliveries.by_ref().take(20) {
            assert_eq!(delivery.await, Ok(()));
        }
        assert_eq!(Instant::now(), start, "a full batch does not wait");
        for delivery in deliveries {
            assert_eq!(delivery.await, Ok(()));
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        let sizes: Vec<usize> = a.calls().iter().map(|c| c.frames().len()).collect();
        assert_eq!(sizes, vec![1, 20, 5]);
    }

    #[tokio::test]
    async fn room_without_comets_is_counted() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let job = Job::new(Config::default());
        let delivery = job.dispatch(room("r", 1, "x")).await.unwrap();
        assert_eq!(delivery.await, Err(JobError::NoComets));
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=no_comets}"),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_batcher_retires_and_a_new_one_takes_over() {
        let a = FakeComet::accepting();
        let config = RoomConfig {
            idle: Duration::from_secs(60),
            ..RoomConfig::default()
        };
        let job = room_job(config, &[("a", a.clone())]);
        job.dispatch(room("r", 1, "x"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(job.active_rooms(), 1);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(job.active_rooms(), 0);
        job.dispatch(room("r", 1, "y"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(job.active_rooms(), 1);
        assert_eq!(a.calls().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_comet_draining_a_backlog_is_waited_for_only_once_it_keeps_up() {
        let (slow, gate) = FakeComet::gated();
        let fast = FakeComet::accepting();
        let job = Job::new(Config {
            push_timeout: Duration::from_secs(60),
            ..Config::default()
        });
        job.add_comet("slow", slow.clone());
        job.add_comet("fast", fast.clone());
        let pace = RoomConfig::default().pace;
        let start = Instant::now();

        // The slow comet misses the first batch's pace: it is lagging.
        let d0 = job.dispatch(room("r", 1, "0")).await.unwrap();
        fast.wait_calls(1).await;
        let d1 = job.dispatch(room("r", 1, "1")).await.unwrap();
        fast.wait_calls(2).await;
        assert_eq!(Instant::now() - start, pace);

        // It answers its backlog late: still lagging, not waited for.
        tokio::time::sleep(Duration::from_secs(1)).await;
        gate.add_permits(2);
        assert_eq!(d0.await, Ok(()));
        assert_eq!(d1.await, Ok(()));
        let t = Instant::now();
        let d2 = job.dispatch(room("r", 1, "2")).await.unwrap();
        fast.wait_calls(3).await;
        let d3 = job.dispatch(room("r", 1, "3")).await.unwrap();
        fast.wait_calls(4).await;
        assert_eq!(
            Instant::now(),
            t,
            "a comet answering late is not waited for"
        );

        // It answers batches within the pace: it keeps up, and is waited for again.
        gate.add_permits(2);
        assert_eq!(d2.await, Ok(()));
        assert_eq!(d3.await, Ok(()));
        let t = Instant::now();
        let _d4 = job.dispatch(room("r", 1, "4")).await.unwrap();
        fast.wait_calls(5).await;
        let _d5 = job.dispatch(room("r", 1, "5")).await.unwrap();
        fast.wait_calls(6).await;
        assert_eq!(Instant::now() - t, pace, "a comet keeping up is waited for");
    }

    #[tokio::test(start_paused = true)]
    async fn full_room_queue_fails_after_the_enqueue_timeout() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (a, gate) = FakeComet::gated();
        let job = Job::new(Config {
            enqueue_timeout: Duration::from_secs(1),
            push_timeout: Duration::from_secs(60),
            room: RoomConfig {
                queue: 2,
                // The batcher waits on the slow comet, so the queue fills.
                pace: Duration::from_secs(60),
                ..RoomConfig::default()
            },
            ..Config::default()
        });
        job.add_comet("a", a.clone());
        let in_flight = job.dispatch(room("r", 1, "0")).await.unwrap();
        a.wait_attempts(1).await;
        let queued: Vec<_> = vec![
            job.dispatch(room("r", 1, "1")).await.unwrap(),
            job.dispatch(room("r", 1, "2")).await.unwrap(),
        ];
        let start = Instant::now();
        let mut full = job.dispatch(room("r", 1, "3")).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        assert_eq!(
            (&mut full).now_or_never(),
            Some(Err(JobError::RoomQueueFull("r".into())))
        );
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=room_queue_full}"),
            1
        );
        gate.add_permits(2);
        assert_eq!(in_flight.await, Ok(()));
        for delivery in queued {
            assert_eq!(delivery.await, Ok(()));
        }
    }

    /// goim issue #383: a batcher that exits while producers still hold its
    /// sender must not lose their messages. `idle = 0` retires a batcher every
    /// time its queue runs empty, so producers race the exit constantly.
    ///
    /// How often a batcher finds its queue empty depends on scheduling (a
    /// starved batcher can find every message queued at once), so rounds are
    /// repeated until batchers have retired and restarted several times;
    /// every message of every round must arrive exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_exit_under_concurrent_sends_loses_nothing() {
        let cases = [
            (Duration::ZERO, 1024),
            (Duration::from_micros(50), 1024),
            (Duration::ZERO, 2),
        ];
        let rooms = ["r0", "r1", "r2"];
        let (producers, per_producer, max_rounds) = (4, 150, 20);
        for (idle, queue) in cases {
            let a = FakeComet::accepting();
            let config = RoomConfig {
                idle,
                queue,
                batch: 8,
                ..RoomConfig::default()
            };
            let job = room_job(config, &[("a", a.clone())]);
            let mut rounds = 0;
            while rounds < max_rounds && job.rooms_started() <= 3 * rooms.len() as u64 {
                let mut tasks = Vec::new();
                for p in 0..producers {
                    let job = job.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut deliveries = Vec::new();
                        for i in 0..per_producer {
                            let room_id = rooms[(p + i) % rooms.len()];
                            let body = format!("{rounds}:{p}:{i}");
                            deliveries.push(job.dispatch(room(room_id, 1, body)).await.unwrap());
                            if i % 7 == 0 {
                                tokio::time::sleep(Duration::from_micros(100)).await;
                            } else {
                                tokio::task::yield_now().await;
                            }
                        }
                        for delivery in deliveries {
                            assert_eq!(delivery.await, Ok(()));
                        }
                    }));
                }
                for task in tasks {
                    task.await.unwrap();
                }
                rounds += 1;
            }
            let sent = producers * per_producer * rounds;
            let mut seen: Vec<String> = a
                .calls()
                .iter()
                .flat_map(bodies)
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect();
            assert_eq!(seen.len(), sent, "idle {idle:?}, queue {queue}");
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), sent, "no duplicates");
            let started = job.rooms_started();
            assert!(
                started > 3 * rooms.len() as u64,
                "idle {idle:?}, queue {queue}: only {started} batchers started in {rounds} rounds"
            );
            job.shutdown().await;
        }
    }
}
