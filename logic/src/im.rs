//! Durable messaging in logic (docs/protocol.md, "Durable messaging"):
//! stored pushes (`store=1`, `POST /rim/v1/messages`), the mailbox reads and
//! trims of the HTTP API, and what IM sessions ask through their comet
//! (`rim.im.Im`: sync, ack, read).
//!
//! A stored push is appended to every target mailbox first: the store gives
//! each its seq in the same step, idempotently by message id. Only then is
//! it answered, and delivered live: one `PushMsg` per (user, comet) carrying
//! the seq and the epoch, so the comet can merge it with a running sync and
//! drop seqs a connection was already sent. A live delivery that fails is not
//! a lost message: it waits in the mailbox for the client's next sync.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::try_join_all;
use rim_mailbox::{Ack, Cursor, Entry, GroupStore, MailboxError, MailboxStore, MsgId, Page};
use rim_proto::pb::im::{AckReq, ReadReq, StoredMsg, SyncReply, SyncReq};
use rim_proto::pb::logic::push_msg::Type;
use rim_proto::pb::logic::PushMsg;
use rim_proto::Op;
use rim_queue::PushQueue;
use tracing::{debug, warn};

use crate::{Accepts, Logic, LogicError};

/// Most messages one sync page holds.
pub const SYNC_LIMIT_MAX: u32 = 500;
/// Most body bytes one sync page holds (a page has at least one message).
pub(crate) const SYNC_PAGE_BYTES: usize = 256 * 1024;
/// Most messages one history read (`GET /rim/v1/users/{mid}/messages`) holds.
pub const HISTORY_LIMIT_MAX: usize = 500;
/// Most body bytes one history read holds.
pub(crate) const HISTORY_PAGE_BYTES: usize = 1024 * 1024;

/// Where logic keeps mailboxes, group memberships and mutes (one store).
pub struct Mailbox {
    store: Arc<dyn MailboxStore>,
    groups: Arc<dyn GroupStore>,
    /// The `rim-mailbox` topic in the distributed mode: logic publishes
    /// stored messages there and job appends them. `None`: logic appends.
    topic: Option<Arc<dyn PushQueue>>,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

impl Mailbox {
    /// Mailboxes in `store`, which logic appends to before answering a stored
    /// push (standalone: the embedded store, fsynced per group commit).
    pub fn direct<S: MailboxStore + GroupStore>(store: Arc<S>) -> Mailbox {
        Mailbox {
            store: store.clone(),
            groups: store,
            topic: None,
        }
    }

    /// Mailboxes in `store` (read by logic: sync, history, acks), written
    /// by job from `topic` (the distributed mode): a stored push is answered
    /// once the topic holds one record per user, keyed by the user.
    pub fn queued<S: MailboxStore + GroupStore>(
        store: Arc<S>,
        topic: Arc<dyn PushQueue>,
    ) -> Mailbox {
        Mailbox {
            store: store.clone(),
            groups: store,
            topic: Some(topic),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MailboxStore> {
        &self.store
    }

    /// Group memberships and mutes.
    pub fn groups(&self) -> &Arc<dyn GroupStore> {
        &self.groups
    }
}

/// What a stored push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPush {
    /// The message id: the one given, or a new UUIDv7.
    pub id: MsgId,
    /// Mailboxes that hold the message (distinct users).
    pub accepted: usize,
    /// Each user's seq for the message, in the order of the distinct users
    /// (empty in the distributed mode: job appends after the answer).
    pub seqs: Vec<(i64, u32)>,
}

/// Which way a history read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Oldest first, after this seq.
    After(u32),
    /// Newest first, below this seq.
    Before(u32),
}

impl From<MailboxError> for LogicError {
    fn from(err: MailboxError) -> Self {
        warn!(error = %err, "mailbox store request failed");
        match err {
            MailboxError::Unavailable(_) => {
                LogicError::Unavailable("mailbox store unavailable".into())
            }
            MailboxError::SeqExhausted { mid } => {
                LogicError::Unavailable(format!("mailbox {mid} is full (no seq left)"))
            }
            MailboxError::Corrupt(_) | MailboxError::Config(_) => {
                LogicError::Internal(err.to_string())
            }
        }
    }
}

/// The body of an op 23 read notify.
fn read_notify(seq: u32) -> Bytes {
    Bytes::from(format!(r#"{{"kind":"read","seq":{seq}}}"#))
}

impl Logic {
    /// The mailboxes, or a 400 saying this server stores nothing.
    pub(crate) fn mailbox(&self) -> Result<&Mailbox, LogicError> {
        self.mailbox.as_ref().ok_or_else(|| {
            LogicError::BadRequest(
                "stored messages are off on this server (no mailbox store)".into(),
            )
        })
    }

    /// Stores `msg` with `operation` in the mailbox of every user of `mids`
    /// and delivers it live to their connections. `id` is the idempotency
    /// key (a message id given again for the same user within the
    /// idempotency window is stored once); without one a UUIDv7 is made.
    /// Answers once every mailbox holds the message (durably, with a durable
    /// store); live delivery follows and may fail without failing the push.
    pub async fn push_stored(
        &self,
        operation: i32,
        mids: &[i64],
        msg: Bytes,
        id: Option<&str>,
    ) -> Result<StoredPush, LogicError> {
        self.store_message(operation, mids, msg, id, 0, Accepts::Filter)
            .await
    }

    /// [`Logic::push_stored`], its live delivery honouring the accepts of
    /// sessions that are not IM sessions or not (IM sessions take stored
    /// messages whatever their accepts).
    pub async fn push_stored_with(
        &self,
        operation: i32,
        mids: &[i64],
        msg: Bytes,
        id: Option<&str>,
        accepts: Accepts,
    ) -> Result<StoredPush, LogicError> {
        self.store_message(operation, mids, msg, id, 0, accepts)
            .await
    }

    /// [`Logic::push_stored`] from the user `from` (0: the backend).
    pub(crate) async fn store_message(
        &self,
        operation: i32,
        mids: &[i64],
        msg: Bytes,
        id: Option<&str>,
        from: i64,
        accepts: Accepts,
    ) -> Result<StoredPush, LogicError> {
        let mailbox = self.mailbox()?;
        // An id generated here can arrive again only through the Kafka path
        // (a redelivered record); appended directly, it needs no dedupe row.
        let dedupe = id.is_some() || mailbox.topic.is_some();
        let id = match id {
            Some(id) => {
                MsgId::parse(id).map_err(|err| LogicError::BadRequest(format!("id: {err}")))?
            }
            None => MsgId::generate(),
        };
        if mids.is_empty() {
            return Err(LogicError::BadRequest(
                "mids: at least one mid is required".into(),
            ));
        }
        if mids.contains(&0) {
            return Err(LogicError::BadRequest(
                "mids: 0 is the anonymous user and has no mailbox".into(),
            ));
        }
        let mut distinct = Vec::with_capacity(mids.len());
        for &mid in mids {
            if !distinct.contains(&mid) {
                distinct.push(mid);
            }
        }
        let ts_ms = self.now_ms();
        if let Some(topic) = &mailbox.topic {
            return self
                .publish_stored(topic, &id, operation, &distinct, msg, ts_ms, from, accepts)
                .await;
        }
        let entries = distinct
            .iter()
            .map(|&mid| Entry {
                mid,
                id: id.clone(),
                op: operation,
                from,
                ts_ms,
                body: msg.clone(),
                dedupe,
            })
            .collect();
        let appended = match mailbox.store.append(entries).await {
            Ok(appended) => appended,
            Err(err) => {
                metrics::counter!("rim_mailbox_appends_total", "result" => "error").increment(1);
                return Err(err.into());
            }
        };
        let duplicates = appended.iter().filter(|a| a.duplicate).count() as u64;
        metrics::counter!("rim_mailbox_appends_total", "result" => "stored")
            .increment(appended.len() as u64 - duplicates);
        metrics::counter!("rim_mailbox_appends_total", "result" => "duplicate")
            .increment(duplicates);
        self.hooks.note_stored(
            appended
                .iter()
                .filter(|a| !a.duplicate)
                .map(|a| (a.mid, Some(a.seq))),
            &id,
            operation,
            from,
            &msg,
        );
        // Delivered even when a duplicate: the first attempt's delivery may
        // not have happened; a connection drops a seq it was already sent.
        let deliveries = appended
            .iter()
            .map(|a| self.deliver_stored(a.mid, a.seq, a.epoch.as_str(), operation, &msg, accepts));
        if let Err(err) = try_join_all(deliveries).await {
            metrics::counter!("rim_mailbox_deferred_total").increment(1);
            warn!(id = %id, error = %err, "stored message not delivered live: it waits for the next sync");
        }
        Ok(StoredPush {
            id,
            accepted: appended.len(),
            seqs: appended.iter().map(|a| (a.mid, a.seq)).collect(),
        })
    }

    /// The distributed mode: one `rim-mailbox` record per user (keyed by the
    /// user, so one user's messages share a partition and keep their order).
    #[allow(clippy::too_many_arguments)]
    async fn publish_stored(
        &self,
        topic: &Arc<dyn PushQueue>,
        id: &MsgId,
        operation: i32,
        mids: &[i64],
        msg: Bytes,
        ts_ms: i64,
        from: i64,
        accepts: Accepts,
    ) -> Result<StoredPush, LogicError> {
        let records = mids.iter().map(|&mid| {
            let record = PushMsg {
                r#type: Type::Push as i32,
                operation,
                msg: msg.clone(),
                mailbox_id: id.as_str().to_owned(),
                mids: vec![mid],
                ts_ms,
                from,
                unfiltered: accepts.unfiltered(),
                ..PushMsg::default()
            };
            let topic = Arc::clone(topic);
            async move { topic.publish(&mid.to_string(), record).await }
        });
        if let Err(err) = try_join_all(records).await {
            metrics::counter!("rim_mailbox_appends_total", "result" => "error").increment(1);
            warn!(id = %id, error = %err, "stored message not accepted by the mailbox topic");
            return Err(err.into());
        }
        metrics::counter!("rim_mailbox_published_total").increment(mids.len() as u64);
        self.hooks.note_stored(
            mids.iter().map(|&mid| (mid, None)),
            id,
            operation,
            from,
            &msg,
        );
        Ok(StoredPush {
            id: id.clone(),
            accepted: mids.len(),
            seqs: Vec::new(),
        })
    }

    /// Publishes one stored message to the connections `mid` has now, one
    /// record per comet.
    async fn deliver_stored(
        &self,
        mid: i64,
        seq: u32,
        epoch: &str,
        operation: i32,
        msg: &Bytes,
        accepts: Accepts,
    ) -> Result<(), LogicError> {
        let records = self
            .records_for_user(mid, None, |server, keys| PushMsg {
                r#type: Type::Push as i32,
                operation,
                server,
                keys,
                msg: msg.clone(),
                mailbox_seq: seq,
                mailbox_epoch: epoch.to_owned(),
                mid,
                unfiltered: accepts.unfiltered(),
                ..PushMsg::default()
            })
            .await?;
        self.publish_records(records).await
    }

    /// One record per comet holding a connection of `mid` (except `skip`).
    async fn records_for_user(
        &self,
        mid: i64,
        skip: Option<&str>,
        record: impl Fn(String, Vec<String>) -> PushMsg,
    ) -> Result<Vec<(String, PushMsg)>, LogicError> {
        let mut sessions = self.router.keys_by_mids(&[mid]).await?;
        sessions.sort();
        let mut by_server: HashMap<String, Vec<String>> = HashMap::new();
        for (key, server) in sessions {
            if key.is_empty() || server.is_empty() || skip == Some(key.as_str()) {
                continue;
            }
            by_server.entry(server).or_default().push(key);
        }
        Ok(by_server
            .into_iter()
            .map(|(server, keys)| (keys[0].clone(), record(server, keys)))
            .collect())
    }

    async fn publish_records(&self, records: Vec<(String, PushMsg)>) -> Result<(), LogicError> {
        for (key, record) in records {
            self.queue.publish(&key, record).await?;
        }
        Ok(())
    }

    /// op 18: the page of `req.mid`'s mailbox after `req.after` (from `first`
    /// when the client's seq belongs to another history or is past `top`),
    /// with whether the client misses nothing for good.
    pub async fn sync(&self, req: SyncReq) -> Result<SyncReply, LogicError> {
        let store = &self.mailbox()?.store;
        let limit = req.limit.clamp(1, SYNC_LIMIT_MAX) as usize;
        let epoch = (!req.epoch.is_empty()).then_some(req.epoch.as_str());
        let mut after = req.after;
        let mut page = store.read(req.mid, after, limit, SYNC_PAGE_BYTES).await?;
        let foreign = epoch.is_some_and(|e| e != page.epoch.as_str()) || after > page.top;
        if foreign && after > 0 {
            // The client's seqs name another history: everything stored is new to it.
            after = 0;
            page = store.read(req.mid, 0, limit, SYNC_PAGE_BYTES).await?;
        }
        let complete = page.complete(epoch, req.after);
        metrics::counter!("rim_mailbox_syncs_total", "complete" => if complete { "true" } else { "false" })
            .increment(1);
        let from = after.saturating_add(1).max(page.first);
        debug!(
            mid = req.mid,
            after = req.after,
            from,
            messages = page.entries.len(),
            complete,
            "sync"
        );
        Ok(SyncReply {
            epoch: page.epoch.as_str().to_owned(),
            from,
            first: page.first,
            top: page.top,
            complete,
            more: page.more,
            messages: page
                .entries
                .into_iter()
                .map(|m| StoredMsg {
                    seq: m.seq,
                    id: m.id.as_str().to_owned(),
                    ts_ms: m.ts_ms,
                    op: m.op,
                    from: m.from,
                    body: m.body,
                })
                .collect(),
        })
    }

    /// op 21, batched by the comet: each device's position only rises.
    pub async fn ack(&self, req: AckReq) -> Result<(), LogicError> {
        let store = &self.mailbox()?.store;
        let acks: Vec<Ack> = req
            .acks
            .into_iter()
            .filter(|a| a.mid != 0 && !a.key.is_empty())
            .map(|a| Ack {
                mid: a.mid,
                key: a.key,
                seq: a.seq,
            })
            .collect();
        if acks.is_empty() {
            return Ok(());
        }
        let count = acks.len() as u64;
        store.ack(acks).await?;
        metrics::counter!("rim_mailbox_acks_total").increment(count);
        Ok(())
    }

    /// op 22: raises the user's read position and tells the user's other IM
    /// connections (op 23 `{"kind": "read", "seq": N}`).
    pub async fn read(&self, req: ReadReq) -> Result<(), LogicError> {
        let store = &self.mailbox()?.store;
        if req.mid == 0 {
            return Err(LogicError::BadRequest(
                "read: the anonymous user has no mailbox".into(),
            ));
        }
        store.set_read(req.mid, req.seq).await?;
        metrics::counter!("rim_mailbox_reads_total").increment(1);
        let body = read_notify(req.seq);
        let records = self
            .records_for_user(req.mid, Some(&req.key), |server, keys| PushMsg {
                r#type: Type::Push as i32,
                operation: Op::Notify.code(),
                server,
                keys,
                msg: body.clone(),
                im_only: true,
                mid: req.mid,
                ..PushMsg::default()
            })
            .await?;
        self.publish_records(records).await
    }

    /// A page of `mid`'s mailbox for the HTTP API.
    pub async fn history(
        &self,
        mid: i64,
        direction: History,
        limit: usize,
    ) -> Result<Page, LogicError> {
        let store = &self.mailbox()?.store;
        let limit = limit.clamp(1, HISTORY_LIMIT_MAX);
        Ok(match direction {
            History::After(after) => store.read(mid, after, limit, HISTORY_PAGE_BYTES).await?,
            History::Before(before) => {
                store
                    .read_back(mid, before, limit, HISTORY_PAGE_BYTES)
                    .await?
            }
        })
    }

    /// Where `mid` stands: bounds, read position, device acks.
    pub async fn cursor(&self, mid: i64) -> Result<Cursor, LogicError> {
        Ok(self.mailbox()?.store.cursor(mid).await?)
    }

    /// Removes `mid`'s messages up to and including `upto`; answers the
    /// cursor after the trim.
    pub async fn trim(&self, mid: i64, upto: u32) -> Result<Cursor, LogicError> {
        let store = &self.mailbox()?.store;
        store.trim(mid, upto).await?;
        Ok(store.cursor(mid).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rim_mailbox::{MailboxConfig, MemoryStore};
    use rim_queue::InProcessQueue;

    use super::*;
    use crate::Config;

    /// The distributed mode: a stored goim v1 push (`Accepts::Ignore`) puts
    /// `unfiltered` on its rim-mailbox records, for job's delivery.
    #[tokio::test]
    async fn queued_stored_push_carries_the_unfiltered_bit() {
        let (pushes, _push_rx) = InProcessQueue::new(8, Duration::from_millis(50));
        let (topic, mut topic_rx) = InProcessQueue::new(8, Duration::from_millis(50));
        let router = rim_router::Router::memory(&rim_router::Config::default());
        let mailbox = Mailbox::queued(
            Arc::new(MemoryStore::new(MailboxConfig::default())),
            Arc::new(topic),
        );
        let logic = Logic::with_mailbox(Config::default(), router, Arc::new(pushes), mailbox);
        for accepts in [Accepts::Filter, Accepts::Ignore] {
            logic
                .push_stored_with(5, &[7], Bytes::from_static(b"v1"), None, accepts)
                .await
                .unwrap();
            let record = topic_rx.recv().await.unwrap();
            assert_eq!(
                (record.mids, record.unfiltered),
                (vec![7], accepts == Accepts::Ignore)
            );
        }
    }
}
