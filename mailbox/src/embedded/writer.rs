//! The embedded store's single writer: every change goes through one task,
//! which group-commits.
//!
//! The task takes the requests that queued up while the previous commit ran
//! (up to [`MAX_BATCH`] entries and acks; one larger request goes alone),
//! applies them in one redb write transaction, commits it durably (one
//! fsync), and only then answers each waiter. It never waits to fill a
//! batch: under load a batch is what arrived during the last fsync, and a
//! lone request is committed at once. The transaction itself runs on the
//! blocking pool, so the fsync never stalls the runtime's workers.
//!
//! Group membership and mute changes go through the same task and commit
//! with the appends queued beside them: they are rare, and one writer keeps
//! a single order of changes (redb allows one write transaction at a time
//! anyway). Their tables are opened only by a transaction that uses them, so
//! the append path pays nothing for them.
//!
//! Between batches the task runs the retention sweep (see [`Writer::sweep`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use super::groups;
use super::layout::{
    by_time_key, by_time_parts, encode_entry, mbox_key, mid_and, mid_key, seq_at, seq_at_parts,
    Meta, ACKS, BY_TIME, DB, GROUPS, IDEM, IDEM_SWEPT, MBOX, META, MUTES,
};
use super::storage;
use crate::memory::now_ms;
use crate::{Ack, Appended, Entry, Epoch, MailboxConfig, MailboxError, MAX_SEQ};

/// Entries (and acks) applied in one transaction, unless one request alone
/// holds more.
pub(super) const MAX_BATCH: usize = 1000;
/// How often the retention sweep runs while it has nothing left to do.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// `by_time` rows one sweep transaction handles, per kind of expiry.
const SWEEP_ROWS: usize = 1000;

/// A change waiting for the writer, with whom to answer.
#[derive(Debug)]
pub(super) enum Request {
    Append(
        Vec<Entry>,
        oneshot::Sender<Result<Vec<Appended>, MailboxError>>,
    ),
    Ack(Vec<Ack>, oneshot::Sender<Result<(), MailboxError>>),
    SetRead(i64, u32, oneshot::Sender<Result<(), MailboxError>>),
    Trim(i64, u32, oneshot::Sender<Result<(), MailboxError>>),
    /// gid, mids; answers the group's size.
    AddMembers(i64, Vec<i64>, oneshot::Sender<Result<usize, MailboxError>>),
    /// gid, mids; answers the group's size.
    RemoveMembers(i64, Vec<i64>, oneshot::Sender<Result<usize, MailboxError>>),
    /// mid, scope, until.
    SetMute(
        i64,
        String,
        Option<i64>,
        oneshot::Sender<Result<(), MailboxError>>,
    ),
    /// mid, scope (`None`: all).
    ClearMute(
        i64,
        Option<String>,
        oneshot::Sender<Result<(), MailboxError>>,
    ),
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Append(entries, _) => entries.len(),
            Request::Ack(acks, _) => acks.len(),
            Request::AddMembers(_, mids, _) | Request::RemoveMembers(_, mids, _) => {
                mids.len().max(1)
            }
            Request::SetRead(..)
            | Request::Trim(..)
            | Request::SetMute(..)
            | Request::ClearMute(..) => 1,
        }
    }

    fn answer(self, outcome: Result<Outcome, MailboxError>) {
        // A waiter that gave up (dropped its future) needs no answer.
        match self {
            Request::Append(_, tx) => {
                let _ = tx.send(outcome.map(|o| match o {
                    Outcome::Appended(appended) => appended,
                    Outcome::Done | Outcome::Size(_) => Vec::new(),
                }));
            }
            Request::AddMembers(_, _, tx) | Request::RemoveMembers(_, _, tx) => {
                let _ = tx.send(outcome.map(|o| match o {
                    Outcome::Size(size) => size,
                    Outcome::Appended(_) | Outcome::Done => 0,
                }));
            }
            Request::Ack(_, tx)
            | Request::SetRead(_, _, tx)
            | Request::Trim(_, _, tx)
            | Request::SetMute(_, _, _, tx)
            | Request::ClearMute(_, _, tx) => {
                let _ = tx.send(outcome.map(|_| ()));
            }
        }
    }
}

/// What one request did, once committed.
#[derive(Debug)]
enum Outcome {
    Appended(Vec<Appended>),
    /// A group's size after a membership change.
    Size(usize),
    Done,
}

/// The writing side of the database: the epoch, retention settings and a
/// clock that never goes back within the process.
#[derive(Debug)]
pub(super) struct Writer {
    db: Arc<Database>,
    epoch: Epoch,
    config: MailboxConfig,
    last_ms: i64,
}

/// Runs the writer until every sender is gone, answering what is left first.
pub(super) async fn run(writer: Writer, mut rx: mpsc::Receiver<Request>) {
    let mut writer = Some(writer);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            biased;
            request = rx.recv() => match request {
                Some(request) => request,
                None => break,
            },
            _ = sweep.tick() => {
                let Some(mut w) = writer.take() else { break };
                let (w, swept) = blocking(move || {
                    let swept = w.sweep(now_ms());
                    (w, swept)
                })
                .await;
                writer = w;
                match swept {
                    // A full pass: more is due, right after the waiting requests.
                    Some(Ok(rows)) if rows >= SWEEP_ROWS => sweep.reset_immediately(),
                    Some(Ok(_)) | None => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "mailbox retention sweep failed"),
                }
                continue;
            }
        };
        let mut weight = first.weight();
        let mut batch = vec![first];
        while weight < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => {
                    weight += request.weight();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let Some(mut w) = writer.take() else { break };
        let (w, batch) = blocking(move || {
            let outcomes = w.apply(&batch);
            (w, (batch, outcomes))
        })
        .await;
        writer = w;
        let Some((batch, outcomes)) = batch else {
            // The transaction panicked; its requests are dropped, so their
            // waiters see the store as closed.
            tracing::error!("mailbox writer panicked; the store is closed");
            break;
        };
        match outcomes {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    request.answer(outcome);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = batch.len(), "mailbox commit failed");
                for request in batch {
                    request.answer(Err(e.clone()));
                }
            }
        }
    }
}

/// Runs `f` on the blocking pool; `None` if it panicked.
async fn blocking<T: Send + 'static, R: Send + 'static>(
    f: impl FnOnce() -> (T, R) + Send + 'static,
) -> (Option<T>, Option<R>) {
    match tokio::task::spawn_blocking(f).await {
        Ok((t, r)) => (Some(t), Some(r)),
        Err(_) => (None, None),
    }
}

impl Writer {
    pub(super) fn new(db: Arc<Database>, epoch: Epoch, config: MailboxConfig) -> Writer {
        Writer {
            db,
            epoch,
            config,
            last_ms: 0,
        }
    }

    /// Wall-clock milliseconds, never below what this writer saw before (the
    /// `by_time` order and the idempotency window rely on it).
    fn clock(&mut self, now_ms: i64) -> i64 {
        self.last_ms = self.last_ms.max(now_ms);
        self.last_ms
    }

    /// Applies `batch` in one durable transaction. `Err` (nothing committed)
    /// fails every request; otherwise each has its own outcome (a refused
    /// request changed nothing).
    fn apply(
        &mut self,
        batch: &[Request],
    ) -> Result<Vec<Result<Outcome, MailboxError>>, MailboxError> {
        let now = self.clock(now_ms());
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        let outcomes = {
            let mut tables = Tables::open(&txn, now, &self.config)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for request in batch {
                outcomes.push(tables.apply(request, self.epoch)?);
            }
            tables.flush()?;
            outcomes
        };
        txn.commit().map_err(storage)?;
        Ok(outcomes)
    }

    /// One pass of retention, in one transaction: expires up to
    /// [`SWEEP_ROWS`] idempotency rows older than the window, and removes up
    /// to as many messages older than `max_age`. Returns the larger of the
    /// two counts. Not fsynced by itself: the next append's commit makes it
    /// durable, and a pass lost in a crash is simply done again.
    pub(super) fn sweep(&mut self, now_ms: i64) -> Result<usize, MailboxError> {
        let now = self.clock(now_ms);
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::None).map_err(storage)?;
        let rows = {
            let mut tables = Tables::open(&txn, now, &self.config)?;
            let expired = tables.expire_ids()?;
            let aged = tables.remove_aged()?;
            tables.flush()?;
            expired.max(aged)
        };
        txn.commit().map_err(storage)?;
        Ok(rows)
    }
}

/// The tables of one write transaction, and the metas it changed (written
/// once, at [`Tables::flush`]). `groups` and `mutes` are opened on first use.
struct Tables<'txn> {
    txn: &'txn WriteTransaction,
    mbox: Table<'txn, &'static [u8; 12], &'static [u8]>,
    meta: Table<'txn, &'static [u8; 8], &'static [u8; 12]>,
    idem: Table<'txn, &'static [u8], &'static [u8; 12]>,
    acks: Table<'txn, &'static [u8], &'static [u8; 12]>,
    by_time: Table<'txn, &'static [u8; 16], &'static [u8]>,
    db: Table<'txn, &'static str, &'static [u8]>,
    groups: Option<Table<'txn, &'static [u8; 16], ()>>,
    mutes: Option<Table<'txn, &'static [u8], Option<i64>>>,
    /// mid -> (meta, changed).
    metas: HashMap<i64, (Meta, bool)>,
    now_ms: i64,
    config: &'txn MailboxConfig,
}

/// A `by_time` key and its value (the id of its `idem` row, or empty).
type TimedRow = ([u8; 16], Vec<u8>);

fn millis(d: Duration) -> i64 {
    d.as_millis().try_into().unwrap_or(i64::MAX)
}

impl<'txn> Tables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        now_ms: i64,
        config: &'txn MailboxConfig,
    ) -> Result<Tables<'txn>, MailboxError> {
        Ok(Tables {
            txn,
            mbox: txn.open_table(MBOX).map_err(storage)?,
            meta: txn.open_table(META).map_err(storage)?,
            idem: txn.open_table(IDEM).map_err(storage)?,
            acks: txn.open_table(ACKS).map_err(storage)?,
            by_time: txn.open_table(BY_TIME).map_err(storage)?,
            db: txn.open_table(DB).map_err(storage)?,
            groups: None,
            mutes: None,
            metas: HashMap::new(),
            now_ms,
            config,
        })
    }

    fn groups(&mut self) -> Result<&mut Table<'txn, &'static [u8; 16], ()>, MailboxError> {
        if self.groups.is_none() {
            self.groups = Some(self.txn.open_table(GROUPS).map_err(storage)?);
        }
        // Set just above when it was missing.
        Ok(self.groups.as_mut().expect("groups table open"))
    }

    fn mutes(&mut self) -> Result<&mut Table<'txn, &'static [u8], Option<i64>>, MailboxError> {
        if self.mutes.is_none() {
            self.mutes = Some(self.txn.open_table(MUTES).map_err(storage)?);
        }
        // Set just above when it was missing.
        Ok(self.mutes.as_mut().expect("mutes table open"))
    }

    fn meta(&mut self, mid: i64) -> Result<Meta, MailboxError> {
        if let Some((meta, _)) = self.metas.get(&mid) {
            return Ok(*meta);
        }
        let meta = self
            .meta
            .get(&mid_key(mid))
            .map_err(storage)?
            .map_or_else(Meta::default, |v| Meta::decode(v.value()));
        self.metas.insert(mid, (meta, false));
        Ok(meta)
    }

    fn put_meta(&mut self, mid: i64, meta: Meta) {
        self.metas.insert(mid, (meta, true));
    }

    fn flush(&mut self) -> Result<(), MailboxError> {
        for (mid, (meta, changed)) in &self.metas {
            if *changed {
                self.meta
                    .insert(&mid_key(*mid), &meta.encode())
                    .map_err(storage)?;
            }
        }
        self.metas.clear();
        Ok(())
    }

    /// Applies one request. The outer `Err` is a storage failure (the
    /// transaction is lost); the inner one a refusal that changed nothing.
    fn apply(
        &mut self,
        request: &Request,
        epoch: Epoch,
    ) -> Result<Result<Outcome, MailboxError>, MailboxError> {
        match request {
            Request::Append(entries, _) => self.append(entries, epoch),
            Request::Ack(acks, _) => {
                for ack in acks {
                    self.ack(ack)?;
                }
                Ok(Ok(Outcome::Done))
            }
            Request::SetRead(mid, seq, _) => {
                let mut meta = self.meta(*mid)?;
                let read = meta.read.max((*seq).min(meta.top));
                if read != meta.read {
                    meta.read = read;
                    self.put_meta(*mid, meta);
                }
                Ok(Ok(Outcome::Done))
            }
            Request::Trim(mid, upto, _) => {
                let mut meta = self.meta(*mid)?;
                let upto = (*upto).min(meta.top);
                if upto >= meta.first {
                    self.remove_messages(*mid, meta.first, upto)?;
                    meta.first = upto + 1;
                    self.put_meta(*mid, meta);
                }
                Ok(Ok(Outcome::Done))
            }
            Request::AddMembers(gid, mids, _) => {
                let size = groups::add(self.groups()?, *gid, mids)?;
                Ok(Ok(Outcome::Size(size)))
            }
            Request::RemoveMembers(gid, mids, _) => {
                let size = groups::remove(self.groups()?, *gid, mids)?;
                Ok(Ok(Outcome::Size(size)))
            }
            Request::SetMute(mid, scope, until_ms, _) => {
                let now = self.now_ms;
                groups::set_mute(self.mutes()?, *mid, scope, *until_ms, now)?;
                Ok(Ok(Outcome::Done))
            }
            Request::ClearMute(mid, scope, _) => {
                groups::clear_mute(self.mutes()?, *mid, scope.as_deref())?;
                Ok(Ok(Outcome::Done))
            }
        }
    }

    fn append(
        &mut self,
        entries: &[Entry],
        epoch: Epoch,
    ) -> Result<Result<Outcome, MailboxError>, MailboxError> {
        // All or nothing: refuse before writing anything.
        let mut counts: HashMap<i64, u64> = HashMap::new();
        for entry in entries {
            *counts.entry(entry.mid).or_default() += 1;
        }
        for (&mid, &count) in &counts {
            if u64::from(self.meta(mid)?.top) + count > u64::from(MAX_SEQ) {
                return Ok(Err(MailboxError::SeqExhausted { mid }));
            }
        }
        let now = self.now_ms;
        let now_s = u32::try_from(now / 1000).unwrap_or(u32::MAX);
        let window = millis(self.config.idempotency_window);
        let mut appended = Vec::with_capacity(entries.len());
        for entry in entries {
            let mid = entry.mid;
            let id = entry.id.as_str().as_bytes();
            let idem_key = mid_and(mid, id);
            if entry.dedupe {
                let seen = self
                    .idem
                    .get(idem_key.as_slice())
                    .map_err(storage)?
                    .map(|v| seq_at_parts(v.value()));
                if let Some((seq, at)) = seen {
                    if now.saturating_sub(at) < window {
                        appended.push(Appended {
                            mid,
                            seq,
                            epoch,
                            duplicate: true,
                        });
                        continue;
                    }
                }
            }
            let mut meta = self.meta(mid)?;
            meta.top += 1;
            let seq = meta.top;
            self.mbox
                .insert(&mbox_key(mid, seq), encode_entry(entry).as_slice())
                .map_err(storage)?;
            // The `by_time` row names the idempotency row to expire; without
            // one its value is empty.
            let remembered: &[u8] = if entry.dedupe {
                self.idem
                    .insert(idem_key.as_slice(), &seq_at(seq, now))
                    .map_err(storage)?;
                id
            } else {
                &[]
            };
            self.by_time
                .insert(&by_time_key(now_s, mid, seq), remembered)
                .map_err(storage)?;
            let max_len = self.config.max_len;
            if seq - meta.first >= max_len {
                self.remove_messages(mid, meta.first, seq - max_len)?;
                meta.first = seq - max_len + 1;
            }
            self.put_meta(mid, meta);
            appended.push(Appended {
                mid,
                seq,
                epoch,
                duplicate: false,
            });
        }
        Ok(Ok(Outcome::Appended(appended)))
    }

    fn ack(&mut self, ack: &Ack) -> Result<(), MailboxError> {
        let seq = ack.seq.min(self.meta(ack.mid)?.top);
        let key = mid_and(ack.mid, ack.key.as_bytes());
        let known = self
            .acks
            .get(key.as_slice())
            .map_err(storage)?
            .map_or(0, |v| seq_at_parts(v.value()).0);
        if seq > known {
            self.acks
                .insert(key.as_slice(), &seq_at(seq, self.now_ms))
                .map_err(storage)?;
        }
        Ok(())
    }

    /// Removes the messages `from..=to` of `mid` (rows already gone are fine).
    fn remove_messages(&mut self, mid: i64, from: u32, to: u32) -> Result<(), MailboxError> {
        for seq in from..=to {
            self.mbox.remove(&mbox_key(mid, seq)).map_err(storage)?;
        }
        Ok(())
    }

    /// `by_time` keys strictly older than `now - age`, at most [`SWEEP_ROWS`],
    /// after `after` when given.
    fn older_than(
        &self,
        age: Duration,
        after: Option<[u8; 16]>,
    ) -> Result<Vec<TimedRow>, MailboxError> {
        let horizon_ms = self.now_ms.saturating_sub(millis(age));
        let horizon_s = u32::try_from(horizon_ms.max(0) / 1000).unwrap_or(u32::MAX);
        let end = by_time_key(horizon_s, i64::MIN, 0);
        if after.is_some_and(|after| after >= end) {
            // The sweep is ahead of the horizon (the clock went back across
            // a restart); nothing to do until it catches up.
            return Ok(Vec::new());
        }
        let range = match after {
            Some(after) => self.by_time.range(&after..&end),
            None => self.by_time.range(..&end),
        }
        .map_err(storage)?;
        let mut rows = Vec::new();
        for row in range.take(SWEEP_ROWS + 1) {
            let (key, id) = row.map_err(storage)?;
            let key = *key.value();
            if Some(key) == after {
                continue;
            }
            rows.push((key, id.value().to_vec()));
            if rows.len() == SWEEP_ROWS {
                break;
            }
        }
        Ok(rows)
    }

    /// Forgets the idempotency rows of appends older than the window.
    fn expire_ids(&mut self) -> Result<usize, MailboxError> {
        let after = self
            .db
            .get(IDEM_SWEPT)
            .map_err(storage)?
            .and_then(|v| <[u8; 16]>::try_from(v.value()).ok());
        let rows = self.older_than(self.config.idempotency_window, after)?;
        for (key, id) in &rows {
            self.forget_id(key, id)?;
        }
        if let Some((last, _)) = rows.last() {
            self.db
                .insert(IDEM_SWEPT, last.as_slice())
                .map_err(storage)?;
        }
        Ok(rows.len())
    }

    /// Removes the idempotency row of the append `by_time` key names, unless
    /// the id was appended again since (a later seq).
    fn forget_id(&mut self, key: &[u8; 16], id: &[u8]) -> Result<(), MailboxError> {
        if id.is_empty() {
            // Appended without an idempotency row.
            return Ok(());
        }
        let (mid, seq) = by_time_parts(key);
        let idem_key = mid_and(mid, id);
        let current = self
            .idem
            .get(idem_key.as_slice())
            .map_err(storage)?
            .map(|v| seq_at_parts(v.value()).0);
        if current == Some(seq) {
            self.idem.remove(idem_key.as_slice()).map_err(storage)?;
        }
        Ok(())
    }

    /// Removes messages older than `max_age`, moving their mailbox's `first`.
    fn remove_aged(&mut self) -> Result<usize, MailboxError> {
        let rows = self.older_than(self.config.max_age, None)?;
        for (key, id) in &rows {
            self.by_time.remove(key).map_err(storage)?;
            // Normally long expired; done here too in case max_age is the
            // shorter limit or the idempotency sweep lags behind.
            self.forget_id(key, id)?;
            let (mid, seq) = by_time_parts(key);
            let mut meta = self.meta(mid)?;
            if seq >= meta.first {
                self.remove_messages(mid, meta.first, seq)?;
                meta.first = seq + 1;
                self.put_meta(mid, meta);
            }
        }
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::MsgId;

    const HOUR_MS: i64 = 3_600_000;

    fn append(writer: &mut Writer, mid: i64, id: &str) -> Appended {
        append_with(writer, mid, id, true)
    }

    fn append_with(writer: &mut Writer, mid: i64, id: &str, dedupe: bool) -> Appended {
        let entry = Entry {
            mid,
            id: MsgId::parse(id).unwrap(),
            op: 1000,
            from: 0,
            ts_ms: 0,
            body: Bytes::from_static(b"x"),
            dedupe,
        };
        let (tx, _rx) = oneshot::channel();
        let request = Request::Append(vec![entry], tx);
        let mut outcomes = writer.apply(std::slice::from_ref(&request)).unwrap();
        match outcomes.pop().unwrap().unwrap() {
            Outcome::Appended(mut appended) => appended.pop().unwrap(),
            Outcome::Done | Outcome::Size(_) => panic!("an append answers where it landed"),
        }
    }

    /// A writer on a new file with a 1 h idempotency window and a 2 h
    /// `max_age`; the directory lives as long as the first value.
    fn hour_window_writer() -> (tempfile::TempDir, Arc<Database>, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("m.redb")).unwrap());
        let epoch = super::super::init(&db).unwrap();
        let config = MailboxConfig {
            idempotency_window: Duration::from_secs(3600),
            max_age: Duration::from_secs(2 * 3600),
            ..MailboxConfig::default()
        };
        let writer = Writer::new(Arc::clone(&db), epoch, config);
        (dir, db, writer)
    }

    #[test]
    fn the_sweep_forgets_ids_after_the_window_and_messages_after_max_age() {
        let (_dir, db, mut writer) = hour_window_writer();
        let meta = || super::super::read_meta(&db.begin_read().unwrap(), 1).unwrap();

        let now = now_ms();
        assert_eq!(append(&mut writer, 1, "a").seq, 1);
        assert_eq!(append(&mut writer, 1, "b").seq, 2);
        assert_eq!(writer.sweep(now).unwrap(), 0, "nothing is old yet");
        assert!(append(&mut writer, 1, "a").duplicate);

        // Past the window: the ids are forgotten, the messages kept.
        assert_eq!(writer.sweep(now + HOUR_MS + 2000).unwrap(), 2);
        let again = append(&mut writer, 1, "a");
        assert_eq!((again.seq, again.duplicate), (3, false));
        assert_eq!((meta().first, meta().top), (1, 3));

        // Past max_age of the first two: they go, first moves.
        assert_eq!(writer.sweep(now + 2 * HOUR_MS + 2000).unwrap(), 2);
        assert_eq!((meta().first, meta().top), (3, 3));
        let txn = db.begin_read().unwrap();
        let mbox = txn.open_table(MBOX).unwrap();
        assert!(mbox.get(&mbox_key(1, 2)).unwrap().is_none());
        assert!(mbox.get(&mbox_key(1, 3)).unwrap().is_some());
        drop((mbox, txn));
        assert_eq!(writer.sweep(now + 2 * HOUR_MS + 2000).unwrap(), 0, "done");
    }

    #[test]
    fn an_append_without_dedupe_keeps_no_id_row_and_still_ages_out() {
        let (_dir, db, mut writer) = hour_window_writer();
        let now = now_ms();
        assert_eq!(append_with(&mut writer, 1, "g", false).seq, 1);
        let idem_rows = || {
            let txn = db.begin_read().unwrap();
            let idem = txn.open_table(IDEM).unwrap();
            idem.len().unwrap()
        };
        assert_eq!(idem_rows(), 0, "no idempotency row");
        // Nothing to match against: the same id is a new message, and a
        // later deduplicated append of it is not taken for a repeat.
        assert!(!append_with(&mut writer, 1, "g", false).duplicate);
        assert_eq!(append(&mut writer, 1, "g").seq, 3);
        assert_eq!(idem_rows(), 1);
        assert!(append(&mut writer, 1, "g").duplicate);

        assert_eq!(writer.sweep(now + HOUR_MS + 2000).unwrap(), 3);
        assert_eq!(idem_rows(), 0);
        assert_eq!(writer.sweep(now + 2 * HOUR_MS + 2000).unwrap(), 3);
        let meta = super::super::read_meta(&db.begin_read().unwrap(), 1).unwrap();
        assert_eq!((meta.first, meta.top), (4, 3), "all three aged out");
    }
}
