//! One goim push client (the idle, room, keyed, broadcast and api
//! scenarios): connect, authenticate with op 7 into its room, then read
//! pushes until told to stop, heartbeating to stay alive. It owns what a
//! push means here: the `<send_unix_nanos>:<seq>` body, the seqs received,
//! delivery latency.
//!
//! Memory per client is kept small: received sequence numbers go into a
//! bitset ([`SeqSet`]) that stays empty until pushes arrive (the
//! connection's own buffers: `conn`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;
use rim_proto::Frame;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Heartbeat, Route};
use super::ramp;
use super::tally::{bump, unix_nanos, Arrivals, SeqSet, Tally};

/// Counters and histograms every client task writes to.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) tally: Tally,
    /// Pushes at their clients; latency sharded by push seq.
    pub(crate) arrivals: Arrivals,
    /// Push frames whose body was not a bench payload.
    pub(crate) foreign: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            tally: Tally::new(),
            arrivals: Arrivals::new(),
            foreign: AtomicU64::new(0),
        }
    }
}

/// What every client shares: protocol settings, progress.
#[derive(Debug)]
pub(crate) struct ClientConfig {
    pub(crate) op: i32,
    pub(crate) heartbeat: Duration,
    pub(crate) progress: ProgressBar,
}

/// One client's identity.
#[derive(Debug)]
pub(crate) struct ClientSpec {
    /// 1-based; also the client's mid.
    pub(crate) index: u32,
    pub(crate) route: Route,
    pub(crate) room: String,
}

/// What a client hands back when it stops.
#[derive(Debug)]
pub(crate) struct ClientOutcome {
    pub(crate) index: u32,
    pub(crate) ready: bool,
    pub(crate) seqs: SeqSet,
}

/// Runs one client until `stop` is cancelled (or it fails / is disconnected).
pub(crate) async fn run(
    spec: ClientSpec,
    cfg: Arc<ClientConfig>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> ClientOutcome {
    let mut outcome = ClientOutcome {
        index: spec.index,
        ready: false,
        seqs: SeqSet::default(),
    };
    let up = ramp::come_up(
        spec.index,
        connect(&spec, &cfg),
        &shared.tally,
        &cfg.progress,
        &stop,
    );
    let Some((conn, frames)) = up.await else {
        return outcome;
    };
    outcome.ready = true;
    let result = read_loop(conn, frames, &spec, &cfg, &shared, &stop, &mut outcome.seqs).await;
    if let Err(e) = result {
        shared.tally.dropped(spec.index, e);
    }
    outcome
}

fn token(spec: &ClientSpec, op: i32) -> serde_json::Value {
    serde_json::json!({
        "mid": spec.index,
        "key": format!("bench-{}", spec.index),
        "room_id": spec.room,
        "platform": "bench",
        "accepts": [op],
    })
}

/// Connects and authenticates; answers the connection and the frames that
/// came with op 8.
async fn connect(spec: &ClientSpec, cfg: &ClientConfig) -> anyhow::Result<(Conn, Vec<Frame>)> {
    let mut conn = Conn::open(spec.route).await?;
    let frames = conn.auth(&token(spec, cfg.op)).await?;
    Ok((conn, frames))
}

fn on_frame(frame: Frame, cfg: &ClientConfig, shared: &Shared, seqs: &mut SeqSet) {
    if frame.op != cfg.op {
        return; // heartbeat replies and anything else
    }
    let now = unix_nanos();
    let mut parts = frame.body.split(|b| *b == b':');
    let sent = parts
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|s| s.parse::<u64>().ok());
    let seq = parts
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|s| s.parse::<u32>().ok());
    let (Some(sent), Some(seq)) = (sent, seq) else {
        bump(&shared.foreign);
        return;
    };
    shared.arrivals.arrive(seqs, seq, sent, now, seq as usize);
}

async fn read_loop(
    mut conn: Conn,
    mut frames: Vec<Frame>,
    spec: &ClientSpec,
    cfg: &ClientConfig,
    shared: &Shared,
    stop: &CancellationToken,
    seqs: &mut SeqSet,
) -> anyhow::Result<()> {
    let mut heartbeat = Heartbeat::new(cfg.heartbeat, spec.index);
    loop {
        for frame in frames.drain(..) {
            on_frame(frame, cfg, shared, seqs);
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = heartbeat.tick() => {
                conn.send(heartbeat.frame()).await.context("send heartbeat")?;
            }
            r = conn.read(&mut frames) => r?,
        }
    }
}
