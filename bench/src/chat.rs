//! `rim bench chat`: client-to-client messages (rim's chat, issue 12). IM
//! sessions send op 4 `{"to" | "room", "op", "id", "body"}`; the server
//! answers op 5 `{"id", "code"}` (echoing the header seq) and delivers the
//! envelope `{"from", "to" | "room", "id", "ts", "body"}` with op = the
//! message's op.
//!
//! - `--chat-mode peer`: `-c` clients in pairs, sender i → receiver P + i
//!   (P = c / 2 pairs); every message the server accepted (op 5 code 0)
//!   must reach its receiver exactly once.
//! - `--chat-mode room`: `-c` clients in one room; mids 1..=--senders send
//!   `{"room"}` messages; every accepted message must reach every member
//!   (the sender too).
//!
//! The senders share `--rate` (messages per second, in total), each on its
//! own fixed schedule, with at most `--window` op 4 awaiting their op 5: a
//! tick that finds the window full is skipped (counted), so a high rate
//! measures the most the server accepts. The body is the send time
//! (`"<unix nanos>"`), the id `<run tag>-<n>` (the tag keeps ids unique across
//! runs: a resent id is stored once) and op 4's header seq is n.
//!
//! This module owns the run: the flags, the senders' plan, the send phase,
//! the loss count over every recipient and the report. The client is
//! `chat_client`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use indicatif::ProgressBar;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::chat_client::{ChatMode, Client, Outcome, Plan, Shared, Spec};
use super::procfs::Probe;
use super::ramp::{self, Ramp, Wait};
use super::report::{
    self, delivery_secs, fmt_lat, latency_json, latency_svg, per_sec, Failures, Settings, Table,
};
use super::tally::{count, unix_nanos};
use super::BenchArgs;

/// The wait for the clients after the ramp.
const RAMP_WAIT: Wait = Wait {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(20),
};

/// Room senders when --senders is not given.
const DEFAULT_ROOM_SENDERS: u32 = 20;
/// The comet's default `max_frames_per_sec`; a sender above it is cut off.
const COMET_FRAMES_PER_SEC: f64 = 50.0;

/// Runs `rim bench chat`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mode = args.chat_mode;
    let n = args.connections;
    ramp::check_flags(&args)?;
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let senders = match mode {
        ChatMode::Peer => {
            if args.senders.is_some() {
                bail!("--chat-mode peer: the senders are half of -c (pairs); leave out --senders");
            }
            if n < 2 || !n.is_multiple_of(2) {
                bail!("--chat-mode peer needs an even -c of at least 2 (sender, receiver pairs)");
            }
            n / 2
        }
        ChatMode::Room => {
            let s = args.senders.unwrap_or(DEFAULT_ROOM_SENDERS);
            if s == 0 || s > n {
                bail!("--senders must be between 1 and -c ({n})");
            }
            s
        }
    };
    let per_sender = args.rate / f64::from(senders);
    if per_sender > COMET_FRAMES_PER_SEC * 0.9 {
        eprintln!(
            "warning: {per_sender:.1} messages/s per sender; the comet cuts off a connection \
             over comet.max_frames_per_sec (default 50): use more clients"
        );
    }
    let tcp = ramp::resolve(&args.tcp, "tcp").await?;
    let ws = ramp::resolve(&args.ws, "ws").await?;

    let want = u64::from(n) + 256;
    ramp::raise_nofile(want, &format!("{n} clients"), "clients")?;
    let probe = Probe::new(args.server_pid);
    let mut readings = probe.before_connect()?;

    let ramp = Ramp::start(&args, tcp, ws, n);
    let plan = Arc::new(Plan {
        mode,
        op: args.operation,
        heartbeat: args.heartbeat,
        room: format!("{}://0", args.room_type),
        tag: format!("b{:x}", unix_nanos() % (1 << 48)),
        senders,
        interval: Duration::from_secs_f64(1.0 / per_sender),
        duration: args.duration,
        window: args.window as usize,
        progress: ramp.progress(),
    });
    let shared = Arc::new(Shared::new());
    let stop = CancellationToken::new();
    let (start_tx, start_rx) = watch::channel(None);
    let mut clients: Vec<JoinHandle<Outcome>> = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let route = ramp.next(i).await;
        let sender = (i <= senders).then(|| i - 1);
        let sets = match mode {
            ChatMode::Peer => usize::from(i > senders),
            ChatMode::Room => senders as usize,
        };
        let spec = Spec {
            mid: i,
            route,
            sender,
        };
        let client = Client::new(spec, plan.clone(), shared.clone(), sets);
        clients.push(tokio::spawn(client.run(start_rx.clone(), stop.clone())));
    }
    drop(start_rx);
    let tally = &shared.tally;
    let settled = ramp.settle(tally, RAMP_WAIT, || tally.all_in(n)).await;
    let (ramp_secs, ready, failed) = (settled.secs, settled.ready, settled.failed);
    eprintln!("{ready} of {n} IM clients connected in {ramp_secs:.1}s ({failed} failed)");
    tally.check_ramp(n, "rim")?;
    readings.after_connect = probe.server_after(args.settle).await?;

    // Send phase.
    readings.bench_start = probe.bench();
    let push_start_unix = unix_nanos();
    let t0 = Instant::now();
    eprintln!(
        "{senders} senders, {:.0} messages/s in total ({per_sender:.2}/s each), for {:?}",
        args.rate, args.duration
    );
    let _ = start_tx.send(Some(t0));
    let status = ProgressBar::new_spinner();
    while t0.elapsed() < args.duration {
        status.set_message(format!(
            "sent {} accepted {} delivered {}",
            count(&shared.sent),
            count(&shared.accepted),
            count(&shared.arrivals.delivered)
        ));
        status.tick();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    status.finish_and_clear();
    let send_secs = t0.elapsed().as_secs_f64();
    eprintln!("draining for {:?}", args.drain);
    tokio::time::sleep(args.drain).await;
    readings.after_push = probe.server()?;
    readings.bench_end = probe.bench();
    stop.cancel();
    let outcomes = ramp::join(clients).await?;

    // Losses: every accepted message at every recipient that connected.
    let mut accepted_by: Vec<Vec<u32>> = vec![Vec::new(); senders as usize];
    for o in &outcomes {
        if o.mid <= senders {
            accepted_by[o.mid as usize - 1] = o.accepted.clone();
        }
    }
    let mut expected = 0u64;
    let mut lost = 0u64;
    let mut recipients_short = 0u64;
    let mut unconfirmed = 0u64;
    for o in outcomes.iter().filter(|o| o.ready) {
        let from: Vec<usize> = match mode {
            ChatMode::Peer if o.mid > senders => vec![(o.mid - senders) as usize - 1],
            ChatMode::Peer => Vec::new(),
            ChatMode::Room => (0..senders as usize).collect(),
        };
        let mut short = false;
        for (k, s) in from.iter().enumerate() {
            let set = match mode {
                ChatMode::Peer => o.received.first(),
                ChatMode::Room => o.received.get(k),
            };
            let Some(set) = set else { continue };
            for &m in &accepted_by[*s] {
                expected += 1;
                if !set.contains(m) {
                    lost += 1;
                    short = true;
                }
            }
        }
        recipients_short += u64::from(short);
    }
    let arrivals = &shared.arrivals;
    let delivered = count(&arrivals.delivered);
    // Arrivals of messages whose op 5 did not say accepted (or never came).
    let confirmed_delivered = expected - lost;
    if delivered > confirmed_delivered {
        unconfirmed = delivered - confirmed_delivered;
    }

    let latency = arrivals.latency.merged();
    let reply_latency = shared.reply_latency.merged();
    let delivery_secs = delivery_secs(push_start_unix, count(&arrivals.last_receipt_ns), send_secs);
    let codes: BTreeMap<String, u64> = shared
        .codes
        .lock()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let sent = count(&shared.sent);
    let accepted = count(&shared.accepted);
    let refused = count(&shared.refused);
    let unanswered = sent.saturating_sub(accepted + refused);
    let duplicates = count(&arrivals.duplicates);
    let disconnected = count(&tally.disconnected);

    let failures = Failures::counted(&[
        ("lost", lost),
        ("duplicates", duplicates),
        ("op 5 with a code other than 0", refused),
        ("op 4 without op 5", unanswered),
        ("clients dropped during the run", disconnected),
        ("clients that could not connect", failed),
    ]);

    let json = json!({
        "scenario": "chat",
        "mode": mode.name(),
        "connections": ready,
        "connections_failed": failed,
        "disconnected": disconnected,
        "senders": senders,
        "rate": args.rate,
        "window": args.window,
        "ramp_s": ramp_secs,
        "send_s": send_secs,
        "sent": sent,
        "skipped": count(&shared.skipped),
        "accepted": accepted,
        "refused": refused,
        "codes": codes,
        "unanswered": unanswered,
        "sent_per_sec": per_sec(sent, send_secs),
        "accepted_per_sec": per_sec(accepted, send_secs),
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "recipients_missing_messages": recipients_short,
        "duplicates": duplicates,
        "unconfirmed_delivered": unconfirmed,
        "own_copies": count(&shared.own_copies),
        "foreign": count(&shared.foreign),
        "delivered_per_sec": per_sec(delivered, delivery_secs),
        "latency_us": latency_json(&latency),
        "reply_latency_us": latency_json(&reply_latency),
        "server_cpu_ns_per_delivery": report::server_cpu_per_delivery(&readings, delivered),
        "failures": failures,
        "first_error": tally.first_error(),
        "settings": Settings::from_args(&args),
    });
    let json = report::merge([json, report::readings_json(&readings)]);

    let mut table = Table::new();
    table.row("scenario", format!("chat --chat-mode {}", mode.name()));
    table.row(
        "connections",
        format!("{ready} IM ({failed} failed, {disconnected} dropped during the run)"),
    );
    table.row("ramp", format!("{ramp_secs:.1} s"));
    table.row(
        "op 4",
        format!(
            "{sent} sent by {senders} senders in {send_secs:.1} s ({} skipped: window full or late)",
            count(&shared.skipped)
        ),
    );
    table.row(
        "op 5",
        format!(
            "{accepted} accepted (code 0), {refused} other codes {codes:?}, {unanswered} unanswered"
        ),
    );
    table.row("accepted/s", format!("{}", per_sec(accepted, send_secs)));
    table.row(
        "delivered",
        format!(
            "{delivered} of {expected} expected, {lost} lost ({recipients_short} recipients), \
             {duplicates} duplicates, {unconfirmed} unconfirmed{}",
            if mode == ChatMode::Peer {
                format!(", {} own copies", count(&shared.own_copies))
            } else {
                String::new()
            }
        ),
    );
    table.row(
        "delivered/s",
        format!("{}", per_sec(delivered, delivery_secs)),
    );
    table.row("latency", fmt_lat(&latency));
    table.row("op 4 → op 5", fmt_lat(&reply_latency));
    table.server_cpu(&readings, "during send+drain", Some(delivered));
    table.bench(&readings, "during send+drain");
    report::output(&args, table, &json, || {
        let series = [
            (
                "delivery (op 4 sent to recipient's receipt)",
                "#1f77b4",
                &latency,
            ),
            ("op 4 to op 5", "#ff7f0e", &reply_latency),
        ];
        latency_svg(
            &format!(
                "rim bench chat --chat-mode {}: latency by percentile ({ready} clients)",
                mode.name()
            ),
            &series,
        )
    })?;
    failures.check("chat check")
}
