//! What the process runners share, so that `standalone` and each of
//! `process::*` depend on this module and on [`crate::config`], never on
//! each other: binding sockets ([`bind`], [`bind_comet`]), serving HTTP with
//! `/metrics` (`serve_http`, `serve_metrics`), the `READY` line
//! ([`announce`]), the TLS reload on SIGHUP (`reload_tls_on_sighup`), the
//! router client (`router_client`) and the start error ([`StartError`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RouterNode;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration was refused by a component.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A bound socket did not report its address.
    #[error("reading a listener address: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Binds the client listeners a comet configuration names (`tcp_bind`,
/// `ws_bind`, `tls_bind`, `wss_bind`), in that order.
pub async fn bind_comet(config: &rim_comet::Config) -> Result<rim_comet::Listeners, StartError> {
    let mut listeners = rim_comet::Listeners::default();
    for (addrs, bound) in [
        (&config.tcp_bind, &mut listeners.tcp),
        (&config.ws_bind, &mut listeners.ws),
        (&config.tls_bind, &mut listeners.tls),
        (&config.wss_bind, &mut listeners.wss),
    ] {
        for addr in addrs {
            bound.push(bind(addr).await?);
        }
    }
    Ok(listeners)
}

/// Serves `app` on `listener` until `stop`, with `GET /metrics` added when a
/// handle is given. Handlers see the peer's address (`ConnectInfo`): the
/// push API's loopback-only access (`logic.api`) depends on it.
pub(crate) async fn serve_http(
    mut app: axum::Router,
    listener: TcpListener,
    stop: CancellationToken,
    metrics: Option<PrometheusHandle>,
) -> std::io::Result<()> {
    if let Some(handle) = metrics {
        app = app.route("/metrics", get(move || std::future::ready(handle.render())));
    }
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// With a handle, binds `addr` and serves `GET /metrics` (Prometheus text)
/// there on a spawned task until `stop`; returns the bound address. Without
/// one, binds nothing.
pub(crate) async fn serve_metrics(
    addr: &str,
    metrics: Option<PrometheusHandle>,
    stop: CancellationToken,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(handle) = metrics else {
        return Ok(None);
    };
    let listener = bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let served = serve_http(axum::Router::new(), listener, stop, Some(handle)).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(Some(local))
}

/// Prints `READY {json}` on stdout (one line, flushed) with the bound
/// addresses, for scripts and tests that start rim on port 0.
pub fn announce(ready: bool, addrs: serde_json::Value) {
    if ready {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "READY {addrs}");
        let _ = out.flush();
    }
}

/// With TLS configured, reloads the comet's certificate on SIGHUP until
/// `stop`. Without TLS nothing is installed, so SIGHUP keeps its default
/// (ending the process) unless something else listens.
pub(crate) fn reload_tls_on_sighup(comet: &Arc<rim_comet::Comet>, stop: CancellationToken) {
    if !comet.has_tls() {
        return;
    }
    let comet = Arc::clone(comet);
    // The comet logs and counts the outcome.
    on_sighup("the tls certificate", stop, move || {
        let _ = comet.reload_tls();
    });
}

/// With a words file configured, reloads logic's word filter on SIGHUP and
/// whenever the file changes, until `stop`.
pub(crate) fn reload_filter(logic: &Arc<rim_logic::Logic>, stop: CancellationToken) {
    let filter = Arc::clone(logic.filter());
    if !filter.has_file() {
        return;
    }
    tokio::spawn(Arc::clone(&filter).watch(stop.clone()));
    on_sighup("the word filter", stop, move || match filter.reload() {
        Ok(words) => info!(words, "word filter reloaded"),
        Err(e) => warn!(error = %e, "word filter reload failed; the previous words stay"),
    });
}

/// Runs `reload` (off the runtime's worker threads: it reads files) on each
/// SIGHUP until `stop`.
fn on_sighup(
    what: &'static str,
    stop: CancellationToken,
    reload: impl Fn() + Send + Sync + 'static,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP: {what} reloads only when its files change");
            return;
        }
    };
    let reload = Arc::new(reload);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = hangup.recv() => if received.is_none() {
                    return;
                },
            }
            info!("SIGHUP received: reloading {what}");
            let reload = Arc::clone(&reload);
            if let Err(e) = tokio::task::spawn_blocking(move || reload()).await {
                warn!(error = %e, "{what} reload task failed");
            }
        }
    });
}

/// Loads the word filter once, so that a words file that cannot be read
/// stops the start with that error.
pub(crate) fn check_filter(config: &rim_logic::Config) -> Result<(), StartError> {
    rim_logic::WordFilter::load(&config.chat.filter)
        .map(drop)
        .map_err(|e| StartError::Config(format!("[logic.chat.filter] {e}")))
}

/// The sharded registry client over the router nodes (`rim router`
/// processes, or their Redis directly); `timeout` bounds connecting and
/// every call.
pub(crate) fn router_client(
    nodes: &[RouterNode],
    timeout: Duration,
) -> Result<rim_router::Router, String> {
    let mut shards: Vec<(String, Arc<dyn rim_router::SessionStore>)> = Vec::new();
    for node in nodes {
        let target = node.redis_target().map_err(|e| e.to_string())?;
        let store: Arc<dyn rim_router::SessionStore> = match target {
            // The shard's Redis itself: no router process on the path.
            Some(target) => Arc::new(
                rim_router::RedisStore::with_target(&target, node.expire, timeout)
                    .map_err(|e| format!("[[routers]] {:?}: {e}", node.name))?,
            ),
            None => Arc::new(
                rim_router::grpc::RemoteStore::new(&node.addr, timeout)
                    .map_err(|e| e.to_string())?,
            ),
        };
        shards.push((node.name.clone(), store));
    }
    rim_router::Router::new(shards).map_err(|e| e.to_string())
}

/// The mailbox Redis of `[mailbox]`, connected, or `None` when stored
/// messages are off. Warns when Redis may lose acknowledged writes: without
/// `appendonly yes` and `appendfsync always` a Redis crash can roll a
/// mailbox back (clients then get `complete: false` only if its state was
/// lost entirely).
pub async fn mailbox_store(
    config: &crate::config::ProcessMailbox,
) -> anyhow::Result<Option<std::sync::Arc<rim_mailbox::RedisStore>>> {
    let Some(target) = config.target()? else {
        return Ok(None);
    };
    let store = rim_mailbox::RedisStore::connect_to(
        &target,
        &config.prefix,
        config.retention.clone(),
        config.redis_timeout,
    )
    .await
    .map_err(|e| anyhow::anyhow!("[mailbox] {target}: {e}"))?
    .wait_replicas(config.redis_wait_replicas, config.redis_wait_timeout);
    match store.durability().await {
        Ok(durability) if durability.is_durable() => {
            tracing::info!(%durability, "mailbox redis is durable");
        }
        Ok(durability) => tracing::warn!(
            %durability,
            "mailbox redis may lose acknowledged messages on a crash: \
             set appendonly yes and appendfsync always"
        ),
        Err(e) => tracing::warn!(error = %e, "mailbox redis durability unknown"),
    }
    Ok(Some(std::sync::Arc::new(store)))
}
