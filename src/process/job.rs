//! `rim job`: consumes the push topic and fans records out to comets over
//! gRPC. Comets come from a static list and from discovery
//! ([`rim_job::discovery`]): the comets' online reports in the router shards
//! carry their gRPC address.

use std::time::Duration;

use rim_job::discovery::{DiscoveryConfig, StaticComet};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::RouterNode;

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
    /// The discovery settings.
    pub fn discovery(&self) -> DiscoveryConfig {
        DiscoveryConfig {
            comets: self.comets.clone(),
            interval: self.discovery_interval,
            comet_ttl: self.comet_ttl,
            connect_timeout: self.connect_timeout,
        }
    }

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
    let routers = if config.routers.is_empty() {
        None
    } else {
        match super::router_client(&config.routers, config.connect_timeout) {
            Ok(routers) => Some(routers),
            Err(e) => {
                warn!(error = %e, "comet discovery disabled");
                None
            }
        }
    };
    let discovery = tokio::spawn(rim_job::discovery::discover(
        job.clone(),
        routers,
        config.discovery(),
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
