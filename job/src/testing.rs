//! Test support: a recording fake comet and a metrics recorder to read counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use parking_lot::Mutex;
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_proto::Frame;
use tokio::sync::{Notify, Semaphore};

use crate::{CometCallError, CometClient};

/// One call a comet accepted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    Push(PushMsgReq),
    Broadcast(BroadcastReq),
    Room(BroadcastRoomReq),
}

impl Call {
    /// The inner frames of a call's op 9 body.
    pub(crate) fn frames(&self) -> Vec<Frame> {
        let proto = match self {
            Call::Push(r) => r.proto.as_ref(),
            Call::Broadcast(r) => r.proto.as_ref(),
            Call::Room(r) => r.proto.as_ref(),
        };
        let body = proto.map(|p| p.body.clone()).unwrap_or_default();
        Frame::batch(body).map(|f| f.unwrap()).collect()
    }
}

/// A comet that records what it accepted; it can hold calls at a gate, fail
/// the first calls as unavailable, or fail every call.
#[derive(Default)]
pub(crate) struct FakeComet {
    calls: Mutex<Vec<Call>>,
    attempts: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    unavailable_first: AtomicUsize,
    always: Option<CometCallError>,
    changed: Notify,
}

impl FakeComet {
    pub(crate) fn accepting() -> Arc<FakeComet> {
        Arc::new(FakeComet::default())
    }

    /// Each call waits for a permit of the returned semaphore (none at first).
    pub(crate) fn gated() -> (Arc<FakeComet>, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let comet = FakeComet {
            gate: Some(gate.clone()),
            ..FakeComet::default()
        };
        (Arc::new(comet), gate)
    }

    /// Never answers.
    pub(crate) fn hanging() -> Arc<FakeComet> {
        FakeComet::gated().0
    }

    /// The first `n` calls fail as unavailable.
    pub(crate) fn failing_first(n: usize) -> Arc<FakeComet> {
        Arc::new(FakeComet {
            unavailable_first: AtomicUsize::new(n),
            ..FakeComet::default()
        })
    }

    /// Every call fails with `err`.
    pub(crate) fn failing(err: CometCallError) -> Arc<FakeComet> {
        Arc::new(FakeComet {
            always: Some(err),
            ..FakeComet::default()
        })
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    pub(crate) fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls were made (accepted or not).
    pub(crate) async fn wait_attempts(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.attempts() >= n {
                return;
            }
            changed.await;
        }
    }

    /// Waits until at least `n` calls were accepted.
    pub(crate) async fn wait_calls(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.calls.lock().len() >= n {
                return;
            }
            changed.await;
        }
    }

    async fn handle(&self, call: Call) -> Result<(), CometCallError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
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
        self.calls.lock().push(call);
        self.changed.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl CometClient for FakeComet {
    async fn push_msg(&self, req: PushMsgReq) -> Result<(), CometCallError> {
        self.handle(Call::Push(req)).await
    }

    async fn broadcast(&self, req: BroadcastReq) -> Result<(), CometCallError> {
        self.handle(Call::Broadcast(req)).await
    }

    async fn broadcast_room(&self, req: BroadcastRoomReq) -> Result<(), CometCallError> {
        self.handle(Call::Room(req)).await
    }
}

pub(crate) fn push(server: &str, keys: &[&str], op: i32, body: &'static [u8]) -> PushMsg {
    PushMsg {
        r#type: Type::Push.into(),
        operation: op,
        server: server.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        msg: Bytes::from_static(body),
        ..PushMsg::default()
    }
}

pub(crate) fn room(room: &str, op: i32, body: impl Into<Bytes>) -> PushMsg {
    PushMsg {
        r#type: Type::Room.into(),
        operation: op,
        room: room.into(),
        msg: body.into(),
        ..PushMsg::default()
    }
}

pub(crate) fn broadcast(op: i32, speed: i32, body: &'static [u8]) -> PushMsg {
    PushMsg {
        r#type: Type::Broadcast.into(),
        operation: op,
        speed,
        msg: Bytes::from_static(body),
        ..PushMsg::default()
    }
}

/// A recorder for `metrics::set_default_local_recorder` (current-thread tests).
#[derive(Default)]
pub(crate) struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
}

#[derive(Default)]
pub(crate) struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().push(value);
    }
}

/// `name{k=v,...}` with labels sorted, or `name` without labels.
fn key_string(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl TestRecorder {
    /// A counter's value, e.g. `rim_job_dropped_total{reason=no_comets}`.
    pub(crate) fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .get(key)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// A histogram's recorded values.
    pub(crate) fn samples(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .get(key)
            .map_or_else(Vec::new, |h| h.0.lock().clone())
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let counter = self
            .counters
            .lock()
            .entry(key_string(key))
            .or_default()
            .clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let samples = self
            .histograms
            .lock()
            .entry(key_string(key))
            .or_default()
            .clone();
        Histogram::from_arc(samples)
    }
}
