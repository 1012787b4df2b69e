//! `rim comet`: client connections (TCP, WebSocket, both also over TLS), the
//! comet push service for job (gRPC), and calls to logic over gRPC. With TLS
//! configured, SIGHUP reloads the certificate.

use std::sync::Arc;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// `comet.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CometProcessConfig {
    /// Listeners, timeouts, buckets, queues (`[comet]`).
    pub comet: rim_comet::Config,
    /// gRPC listen address for job. Default `0.0.0.0:3109`.
    pub grpc_bind: String,
    /// The gRPC address job should dial, reported with the online counts.
    /// Default: `grpc_bind` with an unspecified host replaced by 127.0.0.1;
    /// set it to a routable address in production.
    pub grpc_addr: Option<String>,
    /// logic gRPC addresses. Default `["127.0.0.1:3119"]`.
    pub logic_addrs: Vec<String>,
    /// Prometheus `/metrics` listen address. Default `0.0.0.0:3108`.
    pub metrics_bind: String,
}

impl Default for CometProcessConfig {
    fn default() -> Self {
        CometProcessConfig {
            comet: rim_comet::Config::default(),
            grpc_bind: "0.0.0.0:3109".into(),
            grpc_addr: None,
            logic_addrs: vec!["127.0.0.1:3119".into()],
            metrics_bind: "0.0.0.0:3108".into(),
        }
    }
}

impl CometProcessConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError::Invalid;
        self.comet
            .validate()
            .map_err(|e| Invalid(format!("[comet] {e}")))?;
        if self.logic_addrs.is_empty() {
            return Err(Invalid("logic_addrs must not be empty".into()));
        }
        Ok(())
    }
}

/// Runs a comet until `shutdown`.
pub async fn run(
    config: CometProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let grpc = super::bind(&config.grpc_bind).await?;
    let grpc_local = grpc.local_addr()?;
    let advertised = config.grpc_addr.clone().unwrap_or_else(|| {
        let host = if grpc_local.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            grpc_local.ip().to_string()
        };
        format!("{host}:{}", grpc_local.port())
    });
    let mut comet_config = config.comet.clone();
    comet_config.grpc_addr = advertised.clone();
    let logic = rim_comet::grpc::GrpcLogic::new(&config.logic_addrs, comet_config.logic_timeout)?;
    let comet = rim_comet::Comet::new(comet_config.clone(), Arc::new(logic))?;
    let listeners = crate::standalone::bind_comet(&comet_config).await?;
    let mut metrics_addr = None;
    if let Some(handle) = metrics {
        let m = super::bind(&config.metrics_bind).await?;
        metrics_addr = Some(m.local_addr()?.to_string());
        tokio::spawn(super::serve_metrics(m, handle, shutdown.clone()));
    }
    let addrs = |ls: &[tokio::net::TcpListener]| -> Vec<String> {
        ls.iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect()
    };
    super::announce(
        ready,
        serde_json::json!({
            "server_id": comet.server_id(),
            "grpc": grpc_local.to_string(),
            "tcp": addrs(&listeners.tcp),
            "ws": addrs(&listeners.ws),
            "tls": addrs(&listeners.tls),
            "wss": addrs(&listeners.wss),
            "metrics": metrics_addr,
        }),
    );
    info!(
        server_id = comet.server_id(),
        grpc = %grpc_local,
        advertised = %advertised,
        tcp = ?comet_config.tcp_bind,
        ws = ?comet_config.ws_bind,
        tls = ?comet_config.tls_bind,
        wss = ?comet_config.wss_bind,
        "rim comet listening"
    );
    crate::standalone::reload_tls_on_sighup(&comet, shutdown.clone());
    let grpc_stop = CancellationToken::new();
    let grpc_task = tokio::spawn(rim_comet::grpc::serve(
        comet.clone(),
        grpc,
        grpc_stop.clone(),
    ));
    comet.serve(listeners, shutdown).await?;
    grpc_stop.cancel();
    grpc_task.await??;
    info!("comet stopped");
    Ok(())
}
