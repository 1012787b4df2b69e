//! Per-comet routine workers: the registry of known comets ([`Comets`]), each
//! comet's bounded worker queues ([`CometHandle`]) and the workers that call
//! the [`CometClient`] with a deadline, retries and a circuit breaker.
//!
//! Ordering: a task goes to the worker chosen by a hash (first key for a
//! keyed push, room for a room batch, op for a broadcast), and each worker
//! delivers its queue one task at a time, so one connection's pushes and one
//! room's batches reach a comet in order (goim spreads them round robin).
//!
//! Isolation: enqueueing waits at most `enqueue_timeout`, each call at most
//! `push_timeout`, and a comet whose calls keep failing trips a breaker that
//! fails its queued tasks at once until a probe call succeeds, so a dead comet
//! neither stalls the consumer nor holds room batches hostage for long.
//!
//! Not owned here: which comets exist (discovery, or standalone wiring) and
//! what a record turns into (the job's dispatch).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::comet::{CometCallError, CometClient};
use crate::delivery::Ack;
use crate::{metrics, Config, JobError};

/// First backoff between retries of a failed call; doubles each retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long a tripped breaker fails tasks before letting one probe call through.
const BREAKER_COOLDOWN_MIN: Duration = Duration::from_secs(1);
/// The cooldown doubles after each failed probe, up to this.
const BREAKER_COOLDOWN_MAX: Duration = Duration::from_secs(30);

/// A hash that picks the worker of a key, room or op.
pub(crate) fn route_hash(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// One call to make on a comet.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Push(PushMsgReq),
    Broadcast(BroadcastReq),
    Room(BroadcastRoomReq),
}

impl Request {
    /// The business op, for logs (a room batch carries many; it logs op 9).
    fn op(&self) -> i32 {
        match self {
            Request::Push(req) => req.proto_op,
            Request::Broadcast(req) => req.proto_op,
            Request::Room(req) => req.proto.as_ref().map_or(0, |p| p.op),
        }
    }

    /// A stored message (it has a mailbox seq).
    fn is_stored(&self) -> bool {
        matches!(self, Request::Push(req) if req.mailbox_seq != 0)
    }

    fn room(&self) -> Option<&str> {
        match self {
            Request::Room(req) => Some(&req.room_id),
            _ => None,
        }
    }
}

/// A request and the ack of its outcome.
pub(crate) struct Task {
    pub(crate) request: Request,
    pub(crate) ack: Ack,
}

/// Logs, counts and resolves a task that was not delivered.
fn fail(server: &str, task: Task, err: JobError) {
    let messages = task.ack.messages();
    if task.request.is_stored() && !err.keeps_offset() {
        // Not lost: it waits in the mailbox for the client's next sync.
        warn!(
            server,
            messages,
            reason = err.reason(),
            error = %err,
            "stored message not delivered live; it waits in the mailbox"
        );
        metrics::deferred(messages);
        task.ack.resolve(Err(err));
        return;
    }
    warn!(
        server,
        op = task.request.op(),
        room = task.request.room(),
        messages,
        reason = err.reason(),
        error = %err,
        "push dropped"
    );
    metrics::dropped(err.reason(), messages);
    task.ack.resolve(Err(err));
}

/// Enqueues `request` on every one of `comets` concurrently, waiting for
/// room in each comet's queue at most `timeout(comet)`, and returns one
/// receiver per comet. Each part that cannot be enqueued is already failed,
/// logged and counted.
pub(crate) async fn fan_out(
    comets: &[Arc<CometHandle>],
    hash: u64,
    request: &Request,
    messages: u64,
    timeout: impl Fn(&CometHandle) -> Duration,
) -> Vec<oneshot::Receiver<Result<(), JobError>>> {
    let mut receivers = Vec::with_capacity(comets.len());
    let mut sends = Vec::with_capacity(comets.len());
    for comet in comets {
        let (ack, rx) = Ack::new(messages);
        receivers.push(rx);
        let task = Task {
            request: request.clone(),
            ack,
        };
        sends.push(comet.enqueue(hash, task, timeout(comet)));
    }
    futures_util::future::join_all(sends).await;
    receivers
}

// === impl CometHandle ===

/// The sending side of one comet's workers. Dropping the last handle (and
/// every clone of its senders) lets the workers finish their queues and stop.
pub(crate) struct CometHandle {
    server: Arc<str>,
    routines: Vec<mpsc::Sender<Task>>,
}

impl CometHandle {
    /// The comet's server id.
    pub(crate) fn server(&self) -> &Arc<str> {
        &self.server
    }

    /// Puts `task` on the worker chosen by `hash`, waiting at most `timeout`
    /// for room. On failure the task is failed, logged and counted.
    pub(crate) async fn enqueue(&self, hash: u64, task: Task, timeout: Duration) {
        // `routines` is never empty: the config is clamped to at least 1.
        let index = (hash % self.routines.len() as u64) as usize;
        let tx = &self.routines[index];
        let task = match tx.try_send(task) {
            Ok(()) => return,
            Err(TrySendError::Full(task)) => task,
            Err(TrySendError::Closed(task)) => return fail(&self.server, task, JobError::Shutdown),
        };
        match tx.send_timeout(task, timeout).await {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(task)) => {
                let err = JobError::CometQueueFull(self.server.to_string());
                fail(&self.server, task, err);
            }
            Err(SendTimeoutError::Closed(task)) => fail(&self.server, task, JobError::Shutdown),
        }
    }
}

// === impl Comets ===

/// The comets this job delivers to, by server id.
pub(crate) struct Comets {
    map: RwLock<CometMap>,
    /// Bumped on every add and remove, so a dispatch waiting for a comet
    /// that is not known yet wakes when the set changes.
    changed: watch::Sender<u64>,
    config: Config,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

#[derive(Default)]
struct CometMap {
    comets: HashMap<String, Arc<CometHandle>>,
    closed: bool,
}

impl Comets {
    /// An empty registry; workers are spawned on `tracker` and abort what is
    /// left when `cancel` fires.
    pub(crate) fn new(config: Config, tracker: TaskTracker, cancel: CancellationToken) -> Comets {
        Comets {
            map: RwLock::new(CometMap::default()),
            changed: watch::Sender::new(0),
            config,
            tracker,
            cancel,
        }
    }

    /// Adds or replaces a comet and starts its workers. A replaced comet's
    /// workers finish their queues and stop (order across the swap is not kept).
    pub(crate) fn add(&self, server: &str, client: Arc<dyn CometClient>) {
        let server: Arc<str> = Arc::from(server);
        let health = Arc::new(Health::default());
        let mut routines = Vec::with_capacity(self.config.routines);
        let mut workers = Vec::with_capacity(self.config.routines);
        for index in 0..self.config.routines {
            let (tx, rx) = mpsc::channel(self.config.routine_queue);
            routines.push(tx);
            workers.push(Routine {
                server: server.clone(),
                index,
                client: client.clone(),
                rx,
                health: health.clone(),
                push_timeout: self.config.push_timeout,
                retries: self.config.retries,
                cancel: self.cancel.clone(),
            });
        }
        let handle = Arc::new(CometHandle {
            server: server.clone(),
            routines,
        });
        let replaced = {
            let mut map = self.map.write();
            if map.closed {
                None
            } else {
                // Spawning is synchronous; the lock orders this against `close`.
                for worker in workers.drain(..) {
                    let span =
                        info_span!("routine", server = %worker.server, routine = worker.index);
                    self.tracker.spawn(worker.run().instrument(span));
                }
                Some(map.comets.insert(server.to_string(), handle))
            }
        };
        self.changed.send_modify(|v| *v += 1);
        match replaced {
            None => warn!(server = %server, "comet not added: job is shut down"),
            Some(None) => info!(server = %server, routines = self.config.routines, "comet added"),
            Some(Some(_old)) => info!(server = %server, "comet replaced"),
        }
    }

    /// Removes a comet; its workers finish their queues and stop.
    pub(crate) fn remove(&self, server: &str) -> bool {
        let removed = self.map.write().comets.remove(server);
        self.changed.send_modify(|v| *v += 1);
        if removed.is_some() {
            info!(server, "comet removed");
        }
        removed.is_some()
    }

    /// Server ids, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.read().comets.keys().cloned().collect();
        names.sort();
        names
    }

    /// The comet with this server id.
    pub(crate) fn get(&self, server: &str) -> Option<Arc<CometHandle>> {
        self.map.read().comets.get(server).cloned()
    }

    /// A receiver that sees every change of the comet set.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every comet, at this moment.
    pub(crate) fn snapshot(&self) -> Vec<Arc<CometHandle>> {
        self.map.read().comets.values().cloned().collect()
    }

    /// Refuses new comets and drops every handle, so workers finish their
    /// queues and stop.
    pub(crate) fn close(&self) {
        let comets = {
            let mut map = self.map.write();
            map.closed = true;
            std::mem::take(&mut map.comets)
        };
        drop(comets);
    }
}

// === impl Health ===

/// A per-comet circuit breaker shared by its workers.
#[derive(Debug)]
struct Health {
    state: Mutex<HealthState>,
}

#[derive(Debug)]
struct HealthState {
    /// Some while tripped: tasks fail at once until then.
    open_until: Option<Instant>,
    /// A worker is making the one probe call of a tripped breaker.
    probing: bool,
    cooldown: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: Mutex::new(HealthState {
                open_until: None,
                probing: false,
                cooldown: BREAKER_COOLDOWN_MIN,
            }),
        }
    }
}

/// What a worker may do with its next task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Healthy: call, with retries.
    Pass,
    /// Tripped and cooled down: one call, no retries.
    Probe,
    /// Tripped: fail without calling.
    Reject,
}

impl Health {
    fn gate(&self) -> Gate {
        let mut state = self.state.lock();
        match state.open_until {
            None => Gate::Pass,
            Some(until) if Instant::now() < until || state.probing => Gate::Reject,
            Some(_) => {
                state.probing = true;
                Gate::Probe
            }
        }
    }

    /// The comet answered (accepted, or refused a malformed request).
    fn answered(&self) {
        let mut state = self.state.lock();
        if state.open_until.is_some() {
            info!("comet answers again; breaker closed");
        }
        state.open_until = None;
        state.probing = false;
        state.cooldown = BREAKER_COOLDOWN_MIN;
    }

    /// A task failed after every attempt; returns the cooldown now in force.
    /// Only a failed probe doubles the cooldown: calls of other workers that
    /// were in flight when the breaker tripped fail too, and must not.
    fn unavailable(&self, probe: bool) -> Duration {
        let mut state = self.state.lock();
        if probe {
            state.probing = false;
            state.cooldown = (state.cooldown * 2).min(BREAKER_COOLDOWN_MAX);
        } else if state.open_until.is_none() {
            state.cooldown = BREAKER_COOLDOWN_MIN;
        }
        state.open_until = Some(Instant::now() + state.cooldown);
        state.cooldown
    }
}

// === impl Routine ===

/// One worker of one comet.
struct Routine {
    server: Arc<str>,
    index: usize,
    client: Arc<dyn CometClient>,
    rx: mpsc::Receiver<Task>,
    health: Arc<Health>,
    push_timeout: Duration,
    retries: u32,
    cancel: CancellationToken,
}

impl Routine {
    /// Delivers tasks until every sender is gone (then the queue is empty) or
    /// `cancel` fires (then what is queued fails with `Shutdown`).
    async fn run(mut self) {
        loop {
            let task = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                task = self.rx.recv() => match task {
                    Some(task) => task,
                    None => {
                        debug!("comet routine drained");
                        return;
                    }
                },
            };
            let outcome = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => Err(JobError::Shutdown),
                outcome = self.deliver(&task.request) => outcome,
            };
            match outcome {
                Ok(()) => task.ack.resolve(Ok(())),
                Err(err) => fail(&self.server, task, err),
            }
        }
        self.rx.close();
        while let Some(task) = self.rx.recv().await {
            fail(&self.server, task, JobError::Shutdown);
        }
    }

    /// Calls the comet: each attempt bounded by `push_timeout`, retrying
    /// unavailability with a doubling backoff.
    async fn deliver(&self, request: &Request) -> Result<(), JobError> {
        let gate = self.health.gate();
        let attempts = match gate {
            Gate::Pass => self.retries.saturating_add(1),
            Gate::Probe => 1,
            Gate::Reject => {
                return Err(JobError::CometUnavailable {
                    server: self.server.to_string(),
                    reason: "breaker open after failed calls".into(),
                })
            }
        };
        let mut backoff = RETRY_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match tokio::time::timeout(self.push_timeout, self.call(request)).await {
                Ok(Ok(())) => {
                    self.health.answered();
                    return Ok(());
                }
                Ok(Err(CometCallError::Invalid(reason))) => {
                    metrics::comet_error(&self.server);
                    self.health.answered();
                    return Err(JobError::CometRejected {
                        server: self.server.to_string(),
                        reason,
                    });
                }
                Ok(Err(CometCallError::Unavailable(reason))) => last = reason,
                Err(_) => last = format!("no answer within {:?}", self.push_timeout),
            }
            metrics::comet_error(&self.server);
            debug!(attempt, attempts, error = %last, "comet call failed");
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        let cooldown = self.health.unavailable(gate == Gate::Probe);
        warn!(error = %last, cooldown = ?cooldown, "comet unavailable; failing its queue for the cooldown");
        Err(JobError::CometUnavailable {
            server: self.server.to_string(),
            reason: last,
        })
    }

    async fn call(&self, request: &Request) -> Result<(), CometCallError> {
        match request.clone() {
            Request::Push(req) => self.client.push_msg(req).await,
            Request::Broadcast(req) => self.client.broadcast(req).await,
            Request::Room(req) => self.client.broadcast_room(req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use rim_testkit::metrics::TestRecorder;

    use crate::testing::{push, room, FakeComet};
    use crate::{Config, Job};

    use super::*;

    fn job(config: Config, comets: &[(&str, Arc<FakeComet>)]) -> Arc<Job> {
        let job = Job::new(config);
        for (server, comet) in comets {
            job.add_comet(server, comet.clone());
        }
        job
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_is_retried_with_backoff() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::failing_first(2);
        let job = job(Config::default(), &[("a", a.clone())]);
        let start = Instant::now();
        let delivery = job.dispatch(push("a", &["k"], 1, b"x")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(Instant::now() - start, Duration::from_millis(100 + 200));
        assert_eq!(a.attempts(), 3);
        assert_eq!(a.calls().len(), 1);
        assert_eq!(recorder.counter("rim_job_comet_errors_total{server=a}"), 2);
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=comet_unavailable}"),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_fails_after_the_retries() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::failing(CometCallError::Unavailable("refused".into()));
        let job = job(Config::default(), &[("a", a.clone())]);
        let delivery = job.dispatch(push("a", &["k"], 1, b"x")).await.unwrap();
        let err = delivery.await.unwrap_err();
        assert!(matches!(err, JobError::CometUnavailable { ref server, .. } if server == "a"));
        assert_eq!(a.attempts(), 4);
        assert_eq!(recorder.counter("rim_job_comet_errors_total{server=a}"), 4);
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=comet_unavailable}"),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_fails_at_once() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::failing(CometCallError::Invalid("no keys".into()));
        let job = job(Config::default(), &[("a", a.clone())]);
        let start = Instant::now();
        let delivery = job.dispatch(push("a", &["k"], 1, b"x")).await.unwrap();
        assert!(matches!(
            delivery.await,
            Err(JobError::CometRejected { .. })
        ));
        assert_eq!(Instant::now(), start);
        assert_eq!(a.attempts(), 1);
        assert_eq!(recorder.counter("rim_job_dropped_total{reason=invalid}"), 1);
    }

    /// A comet that never answers: its deliveries fail after the bounded
    /// time, the other comet gets everything at once, and the dead comet's
    /// next pushes fail fast (breaker) until a probe call succeeds.
    #[tokio::test(start_paused = true)]
    async fn dead_comet_does_not_hold_up_another() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (dead, gate) = FakeComet::gated();
        let live = FakeComet::accepting();
        let job = job(
            Config::default(),
            &[("dead", dead.clone()), ("live", live.clone())],
        );
        let start = Instant::now();

        let to_dead = job.dispatch(push("dead", &["k"], 1, b"x")).await.unwrap();
        let to_room = job.dispatch(room("live://1", 2, "r")).await.unwrap();
        let to_live = job.dispatch(push("live", &["k"], 3, b"y")).await.unwrap();
        assert_eq!(to_live.await, Ok(()));
        live.wait_calls(2).await;
        assert_eq!(
            Instant::now(),
            start,
            "the live comet got its pushes at once"
        );

        // The room's next batch reaches the live comet after the room's pace
        // limit, not after the dead comet's call timeout and retries ...
        let pace = crate::RoomConfig::default().pace;
        let next_in_room = job.dispatch(room("live://1", 2, "r1")).await.unwrap();
        live.wait_calls(3).await;
        assert_eq!(Instant::now() - start, pace);
        // ... and the one after that at once: the dead comet is lagging.
        let lagging_room = job.dispatch(room("live://1", 2, "r1b")).await.unwrap();
        live.wait_calls(4).await;
        assert_eq!(Instant::now() - start, pace);

        // 4 attempts of 5 s plus 100 + 200 + 400 ms of backoff.
        let bound = Duration::from_millis(4 * 5000 + 700);
        let unavailable =
            |r: Result<(), JobError>| matches!(r, Err(JobError::CometUnavailable { .. }));
        assert!(unavailable(to_dead.await));
        assert_eq!(Instant::now() - start, bound);
        assert!(unavailable(to_room.await));
        assert_eq!(Instant::now() - start, bound);
        // Queued behind the first batch, they fail at once when the breaker opens.
        assert!(unavailable(next_in_room.await));
        assert!(unavailable(lagging_room.await));
        assert_eq!(Instant::now() - start, bound);
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=comet_unavailable}"),
            4
        );

        // Breaker open: fails without waiting, other comets unaffected.
        let fast = job.dispatch(push("dead", &["k"], 4, b"x")).await.unwrap();
        let mut fast = std::pin::pin!(fast);
        tokio::task::yield_now().await;
        assert!(matches!(
            (&mut fast).now_or_never(),
            Some(Err(JobError::CometUnavailable { .. }))
        ));
        let room_again = job.dispatch(room("live://1", 5, "r2")).await.unwrap();
        assert!(room_again.await.is_err());
        assert_eq!(live.calls().len(), 5);

        // After the cooldown one probe goes through; the comet recovered.
        tokio::time::sleep(BREAKER_COOLDOWN_MIN).await;
        gate.add_permits(100);
        let probe = job.dispatch(push("dead", &["k"], 6, b"x")).await.unwrap();
        assert_eq!(probe.await, Ok(()));
        let after = job.dispatch(push("dead", &["k"], 7, b"x")).await.unwrap();
        assert_eq!(after.await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn full_comet_queue_fails_after_the_enqueue_timeout() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (slow, gate) = FakeComet::gated();
        let config = Config {
            routines: 1,
            routine_queue: 1,
            enqueue_timeout: Duration::from_secs(1),
            push_timeout: Duration::from_secs(60),
            ..Config::default()
        };
        let job = job(config, &[("slow", slow.clone())]);
        let in_flight = job.dispatch(push("slow", &["a"], 1, b"x")).await.unwrap();
        slow.wait_attempts(1).await;
        let queued = job.dispatch(push("slow", &["b"], 2, b"x")).await.unwrap();
        let start = Instant::now();
        let full = job.dispatch(push("slow", &["c"], 3, b"x")).await.unwrap();
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
        assert_eq!(full.await, Err(JobError::CometQueueFull("slow".into())));
        assert_eq!(
            recorder.counter("rim_job_dropped_total{reason=comet_queue_full}"),
            1
        );
        gate.add_permits(2);
        assert_eq!(in_flight.await, Ok(()));
        assert_eq!(queued.await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_call_times_out_per_attempt() {
        let hanging = FakeComet::hanging();
        let config = Config {
            retries: 0,
            push_timeout: Duration::from_millis(250),
            ..Config::default()
        };
        let job = job(config, &[("h", hanging.clone())]);
        let start = Instant::now();
        let delivery = job.dispatch(push("h", &["k"], 1, b"x")).await.unwrap();
        assert!(matches!(
            delivery.await,
            Err(JobError::CometUnavailable { .. })
        ));
        assert_eq!(Instant::now() - start, Duration::from_millis(250));
        assert_eq!(hanging.attempts(), 1);
    }

    #[test]
    fn breaker_probes_once_after_cooldown() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let health = Health::default();
            assert_eq!(health.gate(), Gate::Pass);
            assert_eq!(health.unavailable(false), BREAKER_COOLDOWN_MIN);
            assert_eq!(health.gate(), Gate::Reject);
            // Another worker's call in flight at the trip fails too: no doubling.
            assert_eq!(health.unavailable(false), BREAKER_COOLDOWN_MIN);
            tokio::time::advance(BREAKER_COOLDOWN_MIN).await;
            assert_eq!(health.gate(), Gate::Probe);
            assert_eq!(health.gate(), Gate::Reject, "one probe at a time");
            assert_eq!(health.unavailable(true), BREAKER_COOLDOWN_MIN * 2);
            tokio::time::advance(BREAKER_COOLDOWN_MIN * 2).await;
            assert_eq!(health.gate(), Gate::Probe);
            health.answered();
            assert_eq!(health.gate(), Gate::Pass);
        });
    }
}
