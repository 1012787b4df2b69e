//! `rim job`: consumes the push topic and fans records out to comets over
//! gRPC. Comets come from a static list and from discovery: the comets'
//! online reports in the router shards carry their gRPC address, and a comet
//! whose report is older than `comet_ttl` is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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
    pub kafka: rim_job::kafka::KafkaConfig,
    /// Comets always pushed to (`[[comets]]`). Default none.
    pub comets: Vec<StaticComet>,
    /// Router shards to discover comets from (`[[routers]]`). Default one at
    /// `127.0.0.1:3129`; empty disables discovery.
    pub routers: Vec<RouterNode>,
    /// How often discovery looks for joins and leaves. Default 2s.
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// A comet whose last report is older than this is gone. Default 30s.
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
            kafka: rim_job::kafka::KafkaConfig::default(),
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

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
    let mut known: HashMap<String, String> = HashMap::new();
    loop {
        let mut desired: HashMap<String, String> = config
            .comets
            .iter()
            .map(|c| (c.id.clone(), c.addr.clone()))
            .collect();
        let mut discovered = true;
        if let Some(router) = &router {
            match router.online().await {
                Ok(reports) => {
                    let oldest = now_secs() - config.comet_ttl.as_secs() as i64;
                    for r in reports {
                        if r.updated >= oldest && !r.grpc_addr.is_empty() {
                            desired.entry(r.server).or_insert(r.grpc_addr);
                        }
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
            for (id, addr) in &desired {
                if known.get(id) != Some(addr) {
                    match rim_job::grpc::GrpcComet::new(addr, config.connect_timeout) {
                        Ok(client) => {
                            info!(server = %id, addr = %addr, "comet joined");
                            job.add_comet(id, Arc::new(client));
                            known.insert(id.clone(), addr.clone());
                        }
                        Err(e) => warn!(server = %id, error = %e, "bad comet address"),
                    }
                }
            }
            let gone: Vec<String> = known
                .keys()
                .filter(|id| !desired.contains_key(*id))
                .cloned()
                .collect();
            for id in gone {
                info!(server = %id, "comet left");
                job.remove_comet(&id);
                known.remove(&id);
            }
            metrics::gauge!("rim_job_comets").set(known.len() as f64);
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
            rim_job::kafka::consume(job.clone(), config.kafka.clone(), shutdown).await
        }
    };
    job.shutdown().await;
    discovery_stop.cancel();
    let _ = discovery.await;
    consumed?;
    info!("job stopped");
    Ok(())
}
