//! rim comet: the node that holds client connections (raw TCP and WebSocket,
//! each also over TLS) and delivers pushes to them, compatible with goim v2's
//! comet.
//!
//! # Data flow
//! A business backend calls logic's HTTP API; logic writes a `PushMsg` to the
//! queue (Kafka); job consumes it and calls this comet ([`Comet::push_msg`],
//! [`Comet::broadcast`], [`Comet::broadcast_room`], usually through the gRPC
//! service the binary wraps around them). The comet finds the sessions in its
//! buckets and puts the encoded frame in each session's bounded queue; each
//! connection's task drains its queue to the socket.
//!
//! # Layout
//! - [`Comet`] (`server`): buckets, push operations, accept loops, the
//!   online-report loop, shutdown.
//! - `bucket`, `room`, `session`: the in-memory registry; a session is
//!   created when logic accepts a client's token.
//! - `conn`: one task per connection; `conn::tcp` and `conn::ws` adapt the
//!   transport (plain or TLS; `conn::ws::codec` is the WebSocket framing),
//!   `conn::buffers` holds their read and write buffers, `conn::handler`
//!   runs the goim protocol over either.
//! - `tls`: the certificate of the TLS listeners, its reload and file watch.
//! - [`LogicClient`]: the calls the comet makes to logic.
//! - `limits`: connection limits (per comet, per IP) and the per-connection
//!   frame rate.
//! - [`Config`]: settings, all with defaults.
//! - [`grpc`]: the distributed mode's gRPC side: the push service job calls
//!   and the client for logic.
//!
//! # Glossary
//! - **key**: identifies one client connection (session); unique per cluster.
//! - **mid**: member (user) id; one user may hold many keys.
//! - **room**: free-form id (`type://id`); a session is in at most one.
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
//! `rim_comet_limit_rejections_total{limit}`,
//! `rim_comet_tls_handshake_failures_total{transport}`,
//! `rim_comet_tls_reloads_total{result}`.

#![warn(missing_docs)]

mod bucket;
mod config;
mod conn;
mod error;
pub mod grpc;
mod hub;
mod limits;
pub mod logic;
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
pub use error::{ConfigError, PushError};
pub use hub::{Hub, Stats};
pub use logic::{LogicClient, LogicError};
pub use server::{Comet, Listeners};
