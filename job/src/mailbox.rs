//! Stored messages in the distributed mode: job's side of the `rim-mailbox`
//! topic (docs/architecture.md, "Stored messages").
//!
//! logic publishes one record per user, keyed by the user, so one user's
//! messages share a partition and keep their order. For each record job
//! appends the message to the user's mailbox (the store gives the seq, and
//! knows the message id: a redelivered record is not stored twice), then
//! looks up the user's connections now, delivers the frame with its seq to
//! their comets, and only then lets the record's offset be committed. A user
//! with no connection, or a comet that is gone, is not a loss: the message
//! waits in the mailbox for the client's next sync (counted as
//! `rim_job_deferred_total`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rim_mailbox::{Appended, Entry, MailboxStore, MsgId};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_router::Router;
use tracing::{debug, warn};

use crate::{metrics, JobError};

/// First pause after a failed append; doubled up to [`APPEND_BACKOFF_MAX`].
const APPEND_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between append attempts: the record waits in the topic.
const APPEND_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What job needs for stored messages: the mailboxes, and the session
/// registry to find each user's connections at delivery time.
pub struct MailboxStage {
    store: Arc<dyn MailboxStore>,
    router: Router,
}

impl std::fmt::Debug for MailboxStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxStage").finish_non_exhaustive()
    }
}

impl MailboxStage {
    /// Stored messages appended to `store`, delivered to the connections
    /// `router` knows.
    pub fn new(store: Arc<dyn MailboxStore>, router: Router) -> MailboxStage {
        MailboxStage { store, router }
    }

    /// The record's entries: one per user it names.
    pub(crate) fn entries(msg: &PushMsg) -> Result<Vec<Entry>, JobError> {
        let id = MsgId::parse(&msg.mailbox_id)
            .map_err(|e| JobError::InvalidRecord(format!("stored message id: {e}")))?;
        if msg.mids.is_empty() || msg.mids.contains(&0) {
            return Err(JobError::InvalidRecord(
                "stored message without users (or for mid 0)".into(),
            ));
        }
        Ok(msg
            .mids
            .iter()
            .map(|&mid| Entry {
                mid,
                id: id.clone(),
                op: msg.operation,
                from: msg.from,
                ts_ms: msg.ts_ms,
                body: msg.msg.clone(),
                dedupe: true,
            })
            .collect())
    }

    /// Appends until the store takes it, backing off; `None` once
    /// `cancelled` resolves first (the record stays in the topic).
    pub(crate) async fn append(
        &self,
        entries: Vec<Entry>,
        cancelled: impl std::future::Future<Output = ()>,
    ) -> Option<Vec<Appended>> {
        tokio::pin!(cancelled);
        let mut backoff = APPEND_BACKOFF_MIN;
        loop {
            match self.store.append(entries.clone()).await {
                Ok(appended) => {
                    let duplicates = appended.iter().filter(|a| a.duplicate).count() as u64;
                    metrics::mailbox_appends(appended.len() as u64 - duplicates, duplicates);
                    return Some(appended);
                }
                Err(e) => {
                    metrics::mailbox_append_error();
                    warn!(error = %e, backoff = ?backoff, "mailbox append failed; retrying (the record waits in the topic)");
                    tokio::select! {
                        () = &mut cancelled => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(APPEND_BACKOFF_MAX);
                }
            }
        }
    }

    /// One PUSH record per comet holding a connection of the appended
    /// user, carrying the seq and the epoch. None when the user has no
    /// connection (or the registry cannot say: the message waits).
    pub(crate) async fn deliveries(&self, msg: &PushMsg, appended: &Appended) -> Vec<PushMsg> {
        let sessions = match self.router.keys_by_mids(&[appended.mid]).await {
            Ok(sessions) => sessions,
            Err(e) => {
                warn!(mid = appended.mid, seq = appended.seq, error = %e, "session lookup failed; the stored message waits for the next sync");
                metrics::deferred(1);
                return Vec::new();
            }
        };
        let mut by_server: HashMap<String, Vec<String>> = HashMap::new();
        for (key, server) in sessions {
            if !key.is_empty() && !server.is_empty() {
                by_server.entry(server).or_default().push(key);
            }
        }
        if by_server.is_empty() {
            debug!(
                mid = appended.mid,
                seq = appended.seq,
                "no connection: stored for the next sync"
            );
            return Vec::new();
        }
        by_server
            .into_iter()
            .map(|(server, mut keys)| {
                keys.sort();
                PushMsg {
                    r#type: Type::Push as i32,
                    operation: msg.operation,
                    server,
                    keys,
                    msg: msg.msg.clone(),
                    mailbox_seq: appended.seq,
                    mailbox_epoch: appended.epoch.as_str().to_owned(),
                    mid: appended.mid,
                    unfiltered: msg.unfiltered,
                    ..PushMsg::default()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rim_mailbox::{MailboxConfig, MemoryStore};

    use super::*;

    /// A stored goim v1 push (`unfiltered`) keeps the bit on its delivery
    /// records, so the comets skip the accepts filter for it too.
    #[tokio::test]
    async fn deliveries_keep_the_unfiltered_bit() {
        let router = Router::memory(&rim_router::Config::default());
        router.add_mapping(7, "k7", "c1").await.unwrap();
        let stage = MailboxStage::new(Arc::new(MemoryStore::new(MailboxConfig::default())), router);
        for unfiltered in [false, true] {
            let msg = PushMsg {
                operation: 5,
                msg: Bytes::from_static(b"v1"),
                mailbox_id: format!("m-{unfiltered}"),
                mids: vec![7],
                unfiltered,
                ..PushMsg::default()
            };
            let entries = MailboxStage::entries(&msg).unwrap();
            let appended = stage.append(entries, std::future::pending()).await.unwrap();
            let records = stage.deliveries(&msg, &appended[0]).await;
            assert_eq!(records.len(), 1);
            assert_eq!(
                (records[0].keys.clone(), records[0].unfiltered),
                (vec!["k7".to_owned()], unfiltered)
            );
        }
    }
}
