//! TLS listeners: goim and WebSocket over TLS, plain clients on the TLS ports,
//! certificate reload (by `Comet::reload_tls` and by the file watch), and the
//! errors for missing or unusable certificate files.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use rim_comet::{Comet, CometConfigError, Config, Listeners};
use rim_testkit::poll;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::common::*;

// === fixtures ===

/// A fresh self-signed certificate (new key) for localhost and 127.0.0.1.
struct Cert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn generate() -> Cert {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    Cert {
        cert_pem: cert.pem(),
        key_pem: signing_key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// `cert.pem` and `key.pem` in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    /// Writes `cert`, dated a minute back, so that a later write changes the
    /// modification time even on a file system with coarse timestamps.
    fn new(cert: &Cert) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
        };
        files.write(cert);
        let past = SystemTime::now() - Duration::from_secs(60);
        for path in [&files.cert, &files.key] {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        files
    }

    /// Replaces both files the way certificate tools do: write aside, rename.
    fn write(&self, cert: &Cert) {
        for (path, pem) in [(&self.key, &cert.key_pem), (&self.cert, &cert.cert_pem)] {
            let aside = path.with_extension("new");
            fs::write(&aside, pem).unwrap();
            fs::rename(&aside, path).unwrap();
        }
    }

    fn config(&self) -> Config {
        Config {
            tls_cert: Some(self.cert.clone()),
            tls_key: Some(self.key.clone()),
            ..config()
        }
    }
}

/// A client that trusts only `trusted`, offering `alpn`.
fn connector(trusted: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Connects and completes a TLS handshake for "localhost", trusting only
/// `trusted`; `Err` if the server presents another certificate.
async fn tls_connect_alpn(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, connector(trusted, alpn).connect(name, tcp))
        .await
        .expect("tls handshake timed out")
}

async fn tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
) -> io::Result<TlsStream<TcpStream>> {
    tls_connect_alpn(addr, trusted, &[]).await
}

/// The leaf certificate the server presented.
fn server_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

// === tests ===

#[tokio::test]
async fn goim_over_tls_auths_heartbeats_and_receives_pushes() {
    let cert = generate();
    let files = Files::new(&cert);
    let mut h = Harness::start(files.config()).await;
    let stream = tls_connect(h.tls.unwrap(), &cert.der).await.unwrap();
    assert_eq!(server_cert(&stream), cert.der);
    let mut client = TcpClient { stream };
    client.auth(CAPTURE_TCP_AUTH_TOKEN).await;
    let connect = next(&mut h.events.connects).await;
    assert_eq!(&connect.token[..], CAPTURE_TCP_AUTH_TOKEN.as_bytes());
    assert_eq!(h.comet.hub().stats().connections, 1);

    client.send(1, 2, 2, b"").await;
    assert_eq!(
        client.read_frame().await,
        parse_frame(&frame(1, 3, 2, &1i32.to_be_bytes()))
    );
    push_keys(&h.comet, &["tcp-key-1"], 1000, b"over-tls");
    assert_eq!(
        client.read_frame().await,
        parse_frame(&frame(1, 1000, 0, b"over-tls"))
    );

    // Bursts queued before the connection task runs: 50 buffers go out in
    // one vectored write, 100 are merged first. Megabytes outgrow the socket
    // buffers, so TLS writes are partial.
    for burst in [50u8, 100] {
        for i in 0..burst {
            push_keys(&h.comet, &["tcp-key-1"], 1000, &[i; 16_000]);
        }
        for i in 0..burst {
            let frame = client.read_frame().await;
            assert_eq!((frame.op, frame.body.len()), (1000, 16_000));
            assert!(frame.body.iter().all(|b| *b == i), "push {i} of {burst}");
        }
    }
    // A client op goes to logic and is answered.
    client.send(1, 4, 3, b"up").await;
    assert_eq!(client.read_frame().await, parse_frame(&frame(1, 4, 3, b"")));
    assert_eq!(
        &next(&mut h.events.receives).await.proto.unwrap().body[..],
        b"up"
    );

    drop(client);
    assert_eq!(next(&mut h.events.disconnects).await.key, "tcp-key-1");
    h.stop().await;
}

#[tokio::test]
async fn wss_upgrades_on_sub_auths_and_receives_pushes() {
    let cert = generate();
    let files = Files::new(&cert);
    let mut h = Harness::start(files.config()).await;
    let stream = tls_connect_alpn(h.wss.unwrap(), &cert.der, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = "wss://localhost/sub?platform=web";
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);

    let auth = frame(1, 7, 1, token(7, "wss-key", "live://1", &[1000]).as_bytes());
    ws.send(Message::Binary(auth.into())).await.unwrap();
    let mut read = async || match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => parse_frame(&bytes),
        other => panic!("expected a binary message, got {other:?}"),
    };
    assert_eq!(read().await, parse_frame(&frame(1, 8, 1, b"")));
    assert_eq!(next(&mut h.events.connects).await.server, SERVER_ID);

    push_keys(&h.comet, &["wss-key"], 1000, b"over-wss");
    let outer = read().await;
    assert_eq!((outer.op, outer.ver), (9, 1));
    assert_eq!(
        parse_frame(&outer.body),
        parse_frame(&frame(1, 1000, 0, b"over-wss"))
    );
    push_room(&h.comet, "live://1", raw_proto(1001, b"room"));
    assert_eq!(
        parse_frame(&read().await.body),
        parse_frame(&frame(1, 1001, 0, b"room"))
    );
    ws.close(None).await.unwrap();
    assert_eq!(next(&mut h.events.disconnects).await.key, "wss-key");
    h.stop().await;
}

#[tokio::test]
async fn plain_clients_on_tls_ports_are_closed_and_counted() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let cert = generate();
    let files = Files::new(&cert);
    let mut h = Harness::start(files.config()).await;

    // A goim frame where a TLS ClientHello should be: closed (rustls may
    // first send an alert), no auth.
    let mut plain = TcpClient::connect(h.tls.unwrap()).await;
    plain
        .send(1, 7, 1, token(1, "plain", "", &[]).as_bytes())
        .await;
    plain.drain_until_closed().await;
    assert_eq!(
        recorder.counter("rim_comet_tls_handshake_failures_total{transport=tls}"),
        1
    );
    // A plain WebSocket upgrade on the WSS port: the same.
    let mut plain = TcpClient::connect(h.wss.unwrap()).await;
    plain
        .send_raw(b"GET /sub HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n")
        .await;
    plain.drain_until_closed().await;
    assert_eq!(
        recorder.counter("rim_comet_tls_handshake_failures_total{transport=wss}"),
        1
    );
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=tls_handshake_failed}"),
        2
    );
    // Connecting and leaving without a word is routine, not a failure.
    drop(TcpStream::connect(h.tls.unwrap()).await.unwrap());
    assert!(h.events.connects.try_recv().is_err());

    // The listeners go on serving.
    let stream = tls_connect(h.tls.unwrap(), &cert.der).await.unwrap();
    let mut client = TcpClient { stream };
    client.auth(&token(2, "after", "", &[])).await;
    assert_eq!(next(&mut h.events.connects).await.cookie, "");
    assert_eq!(
        recorder.counter("rim_comet_tls_handshake_failures_total{transport=tls}"),
        1
    );
    assert_eq!(
        recorder.counter("rim_comet_accepted_total{transport=tls}"),
        3
    );
    h.stop().await;
}

/// README: the TLS handshake counts toward `handshake_timeout`. A client
/// that connects to a TLS or WSS port and never sends a ClientHello is
/// closed at the deadline, counted as a failed handshake; one that finishes
/// TLS late has only the rest of the deadline to authenticate.
#[tokio::test(start_paused = true)]
async fn a_silent_client_on_a_tls_port_is_closed_at_the_handshake_deadline() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let cert = generate();
    let files = Files::new(&cert);
    let h = Harness::start(Config {
        handshake_timeout: Duration::from_secs(3),
        ..files.config()
    })
    .await;
    for (port, transport) in [(h.tls.unwrap(), "tls"), (h.wss.unwrap(), "wss")] {
        let started = Instant::now();
        let mut silent = TcpClient::connect(port).await;
        silent.expect_closed().await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4),
            "{transport}: closed after {elapsed:?}"
        );
        assert_eq!(
            recorder.counter(&format!(
                "rim_comet_tls_handshake_failures_total{{transport={transport}}}"
            )),
            1
        );
    }
    // One deadline for both: a client that completes TLS after 2 s has 1 s
    // left to authenticate.
    let started = Instant::now();
    let tcp = TcpStream::connect(h.tls.unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector(&cert.der, &[]).connect(name, tcp).await.unwrap();
    let mut late = TcpClient { stream };
    late.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4),
        "TLS done at 2 s, closed after {elapsed:?}"
    );
    assert_eq!(
        recorder.counter("rim_comet_disconnects_total{reason=handshake_timeout}"),
        3
    );
    h.stop().await;
}

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_handshakes_only() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (a, b) = (generate(), generate());
    let files = Files::new(&a);
    let h = Harness::start(Config {
        // No watch: only the explicit reload may switch.
        tls_reload_interval: Duration::ZERO,
        ..files.config()
    })
    .await;
    let tls = h.tls.unwrap();
    let stream = tls_connect(tls, &a.der).await.unwrap();
    let mut old = TcpClient { stream };
    old.auth(&token(1, "before-reload", "", &[1000])).await;

    files.write(&b);
    assert!(
        tls_connect(tls, &b.der).await.is_err(),
        "B served before the reload"
    );
    h.comet.reload_tls().unwrap();
    assert_eq!(
        recorder.counter("rim_comet_tls_reloads_total{result=ok}"),
        1
    );
    let stream = tls_connect(tls, &b.der).await.unwrap();
    assert_eq!(server_cert(&stream), b.der);
    let err = tls_connect(tls, &a.der).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let wss = tls_connect(h.wss.unwrap(), &b.der).await.unwrap();
    assert_eq!(server_cert(&wss), b.der);

    // The connection made with A goes on.
    old.send(1, 2, 7, b"").await;
    assert_eq!(
        old.read_frame().await,
        parse_frame(&frame(1, 3, 7, &0i32.to_be_bytes()))
    );
    push_keys(&h.comet, &["before-reload"], 1000, b"still-here");
    assert_eq!(old.read_frame().await.body, b"still-here");

    // A broken file: refused, B keeps serving.
    fs::write(&files.key, "not a key").unwrap();
    let err = h.comet.reload_tls().unwrap_err();
    assert!(
        matches!(
            err,
            CometConfigError::Tls {
                field: "tls_key",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        recorder.counter("rim_comet_tls_reloads_total{result=error}"),
        1
    );
    let stream = tls_connect(tls, &b.der).await.unwrap();
    assert_eq!(server_cert(&stream), b.der);
    h.stop().await;
}

/// Paused time: the watch's interval is the subject (a broken file must be
/// reported once, not on every tick), and the file checks run on the
/// blocking pool, which holds the paused clock while they run.
#[tokio::test(start_paused = true)]
async fn the_watch_reloads_changed_files_and_skips_broken_ones() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (a, b) = (generate(), generate());
    let files = Files::new(&a);
    let h = Harness::start(Config {
        tls_reload_interval: Duration::from_millis(100),
        ..files.config()
    })
    .await;
    let tls = h.tls.unwrap();
    let stream = tls_connect(tls, &a.der).await.unwrap();
    let mut old = TcpClient { stream };
    old.auth(&token(1, "watched", "", &[])).await;

    // A certificate file that is not PEM: reported once, A keeps serving.
    // Written aside and renamed, as deployments do, so the watch never
    // reads a half-written file (which would be a second error).
    let aside = files.cert.with_extension("new");
    fs::write(&aside, "garbage").unwrap();
    fs::rename(&aside, &files.cert).unwrap();
    poll::until(
        "the broken file was never reported",
        WAIT,
        Duration::from_millis(20),
        async || recorder.counter("rim_comet_tls_reloads_total{result=error}") == 1,
    )
    .await;
    assert_eq!(server_cert(&tls_connect(tls, &a.der).await.unwrap()), a.der);
    // Ten more ticks of the watch do not report the same file again. (The
    // odd 10 ms keeps the file writes below off the watch's ticks, so it
    // never reads the new key beside the broken certificate.)
    tokio::time::sleep(Duration::from_millis(1010)).await;
    assert_eq!(
        recorder.counter("rim_comet_tls_reloads_total{result=error}"),
        1
    );

    // New files: picked up without being asked.
    files.write(&b);
    poll::until(
        "B was never served",
        WAIT,
        Duration::from_millis(20),
        async || tls_connect(tls, &b.der).await.is_ok(),
    )
    .await;
    assert_eq!(
        recorder.counter("rim_comet_tls_reloads_total{result=ok}"),
        1
    );
    assert_eq!(
        recorder.counter("rim_comet_tls_reloads_total{result=error}"),
        1
    );
    old.send(1, 2, 2, b"").await;
    assert_eq!(old.read_frame().await.op, 3);
    h.stop().await;
}

#[tokio::test]
async fn unusable_certificate_files_are_refused_at_start() {
    let (a, b) = (generate(), generate());
    let files = Files::new(&a);
    let new = |config: Config| Comet::new(config, FakeLogic::new(0).0).map(|_| ());
    let tls_error = |config: Config| match new(config) {
        Err(CometConfigError::Tls { field, reason, .. }) => (field, reason),
        other => panic!("expected a tls error, got {other:?}"),
    };

    let missing = files.dir.path().join("missing.pem");
    let err = new(Config {
        tls_cert: Some(missing.clone()),
        ..files.config()
    })
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("tls_cert") && message.contains("missing.pem"),
        "{message}"
    );
    assert!(message.contains("cannot read"), "{message}");

    let garbage = files.dir.path().join("garbage.pem");
    fs::write(&garbage, "this is not a certificate").unwrap();
    let (field, reason) = tls_error(Config {
        tls_cert: Some(garbage.clone()),
        ..files.config()
    });
    assert_eq!(field, "tls_cert");
    assert!(reason.contains("no CERTIFICATE"), "{reason}");
    let (field, reason) = tls_error(Config {
        tls_key: Some(garbage),
        ..files.config()
    });
    assert_eq!(field, "tls_key");
    assert!(reason.contains("no PRIVATE KEY"), "{reason}");
    // The certificate given as the key: no key in it either.
    let (field, _) = tls_error(Config {
        tls_key: Some(files.cert.clone()),
        ..files.config()
    });
    assert_eq!(field, "tls_key");

    let other_key = files.dir.path().join("other-key.pem");
    fs::write(&other_key, &b.key_pem).unwrap();
    let (field, reason) = tls_error(Config {
        tls_key: Some(other_key),
        ..files.config()
    });
    assert_eq!(field, "tls_key");
    assert!(reason.contains("unusable with the certificate"), "{reason}");

    let err = new(Config {
        tls_bind: vec!["127.0.0.1:0".into()],
        ..config()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            CometConfigError::Invalid {
                field: "tls_cert",
                ..
            }
        ),
        "{err}"
    );

    new(files.config()).unwrap();
}

#[tokio::test]
async fn tls_listeners_without_a_certificate_are_refused() {
    let comet = Comet::new(config(), FakeLogic::new(0).0).unwrap();
    assert!(!comet.has_tls());
    assert!(matches!(
        comet.reload_tls(),
        Err(CometConfigError::Invalid {
            field: "tls_cert",
            ..
        })
    ));
    let listeners = Listeners {
        wss: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
        ..Listeners::default()
    };
    let err = tokio::time::timeout(WAIT, comet.serve(listeners, CancellationToken::new()))
        .await
        .expect("serve should fail at once")
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tls_cert"), "{err}");
}

/// A connection the server ends (here: kicked by a newer one with the same
/// key) ends with TLS's close_notify, so the client sees a clean end of
/// stream, not a truncation.
#[tokio::test]
async fn server_closes_announce_close_notify() {
    use tokio::io::AsyncReadExt;
    let cert = generate();
    let files = Files::new(&cert);
    let h = Harness::start(files.config()).await;
    let stream = tls_connect(h.tls.unwrap(), &cert.der).await.unwrap();
    let mut first = TcpClient { stream };
    first.auth(CAPTURE_TCP_AUTH_TOKEN).await;
    let stream = tls_connect(h.tls.unwrap(), &cert.der).await.unwrap();
    let mut second = TcpClient { stream };
    second.auth(CAPTURE_TCP_AUTH_TOKEN).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, first.stream.read_to_end(&mut rest))
        .await
        .expect("kicked connection still open");
    assert!(read.is_ok(), "no close_notify: {read:?}");
    h.stop().await;
}
