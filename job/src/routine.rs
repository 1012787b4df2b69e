//! Per-comet routine workers: the registry of known comets ([`Comets`]), each
//! comet's bounded worker queues ([`CometHandle`]) and the workers that call
//! the [`CometClient`] with a deadline, retries and a circuit breaker.
//!
//! Ordering: a task goes to the worker chosen by a hash (first key for a
//! keyed push, room for a room batch, op for a broadcast), and each worker
//! delivers its queue in order, one call at a time (the keyed pushes queued
//! behind each other in one `push_msgs` call), so one connection's pushes
//! and one room's batches reach a comet in order (goim spreads them round
//! robin). A comet added again while its old workers still hold tasks gets
//! workers that wait for the old ones, so the order holds across that too.
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
use prost::Message as _;
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
    /// Per server id, its latest workers' ends (see `Routine::after`), kept
    /// after a removal until they have finished.
    workers_done: HashMap<String, Vec<oneshot::Receiver<()>>>,
    closed: bool,
}

impl CometMap {
    /// Forgets the ends of removed comets' workers that have all finished.
    fn prune(&mut self) {
        let comets = &self.comets;
        self.workers_done.retain(|server, done| {
            comets.contains_key(server)
                || done
                    .iter_mut()
                    .any(|rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)))
        });
    }
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

    /// Adds or replaces a comet and starts its workers. The workers of a
    /// comet replaced, or removed before and still finishing their queues
    /// (a push waiting for its retry), finish first: each new worker calls
    /// the comet only once the old worker of the same index is done, so
    /// every key's pushes keep their order across the swap.
    pub(crate) fn add(&self, server: &str, client: Arc<dyn CometClient>) {
        let server: Arc<str> = Arc::from(server);
        let health = Arc::new(Health::default());
        let mut routines = Vec::with_capacity(self.config.routines);
        let mut workers = Vec::with_capacity(self.config.routines);
        let mut done = Vec::with_capacity(self.config.routines);
        for index in 0..self.config.routines {
            let (tx, rx) = mpsc::channel(self.config.routine_queue);
            let (done_tx, done_rx) = oneshot::channel();
            routines.push(tx);
            done.push(done_rx);
            workers.push(Routine {
                server: server.clone(),
                index,
                client: client.clone(),
                rx,
                health: health.clone(),
                push_timeout: self.config.push_timeout,
                retries: self.config.retries,
                push_batch: self.config.push_batch,
                cancel: self.cancel.clone(),
                after: None,
                _done: done_tx,
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
                let previous = map
                    .workers_done
                    .insert(server.to_string(), done)
                    .unwrap_or_default();
                // Same config, same worker count: index i takes the keys
                // the old worker i had.
                for (worker, after) in workers.iter_mut().zip(previous) {
                    worker.after = Some(after);
                }
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

    /// Removes a comet; its workers finish their queues and stop (a comet
    /// added again with this id waits for them, see `add`).
    pub(crate) fn remove(&self, server: &str) -> bool {
        let removed = {
            let mut map = self.map.write();
            let removed = map.comets.remove(server);
            map.prune();
            removed
        };
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

    /// A probe's turn passed without a call to the comet (a batch call it
    /// does not serve): the next task may probe.
    fn probe_not_made(&self) {
        self.state.lock().probing = false;
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

/// Most bytes of keyed pushes (protobuf-encoded) one batch call carries; a
/// comet's gRPC server refuses messages over 4 MiB by default.
const BATCH_BYTES: usize = 1 << 20;

/// One worker of one comet.
struct Routine {
    server: Arc<str>,
    index: usize,
    client: Arc<dyn CometClient>,
    rx: mpsc::Receiver<Task>,
    health: Arc<Health>,
    push_timeout: Duration,
    retries: u32,
    /// Most keyed pushes per call (1: one `push_msg` per push).
    push_batch: usize,
    cancel: CancellationToken,
    /// The same worker of the comet's previous generation (the comet was
    /// removed, or replaced, and added again): closed once it has finished
    /// its queue, retries included. This worker calls the comet only after
    /// that, so a key's pushes keep their order across the re-add.
    after: Option<oneshot::Receiver<()>>,
    /// Dropped when this worker ends, which closes the next generation's
    /// `after`.
    _done: oneshot::Sender<()>,
}

/// Why a call (with its retries) did not deliver.
enum CallFailed {
    /// Given up: the error to fail its tasks with.
    Job(JobError),
    /// The comet does not serve a batch call: send its pushes one by one.
    Unsupported,
}

impl Routine {
    /// Delivers tasks until every sender is gone (then the queue is empty) or
    /// `cancel` fires (then what is queued fails with `Shutdown`). Keyed
    /// pushes queued one after another go out in one batch call; anything
    /// else, one call each; always in queue order.
    async fn run(mut self) {
        if let Some(mut previous) = self.after.take() {
            // Closed already (`prune` may have seen it) or still running.
            if let Err(oneshot::error::TryRecvError::Empty) = previous.try_recv() {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => {}
                    _ = &mut previous => {}
                }
            }
        }
        let mut next: Option<Task> = None;
        loop {
            let task = match next.take() {
                Some(task) => task,
                None => tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => break,
                    task = self.rx.recv() => match task {
                        Some(task) => task,
                        None => {
                            debug!("comet routine drained");
                            return;
                        }
                    },
                },
            };
            if self.cancel.is_cancelled() {
                next = Some(task);
                break;
            }
            let batch = match &task.request {
                Request::Push(req) if self.push_batch > 1 => {
                    let bytes = req.encoded_len();
                    self.gather(task, bytes, &mut next)
                }
                _ => vec![task],
            };
            if batch.len() > 1 {
                self.deliver_batch(batch).await;
            } else {
                for task in batch {
                    self.deliver_one(task).await;
                }
            }
        }
        if let Some(task) = next {
            fail(&self.server, task, JobError::Shutdown);
        }
        self.rx.close();
        while let Some(task) = self.rx.recv().await {
            fail(&self.server, task, JobError::Shutdown);
        }
    }

    /// `first` and the keyed pushes queued right behind it, up to
    /// `push_batch` and [`BATCH_BYTES`]; a task that is not a keyed push (or
    /// would pass a limit) is left in `next`, to go after the batch.
    fn gather(&mut self, first: Task, first_bytes: usize, next: &mut Option<Task>) -> Vec<Task> {
        let mut bytes = first_bytes;
        let mut batch = vec![first];
        while batch.len() < self.push_batch {
            let Ok(task) = self.rx.try_recv() else { break };
            let fits = match &task.request {
                Request::Push(req) => {
                    bytes += req.encoded_len();
                    bytes <= BATCH_BYTES
                }
                _ => false,
            };
            if !fits {
                *next = Some(task);
                break;
            }
            batch.push(task);
        }
        batch
    }

    /// One task, one call (with retries).
    async fn deliver_one(&self, task: Task) {
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

    /// Keyed pushes in one `push_msgs` call (with retries), or one call
    /// each if the comet does not serve it.
    async fn deliver_batch(&self, batch: Vec<Task>) {
        let reqs: Vec<PushMsgReq> = batch
            .iter()
            .filter_map(|task| match &task.request {
                Request::Push(req) => Some(req.clone()),
                _ => None,
            })
            .collect();
        let outcome = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(CallFailed::Job(JobError::Shutdown)),
            outcome = self.attempts(|| self.client.push_msgs(reqs.clone())) => outcome,
        };
        match outcome {
            Ok(refused) => {
                metrics::push_batch(batch.len());
                let mut refused = refused.into_iter();
                for task in batch {
                    match refused.next().flatten() {
                        None => task.ack.resolve(Ok(())),
                        Some(reason) => {
                            metrics::comet_error(&self.server);
                            let err = JobError::CometRejected {
                                server: self.server.to_string(),
                                reason,
                            };
                            fail(&self.server, task, err);
                        }
                    }
                }
            }
            Err(CallFailed::Unsupported) => {
                for task in batch {
                    self.deliver_one(task).await;
                }
            }
            Err(CallFailed::Job(err)) => {
                for task in batch {
                    fail(&self.server, task, err.clone());
                }
            }
        }
    }

    /// Calls the comet: each attempt bounded by `push_timeout`, retrying
    /// unavailability with a doubling backoff.
    async fn deliver(&self, request: &Request) -> Result<(), JobError> {
        match self.attempts(|| self.call(request)).await {
            Ok(()) => Ok(()),
            Err(CallFailed::Job(err)) => Err(err),
            // Only a batch call can be unsupported.
            Err(CallFailed::Unsupported) => Err(JobError::CometRejected {
                server: self.server.to_string(),
                reason: "the comet does not serve this call".into(),
            }),
        }
    }

    /// Runs `call` under the breaker: each attempt bounded by
    /// `push_timeout`, unavailability retried with a doubling backoff.
    async fn attempts<T, F, Fut>(&self, mut call: F) -> Result<T, CallFailed>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CometCallError>>,
    {
        let gate = self.health.gate();
        let attempts = match gate {
            Gate::Pass => self.retries.saturating_add(1),
            Gate::Probe => 1,
            Gate::Reject => {
                return Err(CallFailed::Job(JobError::CometUnavailable {
                    server: self.server.to_string(),
                    reason: "breaker open after failed calls".into(),
                }))
            }
        };
        let mut backoff = RETRY_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match tokio::time::timeout(self.push_timeout, call()).await {
                Ok(Ok(value)) => {
                    self.health.answered();
                    return Ok(value);
                }
                Ok(Err(CometCallError::Invalid(reason))) => {
                    metrics::comet_error(&self.server);
                    self.health.answered();
                    return Err(CallFailed::Job(JobError::CometRejected {
                        server: self.server.to_string(),
                        reason,
                    }));
                }
                Ok(Err(CometCallError::Unsupported)) => {
                    if gate == Gate::Probe {
                        // No call was the probe: let the next one be.
                        self.health.probe_not_made();
                    }
                    return Err(CallFailed::Unsupported);
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
        Err(CallFailed::Job(JobError::CometUnavailable {
            server: self.server.to_string(),
            reason: last,
        }))
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

    use crate::testing::{push, room, Call, FakeComet};
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

    fn one_routine() -> Config {
        Config {
            routines: 1,
            ..Config::default()
        }
    }

    fn bodies(comet: &FakeComet) -> Vec<Vec<u8>> {
        comet.bodies().into_iter().map(|b| b.to_vec()).collect()
    }

    /// Keyed pushes queued behind each other go out in one `push_msgs`
    /// call, in order; a broadcast between them splits the batch and keeps
    /// its place; a push alone is a plain `push_msg`.
    #[tokio::test(start_paused = true)]
    async fn queued_keyed_pushes_go_out_in_one_call_in_order() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::accepting();
        let job = job(one_routine(), &[("a", a.clone())]);
        // Enqueueing does not yield: the worker finds all of them queued.
        let mut deliveries = Vec::new();
        for body in [&b"p1"[..], b"p2", b"p3"] {
            let body: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
            deliveries.push(job.dispatch(push("a", &["k"], 1, body)).await.unwrap());
        }
        deliveries.push(
            job.dispatch(crate::testing::broadcast(1, 0, b"b"))
                .await
                .unwrap(),
        );
        deliveries.push(job.dispatch(push("a", &["k2"], 1, b"p4")).await.unwrap());
        for delivery in deliveries {
            assert_eq!(delivery.await, Ok(()));
        }
        assert_eq!(
            bodies(&a),
            vec![
                b"p1".to_vec(),
                b"p2".to_vec(),
                b"p3".to_vec(),
                b"b".to_vec(),
                b"p4".to_vec()
            ]
        );
        assert_eq!(
            a.batches(),
            vec![3],
            "one batch of three, then single calls"
        );
        assert_eq!(a.attempts(), 3, "batch, broadcast, push");
        assert_eq!(recorder.samples("rim_job_push_batch_messages"), vec![3.0]);
    }

    /// `push_batch = 1` is goim's behaviour: one `push_msg` per push.
    #[tokio::test(start_paused = true)]
    async fn push_batch_one_sends_one_call_per_push() {
        let a = FakeComet::accepting();
        let config = Config {
            push_batch: 1,
            ..one_routine()
        };
        let job = job(config, &[("a", a.clone())]);
        let mut deliveries = Vec::new();
        for body in [&b"1"[..], b"2", b"3"] {
            let body: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
            deliveries.push(job.dispatch(push("a", &["k"], 1, body)).await.unwrap());
        }
        for delivery in deliveries {
            assert_eq!(delivery.await, Ok(()));
        }
        assert_eq!(
            bodies(&a),
            vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
        );
        assert!(a.batches().is_empty());
        assert_eq!(a.attempts(), 3);
    }

    /// A comet that does not serve `push_msgs` (goim's) gets the same
    /// pushes, in the same order, one `push_msg` each; nothing counts as a
    /// failure.
    #[tokio::test(start_paused = true)]
    async fn a_comet_without_batches_gets_one_push_msg_per_push() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::unbatched();
        let job = job(one_routine(), &[("a", a.clone())]);
        let mut deliveries = Vec::new();
        for body in [&b"1"[..], b"2", b"3", b"4"] {
            let body: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
            deliveries.push(job.dispatch(push("a", &["k"], 1, body)).await.unwrap());
        }
        for delivery in deliveries {
            assert_eq!(delivery.await, Ok(()));
        }
        let expected: Vec<Vec<u8>> = [b"1", b"2", b"3", b"4"]
            .iter()
            .map(|b| b.to_vec())
            .collect();
        assert_eq!(bodies(&a), expected);
        assert!(a.calls().iter().all(|c| matches!(c, Call::Push(_))));
        assert_eq!(a.attempts(), 4);
        assert_eq!(recorder.counter("rim_job_comet_errors_total{server=a}"), 0);
        assert_eq!(recorder.counter("rim_job_dropped_total{reason=invalid}"), 0);
    }

    /// A push the comet refuses inside a batch fails alone (not retried,
    /// counted as invalid); the others of the batch are delivered.
    #[tokio::test(start_paused = true)]
    async fn a_refused_push_in_a_batch_fails_alone() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let a = FakeComet::refusing(b"bad");
        let job = job(one_routine(), &[("a", a.clone())]);
        let first = job.dispatch(push("a", &["k"], 1, b"ok1")).await.unwrap();
        let bad = job.dispatch(push("a", &["k"], 1, b"bad")).await.unwrap();
        let last = job.dispatch(push("a", &["k"], 1, b"ok2")).await.unwrap();
        assert_eq!(first.await, Ok(()));
        assert!(matches!(bad.await, Err(JobError::CometRejected { .. })));
        assert_eq!(last.await, Ok(()));
        assert_eq!(bodies(&a), vec![b"ok1".to_vec(), b"ok2".to_vec()]);
        assert_eq!(a.batches(), vec![3]);
        assert_eq!(a.attempts(), 1);
        assert_eq!(recorder.counter("rim_job_dropped_total{reason=invalid}"), 1);
    }

    /// A batch that finds the comet unavailable is retried as a whole, in
    /// place: the pushes behind it wait, so order holds.
    #[tokio::test(start_paused = true)]
    async fn an_unavailable_batch_is_retried_whole_and_in_order() {
        let a = FakeComet::failing_first(1);
        let job = job(one_routine(), &[("a", a.clone())]);
        let start = Instant::now();
        let one = job.dispatch(push("a", &["k"], 1, b"1")).await.unwrap();
        let two = job.dispatch(push("a", &["k"], 1, b"2")).await.unwrap();
        assert_eq!(one.await, Ok(()));
        assert_eq!(two.await, Ok(()));
        let three = job.dispatch(push("a", &["k"], 1, b"3")).await.unwrap();
        assert_eq!(three.await, Ok(()));
        assert_eq!(Instant::now() - start, RETRY_BACKOFF);
        assert_eq!(
            bodies(&a),
            vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
        );
        assert_eq!(a.attempts(), 3, "the batch twice, then the third push");
    }

    /// A comet removed while a push waits for its retry, then added again
    /// (discovery lost and found it): the push the new workers get for the
    /// same key waits for the retried one, so the key's order holds. The
    /// same for a comet replaced without a removal.
    #[tokio::test(start_paused = true)]
    async fn a_re_added_comet_keeps_the_order_of_a_pending_retry() {
        for remove_first in [true, false] {
            let a = FakeComet::failing_first(1);
            let job = job(Config::default(), &[("a", a.clone())]);
            let first = job.dispatch(push("a", &["k"], 1, b"first")).await.unwrap();
            // The first attempt fails; the worker now sleeps before its retry.
            a.wait_attempts(1).await;
            if remove_first {
                job.remove_comet("a");
            }
            job.add_comet("a", a.clone());
            let second = job.dispatch(push("a", &["k"], 1, b"second")).await.unwrap();
            assert_eq!(first.await, Ok(()));
            assert_eq!(second.await, Ok(()));
            assert_eq!(
                bodies(&a),
                vec![b"first".to_vec(), b"second".to_vec()],
                "remove first: {remove_first}"
            );
        }
    }

    /// Once a removed comet's workers have finished, re-adding it starts
    /// delivering at once, and the finished workers are forgotten.
    #[tokio::test(start_paused = true)]
    async fn a_comet_re_added_after_its_workers_finished_delivers_at_once() {
        let a = FakeComet::accepting();
        let job = job(Config::default(), &[("a", a.clone())]);
        let first = job.dispatch(push("a", &["k"], 1, b"1")).await.unwrap();
        assert_eq!(first.await, Ok(()));
        job.remove_comet("a");
        // The old workers see their queue closed and stop.
        tokio::task::yield_now().await;
        job.add_comet("a", a.clone());
        let start = Instant::now();
        let second = job.dispatch(push("a", &["k"], 1, b"2")).await.unwrap();
        assert_eq!(second.await, Ok(()));
        assert_eq!(Instant::now(), start);
    }

    /// A comet removed for good is forgotten once its workers are done.
    #[tokio::test(start_paused = true)]
    async fn finished_workers_of_removed_comets_are_forgotten() {
        let comets = Comets::new(
            Config::default(),
            TaskTracker::new(),
            CancellationToken::new(),
        );
        comets.add("a", FakeComet::accepting());
        comets.add("gone", FakeComet::accepting());
        assert!(comets.remove("gone"));
        assert!(comets.map.read().workers_done.contains_key("gone"));
        // Its workers see their queues closed and stop.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(comets.remove("a"));
        let map = comets.map.read();
        assert!(!map.workers_done.contains_key("gone"));
    }
}
