//! [`RedisStore`]: the mailbox store of distributed rim, on one Redis or a
//! Redis Cluster ([`rim_redis::Target`]). Every mailbox lives under its own
//! hash tag (layout: `keys`), and every operation on a mailbox is one Lua
//! script (`scripts`) whose keys all carry that tag, so it is atomic per
//! mailbox and runs in one cluster slot. [`rim_redis::Conn`] connects again
//! on its own.
//!
//! What differs from the other stores:
//! - **Epoch per mailbox.** It is drawn the first time the mailbox is read
//!   or written and kept in its meta hash. Should Redis lose the hash (a
//!   restart without AOF, eviction, `meta_ttl`), the mailbox starts over
//!   under a new epoch, so clients learn they missed messages instead of
//!   seeing seqs given again.
//! - **Batches are not all or nothing.** A batch spans mailboxes, hence
//!   cluster slots, so it runs as one script per entry, pipelined in batch
//!   order: each entry is atomic and idempotent, entries of one mid keep
//!   their order, and after an error part of the batch may be stored. A
//!   retry of the batch is safe: the stored entries answer it as duplicates.
//! - **Retention by time to live.** The count cap applies at append. The
//!   messages expire `idle_ttl` after the mailbox's last append (`first`
//!   becomes `top + 1`, the epoch stays), the meta hash `meta_ttl` after it,
//!   the idempotency keys after `idempotency_window`. Acks, read marks and
//!   trims renew none of them. `max_age` is not used.
//! - **Durability is Redis's.** An answered append is as durable as the AOF
//!   setting makes it; [`RedisStore::durability`] reports that setting (the
//!   weakest node's, on a cluster) so that a process can warn when it is not
//!   `appendfsync always`. Replication is asynchronous: a failover can lose
//!   writes the old master answered but had not passed on. With
//!   [`RedisStore::wait_replicas`] appends, group and mute changes are
//!   answered only once that many replicas have them (`WAIT`), so the
//!   replica that takes over holds every answered append.
//!
//! Reads create the meta hash of a mailbox that has none, so that a client
//! that synced an empty mailbox keeps the epoch it was given.
//!
//! It is also distributed rim's [`GroupStore`](crate::GroupStore)
//! (`groups`): a SET per group, a HASH of mutes per user, and every mute
//! change published so that other processes' caches hear of it (`watch`).

mod groups;
mod keys;
mod scripts;
mod watch;

pub use self::watch::{MuteChange, MuteWatch};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::{ErrorKind, Pipeline, RedisError, ServerErrorKind, Value};
use rim_redis::{Batch, Conn, Target};

use self::keys::Keys;
use self::scripts::Scripts;
use crate::memory::now_ms;
use crate::paging::{more_after, more_before, PageCut};
use crate::{
    Ack, Appended, Cursor, DeviceAck, Entry, Epoch, MailboxConfig, MailboxError, MailboxStore,
    MsgId, Page, Stored, MAX_SEQ,
};

/// Entries (or acks) sent in one pipeline; a larger batch goes in several,
/// one after the other, so that no reply waits behind a huge one.
const PIPELINE: usize = 512;

/// The longest time to live the store sets, so that Redis never refuses an
/// expiry as out of range: 100 years.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1000;

/// A [`MailboxStore`] and [`GroupStore`](crate::GroupStore) in Redis.
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    /// For the connections a [`MuteWatch`] makes: the node, or every seed
    /// of the cluster (tried in turn).
    clients: Vec<redis::Client>,
    /// Each command's and connection attempt's bound.
    timeout: Duration,
    conn: Conn,
    /// Replicas that must hold a write before it is answered, and how long
    /// to wait for them (`WAIT`); 0: answer once the master has it.
    replicas: u32,
    replica_timeout: Duration,
    keys: Keys,
    scripts: Arc<Scripts>,
    max_len: u32,
    idle_ms: u64,
    meta_ms: u64,
    window_ms: u64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .field("max_len", &self.max_len)
            .field("idle_ms", &self.idle_ms)
            .field("meta_ms", &self.meta_ms)
            .field("window_ms", &self.window_ms)
            .field("replicas", &self.replicas)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

/// How durable Redis keeps an answered append, from its AOF settings
/// (`CONFIG GET appendonly`, `appendfsync`). Only [`Always`] keeps every
/// answered append through a crash; with the others a Redis crash can roll
/// a mailbox back under an unchanged epoch, and give again seqs that clients
/// already hold.
///
/// [`Always`]: RedisDurability::Always
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisDurability {
    /// `appendonly yes`, `appendfsync always`: fsynced before the answer.
    Always,
    /// `appendfsync everysec`: a crash loses up to about a second of writes.
    EverySec,
    /// `appendfsync no`: the operating system decides when to flush.
    OsFlush,
    /// `appendonly no`: a restart loses every write since the last snapshot,
    /// or everything without snapshots.
    NoAof,
    /// The settings could not be read (`CONFIG` disabled or renamed, or an
    /// answer this version does not know); the reason.
    Unknown(String),
}

impl RedisDurability {
    /// Whether every answered append survives a Redis crash.
    pub fn is_durable(&self) -> bool {
        *self == RedisDurability::Always
    }

    /// How much a crash may lose, from none (0) up; not knowing is worst.
    fn rank(&self) -> u8 {
        match self {
            RedisDurability::Always => 0,
            RedisDurability::EverySec => 1,
            RedisDurability::OsFlush => 2,
            RedisDurability::NoAof => 3,
            RedisDurability::Unknown(_) => 4,
        }
    }
}

/// One node's durability from its `appendonly` and `appendfsync` answers.
fn durability_of(
    appendonly: Result<String, String>,
    appendfsync: Result<String, String>,
) -> RedisDurability {
    let appendonly = match appendonly {
        Ok(value) => value,
        Err(why) => return RedisDurability::Unknown(why),
    };
    match appendonly.as_str() {
        "no" => return RedisDurability::NoAof,
        "yes" => {}
        other => return RedisDurability::Unknown(format!("appendonly {other:?}")),
    }
    match appendfsync.as_deref() {
        Ok("always") => RedisDurability::Always,
        Ok("everysec") => RedisDurability::EverySec,
        Ok("no") => RedisDurability::OsFlush,
        Ok(other) => RedisDurability::Unknown(format!("appendfsync {other:?}")),
        Err(why) => RedisDurability::Unknown(why.clone()),
    }
}

impl fmt::Display for RedisDurability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisDurability::Always => f.write_str("appendonly yes, appendfsync always"),
            RedisDurability::EverySec => f.write_str("appendonly yes, appendfsync everysec"),
            RedisDurability::OsFlush => f.write_str("appendonly yes, appendfsync no"),
            RedisDurability::NoAof => f.write_str("appendonly no"),
            RedisDurability::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

fn unavailable(e: RedisError) -> MailboxError {
    MailboxError::Unavailable(format!("redis: {e}"))
}

fn corrupt(what: impl fmt::Display) -> MailboxError {
    MailboxError::Corrupt(format!("redis: {what}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).map_or(MAX_TTL_MS, |ms| ms.clamp(1, MAX_TTL_MS))
}

impl RedisStore {
    /// The key prefix rim uses unless configured otherwise.
    pub const DEFAULT_PREFIX: &str = "rim:mb:";

    /// Connects to the Redis at `url` (`redis://host:port/db`): see
    /// [`RedisStore::connect_to`].
    pub async fn connect(
        url: &str,
        prefix: &str,
        config: MailboxConfig,
        timeout: Duration,
    ) -> Result<RedisStore, MailboxError> {
        RedisStore::connect_to(&Target::Node(url.to_owned()), prefix, config, timeout).await
    }

    /// Connects to one Redis or a Redis Cluster and loads the scripts (on
    /// every node of a cluster); every key starts with `prefix` (no braces:
    /// the mid is the hash tag). Fails when Redis cannot be reached. Each
    /// command, and each connection attempt, gives up after `timeout`; a
    /// lost connection is made again on the next command, and on a cluster
    /// a command waits through redirections and a failover up to
    /// `3 × timeout`. Call [`MailboxConfig::validate`] first.
    pub async fn connect_to(
        target: &Target,
        prefix: &str,
        config: MailboxConfig,
        timeout: Duration,
    ) -> Result<RedisStore, MailboxError> {
        let keys = Keys::new(prefix)?;
        target
            .validate()
            .map_err(|e| MailboxError::Config(format!("{target}: {e}")))?;
        let clients = target
            .clients()
            .map_err(|e| MailboxError::Config(format!("{target}: {e}")))?;
        let mut conn = Conn::connect(target, timeout).await.map_err(unavailable)?;
        let scripts = Arc::new(Scripts::new());
        load_scripts(&scripts, &mut conn).await?;
        Ok(RedisStore {
            clients,
            timeout,
            conn,
            replicas: 0,
            replica_timeout: timeout,
            keys,
            scripts,
            max_len: config.max_len,
            idle_ms: millis(config.idle_ttl),
            meta_ms: millis(config.meta_ttl),
            window_ms: millis(config.idempotency_window),
        })
    }

    /// Answers appends, and group and mute changes, only once `replicas`
    /// replicas of the master hold them (`WAIT replicas timeout` after the
    /// writes, on the same connection: one per pipeline, not per write); a
    /// write that fewer acknowledge within `timeout` fails with
    /// [`MailboxError::Unavailable`] (it is on the master, and a retry finds
    /// it). A master left without a replica (its replica took over after a
    /// failover and no new one joined yet) so fails every write to its
    /// slots: availability is traded for not losing answered writes. Acks,
    /// read marks and trims do not wait: they only move forward, and a lost
    /// one is made again by the client's next. 0 (the default): answer once
    /// the master has the write.
    pub fn wait_replicas(mut self, replicas: u32, timeout: Duration) -> RedisStore {
        self.replicas = replicas;
        self.replica_timeout = timeout;
        self
    }

    /// Reads Redis's AOF settings: on a cluster every node's (replicas
    /// too: one takes over in a failover), and the weakest is answered. A
    /// Redis that refuses `CONFIG GET` gives [`RedisDurability::Unknown`];
    /// only an unreachable one an error.
    pub async fn durability(&self) -> Result<RedisDurability, MailboxError> {
        let appendonly = self.config_get("appendonly").await?;
        let appendfsync = self.config_get("appendfsync").await?;
        let mut weakest = RedisDurability::Always;
        for (node, appendonly) in appendonly {
            let fsync = appendfsync
                .iter()
                .find(|(n, _)| *n == node)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| Err(format!("no appendfsync from {node}")));
            let durability = durability_of(appendonly, fsync);
            let durability = match durability {
                RedisDurability::Unknown(why) if !node.is_empty() => {
                    RedisDurability::Unknown(format!("{node}: {why}"))
                }
                other => other,
            };
            if durability.rank() > weakest.rank() {
                weakest = durability;
            }
        }
        Ok(weakest)
    }

    /// One setting of each node (one Redis: one, named ""): `Err(why)` for
    /// a node that answers but not with it.
    async fn config_get(
        &self,
        name: &str,
    ) -> Result<Vec<(String, Result<String, String>)>, MailboxError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let replies = match self.conn.on_every_node(&cmd).await {
            Ok(replies) => replies,
            Err(e) if is_connection_error(&e) => return Err(unavailable(e)),
            Err(e) => {
                return Ok(vec![(
                    String::new(),
                    Err(format!("CONFIG GET {name}: {e}")),
                )])
            }
        };
        Ok(replies
            .into_iter()
            .map(|(node, reply)| {
                let value = match reply {
                    Value::ServerError(e) => Err(format!("CONFIG GET {name}: {e:?}")),
                    reply => match redis::from_redis_value::<Vec<String>>(reply) {
                        Ok(pair) => match <[String; 2]>::try_from(pair) {
                            Ok([_, value]) => Ok(value),
                            Err(pair) => Err(format!("CONFIG GET {name} gave {pair:?}")),
                        },
                        Err(e) => Err(format!("CONFIG GET {name}: {e}")),
                    },
                };
                (node, value)
            })
            .collect())
    }

    /// Runs a batch of script calls (one pipeline, or one per slot on a
    /// cluster). A Redis that lost its scripts (a restart, `SCRIPT FLUSH`, a
    /// node that joined a cluster later) refuses them; they are loaded again
    /// and the batch repeated. A connection that dropped (Redis restarted)
    /// is reconnected and the batch repeated once. Every script here allows
    /// a repeat (appends are idempotent, acks and trims only move forward).
    async fn run(&self, batch: &Batch) -> Result<Vec<Value>, MailboxError> {
        let mut conn = self.conn.clone();
        let mut reconnected = false;
        let mut reloaded = false;
        loop {
            match conn.run(batch).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) && !reloaded => {
                    reloaded = true;
                    load_scripts(&self.scripts, &mut conn).await?;
                }
                Err(e) if is_connection_error(&e) && !reconnected => {
                    reconnected = true;
                    tracing::debug!(error = %e, "mailbox redis connection lost; retrying once");
                }
                reply => return reply.map_err(unavailable),
            }
        }
    }

    /// Runs a pipeline whose commands share one key (one slot); a
    /// connection that dropped is reconnected and the pipeline repeated
    /// once (callers only send pipelines that allow it).
    async fn run_pipe(&self, pipe: &Pipeline) -> Result<Vec<Value>, MailboxError> {
        let mut conn = self.conn.clone();
        let mut reconnected = false;
        loop {
            match pipe.query_async::<Vec<Value>>(&mut conn).await {
                Err(e) if is_connection_error(&e) && !reconnected => {
                    reconnected = true;
                    tracing::debug!(error = %e, "mailbox redis connection lost; retrying once");
                }
                reply => return reply.map_err(unavailable),
            }
        }
    }

    /// Runs one script call; a connection that dropped (Redis restarted) is
    /// reconnected and the call repeated once (every script here allows it).
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, MailboxError> {
        let mut conn = self.conn.clone();
        match call.invoke_async(&mut conn).await {
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "mailbox redis connection lost; retrying once");
                call.invoke_async(&mut conn).await.map_err(unavailable)
            }
            reply => reply.map_err(unavailable),
        }
    }

    /// Runs one command; a connection that dropped is reconnected and the
    /// command repeated once (callers only send commands that allow it).
    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, MailboxError> {
        let mut conn = self.conn.clone();
        match cmd.query_async(&mut conn).await {
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "mailbox redis connection lost; retrying once");
                cmd.query_async(&mut conn).await.map_err(unavailable)
            }
            reply => reply.map_err(unavailable),
        }
    }

    /// One page in `direction` from `bound` (the first seq to look at),
    /// cut by `limit` and `max_bytes`: (epoch, first, top, entries).
    async fn page(
        &self,
        mid: i64,
        direction: Direction,
        bound: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Epoch, u32, u32, Vec<Stored>), MailboxError> {
        let reply: Value = self
            .invoke(
                self.scripts
                    .read
                    .key(self.keys.meta(mid))
                    .key(self.keys.data(mid))
                    .arg(Epoch::random().as_str())
                    .arg(self.meta_ms)
                    .arg(direction.arg())
                    .arg(bound)
                    // A mailbox holds at most MAX_SEQ messages; the bound keeps the
                    // count a number Lua and Redis agree on.
                    .arg(limit.min(MAX_SEQ as usize))
                    .arg(max_bytes as u64),
            )
            .await?;
        let mut reply = array(reply)?.into_iter();
        let (epoch, first, top) = bounds(&mut reply)?;
        let mut cut = PageCut::new(limit, max_bytes);
        let mut entries = Vec::new();
        while let Some(seq) = reply.next() {
            let stored = stored(seq, &mut reply)?;
            if !cut.admit(stored.body.len()) {
                break;
            }
            entries.push(stored);
        }
        Ok((epoch, first, top, entries))
    }
}

/// Loads every script (`SCRIPT LOAD`: on every node of a cluster).
async fn load_scripts(scripts: &Scripts, conn: &mut Conn) -> Result<(), MailboxError> {
    for script in scripts.all() {
        script.load_async(conn).await.map_err(unavailable)?;
    }
    Ok(())
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

impl Direction {
    fn arg(self) -> &'static str {
        match self {
            Direction::Forward => "f",
            Direction::Backward => "b",
        }
    }
}

// === replies ===

fn array(value: Value) -> Result<Vec<Value>, MailboxError> {
    match value {
        Value::Array(values) => Ok(values),
        other => Err(corrupt(format_args!("expected an array, got {other:?}"))),
    }
}

fn int(value: &Value) -> Result<i64, MailboxError> {
    match value {
        Value::Int(n) => Ok(*n),
        other => Err(corrupt(format_args!("expected an integer, got {other:?}"))),
    }
}

/// A seq, or a bound one past the last seq (`first` of an emptied mailbox).
fn seq(value: &Value) -> Result<u32, MailboxError> {
    let n = int(value)?;
    match u32::try_from(n) {
        Ok(seq) if seq <= MAX_SEQ.saturating_add(1) => Ok(seq),
        _ => Err(corrupt(format_args!("seq {n} out of range"))),
    }
}

fn bulk(value: Value) -> Result<Vec<u8>, MailboxError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.into_bytes()),
        other => Err(corrupt(format_args!("expected a string, got {other:?}"))),
    }
}

fn text(value: Value) -> Result<String, MailboxError> {
    String::from_utf8(bulk(value)?).map_err(|e| corrupt(format_args!("not UTF-8: {e}")))
}

fn parse<T: FromStr>(value: Value, what: &str) -> Result<T, MailboxError> {
    let text = text(value)?;
    text.parse()
        .map_err(|_| corrupt(format_args!("{what} {text:?}")))
}

fn epoch(value: Value) -> Result<Epoch, MailboxError> {
    let bytes = bulk(value)?;
    Epoch::from_bytes(&bytes).map_err(|e| corrupt(format_args!("{e}: {bytes:?}")))
}

fn next(reply: &mut impl Iterator<Item = Value>) -> Result<Value, MailboxError> {
    reply.next().ok_or_else(|| corrupt("reply too short"))
}

/// The `epoch, first, top` a read or cursor reply starts with.
fn bounds(reply: &mut impl Iterator<Item = Value>) -> Result<(Epoch, u32, u32), MailboxError> {
    let epoch = epoch(next(reply)?)?;
    let first = seq(&next(reply)?)?;
    let top = seq(&next(reply)?)?;
    Ok((epoch, first, top))
}

/// One message of a read reply, whose seq is already taken.
fn stored(
    seq_value: Value,
    reply: &mut impl Iterator<Item = Value>,
) -> Result<Stored, MailboxError> {
    let seq = seq(&seq_value)?;
    let id = text(next(reply)?)?;
    let id = MsgId::parse(&id).map_err(|e| corrupt(format_args!("message id {id:?}: {e}")))?;
    Ok(Stored {
        seq,
        id,
        op: parse(next(reply)?, "op")?,
        from: parse(next(reply)?, "from")?,
        ts_ms: parse(next(reply)?, "ts")?,
        body: Bytes::from(bulk(next(reply)?)?),
    })
}

fn appended(mid: i64, value: Value) -> Result<Result<Appended, MailboxError>, MailboxError> {
    let reply = array(value)?;
    let [code, seq_value, epoch_value] = <[Value; 3]>::try_from(reply)
        .map_err(|reply| corrupt(format_args!("append answered {reply:?}")))?;
    let duplicate = match int(&code)? {
        0 => false,
        1 => true,
        2 => return Ok(Err(MailboxError::SeqExhausted { mid })),
        other => return Err(corrupt(format_args!("append answered code {other}"))),
    };
    Ok(Ok(Appended {
        mid,
        seq: seq(&seq_value)?,
        epoch: epoch(epoch_value)?,
        duplicate,
    }))
}

fn cursor(reply: Value) -> Result<Cursor, MailboxError> {
    let mut reply = array(reply)?.into_iter();
    let (epoch, first, top) = bounds(&mut reply)?;
    let mut read = 0;
    let mut devices: BTreeMap<String, DeviceAck> = BTreeMap::new();
    let mut fields = array(next(&mut reply)?)?.into_iter();
    while let Some(field) = fields.next() {
        let field = text(field)?;
        let value = next(&mut fields)?;
        if field == "r" {
            read = parse(value, "read")?;
        } else if let Some(key) = field.strip_prefix("a:") {
            devices
                .entry(key.to_owned())
                .or_insert(DeviceAck { ack: 0, ts_ms: 0 })
                .ack = parse(value, "ack")?;
        } else if let Some(key) = field.strip_prefix("t:") {
            devices
                .entry(key.to_owned())
                .or_insert(DeviceAck { ack: 0, ts_ms: 0 })
                .ts_ms = parse(value, "ack time")?;
        }
    }
    Ok(Cursor {
        epoch,
        first,
        top,
        read,
        devices,
    })
}

#[async_trait]
impl MailboxStore for RedisStore {
    async fn append(&self, batch: Vec<Entry>) -> Result<Vec<Appended>, MailboxError> {
        let mut answers = Vec::with_capacity(batch.len());
        // Used only by a mailbox that has no epoch yet.
        let new_epoch = Epoch::random();
        for chunk in batch.chunks(PIPELINE) {
            let mut pipe = Batch::new();
            for entry in chunk {
                let meta = self.keys.meta(entry.mid);
                let mut call = redis::cmd("EVALSHA");
                call.arg(self.scripts.append.get_hash())
                    .arg(3)
                    .arg(&meta)
                    .arg(self.keys.data(entry.mid))
                    .arg(self.keys.idem(entry.mid, &entry.id))
                    .arg(new_epoch.as_str())
                    .arg(entry.id.as_str())
                    .arg(entry.op)
                    .arg(entry.from)
                    .arg(entry.ts_ms)
                    .arg(&entry.body[..])
                    .arg(self.max_len)
                    .arg(self.idle_ms)
                    .arg(self.meta_ms)
                    .arg(self.window_ms)
                    .arg(MAX_SEQ);
                pipe.push(meta, call);
            }
            pipe.wait_replicas(self.replicas, self.replica_timeout);
            let replies = self.run(&pipe).await?;
            if replies.len() != chunk.len() {
                return Err(corrupt(format_args!(
                    "{} answers to {} appends",
                    replies.len(),
                    chunk.len()
                )));
            }
            let mut exhausted = None;
            for (entry, reply) in chunk.iter().zip(replies) {
                match appended(entry.mid, reply)? {
                    Ok(answer) => answers.push(answer),
                    Err(e) => {
                        exhausted.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = exhausted {
                return Err(e);
            }
        }
        Ok(answers)
    }

    async fn read(
        &self,
        mid: i64,
        after: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError> {
        let (epoch, first, top, entries) = self
            .page(
                mid,
                Direction::Forward,
                u64::from(after) + 1,
                limit,
                max_bytes,
            )
            .await?;
        Ok(Page {
            epoch,
            first,
            top,
            more: more_after(after, first, top, &entries),
            entries,
        })
    }

    async fn read_back(
        &self,
        mid: i64,
        before: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError> {
        // Seq 0 names no message, so a bound of 0 finds none.
        let bound = u64::from(before.saturating_sub(1));
        let (epoch, first, top, entries) = self
            .page(mid, Direction::Backward, bound, limit, max_bytes)
            .await?;
        Ok(Page {
            epoch,
            first,
            top,
            more: more_before(before, first, top, &entries),
            entries,
        })
    }

    async fn cursor(&self, mid: i64) -> Result<Cursor, MailboxError> {
        let reply: Value = self
            .invoke(
                self.scripts
                    .cursor
                    .key(self.keys.meta(mid))
                    .key(self.keys.data(mid))
                    .arg(Epoch::random().as_str())
                    .arg(self.meta_ms),
            )
            .await?;
        cursor(reply)
    }

    async fn ack(&self, acks: Vec<Ack>) -> Result<(), MailboxError> {
        let now = now_ms();
        for chunk in acks.chunks(PIPELINE) {
            let mut pipe = Batch::new();
            for ack in chunk {
                let meta = self.keys.meta(ack.mid);
                let mut call = redis::cmd("EVALSHA");
                call.arg(self.scripts.ack.get_hash())
                    .arg(1)
                    .arg(&meta)
                    .arg(&ack.key)
                    .arg(ack.seq)
                    .arg(now);
                pipe.push(meta, call);
            }
            self.run(&pipe).await?;
        }
        Ok(())
    }

    async fn set_read(&self, mid: i64, seq: u32) -> Result<(), MailboxError> {
        self.invoke::<i64>(self.scripts.set_read.key(self.keys.meta(mid)).arg(seq))
            .await
            .map(drop)
    }

    async fn trim(&self, mid: i64, upto: u32) -> Result<(), MailboxError> {
        self.invoke::<i64>(
            self.scripts
                .trim
                .key(self.keys.meta(mid))
                .key(self.keys.data(mid))
                .arg(upto),
        )
        .await
        .map(drop)
    }
}
