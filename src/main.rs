//! The `rim` command: `rim standalone` runs the whole push pipeline in one
//! process; `rim logic|router|job|comet -c FILE` run one component each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rim::config::StandaloneConfig;
use rim::distributed;
use rim::standalone::Standalone;
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
    /// Defaults: clients on TCP :3101 and WebSocket :3102 (path /sub), HTTP push API
    /// and /metrics on :3111.
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
    Bench(rim::bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct StandaloneArgs {
    /// TOML configuration file (sections [comet], [logic], [job], [router], [queue]);
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
    /// This comet's server id (overrides comet.server_id; default: the host name).
    #[arg(long, value_name = "ID")]
    server_id: Option<String>,
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
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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

fn load_or_default<T: Default + serde::de::DeserializeOwned>(
    path: &Option<PathBuf>,
) -> anyhow::Result<T> {
    Ok(match path {
        Some(p) => distributed::load(p)?,
        None => T::default(),
    })
}

async fn run(command: Command) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
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
        Command::Bench(args) => rim::bench::run(args, shutdown).await,
        Command::Logic(args) => {
            distributed::logic::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
        Command::Router(args) => {
            distributed::router::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
        Command::Job(args) => {
            distributed::job::run(
                load_or_default(&args.config)?,
                Some(metrics),
                args.ready,
                shutdown,
            )
            .await
        }
        Command::Comet(args) => {
            distributed::comet::run(
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
    let mut config = match &args.config {
        Some(path) => StandaloneConfig::load(path)?,
        None => StandaloneConfig::default(),
    };
    if let Some(http) = args.http {
        config.logic.http_bind = http;
    }
    if !args.tcp.is_empty() {
        config.comet.tcp_bind = args.tcp;
    }
    if !args.ws.is_empty() {
        config.comet.ws_bind = args.ws;
    }
    if let Some(id) = args.server_id {
        config.comet.server_id = Some(id);
    }
    config.validate()?;
    let server = Standalone::bind_and_start(config, Some(metrics)).await?;
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
