//! Test support, for this crate's unit tests and for its integration tests
//! (feature `test-util`): a fake comet that records what it accepted, and
//! push records to give a job. Not part of the supported API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_proto::Frame;
use tokio::sync::{Notify, Semaphore};

use crate::{CometCallError, CometClient};

/// One call a comet accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `push_msg`: a push to keys.
    Push(PushMsgReq),
    /// `broadcast`: a push to every connection.
    Broadcast(BroadcastReq),
    /// `broadcast_room`: a push (or a batch) to one room.
    Room(BroadcastRoomReq),
}

impl Call {
    /// The inner frames of a call's op 9 body.
    pub fn frames(&self) -> Vec<Frame> {
        let proto = match self {
            Call::Push(r) => r.proto.as_ref(),
            Call::Broadcast(r) => r.proto.as_ref(),
            Call::Room(r) => r.proto.as_ref(),
        };
        let body = proto.map(|p| p.body.clone()).unwrap_or_default();
        Frame::batch(body).map(|f| f.unwrap()).collect()
    }
}

/// A comet that records what it accepted; it can hold calls at a gate, never
/// answer some calls, fail the first calls as unavailable, or fail every call.
#[derive(Default)]
pub struct FakeComet {
    calls: Mutex<Vec<Call>>,
    attempts: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    hold: Option<&'static [u8]>,
    held: AtomicUsize,
    unavailable_first: AtomicUsize,
    always: Option<CometCallError>,
    /// Answers `push_msgs` with `Unsupported` (as goim's comet does).
    unbatched: bool,
    /// Refuses as malformed a push whose inner frame's body starts with this.
    refuse: Option<&'static [u8]>,
    /// `push_msgs` calls accepted, with their sizes.
    batches: Mutex<Vec<usize>>,
    changed: Notify,
}

impl FakeComet {
    /// Accepts every call.
    pub fn accepting() -> Arc<FakeComet> {
        Arc::new(FakeComet::default())
    }

    /// Each call waits for a permit of the returned semaphore (none at first).
    pub fn gated() -> (Arc<FakeComet>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let comet = FakeComet {
            gate: Some(gate.clone()),
            ..FakeComet::default()
        };
        (Arc::new(comet), gate)
    }

    /// Never answers.
    pub fn hanging() -> Arc<FakeComet> {
        FakeComet::gated().0
    }

    /// Never answers a call with an inner frame whose body starts with
    /// `prefix` (counted by [`FakeComet::held`]); accepts the others.
    pub fn holding(prefix: &'static [u8]) -> Arc<FakeComet> {
        Arc::new(FakeComet {
            hold: Some(prefix),
            ..FakeComet::default()
        })
    }

    /// The first `n` calls fail as unavailable.
    pub fn failing_first(n: usize) -> Arc<FakeComet> {
        Arc::new(FakeComet {
            unavailable_first: AtomicUsize::new(n),
            ..FakeComet::default()
        })
    }

    /// Every call fails with `err`.
    pub fn failing(err: CometCallError) -> Arc<FakeComet> {
        Arc::new(FakeComet {
            always: Some(err),
            ..FakeComet::default()
        })
    }

    /// Accepts every call but `push_msgs`, which it does not serve (as
    /// goim's comet, or an older rim).
    pub fn unbatched() -> Arc<FakeComet> {
        Arc::new(FakeComet {
            unbatched: true,
            ..FakeComet::default()
        })
    }

    /// Refuses as malformed every keyed push whose inner frame's body
    /// starts with `prefix` (in a batch: that push alone); accepts the rest.
    pub fn refusing(prefix: &'static [u8]) -> Arc<FakeComet> {
        Arc::new(FakeComet {
            refuse: Some(prefix),
            ..FakeComet::default()
        })
    }

    fn refuses(&self, req: &PushMsgReq) -> bool {
        self.refuse.is_some_and(|prefix| {
            Call::Push(req.clone())
                .frames()
                .iter()
                .any(|f| f.body.starts_with(prefix))
        })
    }

    /// The sizes of the `push_msgs` calls accepted so far, in order (each
    /// of their pushes is in [`FakeComet::calls`] as a `Call::Push`).
    pub fn batches(&self) -> Vec<usize> {
        self.batches.lock().clone()
    }

    /// The calls accepted so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// The bodies of the inner frames of the calls accepted so far, in order.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.calls
            .lock()
            .iter()
            .flat_map(Call::frames)
            .map(|frame| frame.body)
            .collect()
    }

    /// How many calls were made so far (accepted or not).
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// How many calls a [`FakeComet::holding`] comet holds (never answers).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls were made (accepted or not).
    pub async fn wait_attempts(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.attempts() >= n {
                return;
            }
            changed.await;
        }
    }

    /// Waits until at least `n` calls were accepted.
    pub async fn wait_calls(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.calls.lock().len() >= n {
                return;
            }
            changed.await;
        }
    }

    async fn handle(&self, call: Call) -> Result<(), CometCallError> {
        self.handle_all(vec![call]).await
    }

    /// One call holding `calls` (a batch: several): accepted or failed as a
    /// whole, recorded one by one.
    async fn handle_all(&self, calls: Vec<Call>) -> Result<(), CometCallError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        if let Some(prefix) = self.hold {
            let frames = calls.iter().flat_map(Call::frames);
            if frames.into_iter().any(|f| f.body.starts_with(prefix)) {
                self.held.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        }
        if let Some(gate) = &self.gate {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        if let Some(err) = &self.always {
            return Err(err.clone());
        }
        let fail = self
            .unavailable_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(CometCallError::Unavailable("connection refused".into()));
        }
        self.calls.lock().extend(calls);
        self.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl CometClient for FakeComet {
    async fn push_msg(&self, req: PushMsgReq) -> Result<(), CometCallError> {
        if self.refuses(&req) {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            return Err(CometCallError::Invalid("refused".into()));
        }
        self.handle(Call::Push(req)).await
    }

    async fn push_msgs(
        &self,
        reqs: Vec<PushMsgReq>,
    ) -> Result<Vec<Option<String>>, CometCallError> {
        if self.unbatched {
            return Err(CometCallError::Unsupported);
        }
        let count = reqs.len();
        let outcomes: Vec<Option<String>> = reqs
            .iter()
            .map(|req| self.refuses(req).then(|| "refused".to_owned()))
            .collect();
        let applied = reqs
            .into_iter()
            .zip(&outcomes)
            .filter(|(_, refused)| refused.is_none())
            .map(|(req, _)| Call::Push(req))
            .collect();
        self.handle_all(applied).await?;
        self.batches.lock().push(count);
        Ok(outcomes)
    }

    async fn broadcast(&self, req: BroadcastReq) -> Result<(), CometCallError> {
        self.handle(Call::Broadcast(req)).await
    }

    async fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), CometCallError> {
        self.handle(Call::Room(req)).await
    }
}

/// A keyed push record for `keys` on comet `server`.
pub fn push(server: &str, keys: &[&str], op: i32, body: &'static [u8]) -> PushMsg {
    PushMsg {
        r#type: Type::Push.into(),
        operation: op,
        server: server.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        msg: Bytes::from_static(body),
        ..PushMsg::default()
    }
}

/// A room push record.
pub fn room(room: &str, op: i32, body: impl Into<Bytes>) -> PushMsg {
    PushMsg {
        r#type: Type::Room.into(),
        operation: op,
        room: room.into(),
        msg: body.into(),
        ..PushMsg::default()
    }
}

/// A broadcast record, at `speed` (0: no limit).
pub fn broadcast(op: i32, speed: i32, body: &'static [u8]) -> PushMsg {
    PushMsg {
        r#type: Type::Broadcast.into(),
        operation: op,
        speed,
        msg: Bytes::from_static(body),
        ..PushMsg::default()
    }
}
