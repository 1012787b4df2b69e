//! What the client tasks of a run count together: connections up, failed
//! and dropped, the first error, first arrivals of numbered messages, and
//! latencies in histograms sharded so that client tasks rarely wait on each
//! other's locks. Also the wall clock that push and message bodies carry,
//! which latencies are measured from.
//!
//! Each mode keeps its own counters beside these (`client::Shared`,
//! `im_client::ImShared`, `chat_client::Shared`); what they mean is theirs.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::bail;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Histogram shards per [`Latency`].
const SHARDS: usize = 8;

/// Wall clock in nanoseconds since the Unix epoch (the payload timestamp).
pub(crate) fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds since `t`, at least 1 (a histogram's lowest value).
pub(crate) fn nanos_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A new latency histogram in nanoseconds (1 ns to 10 min, 3 significant digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// Adds one to a run counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A run counter's value.
pub(crate) fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Latencies recorded by many client tasks.
#[derive(Debug)]
pub(crate) struct Latency {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latency {
    pub(crate) fn new() -> Latency {
        Latency {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    /// Records `nanos` (at least 1) in the shard of `key`.
    pub(crate) fn record(&self, key: usize, nanos: u64) {
        let _ = self.shards[key % SHARDS].lock().record(nanos.max(1));
    }

    /// All shards merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*shard.lock());
        }
        all
    }
}

/// Bitset of the message numbers (push seqs, chat message numbers) one
/// client received; it stays empty until messages arrive.
#[derive(Debug, Default)]
pub(crate) struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Inserts `seq`; false if it was already there.
    pub(crate) fn insert(&mut self, seq: u32) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let had = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !had
    }

    pub(crate) fn contains(&self, seq: u32) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// Numbered messages arriving at their recipients: first arrivals, repeats,
/// the latest receipt and the latency from the send time each carries.
#[derive(Debug)]
pub(crate) struct Arrivals {
    /// First arrivals at a recipient.
    pub(crate) delivered: AtomicU64,
    /// Messages a recipient already held.
    pub(crate) duplicates: AtomicU64,
    /// Unix nanos of the latest first arrival.
    pub(crate) last_receipt_ns: AtomicU64,
    /// Send time to first arrival.
    pub(crate) latency: Latency,
}

impl Arrivals {
    pub(crate) fn new() -> Arrivals {
        Arrivals {
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            last_receipt_ns: AtomicU64::new(0),
            latency: Latency::new(),
        }
    }

    /// Message `n`, sent at `sent` (unix nanos), arrived at `now` at a
    /// recipient holding `held`; its latency goes to the shard of `key`.
    pub(crate) fn arrive(&self, held: &mut SeqSet, n: u32, sent: u64, now: u64, key: usize) {
        if !held.insert(n) {
            bump(&self.duplicates);
            return;
        }
        bump(&self.delivered);
        self.last_receipt_ns.fetch_max(now, Ordering::Relaxed);
        self.latency.record(key, now.saturating_sub(sent));
    }
}

/// The connection counters and the first error of a run's clients.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Clients connected and authenticated.
    pub(crate) ready: AtomicU64,
    /// Clients that could not connect.
    pub(crate) failed: AtomicU64,
    /// Connections the server ended (or that failed) during the run.
    pub(crate) disconnected: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    /// Keeps `e` if it is the run's first error.
    pub(crate) fn note_error(&self, e: &anyhow::Error) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(format!("{e:#}"));
        }
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().clone()
    }

    /// Client `mid` could not connect.
    pub(crate) fn connect_failed(&self, mid: u32, e: anyhow::Error) {
        bump(&self.failed);
        self.note_error(&e.context(format!("client {mid}")));
    }

    /// Client `mid` lost its connection.
    pub(crate) fn dropped(&self, mid: u32, e: anyhow::Error) {
        bump(&self.disconnected);
        self.note_error(&e.context(format!("client {mid}")));
    }

    /// Whether each of `clients` clients is up or has failed.
    pub(crate) fn all_in(&self, clients: u32) -> bool {
        count(&self.ready) + count(&self.failed) >= u64::from(clients)
    }

    /// After the ramp: shows the first client error, and fails when
    /// clients were due and none connected (`server` names what should
    /// have been listening).
    pub(crate) fn check_ramp(&self, clients: u32, server: &str) -> anyhow::Result<()> {
        if let Some(e) = self.first_error() {
            eprintln!("first client error: {e}");
        }
        if clients > 0 && count(&self.ready) == 0 {
            bail!("no client could connect; is {server} running at --tcp/--ws?");
        }
        Ok(())
    }
}
