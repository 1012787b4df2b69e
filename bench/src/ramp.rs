//! Bringing a run's clients up and down, the same in every client mode:
//! the flag checks they share, address resolution, the file descriptor
//! limit, the ramp that starts client i at `--ramp-rate` with its
//! transport (`--ws-ratio`) and source address (`--source-addrs`), the wait
//! until every client is up or has failed, and joining the client tasks at
//! the end.
//!
//! What a client does once it is up, and what a mode measures, is the
//! mode's own (`run`, `im`, `chat`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{self, Route};
use super::tally::{bump, count, Tally};
use super::BenchArgs;

/// Checks the flags every client mode reads: `--ws-ratio`, `--ramp-rate`
/// and `--rate`.
pub(crate) fn check_flags(args: &BenchArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.ws_ratio) {
        bail!("--ws-ratio must be between 0 and 1");
    }
    if args.ramp_rate <= 0.0 || args.rate <= 0.0 {
        bail!("--ramp-rate and --rate must be positive");
    }
    Ok(())
}

/// The first address of `--{what} {addr}`.
pub(crate) async fn resolve(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolve --{what} {addr}"))?
        .next()
        .with_context(|| format!("--{what} {addr}: no address"))
}

/// Raises the file descriptor limit to at least `want` (`who` need them,
/// e.g. "1000 clients"); fails when the hard limit is lower (`fewer` names
/// what to cut).
pub(crate) fn raise_nofile(want: u64, who: &str, fewer: &str) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(want.max(65_536)).context("raise RLIMIT_NOFILE")?;
    if limit < want {
        bail!(
            "RLIMIT_NOFILE is {limit} (the hard limit), but {who} need about {want}; \
             raise the hard limit (ulimit -Hn) or use fewer {fewer}"
        );
    }
    Ok(())
}

/// Starts clients 1..=N at `--ramp-rate` and shows their progress.
pub(crate) struct Ramp {
    tcp: SocketAddr,
    ws: SocketAddr,
    rate: f64,
    ws_ratio: f64,
    /// Local source addresses 127.0.0.2.. to spread over; 0: none.
    sources: usize,
    progress: ProgressBar,
    start: Instant,
}

impl Ramp {
    /// A ramp of `clients` clients to the server's `tcp` and `ws`
    /// addresses; its clock starts now.
    pub(crate) fn start(args: &BenchArgs, tcp: SocketAddr, ws: SocketAddr, clients: u32) -> Ramp {
        // Source addresses: 127.0.0.2.. for a loopback IPv4 server.
        let loopback = |a: SocketAddr| matches!(a.ip(), IpAddr::V4(ip) if ip.is_loopback());
        let sources = if args.source_addrs > 0 && loopback(tcp) && loopback(ws) {
            usize::from(args.source_addrs.min(250))
        } else {
            0
        };
        let progress = ProgressBar::new(u64::from(clients));
        progress.set_style(
            ProgressStyle::with_template(
                "{msg:12} [{bar:40}] {pos}/{len} conns ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        progress.set_message("connecting");
        Ramp {
            tcp,
            ws,
            rate: args.ramp_rate,
            ws_ratio: args.ws_ratio,
            sources,
            progress,
            start: Instant::now(),
        }
    }

    /// The bar a client advances once it is up.
    pub(crate) fn progress(&self) -> ProgressBar {
        self.progress.clone()
    }

    /// Waits until client `i` (1-based) is due, then answers how it
    /// connects: `--ws-ratio` of the clients, spread evenly, use WebSocket.
    pub(crate) async fn next(&self, i: u32) -> Route {
        let due = self.start + Duration::from_secs_f64(f64::from(i - 1) / self.rate);
        tokio::time::sleep_until(due).await;
        let ws =
            (f64::from(i) * self.ws_ratio).floor() != (f64::from(i - 1) * self.ws_ratio).floor();
        let source = (self.sources > 0).then(|| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + ((i as usize - 1) % self.sources) as u8,
            ))
        });
        Route {
            target: if ws { self.ws } else { self.tcp },
            ws,
            source,
        }
    }

    /// Polls `up` as `wait` says until it holds, then closes the progress
    /// bar; answers how the ramp ended by `tally`.
    pub(crate) async fn settle(&self, tally: &Tally, wait: Wait, up: impl Fn() -> bool) -> Settled {
        let deadline = Instant::now() + wait.timeout;
        while !up() && Instant::now() < deadline {
            tokio::time::sleep(wait.poll).await;
        }
        let secs = self.start.elapsed().as_secs_f64();
        self.progress.finish_with_message("connected");
        Settled {
            secs,
            ready: count(&tally.ready),
            failed: count(&tally.failed),
        }
    }
}

/// How long to wait for the clients to come up after the last one was
/// started, and how often to look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub(crate) timeout: Duration,
    pub(crate) poll: Duration,
}

/// How a ramp ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settled {
    /// From the ramp's start until every client was up (or the wait ended).
    pub(crate) secs: f64,
    /// Clients up.
    pub(crate) ready: u64,
    /// Clients that could not connect.
    pub(crate) failed: u64,
}

/// Brings one client up: `connect` under the connect deadline, unless
/// `stop` comes first; counts client `mid` in `tally` as up (advancing
/// `progress`) or as failed. `None`: it did not come up.
pub(crate) async fn come_up<T>(
    mid: u32,
    connect: impl Future<Output = anyhow::Result<T>>,
    tally: &Tally,
    progress: &ProgressBar,
    stop: &CancellationToken,
) -> Option<T> {
    let connected = tokio::select! {
        r = conn::within_timeout(connect) => r,
        _ = stop.cancelled() => return None,
    };
    match connected {
        Ok(c) => {
            bump(&tally.ready);
            progress.inc(1);
            Some(c)
        }
        Err(e) => {
            tally.connect_failed(mid, e);
            None
        }
    }
}

/// Waits for every client task and answers what each handed back.
pub(crate) async fn join<T>(clients: Vec<JoinHandle<T>>) -> anyhow::Result<Vec<T>> {
    let mut outcomes = Vec::with_capacity(clients.len());
    for c in clients {
        outcomes.push(c.await.context("client task")?);
    }
    Ok(outcomes)
}
