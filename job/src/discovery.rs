//! Comet discovery: keeps a [`Job`]'s comet set equal to the static comets
//! plus those the router shards know.
//!
//! Comets report their gRPC address with their online counts (through logic
//! into the routers). A comet whose report is older than `comet_ttl` is
//! dropped once it also fails three `grpc.health.v1` checks in a row (the
//! check names the comet's server id, so another comet now at its address
//! does not count), so a live comet is not forgotten while logic or Redis
//! cannot relay its reports. A stale report whose comet does not answer is
//! probed again only after a backoff, and its pushes fail at once meanwhile.
//! Each round that read the reports also tells the job how old each comet's
//! report is ([`Job::note_reports`]): a comet without a fresh one gets every
//! room push, since its room records may have lapsed.
//!
//! Owns the membership policy only; the per-comet workers are `routine`'s,
//! and the router client is built by whoever runs the job.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::grpc::GrpcComet;
use crate::Job;

/// Consecutive failed health checks after which a known comet whose report
/// is stale is removed.
const FAILED_CHECKS_TO_LEAVE: u32 = 3;

/// How long a stale report whose comet did not answer is left unprobed.
const STALE_PROBE_BACKOFF: Duration = Duration::from_secs(10);

/// How often discovery retries while its first round has not reached the
/// routers (at most; a shorter `interval` wins).
const FIRST_ROUND_RETRY: Duration = Duration::from_millis(500);

/// A comet named in the configuration, pushed to regardless of discovery.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticComet {
    /// The comet's server id (its `comet.server_id`).
    pub id: String,
    /// Its gRPC address (`host:port`).
    pub addr: String,
}

/// What [`discover`] needs besides the job and the routers.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Comets always pushed to.
    pub comets: Vec<StaticComet>,
    /// How often a round looks for joins and leaves.
    pub interval: Duration,
    /// A comet whose last report is older than this is gone, unless it still
    /// answers health checks.
    pub comet_ttl: Duration,
    /// Deadline of gRPC connects to comets and of their health checks (push
    /// calls run under the job's `push_timeout`).
    pub connect_timeout: Duration,
}

/// Keeps `job`'s comet set equal to the static comets plus discovered ones:
/// a round every `config.interval`, and at once when a push names a comet the
/// job does not know. Without `routers` only the static comets are pushed to.
///
/// `first` fires after the first round that reached the routers (at once
/// without routers), so a consumer started on it does not route records
/// before the comets are known; until then rounds are retried sooner. A
/// round whose routers cannot be read keeps the known comets. Returns when
/// `shutdown` is cancelled.
pub async fn discover(
    job: Arc<Job>,
    routers: Option<rim_router::Router>,
    config: DiscoveryConfig,
    first: oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let mut first = Some(first);
    let mut discovery = Discovery::new(job.clone(), config.connect_timeout);
    loop {
        let mut fresh: HashMap<String, String> = config
            .comets
            .iter()
            .map(|c| (c.id.clone(), c.addr.clone()))
            .collect();
        let mut stale = HashMap::new();
        let mut discovered = true;
        if let Some(routers) = &routers {
            match routers.online().await {
                Ok(reports) => {
                    job.note_reports(
                        reports.iter().map(|r| (r.server.as_str(), r.updated)),
                        config.comet_ttl,
                    );
                    let oldest = now_secs() - config.comet_ttl.as_secs() as i64;
                    for r in reports.into_iter().filter(|r| !r.grpc_addr.is_empty()) {
                        let set = if r.updated >= oldest {
                            &mut fresh
                        } else {
                            &mut stale
                        };
                        set.entry(r.server).or_insert(r.grpc_addr);
                    }
                }
                Err(e) => {
                    // Keep the current set rather than dropping every comet.
                    warn!(error = %e, "comet discovery failed; keeping the known comets");
                    discovered = false;
                }
            }
        }
        if discovered {
            discovery
                .round(fresh, stale, |client, id| async move {
                    client.serving(&id).await
                })
                .await;
            if let Some(first) = first.take() {
                let _ = first.send(());
            }
        }
        let interval = if first.is_some() {
            // Not started yet: retry sooner than a full interval.
            config.interval.min(FIRST_ROUND_RETRY)
        } else {
            config.interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = job.discovery_wanted() => {}
        }
    }
}

/// A gRPC client for comet `id` at `addr`, or `None` (logged) for a bad address.
fn comet_client(
    id: &str,
    addr: &str,
    connect_timeout: Duration,
    call_timeout: Duration,
) -> Option<GrpcComet> {
    match GrpcComet::new(addr, connect_timeout, call_timeout) {
        Ok(client) => Some(client),
        Err(e) => {
            warn!(server = %id, error = %e, "bad comet address");
            None
        }
    }
}

/// Wall-clock seconds, the unit of the routers' `updated` stamps.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The comets discovery pushes to, and what it remembers between rounds.
struct Discovery {
    job: Arc<Job>,
    connect_timeout: Duration,
    /// Comets pushed to: id -> (gRPC address, client).
    known: HashMap<String, (String, GrpcComet)>,
    /// Known comets kept on health checks alone (their report is stale).
    unreported: HashSet<String>,
    /// Known comets' consecutive failed health checks.
    failed_checks: HashMap<String, u32>,
    /// Stale reports whose comet did not answer: not probed again before then.
    retry_after: HashMap<String, Instant>,
}

impl Discovery {
    fn new(job: Arc<Job>, connect_timeout: Duration) -> Discovery {
        Discovery {
            job,
            connect_timeout,
            known: HashMap::new(),
            unreported: HashSet::new(),
            failed_checks: HashMap::new(),
            retry_after: HashMap::new(),
        }
    }

    /// One round. `fresh` (static comets and fresh reports) and `stale`
    /// (reports older than `comet_ttl`) map server id to gRPC address;
    /// `probe(client, id)` is the health check.
    async fn round<P, F>(
        &mut self,
        fresh: HashMap<String, String>,
        stale: HashMap<String, String>,
        probe: P,
    ) where
        P: Fn(GrpcComet, String) -> F,
        F: Future<Output = bool>,
    {
        for (id, addr) in &fresh {
            self.unreported.remove(id);
            self.failed_checks.remove(id);
            self.retry_after.remove(id);
            if self.known.get(id).map(|(a, _)| a) != Some(addr) {
                if let Some(client) =
                    comet_client(id, addr, self.connect_timeout, self.job.call_timeout())
                {
                    info!(server = %id, addr = %addr, "comet joined");
                    self.join(id.clone(), addr.clone(), client);
                }
            }
        }
        // A comet without a fresh report may only have lost its reporter
        // (logic down, Redis restarted, this job started meanwhile): it is
        // pushed to while it answers health checks.
        let mut probes: Vec<(String, String, GrpcComet)> = self
            .known
            .iter()
            .filter(|(id, _)| !fresh.contains_key(*id))
            .map(|(id, (addr, client))| (id.clone(), addr.clone(), client.clone()))
            .collect();
        let now = Instant::now();
        self.retry_after.retain(|_, until| *until > now);
        for (id, addr) in stale {
            let skip = fresh.contains_key(&id)
                || self.known.contains_key(&id)
                || self.retry_after.contains_key(&id);
            if !skip {
                if let Some(client) =
                    comet_client(&id, &addr, self.connect_timeout, self.job.call_timeout())
                {
                    probes.push((id, addr, client));
                }
            }
        }
        let alive = futures_util::future::join_all(
            probes
                .iter()
                .map(|(id, _, client)| probe(client.clone(), id.clone())),
        )
        .await;
        for ((id, addr, client), alive) in probes.into_iter().zip(alive) {
            match (alive, self.known.contains_key(&id)) {
                (true, true) => {
                    self.failed_checks.remove(&id);
                    if self.unreported.insert(id.clone()) {
                        warn!(server = %id, "comet's online report is stale; kept while it answers health checks");
                    }
                }
                (true, false) => {
                    warn!(server = %id, addr = %addr, "comet joined on a stale report: it answers health checks");
                    self.unreported.insert(id.clone());
                    self.join(id, addr, client);
                }
                (false, true) => {
                    // One missed check (a busy comet, a lost packet) is not a
                    // departure.
                    let failed = self.failed_checks.entry(id.clone()).or_default();
                    *failed += 1;
                    if *failed < FAILED_CHECKS_TO_LEAVE {
                        continue;
                    }
                    info!(server = %id, checks = *failed, "comet left (no fresh report, no health answer)");
                    self.failed_checks.remove(&id);
                    self.unreported.remove(&id);
                    self.job.remove_comet(&id);
                    self.known.remove(&id);
                }
                // A stale report of a comet that does not answer: its pushes
                // fail at once rather than wait for discovery, and it is
                // asked again only after a while.
                (false, false) => {
                    self.job.comet_gone(&id);
                    self.retry_after.insert(id, now + STALE_PROBE_BACKOFF);
                }
            }
        }
        metrics::gauge!("rim_job_comets").set(self.known.len() as f64);
    }

    fn join(&mut self, id: String, addr: String, client: GrpcComet) {
        self.job.add_comet(&id, Arc::new(client.clone()));
        self.known.insert(id, (addr, client));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rim_proto::pb::logic::{push_msg::Type, PushMsg};

    use super::*;
    use crate::{Config, JobError};

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(id, addr)| (id.to_string(), addr.to_string()))
            .collect()
    }

    fn discovery() -> Discovery {
        let job = Job::new(Config::default());
        Discovery::new(job, Duration::from_secs(1))
    }

    /// A round where the comets in `alive` answer their health check;
    /// returns how many checks were made.
    async fn round(
        d: &mut Discovery,
        fresh: &[(&str, &str)],
        stale: &[(&str, &str)],
        alive: &[&str],
    ) -> usize {
        let alive: HashSet<String> = alive.iter().map(|s| s.to_string()).collect();
        let checks = AtomicUsize::new(0);
        d.round(map(fresh), map(stale), |_, id| {
            checks.fetch_add(1, Ordering::Relaxed);
            let answers = alive.contains(&id);
            async move { answers }
        })
        .await;
        checks.into_inner()
    }

    /// Whether a push for `server` fails at once as an unknown comet.
    async fn push_fails_at_once(job: &Job, server: &str) -> bool {
        let msg = PushMsg {
            r#type: Type::Push as i32,
            operation: 1000,
            server: server.into(),
            keys: vec!["k".into()],
            ..PushMsg::default()
        };
        let start = Instant::now();
        let delivery = job.dispatch(msg).await.expect("routed");
        matches!(delivery.await, Err(JobError::UnknownComet(_)))
            && start.elapsed() == Duration::ZERO
    }

    const A: (&str, &str) = ("a", "127.0.0.1:1");
    const B: (&str, &str) = ("b", "127.0.0.1:2");

    #[tokio::test(start_paused = true)]
    async fn a_comet_with_a_stale_report_stays_while_it_answers() {
        let mut d = discovery();
        assert_eq!(round(&mut d, &[A, B], &[], &[]).await, 0);
        assert_eq!(d.job.comets(), ["a", "b"]);
        // b's reports stop coming (logic down); b still answers.
        for _ in 0..5 {
            assert_eq!(round(&mut d, &[A], &[B], &["b"]).await, 1);
        }
        assert_eq!(d.job.comets(), ["a", "b"]);
        // Its report gone altogether (Redis emptied): the same.
        assert_eq!(round(&mut d, &[A], &[], &["b"]).await, 1);
        assert_eq!(d.job.comets(), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_comet_leaves_after_three_failed_checks_in_a_row() {
        let mut d = discovery();
        round(&mut d, &[A, B], &[], &[]).await;
        // Two misses, an answer, two misses: still there.
        for alive in [&[][..], &[], &["b"], &[], &[]] {
            round(&mut d, &[A], &[B], alive).await;
            assert_eq!(d.job.comets(), ["a", "b"]);
        }
        // The third miss in a row: gone, and its pushes fail at once.
        round(&mut d, &[A], &[B], &[]).await;
        assert_eq!(d.job.comets(), ["a"]);
        assert!(push_fails_at_once(&d.job, "b").await);
        // A fresh report brings it back.
        round(&mut d, &[A, B], &[], &[]).await;
        assert_eq!(d.job.comets(), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_report_joins_if_its_comet_answers_and_is_backed_off_if_not() {
        let mut d = discovery();
        // A job started while logic is down: only stale reports.
        assert_eq!(round(&mut d, &[], &[A, B], &["a"]).await, 2);
        assert_eq!(d.job.comets(), ["a"]);
        // b did not answer: its pushes fail at once, and it is not asked
        // again on every round.
        assert!(push_fails_at_once(&d.job, "b").await);
        assert_eq!(round(&mut d, &[], &[A, B], &["a", "b"]).await, 1);
        assert_eq!(d.job.comets(), ["a"]);
    }
}
