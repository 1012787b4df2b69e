//! `rim bench im`: durable messaging. Stored pushes (`store=1`) through the
//! HTTP API, IM clients that sync and take stored frames live, and the
//! check that every client ends holding every seq of its mailbox once.
//!
//! Each user's cursor (`GET /rim/v1/users/{mid}/cursor`) is read before the
//! run (a client starts from that `top`, with `since`) and after it (the
//! seqs the client must hold), so the check needs no fresh data directory
//! and does not trust the push answers: a push that timed out but was
//! stored is still expected at its client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::unix_nanos;
use super::http::HttpConn;
use super::im_client::{ImClient, ImConfig, ImOutcome, ImShared, ImSpec};
use super::procfs;
use super::push::{push_phase, Pace, PushOutcome, PushSettings, Target};
use super::report::{fmt_lat, latency_json, latency_svg, per_sec, Settings};
use super::run::{resolve, Probe};
use super::{BenchArgs, ImMode};

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
    if !(0.0..=1.0).contains(&args.ws_ratio) {
        bail!("--ws-ratio must be between 0 and 1");
    }
    if args.ramp_rate <= 0.0 || args.rate <= 0.0 {
        bail!("--ramp-rate and --rate must be positive");
    }
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
    let tcp = resolve(&args.tcp, "tcp").await?;
    let ws = resolve(&args.ws, "ws").await?;
    let http = resolve(&args.http, "http").await?;

    // File descriptors: one per client (a storm closes the old connection
    // before it opens the new one), the HTTP pools, and some slack.
    let want = u64::from(n) + u64::from(args.concurrency) + u64::from(CURSOR_CONCURRENCY) + 256;
    let limit = rlimit::increase_nofile_limit(want.max(65_536)).context("raise RLIMIT_NOFILE")?;
    if limit < want {
        bail!(
            "RLIMIT_NOFILE is {limit} (the hard limit), but {n} IM clients need about {want}; \
             raise the hard limit (ulimit -Hn) or use fewer clients"
        );
    }
    let probe = Probe {
        pid: args.server_pid.map(|p| p.to_string()),
        ticks: procfs::clock_ticks(),
    };

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

    let before_connect = probe.sample()?;
    let loopback = |a: SocketAddr| matches!(a.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let sources = if args.source_addrs > 0 && loopback(tcp) && loopback(ws) {
        usize::from(args.source_addrs.min(250))
    } else {
        0
    };
    let progress = ProgressBar::new(u64::from(n));
    progress.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:40}] {pos}/{len} conns ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.set_message("connecting");
    let cfg = Arc::new(ImConfig {
        tcp,
        ws,
        op: args.operation,
        heartbeat: args.heartbeat,
        sync_on_connect: mode != ImMode::Idle,
        sync_request: args.sync_request,
        clients: n,
        storm_window: args.storm,
        progress: progress.clone(),
    });
    let shared = Arc::new(ImShared::new());
    let stop = CancellationToken::new();
    let (storm_tx, storm_rx) = watch::channel(None);
    let mut clients: Vec<JoinHandle<ImOutcome>> = Vec::with_capacity(n as usize);
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
        let start = &start_cursors[i as usize - 1];
        let client = ImClient::new(
            ImSpec {
                mid: i,
                ws: ws_client,
                source,
            },
            cfg.clone(),
            shared.clone(),
            start.top,
            (!start.epoch.is_empty()).then(|| start.epoch.clone()),
        );
        clients.push(tokio::spawn(client.run(stop.clone(), storm_rx.clone())));
    }
    drop(storm_rx);
    // Wait for every client to be connected and, when it syncs, synced.
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    let count = ImShared::count;
    loop {
        let done = if cfg.sync_on_connect {
            count(&shared.synced) + count(&shared.failed) + count(&shared.disconnected)
        } else {
            count(&shared.ready) + count(&shared.failed)
        };
        if done >= u64::from(n) || Instant::now() >= settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    let ready = count(&shared.ready);
    let failed = count(&shared.failed);
    progress.finish_with_message("connected");
    eprintln!(
        "{ready} of {n} IM clients connected in {ramp_secs:.1}s ({failed} failed, {} synced)",
        count(&shared.synced)
    );
    if let Some(e) = shared.first_error() {
        eprintln!("first client error: {e}");
    }
    if n > 0 && ready == 0 {
        bail!("no client could connect; is rim standalone running at --tcp/--ws?");
    }
    tokio::time::sleep(args.settle).await;
    let after_connect = probe.sample()?;

    // Pushes.
    let bench_start = procfs::sample("self", probe.ticks).ok();
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
                while count(&shared.resynced) + count(&shared.disconnected) < ready
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
    let after_push = probe.sample()?;
    let bench_end = procfs::sample("self", probe.ticks).ok();

    // Where every mailbox ends, then what each client holds.
    let end_cursors = if mode == ImMode::Idle {
        Vec::new()
    } else {
        cursors(http, pushed_users).await?
    };
    stop.cancel();
    let mut outcomes = Vec::with_capacity(clients.len());
    for c in clients {
        outcomes.push(c.await.context("client task")?);
    }

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
    let mut failures = Vec::new();
    for (what, v) in [
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
    ] {
        if v > 0 {
            failures.push(format!("{v} {what}"));
        }
    }
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

    let latency = shared.latency();
    let sync_latency = shared.sync_latency.lock().clone();
    let resync_latency = shared.resync_latency.lock().clone();
    let rss_per_conn_kb = before_connect
        .zip(after_connect)
        .filter(|_| ready > 0)
        .map(|(b, a)| ((a.rss_kb as f64 - b.rss_kb as f64) / ready as f64 * 100.0).round() / 100.0);
    let cpu_push_ms = after_connect
        .zip(after_push)
        .map(|(a, b)| b.cpu_ns.saturating_sub(a.cpu_ns) / 1_000_000);
    let bench_cpu_ms = bench_start
        .zip(bench_end)
        .map(|(a, b)| b.cpu_ns.saturating_sub(a.cpu_ns) / 1_000_000);
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
        "disconnected": count(&shared.disconnected),
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
        "server_rss_before_kb": before_connect.map(|s| s.rss_kb),
        "server_rss_connected_kb": after_connect.map(|s| s.rss_kb),
        "server_rss_kb": after_push.map(|s| s.rss_kb),
        "rss_per_conn_kb": rss_per_conn_kb,
        "server_cpu_push_ms": cpu_push_ms,
        "bench_rss_kb": bench_end.map(|s| s.rss_kb),
        "bench_cpu_push_ms": bench_cpu_ms,
        "failures": failures,
        "first_error": shared.first_error().or_else(|| push.as_ref().and_then(|(o, _)| o.first_error.clone())),
        "settings": Settings::from_args(&args),
    });
    let mut json = json;
    if let (Some(all), Value::Object(checks), Value::Object(rest)) =
        (json.as_object_mut(), checks, rest)
    {
        all.extend(checks);
        all.extend(rest);
    }

    // The table.
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut rows: Vec<(&str, String)> = vec![
        ("scenario", format!("im --mode {}", mode.name())),
        (
            "connections",
            format!(
                "{ready} IM ({failed} failed, {} dropped during the run)",
                count(&shared.disconnected)
            ),
        ),
        ("ramp", format!("{ramp_secs:.1} s")),
    ];
    if let Some((o, s)) = &fill {
        rows.push((
            "fill",
            format!(
                "{} appends in {} requests, {s:.1} s ({} appends/s), http {}",
                o.appends,
                o.accepted.len(),
                per_sec(o.appends, *s),
                fmt_lat(&o.http_latency)
            ),
        ));
    }
    if let Some((o, s)) = &push {
        rows.extend([
            (
                "requests",
                format!(
                    "{} sent, {} accepted, {} refused, {} errors in {s:.1} s",
                    o.sent,
                    o.accepted.len(),
                    o.rejected,
                    o.errors
                ),
            ),
            ("requests/s", format!("{}", per_sec(requests_ok, *s))),
            (
                "appends/s",
                format!(
                    "{} ({appends} confirmed, {stored} in the mailboxes)",
                    per_sec(appends, *s)
                ),
            ),
            ("http latency", fmt_lat(&o.http_latency)),
        ]);
    }
    if mode != ImMode::Idle && n > 0 {
        rows.extend([
            (
                "delivered",
                format!(
                    "{delivered} of {expected} expected, {lost} lost ({users_short} users), \
                     {duplicates} duplicates, {out_of_order} out of order"
                ),
            ),
            (
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
            ),
        ]);
        if mode != ImMode::Sync {
            // In a sync run the bodies are as old as the fill: no latency.
            rows.push(("latency", fmt_lat(&latency)));
        }
        rows.extend([(
            if mode == ImMode::Sync {
                "sync"
            } else {
                "connect sync"
            },
            fmt_lat(&sync_latency),
        )]);
    }
    if mode == ImMode::Storm {
        rows.extend([
            (
                "storm",
                format!(
                    "{} of {ready} resynced, all in {} s (the last reconnect was due at \
                     {last_reconnect_s:.2} s), {} reconnect failures",
                    count(&shared.resynced),
                    opt(storm_synced_s.map(|s| format!("{s:.3}"))),
                    count(&shared.reconnect_failures)
                ),
            ),
            ("resync", fmt_lat(&resync_latency)),
        ]);
    }
    rows.extend([
        (
            "server rss",
            opt(before_connect
                .zip(after_connect)
                .zip(after_push)
                .map(|((b, c), a)| {
                    format!(
                        "{} KB before, {} KB connected, {} KB at end",
                        b.rss_kb, c.rss_kb, a.rss_kb
                    )
                })),
        ),
        ("rss/conn", opt(rss_per_conn_kb.map(|v| format!("{v} KB")))),
        (
            "server cpu",
            opt(cpu_push_ms.map(|ms| format!("{ms} ms after connecting"))),
        ),
        (
            "bench",
            format!(
                "rss {} KB, cpu {} ms after connecting",
                opt(bench_end.map(|s| s.rss_kb.to_string())),
                opt(bench_cpu_ms.map(|v| v.to_string()))
            ),
        ),
    ]);
    if let Some(e) = json["first_error"].as_str() {
        rows.push(("first error", e.to_owned()));
    }
    for (k, v) in rows {
        println!("{k:>14}  {v}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("write --json {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
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
        let svg = latency_svg(
            &format!(
                "rim bench im --mode {}: latency by percentile ({ready} IM clients)",
                mode.name()
            ),
            &series,
        );
        std::fs::write(path, svg).with_context(|| format!("write --chart {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if !failures.is_empty() {
        bail!("durable messaging check failed: {}", failures.join(", "));
    }
    Ok(())
}
