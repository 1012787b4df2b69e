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
//!
//! # Layout
//! - [`MailboxStore`]: the storage trait.
//! - [`MemoryStore`]: in-process, for tests; its epoch lives as long as it.
//! - [`RedbStore`]: the embedded store of `rim standalone`, one redb file
//!   in a data directory, with one writer task that group-commits.
//! - `RedisStore` (cargo feature `redis`, on by default): the store of
//!   distributed rim, every mailbox in Redis under its own hash tag.
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
pub use self::redis::{RedisDurability, RedisStore};
pub use config::{MailboxConfig, MailboxConfigError};
pub use embedded::RedbStore;
pub use error::{EpochError, MailboxError, MsgIdError};
pub use memory::MemoryStore;
pub use types::{
    complete, Ack, Appended, Cursor, DeviceAck, Entry, Epoch, MsgId, Page, Stored, MAX_SEQ,
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
