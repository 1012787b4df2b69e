//! `rim bench chat`: client-to-client messages (rim's chat, issue 12). IM
//! sessions send op 4 `{"to" | "room", "op", "id", "body"}`; the server
//! answers op 5 `{"id", "code"}` (echoing the header seq) and delivers the
//! envelope `{"from", "to" | "room", "id", "ts", "body"}` with op = the
//! message's op.
//!
//! - `--chat-mode peer`: `-c` clients in pairs, sender i → receiver P + i
//!   (P = c / 2 pairs); every message the server accepted (op 5 code 0)
//!   must reach its receiver exactly once.
//! - `--chat-mode room`: `-c` clients in one room; mids 1..=--senders send
//!   `{"room"}` messages; every accepted message must reach every member
//!   (the sender too).
//!
//! The senders share `--rate` (messages per second, in total), each on its
//! own fixed schedule, with at most `--window` op 4 awaiting their op 5: a
//! tick that finds the window full is skipped (counted), so a high rate
//! measures the most the server accepts. The body is the send time
//! (`"<unix nanos>"`), the id `<run tag>-<n>` (the tag keeps ids unique across
//! runs: a resent id is stored once) and op 4's header seq is n.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use rim_proto::{Frame, Op};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Heartbeat, Route};
use super::procfs::Probe;
use super::ramp::{self, Ramp, Wait};
use super::report::{
    self, delivery_secs, fmt_lat, latency_json, latency_svg, per_sec, Failures, Settings, Table,
};
use super::tally::{bump, count, nanos_since, unix_nanos, Arrivals, Latency, SeqSet, Tally};
use super::BenchArgs;

/// The wait for the clients after the ramp.
const RAMP_WAIT: Wait = Wait {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(20),
};

/// What `rim bench chat` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChatMode {
    /// One-to-one: -c clients in pairs, sender i to receiver c/2 + i.
    Peer,
    /// One room: -c members, --senders of them send to the room.
    Room,
}

impl ChatMode {
    fn name(self) -> &'static str {
        match self {
            ChatMode::Peer => "peer",
            ChatMode::Room => "room",
        }
    }
}

/// Room senders when --senders is not given.
const DEFAULT_ROOM_SENDERS: u32 = 20;
/// The comet's default `max_frames_per_sec`; a sender above it is cut off.
const COMET_FRAMES_PER_SEC: f64 = 50.0;

/// Counters and histograms every client writes to.
#[derive(Debug)]
struct Shared {
    tally: Tally,
    /// op 4 sent.
    sent: AtomicU64,
    /// Send ticks skipped because the window was full.
    skipped: AtomicU64,
    /// op 5 with code 0.
    accepted: AtomicU64,
    /// op 5 with another code.
    refused: AtomicU64,
    /// Messages at their intended recipients; latency (op 4 sent to the
    /// recipient's receipt) sharded by the recipient's mid.
    arrivals: Arrivals,
    /// Peer: the sender's own copy (its mailbox holds what it sent).
    own_copies: AtomicU64,
    /// Frames of the message op that are not this run's messages.
    foreign: AtomicU64,
    codes: Mutex<BTreeMap<i64, u64>>,
    /// op 4 to its op 5, sharded by the sender's mid.
    reply_latency: Latency,
}

impl Shared {
    fn new() -> Shared {
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
struct Plan {
    mode: ChatMode,
    op: i32,
    heartbeat: Duration,
    /// `TYPE://0`, the room every client joins.
    room: String,
    /// Keeps message ids unique across runs against one server.
    tag: String,
    /// Peer: pairs; room: sending members.
    senders: u32,
    /// Between one sender's messages.
    interval: Duration,
    duration: Duration,
    window: usize,
    progress: ProgressBar,
}

/// One client's identity and role.
#[derive(Debug)]
struct Spec {
    mid: u32,
    route: Route,
    /// 0-based index among the senders, if it sends.
    sender: Option<u32>,
}

/// What a client hands back.
#[derive(Debug)]
struct Outcome {
    mid: u32,
    ready: bool,
    /// n of the messages it sent that op 5 accepted.
    accepted: Vec<u32>,
    /// Per sender index (peer: its partner only, index 0): the n received.
    received: Vec<SeqSet>,
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
struct Client {
    spec: Spec,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    /// op 4 awaiting op 5: n → sent at.
    in_flight: HashMap<u32, Instant>,
    accepted: Vec<u32>,
    received: Vec<SeqSet>,
}

impl Client {
    fn outcome(self, ready: bool) -> Outcome {
        Outcome {
            mid: self.spec.mid,
            ready,
            accepted: self.accepted,
            received: self.received,
        }
    }

    async fn run(
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

/// Runs `rim bench chat`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mode = args.chat_mode;
    let n = args.connections;
    ramp::check_flags(&args)?;
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let senders = match mode {
        ChatMode::Peer => {
            if args.senders.is_some() {
                bail!("--chat-mode peer: the senders are half of -c (pairs); leave out --senders");
            }
            if n < 2 || !n.is_multiple_of(2) {
                bail!("--chat-mode peer needs an even -c of at least 2 (sender, receiver pairs)");
            }
            n / 2
        }
        ChatMode::Room => {
            let s = args.senders.unwrap_or(DEFAULT_ROOM_SENDERS);
            if s == 0 || s > n {
                bail!("--senders must be between 1 and -c ({n})");
            }
            s
        }
    };
    let per_sender = args.rate / f64::from(senders);
    if per_sender > COMET_FRAMES_PER_SEC * 0.9 {
        eprintln!(
            "warning: {per_sender:.1} messages/s per sender; the comet cuts off a connection \
             over comet.max_frames_per_sec (default 50): use more clients"
        );
    }
    let tcp = ramp::resolve(&args.tcp, "tcp").await?;
    let ws = ramp::resolve(&args.ws, "ws").await?;

    let want = u64::from(n) + 256;
    ramp::raise_nofile(want, &format!("{n} clients"), "clients")?;
    let probe = Probe::new(args.server_pid);
    let mut readings = probe.before_connect()?;

    let ramp = Ramp::start(&args, tcp, ws, n);
    let plan = Arc::new(Plan {
        mode,
        op: args.operation,
        heartbeat: args.heartbeat,
        room: format!("{}://0", args.room_type),
        tag: format!("b{:x}", unix_nanos() % (1 << 48)),
        senders,
        interval: Duration::from_secs_f64(1.0 / per_sender),
        duration: args.duration,
        window: args.window as usize,
        progress: ramp.progress(),
    });
    let shared = Arc::new(Shared::new());
    let stop = CancellationToken::new();
    let (start_tx, start_rx) = watch::channel(None);
    let mut clients: Vec<JoinHandle<Outcome>> = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let route = ramp.next(i).await;
        let sender = (i <= senders).then(|| i - 1);
        let sets = match mode {
            ChatMode::Peer => usize::from(i > senders),
            ChatMode::Room => senders as usize,
        };
        let client = Client {
            spec: Spec {
                mid: i,
                route,
                sender,
            },
            plan: plan.clone(),
            shared: shared.clone(),
            in_flight: HashMap::new(),
            accepted: Vec::new(),
            received: (0..sets).map(|_| SeqSet::default()).collect(),
        };
        clients.push(tokio::spawn(client.run(start_rx.clone(), stop.clone())));
    }
    drop(start_rx);
    let tally = &shared.tally;
    let settled = ramp.settle(tally, RAMP_WAIT, || tally.all_in(n)).await;
    let (ramp_secs, ready, failed) = (settled.secs, settled.ready, settled.failed);
    eprintln!("{ready} of {n} IM clients connected in {ramp_secs:.1}s ({failed} failed)");
    tally.check_ramp(n, "rim")?;
    readings.after_connect = probe.server_after(args.settle).await?;

    // Send phase.
    readings.bench_start = probe.bench();
    let push_start_unix = unix_nanos();
    let t0 = Instant::now();
    eprintln!(
        "{senders} senders, {:.0} messages/s in total ({per_sender:.2}/s each), for {:?}",
        args.rate, args.duration
    );
    let _ = start_tx.send(Some(t0));
    let status = ProgressBar::new_spinner();
    while t0.elapsed() < args.duration {
        status.set_message(format!(
            "sent {} accepted {} delivered {}",
            count(&shared.sent),
            count(&shared.accepted),
            count(&shared.arrivals.delivered)
        ));
        status.tick();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    status.finish_and_clear();
    let send_secs = t0.elapsed().as_secs_f64();
    eprintln!("draining for {:?}", args.drain);
    tokio::time::sleep(args.drain).await;
    readings.after_push = probe.server()?;
    readings.bench_end = probe.bench();
    stop.cancel();
    let outcomes = ramp::join(clients).await?;

    // Losses: every accepted message at every recipient that connected.
    let mut accepted_by: Vec<Vec<u32>> = vec![Vec::new(); senders as usize];
    for o in &outcomes {
        if o.mid <= senders {
            accepted_by[o.mid as usize - 1] = o.accepted.clone();
        }
    }
    let mut expected = 0u64;
    let mut lost = 0u64;
    let mut recipients_short = 0u64;
    let mut unconfirmed = 0u64;
    for o in outcomes.iter().filter(|o| o.ready) {
        let from: Vec<usize> = match mode {
            ChatMode::Peer if o.mid > senders => vec![(o.mid - senders) as usize - 1],
            ChatMode::Peer => Vec::new(),
            ChatMode::Room => (0..senders as usize).collect(),
        };
        let mut short = false;
        for (k, s) in from.iter().enumerate() {
            let set = match mode {
                ChatMode::Peer => o.received.first(),
                ChatMode::Room => o.received.get(k),
            };
            let Some(set) = set else { continue };
            for &m in &accepted_by[*s] {
                expected += 1;
                if !set.contains(m) {
                    lost += 1;
                    short = true;
                }
            }
        }
        recipients_short += u64::from(short);
    }
    let arrivals = &shared.arrivals;
    let delivered = count(&arrivals.delivered);
    // Arrivals of messages whose op 5 did not say accepted (or never came).
    let confirmed_delivered = expected - lost;
    if delivered > confirmed_delivered {
        unconfirmed = delivered - confirmed_delivered;
    }

    let latency = arrivals.latency.merged();
    let reply_latency = shared.reply_latency.merged();
    let delivery_secs = delivery_secs(push_start_unix, count(&arrivals.last_receipt_ns), send_secs);
    let codes: BTreeMap<String, u64> = shared
        .codes
        .lock()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let sent = count(&shared.sent);
    let accepted = count(&shared.accepted);
    let refused = count(&shared.refused);
    let unanswered = sent.saturating_sub(accepted + refused);
    let duplicates = count(&arrivals.duplicates);
    let disconnected = count(&tally.disconnected);

    let failures = Failures::counted(&[
        ("lost", lost),
        ("duplicates", duplicates),
        ("op 5 with a code other than 0", refused),
        ("op 4 without op 5", unanswered),
        ("clients dropped during the run", disconnected),
        ("clients that could not connect", failed),
    ]);

    let json = json!({
        "scenario": "chat",
        "mode": mode.name(),
        "connections": ready,
        "connections_failed": failed,
        "disconnected": disconnected,
        "senders": senders,
        "rate": args.rate,
        "window": args.window,
        "ramp_s": ramp_secs,
        "send_s": send_secs,
        "sent": sent,
        "skipped": count(&shared.skipped),
        "accepted": accepted,
        "refused": refused,
        "codes": codes,
        "unanswered": unanswered,
        "sent_per_sec": per_sec(sent, send_secs),
        "accepted_per_sec": per_sec(accepted, send_secs),
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "recipients_missing_messages": recipients_short,
        "duplicates": duplicates,
        "unconfirmed_delivered": unconfirmed,
        "own_copies": count(&shared.own_copies),
        "foreign": count(&shared.foreign),
        "delivered_per_sec": per_sec(delivered, delivery_secs),
        "latency_us": latency_json(&latency),
        "reply_latency_us": latency_json(&reply_latency),
        "server_cpu_ns_per_delivery": report::server_cpu_per_delivery(&readings, delivered),
        "failures": failures,
        "first_error": tally.first_error(),
        "settings": Settings::from_args(&args),
    });
    let json = report::merge([json, report::readings_json(&readings)]);

    let mut table = Table::new();
    table.row("scenario", format!("chat --chat-mode {}", mode.name()));
    table.row(
        "connections",
        format!("{ready} IM ({failed} failed, {disconnected} dropped during the run)"),
    );
    table.row("ramp", format!("{ramp_secs:.1} s"));
    table.row(
        "op 4",
        format!(
            "{sent} sent by {senders} senders in {send_secs:.1} s ({} skipped: window full or late)",
            count(&shared.skipped)
        ),
    );
    table.row(
        "op 5",
        format!(
            "{accepted} accepted (code 0), {refused} other codes {codes:?}, {unanswered} unanswered"
        ),
    );
    table.row("accepted/s", format!("{}", per_sec(accepted, send_secs)));
    table.row(
        "delivered",
        format!(
            "{delivered} of {expected} expected, {lost} lost ({recipients_short} recipients), \
             {duplicates} duplicates, {unconfirmed} unconfirmed{}",
            if mode == ChatMode::Peer {
                format!(", {} own copies", count(&shared.own_copies))
            } else {
                String::new()
            }
        ),
    );
    table.row(
        "delivered/s",
        format!("{}", per_sec(delivered, delivery_secs)),
    );
    table.row("latency", fmt_lat(&latency));
    table.row("op 4 → op 5", fmt_lat(&reply_latency));
    table.server_cpu(&readings, "during send+drain", Some(delivered));
    table.bench(&readings, "during send+drain");
    report::output(&args, table, &json, || {
        let series = [
            (
                "delivery (op 4 sent to recipient's receipt)",
                "#1f77b4",
                &latency,
            ),
            ("op 4 to op 5", "#ff7f0e", &reply_latency),
        ];
        latency_svg(
            &format!(
                "rim bench chat --chat-mode {}: latency by percentile ({ready} clients)",
                mode.name()
            ),
            &series,
        )
    })?;
    failures.check("chat check")
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
