//! [`Bucket`]: one lock shard of the comet's sessions, rooms and client IPs.
//!
//! A session lives in the bucket chosen by the hash of its key (so a same-key
//! reconnect lands in the same bucket and can kick its predecessor). Its room
//! membership lives in the same bucket. Lock order: bucket, then session;
//! sessions never take a bucket lock, and nothing here awaits.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::push::{Fanout, Push};
use crate::room::Room;
use crate::session::{Closed, Session};

/// One shard of sessions and rooms.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// key -> the session currently registered under it.
    sessions: HashMap<Arc<str>, Arc<Session>>,
    /// room id -> its local members. Never holds an empty room.
    rooms: HashMap<Arc<str>, Room>,
    /// client IP -> number of sessions from it (kicked ones included until
    /// their connection ends).
    ips: HashMap<IpAddr, u32>,
}

impl Inner {
    fn join(&mut self, session: &Arc<Session>, room_id: &str) {
        // Share the map's key with the session instead of allocating another.
        let id = match self.rooms.get_key_value(room_id) {
            Some((id, _)) => Arc::clone(id),
            None => Arc::from(room_id),
        };
        self.rooms.entry(Arc::clone(&id)).or_default().join(session);
        session.set_room(Some(id));
    }

    fn leave(&mut self, session: &Session) {
        let Some(id) = session.room() else {
            return;
        };
        if let Some(room) = self.rooms.get_mut(&*id) {
            room.leave(session);
            if room.online() == 0 {
                self.rooms.remove(&*id);
            }
        }
        session.set_room(None);
    }
}

impl Bucket {
    /// Registers `session` and puts it in `room`. Returns the session it
    /// replaced (same key), which has been taken out of its room; the caller
    /// closes it.
    pub(crate) fn put(&self, session: &Arc<Session>, room: Option<&str>) -> Option<Arc<Session>> {
        let mut inner = self.inner.write();
        let old = inner
            .sessions
            .insert(Arc::clone(&session.key), Arc::clone(session));
        if let Some(old) = &old {
            inner.leave(old);
        }
        *inner.ips.entry(session.ip).or_insert(0) += 1;
        if let Some(room) = room {
            inner.join(session, room);
        }
        old
    }

    /// Unregisters `session` (once, when its connection ends): leaves its room,
    /// releases its IP, and removes the key entry only if it still points to
    /// this session. Returns whether it did (false for a kicked session).
    pub(crate) fn del(&self, session: &Arc<Session>) -> bool {
        let mut inner = self.inner.write();
        let current = inner
            .sessions
            .get(&*session.key)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if current {
            inner.sessions.remove(&*session.key);
        }
        if let Entry::Occupied(mut count) = inner.ips.entry(session.ip) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        inner.leave(session);
        current
    }

    /// Moves `session` to `room` (`None`: no room). Changing to the current
    /// room is a no-op; a closed session joins nothing.
    pub(crate) fn change_room(&self, session: &Arc<Session>, room: Option<&str>) {
        let mut inner = self.inner.write();
        if session.room().as_deref() == room {
            return;
        }
        inner.leave(session);
        if let Some(room) = room {
            if session.closed().is_none() {
                inner.join(session, room);
            }
        }
    }

    /// The session registered under `key`.
    pub(crate) fn session(&self, key: &str) -> Option<Arc<Session>> {
        self.inner.read().sessions.get(key).cloned()
    }

    /// Offers `push` to every session accepting `op`; returns the number of
    /// sessions in the bucket (for broadcast pacing).
    pub(crate) fn broadcast(
        &self,
        push: &Arc<Push>,
        op: i32,
        capacity: usize,
        fanout: &mut Fanout,
    ) -> usize {
        let inner = self.inner.read();
        for session in inner.sessions.values() {
            fanout.add(session.push(push, Some(op), capacity));
        }
        inner.sessions.len()
    }

    /// Offers `push` to every local member of `room` (no accepts filter).
    pub(crate) fn broadcast_room(
        &self,
        room: &str,
        push: &Arc<Push>,
        capacity: usize,
        fanout: &mut Fanout,
    ) {
        if let Some(room) = self.inner.read().rooms.get(room) {
            room.push(push, capacity, fanout);
        }
    }

    /// `(local members, cluster count from logic)` of `room`, if it has
    /// members here.
    pub(crate) fn room_online(&self, room: &str) -> Option<(usize, i32)> {
        self.inner
            .read()
            .rooms
            .get(room)
            .map(|r| (r.online(), r.all_online))
    }

    /// Adds this bucket's member count of each room to `counts`.
    pub(crate) fn add_room_counts(&self, counts: &mut HashMap<String, i32>) {
        for (id, room) in &self.inner.read().rooms {
            let online = i32::try_from(room.online()).unwrap_or(i32::MAX);
            let count = counts.entry(id.to_string()).or_insert(0);
            *count = count.saturating_add(online);
        }
    }

    /// Sets every room's cluster count from logic's report (0 if absent).
    pub(crate) fn set_all_online(&self, all: &HashMap<String, i32>) {
        for (id, room) in &mut self.inner.write().rooms {
            room.all_online = all.get(&**id).copied().unwrap_or(0);
        }
    }

    /// Number of registered sessions.
    /// Closes every session of the bucket with `reason` (their connection
    /// tasks then unregister them).
    pub(crate) fn close_all(&self, reason: Closed) {
        for session in self.inner.read().sessions.values() {
            session.close(reason);
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        self.inner.read().sessions.len()
    }

    /// Adds this bucket's client IPs and room ids to the sets.
    pub(crate) fn collect(&self, ips: &mut HashSet<IpAddr>, rooms: &mut HashSet<Arc<str>>) {
        let inner = self.inner.read();
        ips.extend(inner.ips.keys().copied());
        rooms.extend(inner.rooms.keys().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Enqueue;
    use bytes::Bytes;
    use std::net::Ipv4Addr;

    fn session(id: u64, key: &str) -> Arc<Session> {
        Arc::new(Session::new(
            id,
            key.into(),
            1,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)),
            &[1000],
        ))
    }

    fn push() -> Arc<Push> {
        Arc::new(Push {
            tcp: Bytes::from_static(b"t"),
            ws: Bytes::from_static(b"w"),
        })
    }

    #[test]
    fn same_key_replaces_and_old_del_keeps_new() {
        let bucket = Bucket::default();
        let old = session(1, "k");
        let new = session(2, "k");
        assert!(bucket.put(&old, Some("r")).is_none());
        let kicked = bucket.put(&new, Some("r")).unwrap();
        assert!(Arc::ptr_eq(&kicked, &old));
        // The kicked session left the room at once.
        assert_eq!(bucket.room_online("r"), Some((1, 0)));
        assert_eq!(old.room(), None);
        kicked.close(Closed::Kicked);
        assert!(!bucket.del(&old), "a kicked session is not the current one");
        assert!(Arc::ptr_eq(&bucket.session("k").unwrap(), &new));
        assert_eq!(bucket.room_online("r"), Some((1, 0)));
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        bucket.collect(&mut ips, &mut rooms);
        assert_eq!(ips.len(), 1);
        assert!(bucket.del(&new));
        assert!(bucket.session("k").is_none());
        assert_eq!(bucket.room_online("r"), None, "empty room is removed");
        let (mut ips, mut rooms) = (HashSet::new(), HashSet::new());
        bucket.collect(&mut ips, &mut rooms);
        assert!(ips.is_empty() && rooms.is_empty());
    }

    #[test]
    fn change_room_moves_removes_and_recreates() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        let b = session(2, "b");
        bucket.put(&a, Some("r1"));
        bucket.put(&b, Some("r1"));
        assert_eq!(bucket.room_online("r1"), Some((2, 0)));
        // Changing to the current room is a no-op, even when alone in it.
        bucket.change_room(&a, Some("r1"));
        assert_eq!(bucket.room_online("r1"), Some((2, 0)));
        bucket.change_room(&a, Some("r2"));
        bucket.change_room(&b, Some("r2"));
        assert_eq!(bucket.room_online("r1"), None);
        assert_eq!(bucket.room_online("r2"), Some((2, 0)));
        // Re-creating a removed room works.
        bucket.change_room(&a, Some("r1"));
        assert_eq!(bucket.room_online("r1"), Some((1, 0)));
        bucket.change_room(&a, None);
        assert_eq!(bucket.room_online("r1"), None);
        assert_eq!(a.room(), None);
        let mut counts = HashMap::new();
        bucket.add_room_counts(&mut counts);
        assert_eq!(counts, HashMap::from([("r2".to_owned(), 1)]));
    }

    #[test]
    fn all_online_is_set_and_cleared() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        bucket.put(&a, Some("r"));
        bucket.set_all_online(&HashMap::from([("r".to_owned(), 42)]));
        assert_eq!(bucket.room_online("r"), Some((1, 42)));
        bucket.set_all_online(&HashMap::new());
        assert_eq!(bucket.room_online("r"), Some((1, 0)));
    }

    #[test]
    fn broadcast_filters_room_push_does_not() {
        let bucket = Bucket::default();
        let a = session(1, "a");
        bucket.put(&a, Some("r"));
        let p = push();
        let mut fanout = Fanout::default();
        assert_eq!(bucket.broadcast(&p, 2000, 8, &mut fanout), 1);
        assert_eq!(fanout.filtered, 1);
        bucket.broadcast_room("r", &p, 8, &mut fanout);
        assert_eq!(fanout.queued, 1);
        assert_eq!(a.push(&p, Some(1000), 8), Enqueue::Queued);
    }
}
