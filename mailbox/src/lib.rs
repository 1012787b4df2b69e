//! rim's mailboxes: one per user (`mid`), holding every stored message
//! addressed to the user, each at a dense position (`seq` 1, 2, 3, ...).
//!
//! Owns where a stored message lives and at which seq, what the user has
//! read and each device has acknowledged, and retention. It does not own
//! delivery (job, comet) nor the sync protocol (comet); [`complete`] is the
//! one protocol rule both the comet and the HTTP API take from here.
//!
//! # Glossary
//! - **mailbox**: the messages of one `mid`.
//! - **seq**: a message's position in its mailbox, given by the store in the
//!   same atomic step as the append, dense from 1, never reused within an
//!   epoch, at most [`MAX_SEQ`] (it travels in goim's int32 header).
//! - **epoch**: the id of a mailbox's history ([`Epoch`]); seqs of different
//!   epochs are unrelated. The memory and embedded stores have one epoch for
//!   all their mailboxes, the Redis store one per mailbox.
//! - **first** / **top**: the lowest seq still stored / the highest seq
//!   given. Retention and trims move `first` up; an empty mailbox has
//!   `first == top + 1`.
//! - **message id**: the idempotency key of an append ([`MsgId`]).
//! - **device**: a goim connection key; each has its own ack position.
//! - **group**: a set of mids named by a `gid`, which a group message is
//!   written to (one copy per member's mailbox).
//! - **mute**: a user may not send within a scope (`"all"`, `"group:<gid>"`,
//!   `"room:<type://id>"`) until a time or until lifted.
//!
//! # Layout
//! - [`MailboxStore`]: the storage trait.
//! - [`GroupStore`]: group membership and mutes, kept by the same stores as
//!   the mailboxes (so `rim standalone` needs nothing else, and distributed
//!   rim shares them through Redis).
//! - [`MemoryStore`]: in-process, for tests; its epoch lives as long as it.
//! - [`RedbStore`]: the embedded store of `rim standalone`, one redb file
//!   in a data directory, with one writer task that group-commits.
//! - `RedisStore` (cargo feature `redis`, on by default): the store of
//!   distributed rim, every mailbox in Redis under its own hash tag. Its
//!   `watch_mutes` tells other processes' mute caches what changed.
//! - [`MailboxConfig`]: retention (count cap, idempotency window, age, Redis
//!   time to live).

#![warn(missing_docs)]

mod config;
mod embedded;
mod error;
mod memory;
mod paging;
#[cfg(feature = "redis")]
mod redis;
mod types;

use async_trait::async_trait;

#[cfg(feature = "redis")]
pub use self::redis::{MuteChange, MuteWatch, RedisDurability, RedisStore};
pub use config::{MailboxConfig, MailboxConfigError};
pub use embedded::RedbStore;
pub use error::{EpochError, MailboxError, MsgIdError};
pub use memory::MemoryStore;
pub use types::{
    complete, Ack, Appended, Cursor, DeviceAck, Entry, Epoch, MsgId, Mute, Page, Stored, MAX_SEQ,
};

/// The storage of every mailbox.
#[async_trait]
pub trait MailboxStore: Send + Sync + 'static {
    /// Stores each entry at the next seq of its mailbox and answers where
    /// each landed, in the batch's order. Entries of one mid keep their
    /// order. An entry whose `(mid, id)` was appended within the idempotency
    /// window is not stored again: its answer has the first seq and
    /// `duplicate`.
    ///
    /// Each entry is stored atomically: its seq, message and id together or
    /// not at all. The memory and embedded stores also apply a batch all or
    /// nothing: on `Err` nothing of it is stored. The Redis store cannot (a
    /// batch spans mailboxes, hence cluster slots): on `Err` part of the
    /// batch may be stored. Retrying the same batch is safe with every
    /// store, as the entries already stored answer the retry as duplicates
    /// with their seqs.
    ///
    /// Once it returns `Ok` the batch is stored: on disk for the embedded
    /// store, as durably as its AOF setting makes it for Redis
    /// (`RedisStore::durability`).
    async fn append(&self, batch: Vec<Entry>) -> Result<Vec<Appended>, MailboxError>;

    /// The messages after `after`, oldest first: at most `limit`, and at
    /// most `max_bytes` of bodies except that a page holds at least one
    /// message when any is left (and `limit > 0`). Messages below `first`
    /// are gone; the page starts at `first` then. `more`: messages remain
    /// after the page.
    async fn read(
        &self,
        mid: i64,
        after: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError>;

    /// The messages below `before`, newest first, cut as in
    /// [`read`](MailboxStore::read) (`u32::MAX` reads from the newest).
    /// `more`: older messages remain.
    async fn read_back(
        &self,
        mid: i64,
        before: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError>;

    /// The mailbox's bounds, the user's read position and each device's ack.
    /// A mailbox never written to has first 1, top 0.
    async fn cursor(&self, mid: i64) -> Result<Cursor, MailboxError>;

    /// Records device acks, batched: each only raises its device's position
    /// (an older ack arriving late changes nothing), and none goes past the
    /// mailbox's `top`.
    async fn ack(&self, acks: Vec<Ack>) -> Result<(), MailboxError>;

    /// Raises the user's read position to `seq` (never lowers it, never past
    /// `top`).
    async fn set_read(&self, mid: i64, seq: u32) -> Result<(), MailboxError>;

    /// Removes every message up to and including `upto`: `first` becomes
    /// `upto + 1`. Past `top` it removes everything (`first = top + 1`);
    /// below `first` it does nothing. Seqs are never given again.
    async fn trim(&self, mid: i64, upto: u32) -> Result<(), MailboxError>;
}

/// Group membership and user mutes, stored where the mailboxes are.
///
/// **Groups.** A group exists while it has at least one member: adding the
/// first member creates it, removing the last one deletes it, and a group
/// without members answers exactly as a gid never used (no members, size 0).
/// Callers turn that into "no such group". Membership changes are rare next
/// to appends; each is durable once answered (fsynced by the embedded
/// store; as durable as its AOF setting for Redis).
///
/// **Mutes.** A user has at most one mute per scope; setting a scope again
/// replaces its end. Scopes are opaque strings here (`"all"`,
/// `"group:9"`, `"room:live://1"`): the caller validates and interprets
/// them. A mute whose `until_ms` has passed (`until_ms <= now`) is gone: it
/// is never listed, and stores remove it lazily. The Redis store announces
/// every mute change, so that other processes can drop what they cached
/// (`RedisStore::watch_mutes`); the other stores serve one process.
///
/// **What callers check.** gid 0 and mid 0 are ordinary numbers here; rim's
/// API refuses them before calling (0 means "none" there), as it enforces
/// group size limits. Clocks are the calling process's wall clock.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Adds `mids` to group `gid` (members already in it stay; repeats in
    /// `mids` count once) and answers the group's size afterwards.
    async fn add_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError>;

    /// Removes `mids` from group `gid` (non-members are ignored) and answers
    /// the group's size afterwards; 0 means the group is gone.
    async fn remove_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError>;

    /// The members of `gid`, ascending; empty when there is no such group.
    async fn members(&self, gid: i64) -> Result<Vec<i64>, MailboxError>;

    /// Whether `mid` is a member of `gid`.
    async fn is_member(&self, gid: i64, mid: i64) -> Result<bool, MailboxError>;

    /// Mutes `mid` in `scope` until `until_ms` (Unix ms, exclusive), or until
    /// lifted when `None`. Replaces the scope's previous mute, if any; an
    /// `until_ms` already past lifts it.
    async fn set_mute(
        &self,
        mid: i64,
        scope: &str,
        until_ms: Option<i64>,
    ) -> Result<(), MailboxError>;

    /// Lifts the mute of `mid` in `scope`, or every mute of `mid` when
    /// `None`. Lifting what is not muted does nothing.
    async fn clear_mute(&self, mid: i64, scope: Option<&str>) -> Result<(), MailboxError>;

    /// The mutes of `mid` that still hold, by scope ascending.
    async fn mutes(&self, mid: i64) -> Result<Vec<Mute>, MailboxError>;
}
