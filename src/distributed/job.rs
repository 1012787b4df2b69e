//! `rim job`: consumes the push topic and fans records out to comets over
//! gRPC. Comets come from a static list and from discovery: the comets'
//! online reports in the router shards carry their gRPC address. A comet
//! whose report is older than `comet_ttl` is dropped once it also fails
//! three `grpc.health.v1` checks in a row (the check names the comet's
//! server id, so another comet now at its address does not count), so a
//! live comet is not forgotten while logic or Redis cannot relay its reports.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rim_job::grpc::GrpcComet;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::RouterNode;

/// A comet named in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticComet {
    /// The comet's server id (its `comet.server_id`).
    pub id: String,
    /// Its gRPC address (`host:port`).
    pub addr: String,
}

/// `job.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobProcessConfig {
    /// Routines, batching (`[job]`).
    pub job: rim_job::Config,
    /// The push topic and consumer group (`[kafka]`).
    pub kafka: rim_queue::kafka::KafkaConfig,
    /// Comets always pushed to (`[[comets]]`). Default none.
    pub comets: Vec<StaticComet>,
    /// Router shards to discover comets from (`[[routers]]`). Default one at
    /// `127.0.0.1:3129`; empty disables discovery.
    pub routers: Vec<RouterNode>,
    /// How often discovery looks for joins and leaves. Default 2s.
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// A comet whose last report is older than this is gone, unless it still
    /// answers health checks. Default 30s.
    #[serde(with = "humantime_serde")]
    pub comet_ttl: Duration,
    /// Deadline of gRPC connects to comets and routers. Default 2s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Prometheus `/metrics` listen address. Default `0.0.0.0:3138`.
    pub metrics_bind: String,
}

impl Default for JobProcessConfig {
    fn default() -> Self {
        JobProcessConfig {
            job: rim_job::Config::default(),
            kafka: rim_queue::kafka::KafkaConfig::default(),
            comets: Vec::new(),
            routers: vec![RouterNode {
                name: "r1".into(),
                addr: "127.0.0.1:3129".into(),
            }],
            discovery_interval: Duration::from_secs(2),
            comet_ttl: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            metrics_bind: "0.0.0.0:3138".into(),
        }
    }
}

impl JobProcessConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError::Invalid;
        self.job
            .validate()
            .map_err(|e| Invalid(format!("[job] {e}")))?;
        if self.comets.is_empty() && self.routers.is_empty() {
            return Err(Invalid(
                "no comets: give [[comets]] or [[routers]] for discovery".into(),
            ));
        }
        Ok(())
    }
}

/// Consecutive failed health checks after which a known comet whose report
/// is stale is removed.
const FAILED_CHECKS_TO_LEAVE: u32 = 3;

/// How long a stale report whose comet did not answer is left unprobed.
const STALE_PROBE_BACKOFF: Duration = Duration::from_secs(10);

/// A gRPC client for comet `id` at `addr`, or `None` (logged) for a bad address.
fn comet_client(id: &str, addr: &str, timeout: Duration) -> Option<GrpcComet> {
    match GrpcComet::new(addr, timeout) {
        Ok(client) => Some(client),
        Err(e) => {
            warn!(server = %id, error = %e, "bad comet address");
            None
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The comets discovery pushes to, and what it remembers between rounds.
struct Discovery {
    job: Arc<rim_job::Job>,
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
    fn new(job: Arc<rim_job::Job>, connect_timeout: Duration) -> Discovery {
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
                if let Some(client) = comet_client(id, addr, self.connect_timeout) {
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
                if let Some(client) = comet_client(&id, &addr, self.connect_timeout) {
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

/// Keeps the job's comet set equal to static comets plus discovered ones:
/// a round every `discovery_interval`, and at once when a push names a comet
/// the job does not know. `first` fires after the first round that reached
/// the routers (at once without routers), so the consumer does not route
/// records before the comets are known.
async fn discover(
    job: Arc<rim_job::Job>,
    config: JobProcessConfig,
    first: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let mut first = Some(first);
    let router = if config.routers.is_empty() {
        None
    } else {
        match super::router_client(&config.routers, config.connect_timeout) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(error = %e, "comet discovery disabled");
                None
            }
        }
    };
    let mut discovery = Discovery::new(job.clone(), config.connect_timeout);
    loop {
        let mut fresh: HashMap<String, String> = config
            .comets
            .iter()
            .map(|c| (c.id.clone(), c.addr.clone()))
            .collect();
        let mut stale = HashMap::new();
        let mut discovered = true;
        if let Some(router) = &router {
            match router.online().await {
                Ok(reports) => {
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
            config.discovery_interval.min(Duration::from_millis(500))
        } else {
            config.discovery_interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = job.discovery_wanted() => {}
        }
    }
}

/// Runs job until `shutdown`: stops consuming, lets comets accept what is in
/// flight, commits offsets.
pub async fn run(
    config: JobProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let job = rim_job::Job::new(config.job.clone());
    let mut metrics_addr = None;
    if let Some(handle) = metrics {
        let m = super::bind(&config.metrics_bind).await?;
        metrics_addr = Some(m.local_addr()?.to_string());
        tokio::spawn(super::serve_metrics(m, handle, shutdown.clone()));
    }
    super::announce(ready, serde_json::json!({"metrics": metrics_addr}));
    let discovery_stop = CancellationToken::new();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let discovery = tokio::spawn(discover(
        job.clone(),
        config.clone(),
        first_tx,
        discovery_stop.clone(),
    ));
    // Records routed before the comets are known would find none: wait for
    // the first discovery round (retried while the routers are unreachable).
    let consumed = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        _ = first_rx => {
            info!(topic = %config.kafka.topic, group = %config.kafka.group, comets = job.comets().len(), "rim job consuming");
            match rim_queue::kafka::KafkaSource::new(&config.kafka) {
                Ok(source) => {
                    job.clone().consume(source, shutdown).await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    job.shutdown().await;
    discovery_stop.cancel();
    let _ = discovery.await;
    consumed?;
    info!("job stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rim_proto::pb::logic::{push_msg::Type, PushMsg};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(id, addr)| (id.to_string(), addr.to_string()))
            .collect()
    }

    fn discovery() -> Discovery {
        let job = rim_job::Job::new(rim_job::Config::default());
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
    async fn push_fails_at_once(job: &rim_job::Job, server: &str) -> bool {
        let msg = PushMsg {
            r#type: Type::Push as i32,
            operation: 1000,
            server: server.into(),
            keys: vec!["k".into()],
            ..PushMsg::default()
        };
        let start = tokio::time::Instant::now();
        let delivery = job.dispatch(msg).await.expect("routed");
        matches!(delivery.await, Err(rim_job::JobError::UnknownComet(_)))
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
