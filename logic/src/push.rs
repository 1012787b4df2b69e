//! Push resolution: turns a push request into `goim.logic.PushMsg` records
//! and publishes them to the push queue (docs/protocol.md, "Between the
//! services").
//!
//! Keyed pushes (by key or by mid) are resolved through the session registry
//! and grouped into one PUSH record per comet; room and broadcast pushes are
//! one record each. Record keys follow goim: first key for PUSH, room for
//! ROOM, decimal operation for BROADCAST.
//!
//! A push succeeds only once the queue has accepted every record. Offline
//! targets are skipped and count as success, as in goim: there is no offline
//! storage.
//!
//! Keyed and broadcast pushes honour their targets' accepts, except those of
//! goim v1's API ([`Accepts::Ignore`]): the record carries `unfiltered`, job
//! passes it to the comets, which then skip the filter.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use rim_proto::pb::logic::push_msg::Type;
use rim_proto::pb::logic::PushMsg;
use tracing::{debug, warn};

use crate::{Logic, LogicError};

/// Groups (key, server) pairs into one list of distinct keys per server,
/// servers in order of first appearance.
fn group_by_server<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, Vec<String>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (key, server) in pairs {
        if key.is_empty() || server.is_empty() || !seen.insert(key) {
            continue;
        }
        let slot = *index.entry(server).or_insert_with(|| {
            groups.push((server.to_owned(), Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(key.to_owned());
    }
    groups
}

/// Whether a keyed or broadcast push honours its targets' accepts
/// (docs/protocol.md, "Pushes"). Room pushes never do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Accepts {
    /// Only connections whose accepts hold the operation get it (goim v2's
    /// API).
    #[default]
    Filter,
    /// Every target connection gets it (goim v1's API: v1 had no accepts).
    Ignore,
}

impl Accepts {
    /// The records' `unfiltered` bit.
    pub(crate) fn unfiltered(self) -> bool {
        self == Accepts::Ignore
    }
}

fn type_label(kind: Type) -> &'static str {
    match kind {
        Type::Push => "push",
        Type::Room => "room",
        Type::Broadcast => "broadcast",
    }
}

impl Logic {
    /// Pushes `msg` with `operation` to the connections `keys` (goim
    /// `PushKeys`). Unknown keys are skipped.
    pub async fn push_keys(
        &self,
        operation: i32,
        keys: &[String],
        msg: Bytes,
    ) -> Result<(), LogicError> {
        let keys: Vec<String> = keys.iter().filter(|k| !k.is_empty()).cloned().collect();
        if keys.is_empty() {
            return Err(self.push_failed(
                "keys",
                LogicError::BadRequest("keys: at least one key is required".into()),
            ));
        }
        let servers = self
            .router
            .servers_by_keys(&keys)
            .await
            .map_err(|err| self.push_failed("keys", err.into()))?;
        let pairs = keys
            .iter()
            .zip(&servers)
            .filter_map(|(key, server)| server.as_deref().map(|s| (key.as_str(), s)));
        let groups = group_by_server(pairs);
        debug!(
            operation,
            keys = keys.len(),
            servers = groups.len(),
            "push to keys"
        );
        self.publish_keyed("keys", operation, groups, msg, Accepts::Filter)
            .await
    }

    /// Pushes `msg` with `operation` to every connection of the users `mids`
    /// (goim `PushMids`). Offline users are skipped.
    pub async fn push_mids(
        &self,
        operation: i32,
        mids: &[i64],
        msg: Bytes,
    ) -> Result<(), LogicError> {
        self.push_mids_with(operation, mids, msg, Accepts::Filter)
            .await
    }

    /// [`Logic::push_mids`], honouring the targets' accepts or not.
    pub async fn push_mids_with(
        &self,
        operation: i32,
        mids: &[i64],
        msg: Bytes,
        accepts: Accepts,
    ) -> Result<(), LogicError> {
        if mids.is_empty() {
            return Err(self.push_failed(
                "mids",
                LogicError::BadRequest("mids: at least one mid is required".into()),
            ));
        }
        let mut distinct: Vec<i64> = mids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut sessions = self
            .router
            .keys_by_mids(&distinct)
            .await
            .map_err(|err| self.push_failed("mids", err.into()))?;
        // Stable records regardless of the registry's iteration order.
        sessions.sort();
        let groups = group_by_server(sessions.iter().map(|(k, s)| (k.as_str(), s.as_str())));
        debug!(
            operation,
            mids = distinct.len(),
            servers = groups.len(),
            "push to mids"
        );
        self.publish_keyed("mids", operation, groups, msg, accepts)
            .await
    }

    /// Pushes `msg` with `operation` to everyone in `room`, a full room key
    /// such as `live://1000` (goim `PushRoom`).
    pub async fn push_room(
        &self,
        operation: i32,
        room: &str,
        msg: Bytes,
    ) -> Result<(), LogicError> {
        if room.is_empty() {
            return Err(self.push_failed("room", LogicError::BadRequest("room: required".into())));
        }
        let record = PushMsg {
            r#type: Type::Room as i32,
            operation,
            room: room.to_owned(),
            msg,
            ..PushMsg::default()
        };
        debug!(operation, room = %room, "push to room");
        self.publish_all("room", vec![(room.to_owned(), record)])
            .await
    }

    /// Pushes `msg` with `operation` to every connection (goim `PushAll`);
    /// `speed` throttles the broadcast on the job side.
    pub async fn push_all(&self, operation: i32, speed: i32, msg: Bytes) -> Result<(), LogicError> {
        self.push_all_with(operation, speed, msg, Accepts::Filter)
            .await
    }

    /// [`Logic::push_all`], honouring the connections' accepts or not.
    pub async fn push_all_with(
        &self,
        operation: i32,
        speed: i32,
        msg: Bytes,
        accepts: Accepts,
    ) -> Result<(), LogicError> {
        let record = PushMsg {
            r#type: Type::Broadcast as i32,
            operation,
            speed,
            msg,
            unfiltered: accepts.unfiltered(),
            ..PushMsg::default()
        };
        debug!(operation, speed, "push to all");
        self.publish_all("all", vec![(operation.to_string(), record)])
            .await
    }

    async fn publish_keyed(
        &self,
        kind: &'static str,
        operation: i32,
        groups: Vec<(String, Vec<String>)>,
        msg: Bytes,
        accepts: Accepts,
    ) -> Result<(), LogicError> {
        let records = groups
            .into_iter()
            .map(|(server, keys)| {
                let record_key = keys[0].clone();
                let record = PushMsg {
                    r#type: Type::Push as i32,
                    operation,
                    server,
                    keys,
                    msg: msg.clone(),
                    unfiltered: accepts.unfiltered(),
                    ..PushMsg::default()
                };
                (record_key, record)
            })
            .collect();
        self.publish_all(kind, records).await
    }

    /// Publishes records in order, stopping at the first the queue refuses.
    async fn publish_all(
        &self,
        kind: &'static str,
        records: Vec<(String, PushMsg)>,
    ) -> Result<(), LogicError> {
        let total = records.len();
        for (accepted, (record_key, record)) in records.into_iter().enumerate() {
            let record_type = Type::try_from(record.r#type).unwrap_or(Type::Push);
            let (server, room) = (record.server.clone(), record.room.clone());
            if let Err(err) = self.queue.publish(&record_key, record).await {
                warn!(
                    kind,
                    key = %record_key,
                    server = %server,
                    room = %room,
                    accepted,
                    total,
                    error = %err,
                    "push not accepted by the queue"
                );
                let message = if accepted == 0 {
                    format!("message not confirmed: {err}")
                } else {
                    format!(
                        "message partly accepted: {accepted} of {total} per-server records were queued \
                         before the rest failed: {err}"
                    )
                };
                return Err(self.push_failed(kind, LogicError::Unavailable(message)));
            }
            metrics::counter!("rim_logic_push_records_total", "type" => type_label(record_type))
                .increment(1);
        }
        metrics::counter!("rim_logic_pushes_total", "type" => kind).increment(1);
        Ok(())
    }

    fn push_failed(&self, kind: &'static str, err: LogicError) -> LogicError {
        metrics::counter!("rim_logic_push_errors_total", "type" => kind, "reason" => err.reason())
            .increment(1);
        err
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::service::tests::{logic, logic_with};
    use rim_queue::{InProcessQueue, PushQueue, QueueError};

    use crate::Config;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn grouping_keeps_order_and_drops_duplicates() {
        let groups = group_by_server([
            ("a", "s1"),
            ("b", "s2"),
            ("c", "s1"),
            ("a", "s1"),
            ("", "s1"),
            ("d", ""),
        ]);
        assert_eq!(
            groups,
            vec![
                ("s1".to_string(), keys(&["a", "c"])),
                ("s2".to_string(), keys(&["b"]))
            ]
        );
    }

    #[tokio::test]
    async fn keys_are_grouped_per_server_and_unknown_keys_skipped() {
        let (logic, mut rx, _) = logic();
        logic.router.add_mapping(1, "k1", "c1").await.unwrap();
        logic.router.add_mapping(2, "k2", "c2").await.unwrap();
        logic.router.add_mapping(3, "k3", "c1").await.unwrap();
        logic
            .push_keys(
                1000,
                &keys(&["k1", "k2", "nope", "k3"]),
                Bytes::from_static(b"m"),
            )
            .await
            .unwrap();
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(
            first,
            PushMsg {
                r#type: Type::Push as i32,
                operation: 1000,
                server: "c1".into(),
                keys: keys(&["k1", "k3"]),
                msg: Bytes::from_static(b"m"),
                ..PushMsg::default()
            }
        );
        assert_eq!(
            (second.server.as_str(), second.keys.clone()),
            ("c2", keys(&["k2"]))
        );
        assert!(rx.try_recv().is_err());

        // Only unknown keys: nothing to send, still success.
        logic
            .push_keys(1, &keys(&["x"]), Bytes::new())
            .await
            .unwrap();
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn empty_targets_are_bad_requests() {
        let (logic, _rx, _) = logic();
        assert_eq!(
            logic.push_keys(1, &[], Bytes::new()).await,
            Err(LogicError::BadRequest(
                "keys: at least one key is required".into()
            ))
        );
        assert!(matches!(
            logic.push_keys(1, &keys(&[""]), Bytes::new()).await,
            Err(LogicError::BadRequest(_))
        ));
        assert_eq!(
            logic.push_mids(1, &[], Bytes::new()).await,
            Err(LogicError::BadRequest(
                "mids: at least one mid is required".into()
            ))
        );
        assert!(matches!(
            logic.push_room(1, "", Bytes::new()).await,
            Err(LogicError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn mids_resolve_all_their_keys() {
        let (logic, mut rx, _) = logic();
        logic.router.add_mapping(1, "a", "c1").await.unwrap();
        logic.router.add_mapping(1, "b", "c2").await.unwrap();
        logic.router.add_mapping(2, "c", "c1").await.unwrap();
        logic
            .push_mids(7, &[1, 2, 2, 99], Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mut records = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        records.sort_by(|a, b| a.server.cmp(&b.server));
        assert_eq!(
            (records[0].server.as_str(), records[0].keys.clone()),
            ("c1", keys(&["a", "c"]))
        );
        assert_eq!(
            (records[1].server.as_str(), records[1].keys.clone()),
            ("c2", keys(&["b"]))
        );
        assert!(records
            .iter()
            .all(|r| r.operation == 7 && r.msg == "x" && r.r#type == Type::Push as i32));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn room_and_broadcast_records() {
        let (logic, mut rx, _) = logic();
        logic
            .push_room(1001, "live://1000", Bytes::from_static(b"r"))
            .await
            .unwrap();
        assert_eq!(
            rx.recv().await.unwrap(),
            PushMsg {
                r#type: Type::Room as i32,
                operation: 1001,
                room: "live://1000".into(),
                msg: Bytes::from_static(b"r"),
                ..PushMsg::default()
            }
        );
        logic
            .push_all(1002, 3, Bytes::from_static(b"b"))
            .await
            .unwrap();
        assert_eq!(
            rx.recv().await.unwrap(),
            PushMsg {
                r#type: Type::Broadcast as i32,
                operation: 1002,
                speed: 3,
                msg: Bytes::from_static(b"b"),
                ..PushMsg::default()
            }
        );
    }

    #[tokio::test]
    async fn v1_pushes_are_marked_unfiltered() {
        let (logic, mut rx, _) = logic();
        logic.router.add_mapping(1, "a", "c1").await.unwrap();
        logic
            .push_mids(5, &[1], Bytes::from_static(b"v2"))
            .await
            .unwrap();
        assert!(!rx.recv().await.unwrap().unfiltered);
        logic
            .push_mids_with(5, &[1], Bytes::from_static(b"v1"), Accepts::Ignore)
            .await
            .unwrap();
        let record = rx.recv().await.unwrap();
        assert_eq!(
            (record.keys.clone(), record.unfiltered),
            (keys(&["a"]), true)
        );
        logic
            .push_all(5, 0, Bytes::from_static(b"v2-all"))
            .await
            .unwrap();
        assert!(!rx.recv().await.unwrap().unfiltered);
        logic
            .push_all_with(5, 0, Bytes::from_static(b"v1-all"), Accepts::Ignore)
            .await
            .unwrap();
        let record = rx.recv().await.unwrap();
        assert_eq!(
            (record.r#type, record.unfiltered),
            (Type::Broadcast as i32, true)
        );
    }

    /// Records the keys it is given, then forwards to an in-process queue.
    struct KeyRecorder {
        keys: parking_lot::Mutex<Vec<String>>,
        inner: InProcessQueue,
    }

    #[async_trait::async_trait]
    impl PushQueue for KeyRecorder {
        async fn publish(&self, key: &str, msg: PushMsg) -> Result<(), QueueError> {
            self.keys.lock().push(key.to_owned());
            self.inner.publish(key, msg).await
        }
    }

    #[tokio::test]
    async fn record_keys_follow_goim() {
        let (inner, _rx) = InProcessQueue::new(16, Duration::from_secs(1));
        let queue = Arc::new(KeyRecorder {
            keys: Default::default(),
            inner,
        });
        let router = rim_router::Router::memory(&rim_router::Config::default());
        let logic = Logic::new(Config::default(), router, queue.clone());
        logic.router.add_mapping(1, "k2", "c1").await.unwrap();
        logic.router.add_mapping(1, "k1", "c1").await.unwrap();
        logic
            .push_keys(1, &keys(&["k2", "k1"]), Bytes::new())
            .await
            .unwrap();
        logic.push_room(1, "live://9", Bytes::new()).await.unwrap();
        logic.push_all(1003, 0, Bytes::new()).await.unwrap();
        assert_eq!(*queue.keys.lock(), keys(&["k2", "live://9", "1003"]));
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_fails_and_says_what_was_accepted() {
        let (logic, mut rx, _) = logic_with(Config::default(), 1);
        logic.router.add_mapping(1, "a", "c1").await.unwrap();
        logic.router.add_mapping(2, "b", "c2").await.unwrap();
        let err = logic.push_mids(1, &[1, 2], Bytes::new()).await.unwrap_err();
        match err {
            LogicError::Unavailable(message) => {
                assert!(message.contains("1 of 2"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(rx.recv().await.is_some());
        // Empty again: a single record fails only when the queue is full.
        logic.push_all(1, 0, Bytes::new()).await.unwrap();
        let err = logic
            .push_room(1, "live://1", Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            LogicError::Unavailable(
                "message not confirmed: push queue did not accept the message within 50ms".into()
            )
        );
    }

    #[tokio::test]
    async fn closed_queue_is_unavailable() {
        let (logic, rx, _) = logic();
        drop(rx);
        assert!(matches!(
            logic.push_all(1, 0, Bytes::new()).await,
            Err(LogicError::Unavailable(_))
        ));
    }
}
