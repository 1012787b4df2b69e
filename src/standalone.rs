//! `rim standalone`: logic, router, job and comet in one process.
//!
//! No Kafka, no Redis: logic publishes into a bounded in-process queue
//! ([`rim_queue::InProcessQueue`]) that the job consumes, the router is the
//! in-memory store, job pushes into the comet by direct calls and the comet
//! calls logic directly. Everything above those seams is the same code the
//! distributed mode runs.
//!
//! Mailboxes live in the embedded store ([`rim_mailbox::RedbStore`]) in the
//! data directory (`[mailbox]`, `--data`): logic appends a stored push there
//! and answers once it is fsynced.
//!
//! logic answers online counts (`/goim/online/*`, `/1/count`) from the
//! comet's live state rather than from its periodic reports.
//!
//! The HTTP port also serves the web pages ([`crate::web`]) unless
//! `[web] enabled = false`.
//!
//! Shutdown order: stop the HTTP API (no new pushes), let job drain the queue
//! into the comet, then close client connections.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{StandaloneConfig, StoreKind, Validate};
use crate::local::{LocalComet, LocalCometOnline, LocalLogic};
use crate::wiring::{self, StartError};

/// Sockets bound before start, so that tests can bind port 0.
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP push API.
    pub http: TcpListener,
    /// Client listeners (TCP and WebSocket, plain and TLS).
    pub comet: rim_comet::Listeners,
}

/// Binds every listener the configuration names.
pub async fn bind(config: &StandaloneConfig) -> Result<Listeners, StartError> {
    let comet = wiring::bind_comet(&config.comet).await?;
    let http = wiring::bind(&config.logic.http_bind).await?;
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

        wiring::check_filter(&config.logic)?;
        let router = rim_router::Router::memory(&config.router);
        let (queue, queue_rx) =
            rim_queue::InProcessQueue::new(config.queue.capacity, config.queue.timeout);
        let queue = Arc::new(queue);
        let logic = match open_mailbox(&config).await? {
            Some(mailbox) => {
                rim_logic::Logic::with_mailbox(config.logic.clone(), router, queue, mailbox)
            }
            None => rim_logic::Logic::new(config.logic.clone(), router, queue),
        };
        let comet =
            rim_comet::Comet::new(config.comet.clone(), Arc::new(LocalLogic(logic.clone())))
                .map_err(|e| StartError::Config(e.to_string()))?;
        // One process: the online answers read the comet's live counts.
        logic.set_local_online(Arc::new(LocalCometOnline(Arc::downgrade(&comet))));
        let job = rim_job::Job::new(config.job.clone());
        job.add_comet(
            comet.server_id(),
            Arc::new(LocalComet(Arc::clone(comet.hub()))),
        );

        let mut app = rim_logic::http::app(logic.clone());
        if config.web.enabled {
            app = crate::web::routes(app);
            info!(admin = %format!("http://{http_addr}/admin/"), demo = %format!("http://{http_addr}/demo/"), "web pages");
        }

        let shutdown = CancellationToken::new();
        let http_stop = CancellationToken::new();
        let job_stop = CancellationToken::new();
        let comet_stop = CancellationToken::new();

        let http_task = tokio::spawn({
            let served = wiring::serve_http(app, listeners.http, http_stop.clone(), metrics);
            async move {
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "http server failed");
                }
            }
        });
        // The offline hook's watcher (a no-op when the hook is off) stops with the HTTP API.
        let hooks_task = tokio::spawn(logic.clone().run_hooks(http_stop.clone()));
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

        wiring::reload_tls_on_sighup(&comet, shutdown.clone());
        wiring::reload_filter(&logic, shutdown.clone());
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
                let _ = hooks_task.await;
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

/// The mailbox store `[mailbox]` names, opened (the embedded one creates
/// its data directory).
async fn open_mailbox(config: &StandaloneConfig) -> Result<Option<rim_logic::Mailbox>, StartError> {
    let section = &config.mailbox;
    let retention = section.retention.clone();
    Ok(match section.store {
        StoreKind::Redb => {
            let store = rim_mailbox::RedbStore::open(&section.data, retention)
                .await
                .map_err(|e| StartError::Config(format!("[mailbox] {e}")))?;
            info!(data = %section.data.display(), "mailboxes in the embedded store");
            Some(rim_logic::Mailbox::direct(Arc::new(store)))
        }
        StoreKind::Memory => {
            tracing::warn!("mailboxes in memory ([mailbox] store = \"memory\"): stored messages are lost at exit");
            Some(rim_logic::Mailbox::direct(Arc::new(
                rim_mailbox::MemoryStore::new(retention),
            )))
        }
        StoreKind::None => None,
    })
}

fn addrs(listeners: &[TcpListener]) -> std::io::Result<Vec<SocketAddr>> {
    listeners.iter().map(TcpListener::local_addr).collect()
}
