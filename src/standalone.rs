//! `rim standalone`: logic, router, job and comet in one process.
//!
//! No Kafka, no Redis: logic publishes into a bounded in-process queue
//! ([`rim_queue::InProcessQueue`]) that the job consumes, the router is the
//! in-memory store, job pushes into the comet by direct calls and the comet
//! calls logic directly. Everything above those seams is the same code the
//! distributed mode runs.
//!
//! Shutdown order: stop the HTTP API (no new pushes), let job drain the queue
//! into the comet, then close client connections.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::StandaloneConfig;
use crate::local::{LocalComet, LocalLogic};

/// Sockets bound before start, so that tests can bind port 0.
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP push API.
    pub http: TcpListener,
    /// Client listeners (TCP and WebSocket, plain and TLS).
    pub comet: rim_comet::Listeners,
}

/// Why the server could not start.
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
    /// A comet listener could not be bound (the message names the address).
    #[error("{0}")]
    BindListener(std::io::Error),
    /// A bound socket did not report its address.
    #[error("reading a listener address: {0}")]
    Io(#[from] std::io::Error),
}

async fn bind_one(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Binds the client listeners a comet configuration names.
pub async fn bind_comet(config: &rim_comet::Config) -> Result<rim_comet::Listeners, StartError> {
    rim_comet::Listeners::bind(config)
        .await
        .map_err(StartError::BindListener)
}

/// With TLS configured, reloads the comet's certificate on SIGHUP until
/// `stop`. Without TLS nothing is installed, so SIGHUP keeps its default
/// (ending the process).
pub(crate) fn reload_tls_on_sighup(comet: &Arc<rim_comet::Comet>, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    if !comet.has_tls() {
        return;
    }
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP: the tls certificate reloads only when its files change");
            return;
        }
    };
    let comet = Arc::clone(comet);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = hangup.recv() => if received.is_none() {
                    return;
                },
            }
            info!("SIGHUP received: reloading the tls certificate");
            let comet = Arc::clone(&comet);
            // Reads the files: off the runtime's worker threads. The comet
            // logs and counts the outcome.
            let reload = tokio::task::spawn_blocking(move || comet.reload_tls());
            if let Err(e) = reload.await {
                warn!(error = %e, "tls certificate reload task failed");
            }
        }
    });
}

/// Binds every listener the configuration names.
pub async fn bind(config: &StandaloneConfig) -> Result<Listeners, StartError> {
    let comet = bind_comet(&config.comet).await?;
    let http = bind_one(&config.logic.http_bind).await?;
    Ok(Listeners { http, comet })
}

/// A running standalone server.
#[derive(Debug)]
pub struct Standalone {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where TCP clients connect.
    pub tcp_addrs: Vec<SocketAddr>,
    /// Where WebSocket clients connect (path `/sub`).
    pub ws_addrs: Vec<SocketAddr>,
    /// Where goim-over-TLS clients connect (empty unless `tls_bind` is set).
    pub tls_addrs: Vec<SocketAddr>,
    /// Where WSS clients connect (path `/sub`; empty unless `wss_bind` is set).
    pub wss_addrs: Vec<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Standalone {
    /// Starts every component on the given listeners.
    /// `metrics`: when given, `GET /metrics` on the HTTP port renders it.
    pub async fn start(
        config: StandaloneConfig,
        listeners: Listeners,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Standalone, StartError> {
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let http_addr = listeners.http.local_addr()?;
        let tcp_addrs = addrs(&listeners.comet.tcp)?;
        let ws_addrs = addrs(&listeners.comet.ws)?;
        let tls_addrs = addrs(&listeners.comet.tls)?;
        let wss_addrs = addrs(&listeners.comet.wss)?;

        let router = rim_router::Router::memory(&config.router);
        let (queue, queue_rx) =
            rim_queue::InProcessQueue::new(config.queue.capacity, config.queue.timeout);
        let logic = rim_logic::Logic::new(config.logic.clone(), router, Arc::new(queue));
        let comet =
            rim_comet::Comet::new(config.comet.clone(), Arc::new(LocalLogic(logic.clone())))
                .map_err(|e| StartError::Config(e.to_string()))?;
        let job = rim_job::Job::new(config.job.clone());
        job.add_comet(
            comet.server_id(),
            Arc::new(LocalComet(Arc::clone(comet.hub()))),
        );

        let mut app = rim_logic::http::router(logic);
        if let Some(handle) = metrics {
            app = app.route("/metrics", get(move || std::future::ready(handle.render())));
        }

        let shutdown = CancellationToken::new();
        let http_stop = CancellationToken::new();
        let job_stop = CancellationToken::new();
        let comet_stop = CancellationToken::new();

        let http_task = tokio::spawn({
            let stop = http_stop.clone();
            async move {
                // The peer address decides loopback-only access (logic.api).
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let served = axum::serve(listeners.http, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "http server failed");
                }
            }
        });
        let job_task = tokio::spawn(job.clone().consume(queue_rx, job_stop.clone()));
        let comet_task = tokio::spawn({
            let comet = comet.clone();
            let stop = comet_stop.clone();
            async move {
                if let Err(e) = comet.serve(listeners.comet, stop).await {
                    tracing::error!(error = %e, "comet failed");
                }
            }
        });

        reload_tls_on_sighup(&comet, shutdown.clone());
        info!(
            http = %http_addr,
            tcp = ?tcp_addrs,
            ws = ?ws_addrs,
            tls = ?tls_addrs,
            wss = ?wss_addrs,
            server_id = comet.server_id(),
            "rim standalone listening"
        );

        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                info!("shutting down: http api");
                http_stop.cancel();
                let _ = http_task.await;
                info!("shutting down: draining push queue");
                job_stop.cancel();
                let _ = job_task.await;
                info!("shutting down: client connections");
                comet_stop.cancel();
                let _ = comet_task.await;
                info!("shutdown complete");
            }
        });

        Ok(Standalone {
            http_addr,
            tcp_addrs,
            ws_addrs,
            tls_addrs,
            wss_addrs,
            shutdown,
            task,
        })
    }

    /// Binds the configured addresses and starts.
    pub async fn bind_and_start(
        config: StandaloneConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Standalone, StartError> {
        let listeners = bind(&config).await?;
        Standalone::start(config, listeners, metrics).await
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the server and waits until every component finished.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server was stopped through [`Standalone::shutdown_token`].
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn addrs(listeners: &[TcpListener]) -> std::io::Result<Vec<SocketAddr>> {
    listeners.iter().map(TcpListener::local_addr).collect()
}
