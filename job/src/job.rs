//! [`Job`]: routes each push record to its comets (as goim's job does: PUSH
//! to the comet the record names, ROOM and BROADCAST to every comet), the
//! consumer loop over any [`RecordSource`], and shutdown.
//!
//! Owns the dispatch rules (which comets a record targets, how it is framed,
//! how broadcast speed is split); the queues and workers live in `routine`,
//! room batching in `room`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use rim_proto::pb::comet::{BroadcastReq, PushMsgReq};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_proto::pb::protocol::Proto;
use rim_proto::{encode_raw_push, Frame, Op, PUSH_VER};
use rim_queue::{Record, RecordSource};
use tokio::sync::Notify;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use crate::delivery::Delivery;

use crate::comet::CometClient;
use crate::delivery::Ack;
use crate::mailbox::MailboxStage;
use crate::members::{Members, RoomDirectory};
use crate::room::{RoomMsg, Rooms};
use crate::routine::{fan_out, route_hash, CometHandle, Comets, Request, Task};
use crate::{metrics, Config, JobError};

/// How long `shutdown` waits, after the grace period, for cancelled workers
/// to fail what they still hold (they no longer call comets, so it is quick).
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How long a removed comet's pushes fail without waiting for discovery:
/// the routers' default session expiry (goim's 30 min), after which no push
/// names it any more.
const DEPARTED_MEMORY: Duration = Duration::from_secs(30 * 60);

/// The job: fans push records out to comets through per-comet routine
/// queues, with room batching.
pub struct Job {
    config: Config,
    comets: Arc<Comets>,
    rooms: Arc<Rooms>,
    /// Which comets a room batch goes to.
    members: Arc<Members>,
    routine_tracker: TaskTracker,
    room_tracker: TaskTracker,
    /// Fires when the shutdown grace runs out (or the job is dropped):
    /// workers and batchers then fail what they hold instead of delivering it.
    cancel: CancellationToken,
    closed: AtomicBool,
    /// Asks the comet discovery (if any) for a round now: a push named a
    /// comet the job does not know.
    discover: Notify,
    /// Comets waited for in vain, and until when they are given up.
    missing: Mutex<HashMap<String, Instant>>,
    /// Stored messages (the `rim-mailbox` topic), when configured.
    mailbox: OnceLock<MailboxStage>,
}

impl Job {
    /// A job without comets. Out-of-range config values (which `validate`
    /// reports) are clamped to their minimum rather than panicking.
    pub fn new(config: Config) -> Arc<Job> {
        if let Err(e) = config.validate() {
            warn!(error = %e, "job config out of range; clamping");
        }
        let config = config.clamped();
        let cancel = CancellationToken::new();
        let routine_tracker = TaskTracker::new();
        let room_tracker = TaskTracker::new();
        let comets = Arc::new(Comets::new(
            config.clone(),
            routine_tracker.clone(),
            cancel.clone(),
        ));
        let members = Arc::new(Members::new(&config.room));
        let rooms = Rooms::new(
            &config,
            comets.clone(),
            members.clone(),
            room_tracker.clone(),
            cancel.clone(),
        );
        Arc::new(Job {
            config,
            comets,
            rooms,
            members,
            routine_tracker,
            room_tracker,
            cancel,
            closed: AtomicBool::new(false),
            discover: Notify::new(),
            missing: Mutex::new(HashMap::new()),
            mailbox: OnceLock::new(),
        })
    }

    /// Adds (or replaces) a comet and starts its routine workers.
    pub fn add_comet(&self, server_id: &str, client: Arc<dyn CometClient>) {
        self.missing.lock().remove(server_id);
        self.comets.add(server_id, client);
    }

    /// Removes a comet; its workers finish what is queued, then stop. Pushes
    /// for it then fail at once (`unknown_comet`), without the wait for
    /// discovery that a comet never seen gets, until it is added again or
    /// its sessions have long expired from the routers.
    pub(crate) fn remove_comet(&self, server_id: &str) {
        if !self.comets.remove(server_id) {
            debug!(server = server_id, "remove of unknown comet ignored");
            return;
        }
        // `add_comet` cleared any earlier mark, so this sets a fresh one.
        self.mark_departed(server_id);
    }

    /// Notes that comet `server_id`, not known to this job, is gone (its
    /// report is stale and it does not answer): pushes for it fail at once,
    /// like those for a removed comet, instead of waiting for discovery.
    pub(crate) fn comet_gone(&self, server_id: &str) {
        if self.comets.get(server_id).is_none() {
            self.mark_departed(server_id);
        }
    }

    /// Pushes for `server_id` fail at once for `DEPARTED_MEMORY`; an
    /// existing mark keeps its end.
    fn mark_departed(&self, server_id: &str) {
        self.missing
            .lock()
            .entry(server_id.to_owned())
            .or_insert_with(|| Instant::now() + DEPARTED_MEMORY);
    }

    /// Resolves when a push named a comet the job does not know: comet
    /// discovery should run a round now rather than at its next interval.
    pub(crate) async fn discovery_wanted(&self) {
        self.discover.notified().await;
    }

    /// The deadline of one call to a comet (config `push_timeout`).
    pub(crate) fn call_timeout(&self) -> Duration {
        self.config.push_timeout
    }

    /// Where room batches find the comets holding a room's members (the
    /// router shards); with `[room] targets = "members"` a batch then goes
    /// only to them and to the comets whose online report is not fresh
    /// ([`Job::note_reports`]). Without it every batch goes to every comet.
    /// Once; a second call is ignored.
    pub fn set_room_directory(&self, directory: Arc<dyn RoomDirectory>) {
        self.members.set_directory(directory);
    }

    /// What is known of the comets' online reports (comet discovery calls
    /// it on every round that read them): (server id, the report's
    /// `updated` in Unix seconds); a report counts as fresh for `comet_ttl`
    /// after it. Replaces the previous call's. A comet without a fresh
    /// report gets every room batch.
    pub fn note_reports<'a>(
        &self,
        reports: impl IntoIterator<Item = (&'a str, i64)>,
        comet_ttl: Duration,
    ) {
        self.members.note_reports(reports, comet_ttl);
    }

    /// Server ids of the known comets, sorted.
    pub fn comets(&self) -> Vec<String> {
        self.comets.names()
    }

    /// Rooms with a running batcher.
    #[cfg(test)]
    pub(crate) fn active_rooms(&self) -> usize {
        self.rooms.active()
    }

    /// Room batchers started so far.
    #[cfg(test)]
    pub(crate) fn rooms_started(&self) -> u64 {
        self.rooms.started()
    }

    /// Routes one record. Awaits only the bounded enqueue (backpressure);
    /// the returned [`Delivery`] resolves once every comet the record targets
    /// has settled: `Ok` when all accepted it, `Err` when some target failed
    /// (already logged and counted).
    ///
    /// `Err` here means the record was not routed at all: an unknown type, a
    /// PUSH without keys, a ROOM without a room, or a job that is shut down
    /// (also logged and counted).
    pub async fn dispatch(&self, msg: PushMsg) -> Result<Delivery, JobError> {
        let Ok(kind) = Type::try_from(msg.r#type) else {
            let err = JobError::InvalidRecord(format!("unknown push type {}", msg.r#type));
            return Err(reject(&msg, err));
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(reject(&msg, JobError::Shutdown));
        }
        match kind {
            Type::Push => self.push(msg).await,
            Type::Room => self.room(msg).await,
            Type::Broadcast => self.broadcast(msg).await,
        }
    }

    /// PUSH: to the named comet only, on the worker of the first key.
    async fn push(&self, msg: PushMsg) -> Result<Delivery, JobError> {
        metrics::pushed("push");
        let Some(first_key) = msg.keys.first() else {
            return Err(reject(
                &msg,
                JobError::InvalidRecord("push without keys".into()),
            ));
        };
        // One mailbox's frames (stored, or its notifies) on one worker, so
        // they keep their order whichever connections the user has.
        let hash = if msg.mailbox_seq != 0 || msg.im_only {
            route_hash(msg.mid)
        } else {
            route_hash(first_key)
        };
        let Some(comet) = self.wait_for_comet(&msg.server).await else {
            let err = self.unless_closed(JobError::UnknownComet(msg.server.clone()));
            if msg.mailbox_seq != 0 && !err.keeps_offset() {
                // Stored: the client's next sync brings it.
                debug!(server = %msg.server, mid = msg.mid, seq = msg.mailbox_seq, "stored message for a comet that is gone: it waits in the mailbox");
                metrics::deferred(1);
                return Ok(Delivery::done(Ok(())));
            }
            return Ok(Delivery::done(Err(reject(&msg, err))));
        };
        let mut proto = raw_proto(msg.operation, &msg.msg);
        if msg.mailbox_seq != 0 {
            proto.body = stored_frame(msg.operation, msg.mailbox_seq, &msg.msg);
        }
        let request = Request::Push(PushMsgReq {
            proto: Some(proto),
            proto_op: msg.operation,
            keys: msg.keys,
            mailbox_epoch: msg.mailbox_epoch,
            im_only: msg.im_only,
            mailbox_seq: msg.mailbox_seq,
            unfiltered: msg.unfiltered,
        });
        let (ack, rx) = Ack::new(1);
        let task = Task { request, ack };
        comet.enqueue(hash, task, self.config.enqueue_timeout).await;
        Ok(Delivery::waiting(vec![rx]))
    }

    /// The comet `server`; one not known yet is waited for (up to
    /// `unknown_comet_wait`, asking discovery for a round), unless it was
    /// waited for in vain recently. Waiting here holds the consumer, which
    /// keeps records in order.
    async fn wait_for_comet(&self, server: &str) -> Option<Arc<CometHandle>> {
        if let Some(comet) = self.comets.get(server) {
            return Some(comet);
        }
        let wait = self.config.unknown_comet_wait;
        let now = Instant::now();
        {
            let mut missing = self.missing.lock();
            missing.retain(|_, until| *until > now);
            if wait.is_zero() || missing.contains_key(server) {
                return None;
            }
        }
        let mut changes = self.comets.watch();
        self.discover.notify_one();
        let deadline = now + wait;
        loop {
            if let Some(comet) = self.comets.get(server) {
                return Some(comet);
            }
            let changed = tokio::select! {
                r = timeout_at(deadline, changes.changed()) => r,
                _ = self.cancel.cancelled() => return None,
            };
            if !matches!(changed, Ok(Ok(()))) {
                break;
            }
        }
        if let Some(comet) = self.comets.get(server) {
            return Some(comet);
        }
        warn!(server, waited = ?wait, "comet not discovered; its pushes fail for a while");
        self.missing
            .lock()
            .insert(server.to_owned(), Instant::now() + wait * 10);
        None
    }

    /// ROOM: to the room's batcher, which sends batches to the comets
    /// holding the room's members (`members`).
    async fn room(&self, msg: PushMsg) -> Result<Delivery, JobError> {
        metrics::pushed("room");
        if msg.room.is_empty() {
            let err = JobError::InvalidRecord("room push without a room".into());
            return Err(reject(&msg, err));
        }
        let PushMsg {
            room,
            operation,
            msg: body,
            ..
        } = msg;
        let (ack, rx) = Ack::new(1);
        let msg = RoomMsg {
            op: operation,
            body,
            ack,
        };
        self.rooms.send(&room, msg).await;
        Ok(Delivery::waiting(vec![rx]))
    }

    /// BROADCAST: to every comet, the speed split between them.
    async fn broadcast(&self, msg: PushMsg) -> Result<Delivery, JobError> {
        metrics::pushed("broadcast");
        let comets = self.comets.snapshot();
        if comets.is_empty() {
            let err = self.unless_closed(JobError::NoComets);
            return Ok(Delivery::done(Err(reject(&msg, err))));
        }
        let request = Request::Broadcast(BroadcastReq {
            proto_op: msg.operation,
            proto: Some(raw_proto(msg.operation, &msg.msg)),
            speed: per_comet_speed(msg.speed, comets.len()),
            unfiltered: msg.unfiltered,
        });
        let hash = route_hash(msg.operation);
        let timeout = self.config.enqueue_timeout;
        let receivers = fan_out(&comets, hash, &request, 1, |_| timeout).await;
        Ok(Delivery::waiting(receivers))
    }

    /// `err`, or `Shutdown` if the job's comets are gone because it shut down.
    fn unless_closed(&self, err: JobError) -> JobError {
        if self.closed.load(Ordering::Acquire) {
            JobError::Shutdown
        } else {
            err
        }
    }

    /// The consumer loop, for every queue, and the job's shutdown at its end:
    /// takes records from `source` and
    /// dispatches them, pipelined (it does not wait for one [`Delivery`]
    /// before the next record, but watches them all), and settles each
    /// record's receipt once its delivery resolved, which decides its offset
    /// on Kafka. Runs until the source ends or `shutdown` is cancelled; then
    /// takes what the source still holds (the in-process queue's accepted
    /// records), shuts the job down (comets take what is in flight within
    /// `shutdown_grace`; the rest fails as `Shutdown`: on Kafka it stays
    /// uncommitted for the next consumer, in-process it is dropped and
    /// counted) and lets the source make the outcomes durable.
    pub async fn consume(
        self: Arc<Self>,
        mut source: impl RecordSource,
        shutdown: CancellationToken,
    ) -> Ended {
        let mut in_flight = FuturesUnordered::new();
        let mut stats = ConsumeStats::default();
        info!("job consuming");
        let ended = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ended::Shutdown,
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => stats.record(outcome),
                record = source.next() => match record {
                    Some(record) => in_flight.push(self.take(record, &shutdown).await),
                    None => break Ended::SourceEnded,
                },
            }
        };
        source.close();
        let mut drained = 0u64;
        while let Some(record) = source.next().await {
            in_flight.push(self.take(record, &shutdown).await);
            drained += 1;
        }
        self.shutdown().await;
        // Every delivery resolves once the workers stopped; the deadline only
        // guards against one that does not. A receipt dropped unsettled keeps
        // its record for the next consumer.
        let deadline = Instant::now() + CANCEL_WAIT;
        loop {
            match timeout_at(deadline, in_flight.next()).await {
                Ok(Some(outcome)) => stats.record(outcome),
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        in_flight = in_flight.len(),
                        "job consumer stopped with deliveries unresolved; their records stay in the queue"
                    );
                    break;
                }
            }
        }
        drop(in_flight);
        source.finish().await;
        info!(
            drained,
            delivered = stats.delivered,
            failed = stats.failed,
            "job consumer stopped"
        );
        ended
    }

    /// Gives the job its mailboxes: records of stored messages (the
    /// `rim-mailbox` topic) are appended, then delivered. Once; a second
    /// call is ignored.
    pub fn set_mailbox(&self, stage: MailboxStage) {
        if self.mailbox.set(stage).is_err() {
            warn!("job mailbox already set; ignoring the second one");
        }
    }

    /// A stored message: appended to every mailbox it names (retried until
    /// the store takes it or `shutdown`), then delivered to the users'
    /// connections with the seqs the store gave.
    async fn take_stored(&self, msg: PushMsg, shutdown: &CancellationToken) -> Delivery {
        let Some(stage) = self.mailbox.get() else {
            let err =
                JobError::Config("a stored message, and this job has no mailbox store".into());
            return Delivery::done(Err(reject(&msg, err)));
        };
        let entries = match MailboxStage::entries(&msg) {
            Ok(entries) => entries,
            Err(e) => return Delivery::done(Err(reject(&msg, e))),
        };
        let Some(appended) = stage.append(entries, shutdown.cancelled()).await else {
            // Not stored: the record stays in the topic for the next job.
            return Delivery::done(Err(JobError::Shutdown));
        };
        let mut parts = Vec::new();
        for a in &appended {
            for record in stage.deliveries(&msg, a).await {
                parts.push(
                    self.dispatch(record)
                        .await
                        .unwrap_or_else(|e| Delivery::done(Err(e))),
                );
            }
        }
        Delivery::all(parts)
    }

    /// Dispatches one record; its [`Delivery`] settles the record's receipt.
    async fn take(&self, record: Record, shutdown: &CancellationToken) -> Delivery {
        let Record {
            msg,
            position,
            receipt,
        } = record;
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                // Can never be delivered: counted, and the queue passes it.
                error!(%position, error = %e, "push record skipped");
                metrics::dropped(e.reason(), 1);
                return Delivery::done(Ok(())).settling(receipt);
            }
        };
        if !msg.mailbox_id.is_empty() {
            return self.take_stored(msg, shutdown).await.settling(receipt);
        }
        let started = Instant::now();
        let dispatched = self.dispatch(msg).await;
        metrics::dispatch_time(started.elapsed());
        // A dispatch error is already logged and counted.
        dispatched
            .unwrap_or_else(|e| Delivery::done(Err(e)))
            .settling(receipt)
    }

    /// Stops workers after they drained their queues, bounded by config
    /// `shutdown_grace`; what is still queued then fails with
    /// [`JobError::Shutdown`] (logged and counted). Later dispatches fail.
    pub async fn shutdown(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            info!(grace = ?self.config.shutdown_grace, "job shutting down");
        }
        let deadline = Instant::now() + self.config.shutdown_grace;
        // Batchers first: they hand their queues to the comet workers.
        self.rooms.close();
        self.room_tracker.close();
        let mut clean = timeout_at(deadline, self.room_tracker.wait()).await.is_ok();
        if !clean {
            self.cancel.cancel();
        }
        self.comets.close();
        self.routine_tracker.close();
        clean &= timeout_at(deadline, self.routine_tracker.wait())
            .await
            .is_ok();
        if !clean {
            warn!(grace = ?self.config.shutdown_grace, "job shutdown grace expired; failing what is still queued");
        }
        self.cancel.cancel();
        let stopped = timeout(CANCEL_WAIT, async {
            tokio::join!(self.room_tracker.wait(), self.routine_tracker.wait())
        })
        .await
        .is_ok();
        if !stopped {
            warn!("job workers did not stop after cancellation");
        }
        info!(clean, "job stopped");
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Workers must not outlive an unreachable job; queued work fails as Shutdown.
        self.cancel.cancel();
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("comets", &self.comets.names())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why [`Job::consume`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its shutdown token was cancelled.
    Shutdown,
    /// The source ended by itself: the in-process queue's publishers are
    /// gone, or the Kafka source stopped (logged).
    SourceEnded,
}

/// Outcomes seen by the consumer loop.
#[derive(Default)]
struct ConsumeStats {
    delivered: u64,
    failed: u64,
}

impl ConsumeStats {
    fn record(&mut self, outcome: Result<(), JobError>) {
        match outcome {
            Ok(()) => self.delivered += 1,
            Err(e) => {
                // Logged at warn and counted where it failed.
                debug!(error = %e, "delivery failed");
                self.failed += 1;
            }
        }
    }
}

/// Logs and counts a record (or one record's only target) that is dropped.
fn reject(msg: &PushMsg, err: JobError) -> JobError {
    warn!(
        server = %msg.server,
        room = %msg.room,
        op = msg.operation,
        keys = msg.keys.len(),
        reason = err.reason(),
        error = %err,
        "push dropped"
    );
    metrics::dropped(err.reason(), 1);
    err
}

/// One stored message's frame: header seq = its mailbox seq.
fn stored_frame(op: i32, seq: u32, body: &Bytes) -> Bytes {
    Frame::new(PUSH_VER, op, seq as i32, body.clone()).to_bytes()
}

/// goim's push framing: the op 9 proto whose body is the inner frame
/// `{ver 1, op, seq 0, body}`.
fn raw_proto(op: i32, body: &Bytes) -> Proto {
    Proto {
        ver: PUSH_VER.into(),
        op: Op::Raw.code(),
        seq: 0,
        body: encode_raw_push(op, body),
    }
}

/// Each comet's share of a broadcast speed (goim divides by the comet
/// count). 0 means unthrottled; a positive speed never rounds down to 0.
fn per_comet_speed(speed: i32, comets: usize) -> i32 {
    if speed <= 0 || comets == 0 {
        return 0;
    }
    let comets = i32::try_from(comets).unwrap_or(i32::MAX);
    (speed / comets).max(1)
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use rim_proto::pb::comet::BroadcastReq;

    use rim_queue::{Outcome, Position, Receipt};
    use rim_testkit::metrics::TestRecorder;
    use tokio::sync::mpsc;

    use super::*;
    use crate::testing::{broadcast, push, room, Call, FakeComet};

    fn job_with(comets: &[(&str, Arc<FakeComet>)]) -> Arc<Job> {
        let job = Job::new(Config::default());
        for (server, comet) in comets {
            job.add_comet(server, comet.clone());
        }
        job
    }

    #[tokio::test(start_paused = true)]
    async fn push_is_framed_like_goim_and_goes_only_to_its_comet() {
        let (a, b) = (FakeComet::accepting(), FakeComet::accepting());
        let job = job_with(&[("a", a.clone()), ("b", b.clone())]);
        let start = Instant::now();
        let delivery = job
            .dispatch(push("a", &["k1", "k2"], 1000, b"hi"))
            .await
            .unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(Instant::now(), start, "no timer on the push path");
        let expected = PushMsgReq {
            keys: vec!["k1".into(), "k2".into()],
            proto_op: 1000,
            proto: Some(Proto {
                ver: 1,
                op: 9,
                seq: 0,
                body: encode_raw_push(1000, b"hi"),
            }),
            ..Default::default()
        };
        assert_eq!(a.calls(), vec![Call::Push(expected)]);
        assert!(b.calls().is_empty());
        // The inner frame is goim's {ver 1, op, seq 0, body}.
        let frames = a.calls()[0].frames();
        assert_eq!(frames, vec![rim_proto::Frame::new(1, 1000, 0, &b"hi"[..])]);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_comet_is_waited_for_then_counted_and_given_up_for_a_while() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        let wait = Config::default().unknown_comet_wait;
        let start = Instant::now();
        let delivery = job
            .dispatch(push("gone", &["k"], 1000, b"x"))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), wait, "waited for discovery");
        assert_eq!(delivery.await, Err(JobError::UnknownComet("gone".into())));
        // Given up: the next push to it fails at once instead of stalling
        // the consumer again.
        let start = Instant::now();
        let again = job
            .dispatch(push("gone", &["k"], 1000, b"y"))
            .await
            .unwrap();
        assert_eq!(again.await, Err(JobError::UnknownComet("gone".into())));
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=unknown_comet}"),
            2
        );
        assert_eq!(recorder.counter("rim_job_pushes_total{type=push}"), 2);
        assert!(a.calls().is_empty());
        // ... but only for a while.
        tokio::time::sleep(wait * 10).await;
        let start = Instant::now();
        let later = job
            .dispatch(push("gone", &["k"], 1000, b"z"))
            .await
            .unwrap();
        assert_eq!(later.await, Err(JobError::UnknownComet("gone".into())));
        assert_eq!(start.elapsed(), wait);
    }

    #[tokio::test(start_paused = true)]
    async fn push_for_a_removed_comet_fails_at_once_until_it_is_back() {
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        job.remove_comet("a");
        // A comet that left does not hold the consumer for the discovery
        // wait on every push still routed to it.
        let start = Instant::now();
        let delivery = job.dispatch(push("a", &["k"], 1000, b"x")).await.unwrap();
        assert_eq!(delivery.await, Err(JobError::UnknownComet("a".into())));
        assert_eq!(start.elapsed(), Duration::ZERO);
        job.add_comet("a", a.clone());
        let delivery = job.dispatch(push("a", &["k"], 1000, b"y")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(a.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn push_for_a_comet_known_to_be_gone_fails_at_once() {
        let job = job_with(&[("a", FakeComet::accepting())]);
        job.comet_gone("dead");
        let start = Instant::now();
        let delivery = job
            .dispatch(push("dead", &["k"], 1000, b"x"))
            .await
            .unwrap();
        assert_eq!(delivery.await, Err(JobError::UnknownComet("dead".into())));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A known comet is not marked gone.
        job.comet_gone("a");
        let delivery = job.dispatch(push("a", &["k"], 1000, b"y")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn push_for_a_comet_discovered_while_waiting_is_delivered() {
        let job = Job::new(Config::default());
        let discoverer = {
            let job = job.clone();
            tokio::spawn(async move {
                job.discovery_wanted().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let late = FakeComet::accepting();
                job.add_comet("late", late.clone());
                late
            })
        };
        let start = Instant::now();
        let delivery = job
            .dispatch(push("late", &["k"], 1000, b"x"))
            .await
            .unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        let late = discoverer.await.unwrap();
        assert_eq!(late.calls().len(), 1);
    }

    #[tokio::test]
    async fn unknown_comet_fails_at_once_when_waiting_is_off() {
        let job = Job::new(Config {
            unknown_comet_wait: Duration::ZERO,
            ..Config::default()
        });
        let delivery = job
            .dispatch(push("gone", &["k"], 1000, b"x"))
            .await
            .unwrap();
        assert_eq!(delivery.await, Err(JobError::UnknownComet("gone".into())));
    }

    #[tokio::test]
    async fn invalid_records_are_rejected_and_counted() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let job = job_with(&[("a", FakeComet::accepting())]);
        let mut unknown = push("a", &["k"], 1000, b"x");
        unknown.r#type = 7;
        assert!(matches!(
            job.dispatch(unknown).await,
            Err(JobError::InvalidRecord(_))
        ));
        let no_keys = push("a", &[], 1000, b"x");
        assert!(matches!(
            job.dispatch(no_keys).await,
            Err(JobError::InvalidRecord(_))
        ));
        let no_room = room("", 1000, "x");
        assert!(matches!(
            job.dispatch(no_room).await,
            Err(JobError::InvalidRecord(_))
        ));
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=invalid_record}"),
            3
        );
    }

    #[tokio::test]
    async fn pushes_of_one_key_keep_their_order() {
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        let mut deliveries = Vec::new();
        for op in 0..200 {
            deliveries.push(job.dispatch(push("a", &["k"], op, b"x")).await.unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap();
        }
        let ops: Vec<i32> = a
            .calls()
            .iter()
            .map(|c| match c {
                Call::Push(req) => req.proto_op,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ops, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn delivery_resolves_only_after_the_comet_accepted() {
        let (a, gate) = FakeComet::gated();
        let job = job_with(&[("a", a.clone())]);
        let mut delivery = job.dispatch(push("a", &["k"], 1000, b"x")).await.unwrap();
        a.wait_attempts(1).await;
        assert!((&mut delivery).now_or_never().is_none());
        assert!(a.calls().is_empty());
        gate.add_permits(1);
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(a.calls().len(), 1);
    }

    #[test]
    fn broadcast_speed_is_split_and_never_rounds_to_unthrottled() {
        assert_eq!(per_comet_speed(10, 3), 3);
        assert_eq!(per_comet_speed(2, 3), 1);
        assert_eq!(per_comet_speed(0, 3), 0);
        assert_eq!(per_comet_speed(-5, 3), 0);
        assert_eq!(per_comet_speed(10, 0), 0);
        assert_eq!(per_comet_speed(i32::MAX, usize::MAX), 1);
    }

    #[tokio::test]
    async fn broadcast_goes_to_every_comet_with_its_share_of_the_speed() {
        let comets: Vec<_> = (0..3).map(|_| FakeComet::accepting()).collect();
        let job = job_with(&[
            ("a", comets[0].clone()),
            ("b", comets[1].clone()),
            ("c", comets[2].clone()),
        ]);
        let delivery = job.dispatch(broadcast(1001, 10, b"all")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        let expected = BroadcastReq {
            proto_op: 1001,
            proto: Some(Proto {
                ver: 1,
                op: 9,
                seq: 0,
                body: encode_raw_push(1001, b"all"),
            }),
            speed: 3,
            ..Default::default()
        };
        for comet in &comets {
            assert_eq!(comet.calls(), vec![Call::Broadcast(expected.clone())]);
        }
    }

    #[tokio::test]
    async fn unfiltered_bit_reaches_the_comets() {
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        let mut keyed = push("a", &["k1"], 5, b"v1");
        keyed.unfiltered = true;
        let mut all = broadcast(5, 0, b"v1-all");
        all.unfiltered = true;
        for msg in [keyed, all, push("a", &["k1"], 5, b"v2")] {
            assert_eq!(job.dispatch(msg).await.unwrap().await, Ok(()));
        }
        let unfiltered: Vec<bool> = a
            .calls()
            .iter()
            .map(|call| match call {
                Call::Push(req) => req.unfiltered,
                Call::Broadcast(req) => req.unfiltered,
                other => panic!("unexpected call {other:?}"),
            })
            .collect();
        assert_eq!(unfiltered, [true, true, false]);
    }

    #[tokio::test]
    async fn broadcast_without_comets_is_counted_not_a_panic() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let job = Job::new(Config::default());
        let delivery = job.dispatch(broadcast(1001, 10, b"all")).await.unwrap();
        assert_eq!(delivery.await, Err(JobError::NoComets));
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=no_comets}"),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn removed_comet_finishes_its_queue() {
        let (a, gate) = FakeComet::gated();
        let job = job_with(&[("a", a.clone())]);
        let first = job.dispatch(push("a", &["k"], 1, b"x")).await.unwrap();
        let second = job.dispatch(push("a", &["k"], 2, b"x")).await.unwrap();
        job.remove_comet("a");
        assert!(job.comets().is_empty());
        gate.add_permits(2);
        assert_eq!(first.await, Ok(()));
        assert_eq!(second.await, Ok(()));
        assert_eq!(a.calls().len(), 2);
        let after = job.dispatch(push("a", &["k"], 3, b"x")).await.unwrap();
        assert_eq!(after.await, Err(JobError::UnknownComet("a".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn consume_drains_the_queue_and_exits_on_shutdown() {
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        let (tx, rx) = mpsc::channel(64);
        for op in 0..10 {
            tx.send(push("a", &["k"], op, b"x")).await.unwrap();
        }
        tx.send(room("live://1", 2000, "r")).await.unwrap();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert_eq!(job.clone().consume(rx, shutdown).await, Ended::Shutdown);
        // Everything queued before the cancel was dispatched and delivered.
        assert_eq!(a.calls().len(), 11);
        assert!(
            tx.send(push("a", &["k"], 99, b"x")).await.is_err(),
            "receiver closed"
        );
        assert_eq!(
            job.dispatch(push("a", &["k"], 1, b"x")).await.unwrap_err(),
            JobError::Shutdown
        );
    }

    #[tokio::test(start_paused = true)]
    async fn consume_exits_when_the_queue_closes() {
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        let (tx, rx) = mpsc::channel(4);
        let running = tokio::spawn(job.clone().consume(rx, CancellationToken::new()));
        for op in 0..20 {
            tx.send(push("a", &["k"], op, b"x")).await.unwrap();
        }
        drop(tx);
        assert_eq!(running.await.unwrap(), Ended::SourceEnded);
        assert_eq!(a.calls().len(), 20);
    }

    /// A source whose receipts report to the test.
    struct Tracked {
        records: Vec<Record>,
        closed: bool,
    }

    #[async_trait::async_trait]
    impl RecordSource for Tracked {
        async fn next(&mut self) -> Option<Record> {
            if self.closed {
                return None;
            }
            if self.records.is_empty() {
                return std::future::pending().await;
            }
            Some(self.records.remove(0))
        }
        fn close(&mut self) {
            self.closed = true;
        }
        async fn finish(&mut self) {}
    }

    #[tokio::test(start_paused = true)]
    async fn receipts_settle_on_delivery_and_stay_open_when_interrupted() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (slow, _gate) = FakeComet::gated();
        let fast = FakeComet::accepting();
        let config = Config {
            shutdown_grace: Duration::from_secs(1),
            push_timeout: Duration::from_secs(60),
            ..Config::default()
        };
        let job = Job::new(config);
        job.add_comet("slow", slow.clone());
        job.add_comet("fast", fast.clone());
        let mut outcomes = Vec::new();
        let mut records = Vec::new();
        for msg in [
            Ok(push("slow", &["k"], 1, b"x")),
            Ok(push("fast", &["k"], 2, b"x")),
            Err(rim_queue::RecordError::Empty),
        ] {
            let (receipt, outcome) = Receipt::tracked();
            outcomes.push(outcome);
            records.push(Record {
                msg,
                position: Position::InProcess,
                receipt,
            });
        }
        let shutdown = CancellationToken::new();
        let consuming = tokio::spawn(job.clone().consume(
            Tracked {
                records,
                closed: false,
            },
            shutdown.clone(),
        ));
        let mut outcomes = outcomes.into_iter();
        let (slow_outcome, fast_outcome, empty_outcome) = (
            outcomes.next().unwrap(),
            outcomes.next().unwrap(),
            outcomes.next().unwrap(),
        );
        // Settled out of order: the fast comet's record first, while the slow
        // comet holds the record before it.
        assert_eq!(fast_outcome.await.ok(), Some(Outcome::Settled));
        assert_eq!(empty_outcome.await.ok(), Some(Outcome::Settled));
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=empty_record}"),
            1
        );
        slow.wait_attempts(1).await;
        shutdown.cancel();
        consuming.await.unwrap();
        assert_ne!(
            slow_outcome.await.ok(),
            Some(Outcome::Settled),
            "a record the shutdown interrupted must stay in the queue"
        );
        assert_eq!(recorder.samples("rim_job_dispatch_seconds").len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_queued_work_then_fails_the_rest_after_grace() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (slow, gate) = FakeComet::gated();
        let config = Config {
            shutdown_grace: Duration::from_secs(2),
            push_timeout: Duration::from_secs(60),
            ..Config::default()
        };
        let job = Job::new(config);
        job.add_comet("a", slow.clone());
        let delivered = job.dispatch(push("a", &["k"], 1, b"x")).await.unwrap();
        // Queued behind the call in flight (queued together, the two would
        // go out in one batch call).
        slow.wait_attempts(1).await;
        let stuck = job.dispatch(push("a", &["k"], 2, b"x")).await.unwrap();
        gate.add_permits(1);
        let start = Instant::now();
        job.shutdown().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert_eq!(delivered.await, Ok(()));
        assert_eq!(stuck.await, Err(JobError::Shutdown));
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=shutdown}"),
            1
        );
        assert!(job.comets().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn clean_shutdown_is_immediate() {
        let a = FakeComet::accepting();
        let job = job_with(&[("a", a.clone())]);
        let delivery = job.dispatch(room("live://1", 1, "x")).await.unwrap();
        let start = Instant::now();
        job.shutdown().await;
        assert_eq!(Instant::now(), start);
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(a.calls().len(), 1);
    }
}
