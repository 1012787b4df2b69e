//! `rim bench im`: durable messaging. Stored pushes (`store=1`) through the
//! HTTP API, IM clients that sync and take stored frames live, and the
//! check that every client ends holding every seq of its mailbox once.
//!
//! Each user's cursor (`GET /rim/v1/users/{mid}/cursor`) is read before the
//! run (a client starts from that `top`, with `since`) and after it (the
//! seqs the client must hold), so the check needs no fresh data directory
//! and does not trust the push answers: a push that timed out but was
//! stored is still expected at its client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::http::HttpConn;
use super::im_client::{ImClient, ImConfig, ImOutcome, ImShared, ImSpec};
use super::procfs::Probe;
use super::push::{push_phase, Pace, PushOutcome, PushSettings, Target};
use super::ramp::{self, Ramp, Wait};
use super::report::{
    self, fmt_lat, latency_json, latency_svg, or_dash, per_sec, Failures, Settings, Table,
};
use super::tally::{count, unix_nanos};
use super::{BenchArgs, ImMode};

/// The wait for the clients after the ramp.
const RAMP_WAIT: Wait = Wait {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(20),
};

/// Users the pushes go to when no client connects and --users is not given.
const OFFLINE_USERS: u32 = 1000;
/// Mids per request when filling mailboxes before a sync run.
const FILL_MIDS_PER_PUSH: u32 = 100;
/// Concurrent cursor reads.
const CURSOR_CONCURRENCY: u32 = 32;
/// Attempts per cursor read.
const CURSOR_ATTEMPTS: u32 = 3;

/// A user's mailbox position, from the cursor API.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct Cursor {
    epoch: String,
    top: u32,
}

/// Reads the cursors of mids 1..=users (index mid - 1).
async fn cursors(http: SocketAddr, users: u32) -> anyhow::Result<Vec<Cursor>> {
    let next = Arc::new(AtomicU32::new(1));
    let tasks: Vec<_> = (0..CURSOR_CONCURRENCY.min(users.max(1)))
        .map(|_| tokio::spawn(cursor_worker(http, next.clone(), users)))
        .collect();
    let mut all = vec![Cursor::default(); users as usize];
    for t in tasks {
        for (mid, c) in t.await.context("cursor task")?? {
            all[mid as usize - 1] = c;
        }
    }
    Ok(all)
}

/// Reads the cursors of the next mids until all of 1..=users are taken.
async fn cursor_worker(
    http: SocketAddr,
    next: Arc<AtomicU32>,
    users: u32,
) -> anyhow::Result<Vec<(u32, Cursor)>> {
    let mut conn = HttpConn::new(http);
    let mut got = Vec::new();
    loop {
        let mid = next.fetch_add(1, Ordering::Relaxed);
        if mid > users {
            return Ok(got);
        }
        got.push((mid, cursor(&mut conn, mid).await?));
    }
}

async fn cursor(conn: &mut HttpConn, mid: u32) -> anyhow::Result<Cursor> {
    let path = format!("/rim/v1/users/{mid}/cursor");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match conn.get(&path).await {
            Ok(answer) if answer.status == 200 => serde_json::from_slice::<Cursor>(&answer.body)
                .with_context(|| {
                    format!(
                        "GET {path}: not a cursor: {}",
                        String::from_utf8_lossy(&answer.body)
                    )
                }),
            Ok(answer) => Err(anyhow::anyhow!(
                "GET {path}: HTTP {} {} (is this rim standalone, with a mailbox store?)",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )),
            Err(e) => Err(e.context(format!("GET {path}"))),
        };
        match result {
            Ok(c) => return Ok(c),
            Err(e) if attempt >= CURSOR_ATTEMPTS => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Checks the flags and answers (clients, users).
fn sizes(args: &BenchArgs) -> anyhow::Result<(u32, u32)> {
    ramp::check_flags(args)?;
    if args.concurrency == 0 || args.mids_per_push == 0 {
        bail!("--concurrency and --mids-per-push must be at least 1");
    }
    let n = args.connections;
    let users = args.users.unwrap_or(if n > 0 { n } else { OFFLINE_USERS });
    match args.mode {
        ImMode::Store => {
            if users == 0 {
                bail!("--users must be at least 1");
            }
        }
        ImMode::Sync => {
            if args.messages == 0 {
                bail!("--messages must be at least 1");
            }
        }
        ImMode::Storm => {
            if args.duration <= args.hold + args.storm {
                bail!(
                    "--duration ({:?}) must be longer than --hold ({:?}) plus --storm ({:?}): \
                     the pushes run through the storm",
                    args.duration,
                    args.hold,
                    args.storm
                );
            }
        }
        ImMode::Deliver | ImMode::Idle => {}
    }
    if args.mode != ImMode::Store && n == 0 {
        bail!("--mode {} needs clients (-c)", args.mode.name());
    }
    if users < n {
        bail!("--users ({users}) must be at least -c ({n}): client i is mid i");
    }
    Ok((n, users))
}

/// Runs `rim bench im`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (n, users) = sizes(&args)?;
    let mode = args.mode;
    let tcp = ramp::resolve(&args.tcp, "tcp").await?;
    let ws = ramp::resolve(&args.ws, "ws").await?;
    let http = ramp::resolve(&args.http, "http").await?;

    // File descriptors: one per client (a storm closes the old connection
    // before it opens the new one), the HTTP pools, and some slack.
    let want = u64::from(n) + u64::from(args.concurrency) + u64::from(CURSOR_CONCURRENCY) + 256;
    ramp::raise_nofile(want, &format!("{n} IM clients"), "clients")?;
    let probe = Probe::new(args.server_pid);

    let pushed_users = if mode == ImMode::Sync { n } else { users };
    eprintln!("reading the cursors of mids 1..={pushed_users}");
    let start_cursors = cursors(http, pushed_users).await?;

    // Sync: fill the mailboxes while every client is offline.
    let mut fill = None;
    if mode == ImMode::Sync {
        let m = FILL_MIDS_PER_PUSH.min(n);
        let requests = Target::chunks(n, m) * args.messages;
        eprintln!(
            "storing {} messages in each of {n} mailboxes ({requests} requests of up to {m} mids)",
            args.messages
        );
        let settings = PushSettings {
            op: args.operation,
            room_type: String::new(),
            payload_size: args.payload_size,
            store: true,
        };
        let (outcome, secs) = push_phase(
            http,
            Target::Chunks { n, m },
            settings,
            Pace::Count(requests),
            args.concurrency,
            String::new,
        )
        .await?;
        let filled = cursors(http, n).await?;
        let short = start_cursors
            .iter()
            .zip(&filled)
            .filter(|(a, b)| b.top.saturating_sub(a.top) != args.messages)
            .count();
        eprintln!(
            "stored {} messages in {secs:.1} s ({} appends/s, {} requests/s)",
            outcome.appends,
            per_sec(outcome.appends, secs),
            per_sec(outcome.accepted.len() as u64, secs)
        );
        if short > 0 {
            bail!(
                "{short} of {n} mailboxes did not gain exactly {} messages while filling \
                 (first push error: {})",
                args.messages,
                outcome.first_error.as_deref().unwrap_or("none")
            );
        }
        // The clients start from before the fill: the fill is what they sync.
        fill = Some((outcome, secs));
    }

    let mut readings = probe.before_connect()?;
    let ramp = Ramp::start(&args, tcp, ws, n);
    let cfg = Arc::new(ImConfig {
        op: args.operation,
        heartbeat: args.heartbeat,
        sync_on_connect: mode != ImMode::Idle,
        sync_request: args.sync_request,
        clients: n,
        storm_window: args.storm,
        progress: ramp.progress(),
    });
    let shared = Arc::new(ImShared::new());
    let stop = CancellationToken::new();
    let (storm_tx, storm_rx) = watch::channel(None);
    let mut clients: Vec<JoinHandle<ImOutcome>> = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let route = ramp.next(i).await;
        let start = &start_cursors[i as usize - 1];
        let client = ImClient::new(
            ImSpec { mid: i, route },
            cfg.clone(),
            shared.clone(),
            start.top,
            (!start.epoch.is_empty()).then(|| start.epoch.clone()),
        );
        clients.push(tokio::spawn(client.run(stop.clone(), storm_rx.clone())));
    }
    drop(storm_rx);
    // Wait for every client to be connected and, when it syncs, synced.
    let tally = &shared.tally;
    let settled = ramp
        .settle(tally, RAMP_WAIT, || {
            if cfg.sync_on_connect {
                let done = count(&shared.synced) + count(&tally.failed);
                done + count(&tally.disconnected) >= u64::from(n)
            } else {
                tally.all_in(n)
            }
        })
        .await;
    let (ramp_secs, ready, failed) = (settled.secs, settled.ready, settled.failed);
    eprintln!(
        "{ready} of {n} IM clients connected in {ramp_secs:.1}s ({failed} failed, {} synced)",
        count(&shared.synced)
    );
    tally.check_ramp(n, "rim standalone")?;
    readings.after_connect = probe.server_after(args.settle).await?;

    // Pushes.
    readings.bench_start = probe.bench();
    let mut push: Option<(PushOutcome, f64)> = None;
    let mut storm_start_unix = None;
    match mode {
        ImMode::Idle => {
            eprintln!("holding {ready} IM sessions for {:?}", args.hold);
            tokio::time::sleep(args.hold).await;
        }
        ImMode::Sync => {}
        ImMode::Store | ImMode::Deliver | ImMode::Storm => {
            let settings = PushSettings {
                op: args.operation,
                room_type: String::new(),
                payload_size: args.payload_size,
                store: true,
            };
            let pace = if mode == ImMode::Store {
                Pace::Flat(args.duration)
            } else {
                Pace::Rate {
                    rate: args.rate,
                    duration: args.duration,
                }
            };
            let storm = (mode == ImMode::Storm).then(|| {
                let hold = args.hold;
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    let at = unix_nanos();
                    eprintln!(
                        "storm: every client drops its connection and reconnects within --storm"
                    );
                    let _ = storm_tx.send(Some(Instant::now()));
                    at
                })
            });
            let status = {
                let shared = shared.clone();
                move || {
                    format!(
                        "delivered {} resynced {}",
                        count(&shared.delivered),
                        count(&shared.resynced)
                    )
                }
            };
            let target = Target::Mids {
                n: users,
                m: args.mids_per_push.min(users),
            };
            push = Some(push_phase(http, target, settings, pace, args.concurrency, status).await?);
            if let Some(storm) = storm {
                let at = storm.await.context("storm timer")?;
                storm_start_unix = Some(at);
                // Every client that is still up must finish its storm sync.
                let deadline = Instant::now() + args.storm + Duration::from_secs(30);
                while count(&shared.resynced) + count(&tally.disconnected) < ready
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if ready > 0 {
                eprintln!("draining for {:?}", args.drain);
                tokio::time::sleep(args.drain).await;
            }
        }
    }
    readings.after_push = probe.server()?;
    readings.bench_end = probe.bench();

    // Where every mailbox ends, then what each client holds.
    let end_cursors = if mode == ImMode::Idle {
        Vec::new()
    } else {
        cursors(http, pushed_users).await?
    };
    stop.cancel();
    let outcomes = ramp::join(clients).await?;

    let mut expected = 0u64;
    let mut lost = 0u64;
    let mut beyond_top = 0u64;
    let mut unsynced = 0u64;
    let mut users_short = 0u64;
    if mode != ImMode::Idle {
        for o in outcomes.iter().filter(|o| o.ready) {
            let i = o.mid as usize - 1;
            let want = u64::from(end_cursors[i].top.saturating_sub(start_cursors[i].top));
            let got = o.mailbox.received();
            let beyond = o
                .mailbox
                .ahead
                .iter()
                .filter(|&&s| s > end_cursors[i].top)
                .count() as u64
                + u64::from(o.mailbox.last.saturating_sub(end_cursors[i].top));
            expected += want;
            beyond_top += beyond;
            let missing = want.saturating_sub(got - beyond);
            lost += missing;
            users_short += u64::from(missing > 0);
            unsynced += u64::from(!o.synced);
        }
    }
    // Every append the API confirmed must be in a mailbox.
    let stored = start_cursors
        .iter()
        .zip(&end_cursors)
        .map(|(a, b)| u64::from(b.top.saturating_sub(a.top)))
        .sum::<u64>()
        .saturating_sub(fill.as_ref().map_or(0, |(o, _)| o.appends));
    let confirmed = push.as_ref().map_or(0, |(o, _)| o.appends);
    let unconfirmed_missing = confirmed.saturating_sub(stored);

    let storm_synced_s = storm_start_unix.and_then(|at| {
        let last = count(&shared.last_resync_ns);
        (count(&shared.resynced) >= ready && last > at).then(|| (last - at) as f64 / 1e9)
    });
    // When the last client's reconnect was due, after the storm's start.
    let last_reconnect_s =
        args.storm.as_secs_f64() * f64::from(n.saturating_sub(1)) / f64::from(n.max(1));
    let duplicates = count(&shared.duplicates);
    let out_of_order = count(&shared.out_of_order);
    let sync_errors = count(&shared.sync_errors);
    let incomplete = count(&shared.incomplete);
    let echo_mismatch = count(&shared.echo_mismatch);
    let mut failures = Failures::counted(&[
        ("lost", lost),
        ("duplicates", duplicates),
        ("out of order", out_of_order),
        ("sync errors", sync_errors),
        ("incomplete syncs (trimmed mailbox)", incomplete),
        ("op 19/20 echo mismatches", echo_mismatch),
        ("seqs above the mailbox top", beyond_top),
        (
            "confirmed appends missing from the mailboxes",
            unconfirmed_missing,
        ),
    ]);
    if failed > 0 {
        failures.push(format!("{failed} clients could not connect"));
    }
    if cfg.sync_on_connect && unsynced > 0 {
        failures.push(format!(
            "{unsynced} clients never finished their first sync"
        ));
    }
    if mode == ImMode::Storm && count(&shared.resynced) < ready {
        failures.push(format!(
            "{} of {ready} clients synced after the storm",
            count(&shared.resynced)
        ));
    }

    let latency = shared.latency.merged();
    let sync_latency = shared.sync_latency.lock().clone();
    let resync_latency = shared.resync_latency.lock().clone();
    let (requests_ok, appends, push_secs) = push.as_ref().map_or((0, 0, 0.0), |(o, s)| {
        (o.accepted.len() as u64, o.appends, *s)
    });
    let delivered = count(&shared.delivered);

    let json = json!({
        "scenario": "im",
        "mode": mode.name(),
        "users": pushed_users,
        "connections": ready,
        "connections_failed": failed,
        "disconnected": count(&tally.disconnected),
        "ramp_s": ramp_secs,
        "push_s": push_secs,
        "requests_sent": push.as_ref().map_or(0, |(o, _)| o.sent),
        "requests_accepted": requests_ok,
        "requests_rejected": push.as_ref().map_or(0, |(o, _)| o.rejected),
        "request_errors": push.as_ref().map_or(0, |(o, _)| o.errors),
        "requests_per_sec": per_sec(requests_ok, push_secs),
        "appends_confirmed": appends,
        "appends_per_sec": per_sec(appends, push_secs),
        "appends_stored": stored,
        "http_latency_us": push.as_ref().map_or(Value::Null, |(o, _)| latency_json(&o.http_latency)),
    });
    let checks = json!({
        "fill": fill.as_ref().map(|(o, s)| json!({
            "requests": o.accepted.len(),
            "appends": o.appends,
            "secs": s,
            "appends_per_sec": per_sec(o.appends, *s),
            "http_latency_us": latency_json(&o.http_latency),
        })),
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "users_missing_seqs": users_short,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "gaps": count(&shared.gaps),
        "live_frames": count(&shared.live),
        "page_frames": count(&shared.paged),
        "resent_in_pages": count(&shared.resent),
        "sync_requests": count(&shared.sync_requests),
        "sync_errors": sync_errors,
        "incomplete_syncs": incomplete,
        "echo_mismatches": echo_mismatch,
        "beyond_top": beyond_top,
        "foreign": count(&shared.foreign),
        "synced": count(&shared.synced),
        "unsynced": unsynced,
    });
    let rest = json!({
        "latency_us": if mode == ImMode::Sync { Value::Null } else { latency_json(&latency) },
        "sync_latency_us": latency_json(&sync_latency),
        "storm": (mode == ImMode::Storm).then(|| json!({
            "resynced": count(&shared.resynced),
            "reconnect_failures": count(&shared.reconnect_failures),
            "all_synced_s": storm_synced_s,
            "last_reconnect_s": last_reconnect_s,
            "resync_latency_us": latency_json(&resync_latency),
        })),
        "rss_per_conn_kb": readings.rss_per_conn_kb(ready),
        "failures": failures,
        "first_error": tally.first_error().or_else(|| push.as_ref().and_then(|(o, _)| o.first_error.clone())),
        "settings": Settings::from_args(&args),
    });
    let json = report::merge([json, checks, rest, report::readings_json(&readings)]);

    // The table.
    let mut table = Table::new();
    table.row("scenario", format!("im --mode {}", mode.name()));
    table.row(
        "connections",
        format!(
            "{ready} IM ({failed} failed, {} dropped during the run)",
            count(&tally.disconnected)
        ),
    );
    table.row("ramp", format!("{ramp_secs:.1} s"));
    if let Some((o, s)) = &fill {
        table.row(
            "fill",
            format!(
                "{} appends in {} requests, {s:.1} s ({} appends/s), http {}",
                o.appends,
                o.accepted.len(),
                per_sec(o.appends, *s),
                fmt_lat(&o.http_latency)
            ),
        );
    }
    if let Some((o, s)) = &push {
        table.row(
            "requests",
            format!(
                "{} sent, {} accepted, {} refused, {} errors in {s:.1} s",
                o.sent,
                o.accepted.len(),
                o.rejected,
                o.errors
            ),
        );
        table.row("requests/s", format!("{}", per_sec(requests_ok, *s)));
        table.row(
            "appends/s",
            format!(
                "{} ({appends} confirmed, {stored} in the mailboxes)",
                per_sec(appends, *s)
            ),
        );
        table.row("http latency", fmt_lat(&o.http_latency));
    }
    if mode != ImMode::Idle && n > 0 {
        table.row(
            "delivered",
            format!(
                "{delivered} of {expected} expected, {lost} lost ({users_short} users), \
                 {duplicates} duplicates, {out_of_order} out of order"
            ),
        );
        table.row(
            "frames",
            format!(
                "{} live, {} in sync pages ({} resent); {} gaps, {} op 18, {} sync errors",
                count(&shared.live),
                count(&shared.paged),
                count(&shared.resent),
                count(&shared.gaps),
                count(&shared.sync_requests),
                sync_errors
            ),
        );
        if mode != ImMode::Sync {
            // In a sync run the bodies are as old as the fill: no latency.
            table.row("latency", fmt_lat(&latency));
        }
        let sync_row = if mode == ImMode::Sync {
            "sync"
        } else {
            "connect sync"
        };
        table.row(sync_row, fmt_lat(&sync_latency));
    }
    if mode == ImMode::Storm {
        table.row(
            "storm",
            format!(
                "{} of {ready} resynced, all in {} s (the last reconnect was due at \
                 {last_reconnect_s:.2} s), {} reconnect failures",
                count(&shared.resynced),
                or_dash(storm_synced_s.map(|s| format!("{s:.3}"))),
                count(&shared.reconnect_failures)
            ),
        );
        table.row("resync", fmt_lat(&resync_latency));
    }
    table.server_rss(&readings, ready);
    table.server_cpu(&readings, "after connecting", None);
    table.bench(&readings, "after connecting");
    report::output(&args, table, &json, || {
        let series = [
            (
                "delivery (HTTP request start to client receipt)",
                "#1f77b4",
                &latency,
            ),
            (
                "sync (op 7 or op 18 to the last op 20)",
                "#2ca02c",
                &sync_latency,
            ),
            ("storm resync", "#d62728", &resync_latency),
        ];
        latency_svg(
            &format!(
                "rim bench im --mode {}: latency by percentile ({ready} IM clients)",
                mode.name()
            ),
            &series,
        )
    })?;
    failures.check("durable messaging check")
}
