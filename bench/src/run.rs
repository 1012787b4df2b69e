//! The bench run: ramp, push, drain, count, report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{self, ClientConfig, ClientOutcome, ClientSpec, Shared};
use super::procfs::{self, ProcSample};
use super::push::{push_phase, Pace, PushSettings, Target};
use super::report::{ProcessCpu, Report, Settings};
use super::{BenchArgs, Scenario};

/// Mids targeted by the api scenario when no clients are connected.
const API_OFFLINE_MIDS: u32 = 1000;

/// Runs `rim bench`; stops early with an error when `shutdown` is cancelled.
pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let scenario = async {
        if args.scenario == Scenario::Im {
            super::im::run(args).await
        } else if args.scenario == Scenario::Chat {
            super::chat::run(args).await
        } else {
            bench(args).await
        }
    };
    tokio::select! {
        r = scenario => r,
        _ = shutdown.cancelled() => bail!("interrupted"),
    }
}

pub(crate) async fn resolve(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolve --{what} {addr}"))?
        .next()
        .with_context(|| format!("--{what} {addr}: no address"))
}

/// CPU time (ns) of each `--cpu-pid` process, in order.
fn sample_others(pids: &[(String, u32)], ticks: u64) -> anyhow::Result<Vec<u64>> {
    pids.iter()
        .map(|(name, pid)| {
            procfs::sample(&pid.to_string(), ticks)
                .map(|s| s.cpu_ns)
                .with_context(|| format!("--cpu-pid {name}={pid}"))
        })
        .collect()
}

/// Server probe: RSS and CPU of `--server-pid`, when given.
pub(crate) struct Probe {
    pub(crate) pid: Option<String>,
    pub(crate) ticks: u64,
}

impl Probe {
    pub(crate) fn sample(&self) -> anyhow::Result<Option<ProcSample>> {
        match &self.pid {
            Some(pid) => procfs::sample(pid, self.ticks)
                .map(Some)
                .with_context(|| format!("--server-pid {pid}")),
            None => Ok(None),
        }
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.ws_ratio) {
        bail!("--ws-ratio must be between 0 and 1");
    }
    if args.ramp_rate <= 0.0 || args.rate <= 0.0 {
        bail!("--ramp-rate and --rate must be positive");
    }
    if args.rooms == 0 || args.concurrency == 0 || args.mids_per_push == 0 {
        bail!("--rooms, --concurrency and --mids-per-push must be at least 1");
    }
    let n = args.connections;
    let tcp = resolve(&args.tcp, "tcp").await?;
    let ws = resolve(&args.ws, "ws").await?;
    let http = resolve(&args.http, "http").await?;

    // File descriptors: one per client, the HTTP pool, and some slack.
    let want = u64::from(n) + u64::from(args.concurrency) + 256;
    let limit = rlimit::increase_nofile_limit(want.max(65_536)).context("raise RLIMIT_NOFILE")?;
    if limit < want {
        bail!(
            "RLIMIT_NOFILE is {limit} (the hard limit), but {n} connections need about {want}; \
             raise the hard limit (ulimit -Hn) or use fewer connections"
        );
    }

    let probe = Probe {
        pid: args.server_pid.map(|p| p.to_string()),
        ticks: procfs::clock_ticks(),
    };
    let before_connect = probe.sample()?;

    // Source addresses: 127.0.0.2.. for a loopback IPv4 server.
    let loopback = |a: SocketAddr| matches!(a.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let sources = if args.source_addrs > 0 && loopback(tcp) && loopback(ws) {
        usize::from(args.source_addrs.min(250))
    } else {
        0
    };

    // Ramp.
    let progress = ProgressBar::new(u64::from(n));
    progress.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:40}] {pos}/{len} conns ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.set_message("connecting");
    let cfg = Arc::new(ClientConfig {
        tcp,
        ws,
        op: args.operation,
        heartbeat: args.heartbeat,
        progress: progress.clone(),
    });
    let shared = Arc::new(Shared::new());
    let stop = CancellationToken::new();
    let mut clients: Vec<JoinHandle<ClientOutcome>> = Vec::with_capacity(n as usize);
    let ramp_start = Instant::now();
    for i in 1..=n {
        let due = ramp_start + Duration::from_secs_f64(f64::from(i - 1) / args.ramp_rate);
        tokio::time::sleep_until(due).await;
        let ws_client =
            (f64::from(i) * args.ws_ratio).floor() != (f64::from(i - 1) * args.ws_ratio).floor();
        let source = (sources > 0).then(|| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + ((i as usize - 1) % sources) as u8,
            ))
        });
        let spec = ClientSpec {
            index: i,
            ws: ws_client,
            room: format!("{}://{}", args.room_type, (i - 1) % args.rooms),
            source,
        };
        clients.push(tokio::spawn(client::run(
            spec,
            cfg.clone(),
            shared.clone(),
            stop.clone(),
        )));
    }
    let settle_deadline = Instant::now() + Duration::from_secs(20);
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
        < u64::from(n)
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    progress.finish_with_message("connected");
    eprintln!(
        "{ready} of {n} clients connected and authenticated in {ramp_secs:.1}s ({failed} failed)"
    );
    if let Some(e) = shared.first_error() {
        eprintln!("first client error: {e}");
    }
    if n > 0 && ready == 0 {
        bail!("no client could connect; is the server running at --tcp/--ws?");
    }
    tokio::time::sleep(args.settle).await;
    let after_connect = probe.sample()?;
    let others_before = sample_others(&args.cpu_pid, probe.ticks)?;

    // Push phase.
    let target = match args.scenario {
        Scenario::Idle => Target::None,
        Scenario::Room => Target::Room { rooms: args.rooms },
        Scenario::Keyed => Target::Mids {
            n: n.max(1),
            m: args.mids_per_push.min(n.max(1)),
        },
        Scenario::Api => Target::Mids {
            n: if n > 0 { n } else { API_OFFLINE_MIDS },
            m: args
                .mids_per_push
                .min(if n > 0 { n } else { API_OFFLINE_MIDS }),
        },
        Scenario::Broadcast => Target::All,
        Scenario::Im | Scenario::Chat => bail!("the im and chat scenarios have their own runs"),
    };
    let bench_start = procfs::sample("self", probe.ticks).ok();
    let push_start_unix = client::unix_nanos();
    let mut push = None;
    let mut push_secs = 0.0;
    if args.scenario == Scenario::Idle {
        eprintln!("holding {ready} connections for {:?}", args.hold);
        tokio::time::sleep(args.hold).await;
    } else {
        let settings = PushSettings {
            op: args.operation,
            room_type: args.room_type.clone(),
            payload_size: args.payload_size,
            store: false,
        };
        let pace = if args.scenario == Scenario::Api {
            Pace::Flat(args.duration)
        } else {
            Pace::Rate {
                rate: args.rate,
                duration: args.duration,
            }
        };
        let status = {
            let shared = shared.clone();
            move || format!("delivered {}", shared.delivered.load(Ordering::Relaxed))
        };
        let (merged, secs) =
            push_phase(http, target, settings, pace, args.concurrency, status).await?;
        push_secs = secs;
        if ready > 0 {
            eprintln!("draining for {:?}", args.drain);
            tokio::time::sleep(args.drain).await;
        }
        push = Some(merged);
    }
    let after_push = probe.sample()?;
    let others_after = sample_others(&args.cpu_pid, probe.ticks)?;
    let bench_end = procfs::sample("self", probe.ticks).ok();
    let processes = args
        .cpu_pid
        .iter()
        .zip(others_before.iter().zip(&others_after))
        .map(|((name, pid), (b, a))| ProcessCpu {
            name: name.clone(),
            pid: *pid,
            cpu_ns: a.saturating_sub(*b),
        })
        .collect();

    // Stop the clients and count.
    stop.cancel();
    let mut outcomes = Vec::with_capacity(clients.len());
    for c in clients {
        outcomes.push(c.await.context("client task")?);
    }
    let mut accepted = push
        .as_ref()
        .map(|p| p.accepted.clone())
        .unwrap_or_default();
    accepted.sort_unstable();
    let mut expected = 0u64;
    let mut lost = 0u64;
    for o in outcomes.iter().filter(|o| o.ready) {
        for &seq in &accepted {
            if target.hits(seq, o.index) {
                expected += 1;
                if !o.seqs.contains(seq) {
                    lost += 1;
                }
            }
        }
    }
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let last = shared.last_receipt_ns.load(Ordering::Relaxed);
    let delivery_secs = if last > push_start_unix {
        (last - push_start_unix) as f64 / 1e9
    } else {
        push_secs
    };
    let bench_rss_kb = bench_end.map(|s| s.rss_kb);
    let bench_cpu_ms = bench_start
        .zip(bench_end)
        .map(|(a, b)| b.cpu_ns.saturating_sub(a.cpu_ns) / 1_000_000);

    let report = Report {
        scenario: args.scenario,
        settings: Settings::from_args(&args),
        connections: ready,
        connections_failed: failed,
        disconnected: shared.disconnected.load(Ordering::Relaxed),
        ramp_secs,
        push_secs,
        pushes_sent: push.as_ref().map_or(0, |p| p.sent),
        pushes_accepted: accepted.len() as u64,
        pushes_rejected: push.as_ref().map_or(0, |p| p.rejected),
        push_errors: push.as_ref().map_or(0, |p| p.errors),
        expected,
        delivered,
        lost,
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        foreign: shared.foreign.load(Ordering::Relaxed),
        delivery_secs,
        latency: shared.latency(),
        http_latency: push.map(|p| p.http_latency),
        before_connect,
        after_connect,
        push_start: after_connect,
        after_push,
        bench_rss_kb,
        bench_cpu_ms,
        processes,
        first_error: shared.first_error(),
    };
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json())?)
            .with_context(|| format!("write --json {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, report.svg())
            .with_context(|| format!("write --chart {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
