//! One `rim bench chat` client: an IM session (`"im": true`, in room mode
//! joined to the room) that reads, heartbeats and, if it is a sender, sends
//! op 4 on its own schedule with at most `--window` awaiting op 5. It owns
//! what the chat frames mean here: op 5 replies (accepted or the code), the
//! delivered envelopes (whose message, which number, sent when), the
//! counters the run reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use rim_proto::{Frame, Op};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Heartbeat, Route};
use super::ramp;
use super::tally::{bump, nanos_since, unix_nanos, Arrivals, Latency, SeqSet, Tally};

/// What `rim bench chat` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChatMode {
    /// One-to-one: -c clients in pairs, sender i to receiver c/2 + i.
    Peer,
    /// One room: -c members, --senders of them send to the room.
    Room,
}

impl ChatMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChatMode::Peer => "peer",
            ChatMode::Room => "room",
        }
    }
}

/// Counters and histograms every client writes to.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) tally: Tally,
    /// op 4 sent.
    pub(crate) sent: AtomicU64,
    /// Send ticks skipped because the window was full.
    pub(crate) skipped: AtomicU64,
    /// op 5 with code 0.
    pub(crate) accepted: AtomicU64,
    /// op 5 with another code.
    pub(crate) refused: AtomicU64,
    /// Messages at their intended recipients; latency (op 4 sent to the
    /// recipient's receipt) sharded by the recipient's mid.
    pub(crate) arrivals: Arrivals,
    /// Peer: the sender's own copy (its mailbox holds what it sent).
    pub(crate) own_copies: AtomicU64,
    /// Frames of the message op that are not this run's messages.
    pub(crate) foreign: AtomicU64,
    pub(crate) codes: Mutex<BTreeMap<i64, u64>>,
    /// op 4 to its op 5, sharded by the sender's mid.
    pub(crate) reply_latency: Latency,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            tally: Tally::new(),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            arrivals: Arrivals::new(),
            own_copies: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            codes: Mutex::new(BTreeMap::new()),
            reply_latency: Latency::new(),
        }
    }
}

/// What every client shares.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) mode: ChatMode,
    pub(crate) op: i32,
    pub(crate) heartbeat: Duration,
    /// `TYPE://0`, the room every client joins.
    pub(crate) room: String,
    /// Keeps message ids unique across runs against one server.
    pub(crate) tag: String,
    /// Peer: pairs; room: sending members.
    pub(crate) senders: u32,
    /// Between one sender's messages.
    pub(crate) interval: Duration,
    pub(crate) duration: Duration,
    pub(crate) window: usize,
    pub(crate) progress: ProgressBar,
}

/// One client's identity and role.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) mid: u32,
    pub(crate) route: Route,
    /// 0-based index among the senders, if it sends.
    pub(crate) sender: Option<u32>,
}

/// What a client hands back.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) mid: u32,
    pub(crate) ready: bool,
    /// n of the messages it sent that op 5 accepted.
    pub(crate) accepted: Vec<u32>,
    /// Per sender index (peer: its partner only, index 0): the n received.
    pub(crate) received: Vec<SeqSet>,
}

/// op 5's body.
#[derive(Debug, Deserialize)]
struct Reply {
    code: i64,
}

/// The delivered envelope (the fields the bench reads).
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    from: u64,
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    body: &'a str,
}

/// One client's life: connect, then read, heartbeat and (a sender) send on
/// its schedule until `stop`.
pub(crate) struct Client {
    spec: Spec,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    /// op 4 awaiting op 5: n → sent at.
    in_flight: HashMap<u32, Instant>,
    accepted: Vec<u32>,
    received: Vec<SeqSet>,
}

impl Client {
    /// Client `spec`; it keeps `sets` sets of received message numbers (one
    /// per sender it hears from).
    pub(crate) fn new(spec: Spec, plan: Arc<Plan>, shared: Arc<Shared>, sets: usize) -> Client {
        Client {
            spec,
            plan,
            shared,
            in_flight: HashMap::new(),
            accepted: Vec::new(),
            received: (0..sets).map(|_| SeqSet::default()).collect(),
        }
    }

    fn outcome(self, ready: bool) -> Outcome {
        Outcome {
            mid: self.spec.mid,
            ready,
            accepted: self.accepted,
            received: self.received,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut start: watch::Receiver<Option<Instant>>,
        stop: CancellationToken,
    ) -> Outcome {
        let (shared, plan) = (&self.shared, &self.plan);
        let up = ramp::come_up(
            self.spec.mid,
            self.connect(),
            &shared.tally,
            &plan.progress,
            &stop,
        );
        let Some((mut io, mut frames)) = up.await else {
            return self.outcome(false);
        };
        let result = self.serve(&mut io, &mut frames, &mut start, &stop).await;
        if let Err(e) = result {
            if !stop.is_cancelled() {
                self.shared.tally.dropped(self.spec.mid, e);
            }
        }
        self.outcome(true)
    }

    /// Connects and authenticates; answers the connection and the frames
    /// that came with op 8.
    async fn connect(&self) -> anyhow::Result<(Conn, Vec<Frame>)> {
        let plan = &self.plan;
        let mut io = Conn::open(self.spec.route).await?;
        let mut token = json!({
            "mid": self.spec.mid,
            "key": format!("chat-{}-{}", plan.tag, self.spec.mid),
            "platform": "bench",
            "im": true,
        });
        if plan.mode == ChatMode::Room {
            token["room_id"] = json!(plan.room);
        }
        let frames = io.auth(&token).await?;
        Ok((io, frames))
    }

    /// The op 4 body prefix up to the id, for this sender's target.
    fn target_json(&self, sender: u32) -> String {
        match self.plan.mode {
            ChatMode::Peer => format!(
                "{{\"to\":{},\"op\":{}",
                self.plan.senders + sender + 1,
                self.plan.op
            ),
            ChatMode::Room => format!(
                "{{\"room\":{},\"op\":{}",
                Value::String(self.plan.room.clone()),
                self.plan.op
            ),
        }
    }

    async fn serve(
        &mut self,
        io: &mut Conn,
        frames: &mut Vec<Frame>,
        start: &mut watch::Receiver<Option<Instant>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let plan = Arc::clone(&self.plan);
        let mut heartbeat = Heartbeat::new(plan.heartbeat, self.spec.mid);
        for frame in std::mem::take(frames) {
            self.on_frame(frame);
        }
        let prefix = self.spec.sender.map(|s| self.target_json(s));
        // (next send, end of sending) once the start is known.
        let mut schedule: Option<(Instant, Instant)> = None;
        let mut waiting = prefix.is_some();
        let mut n: u32 = 0;
        loop {
            let next_send = async {
                match schedule {
                    Some((next, _)) => tokio::time::sleep_until(next).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = io.read(frames) => {
                    r?;
                    for frame in frames.drain(..) {
                        self.on_frame(frame);
                    }
                }
                _ = heartbeat.tick() => io.send(heartbeat.frame()).await.context("send heartbeat")?,
                r = start.changed(), if waiting => {
                    if r.is_err() {
                        waiting = false;
                        continue;
                    }
                    if let (Some(t0), Some(s)) = (*start.borrow(), self.spec.sender) {
                        waiting = false;
                        // Senders spread evenly over one interval.
                        let offset = plan.interval.mul_f64(f64::from(s) / f64::from(plan.senders));
                        schedule = Some((t0 + offset, t0 + plan.duration));
                    }
                }
                () = next_send => {
                    let Some((next, end)) = schedule else { continue };
                    let Some(prefix) = prefix.as_deref() else { continue };
                    let now = Instant::now();
                    // Ticks missed entirely (the bench was late) are skipped.
                    let mut due = next;
                    while due + plan.interval <= now {
                        due += plan.interval;
                        bump(&self.shared.skipped);
                    }
                    if self.in_flight.len() >= plan.window {
                        bump(&self.shared.skipped);
                    } else {
                        n += 1;
                        let body = format!(
                            "{prefix},\"id\":\"{}-{n}\",\"body\":\"{}\"}}",
                            plan.tag,
                            unix_nanos()
                        );
                        let seq = i32::try_from(n).unwrap_or(i32::MAX);
                        self.in_flight.insert(n, Instant::now());
                        io.send(Frame::new(1, Op::SendMsg, seq, Bytes::from(body)).to_bytes())
                            .await
                            .context("send op 4")?;
                        bump(&self.shared.sent);
                    }
                    let next = due + plan.interval;
                    schedule = (next < end).then_some((next, end));
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        if frame.op == Op::SendMsgReply.code() {
            self.on_reply(&frame);
        } else if frame.op == self.plan.op {
            self.on_message(&frame);
        }
        // Heartbeat replies and anything else: ignored.
    }

    fn on_reply(&mut self, frame: &Frame) {
        let shared = &*self.shared;
        let Ok(n) = u32::try_from(frame.seq) else {
            bump(&shared.foreign);
            return;
        };
        let Some(sent) = self.in_flight.remove(&n) else {
            bump(&shared.foreign);
            return;
        };
        shared
            .reply_latency
            .record(self.spec.mid as usize, nanos_since(sent));
        let code = serde_json::from_slice::<Reply>(&frame.body).map_or(-1, |r| r.code);
        if code == 0 {
            self.accepted.push(n);
            bump(&shared.accepted);
        } else {
            bump(&shared.refused);
            *shared.codes.lock().entry(code).or_default() += 1;
        }
    }

    fn on_message(&mut self, frame: &Frame) {
        let now = unix_nanos();
        let shared = &*self.shared;
        let Ok(env) = serde_json::from_slice::<Envelope>(&frame.body) else {
            bump(&shared.foreign);
            return;
        };
        let n = env
            .id
            .rsplit_once('-')
            .filter(|(tag, _)| *tag == self.plan.tag)
            .and_then(|(_, n)| n.parse::<u32>().ok());
        let sent = env.body.parse::<u64>().ok();
        let (Some(n), Some(sent)) = (n, sent) else {
            bump(&shared.foreign);
            return;
        };
        let from = u32::try_from(env.from).unwrap_or(0);
        let index = match self.plan.mode {
            ChatMode::Peer => {
                if Some(from) == self.spec.mid.checked_sub(self.plan.senders) && from > 0 {
                    0
                } else if from == self.spec.mid {
                    bump(&shared.own_copies);
                    return;
                } else {
                    bump(&shared.foreign);
                    return;
                }
            }
            ChatMode::Room => {
                if from == 0 || from > self.plan.senders {
                    bump(&shared.foreign);
                    return;
                }
                from as usize - 1
            }
        };
        let Some(set) = self.received.get_mut(index) else {
            bump(&shared.foreign);
            return;
        };
        shared
            .arrivals
            .arrive(set, n, sent, now, self.spec.mid as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_read_without_copying() {
        let body = br#"{"from":3,"to":4,"id":"bab-17","ts":1,"body":"123"}"#;
        let env: Envelope = serde_json::from_slice(body).expect("envelope");
        assert_eq!((env.from, env.id, env.body), (3, "bab-17", "123"));
        assert!(serde_json::from_slice::<Envelope>(br#"{"from":3,"id":"x","body":{}}"#).is_err());
    }
}
