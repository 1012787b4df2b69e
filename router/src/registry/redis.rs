//! [`RedisStore`]: a shard on one Redis or on a Redis Cluster, in goim v2's
//! key layout (`mid_<mid>`, `key_<key>`, `ol_<server>`; see `keys.rs`),
//! through [`rim_redis::Conn`], which connects again with backoff on its
//! own. Deletes are compare-and-delete scripts, so a stale session's
//! disconnect never removes a newer session of the same key.
//!
//! Every operation touches one key, so it stays in one cluster slot: a
//! user's sessions are one hash (`mid_<mid>`), a connection key's comet one
//! string, a comet's report one hash. The reads of many keys (`get_keys`,
//! `get_mids`, `online`) and the admin `del_server` span slots: `MGET` is
//! split per slot by the cluster client, the rest go as a
//! [`rim_redis::Batch`] (one pipeline per slot), and `del_server` scans
//! every master. The report and the index of reporting comets
//! (`rim_online_servers`) are written one after the other, not in one
//! `MULTI`: a reader skips a listed comet whose report is gone.
//!
//! Room membership records are one sorted set per room (`rim_room:{<room>}`,
//! comet scored by expiry), written and read by Lua scripts that take the
//! time from the Redis server (`TIME`), so the clocks of the logic and job
//! hosts never decide whether a record is alive. Many rooms go as one
//! [`Batch`] of `EVALSHA`s: one round trip per node (per slot on a cluster).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::{AsyncCommands, ErrorKind, Script, ServerErrorKind};
use rim_redis::{Batch, Conn, Target};
use serde::{Deserialize, Serialize};

use super::{ServerOnline, SessionStore};
use crate::keys;
use crate::StoreError;

const DEL_KEY_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

const HDEL_IF: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0";

/// Records that ARGV[1] holds members of the room KEYS[1] for ARGV[2] ms
/// from now (Redis's clock), never shortening a record; drops expired
/// records and lets the key expire with its last record.
const ANNOUNCE_ROOM: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[2])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not old) or tonumber(old) < expires then
  redis.call('ZADD', KEYS[1], string.format('%.0f', expires), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1";

/// The comets with a record of the room KEYS[1] that has not expired
/// (Redis's clock).
const ROOM_SERVERS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')";

/// A shard stored in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    ttl_secs: u64,
    del_key_if: Script,
    hdel_if: Script,
    announce_room: Script,
    room_servers: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("ttl_secs", &self.ttl_secs)
            .field("cluster", &self.conn.is_cluster())
            .finish()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// goim's JSON for one online field.
#[derive(Debug, Serialize, Deserialize)]
struct OnlineShard {
    server: String,
    room_count: HashMap<String, i32>,
    updated: i64,
}

/// rim's additions, in the field `rim`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OnlineExtra {
    conn_count: i64,
    ip_count: i64,
    addrs: Vec<String>,
    weight: i32,
    updated: i64,
    #[serde(default)]
    grpc_addr: String,
}

impl RedisStore {
    /// A store for the Redis at `url` (`redis://host:port/db`). Connects
    /// lazily: a Redis that is down at start is retried with backoff. A
    /// command on a live connection fails after `timeout` instead of hanging;
    /// one that must connect first tries up to 3 times, each bounded by
    /// `timeout`, with up to about 0.6 s of backoff between them, so it fails
    /// within about `3 × timeout + 0.6 s` (router/tests/redis_store.rs holds
    /// both bounds).
    pub fn new(url: &str, ttl: Duration, timeout: Duration) -> Result<RedisStore, StoreError> {
        RedisStore::with_target(&Target::Node(url.to_owned()), ttl, timeout)
    }

    /// A store for one Redis or a Redis Cluster ([`Target`]), connecting
    /// lazily as [`RedisStore::new`] does. On a cluster a command also waits
    /// through redirections and a failover, up to `3 × timeout`.
    pub fn with_target(
        target: &Target,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let conn = Conn::lazy(target, timeout).map_err(unavailable)?;
        Ok(RedisStore {
            conn,
            ttl_secs: ttl.as_secs().max(1),
            del_key_if: Script::new(DEL_KEY_IF),
            hdel_if: Script::new(HDEL_IF),
            announce_room: Script::new(ANNOUNCE_ROOM),
            room_servers: Script::new(ROOM_SERVERS),
        })
    }

    /// Runs a batch of `EVALSHA`s of the room scripts; a server that does
    /// not have them yet (a new one, a promoted replica, a restart) gets
    /// them (`SCRIPT LOAD`, on every master of a cluster) and the batch is
    /// sent once more (the scripts can be repeated).
    async fn run_scripts(&self, batch: &Batch) -> Result<Vec<redis::Value>, StoreError> {
        match self.conn.run(batch).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut conn = self.conn.clone();
                for script in [&self.announce_room, &self.room_servers] {
                    script.load_async(&mut conn).await.map_err(unavailable)?;
                }
                self.conn.run(batch).await.map_err(unavailable)
            }
            reply => reply.map_err(unavailable),
        }
    }

    /// Runs a batch of reads and converts the answers.
    async fn run<T: redis::FromRedisValue>(&self, batch: &Batch) -> Result<T, StoreError> {
        let replies = self.conn.run(batch).await.map_err(unavailable)?;
        redis::from_redis_value(redis::Value::Array(replies))
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
    }

    /// Round-trips a PING.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn set_key(&self, key: &str, server: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.set_ex::<_, _, ()>(keys::key(key), server, self.ttl_secs)
            .await
            .map_err(unavailable)
    }

    async fn expire_key(&self, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        conn.expire(keys::key(key), self.ttl_secs as i64)
            .await
            .map_err(unavailable)
    }

    async fn del_key(&self, key: &str, server: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .del_key_if
            .key(keys::key(key))
            .arg(server)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn get_keys(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let names: Vec<String> = keys.iter().map(|k| keys::key(k)).collect();
        redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn add_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let name = keys::mid(mid);
        redis::pipe()
            .atomic()
            .hset(&name, key, server)
            .ignore()
            .expire(&name, self.ttl_secs as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn expire_mid(&self, mid: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        conn.expire(keys::mid(mid), self.ttl_secs as i64)
            .await
            .map_err(unavailable)
    }

    async fn del_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .hdel_if
            .key(keys::mid(mid))
            .arg(key)
            .arg(server)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn get_mids(&self, mids: &[i64]) -> Result<Vec<(String, String)>, StoreError> {
        if mids.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for mid in mids {
            let name = keys::mid(*mid);
            batch.push(&name, redis::cmd("HGETALL").arg(&name).clone());
        }
        let maps: Vec<HashMap<String, String>> = self.run(&batch).await?;
        Ok(maps.into_iter().flatten().collect())
    }

    async fn put_online(&self, online: &ServerOnline) -> Result<(), StoreError> {
        let mut shards: HashMap<u32, HashMap<String, i32>> = HashMap::new();
        for (room, count) in &online.room_count {
            shards
                .entry(keys::online_slot(room))
                .or_default()
                .insert(room.clone(), *count);
        }
        let name = keys::online(&online.server);
        let mut pipe = redis::pipe();
        // Rewrite the whole hash, so rooms that emptied do not linger (goim
        // never clears them).
        pipe.atomic().del(&name).ignore();
        for (slot, room_count) in shards {
            let json = serde_json::to_string(&OnlineShard {
                server: online.server.clone(),
                room_count,
                updated: online.updated,
            })
            .map_err(|e| StoreError::Unavailable(format!("encoding online report: {e}")))?;
            pipe.hset(&name, slot.to_string(), json).ignore();
        }
        let extra = serde_json::to_string(&OnlineExtra {
            conn_count: online.conn_count,
            ip_count: online.ip_count,
            addrs: online.addrs.clone(),
            weight: online.weight,
            updated: online.updated,
            grpc_addr: online.grpc_addr.clone(),
        })
        .map_err(|e| StoreError::Unavailable(format!("encoding online report: {e}")))?;
        pipe.hset(&name, keys::ONLINE_RIM_FIELD, extra)
            .ignore()
            .expire(&name, self.ttl_secs as i64)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        // After the report: a comet listed is one whose report was written.
        conn.zadd::<_, _, _, ()>(keys::ONLINE_SERVERS, &online.server, online.updated)
            .await
            .map_err(unavailable)
    }

    async fn online(&self) -> Result<Vec<ServerOnline>, StoreError> {
        let mut conn = self.conn.clone();
        let oldest = now_secs() - self.ttl_secs as i64;
        let _: () = conn
            .zrembyscore(keys::ONLINE_SERVERS, "-inf", oldest)
            .await
            .map_err(unavailable)?;
        let servers: Vec<String> = conn
            .zrangebyscore(keys::ONLINE_SERVERS, oldest, "+inf")
            .await
            .map_err(unavailable)?;
        if servers.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for server in &servers {
            let name = keys::online(server);
            batch.push(&name, redis::cmd("HGETALL").arg(&name).clone());
        }
        let hashes: Vec<HashMap<String, String>> = self.run(&batch).await?;
        let mut out = Vec::new();
        for (server, fields) in servers.into_iter().zip(hashes) {
            if fields.is_empty() {
                continue; // expired meanwhile
            }
            let mut report = ServerOnline {
                server,
                ..ServerOnline::default()
            };
            for (field, json) in fields {
                if field == keys::ONLINE_RIM_FIELD {
                    match serde_json::from_str::<OnlineExtra>(&json) {
                        Ok(extra) => {
                            report.conn_count = extra.conn_count;
                            report.ip_count = extra.ip_count;
                            report.addrs = extra.addrs;
                            report.weight = extra.weight;
                            report.grpc_addr = extra.grpc_addr;
                            report.updated = report.updated.max(extra.updated);
                        }
                        Err(e) => {
                            tracing::warn!(server = %report.server, error = %e, "unreadable online field")
                        }
                    }
                    continue;
                }
                match serde_json::from_str::<OnlineShard>(&json) {
                    Ok(shard) => {
                        report.updated = report.updated.max(shard.updated);
                        report.room_count.extend(shard.room_count);
                    }
                    Err(e) => {
                        tracing::warn!(server = %report.server, field, error = %e, "unreadable online field")
                    }
                }
            }
            out.push(report);
        }
        Ok(out)
    }

    async fn del_server(&self, server: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let mut batch = Batch::new();
        let name = keys::online(server);
        batch.push(&name, redis::cmd("DEL").arg(&name).clone());
        batch.push(
            keys::ONLINE_SERVERS,
            redis::cmd("ZREM")
                .arg(keys::ONLINE_SERVERS)
                .arg(server)
                .clone(),
        );
        self.run::<Vec<redis::Value>>(&batch).await?;
        // The layout has no index of sessions by comet; this admin operation
        // scans (SCAN, never KEYS; every master of a cluster) and
        // compare-and-deletes.
        let mut removed = 0;
        for name in self.conn.scan("key_*").await.map_err(unavailable)? {
            let n: i64 = self
                .del_key_if
                .key(&name)
                .arg(server)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            removed += n as u64;
        }
        for name in self.conn.scan("mid_*").await.map_err(unavailable)? {
            let fields: HashMap<String, String> = conn.hgetall(&name).await.map_err(unavailable)?;
            for (key, owner) in fields {
                if owner == server {
                    let _: i64 = self
                        .hdel_if
                        .key(&name)
                        .arg(&key)
                        .arg(server)
                        .invoke_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        Ok(removed)
    }

    async fn announce_rooms(
        &self,
        server: &str,
        rooms: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if rooms.is_empty() {
            return Ok(());
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut batch = Batch::new();
        for room in rooms {
            let name = keys::room(room);
            let mut call = redis::cmd("EVALSHA");
            call.arg(self.announce_room.get_hash())
                .arg(1)
                .arg(&name)
                .arg(server)
                .arg(ttl_ms);
            batch.push(&name, call);
        }
        self.run_scripts(&batch).await?;
        Ok(())
    }

    async fn room_servers(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, StoreError> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for room in rooms {
            let name = keys::room(room);
            let mut call = redis::cmd("EVALSHA");
            call.arg(self.room_servers.get_hash()).arg(1).arg(&name);
            batch.push(&name, call);
        }
        let replies = self.run_scripts(&batch).await?;
        redis::from_redis_value(redis::Value::Array(replies))
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))
    }
}
