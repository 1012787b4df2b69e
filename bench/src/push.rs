//! The push phase: a pool of keep-alive HTTP pushers fed by a schedule (a
//! fixed rate), a counter (as fast as they can, until a deadline or a
//! count), and the merge of what they saw.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::http::HttpConn;
use super::tally::{nanos_since, new_histogram, unix_nanos};

/// Which clients a push targets.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    None,
    /// seq % rooms; client i is in room (i-1) % rooms.
    Room {
        rooms: u32,
    },
    /// mids (seq*m % n)+1 .. +m, wrapping over n.
    Mids {
        n: u32,
        m: u32,
    },
    /// Mids 1..=n in chunks of m: push j names chunk j % ceil(n/m), so
    /// ceil(n/m) * k pushes name every mid exactly k times.
    Chunks {
        n: u32,
        m: u32,
    },
    All,
}

impl Target {
    pub(crate) fn hits(self, seq: u32, index: u32) -> bool {
        match self {
            Target::None => false,
            Target::Room { rooms } => seq % rooms == (index - 1) % rooms,
            Target::Mids { n, m } => {
                let start = (u64::from(seq) * u64::from(m) % u64::from(n)) as u32;
                ((index - 1 + n - start) % n) < m
            }
            Target::Chunks { n, m } => {
                let chunk = seq % Target::chunks(n, m);
                (index - 1) / m == chunk
            }
            Target::All => true,
        }
    }

    /// Number of chunks of `m` mids in 1..=n.
    pub(crate) fn chunks(n: u32, m: u32) -> u32 {
        n.div_ceil(m).max(1)
    }

    fn path(self, op: i32, room_type: &str, seq: u32) -> String {
        match self {
            Target::None => String::new(),
            Target::Room { rooms } => format!(
                "/goim/push/room?operation={op}&type={room_type}&room={}",
                seq % rooms
            ),
            Target::Mids { n, m } => {
                let start = u64::from(seq) * u64::from(m) % u64::from(n);
                let mut p = format!("/goim/push/mids?operation={op}");
                for k in 0..u64::from(m) {
                    p.push_str(&format!("&mids={}", (start + k) % u64::from(n) + 1));
                }
                p
            }
            Target::Chunks { n, m } => {
                let first = seq % Target::chunks(n, m) * m + 1;
                let mut p = format!("/goim/push/mids?operation={op}");
                for mid in first..=(first + m - 1).min(n) {
                    p.push_str(&format!("&mids={mid}"));
                }
                p
            }
            Target::All => format!("/goim/push/all?operation={op}"),
        }
    }
}

/// Results of the push phase, merged over the pushers.
pub(crate) struct PushOutcome {
    pub(crate) sent: u64,
    pub(crate) accepted: Vec<u32>,
    /// Stored pushes: mailbox appends the accepted answers report
    /// (`data.accepted`).
    pub(crate) appends: u64,
    pub(crate) rejected: u64,
    pub(crate) errors: u64,
    pub(crate) http_latency: Histogram<u64>,
    pub(crate) first_error: Option<String>,
}

impl PushOutcome {
    fn new() -> PushOutcome {
        PushOutcome {
            sent: 0,
            accepted: Vec::new(),
            appends: 0,
            rejected: 0,
            errors: 0,
            http_latency: new_histogram(),
            first_error: None,
        }
    }

    fn merge(&mut self, o: PushOutcome) {
        self.sent += o.sent;
        self.accepted.extend(o.accepted);
        self.appends += o.appends;
        self.rejected += o.rejected;
        self.errors += o.errors;
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.http_latency.add(&o.http_latency);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// The body of push `seq`: `<send_unix_nanos>:<seq>`, padded to `size`.
pub(crate) fn payload(seq: u32, size: usize) -> Vec<u8> {
    let mut body = format!("{}:{seq}", unix_nanos()).into_bytes();
    if body.len() < size {
        body.push(b':');
        body.resize(size, b'x');
    }
    body
}

/// What every pusher sends.
pub(crate) struct PushSettings {
    pub(crate) op: i32,
    pub(crate) room_type: String,
    pub(crate) payload_size: usize,
    /// Add `store=1` (durable messaging): the answer's `data.accepted`
    /// counts the mailbox appends.
    pub(crate) store: bool,
}

/// How fast, and how many.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pace {
    /// `rate` pushes per second for `duration`, at scheduled times.
    Rate { rate: f64, duration: Duration },
    /// As fast as the pushers can until `duration` has passed.
    Flat(Duration),
    /// As fast as the pushers can, `count` pushes (seqs 0..count).
    Count(u32),
}

enum PushSource {
    Queue(Arc<tokio::sync::Mutex<mpsc::Receiver<u32>>>),
    Counter {
        next: Arc<AtomicU32>,
        deadline: Option<Instant>,
        limit: u32,
    },
}

/// One pusher: sends the seqs it is given (or the next counter value until
/// the deadline or limit) over one keep-alive connection.
async fn pusher(
    addr: SocketAddr,
    target: Target,
    args: Arc<PushSettings>,
    source: PushSource,
) -> PushOutcome {
    let mut conn = HttpConn::new(addr);
    let mut out = PushOutcome::new();
    loop {
        let seq = match &source {
            PushSource::Queue(rx) => match rx.lock().await.recv().await {
                Some(seq) => seq,
                None => break,
            },
            PushSource::Counter {
                next,
                deadline,
                limit,
            } => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= *limit {
                    break;
                }
                seq
            }
        };
        let mut path = target.path(args.op, &args.room_type, seq);
        if args.store {
            path.push_str("&store=1");
        }
        let body = payload(seq, args.payload_size);
        let started = Instant::now();
        out.sent += 1;
        match conn.post(&path, &body).await {
            Ok(answer) => {
                let _ = out.http_latency.record(nanos_since(started));
                let stored = if args.store {
                    answer.stored()
                } else {
                    answer.accepted().then_some(0)
                };
                match stored {
                    Some(appends) => {
                        out.accepted.push(seq);
                        out.appends += appends;
                    }
                    None => {
                        out.rejected += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(format!(
                                "push refused: HTTP {} {}",
                                answer.status,
                                String::from_utf8_lossy(&answer.body)
                            ));
                        }
                    }
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("{e:#}"));
                }
                // Avoid a hot loop against a dead server.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    out
}

/// Runs the push phase with `concurrency` pushers; `status` is shown next
/// to the progress bar. Answers the merged outcome and its length in seconds.
pub(crate) async fn push_phase(
    http: SocketAddr,
    target: Target,
    settings: PushSettings,
    pace: Pace,
    concurrency: u32,
    status: impl Fn() -> String + Send + 'static,
) -> anyhow::Result<(PushOutcome, f64)> {
    let settings = Arc::new(settings);
    let start = Instant::now();
    let mut scheduler = None;
    let (source, bar_len) = match pace {
        Pace::Rate { rate, duration } => {
            let total = (rate * duration.as_secs_f64()).round() as u32;
            let (tx, rx) = mpsc::channel::<u32>(1024);
            scheduler = Some(tokio::spawn(async move {
                for seq in 0..total {
                    tokio::time::sleep_until(
                        start + Duration::from_secs_f64(f64::from(seq) / rate),
                    )
                    .await;
                    if tx.send(seq).await.is_err() {
                        break;
                    }
                }
            }));
            (
                PushSource::Queue(Arc::new(tokio::sync::Mutex::new(rx))),
                Some(duration),
            )
        }
        Pace::Flat(duration) => (
            PushSource::Counter {
                next: Arc::new(AtomicU32::new(0)),
                deadline: Some(start + duration),
                limit: u32::MAX,
            },
            Some(duration),
        ),
        Pace::Count(count) => (
            PushSource::Counter {
                next: Arc::new(AtomicU32::new(0)),
                deadline: None,
                limit: count,
            },
            None,
        ),
    };
    let bar = match bar_len {
        Some(d) => {
            let bar = ProgressBar::new(d.as_millis() as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg:12} [{bar:40}] {elapsed}/{duration} {prefix}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{msg:12} {spinner} {elapsed} {prefix}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        }
    };
    bar.set_message("pushing");
    let ticker = tokio::spawn({
        let bar = bar.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(start.elapsed().as_millis() as u64);
                bar.set_prefix(status());
            }
        }
    });
    let pushers: Vec<_> = (0..concurrency)
        .map(|_| {
            let source = match &source {
                PushSource::Queue(rx) => PushSource::Queue(rx.clone()),
                PushSource::Counter {
                    next,
                    deadline,
                    limit,
                } => PushSource::Counter {
                    next: next.clone(),
                    deadline: *deadline,
                    limit: *limit,
                },
            };
            tokio::spawn(pusher(http, target, settings.clone(), source))
        })
        .collect();
    if let Some(s) = scheduler {
        s.await.context("push scheduler")?;
    }
    let mut merged = PushOutcome::new();
    for p in pushers {
        merged.merge(p.await.context("pusher task")?);
    }
    let secs = start.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_with_message("pushed");
    if let Some(e) = &merged.first_error {
        eprintln!("first push error: {e}");
    }
    Ok((merged, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_name_every_mid_once_per_round() {
        let t = Target::Chunks { n: 10, m: 4 };
        assert_eq!(Target::chunks(10, 4), 3);
        assert_eq!(
            t.path(1000, "", 0),
            "/goim/push/mids?operation=1000&mids=1&mids=2&mids=3&mids=4"
        );
        assert_eq!(
            t.path(1000, "", 2),
            "/goim/push/mids?operation=1000&mids=9&mids=10"
        );
        assert_eq!(t.path(1000, "", 3), t.path(1000, "", 0));
        for mid in 1..=10 {
            let hits = (0..6).filter(|&seq| t.hits(seq, mid)).count();
            assert_eq!(hits, 2, "mid {mid}");
        }
    }
}
