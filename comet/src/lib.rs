//! rim comet: the node that holds client connections (raw TCP and WebSocket,
//! each also over TLS) and delivers pushes to them, compatible with goim v2's
//! comet.
//!
//! # Data flow
//! A business backend calls logic's HTTP API; logic writes a `PushMsg` to the
//! queue (Kafka); job consumes it and calls this comet's [`Hub`]
//! ([`Hub::push_msg`], [`Hub::broadcast`], [`Hub::broadcast_room`]), through
//! the gRPC service in the distributed mode and directly standalone. The hub
//! finds the sessions in its buckets and puts the encoded frame in each
//! session's bounded queue; each connection's task drains its queue to the
//! socket.
//!
//! # Layout
//! - [`Comet`] (`server`): the node: listeners and accept loops, shutdown;
//!   builds the hub and the context connections run with.
//! - [`Hub`] (`hub`): sessions and rooms in buckets, registering and kicking,
//!   room joins and leaves, the push operations, the counts. `bucket`,
//!   `room` (a room's members), `memberships` (a session's rooms),
//!   `session`: its parts; a session is created when logic accepts a
//!   client's token. `push`: one push encoded once for every recipient, and
//!   fan-out accounting.
//! - `conn`: one task per connection, given a `ConnCtx` (hub, logic, config,
//!   limits, lifecycle), never the node. `conn::tcp` and `conn::ws` adapt the
//!   transport (plain or TLS; `conn::ws::codec` reads WebSocket frames),
//!   `conn::buffers` holds their read and write buffers, `conn::handler`
//!   runs the goim protocol over either.
//! - `ws_frame`: the WebSocket frames the server writes.
//! - `online`: the online report to logic and the sign-off at shutdown.
//! - `announce`: room announcements to logic before a join is answered
//!   (single flight per room), so that job finds the comet's rooms.
//! - [`LogicClient`] (`logic`): the calls the comet makes to logic, and the
//!   deadline every call runs under.
//! - `tls`: the certificate of the TLS listeners, its reload and file watch.
//! - `limits`: connection limits (per comet, per IP) and the per-connection
//!   frame rate.
//! - [`Config`]: settings, all with defaults.
//! - [`grpc`]: the distributed mode's gRPC side: the push service job calls
//!   and the client for logic.
//! - `testing` (feature `test-util`): test support for other crates.
//!
//! # Glossary
//! - **key**: identifies one client connection (session); unique per cluster.
//! - **mid**: member (user) id; one user may hold many keys.
//! - **room**: free-form id (`type://id`); a session is in its primary room
//!   (the token's `room_id`, op 12) and in up to `max_rooms` more it joined
//!   with op 24, each once.
//! - **bucket**: a lock shard holding the sessions whose key hashes to it,
//!   and their room memberships.
//! - **session**: an authenticated connection (goim's "Channel").
//! - **op**: a frame's operation code; **accepts**: the ops a session takes
//!   from keyed pushes and broadcasts (room pushes are not filtered).
//!
//! # Metrics
//! Gauges `rim_comet_connections`, `rim_comet_sessions`, `rim_comet_rooms`;
//! counters `rim_comet_accepted_total{transport}`,
//! `rim_comet_accept_errors_total{transport}`,
//! `rim_comet_disconnects_total{reason}`,
//! `rim_comet_slow_client_disconnects_total`,
//! `rim_comet_dropped_messages_total{reason}`,
//! `rim_comet_push_requests_total{kind}`,
//! `rim_comet_enqueued_messages_total{kind}`,
//! `rim_comet_filtered_messages_total{kind}`,
//! `rim_comet_logic_errors_total{call}`, `rim_comet_online_reports_total{result}`,
//! `rim_comet_room_requests_total{op, result}`,
//! `rim_comet_room_announces_total{result}`,
//! `rim_comet_limit_rejections_total{limit}`,
//! `rim_comet_tls_handshake_failures_total{transport}`,
//! `rim_comet_tls_reloads_total{result}`.

#![warn(missing_docs)]

mod announce;
mod bucket;
mod config;
mod conn;
mod error;
pub mod grpc;
mod hub;
mod im;
mod limits;
pub mod logic;
mod memberships;
mod metrics;
mod online;
mod push;
mod room;
mod server;
mod session;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod tls;
mod ws_frame;

pub use config::Config;
pub use error::{CometConfigError, PushError};
pub use hub::{Hub, Stats};
pub use logic::{LogicCallError, LogicClient};
pub use server::{Comet, Listeners};
