//! The result of a run, in every mode: the settings echoed in the JSON,
//! latency summaries (quantiles in microseconds, as one line and as JSON),
//! the result table on stdout with the server and bench rows every mode
//! prints, the failure list of the checked modes, the `--json` and
//! `--chart` files, and the SVG chart.
//!
//! The goim scenarios' [`Report`] is here too; `im` and `chat` build their
//! own documents and tables from these pieces, since what they count differs.

use std::fmt::Write as _;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::procfs::Readings;
use super::{BenchArgs, Scenario};

/// The settings of a run, echoed in the JSON.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Settings {
    tcp: String,
    ws: String,
    http: String,
    connections: u32,
    ws_ratio: f64,
    ramp_rate: f64,
    source_addrs: u8,
    rooms: u32,
    room_type: String,
    operation: i32,
    rate: f64,
    duration_s: f64,
    drain_s: f64,
    hold_s: f64,
    mids_per_push: u32,
    concurrency: u32,
    payload_size: usize,
    heartbeat_s: f64,
    server_pid: Option<u32>,
    im_mode: &'static str,
    users: Option<u32>,
    messages: u32,
    sync_request: bool,
    storm_s: f64,
}

impl Settings {
    pub(crate) fn from_args(a: &BenchArgs) -> Settings {
        Settings {
            tcp: a.tcp.clone(),
            ws: a.ws.clone(),
            http: a.http.clone(),
            connections: a.connections,
            ws_ratio: a.ws_ratio,
            ramp_rate: a.ramp_rate,
            source_addrs: a.source_addrs,
            rooms: a.rooms,
            room_type: a.room_type.clone(),
            operation: a.operation,
            rate: a.rate,
            duration_s: a.duration.as_secs_f64(),
            drain_s: a.drain.as_secs_f64(),
            hold_s: a.hold.as_secs_f64(),
            mids_per_push: a.mids_per_push,
            concurrency: a.concurrency,
            payload_size: a.payload_size,
            heartbeat_s: a.heartbeat.as_secs_f64(),
            server_pid: a.server_pid,
            im_mode: a.mode.name(),
            users: a.users,
            messages: a.messages,
            sync_request: a.sync_request,
            storm_s: a.storm.as_secs_f64(),
        }
    }
}

/// Everything measured in one run of a goim scenario (idle, room, keyed,
/// broadcast, api).
pub(crate) struct Report {
    pub(crate) scenario: Scenario,
    pub(crate) settings: Settings,
    pub(crate) connections: u64,
    pub(crate) connections_failed: u64,
    pub(crate) disconnected: u64,
    pub(crate) ramp_secs: f64,
    pub(crate) push_secs: f64,
    pub(crate) pushes_sent: u64,
    pub(crate) pushes_accepted: u64,
    pub(crate) pushes_rejected: u64,
    pub(crate) push_errors: u64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) foreign: u64,
    pub(crate) delivery_secs: f64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) http_latency: Option<Histogram<u64>>,
    /// The server's and the bench's own readings; the measured phase is the
    /// push (or hold) phase and its drain.
    pub(crate) readings: Readings,
    /// The `--cpu-pid` processes' CPU time during the push phase and drain.
    pub(crate) processes: Vec<ProcessCpu>,
    pub(crate) first_error: Option<String>,
}

/// One `--cpu-pid` process's CPU time over the push phase and drain.
pub(crate) struct ProcessCpu {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) cpu_ns: u64,
}

pub(crate) const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

pub(crate) fn us(nanos: u64) -> f64 {
    (nanos as f64 / 100.0).round() / 10.0
}

pub(crate) fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let mut m = serde_json::Map::new();
    for (name, q) in QUANTILES {
        m.insert(name.into(), json!(us(h.value_at_quantile(q))));
    }
    m.insert("max".into(), json!(us(h.max())));
    m.insert("mean".into(), json!((h.mean() / 100.0).round() / 10.0));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

pub(crate) fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        (count as f64 / secs).round()
    } else {
        0.0
    }
}

/// CPU nanoseconds per delivered message, rounded; `None` when nothing
/// was delivered.
fn per_delivery(cpu_ns: u64, delivered: u64) -> Option<f64> {
    (delivered > 0).then(|| (cpu_ns as f64 / delivered as f64).round())
}

/// Seconds from the start of the measured phase (`start_unix`) to the last
/// receipt (`last_unix`); `fallback` when nothing arrived after the start.
pub(crate) fn delivery_secs(start_unix: u64, last_unix: u64, fallback: f64) -> f64 {
    if last_unix > start_unix {
        (last_unix - start_unix) as f64 / 1e9
    } else {
        fallback
    }
}

/// `v`, or "-" when there is none.
pub(crate) fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// The result table: one `name  value` row a line on stdout, names
/// right-aligned.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<(&'static str, String)>,
}

impl Table {
    pub(crate) fn new() -> Table {
        Table::default()
    }

    pub(crate) fn row(&mut self, name: &'static str, value: impl Into<String>) {
        self.rows.push((name, value.into()));
    }

    fn print(&self) {
        for (k, v) in &self.rows {
            println!("{k:>14}  {v}");
        }
    }

    /// The "server rss" and "rss/conn" rows (`connections` came up).
    pub(crate) fn server_rss(&mut self, r: &Readings, connections: u64) {
        self.row(
            "server rss",
            or_dash(
                r.before_connect
                    .zip(r.after_connect)
                    .zip(r.after_push)
                    .map(|((b, c), a)| {
                        format!(
                            "{} KB before, {} KB connected, {} KB at end",
                            b.rss_kb, c.rss_kb, a.rss_kb
                        )
                    }),
            ),
        );
        self.row(
            "rss/conn",
            or_dash(r.rss_per_conn_kb(connections).map(|v| format!("{v} KB"))),
        );
    }

    /// The "server cpu" row over the measured phase (`phase`, e.g. "during
    /// push+drain"), per delivered message when `delivered` is given.
    pub(crate) fn server_cpu(&mut self, r: &Readings, phase: &str, delivered: Option<u64>) {
        self.row(
            "server cpu",
            or_dash(r.server_cpu_ns().map(|ns| {
                let ms = ns / 1_000_000;
                match delivered {
                    Some(d) => format!(
                        "{ms} ms {phase}, {} ns per delivery",
                        or_dash(per_delivery(ns, d).map(|v| v.to_string()))
                    ),
                    None => format!("{ms} ms {phase}"),
                }
            })),
        );
    }

    /// The "bench" row: the bench's own RSS and CPU time over `phase`.
    pub(crate) fn bench(&mut self, r: &Readings, phase: &str) {
        self.row(
            "bench",
            format!(
                "rss {} KB, cpu {} ms {phase}",
                or_dash(r.bench_rss_kb().map(|v| v.to_string())),
                or_dash(r.bench_cpu_ms().map(|v| v.to_string()))
            ),
        );
    }
}

/// The JSON fields of `r` every mode reports: the server's RSS at the three
/// marks and its CPU time over the measured phase, the bench's RSS and CPU
/// time.
pub(crate) fn readings_json(r: &Readings) -> Value {
    json!({
        "server_rss_before_kb": r.before_connect.map(|s| s.rss_kb),
        "server_rss_connected_kb": r.after_connect.map(|s| s.rss_kb),
        "server_rss_kb": r.after_push.map(|s| s.rss_kb),
        "server_cpu_push_ms": r.server_cpu_ns().map(|ns| ns / 1_000_000),
        "bench_rss_kb": r.bench_rss_kb(),
        "bench_cpu_push_ms": r.bench_cpu_ms(),
    })
}

/// CPU nanoseconds per delivered message over the measured phase.
pub(crate) fn server_cpu_per_delivery(r: &Readings, delivered: u64) -> Option<f64> {
    per_delivery(r.server_cpu_ns()?, delivered)
}

/// One JSON object with the fields of all `parts` (objects; keys are
/// sorted in the output, so the order of the parts does not show).
pub(crate) fn merge(parts: impl IntoIterator<Item = Value>) -> Value {
    let mut all = serde_json::Map::new();
    for part in parts {
        if let Value::Object(fields) = part {
            all.extend(fields);
        }
    }
    Value::Object(all)
}

/// What made a checked run (im, chat) fail, one reason each; in the JSON
/// as a list.
#[derive(Debug, Default, serde::Serialize)]
#[serde(transparent)]
pub(crate) struct Failures(Vec<String>);

impl Failures {
    /// "N what" for each count above zero.
    pub(crate) fn counted(counts: &[(&str, u64)]) -> Failures {
        Failures(
            counts
                .iter()
                .filter(|(_, v)| *v > 0)
                .map(|(what, v)| format!("{v} {what}"))
                .collect(),
        )
    }

    pub(crate) fn push(&mut self, reason: String) {
        self.0.push(reason);
    }

    /// Fails the run when there is any reason; `check` names what failed.
    pub(crate) fn check(&self, check: &str) -> anyhow::Result<()> {
        if !self.0.is_empty() {
            anyhow::bail!("{check} failed: {}", self.0.join(", "));
        }
        Ok(())
    }
}

/// Puts out a run's result: `table` with a last row for the JSON's
/// `first_error` on stdout, the `--json` document and the `--chart` SVG
/// (drawn only when asked for) when the flags name files.
pub(crate) fn output(
    args: &BenchArgs,
    mut table: Table,
    json: &Value,
    svg: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if let Some(e) = json["first_error"].as_str() {
        table.row("first error", e);
    }
    table.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(json)?)
            .with_context(|| format!("write --json {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, svg()).with_context(|| format!("write --chart {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

impl Report {
    /// The JSON document written by `--json`.
    pub(crate) fn json(&self) -> Value {
        let r = &self.readings;
        merge([
            json!({
                "scenario": self.scenario.name(),
                "connections": self.connections,
                "connections_failed": self.connections_failed,
                "disconnected": self.disconnected,
                "ramp_s": self.ramp_secs,
                "push_s": self.push_secs,
                "pushes_sent": self.pushes_sent,
                "pushes_accepted": self.pushes_accepted,
                "pushes_rejected": self.pushes_rejected,
                "push_errors": self.push_errors,
                "accepted_per_sec": per_sec(self.pushes_accepted, self.push_secs),
                "expected": self.expected,
                "delivered": self.delivered,
                "lost": self.lost,
                "duplicates": self.duplicates,
                "foreign": self.foreign,
                "delivered_per_sec": per_sec(self.delivered, self.delivery_secs),
                "latency_us": latency_json(&self.latency),
                "http_latency_us": self.http_latency.as_ref().map_or(Value::Null, latency_json),
                "rss_per_conn_kb": r.rss_per_conn_kb(self.connections),
                "server_cpu_ns_per_delivery": server_cpu_per_delivery(r, self.delivered),
                "processes": self.processes.iter().map(|p| json!({
                    "name": p.name,
                    "pid": p.pid,
                    "cpu_push_ms": p.cpu_ns / 1_000_000,
                    "cpu_ns_per_delivery": per_delivery(p.cpu_ns, self.delivered),
                })).collect::<Vec<_>>(),
                "first_error": self.first_error,
                "settings": self.settings,
            }),
            readings_json(r),
        ])
    }

    /// The result table (the first error aside: [`output`] adds it).
    pub(crate) fn table(&self) -> Table {
        let mut table = Table::new();
        table.row("scenario", self.scenario.name());
        table.row(
            "connections",
            format!(
                "{} ({} failed, {} dropped during the run)",
                self.connections, self.connections_failed, self.disconnected
            ),
        );
        table.row("ramp", format!("{:.1} s", self.ramp_secs));
        if self.scenario != Scenario::Idle {
            table.row(
                "pushes",
                format!(
                    "{} sent, {} accepted, {} refused, {} errors in {:.1} s",
                    self.pushes_sent,
                    self.pushes_accepted,
                    self.pushes_rejected,
                    self.push_errors,
                    self.push_secs
                ),
            );
            table.row(
                "accepted/s",
                format!("{}", per_sec(self.pushes_accepted, self.push_secs)),
            );
            table.row(
                "delivered",
                format!(
                    "{} of {} expected, {} lost, {} duplicates",
                    self.delivered, self.expected, self.lost, self.duplicates
                ),
            );
            table.row(
                "delivered/s",
                format!("{}", per_sec(self.delivered, self.delivery_secs)),
            );
            table.row("latency", fmt_lat(&self.latency));
            if let Some(h) = &self.http_latency {
                table.row("http latency", fmt_lat(h));
            }
        }
        table.server_rss(&self.readings, self.connections);
        if self.scenario != Scenario::Idle {
            table.server_cpu(&self.readings, "during push+drain", Some(self.delivered));
        }
        table.bench(&self.readings, "during push+drain");
        for p in &self.processes {
            table.row(
                "cpu",
                format!(
                    "{} (pid {}): {} ms during push+drain, {} ns per delivery",
                    p.name,
                    p.pid,
                    p.cpu_ns / 1_000_000,
                    or_dash(per_delivery(p.cpu_ns, self.delivered).map(|v| v.to_string()))
                ),
            );
        }
        table
    }

    /// A latency-by-percentile chart (delivery and HTTP).
    pub(crate) fn svg(&self) -> String {
        let series: Vec<(&str, &str, &Histogram<u64>)> = std::iter::once((
            "delivery (HTTP request start to client receipt)",
            "#1f77b4",
            &self.latency,
        ))
        .chain(
            self.http_latency
                .as_ref()
                .map(|h| ("HTTP push call", "#ff7f0e", h)),
        )
        .collect();
        let title = format!(
            "rim bench {}: latency by percentile ({} connections)",
            self.scenario.name(),
            self.connections
        );
        latency_svg(&title, &series)
    }
}

/// Quantiles and max of `h` in microseconds, one line.
pub(crate) fn fmt_lat(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".to_string();
    }
    let mut s = String::new();
    for (name, q) in QUANTILES {
        let _ = write!(s, "{name} {} ", us(h.value_at_quantile(q)));
    }
    let _ = write!(s, "max {} (us)", us(h.max()));
    s
}

/// A latency-by-percentile chart of (name, colour, histogram) series,
/// log-scaled on the percentile axis like HdrHistogram's plots.
pub(crate) fn latency_svg(title: &str, series: &[(&str, &str, &Histogram<u64>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 400.0;
    const PAD: f64 = 60.0;
    let qs: Vec<f64> = (0..=50)
        .map(|i| 1.0 - 10f64.powf(-f64::from(i) / 10.0))
        .collect();
    let x_of = |q: f64| {
        let x = (-(1.0 - q).max(1e-5).log10()).min(5.0);
        PAD + x / 5.0 * (W - 2.0 * PAD)
    };
    let series: Vec<_> = series.iter().filter(|(_, _, h)| !h.is_empty()).collect();
    let max_ms = series
        .iter()
        .map(|(_, _, h)| h.max() as f64 / 1e6)
        .fold(0.001, f64::max);
    let y_of = |ms: f64| H - PAD - ms / max_ms * (H - 2.0 * PAD);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{PAD}" y="20" font-size="14">{title}</text>"#);
    let _ = write!(
        s,
        r#"<line x1="{PAD}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{0}" stroke="black"/>"#,
        H - PAD,
        W - PAD
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = PAD + i as f64 / 5.0 * (W - 2.0 * PAD);
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
            H - PAD + 18.0
        );
    }
    for i in 0..=4 {
        let ms = max_ms * f64::from(i) / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{ms:.2} ms</text>"#,
            PAD - 4.0,
            y_of(ms) + 4.0
        );
    }
    for (k, (name, color, h)) in series.iter().enumerate() {
        let points: Vec<String> = qs
            .iter()
            .map(|&q| {
                format!(
                    "{:.1},{:.1}",
                    x_of(q),
                    y_of(h.value_at_quantile(q) as f64 / 1e6)
                )
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{color}">{name}</text>"#,
            PAD + 10.0,
            PAD + 16.0 * k as f64
        );
    }
    s.push_str("</svg>\n");
    s
}
