//! End-to-end through the built `rim` binary: `rim standalone` with a config
//! file and flags, its `--ready` announcement, its help and error output, and
//! where and what it logs. The other end-to-end tests start the server in
//! process; these run exactly what a user runs.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::Http;
use rim_testkit::{poll, Client, Token};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// How long a process gets to announce itself or to exit.
const DEADLINE: Duration = Duration::from_secs(30);

fn rim() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rim"));
    // Its own working directory: the default data directory (rim-data) of
    // parallel servers must not be shared.
    let cwd = tempfile::tempdir().expect("a temp dir").keep();
    command.current_dir(cwd);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A file in a fresh temporary directory, removed on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(rim_testkit::services::unique("rim-binary"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write temp file");
        TempFile { dir, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a stopped server wrote and how it ended.
struct Stopped {
    status: ExitStatus,
    /// Every stdout line, the READY line included.
    stdout: Vec<String>,
    stderr: String,
}

/// A running `rim standalone ... --ready`.
struct Server {
    child: Child,
    ready: Value,
    stdout: JoinHandle<Vec<String>>,
    stderr: JoinHandle<String>,
}

impl Server {
    /// Runs `rim <args>` (`--ready` must be among them) with `RUST_LOG` set
    /// to `rust_log` (or unset), and waits for the READY line.
    async fn start(args: &[&str], rust_log: Option<&str>) -> Server {
        let mut command = rim();
        command.args(args);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.spawn().expect("the rim binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text).await;
            text
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let stdout = tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut all = Vec::new();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix("READY ") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(json.to_owned());
                    }
                }
                all.push(line);
            }
            all
        });
        let ready = match tokio::time::timeout(DEADLINE, ready_rx).await {
            Ok(Ok(json)) => serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("READY line is not JSON ({e}): {json}")),
            outcome => {
                let _ = child.start_kill();
                let status = child.wait().await;
                let stderr = stderr.await.unwrap_or_default();
                panic!(
                    "rim {args:?} did not announce itself ({}; exit {status:?}); stderr:\n{stderr}",
                    if outcome.is_err() {
                        "timed out"
                    } else {
                        "stdout closed"
                    }
                );
            }
        };
        Server {
            child,
            ready,
            stdout,
            stderr,
        }
    }

    fn addr(&self, field: &str) -> SocketAddr {
        let text = self.ready[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.ready));
        text.parse()
            .unwrap_or_else(|e| panic!("{field} {text:?} is no address: {e}"))
    }

    /// The only address of a listener list.
    fn only(&self, field: &str) -> SocketAddr {
        let list = self.ready[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} is not a list in {}", self.ready));
        assert_eq!(list.len(), 1, "{field} in {}", self.ready);
        let text = list[0].as_str().expect("an address string");
        text.parse()
            .unwrap_or_else(|e| panic!("{field} {text:?} is no address: {e}"))
    }

    fn http(&self) -> Http {
        Http::new(self.addr("http"))
    }

    /// SIGTERM, then everything the process wrote until it exited.
    async fn stop(mut self) -> Stopped {
        common::cluster::signal(&self.child, "-TERM");
        let status = match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(status) => status.expect("wait for rim"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                panic!(
                    "rim did not exit within {DEADLINE:?} of SIGTERM; stderr:\n{}",
                    self.stderr.await.unwrap_or_default()
                );
            }
        };
        let stdout = tokio::time::timeout(DEADLINE, self.stdout)
            .await
            .expect("stdout closes at exit")
            .expect("stdout reader");
        let stderr = tokio::time::timeout(DEADLINE, self.stderr)
            .await
            .expect("stderr closes at exit")
            .expect("stderr reader");
        Stopped {
            status,
            stdout,
            stderr,
        }
    }
}

/// `rim <args>` that must exit by itself (without binding anything).
async fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let child = rim().args(args).spawn().expect("the rim binary starts");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rim {args:?} still running after {DEADLINE:?}"))
        .expect("rim output");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every loopback listener on port 0, so parallel tests never collide.
const EPHEMERAL: [&str; 7] = [
    "standalone",
    "--http",
    "127.0.0.1:0",
    "--tcp",
    "127.0.0.1:0",
    "--ws",
    "127.0.0.1:0",
];

#[tokio::test]
async fn flags_override_the_config_file_and_a_push_reaches_tcp_and_ws_clients() {
    // The file names an address that is taken for every listener: the
    // server starts only if the flags win. Its logic.max_body is not
    // overridden by any flag and must apply.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a blocker");
    let taken_addr = taken.local_addr().expect("blocker address");
    let config = TempFile::new(
        "rim.toml",
        &format!(
            "[comet]\nserver_id = \"from-file\"\ntcp_bind = [\"{taken_addr}\"]\n\
             ws_bind = [\"{taken_addr}\"]\n\n\
             [logic]\nhttp_bind = \"{taken_addr}\"\nmax_body = 64\n"
        ),
    );
    let mut args = EPHEMERAL.to_vec();
    args.extend(["--config", config.arg()]);
    args.extend(["--server-id", "from-flag", "--ready"]);
    let server = Server::start(&args, None).await;

    assert_eq!(server.ready["server_id"], "from-flag", "{}", server.ready);
    let (http, tcp, ws) = (server.addr("http"), server.only("tcp"), server.only("ws"));
    for addr in [http, tcp, ws] {
        assert!(addr.ip().is_loopback(), "{}", server.ready);
        assert_ne!(addr.port(), 0, "{}", server.ready);
        assert_ne!(addr, taken_addr, "{}", server.ready);
    }
    assert_eq!(server.ready["tls"], serde_json::json!([]));
    assert_eq!(server.ready["wss"], serde_json::json!([]));
    assert_eq!(server.addr("metrics"), http);

    let mut tcp_client = Client::connect(tcp, false, &Token::new(1, "key-tcp", "live://1"))
        .await
        .expect("tcp client authenticates");
    let mut ws_client = Client::connect(ws, true, &Token::new(2, "key-ws", "live://1"))
        .await
        .expect("ws client authenticates");
    let api = server.http();
    api.push_ok(
        "/goim/push/keys?operation=1000&keys=key-tcp&keys=key-ws",
        "hello from the binary",
    )
    .await;
    for client in [&mut tcp_client, &mut ws_client] {
        let push = client.next_push().await.expect("the push arrives");
        assert_eq!(push.op, 1000);
        assert_eq!(&push.body[..], b"hello from the binary");
    }

    // The file's logic.max_body (64) applies; the default (1 MiB) would take this.
    let oversize = api
        .post(
            "/goim/push/keys?operation=1000&keys=key-tcp",
            "x".repeat(65),
        )
        .await
        .expect("http request");
    assert_eq!(oversize.status, 413, "{:?}", oversize.json);
    tcp_client
        .heartbeat(7)
        .await
        .expect("still connected after the refused push");
    tcp_client
        .expect_no_push(Duration::from_millis(200))
        .await
        .expect("the oversize push is not delivered");

    let stopped = server.stop().await;
    assert!(
        stopped.status.success(),
        "{:?}\n{}",
        stopped.status,
        stopped.stderr
    );
    drop(taken);
}

/// `rim bench im` against the binary: each mode runs, finds every stored
/// message at its client, and says so in its JSON and exit status.
#[cfg(feature = "bench")]
#[tokio::test]
async fn bench_im_checks_every_stored_message_in_each_mode() {
    let mut args = EPHEMERAL.to_vec();
    args.push("--ready");
    let server = Server::start(&args, None).await;
    let (http, tcp, ws) = (
        server.addr("http").to_string(),
        server.only("tcp").to_string(),
        server.only("ws").to_string(),
    );
    let out = TempFile::new("im.json", "");
    let runs: [&[&str]; 4] = [
        &[
            "--mode",
            "deliver",
            "-c",
            "20",
            "--rate",
            "200",
            "--duration",
            "1s",
        ],
        &["--mode", "sync", "-c", "20", "--messages", "30"],
        &[
            "--mode",
            "sync",
            "-c",
            "10",
            "--messages",
            "250",
            "--sync-request",
        ],
        &[
            "--mode",
            "storm",
            "-c",
            "20",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--hold",
            "500ms",
            "--storm",
            "500ms",
        ],
    ];
    for run in runs {
        let mut bench = vec!["bench", "im", "--http", &http, "--tcp", &tcp, "--ws", &ws];
        bench.extend(["--ws-ratio", "0.5", "--settle", "0s", "--drain", "500ms"]);
        bench.extend(["--json", out.arg()]);
        bench.extend(run);
        let (status, stdout, stderr) = run_to_exit(&bench).await;
        assert!(status.success(), "{run:?}: {status:?}\n{stdout}\n{stderr}");
        let report: Value = serde_json::from_slice(&std::fs::read(&out.path).expect("the json"))
            .expect("the json parses");
        assert_eq!(report["lost"], 0, "{run:?}: {report}");
        assert_eq!(report["duplicates"], 0, "{run:?}: {report}");
        assert_eq!(
            report["connections"],
            run[3].parse::<u64>().unwrap(),
            "{report}"
        );
        let expected = report["expected"].as_u64().expect("expected");
        assert!(expected > 0, "{run:?}: {report}");
        assert_eq!(report["delivered"], expected, "{run:?}: {report}");
        if run.contains(&"--sync-request") {
            // 250 messages take two pages (200 + 50): each client sends op 18
            // once, then again on "more".
            assert_eq!(report["sync_requests"], 20, "{report}");
        }
        if run[1] == "storm" {
            assert_eq!(report["storm"]["resynced"], 20, "{report}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn logs_go_to_stderr_and_rust_log_enables_debug_lines() {
    for (rust_log, debug) in [(None, false), (Some("info,rim_comet=debug"), true)] {
        let mut args = EPHEMERAL.to_vec();
        args.push("--ready");
        let server = Server::start(&args, rust_log).await;
        let key = format!("key-log-{debug}");
        let client = Client::connect(server.only("tcp"), false, &Token::new(5, &key, ""))
            .await
            .expect("client authenticates");
        // The comet logs "authenticated" before it writes the auth reply, so
        // the line (if enabled) is in the pipe once `connect` returned.
        let stopped = server.stop().await;
        drop(client);

        assert!(
            stopped.status.success(),
            "{rust_log:?}: {:?}",
            stopped.status
        );
        assert_eq!(
            stopped.stdout.len(),
            1,
            "{rust_log:?}: stdout holds only the READY line: {:?}",
            stopped.stdout
        );
        assert!(stopped.stdout[0].starts_with("READY {"));
        let log = &stopped.stderr;
        assert!(
            log.lines()
                .any(|l| l.contains(" INFO ") && l.contains("rim standalone listening")),
            "{rust_log:?}: no listening line on stderr:\n{log}"
        );
        assert!(
            log.contains("shutdown complete"),
            "{rust_log:?}: no shutdown line:\n{log}"
        );
        let authenticated = log
            .lines()
            .find(|l| l.contains(" DEBUG ") && l.contains("authenticated"));
        if debug {
            let line =
                authenticated.unwrap_or_else(|| panic!("no debug auth line at debug:\n{log}"));
            assert!(line.contains(&format!("key={key}")), "{line}");
        } else {
            assert!(
                authenticated.is_none() && !log.contains(" DEBUG "),
                "debug lines at the default level:\n{log}"
            );
        }
        assert!(
            !log.contains('\u{1b}'),
            "{rust_log:?}: colour codes in a log written to a pipe:\n{log:?}"
        );
    }
}

#[tokio::test]
async fn help_lists_every_subcommand_and_every_standalone_flag() {
    let (status, help, _) = run_to_exit(&["--help"]).await;
    assert!(status.success(), "{status:?}");
    let lists = |command: &str| {
        help.lines()
            .any(|l| l.trim_start().starts_with(&format!("{command} ")))
    };
    for command in [
        "standalone",
        "logic",
        "router",
        "job",
        "comet",
        "check-config",
        "token",
    ] {
        assert!(
            lists(command),
            "`rim --help` does not list {command}:\n{help}"
        );
    }
    // `rim bench` exists only with the (default) `bench` feature.
    assert_eq!(
        lists("bench"),
        cfg!(feature = "bench"),
        "`rim --help` and the bench feature disagree:\n{help}"
    );

    let (status, help, _) = run_to_exit(&["standalone", "--help"]).await;
    assert!(status.success(), "{status:?}");
    let flags = [
        "--config <FILE>",
        "--http <ADDR>",
        "--tcp <ADDR>",
        "--ws <ADDR>",
        "--tls <ADDR>",
        "--wss <ADDR>",
        "--tls-cert <FILE>",
        "--tls-key <FILE>",
        "--server-id <ID>",
        "--ready",
    ];
    for flag in flags {
        assert!(
            help.contains(flag),
            "`rim standalone --help` lacks {flag}:\n{help}"
        );
    }
    // Every flag the binary has is documented in the README's Configuration section.
    let readme = include_str!("../README.md");
    for word in help.split(|c: char| c.is_whitespace() || c == ',') {
        let flag = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        if flag.starts_with("--") && flag != "--help" {
            let mentioned = readme.match_indices(flag).any(|(i, _)| {
                let next = readme[i + flag.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            assert!(mentioned, "README.md does not mention `{flag}`");
        }
    }
}

fn assert_clean_failure(what: &str, stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "{what}: rim panicked:\n{stderr}"
    );
    assert!(
        !stderr.contains("listening"),
        "{what}: rim started anyway:\n{stderr}"
    );
}

#[tokio::test]
async fn bad_configuration_and_unknown_flags_fail_with_a_clear_message() {
    const EX_CONFIG: i32 = 78;
    let broken = TempFile::new("broken.toml", "[comet\ntcp_bind = ");
    let misspelt = TempFile::new("misspelt.toml", "[comet]\nhandshake_timout = \"1s\"\n");
    let missing = broken.dir.join("missing.toml");
    let missing = missing.to_str().expect("utf-8 path");
    let cases: [(&str, &[&str], &str); 4] = [
        ("unparsable file", &["--config", broken.arg()], "parsing"),
        (
            "unknown key",
            &["--config", misspelt.arg()],
            "handshake_timout",
        ),
        ("missing file", &["--config", missing], "reading"),
        (
            "tls without a certificate",
            &["--tls", "127.0.0.1:0"],
            "tls",
        ),
    ];
    for (what, extra, expected) in cases {
        let mut args = EPHEMERAL.to_vec();
        args.extend_from_slice(extra);
        let (status, stdout, stderr) = run_to_exit(&args).await;
        assert_eq!(status.code(), Some(EX_CONFIG), "{what}: {stderr}");
        assert!(stdout.is_empty(), "{what}: stdout {stdout:?}");
        assert_clean_failure(what, &stderr);
        assert!(
            stderr.starts_with("rim: ") && stderr.contains(expected),
            "{what}: expected `rim: ...{expected}...`, got:\n{stderr}"
        );
        if let Some(i) = extra.iter().position(|a| *a == "--config") {
            assert!(
                stderr.contains(extra[i + 1]),
                "{what}: names no file:\n{stderr}"
            );
        }
    }

    let (status, _, stderr) = run_to_exit(&["standalone", "--bogus", "--ready"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_clean_failure("unknown flag", &stderr);
    assert!(
        stderr.contains("unexpected argument '--bogus'"),
        "unknown flag: {stderr}"
    );
    let (status, _, stderr) = run_to_exit(&["standalone", "--http"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--http <ADDR>"), "missing value: {stderr}");
}

/// A fresh self-signed certificate for localhost: its PEM files and DER.
struct Cert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn generate_cert() -> Cert {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("generate a certificate");
    Cert {
        cert_pem: cert.pem(),
        key_pem: signing_key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// A TLS handshake with `addr` as "localhost", trusting only `trusted`:
/// the certificate served, or `Err` if the server presents another one.
async fn served_cert(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
) -> std::io::Result<CertificateDer<'static>> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).expect("a usable trust anchor");
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider's protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a server name");
    let stream = tokio::time::timeout(
        DEADLINE,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the tls handshake ends")?;
    Ok(stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .clone())
}

/// README (TLS): "SIGHUP reloads them at once". The file watch is off
/// (`tls_reload_interval = "0s"`), so only the signal can load the new files.
#[tokio::test]
async fn sighup_reloads_the_tls_certificate() {
    let (first, second) = (generate_cert(), generate_cert());
    let config = TempFile::new("rim.toml", "[comet]\ntls_reload_interval = \"0s\"\n");
    let cert = config.dir.join("cert.pem");
    let key = config.dir.join("key.pem");
    // Replaces a file the way certificate tools do: write aside, rename.
    let replace = |path: &PathBuf, text: &str| {
        let aside = path.with_extension("new");
        std::fs::write(&aside, text).expect("write aside");
        std::fs::rename(&aside, path).expect("rename over");
    };
    replace(&key, &first.key_pem);
    replace(&cert, &first.cert_pem);
    let (cert_arg, key_arg) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let mut args = EPHEMERAL.to_vec();
    args.extend([
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        cert_arg,
        "--tls-key",
        key_arg,
    ]);
    args.extend(["--config", config.arg(), "--ready"]);
    let mut server = Server::start(&args, None).await;
    let tls = server.only("tls");
    assert_eq!(
        served_cert(tls, &first.der)
            .await
            .expect("the first certificate"),
        first.der
    );

    replace(&key, &second.key_pem);
    replace(&cert, &second.cert_pem);
    assert!(
        served_cert(tls, &second.der).await.is_err(),
        "the new files were loaded before SIGHUP (the watch is off)"
    );
    common::cluster::signal(&server.child, "-HUP");
    // The reload runs in the process: poll, with a deadline, until it served.
    let served = poll::eventually(DEADLINE, Duration::from_millis(20), async || {
        if let Some(status) = server.child.try_wait().expect("rim's status") {
            panic!("rim exited on SIGHUP ({status})");
        }
        served_cert(tls, &second.der)
            .await
            .map_err(|e| format!("the new certificate was never served after SIGHUP: {e}"))
    })
    .await;
    assert_eq!(served, second.der);
    // The old certificate is no longer served.
    assert!(served_cert(tls, &first.der).await.is_err());

    let stopped = server.stop().await;
    assert!(
        stopped.status.success(),
        "{:?}\n{}",
        stopped.status,
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("SIGHUP received"),
        "no reload line:\n{}",
        stopped.stderr
    );
}

/// Stored pushes under load, `kill -9`, a restart on the same data
/// directory: every push answered 200 is in its mailbox exactly once, the
/// seqs are dense, and a client syncs all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_stored_push_load_loses_nothing_answered_200() {
    const USERS: i64 = 20;
    const WRITERS: usize = 16;
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let mut args = EPHEMERAL.to_vec();
    args.extend(["--data", &data_arg, "--ready"]);
    let mut server = Server::start(&args, None).await;
    let http = server.http();

    // Writers push until the server dies; each keeps what was answered 200.
    let answered = Arc::new(parking_lot::Mutex::new(Vec::<(i64, String)>::new()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, answered) = (http.clone(), Arc::clone(&answered));
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let mid = 1 + (i + w as i64) % USERS;
                let id = format!("w{w}-{i}");
                let path = format!("/goim/push/mids?operation=1000&mids={mid}&store=1&id={id}");
                match http.post(&path, id.clone()).await {
                    Ok(reply) if reply.status == 200 => answered.lock().push((mid, id)),
                    // Dying: refused connections and cut replies promise nothing.
                    _ => return,
                }
            }
        }));
    }
    poll::eventually(
        Duration::from_secs(20),
        Duration::from_millis(10),
        async || {
            let n = answered.lock().len();
            if n >= 500 {
                Ok(())
            } else {
                Err(format!("only {n} stored pushes answered"))
            }
        },
    )
    .await;
    server.child.start_kill().expect("SIGKILL");
    let status = server.child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    for writer in writers {
        writer.await.unwrap();
    }
    let answered = answered.lock().clone();

    let server = Server::start(&args, None).await;
    let http = server.http();
    let mut stored: std::collections::HashMap<i64, Vec<Value>> = Default::default();
    for mid in 1..=USERS {
        let page = http
            .get(&format!("/rim/v1/users/{mid}/messages?limit=500"))
            .await
            .unwrap()
            .json;
        assert_eq!(page["more"], false);
        let messages = page["messages"].as_array().unwrap().clone();
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        let dense: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, dense, "mailbox {mid}: seqs are dense from 1");
        assert_eq!(page["top"], seqs.len(), "mailbox {mid}");
        let mut ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            messages.len(),
            "mailbox {mid}: an id stored twice"
        );
        stored.insert(mid, messages);
    }
    for (mid, id) in &answered {
        let found = stored[mid]
            .iter()
            .filter(|m| m["id"] == id.as_str())
            .count();
        assert_eq!(
            found, 1,
            "{id}, answered 200 for mailbox {mid}, is stored {found} times"
        );
    }
    // And a client syncs them all, byte for byte.
    let mut client = Client::connect(server.only("tcp"), false, &Token::im(1, "k").since(0, None))
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        let frame = client.next_frame().await.unwrap();
        if frame.op == rim_proto::Op::SyncEnd.code() {
            let end: Value = serde_json::from_slice(&frame.body).unwrap();
            if end["more"] == true {
                let req = format!(r#"{{"seq":{}}}"#, received.len());
                client
                    .send(&rim_proto::Frame::new(1, rim_proto::Op::Sync, 1, req))
                    .await
                    .unwrap();
                continue;
            }
            break;
        }
        if frame.op == 1000 {
            received.push((frame.seq, String::from_utf8(frame.body.to_vec()).unwrap()));
        }
    }
    // Each push's body was its id.
    let expected: Vec<(i32, String)> = stored[&1]
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap() as i32,
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(received, expected);
    assert!(answered.len() >= 500);
    server.stop().await;
}

/// Sends `body` as op 7 on a fresh TCP connection; `true` when the server
/// answers op 8 (accepted), `false` when it closes the connection first.
async fn authenticates(tcp: SocketAddr, body: &str) -> bool {
    use rim_proto::{Frame, Op};
    use rim_testkit::Incoming;
    let mut client = Client::tcp(tcp).await.expect("tcp connect");
    client
        .send(&Frame::new(1, Op::Auth, 1, body.to_owned()))
        .await
        .expect("send op 7");
    match client.recv_within(DEADLINE).await {
        Ok(Some(Incoming::Frame(frame))) => {
            assert_eq!(frame.op, Op::AuthReply.code(), "unexpected op {}", frame.op);
            true
        }
        Ok(Some(Incoming::Closed)) | Err(_) => false,
        Ok(None) => panic!("no answer to op 7 within {DEADLINE:?}"),
    }
}

/// `rim token`: the JWT it prints for a configuration is accepted by a rim
/// running that configuration, over a real connection, as the user it
/// names; once past its TTL the same server refuses it.
#[tokio::test]
async fn rim_token_prints_a_jwt_the_server_accepts_until_it_expires() {
    use base64::Engine;
    let config = TempFile::new(
        "jwt.toml",
        "[logic.auth]\nmode = \"jwt\"\nsecret = \"rim-token-test-secret\"\nleeway = \"0s\"\n",
    );
    let mut args = EPHEMERAL.to_vec();
    args.extend(["--config", config.arg(), "--ready"]);
    let server = Server::start(&args, None).await;
    let tcp = server.only("tcp");

    let (status, jwt, stderr) = run_to_exit(&[
        "token",
        "--mid",
        "123",
        "--room",
        "live://9",
        "--accepts",
        "1000",
        "--ttl",
        "1h",
        "--config",
        config.arg(),
    ])
    .await;
    assert!(status.success(), "{status:?}: {stderr}");
    let jwt = jwt.trim();
    assert_eq!(jwt.split('.').count(), 3, "not a compact JWT: {jwt:?}");
    use rim_proto::{Frame, Op};
    let mut client = Client::tcp(tcp).await.expect("tcp connect");
    client
        .send(&Frame::new(1, Op::Auth, 1, jwt.to_owned()))
        .await
        .expect("send op 7");
    let reply = client.recv_frame().await.expect("op 8");
    assert_eq!(reply.op, Op::AuthReply.code());
    // The server took the user and the room from the JWT.
    let api = server.http();
    api.push_ok("/goim/push/mids?operation=1000&mids=123", "to 123")
        .await;
    assert_eq!(
        &client.next_push().await.expect("user push").body[..],
        b"to 123"
    );
    api.push_ok(
        "/goim/push/room?operation=1001&type=live&room=9",
        "to the room",
    )
    .await;
    assert_eq!(
        &client.next_push().await.expect("room push").body[..],
        b"to the room"
    );
    // A token signed with another key is refused.
    let other = TempFile::new(
        "other.toml",
        "[logic.auth]\nmode = \"jwt\"\nsecret = \"another\"\n",
    );
    let (status, forged, _) =
        run_to_exit(&["token", "--mid", "123", "--config", other.arg()]).await;
    assert!(status.success());
    assert!(
        !authenticates(tcp, forged.trim()).await,
        "a forged token was accepted"
    );

    // Past its TTL (the config allows no leeway), the token is refused.
    let (status, short, stderr) = run_to_exit(&[
        "token",
        "--mid",
        "123",
        "--ttl",
        "1s",
        "--config",
        config.arg(),
    ])
    .await;
    assert!(status.success(), "{stderr}");
    let payload = short.trim().split('.').nth(1).expect("a payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url payload"),
    )
    .expect("JSON claims");
    let exp = claims["exp"].as_u64().expect("an exp claim");
    assert_eq!(claims["sub"], "123", "{claims}");
    // Wait for the clock (not for a server): rim refuses once now > exp.
    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs(exp + 1);
    if let Ok(left) = expired_at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_millis(100)).await;
    }
    assert!(
        !authenticates(tcp, short.trim()).await,
        "an expired token was accepted"
    );
    server.stop().await;
}

/// `rim check-config`: a good file prints every effective setting, the
/// changed ones with their default; an unknown key, a bad value and an
/// invalid one fail with EX_CONFIG and name the key and the file.
#[tokio::test]
async fn check_config_prints_the_effective_settings_and_names_a_bad_key() {
    const EX_CONFIG: i32 = 78;
    let good = TempFile::new("good.toml", "[logic]\nmax_body = 64\n");
    let (status, stdout, stderr) = run_to_exit(&["check-config", "-c", good.arg()]).await;
    assert!(status.success(), "{status:?}: {stderr}");
    for line in [
        "logic.max_body = 64  # default: 1048576",
        "comet.handshake_timeout = \"8s\"",
        "mailbox.store = \"redb\"",
        "queue.capacity = 65536",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    let role = TempFile::new("job.toml", "[job]\nroutines = 3\n");
    let (status, stdout, stderr) =
        run_to_exit(&["check-config", "-c", role.arg(), "--role", "job"]).await;
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("job.routines = 3  # default: "), "{stdout}");

    let unknown = TempFile::new("unknown.toml", "[comet]\nhandshake_timout = \"1s\"\n");
    let bad_value = TempFile::new("bad.toml", "[logic]\nmax_body = \"big\"\n");
    let invalid = TempFile::new("invalid.toml", "[logic.node]\nheartbeat_max = 0\n");
    let cases: [(&TempFile, &[&str], &str); 4] = [
        (&unknown, &[], "handshake_timout"),
        (&bad_value, &[], "max_body"),
        (&invalid, &[], "heartbeat_max"),
        // `rim logic` needs a JWT key: its defaults alone do not start.
        (&good, &["--role", "logic"], "auth.secret"),
    ];
    for (file, extra, key) in cases {
        let mut args = vec!["check-config", "-c", file.arg()];
        args.extend_from_slice(extra);
        let (status, stdout, stderr) = run_to_exit(&args).await;
        assert_eq!(status.code(), Some(EX_CONFIG), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains(key),
            "{args:?}: does not name {key}:\n{stderr}"
        );
        assert!(
            stderr.contains(file.arg()),
            "{args:?}: names no file:\n{stderr}"
        );
    }
}
