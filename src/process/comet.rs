//! `rim comet`: client connections (TCP, WebSocket, both also over TLS), the
//! comet push service for job (gRPC), and calls to logic over gRPC. With TLS
//! configured, SIGHUP reloads the certificate.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{CometProcessConfig, Validate};
use crate::wiring;

/// Runs a comet until `shutdown`.
pub async fn run(
    config: CometProcessConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let grpc = wiring::bind(&config.grpc_bind).await?;
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
    let listeners = wiring::bind_comet(&comet_config).await?;
    let metrics_addr = wiring::serve_metrics(&config.metrics_bind, metrics, shutdown.clone())
        .await?
        .map(|addr| addr.to_string());
    let addrs = |ls: &[tokio::net::TcpListener]| -> Vec<String> {
        ls.iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect()
    };
    wiring::announce(
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
    wiring::reload_tls_on_sighup(&comet, shutdown.clone());
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
