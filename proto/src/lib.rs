//! goim's client wire protocol and rim's protobuf/gRPC types.
//!
//! This crate owns the byte formats and nothing else: no sockets, no runtime.
//!
//! - [`Frame`]: one goim frame (16-byte big-endian header + body).
//! - [`Op`]: goim v2 operation codes.
//! - [`FrameCodec`]: a `tokio_util` codec with goim's header validation and a
//!   maximum body size.
//! - [`pb`]: generated protobuf messages and gRPC services, in goim's packages
//!   (`goim.protocol`, `goim.comet`, `goim.logic`) with goim's field numbers.
//!
//! # Glossary
//! - **mid**: member id, the user (int64). One user may hold many connections.
//! - **key**: identifies one client connection (a session); unique per cluster.
//! - **room**: a free-form string, conventionally `type://id`; a session is in at most one.
//! - **op**: operation code of a frame; pushes carry business ops (1000+).
//! - **accepts**: the ops a session accepts for keyed and broadcast pushes.

mod codec;
mod error;
mod frame;
mod op;

pub use codec::FrameCodec;
pub use error::ProtoError;
pub use frame::{encode_raw_push, BatchIter, Frame, HEADER_LEN, MAX_BODY_DEFAULT, PUSH_VER};
pub use op::Op;

/// The `grpc.health.v1` service name under which comet `server_id` reports
/// itself serving: goim's comet service name plus the server id, so a health
/// check also proves which comet answers at an address.
pub fn comet_health_name(server_id: &str) -> String {
    format!("{}/{server_id}", pb::comet::comet_server::SERVICE_NAME)
}

/// Generated protobuf messages and gRPC services.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    /// `goim.protocol`: the frame as a protobuf message.
    pub mod protocol {
        tonic::include_proto!("goim.protocol");
    }
    /// `goim.comet`: the comet push service (job -> comet).
    pub mod comet {
        tonic::include_proto!("goim.comet");
    }
    /// `goim.logic`: the logic service (comet -> logic) and the queue record.
    pub mod logic {
        tonic::include_proto!("goim.logic");
    }
    /// `rim.router`: one router shard's registry (logic -> router).
    pub mod router {
        tonic::include_proto!("rim.router");
    }
    /// `rim.im`: what an IM session asks of its mailbox (comet -> logic).
    pub mod im {
        tonic::include_proto!("rim.im");
    }
    /// `rim.room`: room membership announcements (comet -> logic), so that
    /// job sends a room push only to comets with members.
    pub mod room {
        tonic::include_proto!("rim.room");
    }
}
