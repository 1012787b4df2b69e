//! The `rim` command: `rim standalone` runs the whole push pipeline in one process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rim::config::StandaloneConfig;
use rim::standalone::Standalone;
use tracing_subscriber::EnvFilter;

/// rim: a goim-compatible push server (TCP and WebSocket clients, HTTP push API).
#[derive(Debug, Parser)]
#[command(name = "rim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run logic, router, job and comet in one process: no Kafka, no Redis, no config file needed.
    ///
    /// Defaults: clients on TCP :3101 and WebSocket :3102 (path /sub), HTTP push API on :3111.
    /// Logging follows RUST_LOG (default "info").
    Standalone(StandaloneArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Standalone(args) => standalone(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rim: {e:#}");
            // EX_CONFIG for configuration problems, 1 otherwise.
            ExitCode::from(if e.is::<rim::config::ConfigError>() { 78 } else { 1 })
        }
    }
}

async fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
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
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let server = Standalone::bind_and_start(config, Some(metrics)).await?;
    let token = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received, shutting down");
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
