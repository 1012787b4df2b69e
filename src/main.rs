//! The `rim` command: `rim standalone` runs the whole push pipeline in one
//! process; `rim logic|router|job|comet -c FILE` run one component each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rim::config::{StandaloneConfig, Validate};
use rim::process;
use rim::standalone::Standalone;
use rim::wiring;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// rim: a goim-compatible push server (TCP and WebSocket clients, HTTP push API).
///
/// Logging follows RUST_LOG (default "info"), e.g. RUST_LOG=rim_comet=debug.
#[derive(Debug, Parser)]
#[command(name = "rim", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run logic, router, job and comet in one process: no Kafka, no Redis, no config file needed.
    ///
    /// Defaults: clients on TCP :3101 and WebSocket :3102 (path /sub), HTTP push API,
    /// /metrics, the admin console (/admin/) and the demo (/demo/) on :3111.
    Standalone(StandaloneArgs),
    /// Run the HTTP push API and the logic gRPC service (HTTP :3111, gRPC :3119); needs Kafka and routers.
    Logic(ProcessArgs),
    /// Run one router shard (gRPC :3129), in memory or on Redis.
    Router(ProcessArgs),
    /// Run a job: consume Kafka and push to comets over gRPC.
    Job(ProcessArgs),
    /// Run a comet: client listeners (TCP :3101, WebSocket :3102) and the push gRPC service (:3109).
    Comet(ProcessArgs),
    /// Load generator: drive any goim-compatible server over TCP/WebSocket and its HTTP API.
    #[cfg(feature = "bench")]
    Bench(rim_bench::BenchArgs),
    /// Validate a configuration file and print every effective setting with its default.
    ///
    /// Prints TOML (dotted keys): each setting the file changes is followed by
    /// `# default: ...`; secrets show as <redacted>. A bad file prints the
    /// error, naming the file and the key, and exits 78.
    CheckConfig(CheckConfigArgs),
    /// Print a client JWT signed with the key of a configuration's [logic.auth], for trying jwt mode.
    ///
    /// HS256 signs with logic.auth.secret; RS256/ES256 need --private-key
    /// (the config names only the public key). issuer and audience come from
    /// the config. Connect with the JWT as the op 7 body, or in the "token"
    /// field of goim's JSON token.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct CheckConfigArgs {
    /// The TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Which process the file is for.
    #[arg(long, value_enum, default_value = "standalone")]
    role: rim::tools::Role,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The user id (claim sub).
    #[arg(long)]
    mid: i64,
    /// The room the connection joins (claim room), e.g. live://1000.
    #[arg(long)]
    room: Option<String>,
    /// The ops the connection accepts for keyed and broadcast pushes (claim accepts), comma-separated.
    #[arg(long, value_delimiter = ',')]
    accepts: Option<Vec<i32>>,
    /// Make the session an IM session (claim im: true).
    #[arg(long)]
    im: bool,
    /// How long the token is valid, e.g. 90s, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: std::time::Duration,
    /// The configuration file whose [logic.auth] names the key (standalone or logic).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// RS256/ES256: the PEM private key whose public half is logic.auth.public_key_file.
    #[arg(long, value_name = "FILE")]
    private_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct StandaloneArgs {
    /// TOML configuration file (sections [comet], [logic], [job], [router], [queue], [mailbox], [web]);
    /// see config/standalone.example.toml. Flags below override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the HTTP push API (overrides logic.http_bind).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// TCP client listener address; repeat for several (overrides comet.tcp_bind).
    #[arg(long, value_name = "ADDR")]
    tcp: Vec<String>,
    /// WebSocket client listener address; repeat for several (overrides comet.ws_bind).
    #[arg(long, value_name = "ADDR")]
    ws: Vec<String>,
    /// goim TCP over TLS listener address; repeat for several (overrides
    /// comet.tls_bind; needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    tls: Vec<String>,
    /// WebSocket over TLS (WSS) listener address; repeat for several (overrides
    /// comet.wss_bind; needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    wss: Vec<String>,
    /// PEM certificate chain for the TLS listeners, leaf first (overrides comet.tls_cert).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners (overrides comet.tls_key).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// This comet's server id (overrides comet.server_id; default: the host name).
    #[arg(long, value_name = "ID")]
    server_id: Option<String>,
    /// Data directory of the embedded mailbox store (overrides mailbox.data;
    /// default: rim-data in the working directory).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Once listening, print one line `READY {json}` with the bound addresses
    /// (http, tcp, ws, tls, wss; metrics are on the http address) and the
    /// server id on stdout (for scripts and tests that bind port 0).
    #[arg(long)]
    ready: bool,
}

impl StandaloneArgs {
    /// The configuration file (or the defaults) with the flags applied.
    fn config(self) -> anyhow::Result<StandaloneConfig> {
        let mut config = match &self.config {
            Some(path) => rim::config::load(path)?,
            None => StandaloneConfig::default(),
        };
        if let Some(data) = self.data {
            config.mailbox.data = data;
        }
        if let Some(http) = self.http {
            config.logic.http_bind = http;
        }
        if !self.tcp.is_empty() {
            config.comet.tcp_bind = self.tcp;
        }
        if !self.ws.is_empty() {
            config.comet.ws_bind = self.ws;
        }
        if !self.tls.is_empty() {
            config.comet.tls_bind = self.tls;
        }
        if !self.wss.is_empty() {
            config.comet.wss_bind = self.wss;
        }
        if let Some(cert) = self.tls_cert {
            config.comet.tls_cert = Some(cert);
        }
        if let Some(key) = self.tls_key {
            config.comet.tls_key = Some(key);
        }
        if let Some(id) = self.server_id {
            config.comet.server_id = Some(id);
        }
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, clap::Args)]
struct ProcessArgs {
    /// TOML configuration file; see config/<component>.example.toml. Without it, defaults apply.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Once listening, print one line `READY {json}` with the bound addresses on stdout
    /// (for scripts and tests that bind port 0).
    #[arg(long)]
    ready: bool,
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    let cli = Cli::parse();
    // The tools print and exit: no runtime, no logging setup.
    match cli.command {
        Command::CheckConfig(args) => return check_config(&args),
        Command::Token(args) => return token(&args),
        _ => {}
    }
    // Logs go to stderr (stdout carries only the `--ready` line); colours
    // only on a terminal, and not with NO_COLOR set.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rim: {e:#}");
            // EX_CONFIG (78) for configuration problems, 1 otherwise.
            ExitCode::from(if e.is::<rim::config::ConfigError>() {
                78
            } else {
                1
            })
        }
    }
}

fn check_config(args: &CheckConfigArgs) -> ExitCode {
    match rim::tools::check_config(&args.config, args.role) {
        Ok(report) => {
            print!("{report}");
            let role = format!("{:?}", args.role).to_lowercase();
            eprintln!(
                "rim: {} is a valid {role} configuration",
                args.config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rim: {e}");
            ExitCode::from(78)
        }
    }
}

fn token(args: &TokenArgs) -> ExitCode {
    let request = rim::tools::TokenRequest {
        mid: args.mid,
        room: args.room.clone(),
        accepts: args.accepts.clone(),
        im: args.im.then_some(true),
        ttl: args.ttl,
    };
    match rim::tools::token(&args.config, args.private_key.as_deref(), &request) {
        Ok((jwt, note)) => {
            if let Some(note) = note {
                eprintln!("rim: {note}");
            }
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rim: {e}");
            ExitCode::from(if matches!(e, rim::tools::TokenError::Config(_)) {
                78
            } else {
                1
            })
        }
    }
}

/// A process's configuration file, or its defaults; `run` validates it
/// before it binds.
fn load_or_default<T: Default + serde::de::DeserializeOwned>(
    path: &Option<PathBuf>,
) -> anyhow::Result<T> {
    Ok(match path {
        Some(p) => rim::config::read(p)?,
        None => T::default(),
    })
}

/// The Prometheus exporter: histograms get buckets (so they aggregate across
/// instances), latencies in seconds from 0.5 ms to 10 s, batch sizes in messages.
fn prometheus_builder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusBuilder> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const MESSAGES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];
    const COMETS: &[f64] = &[
        0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
    ];
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_messages".into()), MESSAGES)?
        .set_buckets_for_metric(Matcher::Suffix("_comets".into()), COMETS)?)
}

async fn run(command: Command) -> anyhow::Result<()> {
    let metrics = prometheus_builder()?.install_recorder()?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received, shutting down");
            shutdown.cancel();
        }
    });
    match command {
        Command::Standalone(args) => standalone(args, metrics, shutdown).await,
        #[cfg(feature = "bench")]
        Command::Bench(args) => rim_bench::run(args, shutdown).await,
        Command::Logic(args) => {
            process::logic::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
        Command::Router(args) => {
            process::router::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
        Command::Job(args) => {
            process::job::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
        Command::CheckConfig(_) | Command::Token(_) => {
            unreachable!("handled in main before the runtime starts")
        }
        Command::Comet(args) => {
            process::comet::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
    }
}

async fn standalone(
    args: StandaloneArgs,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ready = args.ready;
    let config = args.config()?;
    let server_id = config.comet.server_id();
    let server = Standalone::bind_and_start(config, Some(metrics)).await?;
    let strings = |addrs: &[std::net::SocketAddr]| -> Vec<String> {
        addrs.iter().map(ToString::to_string).collect()
    };
    wiring::announce(
        ready,
        serde_json::json!({
            "server_id": server_id,
            "http": server.http_addr.to_string(),
            "tcp": strings(&server.tcp_addrs),
            "ws": strings(&server.ws_addrs),
            "tls": strings(&server.tls_addrs),
            "wss": strings(&server.wss_addrs),
            "metrics": server.http_addr.to_string(),
        }),
    );
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        token.cancel();
    });
    server.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops rim");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn standalone_args(args: &[&str]) -> StandaloneArgs {
        let cli = Cli::try_parse_from([&["rim", "standalone"], args].concat()).unwrap();
        match cli.command {
            Command::Standalone(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn standalone_flags_override_the_config() {
        let config = standalone_args(&[
            "--http=127.0.0.1:1",
            "--tcp=127.0.0.1:2",
            "--ws=127.0.0.1:3",
            "--tls=127.0.0.1:4",
            "--tls=127.0.0.1:5",
            "--wss=127.0.0.1:6",
            "--tls-cert=/c.pem",
            "--tls-key=/k.pem",
            "--server-id=s1",
        ]);
        assert!(!config.ready);
        let config = config.config().unwrap();
        assert_eq!(config.logic.http_bind, "127.0.0.1:1");
        assert_eq!(config.comet.tcp_bind, ["127.0.0.1:2"]);
        assert_eq!(config.comet.ws_bind, ["127.0.0.1:3"]);
        assert_eq!(config.comet.tls_bind, ["127.0.0.1:4", "127.0.0.1:5"]);
        assert_eq!(config.comet.wss_bind, ["127.0.0.1:6"]);
        assert_eq!(config.comet.tls_cert.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(config.comet.tls_key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(config.comet.server_id.as_deref(), Some("s1"));
    }

    #[test]
    fn standalone_takes_ready() {
        assert!(standalone_args(&["--ready"]).ready);
    }

    #[test]
    fn tls_listeners_without_a_certificate_are_refused() {
        let err = standalone_args(&["--tls=127.0.0.1:4"])
            .config()
            .unwrap_err();
        assert!(err.to_string().contains("tls"), "{err:#}");
    }
}
