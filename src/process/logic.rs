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
    pub kafka: rim_queue::kafka::KafkaConfig,
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
            kafka: rim_queue::kafka::KafkaConfig::default(),
        }
    }
}

impl LogicProcessConfig {
    /// `[logic]` with the defaults of an exposed logic filled in: JWT client
    /// tokens and a push API that requires bearer tokens, unless the file
    /// says `mode = "trust"` / `open = true` explicitly.
    pub fn effective_logic(&self) -> rim_logic::Config {
        self.logic.clone().secure_defaults()
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError::Invalid;
        self.effective_logic()
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
    let queue = Arc::new(rim_queue::kafka::KafkaQueue::new(&config.kafka)?);
    if config.kafka.create_topic {
        // A broker that is down at start must not keep logic from starting:
        // pushes answer 503 until it is up, and the topic is created then.
        let (queue, kafka, stop) = (queue.clone(), config.kafka.clone(), shutdown.clone());
        tokio::spawn(async move { queue.ensure_topic_retrying(&kafka, stop).await });
    }
    let logic = rim_logic::Logic::new(config.effective_logic(), router, queue);
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
            // The peer address decides loopback-only access (logic.api).
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LogicProcessConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn an_exposed_logic_refuses_to_start_without_a_key_or_a_token() {
        let err = parse("").validate().unwrap_err().to_string();
        assert!(err.contains("auth.secret"), "{err}");
        let err = parse("[logic.auth]\nsecret = \"s3cret\"\n")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("open = true"), "{err}");
        let secure = parse("[logic.auth]\nsecret = \"s3cret\"\n[logic.api]\ntokens = [\"t\"]\n");
        secure.validate().unwrap();
        let logic = secure.effective_logic();
        assert_eq!(logic.auth.mode(), rim_logic::AuthMode::Jwt);
        assert_eq!(logic.api.access(), rim_logic::ApiAccess::Tokens);
    }

    #[test]
    fn goims_open_behaviour_must_be_asked_for() {
        let open = parse("[logic.auth]\nmode = \"trust\"\n[logic.api]\nopen = true\n");
        open.validate().unwrap();
        let logic = open.effective_logic();
        assert_eq!(logic.auth.mode(), rim_logic::AuthMode::Trust);
        assert_eq!(logic.api.access(), rim_logic::ApiAccess::Open);
        // Standalone's library defaults stay goim's.
        let standalone = rim_logic::Config::default();
        assert_eq!(standalone.auth.mode(), rim_logic::AuthMode::Trust);
        assert_eq!(standalone.api.access(), rim_logic::ApiAccess::Loopback);
    }
}
