//! rim's session registry ("router").
//!
//! Owns where every connection lives: mid -> {key -> comet}, key -> comet, and
//! each comet's online report (room counts, connections). It does not own
//! connections themselves (comet) nor the push API (logic).
//!
//! - [`SessionStore`]: one shard's storage, with the in-memory backend
//!   [`MemoryStore`] (standalone and single-router setups) and
//!   [`RedisStore`] (goim's Redis layout, survives router restarts; on one
//!   Redis or a Redis Cluster, see [`rim_redis::Target`]).
//! - [`Ring`]: the consistent-hash ring (hashring) that picks a shard.
//! - [`Router`]: the sharded registry logic talks to; each mid and each key
//!   lives on the shard the ring assigns to it.
//! - [`grpc`]: the router service (`rim.router.Router`) and its client, a
//!   remote shard for logic.

mod config;
mod error;
pub mod grpc;
mod keys;
mod registry;
mod ring;
mod router;

pub use config::Config;
pub use error::StoreError;
pub use registry::{MemoryStore, RedisStore, ServerOnline, SessionStore};
pub use ring::Ring;
pub use router::Router;
