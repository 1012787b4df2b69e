//! [`SessionStore`]: the storage of one router shard, and its backends.
//!
//! The operations mirror goim v2's Redis layout (`keys.rs`): a key record
//! `key_<key>` -> comet, a per-user hash `mid_<mid>` of key -> comet, and one
//! online report per comet. Every mapping carries a TTL refreshed by
//! heartbeats, so the sessions of a comet that died expire on their own.
//!
//! Room membership records (rim's, not goim's) say which comets hold members
//! of a room, so that job sends a room push only there: room -> {comet ->
//! expiry}. Logic writes them when a comet announces a room before a join
//! and refreshes them with each online report; nothing removes a record
//! before it expires (a stale one costs job a call, a missing one would
//! lose a push), so there is no delete.

mod memory;
mod redis;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

pub use self::redis::RedisStore;
pub use memory::MemoryStore;

use crate::StoreError;

/// One comet's online report, as sent every renew interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerOnline {
    /// The comet's server id.
    pub server: String,
    /// Local connection count of every non-empty room.
    pub room_count: HashMap<String, i32>,
    /// Connections held by the comet.
    pub conn_count: i64,
    /// Distinct client IPs on the comet.
    pub ip_count: i64,
    /// Client-facing addresses of the comet.
    pub addrs: Vec<String>,
    /// Balancing weight of the comet.
    pub weight: i32,
    /// When the report was made, in Unix seconds.
    pub updated: i64,
    /// The comet's push service address (gRPC), empty for an in-process comet.
    pub grpc_addr: String,
}

/// The storage of one shard. Key records and mid records of the same session
/// may live on different shards; [`crate::Router`] composes them.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Records `key` -> `server` with a fresh TTL.
    async fn set_key(&self, key: &str, server: &str) -> Result<(), StoreError>;
    /// Refreshes the TTL of `key`; `false` if it no longer existed.
    async fn expire_key(&self, key: &str) -> Result<bool, StoreError>;
    /// Deletes `key` if it still points to `server` (a newer session of the
    /// same key on another comet is left alone); `true` if it was deleted.
    async fn del_key(&self, key: &str, server: &str) -> Result<bool, StoreError>;
    /// The server of each key, in order (`None` where unknown or expired).
    async fn get_keys(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError>;
    /// Adds `key` -> `server` to the hash of `mid`, refreshing its TTL.
    async fn add_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError>;
    /// Refreshes the TTL of the hash of `mid`; `false` if it no longer existed.
    async fn expire_mid(&self, mid: i64) -> Result<bool, StoreError>;
    /// Removes `key` from the hash of `mid` if it still points to `server`.
    async fn del_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<bool, StoreError>;
    /// Every (key, server) of the given mids.
    async fn get_mids(&self, mids: &[i64]) -> Result<Vec<(String, String)>, StoreError>;
    /// Stores a comet's online report, replacing the previous one.
    async fn put_online(&self, online: &ServerOnline) -> Result<(), StoreError>;
    /// Every online report stored on this shard.
    async fn online(&self) -> Result<Vec<ServerOnline>, StoreError>;
    /// Forgets a comet: its online report and every mapping that points to it.
    /// Returns how many key records were removed. Room membership records
    /// are left to expire.
    async fn del_server(&self, server: &str) -> Result<u64, StoreError>;
    /// Records that `server` holds members of each of `rooms`, valid for
    /// `ttl` from the write. Never shortens a record's life (a shorter `ttl`
    /// than the one already stored leaves the longer one); drops the room's
    /// records that expired. Answers only once every record is written.
    async fn announce_rooms(
        &self,
        server: &str,
        rooms: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// The servers with an unexpired record of each room, in order (an
    /// empty list for a room nobody announced).
    async fn room_servers(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, StoreError>;
}
