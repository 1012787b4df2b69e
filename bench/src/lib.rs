//! `rim bench`: a load generator for any goim-compatible server.
//!
//! It opens many client connections (TCP and WebSocket, goim's client
//! protocol), pushes through the HTTP push API, and measures what arrives:
//! delivered messages per second, end-to-end latency (HTTP request start to
//! client receipt, from the `<send_unix_nanos>:<seq>` payload), losses, and,
//! given `--server-pid`, the server's RSS per connection and CPU time per
//! delivered message.
//!
//! - `run`: the entry point, and the goim scenarios' run (idle, room,
//!   keyed, broadcast, api); `im` and `chat` are the durable messaging and
//!   chat runs.
//! - `ramp`: bringing a run's clients up (shared flag checks, limits, the
//!   ramp, the wait until they are up) and joining them at the end.
//! - `conn`: one client connection on the wire (dial, WebSocket upgrade,
//!   op 7 → op 8, frames in and out, heartbeat), for every kind of client.
//! - `client`, `im_client`, `chat_client`: the goim push client, the IM
//!   client and the chat client.
//! - `tally`: what the client tasks count together (connections, first
//!   error, sharded latency histograms).
//! - `push`, `http`: the push phase over a pool of keep-alive HTTP/1.1
//!   connections to the push API.
//! - `procfs`: RSS and CPU time from `/proc/<pid>`, read at a run's marks.
//! - `report`: latency summaries, the result table, JSON, SVG chart.
//!
//! The `rim` binary runs it as `rim bench` (its default `bench` feature).

#![warn(missing_docs)]

mod chat;
mod chat_client;
mod client;
mod conn;
mod http;
mod im;
mod im_client;
mod procfs;
mod push;
mod ramp;
mod report;
mod run;
mod tally;

use std::path::PathBuf;
use std::time::Duration;

pub use chat_client::ChatMode;
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
    /// Durable messaging (rim): stored pushes (`store=1`) and IM sessions
    /// (`"im": true`, sync with ops 18 to 20); what it measures is --mode.
    Im,
    /// Chat (rim): IM clients send op 4 to each other (--chat-mode peer) or
    /// to their room (--chat-mode room) at --rate in total; op 5 codes,
    /// delivery latency, and every accepted message at every recipient once.
    Chat,
}

/// What `rim bench im` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImMode {
    /// Stored pushes accepted per second: --concurrency HTTP clients push
    /// `store=1` as fast as they can for --duration to mids 1..=--users
    /// (--mids-per-push per request); IM clients (-c, may be 0) check what
    /// arrives.
    Store,
    /// Stored pushes at --rate per second for --duration to the -c
    /// connected IM clients; delivery latency, and every seq once, in order.
    Deliver,
    /// Store --messages messages in each of -c offline mailboxes, then
    /// connect the clients with `since` (or op 18 with --sync-request) and
    /// time each sync from op 7 (op 18) to the last op 20.
    Sync,
    /// -c IM clients connected while stored pushes run at --rate; --hold
    /// into the pushes every client drops its connection at once, then
    /// reconnects with `since`, the reconnects spread evenly over --storm;
    /// time until all are synced, and every seq held once.
    Storm,
    /// -c idle IM sessions held for --hold: server RSS per connection.
    Idle,
}

impl ImMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ImMode::Store => "store",
            ImMode::Deliver => "deliver",
            ImMode::Sync => "sync",
            ImMode::Storm => "storm",
            ImMode::Idle => "idle",
        }
    }
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Room => "room",
            Scenario::Keyed => "keyed",
            Scenario::Broadcast => "broadcast",
            Scenario::Api => "api",
            Scenario::Im => "im",
            Scenario::Chat => "chat",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))
}

fn parse_cpu_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {s:?}"))?;
    let pid = pid
        .parse()
        .map_err(|e| format!("PID of {name:?}: {e} (expected NAME=PID)"))?;
    Ok((name.to_owned(), pid))
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

rim bench im (durable messaging, rim only): client i authenticates with
{\"mid\": i, \"key\": \"im-i-<connection number>\", \"platform\": \"bench\", \"im\": true}
plus \"since\" {seq, epoch} where its copy of the mailbox ends (the user's top
from GET /rim/v1/users/i/cursor when the run starts). Pushes are
POST /goim/push/mids?operation=OP&mids=..&store=1. At the end each user's
cursor says which seqs exist; a seq a client does not hold is lost, a live
frame it already held is a duplicate, and either makes the run fail.
  rim bench im --mode store -c 0 --users 1000 --concurrency 256 --duration 10s
  rim bench im --mode deliver -c 1000 --rate 1000 --duration 20s
  rim bench im --mode sync -c 1000 --messages 100
  rim bench im --mode storm -c 10000 --rate 1000 --duration 30s --hold 5s --storm 10s
  rim bench im --mode idle -c 10000 --hold 5s --server-pid $(pgrep -n rim)

rim bench chat (rim only; raise [logic.chat] rate and burst on the server):
IM clients {\"mid\": i, \"key\": \"chat-<run>-i\", \"im\": true} (room: plus
\"room_id\": \"TYPE://0\") send op 4 {\"to\" | \"room\", \"op\", \"id\": \"<run>-<n>\",
\"body\": \"<send_unix_nanos>\"}; --rate is the total over the senders.
  rim bench chat --chat-mode peer -c 400 --rate 1000 --duration 20s
  rim bench chat --chat-mode room -c 2000 --senders 20 --rate 100 --duration 20s
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
    /// im: what to measure.
    #[arg(long, value_enum, default_value = "deliver")]
    pub mode: ImMode,
    /// im: mailboxes the stored pushes go to, mids 1..=N (at least -c);
    /// default -c, or 1000 when -c is 0.
    #[arg(long, value_name = "N")]
    pub users: Option<u32>,
    /// im --mode sync: messages stored in each mailbox before the clients connect.
    #[arg(long, default_value_t = 100)]
    pub messages: u32,
    /// im --mode sync: sync with op 18 after op 8 instead of the token's `since`.
    #[arg(long)]
    pub sync_request: bool,
    /// im --mode storm: the window over which every client reconnects.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub storm: Duration,
    /// chat: one-to-one pairs or one room.
    #[arg(long, value_enum, default_value = "peer")]
    pub chat_mode: ChatMode,
    /// chat --chat-mode room: members 1..=N send (default 20); peer: the
    /// senders are half of -c.
    #[arg(long, value_name = "N")]
    pub senders: Option<u32>,
    /// chat: op 4 a sender may have awaiting op 5; a send due while the
    /// window is full is skipped (counted).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub window: u32,
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
    /// idle: how long to hold the connections before measuring again; im
    /// --mode storm: how long into the pushes the storm starts.
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
    /// Another process whose CPU time over the push phase and drain to
    /// report, per delivered message (repeatable; e.g. each process of a
    /// cluster, its broker and its Redis): `NAME=PID`.
    #[arg(long, value_name = "NAME=PID", value_parser = parse_cpu_pid)]
    pub cpu_pid: Vec<(String, u32)>,
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
