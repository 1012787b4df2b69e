//! `rim router`: one shard of the session registry, served over gRPC, stored
//! in memory or in Redis (goim's key layout; survives router restarts).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{RouterProcessConfig, Validate};
use crate::wiring;

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
            let target = config.redis_target()?;
            info!(redis = %target, "router store in redis");
            let store = rim_router::RedisStore::with_target(
                &target,
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
    let listener = wiring::bind(&config.grpc_bind).await?;
    let metrics_addr = wiring::serve_metrics(&config.metrics_bind, metrics, shutdown.clone())
        .await?
        .map(|addr| addr.to_string());
    let grpc_addr = listener.local_addr()?;
    info!(grpc = %grpc_addr, store = %config.store, "rim router listening");
    wiring::announce(
        ready,
        serde_json::json!({"grpc": grpc_addr.to_string(), "metrics": metrics_addr}),
    );
    rim_router::grpc::serve(store, listener, shutdown).await?;
    info!("router stopped");
    Ok(())
}
