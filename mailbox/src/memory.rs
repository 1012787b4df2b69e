//! [`MemoryStore`]: every mailbox in process memory, for tests. Its epoch is
//! drawn when it is created, so a new store is a new history, as after the
//! loss of a real store.
//!
//! It applies the count cap and the idempotency window like the embedded
//! store, but no age limit (`max_age`): nothing here outlives the process.
//! It also keeps groups and mutes ([`GroupStore`]) in maps.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::paging::{more_after, more_before, PageCut};
use crate::{
    Ack, Appended, Cursor, DeviceAck, Entry, Epoch, GroupStore, MailboxConfig, MailboxError,
    MailboxStore, MsgId, Mute, Page, Stored, MAX_SEQ,
};

/// An in-process [`MailboxStore`] and [`GroupStore`].
#[derive(Debug)]
pub struct MemoryStore {
    epoch: Epoch,
    config: MailboxConfig,
    mailboxes: Mutex<HashMap<i64, Mailbox>>,
    /// gid -> members; a group without members is removed.
    groups: Mutex<HashMap<i64, BTreeSet<i64>>>,
    /// mid -> scope -> until (Unix ms); a user without mutes is removed.
    mutes: Mutex<HashMap<i64, BTreeMap<String, Option<i64>>>>,
}

#[derive(Debug)]
struct Mailbox {
    /// `entries[i].seq == first + i`.
    entries: VecDeque<Stored>,
    first: u32,
    top: u32,
    read: u32,
    devices: BTreeMap<String, DeviceAck>,
    /// id -> (seq, appended at, Unix ms).
    ids: HashMap<MsgId, (u32, i64)>,
    /// The ids in `ids`, oldest first, to expire them in order.
    id_order: VecDeque<(i64, MsgId)>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Mailbox {
            entries: VecDeque::new(),
            first: 1,
            top: 0,
            read: 0,
            devices: BTreeMap::new(),
            ids: HashMap::new(),
            id_order: VecDeque::new(),
        }
    }
}

impl Mailbox {
    fn expire_ids(&mut self, now_ms: i64, window: Duration) {
        let horizon = now_ms.saturating_sub(window.as_millis().try_into().unwrap_or(i64::MAX));
        while let Some((at, _)) = self.id_order.front() {
            if *at > horizon {
                break;
            }
            let (at, id) = self.id_order.pop_front().expect("front exists");
            // A later append of the same id (after it expired) keeps its row.
            if self.ids.get(&id).is_some_and(|&(_, row_at)| row_at == at) {
                self.ids.remove(&id);
            }
        }
    }

    fn remove_upto(&mut self, upto: u32) {
        let upto = upto.min(self.top);
        while self.first <= upto {
            self.entries.pop_front();
            self.first += 1;
        }
    }
}

impl MemoryStore {
    /// An empty store with a new epoch.
    pub fn new(config: MailboxConfig) -> MemoryStore {
        MemoryStore {
            epoch: Epoch::random(),
            config,
            mailboxes: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            mutes: Mutex::new(HashMap::new()),
        }
    }

    /// The store's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(i64::MAX))
}

#[async_trait]
impl MailboxStore for MemoryStore {
    async fn append(&self, batch: Vec<Entry>) -> Result<Vec<Appended>, MailboxError> {
        let now = now_ms();
        let mut mailboxes = self.mailboxes.lock();
        // All or nothing: refuse the batch before storing any of it.
        let mut counts: HashMap<i64, u64> = HashMap::new();
        for entry in &batch {
            *counts.entry(entry.mid).or_default() += 1;
        }
        for (&mid, &count) in &counts {
            let top = mailboxes.get(&mid).map_or(0, |m| m.top);
            if u64::from(top) + count > u64::from(MAX_SEQ) {
                return Err(MailboxError::SeqExhausted { mid });
            }
        }
        let mut appended = Vec::with_capacity(batch.len());
        for entry in batch {
            let mid = entry.mid;
            let mailbox = mailboxes.entry(mid).or_default();
            mailbox.expire_ids(now, self.config.idempotency_window);
            if let Some(&(seq, _)) = mailbox.ids.get(&entry.id).filter(|_| entry.dedupe) {
                appended.push(Appended {
                    mid,
                    seq,
                    epoch: self.epoch,
                    duplicate: true,
                });
                continue;
            }
            mailbox.top += 1;
            let seq = mailbox.top;
            if entry.dedupe {
                mailbox.ids.insert(entry.id.clone(), (seq, now));
                mailbox.id_order.push_back((now, entry.id.clone()));
            }
            mailbox.entries.push_back(Stored::new(seq, entry));
            let max_len = self.config.max_len;
            if seq - mailbox.first >= max_len {
                mailbox.remove_upto(seq - max_len);
            }
            appended.push(Appended {
                mid,
                seq,
                epoch: self.epoch,
                duplicate: false,
            });
        }
        Ok(appended)
    }

    async fn read(
        &self,
        mid: i64,
        after: u32,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, MailboxError> {
        let mailboxes = self.mailboxes.lock();
        let Some(mailbox) = mailboxes.get(&mid) else {
            return Ok(self.empty_page());
        };
        let skip = after.saturating_sub(mailbox.first - 1) as usize;
        let mut cut = PageCut::new(limit, max_bytes);
        let entries: Vec<Stored> = mailbox
            .entries
            .iter()
            .skip(skip)
            .take_while(|e| cut.admit(e.body.len()))
            .cloned()
            .collect();
        Ok(Page {
            epoch: self.epoch,
            first: mailbox.first,
            top: mailbox.top,
            more: more_after(after, mailbox.first, mailbox.top, &entries),
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
        let mailboxes = self.mailboxes.lock();
        let Some(mailbox) = mailboxes.get(&mid) else {
            return Ok(self.empty_page());
        };
        // Entries below `before`: the first `before - first` of them.
        let below = before.saturating_sub(mailbox.first) as usize;
        let mut cut = PageCut::new(limit, max_bytes);
        let entries: Vec<Stored> = mailbox
            .entries
            .iter()
            .take(below)
            .rev()
            .take_while(|e| cut.admit(e.body.len()))
            .cloned()
            .collect();
        Ok(Page {
            epoch: self.epoch,
            first: mailbox.first,
            top: mailbox.top,
            more: more_before(before, mailbox.first, mailbox.top, &entries),
            entries,
        })
    }

    async fn cursor(&self, mid: i64) -> Result<Cursor, MailboxError> {
        let mailboxes = self.mailboxes.lock();
        let cursor = match mailboxes.get(&mid) {
            Some(m) => Cursor {
                epoch: self.epoch,
                first: m.first,
                top: m.top,
                read: m.read,
                devices: m.devices.clone(),
            },
            None => Cursor {
                epoch: self.epoch,
                first: 1,
                top: 0,
                read: 0,
                devices: BTreeMap::new(),
            },
        };
        Ok(cursor)
    }

    async fn ack(&self, acks: Vec<Ack>) -> Result<(), MailboxError> {
        let now = now_ms();
        let mut mailboxes = self.mailboxes.lock();
        for Ack { mid, key, seq } in acks {
            let Some(mailbox) = mailboxes.get_mut(&mid) else {
                continue;
            };
            let seq = seq.min(mailbox.top);
            let known = mailbox.devices.get(&key).map_or(0, |d| d.ack);
            if seq > known {
                mailbox.devices.insert(
                    key,
                    DeviceAck {
                        ack: seq,
                        ts_ms: now,
                    },
                );
            }
        }
        Ok(())
    }

    async fn set_read(&self, mid: i64, seq: u32) -> Result<(), MailboxError> {
        if let Some(mailbox) = self.mailboxes.lock().get_mut(&mid) {
            mailbox.read = mailbox.read.max(seq.min(mailbox.top));
        }
        Ok(())
    }

    async fn trim(&self, mid: i64, upto: u32) -> Result<(), MailboxError> {
        if let Some(mailbox) = self.mailboxes.lock().get_mut(&mid) {
            mailbox.remove_upto(upto);
        }
        Ok(())
    }
}

impl MemoryStore {
    fn empty_page(&self) -> Page {
        Page {
            epoch: self.epoch,
            first: 1,
            top: 0,
            entries: Vec::new(),
            more: false,
        }
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn add_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError> {
        let mut groups = self.groups.lock();
        if mids.is_empty() {
            return Ok(groups.get(&gid).map_or(0, BTreeSet::len));
        }
        let members = groups.entry(gid).or_default();
        members.extend(mids);
        Ok(members.len())
    }

    async fn remove_members(&self, gid: i64, mids: &[i64]) -> Result<usize, MailboxError> {
        let mut groups = self.groups.lock();
        let Some(members) = groups.get_mut(&gid) else {
            return Ok(0);
        };
        for mid in mids {
            members.remove(mid);
        }
        let size = members.len();
        if size == 0 {
            groups.remove(&gid);
        }
        Ok(size)
    }

    async fn members(&self, gid: i64) -> Result<Vec<i64>, MailboxError> {
        let groups = self.groups.lock();
        Ok(groups
            .get(&gid)
            .map_or_else(Vec::new, |m| m.iter().copied().collect()))
    }

    async fn is_member(&self, gid: i64, mid: i64) -> Result<bool, MailboxError> {
        Ok(self
            .groups
            .lock()
            .get(&gid)
            .is_some_and(|m| m.contains(&mid)))
    }

    async fn set_mute(
        &self,
        mid: i64,
        scope: &str,
        until_ms: Option<i64>,
    ) -> Result<(), MailboxError> {
        let now = now_ms();
        let mut mutes = self.mutes.lock();
        let scopes = mutes.entry(mid).or_default();
        scopes.retain(|_, until| until.is_none_or(|until| until > now));
        if until_ms.is_none_or(|until| until > now) {
            scopes.insert(scope.to_owned(), until_ms);
        } else {
            scopes.remove(scope);
        }
        if scopes.is_empty() {
            mutes.remove(&mid);
        }
        Ok(())
    }

    async fn clear_mute(&self, mid: i64, scope: Option<&str>) -> Result<(), MailboxError> {
        let mut mutes = self.mutes.lock();
        match scope {
            None => {
                mutes.remove(&mid);
            }
            Some(scope) => {
                if let Some(scopes) = mutes.get_mut(&mid) {
                    scopes.remove(scope);
                    if scopes.is_empty() {
                        mutes.remove(&mid);
                    }
                }
            }
        }
        Ok(())
    }

    async fn mutes(&self, mid: i64) -> Result<Vec<Mute>, MailboxError> {
        let now = now_ms();
        let mutes = self.mutes.lock();
        let Some(scopes) = mutes.get(&mid) else {
            return Ok(Vec::new());
        };
        Ok(scopes
            .iter()
            .map(|(scope, &until_ms)| Mute {
                scope: scope.clone(),
                until_ms,
            })
            .filter(|mute| mute.holds_at(now))
            .collect())
    }
}
