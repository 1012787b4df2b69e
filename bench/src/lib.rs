//! `rim bench`: a load generator for any goim-compatible server.
//!
//! It opens many client connections (TCP and WebSocket, goim's client
//! protocol), pushes through the HTTP push API, and measures what arrives:
//! delivered messages per second, end-to-end latency (HTTP request start to
//! client receipt, from the `<send_unix_nanos>:<seq>` payload), losses, and,
//! given `--server-pid`, the server's RSS per connection and CPU time per
//! delivered message.
//!
//! - `client`: one bench client (connect, auth, read, heartbeat).
//! - `http`: a minimal keep-alive HTTP/1.1 client for the push API.
//! - `procfs`: RSS and CPU time from `/proc/<pid>`.
//! - `report`: the result table, JSON and SVG chart.
//!
//! The `rim` binary runs it as `rim bench` (its default `bench` feature).

#![warn(missing_docs)]

mod client;
mod http;
mod procfs;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Duration;

pub use run::run;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Ramp up the connections, hold them for --hold, report server memory
    /// (RSS per connection). No pushes.
    Idle,
    /// Clients spread over --rooms rooms (client i in room (i-1) mod rooms);
    /// push at --rate per second for --duration, round-robin over the rooms,
    /// through POST /goim/push/room?operation=OP&type=TYPE&room=R.
    Room,
    /// Push at --rate per second to individual users through
    /// POST /goim/push/mids?operation=OP&mids=..; each push names
    /// --mids-per-push consecutive mids, round-robin over all clients.
    Keyed,
    /// Push at --rate per second to everyone through POST /goim/push/all?operation=OP.
    Broadcast,
    /// Push API throughput: --concurrency keep-alive HTTP clients push keyed
    /// messages as fast as they can for --duration; reports accepted pushes
    /// per second (and deliveries to the connected clients, if any).
    Api,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Room => "room",
            Scenario::Keyed => "keyed",
            Scenario::Broadcast => "broadcast",
            Scenario::Api => "api",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))
}

/// Shown after the flags in `rim bench --help`.
const AFTER_HELP: &str = "\
Clients are numbered 1..=N; client i authenticates with op 7 and the token
{\"mid\": i, \"key\": \"bench-i\", \"room_id\": \"TYPE://ROOM\", \"platform\": \"bench\", \"accepts\": [OP]}.
Each push body is <send_unix_nanos>:<seq> (padded to --payload-size); latency is
HTTP request start to client receipt. A push accepted by the API (HTTP 200,
code 0) that does not reach every connected client it targets within --drain
counts as lost. With --server-pid, the server's RSS per connection and CPU time
per delivered message come from /proc/PID.

Examples:
  rim bench idle -c 10000 --ramp-rate 2000 --server-pid $(pgrep -n rim)
  rim bench room -c 5000 --rate 50 --duration 20s --ws-ratio 0.5 --json room.json
  rim bench keyed -c 1000 --rate 1000 --duration 20s --chart keyed.svg
  rim bench api -c 1000 --concurrency 64 --duration 10s
See docs/benchmark.md.";

/// Load generator for goim-compatible servers: connects clients over TCP and
/// WebSocket, pushes through the HTTP API, reports throughput, latency, losses
/// and server memory/CPU.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server's TCP client address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3101")]
    pub tcp: String,
    /// Server's WebSocket client address (the bench connects to ws://ADDR/sub).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3102")]
    pub ws: String,
    /// Server's HTTP push API address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3111")]
    pub http: String,
    /// Number of client connections (api: may be 0, pushes then go to mids 1..=1000).
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: u32,
    /// Fraction of the clients that use WebSocket instead of TCP (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub ws_ratio: f64,
    /// Connections opened per second while ramping up.
    #[arg(long, default_value_t = 2000.0)]
    pub ramp_rate: f64,
    /// Spread connections over this many local source addresses 127.0.0.2,
    /// 127.0.0.3, ... (each gives ~28k ephemeral ports); 0: let the kernel
    /// choose. Only used when the server address is a loopback IPv4 address.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub source_addrs: u8,
    /// Number of rooms (room, and the room every client joins otherwise).
    #[arg(long, default_value_t = 1)]
    pub rooms: u32,
    /// Room type: clients join `TYPE://<room number>`.
    #[arg(long, value_name = "TYPE", default_value = "bench")]
    pub room_type: String,
    /// Operation of the pushes; clients accept only this one.
    #[arg(long, default_value_t = 1000)]
    pub operation: i32,
    /// Pushes per second (room, keyed, broadcast).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Length of the push phase (room, keyed, broadcast, api).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// After the push phase, how long to wait for late messages before counting losses.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub drain: Duration,
    /// idle: how long to hold the connections before measuring again.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub hold: Duration,
    /// Mids named in one keyed push (keyed, api).
    #[arg(long, default_value_t = 1)]
    pub mids_per_push: u32,
    /// Concurrent keep-alive HTTP connections: the api scenario's pushers; for
    /// the rate-driven scenarios, the pool that sends the scheduled pushes.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Pad each push body to this many bytes (minimum: the timestamp and seq).
    #[arg(long, default_value_t = 0)]
    pub payload_size: usize,
    /// Client heartbeat interval (op 2).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub heartbeat: Duration,
    /// PID of the server process: report its RSS (per connection) and CPU
    /// time (per delivered message) from /proc/PID.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Wait this long after all clients are connected before reading the server's RSS.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub settle: Duration,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a latency percentile chart (SVG) to FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}
