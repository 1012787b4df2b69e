//! [`RedisStore`]: the mailbox store of distributed rim. Every mailbox lives
//! in Redis under its own hash tag (layout: `keys`), and every operation on
//! a mailbox is one Lua script (`scripts`), so it is atomic per mailbox and
//! also runs on a cluster. The redis crate's connection manager reconnects
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
//!   setting makes it; [`RedisStore::durability`] reports that setting so
//!   that a process can warn when it is not `appendfsync always`.
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
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, Pipeline, RedisError, ServerErrorKind, Value};

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
    /// For the connections a [`MuteWatch`] makes.
    client: redis::Client,
    /// Each command's and connection attempt's bound.
    timeout: Duration,
    conn: ConnectionManager,
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

    /// Connects to the Redis at `url` (`redis://host:port/db`) and loads the
    /// scripts; every key starts with `prefix` (no braces: the mid is the
    /// hash tag). Fails when Redis cannot be reached. Each command, and each
    /// connection attempt, gives up after `timeout`; a lost connection is
    /// made again on the next command. Call [`MailboxConfig::validate`]
    /// first.
    pub async fn connect(
        url: &str,
        prefix: &str,
        config: MailboxConfig,
        timeout: Duration,
    ) -> Result<RedisStore, MailboxError> {
        let keys = Keys::new(prefix)?;
        let client = redis::Client::open(url)
            .map_err(|e| MailboxError::Config(format!("redis url {url:?}: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager)
            .await
            .map_err(unavailable)?;
        let scripts = Arc::new(Scripts::new());
        load_scripts(&scripts, &mut conn).await?;
        Ok(RedisStore {
            client,
            timeout,
            conn,
            keys,
            scripts,
            max_len: config.max_len,
            idle_ms: millis(config.idle_ttl),
            meta_ms: millis(config.meta_ttl),
            window_ms: millis(config.idempotency_window),
        })
    }

    /// Reads Redis's AOF settings. A Redis that refuses `CONFIG GET` gives
    /// [`RedisDurability::Unknown`]; only an unreachable one an error.
    pub async fn durability(&self) -> Result<RedisDurability, MailboxError> {
        let appendonly = match self.config_get("appendonly").await? {
            Ok(value) => value,
            Err(why) => return Ok(RedisDurability::Unknown(why)),
        };
        match appendonly.as_str() {
            "no" => return Ok(RedisDurability::NoAof),
            "yes" => {}
            other => {
                return Ok(RedisDurability::Unknown(format!("appendonly {other:?}")));
            }
        }
        let fsync = match self.config_get("appendfsync").await? {
            Ok(value) => value,
            Err(why) => return Ok(RedisDurability::Unknown(why)),
        };
        Ok(match fsync.as_str() {
            "always" => RedisDurability::Always,
            "everysec" => RedisDurability::EverySec,
            "no" => RedisDurability::OsFlush,
            other => RedisDurability::Unknown(format!("appendfsync {other:?}")),
        })
    }

    /// One setting: `Ok(Err(why))` when Redis answers but not with it.
    async fn config_get(&self, name: &str) -> Result<Result<String, String>, MailboxError> {
        let mut conn = self.conn.clone();
        let reply = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async::<Vec<String>>(&mut conn)
            .await;
        match reply {
            Ok(pair) => match <[String; 2]>::try_from(pair) {
                Ok([_, value]) => Ok(Ok(value)),
                Err(pair) => Ok(Err(format!("CONFIG GET {name} gave {pair:?}"))),
            },
            Err(e) if is_connection_error(&e) => Err(unavailable(e)),
            Err(e) => Ok(Err(format!("CONFIG GET {name}: {e}"))),
        }
    }

    /// Runs a pipeline of script calls. A Redis that lost its scripts (a
    /// restart, `SCRIPT FLUSH`) refuses them all; they are loaded again and
    /// the pipeline repeated. A connection that dropped (Redis restarted) is
    /// reconnected and the pipeline repeated once. Every script here allows
    /// a repeat (appends are idempotent, acks and trims only move forward).
    async fn run(&self, pipe: &Pipeline) -> Result<Vec<Value>, MailboxError> {
        let mut conn = self.conn.clone();
        let mut reconnected = false;
        let mut reloaded = false;
        loop {
            match pipe.query_async::<Vec<Value>>(&mut conn).await {
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

async fn load_scripts(scripts: &Scripts, conn: &mut ConnectionManager) -> Result<(), MailboxError> {
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
            let mut pipe = redis::pipe();
            for entry in chunk {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.append.get_hash())
                    .arg(3)
                    .arg(self.keys.meta(entry.mid))
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
            }
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
            let mut pipe = redis::pipe();
            for ack in chunk {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.ack.get_hash())
                    .arg(1)
                    .arg(self.keys.meta(ack.mid))
                    .arg(&ack.key)
                    .arg(ack.seq)
                    .arg(now);
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
