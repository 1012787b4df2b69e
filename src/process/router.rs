//! `rim router`: one shard of the session registry, served over gRPC, stored
//! in memory or in Redis (goim's key layout; survives router restarts).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// `router.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterProcessConfig {
    /// gRPC listen address. Default `0.0.0.0:3129`.
    pub grpc_bind: String,
    /// Prometheus `/metrics` listen address. Default `0.0.0.0:3128`.
    pub metrics_bind: String,
    /// `"memory"` or `"redis"`. Default `"memory"`.
    pub store: String,
    /// Redis URL when `store = "redis"`. Default `redis://127.0.0.1:6379/`.
    pub redis_url: String,
    /// Deadline of every Redis command. Default 2s.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Session TTLs.
    pub registry: rim_router::Config,
}

impl Default for RouterProcessConfig {
    fn default() -> Self {
        RouterProcessConfig {
            grpc_bind: "0.0.0.0:3129".into(),
            metrics_bind: "0.0.0.0:3128".into(),
            store: "memory".into(),
            redis_url: "redis://127.0.0.1:6379/".into(),
            redis_timeout: Duration::from_secs(2),
            registry: rim_router::Config::default(),
        }
    }
}

impl RouterProcessConfig {
    /// Checks the store choice.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        match self.store.as_str() {
            "memory" | "redis" => Ok(()),
            other => Err(crate::config::ConfigError::Invalid(format!(
                "store must be \"memory\" or \"redis\", not {other:?}"
            ))),
        }
    }
}

/// Runs one router shard until `shutdown`.
pub async fn run(
    config: RouterProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let store: Arc<dyn rim_router::SessionStore> = match config.store.as_str() {
        "redis" => {
            let store = rim_router::RedisStore::new(
                &config.redis_url,
                config.registry.expire,
                config.redis_timeout,
            )?;
            if let Err(e) = store.ping().await {
                tracing::warn!(error = %e, "redis not reachable yet; retrying in the background");
            }
            Arc::new(store)
        }
        _ => Arc::new(rim_router::MemoryStore::new(config.registry.expire)),
    };
    let listener = super::bind(&config.grpc_bind).await?;
    let mut metrics_addr = None;
    if let Some(handle) = metrics {
        let m = super::bind(&config.metrics_bind).await?;
        metrics_addr = Some(m.local_addr()?.to_string());
        tokio::spawn(super::serve_metrics(m, handle, shutdown.clone()));
    }
    let grpc_addr = listener.local_addr()?;
    info!(grpc = %grpc_addr, store = %config.store, "rim router listening");
    super::announce(
        ready,
        serde_json::json!({"grpc": grpc_addr.to_string(), "metrics": metrics_addr}),
    );
    rim_router::grpc::serve(store, listener, shutdown).await?;
    info!("router stopped");
    Ok(())
}
