//! [`Comet`]: the node itself. Owns the listeners and their accept loops,
//! the online report (`online`) and shutdown; builds the [`Hub`] (sessions
//! and push operations) and the context every connection runs with.
//!
//! It does not own the gRPC service (`grpc` wraps the hub's methods), what
//! happens on one connection (`conn`), nor loading and watching the TLS
//! certificate (`tls`; the comet holds it and starts the watch).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::conn::{self, ConnCtx, Transport};
use crate::error::CometConfigError;
use crate::hub::Hub;
use crate::logic::LogicClient;
use crate::metrics;
use crate::online::Reporter;
use crate::session::Closed;
use crate::tls::{self, Tls};

/// First and largest pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The listeners a comet serves, bound by the caller (the binary binds the
/// config's `tcp_bind`, `ws_bind`, `tls_bind` and `wss_bind`; tests bind
/// `127.0.0.1:0`).
#[derive(Debug, Default)]
pub struct Listeners {
    /// Raw TCP goim listeners.
    pub tcp: Vec<TcpListener>,
    /// WebSocket listeners (path `/sub`).
    pub ws: Vec<TcpListener>,
    /// Raw TCP goim over TLS; needs `tls_cert` and `tls_key` in the config.
    pub tls: Vec<TcpListener>,
    /// WebSocket over TLS (path `/sub`); needs `tls_cert` and `tls_key`.
    pub wss: Vec<TcpListener>,
}

/// A comet node: listeners feeding connections into a [`Hub`].
pub struct Comet {
    /// The hub, logic, settings and lifecycle every connection shares.
    ctx: Arc<ConnCtx>,
    reporter: Arc<Reporter>,
    next_conn_id: AtomicU64,
}

impl std::fmt::Debug for Comet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comet")
            .field("server_id", &self.server_id())
            .field("hub", &self.ctx.hub)
            .finish_non_exhaustive()
    }
}

impl Comet {
    /// Validates `config`, loads the TLS certificate and key if `tls_cert`
    /// and `tls_key` are set ([`CometConfigError::Tls`] names a file that cannot
    /// be used) and builds the comet (its hub etc.). Does not bind or spawn
    /// anything.
    pub fn new(
        config: Config,
        logic: Arc<dyn LogicClient>,
    ) -> Result<Arc<Comet>, CometConfigError> {
        config.validate()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
            _ => None,
        };
        let ctx = Arc::new(ConnCtx::new(config, logic, tls));
        let reporter = Arc::new(Reporter::new(
            ctx.hub.clone(),
            ctx.logic.clone(),
            ctx.rooms.clone(),
            ctx.server_id().to_owned(),
            &ctx.config,
        ));
        Ok(Arc::new(Comet {
            ctx,
            reporter,
            next_conn_id: AtomicU64::new(1),
        }))
    }

    /// Reads `tls_cert` and `tls_key` again now, whether or not they changed
    /// (for SIGHUP). If they load, new TLS handshakes use them; if not, the
    /// error is returned (and logged) and the previous certificate keeps
    /// serving. Open connections are never affected. Blocks on file I/O.
    /// Fails with [`CometConfigError::Invalid`] if the comet has no TLS configured.
    pub fn reload_tls(&self) -> Result<(), CometConfigError> {
        let Some(tls) = &self.ctx.tls else {
            return Err(CometConfigError::Invalid {
                field: "tls_cert",
                reason: "no TLS certificate configured, nothing to reload".to_owned(),
            });
        };
        let result = tls.reload();
        tls.record_reload(&result, "reload_tls");
        result
    }

    /// Whether `tls_cert` and `tls_key` are configured (and were loaded).
    pub fn has_tls(&self) -> bool {
        self.ctx.tls.is_some()
    }

    /// The id this comet reports to logic (`ConnectReq.server`, ...).
    pub fn server_id(&self) -> &str {
        self.ctx.server_id()
    }

    /// The sessions, rooms and push operations (what job's calls reach).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.ctx.hub
    }

    /// The online report this comet would send logic now: its room,
    /// connection and IP counts, addresses and weight (for a logic in the
    /// same process, which reads it live).
    pub fn online_report(&self) -> rim_proto::pb::logic::OnlineReq {
        self.reporter.report()
    }

    /// Runs the accept loops of all listeners, the online-report loop and,
    /// with TLS listeners, the certificate file watch until `shutdown` is
    /// cancelled; then stops accepting, closes every connection and waits up
    /// to `shutdown_grace` for connection tasks. Call once.
    ///
    /// Fails at once (`InvalidInput`) if TLS listeners are given but the
    /// config has no `tls_cert`/`tls_key`.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let Listeners { tcp, ws, tls, wss } = listeners;
        let with_tls = !tls.is_empty() || !wss.is_empty();
        if with_tls && self.ctx.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tls/wss listeners given but no TLS certificate is configured: set comet tls_cert and tls_key",
            ));
        }
        let mut loops = tokio::task::JoinSet::new();
        for (listener, transport) in tcp
            .into_iter()
            .map(|l| (l, Transport::Tcp))
            .chain(ws.into_iter().map(|l| (l, Transport::Ws)))
            .chain(tls.into_iter().map(|l| (l, Transport::Tls)))
            .chain(wss.into_iter().map(|l| (l, Transport::Wss)))
        {
            let addr = listener.local_addr()?;
            info!(listen.addr = %addr, transport = transport.name(), server_id = %self.server_id(), "comet listening");
            loops.spawn(Arc::clone(&self).accept_loop(listener, transport));
        }
        loops.spawn(Arc::clone(&self.reporter).run(self.ctx.closing.clone()));
        loops.spawn(
            Arc::clone(&self.ctx.acks).run(self.ctx.logic.clone(), self.ctx.closing.clone()),
        );
        if let Some(certificate) = self.ctx.tls.as_ref().filter(|_| with_tls) {
            let interval = self.ctx.config.tls_reload_interval;
            info!(
                tls.cert = %certificate.cert_path().display(),
                reload_interval = ?interval,
                "tls listeners serve this certificate"
            );
            if !interval.is_zero() {
                loops.spawn(tls::watch(
                    Arc::clone(certificate),
                    interval,
                    self.ctx.closing.clone(),
                ));
            }
        }

        shutdown.cancelled().await;
        info!(server_id = %self.server_id(), "comet shutting down");
        self.ctx.closing.cancel();
        // Authenticated connections wait on their session, not on `closing`
        // (one waiter less in every idle connection task): close them all. A
        // session registered after this sees `closing` before its frame loop.
        self.ctx.hub.close_all(Closed::Shutdown);
        while let Some(joined) = loops.join_next().await {
            if let Err(e) = joined {
                warn!(error = %e, "comet loop task failed");
            }
        }
        self.ctx.tracker.close();
        let grace = self.ctx.config.shutdown_grace;
        match tokio::time::timeout(grace, self.ctx.tracker.wait()).await {
            Ok(()) => info!("comet stopped: every connection closed"),
            Err(_) => warn!(
                tasks = self.ctx.tracker.len(),
                grace = ?grace,
                "comet stopped with connection tasks still running after the grace period"
            ),
        }
        // Acks of the connections just closed.
        self.ctx.acks.flush(&self.ctx.logic).await;
        self.reporter.sign_off().await;
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, transport: Transport) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = tokio::select! {
                () = self.ctx.closing.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    if self.ctx.limits.admit(peer.ip()).is_err() {
                        // Counted and logged by `admit`; closed unread.
                        drop(stream);
                        continue;
                    }
                    let accepted_at = Instant::now();
                    let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    let conn = conn::ConnInfo {
                        id,
                        peer,
                        transport,
                    };
                    conn::spawn(&self.ctx, stream, conn, accepted_at);
                }
                Err(e) => {
                    ::metrics::counter!(metrics::ACCEPT_ERRORS, "transport" => transport.name())
                        .increment(1);
                    warn!(error = %e, transport = transport.name(), backoff = ?backoff, "accept failed");
                    tokio::select! {
                        () = self.ctx.closing.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::NoLogic;

    #[test]
    fn new_rejects_invalid_config() {
        let err = Comet::new(
            Config {
                buckets: 0,
                ..Config::default()
            },
            Arc::new(NoLogic),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            CometConfigError::Invalid {
                field: "buckets",
                ..
            }
        ));
    }
}
