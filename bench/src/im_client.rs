//! One IM client (durable messaging, docs/protocol.md): authenticates with
//! `"im": true`, syncs from where its copy of the mailbox ends (the token's
//! `since`, or op 18 after op 8), then takes stored frames live, syncing
//! again after a gap; in a reconnect storm it drops its connection when the
//! storm starts and reconnects with `since` at its moment of the window.
//!
//! What it holds survives reconnects ([`Mailbox`]): the last seq it holds
//! without a gap and the seqs it holds above that. A live frame it already
//! holds is a duplicate; a frame of a sync page it asked for is not.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use parking_lot::Mutex;
use rim_proto::{Frame, Op};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{self, Conn, Heartbeat, Route};
use super::ramp;
use super::tally::{bump, nanos_since, new_histogram, unix_nanos, Latency, Tally};

/// Wait between reconnect attempts after a failed one.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// Counters and histograms every IM client writes to.
#[derive(Debug)]
pub(crate) struct ImShared {
    /// Connections; `disconnected` counts those the server ended (or that
    /// failed) outside a storm.
    pub(crate) tally: Tally,
    /// Stored seqs received for the first time (live or in a page).
    pub(crate) delivered: AtomicU64,
    /// Stored frames that arrived live (outside a sync page).
    pub(crate) live: AtomicU64,
    /// Stored frames that arrived in a sync page.
    pub(crate) paged: AtomicU64,
    /// Page frames the client already held (asked for again: not an error).
    pub(crate) resent: AtomicU64,
    /// Live frames the client already held.
    pub(crate) duplicates: AtomicU64,
    /// Live frames with a seq below one the connection already carried.
    pub(crate) out_of_order: AtomicU64,
    /// Live frames past a gap (the client syncs to fill it).
    pub(crate) gaps: AtomicU64,
    /// op 18 sent.
    pub(crate) sync_requests: AtomicU64,
    /// op 20 with an error, or a sync that began with another epoch.
    pub(crate) sync_errors: AtomicU64,
    /// op 19 with `"complete": false` (messages gone for good).
    pub(crate) incomplete: AtomicU64,
    /// op 19/20 whose header seq is not the request's.
    pub(crate) echo_mismatch: AtomicU64,
    /// Stored-op frames whose seq or body is not the bench's.
    pub(crate) foreign: AtomicU64,
    /// Clients whose first sync (after connecting) finished.
    pub(crate) synced: AtomicU64,
    /// Storm reconnects whose sync finished.
    pub(crate) resynced: AtomicU64,
    pub(crate) reconnect_failures: AtomicU64,
    /// Unix nanos of the last finished storm sync.
    pub(crate) last_resync_ns: AtomicU64,
    /// Delivery latency, sharded by seq.
    pub(crate) latency: Latency,
    /// op 7 (or op 18) sent to the last op 20 of the first sync.
    pub(crate) sync_latency: Mutex<Histogram<u64>>,
    /// The same for storm reconnects.
    pub(crate) resync_latency: Mutex<Histogram<u64>>,
}

impl ImShared {
    pub(crate) fn new() -> ImShared {
        ImShared {
            tally: Tally::new(),
            delivered: AtomicU64::new(0),
            live: AtomicU64::new(0),
            paged: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            sync_requests: AtomicU64::new(0),
            sync_errors: AtomicU64::new(0),
            incomplete: AtomicU64::new(0),
            echo_mismatch: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            resynced: AtomicU64::new(0),
            reconnect_failures: AtomicU64::new(0),
            last_resync_ns: AtomicU64::new(0),
            latency: Latency::new(),
            sync_latency: Mutex::new(new_histogram()),
            resync_latency: Mutex::new(new_histogram()),
        }
    }
}

/// What every IM client shares.
#[derive(Debug)]
pub(crate) struct ImConfig {
    /// The stored messages' op.
    pub(crate) op: i32,
    pub(crate) heartbeat: Duration,
    /// Sync right after connecting (else: an idle IM session, no sync).
    pub(crate) sync_on_connect: bool,
    /// The first sync is op 18 after op 8 instead of the token's `since`.
    pub(crate) sync_request: bool,
    /// Clients in the run (a storm spreads their reconnects over its window).
    pub(crate) clients: u32,
    /// The storm's window; its start arrives through [`ImClient::run`]'s `storm`.
    pub(crate) storm_window: Duration,
    pub(crate) progress: ProgressBar,
}

/// One client's copy of its mailbox.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    /// Seqs up to this one predate the run (the user's `top` when it began).
    pub(crate) base: u32,
    pub(crate) epoch: Option<String>,
    /// Every seq up to this one is held.
    pub(crate) last: u32,
    /// Held seqs above `last + 1`.
    pub(crate) ahead: BTreeSet<u32>,
}

impl Mailbox {
    /// Whether `seq` is held.
    fn holds(&self, seq: u32) -> bool {
        seq <= self.last || self.ahead.contains(&seq)
    }

    /// Takes `seq`; false if it was held already.
    fn take(&mut self, seq: u32) -> bool {
        if self.holds(seq) {
            return false;
        }
        if seq == self.last + 1 {
            self.last = seq;
            while self.ahead.remove(&(self.last + 1)) {
                self.last += 1;
            }
        } else {
            self.ahead.insert(seq);
        }
        true
    }

    /// Distinct seqs held after `base`.
    pub(crate) fn received(&self) -> u64 {
        u64::from(self.last.saturating_sub(self.base)) + self.ahead.len() as u64
    }
}

/// One client's identity and starting point.
#[derive(Debug)]
pub(crate) struct ImSpec {
    /// 1-based; the client's mid.
    pub(crate) mid: u32,
    pub(crate) route: Route,
}

/// What a client hands back when it stops.
#[derive(Debug)]
pub(crate) struct ImOutcome {
    pub(crate) mid: u32,
    pub(crate) ready: bool,
    /// The first sync finished.
    pub(crate) synced: bool,
    pub(crate) mailbox: Mailbox,
}

/// Why a sync runs (what its latency counts as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncKind {
    First,
    Storm,
    Gap,
}

#[derive(Debug)]
struct SyncRun {
    kind: SyncKind,
    started: Instant,
    /// The header seq of the op 18 (0: the token's `since`).
    echo: i32,
    /// Between op 19 and op 20.
    in_page: bool,
}

/// op 19's body.
#[derive(Debug, Deserialize)]
struct SyncBegin {
    epoch: String,
    complete: bool,
}

/// op 20's body: `{"last", "more"}` or `{"code", "reason"}`.
#[derive(Debug, Deserialize)]
struct SyncEnd {
    last: Option<u32>,
    more: Option<bool>,
    code: Option<u16>,
    reason: Option<String>,
}

/// One client task's state: its mailbox copy and the connection's sync.
pub(crate) struct ImClient {
    spec: ImSpec,
    cfg: Arc<ImConfig>,
    shared: Arc<ImShared>,
    mailbox: Mailbox,
    /// Connections made (part of the key, so that a reconnect never races
    /// its own old session for the key).
    generation: u32,
    sync: Option<SyncRun>,
    /// op 20's `last` of the latest sync on this connection.
    synced_upto: u32,
    /// The highest seq this connection carried.
    highest: u32,
    next_echo: i32,
    first_synced: bool,
    /// Frames read with op 8, handled first.
    pending: Vec<Frame>,
}

impl ImClient {
    pub(crate) fn new(
        spec: ImSpec,
        cfg: Arc<ImConfig>,
        shared: Arc<ImShared>,
        base: u32,
        epoch: Option<String>,
    ) -> ImClient {
        ImClient {
            spec,
            cfg,
            shared,
            mailbox: Mailbox {
                base,
                epoch,
                last: base,
                ahead: BTreeSet::new(),
            },
            generation: 0,
            sync: None,
            synced_upto: 0,
            highest: 0,
            next_echo: 1,
            first_synced: false,
            pending: Vec::new(),
        }
    }

    /// Runs until `stop`, or until the connection fails. `storm` carries the
    /// storm's start once it begins.
    pub(crate) async fn run(
        mut self,
        stop: CancellationToken,
        mut storm: watch::Receiver<Option<Instant>>,
    ) -> ImOutcome {
        let (shared, cfg, mid) = (
            Arc::clone(&self.shared),
            Arc::clone(&self.cfg),
            self.spec.mid,
        );
        let first = self.connect(SyncKind::First);
        let up = ramp::come_up(mid, first, &shared.tally, &cfg.progress, &stop);
        let Some(mut io) = up.await else {
            return self.outcome(false);
        };
        let mut storm_done = false;
        loop {
            match self
                .connection(&mut io, &stop, &mut storm, storm_done)
                .await
            {
                Ok(Next::Stop) => return self.outcome(true),
                Ok(Next::Reconnect(at)) => {
                    // Every client drops its connection at the storm's
                    // start (a server or network blip) and comes back at
                    // its own moment of the window, missing what was
                    // stored in between.
                    drop(io);
                    storm_done = true;
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        _ = stop.cancelled() => return self.outcome(true),
                    }
                    io = loop {
                        let attempt = tokio::select! {
                            r = conn::within_timeout(self.connect(SyncKind::Storm)) => r,
                            _ = stop.cancelled() => return self.outcome(true),
                        };
                        match attempt {
                            Ok(io) => break io,
                            Err(e) => {
                                bump(&self.shared.reconnect_failures);
                                self.shared.tally.note_error(
                                    &e.context(format!("client {} reconnect", self.spec.mid)),
                                );
                                tokio::time::sleep(RECONNECT_BACKOFF).await;
                            }
                        }
                    };
                }
                Err(e) => {
                    self.shared.tally.dropped(self.spec.mid, e);
                    return self.outcome(true);
                }
            }
        }
    }

    fn outcome(self, ready: bool) -> ImOutcome {
        ImOutcome {
            mid: self.spec.mid,
            ready,
            synced: self.first_synced,
            mailbox: self.mailbox,
        }
    }

    fn sync_body(&self) -> serde_json::Value {
        match &self.mailbox.epoch {
            Some(epoch) => serde_json::json!({"seq": self.mailbox.last, "epoch": epoch}),
            None => serde_json::json!({"seq": self.mailbox.last}),
        }
    }

    /// Connects and authenticates; the sync (if any) starts with op 7 (the
    /// token's `since`) or with op 18 right after op 8.
    async fn connect(&mut self, kind: SyncKind) -> anyhow::Result<Conn> {
        let cfg = Arc::clone(&self.cfg);
        let mut io = Conn::open(self.spec.route).await?;
        self.generation += 1;
        self.sync = None;
        self.synced_upto = 0;
        self.highest = 0;
        let mut token = serde_json::json!({
            "mid": self.spec.mid,
            "key": format!("im-{}-{}", self.spec.mid, self.generation),
            "platform": "bench",
            "im": true,
        });
        let by_since = cfg.sync_on_connect && (kind == SyncKind::Storm || !cfg.sync_request);
        if by_since {
            token["since"] = self.sync_body();
        }
        let started = Instant::now();
        // On TCP the sync's first frames may come with op 8.
        self.pending = io.auth(&token).await?;
        if by_since {
            self.sync = Some(SyncRun {
                kind,
                started,
                echo: 0,
                in_page: false,
            });
        } else if cfg.sync_on_connect {
            self.request_sync(&mut io, kind).await?;
        }
        Ok(io)
    }

    async fn request_sync(&mut self, io: &mut Conn, kind: SyncKind) -> anyhow::Result<()> {
        let echo = self.next_echo;
        self.next_echo = self.next_echo.wrapping_add(1).max(1);
        let started = Instant::now();
        let frame = Frame::new(1, Op::Sync, echo, Bytes::from(self.sync_body().to_string()));
        io.send(frame.to_bytes()).await.context("send op 18")?;
        bump(&self.shared.sync_requests);
        // A running sync's timing (and kind) carries over to the next page.
        let (kind, started) = match &self.sync {
            Some(run) => (run.kind, run.started),
            None => (kind, started),
        };
        self.sync = Some(SyncRun {
            kind,
            started,
            echo,
            in_page: false,
        });
        Ok(())
    }

    /// One connection's life: frames, heartbeats, until the storm.
    async fn connection(
        &mut self,
        io: &mut Conn,
        stop: &CancellationToken,
        storm: &mut watch::Receiver<Option<Instant>>,
        storm_done: bool,
    ) -> anyhow::Result<Next> {
        let mut heartbeat = Heartbeat::new(self.cfg.heartbeat, self.spec.mid);
        let mut frames = std::mem::take(&mut self.pending);
        for frame in frames.drain(..) {
            if let Some(kind) = self.on_frame(frame)? {
                self.request_sync(io, kind).await?;
            }
        }
        let mut watching = !storm_done;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(Next::Stop),
                _ = heartbeat.tick() => io.send(heartbeat.frame()).await.context("send heartbeat")?,
                r = storm.changed(), if watching => {
                    if r.is_err() {
                        // No storm in this run.
                        watching = false;
                        continue;
                    }
                    if let Some(start) = *storm.borrow() {
                        let n = u64::from(self.cfg.clients.max(1));
                        let window = self.cfg.storm_window.as_nanos() as u64;
                        let offset = window * u64::from(self.spec.mid - 1) / n;
                        return Ok(Next::Reconnect(start + Duration::from_nanos(offset)));
                    }
                }
                r = io.read(&mut frames) => {
                    r?;
                    for frame in frames.drain(..) {
                        if let Some(kind) = self.on_frame(frame)? {
                            self.request_sync(io, kind).await?;
                        }
                    }
                    if self.wants_gap_sync() {
                        self.request_sync(io, SyncKind::Gap).await?;
                    }
                }
            }
        }
    }

    /// A live frame came past a gap that no sync on this connection covered
    /// (a gap below op 20's `last` is a loss: syncing again would loop).
    fn wants_gap_sync(&self) -> bool {
        self.sync.is_none()
            && !self.mailbox.ahead.is_empty()
            && self.mailbox.last + 1 > self.synced_upto
    }

    /// Handles one frame; answers the kind of sync to request, if any (the
    /// next page after op 20 `"more": true`).
    fn on_frame(&mut self, frame: Frame) -> anyhow::Result<Option<SyncKind>> {
        let shared = Arc::clone(&self.shared);
        if frame.op == self.cfg.op {
            self.on_stored(frame);
            return Ok(None);
        }
        match Op::from(frame.op) {
            Op::SyncBegin => {
                let begin: SyncBegin = serde_json::from_slice(&frame.body).context("op 19 body")?;
                let Some(run) = self.sync.as_mut() else {
                    bail!("op 19 without a sync running");
                };
                if frame.seq != run.echo {
                    bump(&shared.echo_mismatch);
                }
                run.in_page = true;
                if !begin.complete {
                    bump(&shared.incomplete);
                }
                match &self.mailbox.epoch {
                    Some(e) if *e != begin.epoch => {
                        bump(&shared.sync_errors);
                        bail!("the mailbox epoch changed from {e} to {}", begin.epoch);
                    }
                    Some(_) => {}
                    None => self.mailbox.epoch = Some(begin.epoch),
                }
                Ok(None)
            }
            Op::SyncEnd => {
                let end: SyncEnd = serde_json::from_slice(&frame.body).context("op 20 body")?;
                let Some(run) = self.sync.take() else {
                    bail!("op 20 without a sync running");
                };
                if frame.seq != run.echo {
                    bump(&shared.echo_mismatch);
                }
                if let Some(code) = end.code {
                    bump(&shared.sync_errors);
                    bail!(
                        "sync refused: op 20 code {code} {}",
                        end.reason.unwrap_or_default()
                    );
                }
                let (Some(last), Some(more)) = (end.last, end.more) else {
                    bail!("op 20 without last and more");
                };
                self.synced_upto = self.synced_upto.max(last);
                if more {
                    self.sync = Some(SyncRun {
                        in_page: false,
                        ..run
                    });
                    return Ok(Some(run.kind));
                }
                let nanos = nanos_since(run.started);
                match run.kind {
                    SyncKind::First => {
                        let _ = shared.sync_latency.lock().record(nanos);
                        if !self.first_synced {
                            self.first_synced = true;
                            bump(&shared.synced);
                        }
                    }
                    SyncKind::Storm => {
                        let _ = shared.resync_latency.lock().record(nanos);
                        bump(&shared.resynced);
                        shared
                            .last_resync_ns
                            .fetch_max(unix_nanos(), Ordering::Relaxed);
                    }
                    SyncKind::Gap => {}
                }
                Ok(None)
            }
            _ => Ok(None), // heartbeat replies, op 23, anything else
        }
    }

    fn on_stored(&mut self, frame: Frame) {
        let shared = &*self.shared;
        let Ok(seq) = u32::try_from(frame.seq) else {
            bump(&shared.foreign);
            return;
        };
        if seq == 0 || seq <= self.mailbox.base {
            // Not an IM frame, or a message from before the run.
            bump(&shared.foreign);
            return;
        }
        let in_page = self.sync.as_ref().is_some_and(|r| r.in_page);
        let held = self.mailbox.holds(seq);
        if in_page {
            bump(&shared.paged);
            if held {
                bump(&shared.resent);
            }
        } else {
            bump(&shared.live);
            if held {
                bump(&shared.duplicates);
            } else if seq < self.highest {
                bump(&shared.out_of_order);
            }
        }
        self.highest = self.highest.max(seq);
        if held {
            return;
        }
        let gap = !in_page && seq > self.mailbox.last + 1;
        self.mailbox.take(seq);
        bump(&shared.delivered);
        let now = unix_nanos();
        let sent = std::str::from_utf8(&frame.body)
            .ok()
            .and_then(|b| b.split(':').next())
            .and_then(|s| s.parse::<u64>().ok());
        match sent {
            Some(sent) => shared
                .latency
                .record(seq as usize, now.saturating_sub(sent)),
            None => bump(&shared.foreign),
        }
        if gap {
            bump(&shared.gaps);
        }
    }
}

enum Next {
    Stop,
    /// Drop the connection now, reconnect at the instant.
    Reconnect(Instant),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mailbox_copy_tracks_the_contiguous_end() {
        let mut m = Mailbox {
            base: 10,
            last: 10,
            ..Mailbox::default()
        };
        assert!(m.take(11));
        assert!(m.take(13));
        assert!(!m.take(13));
        assert!(!m.take(5));
        assert_eq!((m.last, m.received()), (11, 2));
        assert!(m.take(12));
        assert_eq!((m.last, m.ahead.len(), m.received()), (13, 0, 3));
    }
}
