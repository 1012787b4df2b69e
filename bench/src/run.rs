//! `rim bench`'s entry point, which hands each scenario to its run, and
//! the goim scenarios' run (idle, room, keyed, broadcast, api): ramp, push,
//! drain, count, report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::{self, ClientConfig, ClientOutcome, ClientSpec, Shared};
use super::procfs::Probe;
use super::push::{push_phase, Pace, PushSettings, Target};
use super::ramp::{self, Ramp, Wait};
use super::report::{self, delivery_secs, ProcessCpu, Report, Settings};
use super::tally::{count, unix_nanos};
use super::{BenchArgs, Scenario};

/// The wait for the clients after the ramp.
const RAMP_WAIT: Wait = Wait {
    timeout: Duration::from_secs(20),
    poll: Duration::from_millis(50),
};

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

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    ramp::check_flags(&args)?;
    if args.rooms == 0 || args.concurrency == 0 || args.mids_per_push == 0 {
        bail!("--rooms, --concurrency and --mids-per-push must be at least 1");
    }
    let n = args.connections;
    let tcp = ramp::resolve(&args.tcp, "tcp").await?;
    let ws = ramp::resolve(&args.ws, "ws").await?;
    let http = ramp::resolve(&args.http, "http").await?;

    // File descriptors: one per client, the HTTP pool, and some slack.
    let want = u64::from(n) + u64::from(args.concurrency) + 256;
    ramp::raise_nofile(want, &format!("{n} connections"), "connections")?;

    let probe = Probe::new(args.server_pid);
    let mut readings = probe.before_connect()?;

    // Ramp.
    let ramp = Ramp::start(&args, tcp, ws, n);
    let cfg = Arc::new(ClientConfig {
        op: args.operation,
        heartbeat: args.heartbeat,
        progress: ramp.progress(),
    });
    let shared = Arc::new(Shared::new());
    let stop = CancellationToken::new();
    let mut clients: Vec<JoinHandle<ClientOutcome>> = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let spec = ClientSpec {
            index: i,
            route: ramp.next(i).await,
            room: format!("{}://{}", args.room_type, (i - 1) % args.rooms),
        };
        clients.push(tokio::spawn(client::run(
            spec,
            cfg.clone(),
            shared.clone(),
            stop.clone(),
        )));
    }
    let tally = &shared.tally;
    let settled = ramp.settle(tally, RAMP_WAIT, || tally.all_in(n)).await;
    let (ramp_secs, ready, failed) = (settled.secs, settled.ready, settled.failed);
    eprintln!(
        "{ready} of {n} clients connected and authenticated in {ramp_secs:.1}s ({failed} failed)"
    );
    tally.check_ramp(n, "the server")?;
    readings.after_connect = probe.server_after(args.settle).await?;
    let others_before = probe.others(&args.cpu_pid)?;

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
    readings.bench_start = probe.bench();
    let push_start_unix = unix_nanos();
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
            move || format!("delivered {}", count(&shared.arrivals.delivered))
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
    readings.after_push = probe.server()?;
    let others_after = probe.others(&args.cpu_pid)?;
    readings.bench_end = probe.bench();
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
    let outcomes = ramp::join(clients).await?;
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
    let arrivals = &shared.arrivals;
    let delivered = count(&arrivals.delivered);

    let report = Report {
        scenario: args.scenario,
        settings: Settings::from_args(&args),
        connections: ready,
        connections_failed: failed,
        disconnected: count(&tally.disconnected),
        ramp_secs,
        push_secs,
        pushes_sent: push.as_ref().map_or(0, |p| p.sent),
        pushes_accepted: accepted.len() as u64,
        pushes_rejected: push.as_ref().map_or(0, |p| p.rejected),
        push_errors: push.as_ref().map_or(0, |p| p.errors),
        expected,
        delivered,
        lost,
        duplicates: count(&arrivals.duplicates),
        foreign: count(&shared.foreign),
        delivery_secs: delivery_secs(push_start_unix, count(&arrivals.last_receipt_ns), push_secs),
        latency: arrivals.latency.merged(),
        http_latency: push.map(|p| p.http_latency),
        readings,
        processes,
        first_error: tally.first_error(),
    };
    report::output(&args, report.table(), &report.json(), || report.svg())
}
