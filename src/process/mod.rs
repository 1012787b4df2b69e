//! The distributed mode: each component in its own process, connected the
//! way goim connects them.
//!
//! ```text
//! HTTP -> logic --Kafka--> job --gRPC goim.comet.Comet--> comet <-- clients
//!           |  ^                                           |
//!           |  +--------- gRPC goim.logic.Logic -----------+
//!           +--gRPC rim.router.Router--> router shards (memory or Redis)
//! ```
//!
//! One module per process: [`logic`], [`router`], [`job`], [`comet`]. Each
//! has a TOML configuration (examples in `config/`) and a `run` function
//! that serves until its shutdown token is cancelled. Comets register
//! through their online reports (carrying their gRPC address) in the router
//! shards; job discovers them there.

pub mod comet;
pub mod job;
pub mod logic;
pub mod router;

use std::time::Duration;

use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A router shard as logic and job address it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterNode {
    /// The shard's name on the consistent-hash ring. Keep names stable:
    /// users are placed by name, not by address.
    pub name: String,
    /// gRPC address (`host:port`).
    pub addr: String,
}

/// Builds the sharded registry client over remote router nodes.
pub fn router_client(
    nodes: &[RouterNode],
    timeout: Duration,
) -> Result<rim_router::Router, String> {
    let mut shards: Vec<(String, std::sync::Arc<dyn rim_router::SessionStore>)> = Vec::new();
    for node in nodes {
        let store =
            rim_router::grpc::RemoteStore::new(&node.addr, timeout).map_err(|e| e.to_string())?;
        shards.push((node.name.clone(), std::sync::Arc::new(store)));
    }
    rim_router::Router::new(shards).map_err(|e| e.to_string())
}

/// Serves `GET /metrics` (Prometheus text) on `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) {
    let app =
        axum::Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics endpoint failed");
    }
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: &str) -> Result<TcpListener, crate::standalone::StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| crate::standalone::StartError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Prints `READY {json}` on stdout (one line, flushed) with the bound
/// addresses, for scripts and tests that start rim processes on port 0.
pub fn announce(ready: bool, addrs: serde_json::Value) {
    if ready {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "READY {addrs}");
        let _ = out.flush();
    }
}

/// Reads a TOML file into `T`, naming the file in errors.
pub fn load<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, crate::config::ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| crate::config::ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
    toml::from_str(&text).map_err(|source| crate::config::ConfigError::Parse {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configs_parse_and_validate() {
        let logic: logic::LogicProcessConfig =
            toml::from_str(include_str!("../../config/logic.example.toml")).unwrap();
        logic.validate().unwrap();
        assert_eq!(logic.routers, logic::LogicProcessConfig::default().routers);
        let router: router::RouterProcessConfig =
            toml::from_str(include_str!("../../config/router.example.toml")).unwrap();
        router.validate().unwrap();
        assert_eq!(router.store, "redis");
        let job: job::JobProcessConfig =
            toml::from_str(include_str!("../../config/job.example.toml")).unwrap();
        job.validate().unwrap();
        assert!(job.comets.is_empty());
        let comet: comet::CometProcessConfig =
            toml::from_str(include_str!("../../config/comet.example.toml")).unwrap();
        comet.validate().unwrap();
        assert_eq!(comet.comet, rim_comet::Config::default());
    }

    #[test]
    fn empty_files_are_the_defaults() {
        let logic: logic::LogicProcessConfig = toml::from_str("").unwrap();
        assert_eq!(logic.grpc_bind, "0.0.0.0:3119");
        let job: job::JobProcessConfig = toml::from_str("").unwrap();
        job.validate().unwrap();
        let router: router::RouterProcessConfig = toml::from_str("").unwrap();
        assert_eq!(router.store, "memory");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<router::RouterProcessConfig>("stroe = \"redis\"").is_err());
        let bad_store: router::RouterProcessConfig = toml::from_str("store = \"etcd\"").unwrap();
        assert!(bad_store.validate().is_err());
    }
}

#[cfg(test)]
mod deploy_tests {
    use super::*;

    /// The docker-compose configs must parse too, even though compose cannot run here.
    #[test]
    fn deploy_configs_parse_and_validate() {
        let logic: logic::LogicProcessConfig =
            toml::from_str(include_str!("../../deploy/logic.toml")).unwrap();
        logic.validate().unwrap();
        assert_eq!(logic.routers.len(), 2);
        let router: router::RouterProcessConfig =
            toml::from_str(include_str!("../../deploy/router.toml")).unwrap();
        router.validate().unwrap();
        let job: job::JobProcessConfig =
            toml::from_str(include_str!("../../deploy/job.toml")).unwrap();
        job.validate().unwrap();
        for text in [
            include_str!("../../deploy/comet1.toml"),
            include_str!("../../deploy/comet2.toml"),
        ] {
            let comet: comet::CometProcessConfig = toml::from_str(text).unwrap();
            comet.validate().unwrap();
            assert!(comet.grpc_addr.is_some());
        }
    }
}
