//! [`RedbStore`]: the embedded store of `rim standalone`, one redb database
//! file (`mailbox.redb`) in a data directory.
//!
//! Writes go through one writer task that group-commits (`writer`): an
//! append returns once its transaction is fsynced. Reads run read
//! transactions on the blocking pool and see the last commit. The epoch is
//! stored in the file: a new file is a new epoch; reopening a file keeps its
//! epoch, and seqs continue after the last one given. Table layout:
//! `layout`.
//!
//! Retention: the count cap (`max_len`) applies at append, in the same
//! transaction. Idempotency rows and messages older than `max_age` are
//! removed by a sweep the writer runs between batches, once a minute (more
//! often while it has a backlog). Device acks are kept for as long as their
//! mailbox.
//!
//! It is also the [`GroupStore`] of `rim standalone`: membership and mutes
//! live in the same file (`groups`), changed through the same writer.

mod groups;
mod layout;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::layout::{
    decode_stored, mbox_key, mbox_seq, mid_key, seq_at_parts, Meta, ACKS, BY_TIME, DB, EPOCH,
    GROUPS, IDEM, MBOX, META, MUTES,
};
use self::writer::{Request, Writer};
use crate::memory::now_ms;
use crate::paging::{more_after, more_before, PageCut};
use crate::{
    Ack, Appended, Cursor, DeviceAck, Entry, Epoch, GroupStore, MailboxConfig, MailboxError,
    MailboxStore, Mute, Page, Stored,
};

/// Requests that may wait for the writer; appends beyond it wait to be queued.
const QUEUE: usize = 4096;

/// A [`MailboxStore`] and [`GroupStore`] in a redb file.
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    epoch: Epoch,
    path: PathBuf,
    tx: mpsc::Sender<Request>,
    writer: JoinHandle<()>,
}

/// Maps any redb error to the store's error.
pub(crate) fn storage(e: impl Into<redb::Error>) -> MailboxError {
    match e.into() {
        redb::Error::Corrupted(what) => MailboxError::Corrupt(what),
        e => MailboxError::Unavailable(e.to_string()),
    }
}

fn closed() -> MailboxError {
    MailboxError::Unavailable("mailbox store closed".to_owned())
}

impl RedbStore {
    /// The database file's name inside the data directory.
    pub const FILE: &str = "mailbox.redb";

    /// Opens (or creates) `dir/mailbox.redb`, creating `dir` if needed, and
    /// starts the writer task. A file another process holds is refused.
    /// Call [`MailboxConfig::validate`] first.
    pub async fn open(
        dir: impl AsRef<Path>,
        config: MailboxConfig,
    ) -> Result<RedbStore, MailboxError> {
        let path = dir.as_ref().join(Self::FILE);
        let dir = dir.as_ref().to_owned();
        let (db, epoch, path) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| {
                MailboxError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
            let db = Database::create(&path).map_err(|e| {
                MailboxError::Unavailable(format!("cannot open {}: {e}", path.display()))
            })?;
            let epoch = init(&db)?;
            Ok::<_, MailboxError>((Arc::new(db), epoch, path))
        })
        .await
        .map_err(|e| MailboxError::Unavailable(format!("opening the mailbox store: {e}")))??;
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(writer::run(Writer::new(Arc::clone(&db), epoch, config), rx));
        tracing::info!(path = %path.display(), %epoch, "mailbox store open");
        Ok(RedbStore {
            db,
            epoch,
            path,
            tx,
            writer,
        })
    }

    /// The store's epoch (kept in the file).
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers every queued request, stops the writer and closes the file,
    /// so that it can be opened again.
    pub async fn close(self) {
        let RedbStore { db, tx, writer, .. } = self;
        drop(tx);
        if writer.await.is_err() {
            tracing::error!("mailbox writer task failed");
        }
        drop(db);
    }

    async fn write<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, MailboxError>>) -> Request,
    ) -> Result<T, MailboxError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(request(tx)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Runs `read` in a read transaction on the blocking pool.
    async fn read_with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction, Epoch) -> Result<T, MailboxError> + Send + 'static,
    ) -> Result<T, MailboxError> {
        let db = Arc::clone(&self.db);
        let epoch = self.epoch;
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            read(&txn, epoch)
        })
        .await
        .map_err(|e| MailboxError::Unavailable(format!("mailbox read failed: {e}")))?
    }
}

/// Creates every table and the epoch of a new file; reads the epoch of an
/// existing one.
fn init(db: &Database) -> Result<Epoch, MailboxError> {
    let txn = db.begin_write().map_err(storage)?;
    let epoch = {
        txn.open_table(MBOX).map_err(storage)?;
        txn.open_table(META).map_err(storage)?;
        txn.open_table(IDEM).map_err(storage)?;
        txn.open_table(ACKS).map_err(storage)?;
        txn.open_table(BY_TIME).map_err(storage)?;
        // Also in files made before groups existed: reads expect the tables.
        txn.open_table(GROUPS).map_err(storage)?;
        txn.open_table(MUTES).map_err(storage)?;
        let mut table = txn.open_table(DB).map_err(storage)?;
        let stored = table
            .get(EPOCH)
            .map_err(storage)?
            .map(|v| v.value().to_vec());
        match stored {
            Some(bytes) => Epoch::from_bytes(&bytes)
                .map_err(|e| MailboxError::Corrupt(format!("stored epoch: {e}")))?,
            None => {
                let epoch = Epoch::random();
                table
                    .insert(EPOCH, epoch.as_bytes().as_slice())
                    .map_err(storage)?;
                epoch
            }
        }
    };
    txn.commit().map_err(storage)?;
    Ok(epoch)
}

fn read_meta(txn: &ReadTransaction, mid: i64) -> Result<Meta, MailboxError> {
    let table = txn.open_table(META).map_err(storage)?;
    let meta = table.get(&mid_key(mid)).map_err(storage)?;
    Ok(meta.map_or_else(Meta::default, |v| Meta::decode(v.value())))
}

/// Messages `from..to` of `mid` (`to` exclusive), oldest first or newest
/// first, cut by `cut`.
fn read_range(
    txn: &ReadTransaction,
    mid: i64,
    from: u32,
    to: u64,
    backwards: bool,
    mut cut: PageCut,
) -> Result<Vec<Stored>, MailboxError> {
    if u64::from(from) >= to {
        return Ok(Vec::new());
    }
    let table = txn.open_table(MBOX).map_err(storage)?;
    // `to` is at most top + 1 <= 2^31, so it fits a u32.
    let end = mbox_key(mid, to as u32);
    let range = table.range(&mbox_key(mid, from)..&end).map_err(storage)?;
    let rows: Box<dyn Iterator<Item = _>> = if backwards {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    let mut entries = Vec::new();
    for row in rows {
        let (key, value) = row.map_err(storage)?;
        let stored = decode_stored(mbox_seq(key.value()), value.value())?;
        if !cut.admit(stored.body.len()) {
            break;
        }
        entries.push(stored);
    }
    Ok(entries)
}

#[async_trait]
impl MailboxStore for RedbStore {
    async fn append(&self, batch: Vec<Entry>) -> Result<Vec<Appended>, MailboxError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| Request::Append(batch, tx)).await
    }

    async fn read(
        &self,
        mid: i64,
        after: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError> {
        self.read_with(move |txn, epoch| {
            let meta = read_meta(txn, mid)?;
            let from = after.saturating_add(1).max(meta.first);
            let cut = PageCut::new(limit, max_bytes);
            let entries = read_range(txn, mid, from, u64::from(meta.top) + 1, false, cut)?;
            Ok(Page {
                epoch,
                first: meta.first,
                top: meta.top,
                more: more_after(after, meta.first, meta.top, &entries),
                entries,
            })
        })
        .await
    }

    async fn read_back(
        &self,
        mid: i64,
        before: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError> {
        self.read_with(move |txn, epoch| {
            let meta = read_meta(txn, mid)?;
            let to = u64::from(before).min(u64::from(meta.top) + 1);
            let cut = PageCut::new(limit, max_bytes);
            let entries = read_range(txn, mid, meta.first, to, true, cut)?;
            Ok(Page {
                epoch,
                first: meta.first,
                top: meta.top,
                more: more_before(before, meta.first, meta.top, &entries),
                entries,
            })
        })
        .await
    }

    async fn cursor(&self, mid: i64) -> Result<Cursor, MailboxError> {
        self.read_with(move |txn, epoch| {
            let meta = read_meta(txn, mid)?;
            let table = txn.open_table(ACKS).map_err(storage)?;
            let prefix = mid_key(mid);
            let mut devices = BTreeMap::new();
            for row in table.range(prefix.as_slice()..).map_err(storage)? {
                let (key, value) = row.map_err(storage)?;
                let Some(device) = key.value().strip_prefix(prefix.as_slice()) else {
                    break;
                };
                let (ack, ts_ms) = seq_at_parts(value.value());
                devices.insert(
                    String::from_utf8_lossy(device).into_owned(),
                    DeviceAck { ack, ts_ms },
                );
            }
            Ok(Cursor {
                epoch,
                first: meta.first,
                top: meta.top,
                read: meta.read,
                devices,
            })
        })
        .await
    }

    async fn ack(&self, acks: Vec<Ack>) -> Result<(), MailboxError> {
        if acks.is_empty() {
            return Ok(());
        }
        self.write(|tx| Request::Ack(acks, tx)).await
    }

    async fn set_read(&self, mid: i64, seq: u32) -> Result<(), MailboxError> {
        self.write(|tx| Request::SetRead(mid, seq, tx)).await
    }

    async fn trim(&self, mid: i64, upto: u32) -> Result<(), MailboxError> {
        self.write(|tx| Request::Trim(mid, upto, tx)).await
    }
}

#[async_trait]
impl GroupStore for RedbStore {
    async fn add_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError> {
        let mids = mids.to_vec();
        self.write(|tx| Request::AddMembers(gid, mids, tx)).await
    }

    async fn remove_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError> {
        let mids = mids.to_vec();
        self.write(|tx| Request::RemoveMembers(gid, mids, tx)).await
    }

    async fn members(&self, gid: i64) -> Result<Vec<i64>, MailboxError> {
        self.read_with(move |txn, _| {
            let table = txn.open_table(GROUPS).map_err(storage)?;
            groups::members(&table, gid)
        })
        .await
    }

    async fn is_member(&self, gid: i64, mid: i64) -> Result<bool, MailboxError> {
        self.read_with(move |txn, _| {
            let table = txn.open_table(GROUPS).map_err(storage)?;
            groups::is_member(&table, gid, mid)
        })
        .await
    }

    async fn set_mute(
        &self,
        mid: i64,
        scope: &str,
        until_ms: Option<i64>,
    ) -> Result<(), MailboxError> {
        let scope = scope.to_owned();
        self.write(|tx| Request::SetMute(mid, scope, until_ms, tx))
            .await
    }

    async fn clear_mute(&self, mid: i64, scope: Option<&str>) -> Result<(), MailboxError> {
        let scope = scope.map(str::to_owned);
        self.write(|tx| Request::ClearMute(mid, scope, tx)).await
    }

    async fn mutes(&self, mid: i64) -> Result<Vec<Mute>, MailboxError> {
        let now = now_ms();
        self.read_with(move |txn, _| {
            let table = txn.open_table(MUTES).map_err(storage)?;
            groups::mutes(&table, mid, now)
        })
        .await
    }
}
