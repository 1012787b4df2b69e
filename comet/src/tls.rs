//! TLS for the `tls_bind` and `wss_bind` listeners: loading `tls_cert` and
//! `tls_key` into rustls server configs, swapping in new ones on reload, and
//! the task that watches the files for changes.
//!
//! A reload replaces the config that *new* handshakes take. An open
//! connection keeps the config it was accepted with (its rustls state holds
//! an `Arc` of it), so it never notices a reload. Files that fail to load are
//! logged and the previous certificate keeps serving.
//!
//! The per-connection handshake (deadline, close reason, failure counter) is
//! `conn`'s. Only the ring crypto provider is used, so nothing needs aws-lc-rs
//! (and its cmake build).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::CometConfigError;
use crate::metrics;

/// ALPN offered on WSS listeners; raw goim over TLS offers none.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The loaded certificate of one comet and where it came from.
pub(crate) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// What new handshakes use. Read once per accepted TLS connection, written
    /// only by a reload: a plain lock around two `Arc`s is cheap enough.
    current: RwLock<Configs>,
    /// The files' stamps at the last load attempt, good or bad: the watcher
    /// tries again only after another change, so a broken file is reported
    /// once, not every interval.
    seen: Mutex<Stamp>,
}

/// The same certificate, with the ALPN each kind of listener offers.
#[derive(Clone)]
struct Configs {
    tcp: Arc<ServerConfig>,
    ws: Arc<ServerConfig>,
}

/// Modification time and size of the certificate and the key file (`None`
/// if unreadable), compared to notice a change.
type Stamp = [Option<(SystemTime, u64)>; 2];

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads both files; the error names the file and what is wrong with it.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Tls, CometConfigError> {
        // Stamped before reading: a change during the read is seen next time.
        let seen = stamp(cert, key);
        let configs = build(cert, key)?;
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(configs),
            seen: Mutex::new(seen),
        })
    }

    /// The certificate file, for logs.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// An acceptor for one new connection: of the `wss` listeners if
    /// `websocket`, else of the `tls` ones.
    pub(crate) fn acceptor(&self, websocket: bool) -> TlsAcceptor {
        let current = self.current.read();
        let config = if websocket { &current.ws } else { &current.tcp };
        TlsAcceptor::from(Arc::clone(config))
    }

    /// Reads both files again and, if they load, makes new handshakes use
    /// them; on error the current certificate stays. Blocks on file I/O.
    pub(crate) fn reload(&self) -> Result<(), CometConfigError> {
        *self.seen.lock() = stamp(&self.cert, &self.key);
        let configs = build(&self.cert, &self.key)?;
        *self.current.write() = configs;
        Ok(())
    }

    /// [`Tls::reload`] if either file's modification time or size changed
    /// since the last attempt; `None` if nothing changed. Blocks on file I/O.
    fn reload_if_changed(&self) -> Option<Result<(), CometConfigError>> {
        let now = stamp(&self.cert, &self.key);
        {
            let mut seen = self.seen.lock();
            if *seen == now {
                return None;
            }
            *seen = now;
        }
        Some(build(&self.cert, &self.key).map(|configs| *self.current.write() = configs))
    }

    /// Logs and counts the outcome of a reload; `trigger` says what asked
    /// for it (`watch`, `reload_tls`).
    pub(crate) fn record_reload(
        &self,
        result: &Result<(), CometConfigError>,
        trigger: &'static str,
    ) {
        match result {
            Ok(()) => {
                metrics::tls_reload("ok");
                info!(
                    tls.cert = %self.cert.display(),
                    tls.key = %self.key.display(),
                    trigger,
                    "tls certificate reloaded: new handshakes use it"
                );
            }
            Err(e) => {
                metrics::tls_reload("error");
                warn!(
                    error = %e,
                    trigger,
                    "tls certificate reload failed: the previous certificate keeps serving"
                );
            }
        }
    }
}

/// Checks the files every `interval` until `closing`, reloading when they
/// changed (see [`Tls::reload_if_changed`]).
pub(crate) async fn watch(tls: Arc<Tls>, interval: Duration, closing: CancellationToken) {
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        // stat and read are blocking calls (the files may sit on a slow
        // mount): off the runtime's worker threads. The outcome is recorded
        // here, on the task that owns the loop.
        let check = tokio::task::spawn_blocking({
            let tls = Arc::clone(&tls);
            move || tls.reload_if_changed()
        });
        match check.await {
            Ok(Some(result)) => tls.record_reload(&result, "watch"),
            Ok(None) => {}
            Err(e) => {
                metrics::tls_reload("error");
                warn!(error = %e, "tls certificate check failed: the previous certificate keeps serving");
            }
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
}

fn build(cert: &Path, key: &Path) -> Result<Configs, CometConfigError> {
    let chain = read_chain(cert)?;
    let private_key = read_key(key)?;
    let tcp = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("tls_cert", cert, format!("no usable TLS version: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| {
            tls_error(
                "tls_key",
                key,
                format!("unusable with the certificate {}: {e}", cert.display()),
            )
        })?;
    let mut ws = tcp.clone();
    ws.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Configs {
        tcp: Arc::new(tcp),
        ws: Arc::new(ws),
    })
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, CometConfigError> {
    std::fs::read(path).map_err(|e| tls_error(field, path, format!("cannot read: {e}")))
}

/// Every `CERTIFICATE` block of the file, in order (leaf first).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CometConfigError> {
    let pem = read("tls_cert", path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("tls_cert", path, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(tls_error(
            "tls_cert",
            path,
            "no CERTIFICATE block found (expected a PEM certificate chain)",
        ));
    }
    Ok(chain)
}

/// The first private key block of the file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CometConfigError> {
    let pem = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => tls_error(
            "tls_key",
            path,
            "no PRIVATE KEY block found (expected a PEM PKCS#8, PKCS#1 or SEC1 key)",
        ),
        other => tls_error("tls_key", path, format!("bad PEM: {other}")),
    })
}

fn tls_error(field: &'static str, path: &Path, reason: impl Into<String>) -> CometConfigError {
    CometConfigError::Tls {
        field,
        path: path.to_owned(),
        reason: reason.into(),
    }
}
