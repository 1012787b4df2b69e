//! `rim logic`: the HTTP push API and the logic gRPC service for comets;
//! publishes pushes to Kafka and keeps sessions in the router shards.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::RouterNode;

/// `logic.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogicProcessConfig {
    /// HTTP API, nodes, online aggregation (`[logic]`).
    pub logic: rim_logic::Config,
    /// gRPC listen address for comets. Default `0.0.0.0:3119`.
    pub grpc_bind: String,
    /// Router shards (`[[routers]]`). Default one at `127.0.0.1:3129` named `r1`.
    pub routers: Vec<RouterNode>,
    /// Deadline of every router call. Default 2s.
    #[serde(with = "humantime_serde")]
    pub router_timeout: Duration,
    /// The push topic (`[kafka]`).
    pub kafka: rim_logic::kafka::KafkaConfig,
}

impl Default for LogicProcessConfig {
    fn default() -> Self {
        LogicProcessConfig {
            logic: rim_logic::Config::default(),
            grpc_bind: "0.0.0.0:3119".into(),
            routers: vec![RouterNode {
                name: "r1".into(),
                addr: "127.0.0.1:3129".into(),
            }],
            router_timeout: Duration::from_secs(2),
            kafka: rim_logic::kafka::KafkaConfig::default(),
        }
    }
}

impl LogicProcessConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError::Invalid;
        self.logic
            .validate()
            .map_err(|e| Invalid(format!("[logic] {e}")))?;
        if self.routers.is_empty() {
            return Err(Invalid("at least one [[routers]] entry is required".into()));
        }
        if self.kafka.brokers.is_empty() {
            return Err(Invalid("[kafka] brokers must not be empty".into()));
        }
        Ok(())
    }
}

/// Runs logic until `shutdown`.
pub async fn run(
    config: LogicProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let router =
        super::router_client(&config.routers, config.router_timeout).map_err(anyhow::Error::msg)?;
    let queue = rim_logic::kafka::KafkaQueue::new(&config.kafka)?;
    if config.kafka.create_topic {
        if let Err(e) = queue.ensure_topic(&config.kafka).await {
            tracing::warn!(error = %e, topic = %config.kafka.topic, "could not create the push topic; assuming it exists");
        }
    }
    let logic = rim_logic::Logic::new(config.logic.clone(), router, Arc::new(queue));
    let http = super::bind(&config.logic.http_bind).await?;
    let grpc = super::bind(&config.grpc_bind).await?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
    info!(http = %http_addr, grpc = %grpc_addr, "rim logic listening");
    super::announce(
        ready,
        serde_json::json!({"http": http_addr.to_string(), "grpc": grpc_addr.to_string()}),
    );

    let mut app = rim_logic::http::router(logic.clone());
    if let Some(handle) = metrics {
        app = app.route("/metrics", get(move || std::future::ready(handle.render())));
    }
    let http_task = tokio::spawn({
        let stop = shutdown.clone();
        async move {
            axum::serve(http, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });
    rim_logic::grpc::serve(logic, grpc, shutdown).await?;
    http_task.await??;
    info!("logic stopped");
    Ok(())
}
