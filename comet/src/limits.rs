//! Per-comet abuse limits: how many connections the comet and each client IP
//! may hold open, and how many frames a connection may send per second.
//!
//! Connection slots are taken at accept, before any byte is read, and given
//! back when the connection task ends (also when it is dropped). A refused
//! connection is closed at once: counted in
//! `rim_comet_limit_rejections_total{limit}` and logged (at most one line a
//! second per limit, with the number of refusals it stands for, so a flood
//! cannot flood the log). A connection over its frame rate is closed with
//! reason `frame_rate` (one log line, `rim_comet_disconnects_total`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::warn;

use crate::config::Config;

/// Lock shards of the per-IP counts.
const SHARDS: usize = 16;

/// Counter `{limit}`: connections refused at accept by a limit.
pub(crate) const LIMIT_REJECTIONS: &str = "rim_comet_limit_rejections_total";

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections`: the comet is full.
    Connections,
    /// `max_connections_per_ip`: this address holds too many.
    ConnectionsPerIp,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::ConnectionsPerIp => "connections_per_ip",
        }
    }
}

/// Open-connection counts, total and per client IP.
pub(crate) struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: [Mutex<HashMap<IpAddr, u32>>; SHARDS],
    hasher: RandomState,
    started: Instant,
    /// Per refusal kind: the second (since `started`) of the last log line,
    /// and refusals since then.
    logged: [(AtomicU64, AtomicU64); 2],
}

impl ConnLimits {
    pub(crate) fn new(config: &Config) -> ConnLimits {
        ConnLimits {
            max_total: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            total: AtomicUsize::new(0),
            per_ip: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
            started: Instant::now(),
            logged: Default::default(),
        }
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.per_ip[self.hasher.hash_one(ip) as usize % SHARDS]
    }

    /// Takes a slot for a connection from `ip`; on `Err` nothing was taken
    /// and the refusal is counted and (rate-limited) logged.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let refused = self.try_admit(ip);
        if let Err(refusal) = refused {
            ::metrics::counter!(LIMIT_REJECTIONS, "limit" => refusal.label()).increment(1);
            self.log_refusal(refusal, ip);
        }
        refused
    }

    fn try_admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_total > 0 && total > self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Connections);
        }
        if self.max_per_ip > 0 {
            let mut shard = self.shard(ip).lock();
            let count = shard.entry(ip).or_insert(0);
            if *count as usize >= self.max_per_ip {
                drop(shard);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::ConnectionsPerIp);
            }
            *count += 1;
        }
        Ok(())
    }

    /// Gives back the slot `admit` took for `ip`.
    pub(crate) fn release(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if self.max_per_ip > 0 {
            let mut shard = self.shard(ip).lock();
            if let Some(count) = shard.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    shard.remove(&ip);
                }
            }
        }
    }

    /// Seconds since the comet started: the clock of [`FrameRate`].
    pub(crate) fn second(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn log_refusal(&self, refusal: Refusal, ip: IpAddr) {
        let (last, pending) = &self.logged[refusal as usize];
        let pending_now = pending.fetch_add(1, Ordering::AcqRel) + 1;
        let second = self.started.elapsed().as_secs() + 1;
        let previous = last.load(Ordering::Acquire);
        if previous == second
            || last
                .compare_exchange(previous, second, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        pending.fetch_sub(pending_now, Ordering::AcqRel);
        let limit = match refusal {
            Refusal::Connections => self.max_total,
            Refusal::ConnectionsPerIp => self.max_per_ip,
        };
        warn!(
            peer.ip = %ip,
            limit = refusal.label(),
            max = limit,
            refused = pending_now,
            "connection refused: limit reached (refused counts this and the refusals not logged since the last line)"
        );
    }
}

/// A connection's frame budget: at most `max` client frames in any one
/// calendar second of the comet's clock (0: no limit). Lives in the
/// connection task, so it is 8 bytes.
#[derive(Debug, Default)]
pub(crate) struct FrameRate {
    second: u32,
    count: u32,
}

impl FrameRate {
    /// Counts one frame arriving in `second` (see [`ConnLimits::second`]);
    /// `false` when it is over `max` for that second.
    pub(crate) fn allow(&mut self, max: u32, second: u32) -> bool {
        if max == 0 {
            return true;
        }
        if second != self.second {
            self.second = second;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ConnLimits {
        ConnLimits::new(&Config {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..Config::default()
        })
    }

    #[test]
    fn per_ip_and_total_limits_take_and_give_back_slots() {
        let l = limits(3, 2);
        let (a, b) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Err(Refusal::ConnectionsPerIp));
        assert_eq!(l.admit(b), Ok(()));
        assert_eq!(l.admit(b), Err(Refusal::Connections));
        assert_eq!(l.total.load(Ordering::Acquire), 3);
        l.release(a);
        assert_eq!(l.admit(b), Ok(()));
        l.release(a);
        l.release(b);
        l.release(b);
        assert_eq!(l.total.load(Ordering::Acquire), 0);
        assert!(l.per_ip.iter().all(|s| s.lock().is_empty()));
    }

    #[test]
    fn zero_means_unlimited() {
        let l = limits(0, 0);
        let a = "127.0.0.1".parse().unwrap();
        for _ in 0..10_000 {
            assert_eq!(l.admit(a), Ok(()));
        }
    }

    #[test]
    fn frame_rate_is_per_second() {
        let mut rate = FrameRate::default();
        for _ in 0..5 {
            assert!(rate.allow(5, 7));
        }
        assert!(!rate.allow(5, 7));
        assert!(rate.allow(5, 8));
        assert!(FrameRate::default().allow(0, 0));
    }
}
